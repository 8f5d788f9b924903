//! The transcriber benchmark: 30 s voice notes (16 kHz PCM) transcribed by
//! the sandbox's Transcribe emulator, once straight through the AWS SDK
//! (the floor) and once through Parley's transcriber over gRPC, at several
//! concurrencies; plus one note paced in real time as the AWS sample does.
//! Emulator, service and client share this machine, in one process.

use std::time::Instant;

use aws_sdk_transcribestreaming::{
    Client,
    primitives::Blob,
    types::{AudioEvent, AudioStream, LanguageCode, MediaEncoding, TranscriptResultStream},
};
use futures::StreamExt;
use parley_proto::transcriber::{
    AudioEncoding, TranscribeRequest, TranscriptionConfig, transcribe_request, transcribe_response,
    transcriber_client::TranscriberClient, transcription_config::Language,
};
use parley_runtime::server::{GrpcServer, ServerConfig};
use parley_sandbox::{SandboxConfig, recognizer};
use parley_transcriber::{
    backend::AwsTranscribe,
    grpc::{TranscriberConfig, TranscriberService},
    pacing::Pacing,
    transcription::TranscriptionOptions,
};
use tonic::transport::Channel;

use crate::percentile_ms as percentile;

const RATE: u32 = 16_000;

/// Options of the transcriber benchmark.
#[derive(clap::Args)]
pub struct Options {
    /// Notes per row.
    #[arg(long, default_value_t = 48)]
    notes: usize,
    /// Note length, seconds.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Concurrencies to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    concurrency: Vec<usize>,
    /// Skip the real-time-paced row (it takes one note's duration).
    #[arg(long)]
    skip_real_time: bool,
}

/// A note: spoken-like audio with DTMF digits at its start, so every run
/// checks the transcript came out right.
fn note(seconds: f64) -> (Vec<u8>, String) {
    let keys = "4096";
    let mut pcm = recognizer::dtmf(keys, RATE);
    let rest = (seconds - pcm.len() as f64 / f64::from(RATE)).max(0.0);
    pcm.extend(parley_transcoder::synth::speech_like(RATE, rest, 7));
    let words: Vec<_> = keys.chars().map(recognizer::word).collect();
    (parley_transcoder::synth::to_le_bytes(&pcm), words.join(" "))
}

/// Straight through the SDK, 100 ms events, unpaced.
async fn direct(client: Client, audio: std::sync::Arc<Vec<u8>>) -> String {
    let events: Vec<Result<AudioStream, _>> = audio
        .chunks(RATE as usize / 10 * 2)
        .map(|chunk| {
            Ok(AudioStream::AudioEvent(
                AudioEvent::builder()
                    .audio_chunk(Blob::new(chunk.to_vec()))
                    .build(),
            ))
        })
        .collect();
    let mut output = client
        .start_stream_transcription()
        .language_code(LanguageCode::EnUs)
        .media_sample_rate_hertz(RATE as i32)
        .media_encoding(MediaEncoding::Pcm)
        .audio_stream(futures::stream::iter(events).into())
        .send()
        .await
        .expect("stream starts");
    let mut text = String::new();
    while let Some(event) = output
        .transcript_result_stream
        .recv()
        .await
        .expect("results")
    {
        if let TranscriptResultStream::TranscriptEvent(event) = event {
            for result in event.transcript().map(|t| t.results()).unwrap_or_default() {
                if !result.is_partial() {
                    text = result.alternatives()[0]
                        .transcript()
                        .unwrap_or_default()
                        .to_owned();
                }
            }
        }
    }
    text
}

/// Through Parley's transcriber, sent in 64 KiB gRPC messages.
async fn via_parley(
    mut client: TranscriberClient<Channel>,
    audio: std::sync::Arc<Vec<u8>>,
) -> String {
    let config = TranscribeRequest {
        message: Some(transcribe_request::Message::Config(TranscriptionConfig {
            language: Some(Language::LanguageCode("en-US".into())),
            sample_rate_hz: RATE,
            encoding: AudioEncoding::PcmS16le as i32,
            ..Default::default()
        })),
    };
    let pieces: Vec<_> = audio
        .chunks(64 << 10)
        .map(|chunk| TranscribeRequest {
            message: Some(transcribe_request::Message::Audio(chunk.to_vec().into())),
        })
        .collect();
    let mut responses = client
        .transcribe(futures::stream::iter(std::iter::once(config).chain(pieces)))
        .await
        .expect("call starts")
        .into_inner();
    while let Some(response) = responses.message().await.expect("responses") {
        if let Some(transcribe_response::Message::Summary(summary)) = response.message {
            return summary.transcript;
        }
    }
    panic!("no summary")
}

/// Runs `notes` calls of `call`, `concurrency` at a time; prints a row.
async fn row<F, Fut>(name: &str, notes: usize, concurrency: usize, expected: &str, call: F) -> f64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = String> + Send + 'static,
{
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(notes);
    let mut calls = futures::stream::iter((0..notes).map(|_| {
        let call = call();
        async move {
            let began = Instant::now();
            let text = call.await;
            (began.elapsed(), text)
        }
    }))
    .buffer_unordered(concurrency);
    while let Some((latency, text)) = calls.next().await {
        assert_eq!(text, expected, "the transcript came out wrong");
        latencies.push(latency);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let p50 = percentile(&latencies, 0.50);
    let rate = notes as f64 / elapsed;
    let digits = if rate < 1.0 { 3 } else { 1 };
    println!(
        "| {name} | {concurrency} | {notes} | {rate:.digits$} notes/s | {p50:.1} ms | {:.1} ms |",
        percentile(&latencies, 0.99),
    );
    p50
}

/// Serves a transcriber over the emulator; returns a client.
async fn transcriber(endpoint: &str, pacing: Pacing) -> anyhow::Result<TranscriberClient<Channel>> {
    let aws = parley_sandbox::moto::aws_config(endpoint).await;
    let service = TranscriberService::new(
        AwsTranscribe::new(Client::new(&aws)),
        TranscriberConfig {
            max_streams: 64,
            options: TranscriptionOptions {
                pacing,
                ..Default::default()
            },
            ..Default::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(
        GrpcServer::new(ServerConfig::local(address))
            .add_service(service.into_server())
            .serve(listener, std::future::pending()),
    );
    let channel = Channel::from_shared(format!("http://{address}"))?
        .tcp_nodelay(true)
        .connect()
        .await?;
    Ok(TranscriberClient::new(channel).max_decoding_message_size(8 << 20))
}

/// Runs the benchmark and prints the table.
pub fn run(options: Options) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let sandbox =
            parley_sandbox::start("127.0.0.1:0".parse()?, SandboxConfig::default()).await?;
        let sdk = Client::new(&parley_sandbox::moto::aws_config(&sandbox.endpoint).await);
        let parley = transcriber(&sandbox.endpoint, Pacing::AsFastAsAccepted).await?;
        let (audio, expected) = note(options.seconds);
        let audio = std::sync::Arc::new(audio);
        println!(
            "{} s notes, 16 kHz PCM, 100 ms events; emulator, transcriber and client in one process on this {}-core machine\n",
            options.seconds,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!("| path | concurrent | notes | throughput | p50 | p99 |");
        println!("|---|---|---|---|---|---|");
        // Warm both paths (connections, allocators) before measuring.
        row("warm-up", 2, 1, &expected, || direct(sdk.clone(), audio.clone())).await;
        row("warm-up", 2, 1, &expected, || via_parley(parley.clone(), audio.clone())).await;
        for &concurrency in &options.concurrency {
            let floor = row("SDK → emulator", options.notes, concurrency, &expected, || {
                direct(sdk.clone(), audio.clone())
            })
            .await;
            let parley_p50 = row(
                "gRPC → transcriber → SDK → emulator",
                options.notes,
                concurrency,
                &expected,
                || via_parley(parley.clone(), audio.clone()),
            )
            .await;
            println!(
                "| added by the transcriber | {concurrency} | | | {:+.1} ms | |",
                parley_p50 - floor
            );
        }
        if !options.skip_real_time {
            let paced = transcriber(&sandbox.endpoint, Pacing::RealTime { multiplier: 1.0 }).await?;
            row("real-time pacing (the AWS sample's policy)", 1, 1, &expected, || {
                via_parley(paced.clone(), audio.clone())
            })
            .await;
        }
        anyhow::Ok(())
    })
}
