//! `parley-gateway`: the bridge between WhatsApp and Amazon Connect.

use std::{net::SocketAddr, process::ExitCode};

use clap::{Parser, Subcommand};
use parley_gateway::{config::GatewayConfig, load_routing, services::Services};

#[derive(Parser)]
#[command(
    name = "parley-gateway",
    version,
    about = "Parley's gateway: WhatsApp (End User Messaging Social) ⇄ Amazon Connect chat"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consume the configured queues, serve the HTTP source, and flush.
    Serve {
        /// Address of the HTTP source [env: PARLEY_LISTEN] [default: 0.0.0.0:8080]
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Validate the routing (PARLEY_ROUTING_FILE and PARLEY_DEFAULT_*) and exit.
    CheckRouting,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve { listen } => parley_runtime::process::exit(
            "parley-gateway",
            parley_runtime::process::block_on(parley_runtime::service::serve_from_env(
                "parley-gateway",
                "0.0.0.0:8080",
                listen,
                GatewayConfig::from_settings,
                async |listener, server, config, shutdown| {
                    let routing = load_routing(&config)?;
                    let services = Services::connect(&config)?;
                    parley_gateway::run(listener, server, config, services, routing, shutdown).await
                },
            )),
        ),
        Command::CheckRouting => parley_runtime::process::exit(
            "parley-gateway",
            (|| {
                let mut settings =
                    parley_runtime::config::Settings::new(&parley_runtime::config::ProcessEnv);
                let config = GatewayConfig::from_settings(&mut settings);
                settings.finish()?;
                load_routing(&config)?;
                println!("routing is valid");
                Ok(())
            })(),
        ),
    }
}
