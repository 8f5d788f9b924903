//! Parley's transcoder: OGG/Opus (WhatsApp voice notes) to WAV or raw PCM
//! (Amazon Connect attachments, Amazon Transcribe) and back, as a library, a
//! gRPC service and a command-line tool.
//!
//! Every conversion is one pipeline — source → (resampler) → sink — that
//! reads from any `Read` and writes to any `Write`, so files, buffers and
//! gRPC streams share the same code and memory stays bounded.
//!
//! # Layout
//! - [`audio`]: formats, specs, limits and facts (domain types).
//! - [`pipeline`]: [`pipeline::convert`], [`pipeline::convert_buffer`] and
//!   [`pipeline::probe`], the entry points.
//! - [`ogg_reader`], [`opus_header`], [`decode`]: OGG demux and Opus decode.
//! - [`pcm`]: WAV/raw PCM sources and sinks; [`encode`]: the Opus sink.
//! - [`resample`]: rate conversion with rubato; [`pool`]: per-thread reuse
//!   of decoders and resamplers.
//! - [`io`]: size limits and channel-backed readers and writers.
//! - [`grpc`]: the `parley.transcoder.v1.Transcoder` service; [`client`]:
//!   helpers for its callers.
//! - [`synth`]: deterministic test audio.
//! - [`error`]: the one error type, [`TranscodeError`].

pub mod audio;
pub mod client;
pub mod decode;
pub mod encode;
pub mod error;
pub mod grpc;
pub mod io;
pub mod ogg_reader;
pub mod opus_header;
pub mod pcm;
pub mod pipeline;
pub mod pool;
pub mod resample;
pub mod synth;

pub use error::TranscodeError;

/// Serves the transcoder on `listener` until `shutdown`.
pub async fn run(
    listener: tokio::net::TcpListener,
    server: parley_runtime::server::ServerConfig,
    config: grpc::TranscoderConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(workers = config.workers, "transcoder workers");
    parley_runtime::server::GrpcServer::new(server)
        .add_service(grpc::TranscoderService::new(config).into_server())
        .serve(listener, shutdown)
        .await?;
    Ok(())
}
