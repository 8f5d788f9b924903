//! Parley's connect-relay: everything Parley does in an Amazon Connect chat
//! on the customer's behalf, through the real `aws-sdk-connect` and
//! `aws-sdk-connectparticipant` clients.
//!
//! # Layout
//! - [`relay`]: the calls — start chat (and connect), send, attachments in
//!   and out, events, refresh, disconnect.
//! - [`error`]: [`error::RelayError`], in the terms the gateway acts on.
//! - [`grpc`]: the `parley.connect.v1.ConnectRelay` service.

pub mod error;
pub mod grpc;
pub mod relay;

use parley_runtime::server::{GrpcServer, ServerConfig};

/// Serves the relay on `listener` until `shutdown`, after checking
/// `config` (every problem reported at once).
pub async fn run(
    listener: tokio::net::TcpListener,
    server: ServerConfig,
    config: relay::RelayConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    parley_runtime::config::refuse_problems(config.problems())?;
    let aws = match &config.aws {
        Some(aws) => aws.clone(),
        None => aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await,
    };
    let relay = relay::Relay::new(
        aws_sdk_connect::Client::new(&aws),
        aws_sdk_connectparticipant::Client::new(&aws),
        config,
    );
    GrpcServer::new(server)
        .add_service(grpc::RelayService::new(relay).into_server())
        .serve(listener, shutdown)
        .await?;
    Ok(())
}
