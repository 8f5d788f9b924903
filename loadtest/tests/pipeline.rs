//! The pipeline load test, run small against the real binaries: every
//! kind of message (texts, documents, pictures, voice notes) through the
//! whole bridge, each checked by the load test itself, which exits
//! non-zero if anything is lost, doubled, crossed or changed; and its
//! reports are written.

use std::process::Command;

#[test]
fn a_short_mixed_run_delivers_everything_once_and_writes_its_reports() {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_parley-loadtest"));
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(exe)
        .args([
            "pipeline",
            "--mix",
            "mixed",
            "--conversations",
            "3",
            "--count",
            "40",
            "--duration",
            "20",
            "--voice-seconds",
            "2..4",
            "--voice-pool",
            "2",
            "--settle",
            "60",
            "--quiet",
            "--out",
        ])
        .arg(out.path())
        // The services' binaries are built beside this one by
        // `cargo test --workspace`.
        .env("PARLEY_BIN_DIR", exe.parent().unwrap())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("Nothing lost, doubled, crossed or changed"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["sent"], 40);
    assert_eq!(report["problems"]["lost"], 0);
    for piece in ["text", "attachment", "transcript"] {
        assert!(
            report["latency"][piece]["count"].as_u64().unwrap_or(0) > 0,
            "no {piece} arrivals: {stdout}"
        );
    }
    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 3);
}
