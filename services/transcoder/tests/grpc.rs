//! The gRPC service over a real loopback connection: unary, streaming (with
//! output flowing before the input is complete), probe, errors as statuses,
//! health and reflection.

mod common;

use std::net::SocketAddr;

use common::*;
use parley_proto::{
    common::{ErrorDetail, ErrorReason},
    transcoder::{
        AudioFormat as PbFormat, ConvertRequest, ConvertStart, ConvertStreamRequest, InputSpec,
        OutputSpec, ProbeRequest, convert_stream_request::Message as In,
        convert_stream_response::Message as Out, transcoder_client::TranscoderClient,
    },
};
use parley_runtime::server::{GrpcServer, ServerConfig};
use parley_transcoder::{
    audio::Limits,
    grpc::{TranscoderConfig, TranscoderService},
    synth,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, transport::Channel};

struct TestServer {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start_server(config: TranscoderConfig) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(
        GrpcServer::new(ServerConfig::local(address))
            .add_service(TranscoderService::new(config).into_server())
            .serve(listener, async {
                let _ = stopped.await;
            }),
    );
    TestServer {
        address,
        stop: Some(stop),
    }
}

async fn client(server: &TestServer) -> TranscoderClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", server.address))
        .unwrap()
        .connect()
        .await
        .unwrap();
    TranscoderClient::new(channel).max_decoding_message_size(64 << 20)
}

fn wav_16k() -> Option<OutputSpec> {
    Some(OutputSpec {
        format: PbFormat::Wav as i32,
        sample_rate_hz: 16_000,
        bitrate_bps: 0,
    })
}

fn detail(status: &tonic::Status) -> ErrorDetail {
    parley_proto::errors::detail(status).expect("status carries an ErrorDetail")
}

#[tokio::test]
async fn unary_convert_and_probe() {
    let server = start_server(TranscoderConfig::default()).await;
    let mut client = client(&server).await;
    let note = synth::voice_note(4.0, 16_000).unwrap();
    let response = client
        .convert(ConvertRequest {
            input: None,
            output: wav_16k(),
            audio: note.clone().into(),
        })
        .await
        .unwrap()
        .into_inner();
    let output = response.output.unwrap();
    assert_eq!(output.sample_rate_hz, 16_000);
    assert_eq!(output.sample_count, 64_000);
    assert_eq!(output.duration_ms, 4_000);
    let reader = hound::WavReader::new(&response.audio[..]).unwrap();
    assert_eq!(reader.len(), 64_000);
    let source = response.source.unwrap();
    assert_eq!(source.codec, "opus");
    assert_eq!(source.input_sample_rate_hz, 16_000);

    let info = client
        .probe(ProbeRequest { audio: note.into() })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(
        (
            info.container.as_str(),
            info.codec.as_str(),
            info.channels,
            info.duration_ms
        ),
        ("ogg", "opus", 1, 4_000)
    );
}

#[tokio::test]
async fn bad_input_is_invalid_argument_with_a_reason() {
    let server = start_server(TranscoderConfig::default()).await;
    let mut client = client(&server).await;
    let status = client
        .convert(ConvertRequest {
            input: None,
            output: wav_16k(),
            audio: b"definitely not audio".to_vec().into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("neither OGG nor WAV"),
        "{}",
        status.message()
    );
    assert_eq!(detail(&status).reason(), ErrorReason::InvalidMedia);

    let mut truncated = synth::voice_note(2.0, 16_000).unwrap();
    truncated.truncate(truncated.len() / 2);
    let status = client
        .probe(ProbeRequest {
            audio: truncated.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("truncated"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn limits_are_enforced_on_the_wire() {
    let server = start_server(TranscoderConfig {
        limits: Limits {
            max_input_bytes: 2_000,
            max_duration_ms: 60_000,
        },
        ..TranscoderConfig::default()
    })
    .await;
    let mut client = client(&server).await;
    let note = synth::voice_note(3.0, 16_000).unwrap();
    let status = client
        .convert_stream(tokio_stream::iter([ConvertStreamRequest {
            message: Some(In::Start(ConvertStart {
                input: None,
                output: wav_16k(),
                input_size_bytes: note.len() as u64,
                exact_size_header: false,
            })),
        }]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(detail(&status).reason(), ErrorReason::LimitExceeded);
}

#[tokio::test]
async fn streaming_output_flows_before_input_ends() {
    let server = start_server(TranscoderConfig {
        stream_chunk_bytes: 8 * 1024,
        ..TranscoderConfig::default()
    })
    .await;
    let mut client = client(&server).await;
    let note = synth::voice_note(20.0, 16_000).unwrap();
    let (tx, rx) = mpsc::channel(4);
    tx.send(ConvertStreamRequest {
        message: Some(In::Start(ConvertStart {
            input: Some(InputSpec::default()),
            output: Some(OutputSpec {
                format: PbFormat::PcmS16le as i32,
                sample_rate_hz: 16_000,
                bitrate_bps: 0,
            }),
            input_size_bytes: 0,
            exact_size_header: false,
        })),
    })
    .await
    .unwrap();
    let mut responses = client
        .convert_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let half = note.len() / 2;
    for chunk in note[..half].chunks(4096) {
        tx.send(ConvertStreamRequest {
            message: Some(In::Chunk(chunk.to_vec().into())),
        })
        .await
        .unwrap();
    }
    // With only half the input sent, output must already be arriving.
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), responses.message())
        .await
        .expect("output before the input ended")
        .unwrap()
        .unwrap();
    let mut pcm = match first.message {
        Some(Out::Chunk(chunk)) => chunk.to_vec(),
        other => panic!("expected a chunk first, got {other:?}"),
    };
    for chunk in note[half..].chunks(4096) {
        tx.send(ConvertStreamRequest {
            message: Some(In::Chunk(chunk.to_vec().into())),
        })
        .await
        .unwrap();
    }
    drop(tx);
    let mut summary = None;
    while let Some(message) = responses.message().await.unwrap() {
        match message.message {
            Some(Out::Chunk(chunk)) => pcm.extend_from_slice(&chunk),
            Some(Out::Summary(s)) => summary = Some(s),
            Some(Out::Prelude(_)) => panic!("no prelude was asked for"),
            None => {}
        }
    }
    let summary = summary.expect("a summary closes the stream");
    assert_eq!(pcm.len(), 20 * 16_000 * 2);
    assert_eq!(summary.output.unwrap().sample_count, 320_000);
    assert!(summary.final_header.is_empty(), "raw pcm has no header");
    // Same samples as the unary path.
    let (reference, _) = decode(&note, 16_000);
    assert_eq!(samples(&pcm), reference);
}

#[tokio::test]
async fn streaming_wav_carries_the_final_header() {
    let server = start_server(TranscoderConfig::default()).await;
    let mut client = client(&server).await;
    let note = synth::voice_note(2.0, 48_000).unwrap();
    let requests: Vec<_> = std::iter::once(ConvertStreamRequest {
        message: Some(In::Start(ConvertStart {
            input: None,
            output: wav_16k(),
            input_size_bytes: note.len() as u64,
            exact_size_header: false,
        })),
    })
    .chain(note.chunks(1000).map(|c| ConvertStreamRequest {
        message: Some(In::Chunk(c.to_vec().into())),
    }))
    .collect();
    let mut responses = client
        .convert_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut wav = Vec::new();
    let mut header = None;
    while let Some(message) = responses.message().await.unwrap() {
        match message.message {
            Some(Out::Chunk(c)) => wav.extend_from_slice(&c),
            Some(Out::Summary(s)) => header = Some(s.final_header),
            Some(Out::Prelude(_)) => panic!("no prelude was asked for"),
            None => {}
        }
    }
    let header = header.unwrap();
    assert_eq!(header.len(), 44);
    wav[..44].copy_from_slice(&header);
    let reader = hound::WavReader::new(&wav[..]).unwrap();
    assert_eq!(reader.len(), 32_000);
}

/// One decode, two outputs: with `exact_size_header` the size comes first
/// (Connect's attachment upload needs it), the header is exact as sent,
/// and everything after its 44 bytes is the PCM Transcribe takes.
#[tokio::test]
async fn exact_size_header_announces_the_output_before_the_audio() {
    let server = start_server(TranscoderConfig::default()).await;
    let mut client = client(&server).await;
    for (seconds, input_rate) in [(2.0, 48_000), (3.3, 16_000), (0.5, 8_000)] {
        let note = synth::voice_note(seconds, input_rate).unwrap();
        let requests: Vec<_> = std::iter::once(ConvertStreamRequest {
            message: Some(In::Start(ConvertStart {
                input: None,
                output: wav_16k(),
                input_size_bytes: note.len() as u64,
                exact_size_header: true,
            })),
        })
        .chain(note.chunks(700).map(|c| ConvertStreamRequest {
            message: Some(In::Chunk(c.to_vec().into())),
        }))
        .collect();
        let mut responses = client
            .convert_stream(tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        let prelude = match responses.message().await.unwrap().unwrap().message {
            Some(Out::Prelude(prelude)) => prelude,
            other => panic!("the prelude comes first, got {other:?}"),
        };
        let mut wav = Vec::new();
        let mut summary = None;
        while let Some(message) = responses.message().await.unwrap() {
            match message.message {
                Some(Out::Chunk(c)) => wav.extend_from_slice(&c),
                Some(Out::Summary(s)) => summary = Some(s),
                Some(Out::Prelude(_)) => panic!("a second prelude"),
                None => {}
            }
        }
        assert_eq!(
            wav.len() as u64,
            prelude.output_bytes,
            "{seconds} s at {input_rate}"
        );
        let summary = summary.unwrap();
        assert_eq!(
            &wav[..44],
            &summary.final_header[..],
            "the header sent first is exact"
        );
        let reader = hound::WavReader::new(&wav[..]).expect("a valid wav as streamed");
        assert_eq!(
            u64::from(reader.len()),
            prelude.output.unwrap().sample_count
        );
        // The bytes after the header are exactly the PCM of a separate decode.
        let (reference, _) = decode(&note, 16_000);
        assert_eq!(samples(&wav[44..]), reference);
    }
    // Only WAV output can be announced.
    let status = client
        .convert_stream(tokio_stream::iter([ConvertStreamRequest {
            message: Some(In::Start(ConvertStart {
                output: Some(OutputSpec {
                    format: PbFormat::OggOpus as i32,
                    ..OutputSpec::default()
                }),
                exact_size_header: true,
                ..ConvertStart::default()
            })),
        }]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

/// A client that opens a stream and goes quiet holds no worker, and is
/// ended after the idle timeout (reproduced: two silent clients with two
/// workers once blocked every other conversion indefinitely).
#[tokio::test]
async fn silent_stream_clients_hold_no_worker_and_are_ended() {
    let server = start_server(TranscoderConfig {
        workers: 1,
        stream_idle_timeout: std::time::Duration::from_millis(400),
        ..TranscoderConfig::default()
    })
    .await;
    let mut silent_clients = Vec::new();
    for _ in 0..2 {
        let mut silent = client(&server).await;
        let (tx, rx) = mpsc::channel(1);
        tx.send(ConvertStreamRequest {
            message: Some(In::Start(ConvertStart::default())),
        })
        .await
        .unwrap();
        let responses = silent
            .convert_stream(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        silent_clients.push((tx, responses));
    }
    // Meanwhile a real conversion goes through the one worker.
    let note = synth::voice_note(1.0, 16_000).unwrap();
    let started = std::time::Instant::now();
    let converted = client(&server)
        .await
        .convert(ConvertRequest {
            input: None,
            output: wav_16k(),
            audio: note.into(),
        })
        .await
        .unwrap();
    assert!(!converted.into_inner().audio.is_empty());
    assert!(
        started.elapsed() < std::time::Duration::from_millis(400),
        "the conversion did not wait for the silent clients"
    );
    for (_tx, mut responses) in silent_clients {
        let status = responses.message().await.unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert!(
            status.message().contains("no input"),
            "{}",
            status.message()
        );
    }
}

/// A unary conversion whose reply would be huge is refused before any
/// decoding (reproduced: a 20-minute note to 192 kHz built a 459 MB reply).
#[tokio::test]
async fn oversized_unary_outputs_are_refused_before_decoding() {
    let server = start_server(TranscoderConfig {
        max_unary_output_bytes: 1_000_000,
        ..TranscoderConfig::default()
    })
    .await;
    let mut client = client(&server).await;
    let note = synth::voice_note(30.0, 16_000).unwrap();
    let status = client
        .convert(ConvertRequest {
            input: None,
            output: Some(OutputSpec {
                format: PbFormat::Wav as i32,
                sample_rate_hz: 192_000,
                bitrate_bps: 0,
            }),
            audio: note.clone().into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(detail(&status).reason(), ErrorReason::LimitExceeded);
    assert!(
        status.message().contains("ConvertStream"),
        "{}",
        status.message()
    );
    // The same note at 16 kHz fits.
    assert!(
        client
            .convert(ConvertRequest {
                input: None,
                output: wav_16k(),
                audio: note.into(),
            })
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn streaming_protocol_errors() {
    let server = start_server(TranscoderConfig::default()).await;
    let mut client = client(&server).await;
    // A chunk before the start.
    let status = client
        .convert_stream(tokio_stream::iter([ConvertStreamRequest {
            message: Some(In::Chunk(vec![1, 2, 3].into())),
        }]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("ConvertStart"));

    // Corrupt media mid-stream: the stream ends with INVALID_ARGUMENT.
    let mut note = synth::voice_note(2.0, 16_000).unwrap();
    let page = page_offsets(&note)[2];
    note[page + 30] ^= 0xff;
    let requests = vec![
        ConvertStreamRequest {
            message: Some(In::Start(ConvertStart::default())),
        },
        ConvertStreamRequest {
            message: Some(In::Chunk(note.into())),
        },
    ];
    let mut responses = client
        .convert_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let status = loop {
        match responses.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("corrupt input converted"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("corrupt ogg"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let server = start_server(TranscoderConfig::default()).await;
    let channel = Channel::from_shared(format!("http://{}", server.address))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "parley.transcoder.v1.Transcoder".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(channel);
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"parley.transcoder.v1.Transcoder"),
        "{names:?}"
    );
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
}
