//! The README's first command: the transcoder service running for real on
//! loopback, converting a voice note it generates, through its gRPC API.

use std::{path::Path, time::Instant};

use anyhow::Context as _;
use parley_proto::transcoder::{
    AudioFormat as PbFormat, ConvertRequest, InputSpec, OutputSpec, ProbeRequest,
    convert_stream_response, transcoder_client::TranscoderClient,
};
use parley_runtime::{
    client::{ClientConfig, connect_lazy},
    server::{GrpcServer, ServerConfig},
    telemetry::{self, LogFormat, TelemetryConfig},
};
use parley_transcoder::{
    client::convert_stream_requests,
    grpc::{TranscoderConfig, TranscoderService},
    synth,
};
use tonic_health_client::check_serving;

/// A tiny health check so the demo waits for the server like a load balancer would.
mod tonic_health_client {
    use tonic::transport::Channel;

    /// Polls `grpc.health.v1.Health/Check` until the server reports SERVING.
    pub async fn check_serving(channel: Channel) -> anyhow::Result<()> {
        use tonic_health::pb::{
            HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
        };
        let mut client = HealthClient::new(channel);
        for _ in 0..50 {
            if let Ok(response) = client
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                && response.into_inner().status() == ServingStatus::Serving
            {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        anyhow::bail!("the server never reported SERVING")
    }
}

pub async fn run(seconds: f64, out_dir: &Path) -> anyhow::Result<()> {
    let _telemetry = telemetry::init(&TelemetryConfig {
        service_name: "parley-transcoder-demo".into(),
        log_format: LogFormat::Pretty,
        log_filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        trace_filter: "info".into(),
        otlp_endpoint: std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok(),
        metrics_listen: None,
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;

    // 1. The service, on an ephemeral loopback port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        GrpcServer::new(ServerConfig::local(address))
            .add_service(TranscoderService::new(TranscoderConfig::default()).into_server())
            .serve(listener, async {
                let _ = stop_rx.await;
            }),
    );
    let endpoint = format!("http://{address}");
    check_serving(tonic::transport::Channel::from_shared(endpoint.clone())?.connect_lazy()).await?;
    println!("parley-transcoder serving gRPC on {address} (health: SERVING)");
    let mut client = TranscoderClient::new(connect_lazy(&ClientConfig::new(endpoint))?)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);

    // 2. A WhatsApp-style voice note: speech-like audio at 16 kHz, OGG/Opus ~24 kbps.
    let note = synth::voice_note(seconds, 16_000)?;
    let note_path = out_dir.join("voice-note.ogg");
    std::fs::write(&note_path, &note)?;
    println!(
        "generated {} ({} bytes, {seconds} s)",
        note_path.display(),
        note.len()
    );

    // 3. Probe.
    let info = client
        .probe(ProbeRequest {
            audio: note.clone().into(),
        })
        .await?
        .into_inner()
        .info
        .context("probe returned no info")?;
    println!(
        "probe: {} {} {} ch, input rate {} Hz, {} ms",
        info.container, info.codec, info.channels, info.input_sample_rate_hz, info.duration_ms
    );

    // 4. Unary convert to WAV 16 kHz: what Amazon Connect gets as an attachment.
    let started = Instant::now();
    let converted = client
        .convert(ConvertRequest {
            input: Some(InputSpec::default()),
            output: Some(OutputSpec {
                format: PbFormat::Wav as i32,
                sample_rate_hz: 16_000,
                bitrate_bps: 0,
            }),
            audio: note.clone().into(),
        })
        .await?
        .into_inner();
    let unary_ms = started.elapsed().as_secs_f64() * 1000.0;
    let wav_path = out_dir.join("voice-note.wav");
    std::fs::write(&wav_path, &converted.audio)?;
    let output = converted.output.context("no output info")?;
    println!(
        "convert (unary): {} → {} ({} samples at {} Hz, {} ms) in {unary_ms:.1} ms",
        note_path.display(),
        wav_path.display(),
        output.sample_count,
        output.sample_rate_hz,
        output.duration_ms
    );

    // 5. Streaming convert to raw PCM: what Amazon Transcribe gets, chunk by chunk.
    let started = Instant::now();
    let requests = convert_stream_requests(
        &note,
        InputSpec::default(),
        OutputSpec {
            format: PbFormat::PcmS16le as i32,
            sample_rate_hz: 16_000,
            bitrate_bps: 0,
        },
        16 * 1024,
    )
    .collect::<Vec<_>>();
    let mut responses = client
        .convert_stream(tokio_stream::iter(requests))
        .await?
        .into_inner();
    let (mut pcm_bytes, mut pieces, mut first_chunk_ms) = (0usize, 0usize, None);
    let mut summary = None;
    while let Some(message) = responses.message().await? {
        match message.message {
            Some(convert_stream_response::Message::Chunk(chunk)) => {
                first_chunk_ms.get_or_insert(started.elapsed().as_secs_f64() * 1000.0);
                pcm_bytes += chunk.len();
                pieces += 1;
            }
            Some(convert_stream_response::Message::Summary(s)) => summary = Some(s),
            Some(convert_stream_response::Message::Prelude(_)) | None => {}
        }
    }
    let summary = summary.context("stream ended without a summary")?;
    println!(
        "convert (stream): {pcm_bytes} bytes of s16le in {pieces} chunks, first after {:.1} ms, done in {:.1} ms ({} ms of audio)",
        first_chunk_ms.unwrap_or_default(),
        started.elapsed().as_secs_f64() * 1000.0,
        summary.output.map(|o| o.duration_ms).unwrap_or_default()
    );

    // 6. And back: the WAV as a WhatsApp voice note.
    let reply = client
        .convert(ConvertRequest {
            input: Some(InputSpec::default()),
            output: Some(OutputSpec {
                format: PbFormat::OggOpus as i32,
                sample_rate_hz: 0,
                bitrate_bps: 24_000,
            }),
            audio: converted.audio,
        })
        .await?
        .into_inner();
    let reply_path = out_dir.join("reply.ogg");
    std::fs::write(&reply_path, &reply.audio)?;
    println!(
        "convert (encode): {} → {} ({} bytes, {} ms, audio/ogg; codecs=opus)",
        wav_path.display(),
        reply_path.display(),
        reply.audio.len(),
        reply.output.map(|o| o.duration_ms).unwrap_or_default()
    );

    let _ = stop_tx.send(());
    server.await??;
    println!("server drained and stopped");
    Ok(())
}
