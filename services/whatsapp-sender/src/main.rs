//! `parley-whatsapp-sender`: serve the WhatsAppSender gRPC API.

use std::{net::SocketAddr, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use parley_runtime::{
    config::{ProcessEnv, Settings},
    server::{GrpcServer, ServerConfig},
    telemetry::{self, TelemetryConfig},
};
use parley_whatsapp_sender::{
    grpc::SenderService,
    sender::{Sender, SenderConfig},
};

#[derive(Parser)]
#[command(
    name = "parley-whatsapp-sender",
    version,
    about = "WhatsApp via AWS End User Messaging Social for Parley"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the parley.whatsapp.v1 gRPC API (with health and reflection).
    Serve {
        /// Address to listen on [env: PARLEY_LISTEN] [default: 0.0.0.0:50055]
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
}

async fn serve(listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let env = ProcessEnv;
    let mut settings = Settings::new(&env);
    let telemetry_config = TelemetryConfig::from_settings(&mut settings, "parley-whatsapp-sender");
    let mut server = ServerConfig::from_settings(&mut settings, "0.0.0.0:50055".parse()?);
    let defaults = SenderConfig::default();
    let mut number_map = std::collections::HashMap::new();
    for pair in settings
        .raw("whatsapp_number_map")
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.trim().is_empty())
    {
        match pair.split_once('=') {
            Some((meta, eum)) => {
                number_map.insert(meta.trim().to_owned(), eum.trim().to_owned());
            }
            None => settings.problem(
                "whatsapp_number_map",
                format!("{pair:?} is not meta_id=phone-number-id-…"),
            ),
        }
    }
    let config = SenderConfig {
        meta_api_version: settings
            .raw("whatsapp_meta_api_version")
            .unwrap_or(defaults.meta_api_version),
        media_bucket: settings.raw("whatsapp_media_bucket").unwrap_or_default(),
        media_prefix: settings
            .raw("whatsapp_media_prefix")
            .unwrap_or(defaults.media_prefix),
        number_map,
    };
    settings.finish()?;
    if let Some(listen) = listen {
        server.listen = listen;
    }
    let _telemetry = telemetry::init(&telemetry_config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&aws)
            .force_path_style(true)
            .build(),
    );
    let sender = Sender::new(aws_sdk_socialmessaging::Client::new(&aws), s3, config);
    let listener = tokio::net::TcpListener::bind(server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", server.listen))?;
    tracing::info!(address = %listener.local_addr()?, "parley-whatsapp-sender serving");
    GrpcServer::new(server)
        .add_service(SenderService::new(sender).into_server())
        .serve(listener, parley_runtime::shutdown_signal())
        .await?;
    Ok(())
}

fn main() -> ExitCode {
    let Command::Serve { listen } = Cli::parse().command;
    parley_runtime::process::exit(
        "parley-whatsapp-sender",
        parley_runtime::process::block_on(serve(listen)),
    )
}
