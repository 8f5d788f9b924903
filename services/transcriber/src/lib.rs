//! Parley's transcriber: voice notes to text with Amazon Transcribe
//! Streaming, as a bidirectional gRPC stream.
//!
//! - [`settings`]: the client's config, validated.
//! - [`chunker`]: audio of any piece size → 50–200 ms events (PCM cut at
//!   samples, OGG/Opus re-paginated), never over one second.
//! - [`pacing`]: unpaced by default, or a multiple of real time.
//! - [`gate`]: the concurrency gate with its bounded wait queue.
//! - [`backend`]: the speech-to-text trait and its AWS implementation.
//! - [`transcription`]: one transcription, audio in and segments out.
//! - [`grpc`]: the tonic service.
//! - [`error`]: the error type and its gRPC statuses.

pub mod backend;
pub mod chunker;
pub mod error;
pub mod gate;
pub mod grpc;
pub mod pacing;
pub mod settings;
pub mod transcription;

use parley_runtime::{
    config::Settings,
    server::{GrpcServer, ServerConfig},
};

/// Everything the transcriber needs to start.
#[derive(Debug, Clone)]
pub struct TranscriberSettings {
    /// Limits, gate and pacing.
    pub service: grpc::TranscriberConfig,
    /// The AWS configuration; `None` loads the standard chain at start.
    pub aws: Option<aws_config::SdkConfig>,
}

impl TranscriberSettings {
    /// Reads the `PARLEY_TRANSCRIBE_*` settings.
    pub fn from_settings(settings: &mut Settings<'_>) -> Self {
        Self {
            service: grpc::TranscriberConfig::from_settings(settings),
            aws: None,
        }
    }
}

/// Serves the transcriber on `listener` until `shutdown`.
pub async fn run(
    listener: tokio::net::TcpListener,
    server: ServerConfig,
    settings: TranscriberSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let aws = match &settings.aws {
        Some(aws) => aws.clone(),
        None => aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await,
    };
    let backend = backend::AwsTranscribe::new(aws_sdk_transcribestreaming::Client::new(&aws));
    GrpcServer::new(server)
        .add_service(grpc::TranscriberService::new(backend, settings.service).into_server())
        .serve(listener, shutdown)
        .await?;
    Ok(())
}
