//! The transcriber end to end: gRPC in, the real aws-sdk-transcribestreaming
//! client out, against the sandbox's Transcribe emulator, whose DTMF
//! recognizer only gets the words right if the audio arrived intact.

use std::time::Duration;

use futures::StreamExt;
use parley_local::{Component, Stack};
use parley_proto::{
    common::{ErrorDetail, ErrorReason},
    transcoder::{
        self as tc, AudioFormat, InputSpec, OutputSpec, convert_stream_response,
        transcoder_client::TranscoderClient,
    },
    transcriber::{
        AudioEncoding, LanguageIdentification, PartialStability, PiiMode, TranscribeRequest,
        TranscribeResponse, TranscriptSegment, TranscriptionConfig, TranscriptionSummary,
        transcribe_request, transcribe_response, transcriber_client::TranscriberClient,
        transcription_config::Language,
    },
};
use parley_runtime::client::TracedChannel;
use parley_sandbox::recognizer::dtmf;
use parley_transcoder::synth;
use parley_transcriber::{
    backend::AwsTranscribe,
    grpc::{TranscriberConfig, TranscriberService},
    pacing::Pacing,
};
use tonic::{Code, Status};

/// The sandbox and a transcoder from the stack builder, and the
/// transcriber under test in this process (over the client crate's
/// in-process channel), so its gate can be watched.
struct Harness {
    stack: Stack,
    client: TranscriberClient<TracedChannel>,
    service: TranscriberService<AwsTranscribe>,
}

async fn harness(config: TranscriberConfig) -> Harness {
    let stack = Stack::builder()
        .with(Component::Transcoder)
        .start()
        .await
        .expect("the stack starts");
    let backend = AwsTranscribe::new(aws_sdk_transcribestreaming::Client::new(&stack.sandbox_aws));
    let service = TranscriberService::new(backend, config);
    let client = TranscriberClient::new(parley_client::channel::in_process(
        service.clone().into_server(),
    ));
    Harness {
        stack,
        client,
        service,
    }
}

fn pcm_config(rate: u32) -> TranscriptionConfig {
    TranscriptionConfig {
        language: Some(Language::LanguageCode("en-US".into())),
        sample_rate_hz: rate,
        encoding: AudioEncoding::PcmS16le as i32,
        ..Default::default()
    }
}

fn requests(
    config: TranscriptionConfig,
    audio: Vec<u8>,
    piece: usize,
) -> impl futures::Stream<Item = TranscribeRequest> + Send + 'static {
    let config = TranscribeRequest {
        message: Some(transcribe_request::Message::Config(config)),
    };
    let pieces: Vec<_> = audio.chunks(piece).map(|c| c.to_vec()).collect();
    futures::stream::iter(std::iter::once(config).chain(pieces.into_iter().map(|p| {
        TranscribeRequest {
            message: Some(transcribe_request::Message::Audio(p.into())),
        }
    })))
}

/// Segments and the summary of one call, or its error status.
async fn collect(
    mut client: TranscriberClient<TracedChannel>,
    input: impl futures::Stream<Item = TranscribeRequest> + Send + 'static,
) -> Result<(Vec<TranscriptSegment>, TranscriptionSummary), Status> {
    let mut responses = client.transcribe(input).await?.into_inner();
    let mut segments = Vec::new();
    while let Some(response) = responses.message().await? {
        match response {
            TranscribeResponse {
                message: Some(transcribe_response::Message::Segment(segment)),
            } => segments.push(segment),
            TranscribeResponse {
                message: Some(transcribe_response::Message::Summary(summary)),
            } => {
                assert!(responses.message().await?.is_none(), "the summary is last");
                return Ok((segments, summary));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("the stream ended without a summary")
}

fn detail(status: &Status) -> ErrorDetail {
    parley_proto::errors::detail(status).expect("an ErrorDetail")
}

#[tokio::test]
async fn a_voice_note_goes_through_the_transcoder_and_the_transcriber_to_text() {
    let harness = harness(TranscriberConfig::default()).await;
    let transcoder = harness.stack.endpoint(Component::Transcoder);
    let note = synth::encode_pcm(&dtmf("4271#", 48_000), 48_000).unwrap();

    // The transcoder's PCM output streams straight into the transcriber.
    let converted = TranscoderClient::connect(transcoder)
        .await
        .unwrap()
        .convert_stream(futures::stream::iter(
            parley_transcoder::client::convert_stream_requests(
                &note,
                InputSpec::default(),
                OutputSpec {
                    format: AudioFormat::PcmS16le as i32,
                    sample_rate_hz: 16_000,
                    ..Default::default()
                },
                4_096,
            )
            .collect::<Vec<_>>(),
        ))
        .await
        .unwrap()
        .into_inner();
    let pcm_bytes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = pcm_bytes.clone();
    let audio = converted.filter_map(move |response| {
        let counted = counted.clone();
        async move {
            match response.unwrap().message {
                Some(convert_stream_response::Message::Chunk(chunk)) => {
                    counted.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    Some(TranscribeRequest {
                        message: Some(transcribe_request::Message::Audio(chunk)),
                    })
                }
                Some(convert_stream_response::Message::Summary(tc::ConvertSummary { .. }))
                | Some(convert_stream_response::Message::Prelude(_))
                | None => None,
            }
        }
    });
    let config = TranscribeRequest {
        message: Some(transcribe_request::Message::Config(pcm_config(16_000))),
    };
    let (segments, summary) = collect(
        harness.client.clone(),
        futures::stream::once(async { config }).chain(audio),
    )
    .await
    .unwrap();

    assert_eq!(summary.transcript, "four two seven one hash");
    assert_eq!(summary.language_code, "en-US");
    assert_eq!(summary.segment_count, 1);
    assert!(!summary.session_id.is_empty());
    let pcm_ms = pcm_bytes.load(std::sync::atomic::Ordering::Relaxed) / 32;
    assert_eq!(summary.audio_duration_ms, pcm_ms, "every sample was sent");
    let partials: Vec<_> = segments.iter().filter(|s| s.is_partial).collect();
    assert!(partials.len() >= 3, "partials flow while audio is sent");
    let last = segments.last().unwrap();
    assert!(!last.is_partial && last.result_id == partials[0].result_id);
    assert!(last.end_s > last.start_s && last.confidence > 0.0);
    let request = &harness.stack.sandbox.sandbox.transcription_requests()[0].headers;
    assert_eq!(request["x-amzn-transcribe-media-encoding"], "pcm");
    assert_eq!(request["x-amzn-transcribe-sample-rate"], "16000");
}

#[tokio::test]
async fn ogg_opus_is_repaginated_and_every_option_reaches_the_request() {
    let harness = harness(TranscriberConfig::default()).await;
    let note = synth::encode_pcm(&dtmf("90*", 48_000), 48_000).unwrap();
    let config = TranscriptionConfig {
        language: Some(Language::IdentifyLanguage(LanguageIdentification {
            language_options: vec!["en-US".into(), "es-US".into()],
            preferred_language: "es-US".into(),
        })),
        sample_rate_hz: 48_000,
        encoding: AudioEncoding::OggOpus as i32,
        vocabulary_name: "parley-words".into(),
        pii_mode: PiiMode::Redact as i32,
        pii_entity_types: vec!["NAME".into(), "PHONE".into()],
        partial_stability: PartialStability::High as i32,
    };
    let note_ms = parley_transcoder::pipeline::probe(&note, Default::default())
        .unwrap()
        .duration_ms();
    let (_, summary) = collect(harness.client.clone(), requests(config, note, 333))
        .await
        .unwrap();
    assert_eq!(summary.transcript, "nine zero star");
    assert!(
        summary.audio_duration_ms.abs_diff(note_ms) <= 1,
        "{} ms reported for a {note_ms} ms note",
        summary.audio_duration_ms
    );
    assert_eq!(summary.language_code, "es-US", "the identified language");

    // Repaginated: the client's 333-byte pieces arrive at Transcribe as
    // events of whole OGG pages, each under a second of audio.
    let request = &harness.stack.sandbox.sandbox.transcription_requests()[0];
    assert!(
        request.audio_events.len() > 1,
        "{} events",
        request.audio_events.len()
    );
    let mut previous_granule = 0u64;
    for event in &request.audio_events {
        assert!(event.starts_with(b"OggS"), "an event starts with a page");
        assert_ne!(event.len(), 333, "events are not the client's pieces");
        let mut at = 0;
        let mut granules = Vec::new();
        while at < event.len() {
            assert_eq!(&event[at..at + 4], b"OggS", "whole pages only");
            granules.push(u64::from_le_bytes(
                event[at + 6..at + 14].try_into().unwrap(),
            ));
            let segments = usize::from(event[at + 26]);
            let body: usize = event[at + 27..at + 27 + segments]
                .iter()
                .map(|&s| usize::from(s))
                .sum();
            at += 27 + segments + body;
        }
        assert_eq!(at, event.len(), "no partial page");
        // Opus granules count 48 kHz samples: at most a second per event
        // (the header pages have granule 0).
        let last = *granules.iter().max().unwrap();
        if last > 0 {
            assert!(
                last - previous_granule <= 48_000,
                "{} samples in one event",
                last - previous_granule
            );
            previous_granule = last;
        }
    }
    let headers = &request.headers;
    for (name, value) in [
        ("x-amzn-transcribe-media-encoding", "ogg-opus"),
        ("x-amzn-transcribe-sample-rate", "48000"),
        ("x-amzn-transcribe-identify-language", "true"),
        ("x-amzn-transcribe-language-options", "en-US,es-US"),
        ("x-amzn-transcribe-preferred-language", "es-US"),
        ("x-amzn-transcribe-vocabulary-names", "parley-words"),
        ("x-amzn-transcribe-content-redaction-type", "PII"),
        ("x-amzn-transcribe-pii-entity-types", "NAME,PHONE"),
        (
            "x-amzn-transcribe-enable-partial-results-stabilization",
            "true",
        ),
        ("x-amzn-transcribe-partial-results-stability", "high"),
    ] {
        assert_eq!(headers.get(name).map(String::as_str), Some(value), "{name}");
    }
    assert!(!headers.contains_key("x-amzn-transcribe-language-code"));
}

#[tokio::test]
async fn every_transcribe_exception_maps_to_a_status_with_its_message() {
    let harness = harness(TranscriberConfig::default()).await;
    let audio = synth::to_le_bytes(&dtmf("12", 16_000));
    for (exception, code, reason) in [
        (
            "BadRequestException",
            Code::InvalidArgument,
            ErrorReason::InvalidRequest,
        ),
        (
            "LimitExceededException",
            Code::ResourceExhausted,
            ErrorReason::LimitExceeded,
        ),
        (
            "ServiceUnavailableException",
            Code::Unavailable,
            ErrorReason::Unavailable,
        ),
        ("ConflictException", Code::Aborted, ErrorReason::Unavailable),
        (
            "InternalFailureException",
            Code::Internal,
            ErrorReason::Unavailable,
        ),
    ] {
        // Refused at the start (an HTTP error) and failed mid-stream (an
        // exception frame) map the same way.
        for at_start in [true, false] {
            if at_start {
                harness
                    .stack
                    .sandbox
                    .sandbox
                    .refuse_next_transcription(exception);
            } else {
                harness
                    .stack
                    .sandbox
                    .sandbox
                    .fail_next_transcription(exception);
            }
            let status = collect(
                harness.client.clone(),
                requests(pcm_config(16_000), audio.clone(), 1_000),
            )
            .await
            .unwrap_err();
            assert_eq!(status.code(), code, "{exception} {at_start}: {status:?}");
            assert!(
                status.message().contains("failure injected by the sandbox"),
                "{exception}: the service's message is kept: {}",
                status.message()
            );
            let detail = detail(&status);
            assert_eq!(detail.aws_error_code, exception);
            assert_eq!(detail.reason, reason as i32, "{exception}");
        }
    }
    // The service still works afterwards.
    let (_, summary) = collect(
        harness.client.clone(),
        requests(pcm_config(16_000), audio, 1_000),
    )
    .await
    .unwrap();
    assert_eq!(summary.transcript, "one two");
}

#[tokio::test]
async fn bad_calls_get_clear_errors() {
    let harness = harness(TranscriberConfig::default()).await;
    let audio_first = futures::stream::iter([TranscribeRequest {
        message: Some(transcribe_request::Message::Audio(vec![0; 320].into())),
    }]);
    let status = collect(harness.client.clone(), audio_first)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("first message"),
        "{}",
        status.message()
    );

    let no_language = TranscriptionConfig {
        language: None,
        ..pcm_config(16_000)
    };
    let status = collect(
        harness.client.clone(),
        requests(no_language, vec![0; 320], 320),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let not_ogg = TranscriptionConfig {
        encoding: AudioEncoding::OggOpus as i32,
        ..pcm_config(48_000)
    };
    let status = collect(
        harness.client.clone(),
        requests(not_ogg, vec![7; 5_000], 500),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(detail(&status).reason, ErrorReason::InvalidMedia as i32);
    assert!(status.message().contains("OggS"), "{}", status.message());
}

#[tokio::test]
async fn a_gate_of_ten_carries_a_hundred_parallel_streams() {
    let harness = harness(TranscriberConfig {
        max_streams: 10,
        max_waiting: 100,
        max_wait: Duration::from_secs(60),
        options: parley_transcriber::transcription::TranscriptionOptions {
            // ~100 ms per stream, so unlimited streams would overlap widely.
            pacing: Pacing::RealTime { multiplier: 10.0 },
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let calls = (0..100).map(|i| {
        let keys = format!("{:02}", i);
        let audio = synth::to_le_bytes(&dtmf(&keys, 8_000));
        let client = harness.client.clone();
        tokio::spawn(async move {
            let (_, summary) = collect(client, requests(pcm_config(8_000), audio, 4_000)).await?;
            Ok::<_, Status>((keys, summary.transcript))
        })
    });
    let results = futures::future::join_all(calls).await;
    for result in results {
        let (keys, transcript) = result.unwrap().unwrap();
        let expected: Vec<_> = keys.chars().map(parley_sandbox::recognizer::word).collect();
        assert_eq!(transcript, expected.join(" "));
    }
    let peak = harness
        .stack
        .sandbox
        .sandbox
        .peak_concurrent_transcriptions();
    assert!(peak <= 10, "the gate held AWS to 10 streams, saw {peak}");
    assert!(peak >= 2, "streams did run in parallel ({peak})");
    assert_eq!(
        harness.stack.sandbox.sandbox.transcription_requests().len(),
        100
    );
    assert_eq!(
        (
            harness.service.gate().in_use(),
            harness.service.gate().waiting()
        ),
        (0, 0)
    );
}

#[tokio::test]
async fn an_overflowing_queue_gets_resource_exhausted_at_once() {
    let harness = harness(TranscriberConfig {
        max_streams: 1,
        max_waiting: 1,
        max_wait: Duration::from_secs(60),
        ..Default::default()
    })
    .await;
    let audio = synth::to_le_bytes(&dtmf("3", 16_000));
    // The first call holds the only stream: its audio is still "coming".
    let (hold, held_audio) = tokio::sync::mpsc::channel(4);
    hold.send(TranscribeRequest {
        message: Some(transcribe_request::Message::Config(pcm_config(16_000))),
    })
    .await
    .unwrap();
    hold.send(TranscribeRequest {
        message: Some(transcribe_request::Message::Audio(audio.clone().into())),
    })
    .await
    .unwrap();
    let first = tokio::spawn(collect(
        harness.client.clone(),
        tokio_stream::wrappers::ReceiverStream::new(held_audio),
    ));
    while harness.service.gate().in_use() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The second waits in the queue.
    let second = tokio::spawn(collect(
        harness.client.clone(),
        requests(pcm_config(16_000), audio.clone(), 1_000),
    ));
    while harness.service.gate().waiting() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The third finds the queue full.
    let status = collect(
        harness.client.clone(),
        requests(pcm_config(16_000), audio, 1_000),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(detail(&status).reason, ErrorReason::LimitExceeded as i32);
    assert!(status.message().contains("waiting"), "{}", status.message());

    drop(hold);
    assert_eq!(first.await.unwrap().unwrap().1.transcript, "three");
    assert_eq!(second.await.unwrap().unwrap().1.transcript, "three");
}

#[tokio::test]
async fn a_silent_client_holds_no_stream_and_is_ended() {
    let harness = harness(TranscriberConfig {
        max_streams: 1,
        max_waiting: 1,
        max_wait: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(800),
        ..Default::default()
    })
    .await;
    // Two clients send their config and then nothing, keeping their
    // streams open.
    let mut silent = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(TranscribeRequest {
            message: Some(transcribe_request::Message::Config(pcm_config(16_000))),
        })
        .await
        .unwrap();
        let call = tokio::spawn(collect(
            harness.client.clone(),
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ));
        silent.push((tx, call));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        harness.service.gate().in_use(),
        0,
        "silence holds no stream"
    );
    // The one stream there is still serves a client with audio.
    let audio = synth::to_le_bytes(&dtmf("5", 16_000));
    let (_, summary) = collect(
        harness.client.clone(),
        requests(pcm_config(16_000), audio, 1_000),
    )
    .await
    .expect("served while two clients sit silent");
    assert_eq!(summary.transcript, "five");
    // The silent ones are ended, with a reason.
    for (tx, call) in silent {
        let status = call.await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("sent nothing"),
            "{}",
            status.message()
        );
        drop(tx);
    }
}

#[tokio::test]
async fn a_note_cut_at_a_page_boundary_is_refused_not_transcribed_short() {
    let harness = harness(TranscriberConfig::default()).await;
    let mut samples = dtmf("42", 48_000);
    samples.extend(dtmf("7", 48_000));
    let note = synth::encode_pcm(&samples, 48_000).unwrap();
    // Whole pages, without the last one.
    let mut starts = Vec::new();
    let mut at = 0;
    while at + 27 <= note.len() {
        starts.push(at);
        let segments = usize::from(note[at + 26]);
        let body: usize = note[at + 27..at + 27 + segments]
            .iter()
            .map(|&s| usize::from(s))
            .sum();
        at += 27 + segments + body;
    }
    let cut = note[..*starts.last().unwrap()].to_vec();
    let config = TranscriptionConfig {
        encoding: AudioEncoding::OggOpus as i32,
        sample_rate_hz: 48_000,
        ..pcm_config(48_000)
    };
    let status = collect(harness.client.clone(), requests(config, cut, 700))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("end-of-stream"),
        "{}",
        status.message()
    );
}
