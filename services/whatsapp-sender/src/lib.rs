//! Parley's whatsapp-sender: every message Parley sends to WhatsApp, and
//! every media object it moves in or out, through the real
//! `aws-sdk-socialmessaging` and `aws-sdk-s3` clients.
//!
//! # Layout
//! - [`message`]: Meta Cloud API payloads for text (split at 4,096
//!   characters), quoted replies, reactions, media by id, interactive
//!   buttons and lists, templates, read receipts.
//! - [`media`]: WhatsApp's media types and size limits.
//! - [`sender`]: the calls — send (every part effectively-once through the
//!   [`ledger`]), upload via the media bucket (streamed), download.
//! - [`error`]: [`error::SenderError`]; [`grpc`]: the service.

pub mod error;
pub mod grpc;
pub mod ledger;
pub mod media;
pub mod message;
pub mod sender;

use std::sync::Arc;

use parley_runtime::server::{GrpcServer, ServerConfig};

/// Serves the sender on `listener` until `shutdown`, after checking
/// `config` (every problem reported at once).
pub async fn run(
    listener: tokio::net::TcpListener,
    server: ServerConfig,
    config: sender::SenderConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    parley_runtime::config::refuse_problems(config.problems())?;
    let aws = match &config.aws {
        Some(aws) => aws.clone(),
        None => aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await,
    };
    let mut s3 = aws_sdk_s3::config::Builder::from(&aws)
        .force_path_style(true)
        // Plain Content-Length PUTs: a streamed body of known length needs
        // no aws-chunked encoding (and every S3 stand-in takes it).
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired);
    if let Some(endpoint) = &config.s3_endpoint {
        s3 = s3.endpoint_url(endpoint);
    }
    let ledger: Arc<dyn ledger::SendLedger> = match &config.session {
        Some(session) => Arc::new(ledger::SessionLedger::new(
            Arc::new(parley_client::GrpcSession::new(
                parley_client::channel::connect(session)?,
                parley_client::CallPolicy::default(),
            )),
            config.ledger_claim_timeout,
        )),
        None => {
            tracing::warn!(
                "no session service configured (PARLEY_SESSION_ENDPOINT): sends are idempotent only within this process"
            );
            Arc::new(ledger::MemoryLedger::default())
        }
    };
    let sender = sender::Sender::new(
        aws_sdk_socialmessaging::Client::new(&aws),
        aws_sdk_s3::Client::from_conf(s3.build()),
        ledger,
        config,
    );
    GrpcServer::new(server)
        .add_service(grpc::SenderService::new(sender).into_server())
        .serve(listener, shutdown)
        .await?;
    Ok(())
}
