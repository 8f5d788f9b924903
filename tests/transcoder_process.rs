//! `parley-transcoder serve` as a deployed process: configured by
//! environment, healthy, converting over gRPC, logging JSON without audio,
//! and draining on SIGTERM.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use parley_local::process::{binary, free_port, wait_until_serving};
use parley_proto::transcoder::{
    AudioFormat, ConvertRequest, OutputSpec, transcoder_client::TranscoderClient,
};

#[tokio::test]
async fn serves_converts_and_drains_on_sigterm() {
    let port = free_port();
    let mut child = Command::new(binary("parley-transcoder"))
        .arg("serve")
        .env("PARLEY_METRICS_LISTEN", "127.0.0.1:0")
        .env("PARLEY_LISTEN", format!("127.0.0.1:{port}"))
        .env("PARLEY_LOG_FORMAT", "json")
        .env("PARLEY_SHUTDOWN_GRACE_MS", "2000")
        .env("RUST_LOG", "info")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let endpoint = format!("http://127.0.0.1:{port}");
    let healthy = wait_until_serving(&endpoint, "parley.transcoder.v1.Transcoder").await;
    assert!(healthy, "the process became healthy");

    let note = parley_transcoder::synth::voice_note(3.0, 16_000).unwrap();
    let mut client = TranscoderClient::connect(endpoint).await.unwrap();
    let response = client
        .convert(ConvertRequest {
            input: None,
            output: Some(OutputSpec {
                format: AudioFormat::Wav as i32,
                sample_rate_hz: 8_000,
                bitrate_bps: 0,
            }),
            audio: note.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.output.unwrap().sample_count, 24_000);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "process did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "clean exit after draining: {exit:?}");

    let lines: Vec<String> = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value.get("level").is_some(), "{line}");
    }
    assert!(
        lines.iter().any(|l| l.contains("draining")),
        "shutdown is logged: {lines:?}"
    );
}
