//! The sandbox checked by clients that are not ours: boto3/botocore (whose
//! service models come from the same Smithy models as every AWS SDK), raw
//! HTTP and awslabs' `amazon-transcribe` drive `parley-sandbox` through
//! `conformance/sandbox_conformance.py`, which exits non-zero on any failed
//! check. Skipped when no Python with boto3 is at hand, unless
//! `PARLEY_REQUIRE_CONFORMANCE=1` (as in CI).

use std::{path::PathBuf, process::Command};

use parley_local::process::binary;

/// The Python that has boto3: `PARLEY_PYTHON`, else the venv `.ci/run` builds.
fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("PARLEY_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".cache/parley-venv/bin/python"))
        })?;
    let has_boto = Command::new(&candidate)
        .args(["-c", "import boto3, botocore"])
        .status()
        .is_ok_and(|s| s.success());
    has_boto.then_some(candidate)
}

#[test]
fn independent_clients_accept_the_sandbox() {
    let required = std::env::var("PARLEY_REQUIRE_CONFORMANCE").is_ok_and(|v| v == "1");
    let Some(python) = python() else {
        assert!(
            !required,
            "PARLEY_REQUIRE_CONFORMANCE=1 but no Python with boto3 was found"
        );
        eprintln!("skipped: no Python with boto3 (set PARLEY_PYTHON)");
        return;
    };
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conformance/sandbox_conformance.py");
    let mut command = Command::new(python);
    command.arg(script).arg(binary("parley-sandbox"));
    if required {
        command.env("PARLEY_CONFORMANCE_REQUIRE_SDK", "1");
    }
    let output = command.output().expect("the conformance script runs");
    let report = String::from_utf8_lossy(&output.stdout);
    let failures: Vec<&str> = report.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        output.status.success(),
        "conformance failed:\n{}\n{}",
        failures.join("\n"),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        report.contains("conformance:"),
        "the script printed its summary:\n{report}"
    );
}
