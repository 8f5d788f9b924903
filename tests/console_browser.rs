//! The console in a real browser: `console/e2e/console.spec.mjs` drives
//! headless Chromium (through playwright-core) against `parley-local`,
//! through a full conversation on both panes, a recorded voice note and a
//! trace. Skipped when Node, Chromium or playwright-core is missing,
//! unless `PARLEY_REQUIRE_BROWSER=1` (as in CI).

use std::{path::PathBuf, process::Command};

use parley_local::process::binary;

#[test]
fn the_console_works_in_a_real_browser() {
    let required = std::env::var("PARLEY_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("console/e2e/console.spec.mjs");
    let output = match Command::new("node")
        .arg(&script)
        .env("PARLEY_LOCAL", binary("parley-local"))
        .env_remove("PARLEY_E2E_CONSOLE_DIR")
        .env_remove("PARLEY_CONSOLE_DIR")
        .output()
    {
        Ok(output) => output,
        Err(error) => {
            assert!(
                !required,
                "PARLEY_REQUIRE_BROWSER=1 but node cannot run: {error}"
            );
            eprintln!("skipped: node cannot run ({error})");
            return;
        }
    };
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // 77: a prerequisite (Chromium, playwright-core) is missing.
    if output.status.code() == Some(77) {
        assert!(!required, "PARLEY_REQUIRE_BROWSER=1 but:\n{report}");
        eprintln!("skipped:\n{report}");
        return;
    }
    assert!(
        output.status.success(),
        "the console test failed:\n{report}"
    );
    assert!(report.contains("PASS"), "{report}");
}
