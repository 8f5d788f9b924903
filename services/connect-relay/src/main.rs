//! `parley-connect-relay`: serve the ConnectRelay gRPC API.

use std::{net::SocketAddr, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use parley_connect_relay::{
    grpc::RelayService,
    relay::{Relay, RelayConfig},
};
use parley_runtime::{
    config::{ProcessEnv, Settings},
    server::{GrpcServer, ServerConfig},
    telemetry::{self, TelemetryConfig},
};

#[derive(Parser)]
#[command(
    name = "parley-connect-relay",
    version,
    about = "Amazon Connect chat for Parley"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the parley.connect.v1 gRPC API (with health and reflection).
    Serve {
        /// Address to listen on [env: PARLEY_LISTEN] [default: 0.0.0.0:50054]
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
}

async fn serve(listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let env = ProcessEnv;
    let mut settings = Settings::new(&env);
    let telemetry_config = TelemetryConfig::from_settings(&mut settings, "parley-connect-relay");
    let mut server = ServerConfig::from_settings(&mut settings, "0.0.0.0:50054".parse()?);
    let defaults = RelayConfig::default();
    let config = RelayConfig {
        instance_id: settings.raw("connect_instance_id").unwrap_or_default(),
        contact_flow_id: settings.raw("connect_contact_flow_id").unwrap_or_default(),
        streaming_topic_arn: settings
            .raw("connect_streaming_topic_arn")
            .unwrap_or_default(),
        chat_duration_minutes: settings.parse(
            "connect_chat_duration_minutes",
            defaults.chat_duration_minutes,
        ),
        allowed_url_host_suffixes: defaults.allowed_url_host_suffixes,
        local_origin: settings.raw("connect_local_origin").unwrap_or_default(),
    };
    if !(60..=10_080).contains(&config.chat_duration_minutes) {
        settings.problem("connect_chat_duration_minutes", "must be within 60..=10080");
    }
    settings.finish()?;
    if let Some(listen) = listen {
        server.listen = listen;
    }
    let _telemetry = telemetry::init(&telemetry_config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let relay = Relay::new(
        aws_sdk_connect::Client::new(&aws),
        aws_sdk_connectparticipant::Client::new(&aws),
        config,
    );
    let listener = tokio::net::TcpListener::bind(server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", server.listen))?;
    tracing::info!(address = %listener.local_addr()?, "parley-connect-relay serving");
    GrpcServer::new(server)
        .add_service(RelayService::new(relay).into_server())
        .serve(listener, parley_runtime::shutdown_signal())
        .await?;
    Ok(())
}

fn main() -> ExitCode {
    let Command::Serve { listen } = Cli::parse().command;
    parley_runtime::process::exit(
        "parley-connect-relay",
        parley_runtime::process::block_on(serve(listen)),
    )
}
