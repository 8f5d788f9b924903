//! `parley-whatsapp-sender`: serve the WhatsAppSender gRPC API.

use std::{net::SocketAddr, process::ExitCode};

use clap::{Parser, Subcommand};
use parley_whatsapp_sender::sender::SenderConfig;

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

fn main() -> ExitCode {
    let Command::Serve { listen } = Cli::parse().command;
    parley_runtime::process::exit(
        "parley-whatsapp-sender",
        parley_runtime::process::block_on(parley_runtime::service::serve_from_env(
            "parley-whatsapp-sender",
            "0.0.0.0:50055",
            listen,
            SenderConfig::from_settings,
            parley_whatsapp_sender::run,
        )),
    )
}
