//! The `parley-transcoder` binary as a user runs it.

use std::process::Command;

use parley_transcoder::synth;

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_parley-transcoder"));
    // Tests run side by side: no fixed metrics port.
    command.env("PARLEY_METRICS_LISTEN", "127.0.0.1:0");
    command
}

#[test]
fn convert_and_probe_files() {
    let dir = tempfile::tempdir().unwrap();
    let ogg = dir.path().join("note.ogg");
    std::fs::write(&ogg, synth::voice_note(2.0, 16_000).unwrap()).unwrap();

    let probe = bin().arg("probe").arg(&ogg).output().unwrap();
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    assert_eq!(json["codec"], "opus");
    assert_eq!(json["channels"], 1);
    assert_eq!(json["sample_rate"], 48_000);
    assert_eq!(json["duration_ms"], 2_000);

    // Format from the extension, rate from the flag.
    let wav = dir.path().join("note.wav");
    let out = bin()
        .args(["convert"])
        .arg(&ogg)
        .arg(&wav)
        .args(["--rate", "8000"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reader = hound::WavReader::open(&wav).unwrap();
    assert_eq!(reader.spec().sample_rate, 8_000);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&wav).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode & 0o044,
            0o044,
            "output is readable like any file, got {mode:o}"
        );
    }
    assert_eq!(reader.len(), 16_000);

    // And back to a voice note.
    let back = dir.path().join("back.opus");
    let out = bin().arg("convert").arg(&wav).arg(&back).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probe = bin().arg("probe").arg(&back).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    assert_eq!(json["input_sample_rate"], 8_000);
    assert_eq!(json["duration_ms"], 2_000);

    // Raw PCM at the format flag's request.
    let pcm = dir.path().join("note.bin");
    let out = bin()
        .arg("convert")
        .arg(&ogg)
        .arg(&pcm)
        .args(["--format", "pcm"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(std::fs::metadata(&pcm).unwrap().len(), 2 * 16_000 * 2);
}

#[test]
fn bad_input_exits_non_zero_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.ogg");
    std::fs::write(&junk, b"OggS but not really an ogg file at all....").unwrap();
    let out_path = dir.path().join("out.wav");
    let out = bin()
        .arg("convert")
        .arg(&junk)
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("parley-transcoder:"), "{stderr}");
    assert!(!out_path.exists(), "no partial output is left behind");

    let out = bin()
        .arg("probe")
        .arg(dir.path().join("missing.ogg"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));

    let empty = dir.path().join("empty.ogg");
    std::fs::write(&empty, b"").unwrap();
    let out = bin().arg("probe").arg(&empty).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty input"));
}

#[test]
fn bad_configuration_is_reported_at_start() {
    let out = bin()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("PARLEY_WORKERS", "zero")
        .env("PARLEY_LOAD_SHED", "maybe")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PARLEY_WORKERS") && stderr.contains("PARLEY_LOAD_SHED"),
        "{stderr}"
    );
}
