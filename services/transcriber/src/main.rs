//! `parley-transcriber`: serve the Transcriber gRPC API.

use std::{net::SocketAddr, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use parley_runtime::{
    config::{ProcessEnv, Settings},
    server::{GrpcServer, ServerConfig},
    telemetry::{self, TelemetryConfig},
};
use parley_transcriber::{
    backend::AwsTranscribe,
    grpc::{TranscriberConfig, TranscriberService},
};

#[derive(Parser)]
#[command(
    name = "parley-transcriber",
    version,
    about = "Voice notes to text with Amazon Transcribe Streaming"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the parley.transcriber.v1 gRPC API (with health and reflection).
    Serve {
        /// Address to listen on [env: PARLEY_LISTEN] [default: 0.0.0.0:50053]
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
}

async fn serve(listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let env = ProcessEnv;
    let mut settings = Settings::new(&env);
    let telemetry_config = TelemetryConfig::from_settings(&mut settings, "parley-transcriber");
    let mut server = ServerConfig::from_settings(&mut settings, "0.0.0.0:50053".parse()?);
    let config = TranscriberConfig::from_settings(&mut settings);
    settings.finish()?;
    if let Some(listen) = listen {
        server.listen = listen;
    }
    let _telemetry = telemetry::init(&telemetry_config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let backend = AwsTranscribe::new(aws_sdk_transcribestreaming::Client::new(&aws));
    let listener = tokio::net::TcpListener::bind(server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", server.listen))?;
    tracing::info!(address = %listener.local_addr()?, "parley-transcriber serving");
    GrpcServer::new(server)
        .add_service(TranscriberService::new(backend, config).into_server())
        .serve(listener, parley_runtime::shutdown_signal())
        .await?;
    Ok(())
}

fn main() -> ExitCode {
    let Command::Serve { listen } = Cli::parse().command;
    parley_runtime::process::exit(
        "parley-transcriber",
        parley_runtime::process::block_on(serve(listen)),
    )
}
