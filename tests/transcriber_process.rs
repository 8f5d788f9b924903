//! `parley-transcriber serve` as a deployed process: its AWS SDK client
//! pointed at the sandbox's Transcribe emulator by the standard
//! `AWS_ENDPOINT_URL`, transcribing over gRPC without ever logging the
//! transcript, and refusing bad settings all at once.

use std::process::{Command, Stdio};

use parley_local::process::{binary, free_port, wait_until_serving};
use parley_proto::transcriber::{
    AudioEncoding, TranscribeRequest, TranscriptionConfig, transcribe_request, transcribe_response,
    transcriber_client::TranscriberClient, transcription_config::Language,
};
use parley_sandbox::{SandboxConfig, recognizer::dtmf};

#[tokio::test]
async fn transcribes_through_the_emulator_and_logs_no_transcript() {
    let sandbox = parley_sandbox::start("127.0.0.1:0".parse().unwrap(), SandboxConfig::default())
        .await
        .unwrap();
    let port = free_port();
    let mut child = Command::new(binary("parley-transcriber"))
        .arg("serve")
        .env("PARLEY_METRICS_LISTEN", "127.0.0.1:0")
        .env("PARLEY_LISTEN", format!("127.0.0.1:{port}"))
        .env("PARLEY_TRANSCRIBE_MAX_STREAMS", "2")
        .env("PARLEY_LOG_FORMAT", "json")
        .env("RUST_LOG", "trace")
        .env("AWS_ENDPOINT_URL", &sandbox.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain the logs as they come, or a full pipe would stall the process.
    let mut stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut logs = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut logs).unwrap();
        logs
    });
    let endpoint = format!("http://127.0.0.1:{port}");
    assert!(wait_until_serving(&endpoint, "parley.transcriber.v1.Transcriber").await);

    let pcm: Vec<u8> = dtmf("7356", 16_000)
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    let mut messages = vec![TranscribeRequest {
        message: Some(transcribe_request::Message::Config(TranscriptionConfig {
            language: Some(Language::LanguageCode("en-US".into())),
            sample_rate_hz: 16_000,
            encoding: AudioEncoding::PcmS16le as i32,
            ..Default::default()
        })),
    }];
    messages.extend(pcm.chunks(10_000).map(|chunk| TranscribeRequest {
        message: Some(transcribe_request::Message::Audio(chunk.to_vec().into())),
    }));
    let mut responses = TranscriberClient::connect(endpoint)
        .await
        .unwrap()
        .transcribe(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    let mut transcript = None;
    while let Some(response) = responses.message().await.unwrap() {
        if let Some(transcribe_response::Message::Summary(summary)) = response.message {
            transcript = Some(summary.transcript);
        }
    }
    assert_eq!(transcript.as_deref(), Some("seven three five six"));

    child.kill().unwrap();
    child.wait().unwrap();
    let logs = logs.join().unwrap();
    assert!(logs.contains("parley-transcriber serving"), "{logs}");
    for word in ["seven", "three", "five", "six"] {
        let leak = logs.lines().find(|line| line.contains(word));
        assert!(
            leak.is_none(),
            "the transcript leaked into the logs: {leak:?}"
        );
    }
}

#[test]
fn bad_settings_are_all_reported_before_serving() {
    let output = Command::new(binary("parley-transcriber"))
        .arg("serve")
        .env("PARLEY_METRICS_LISTEN", "127.0.0.1:0")
        .env("PARLEY_TRANSCRIBE_MAX_STREAMS", "0")
        .env("PARLEY_TRANSCRIBE_EVENT_MS", "1500")
        .env("PARLEY_TRANSCRIBE_REALTIME_MULTIPLIER", "fast")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for name in [
        "PARLEY_TRANSCRIBE_MAX_STREAMS",
        "PARLEY_TRANSCRIBE_EVENT_MS",
        "PARLEY_TRANSCRIBE_REALTIME_MULTIPLIER",
    ] {
        assert!(stderr.contains(name), "{name} is named: {stderr}");
    }
}
