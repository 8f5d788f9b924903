//! `parley-connect-relay`: serve the ConnectRelay gRPC API.

use std::{net::SocketAddr, process::ExitCode};

use clap::{Parser, Subcommand};
use parley_connect_relay::relay::RelayConfig;

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

fn main() -> ExitCode {
    let Command::Serve { listen } = Cli::parse().command;
    parley_runtime::process::exit(
        "parley-connect-relay",
        parley_runtime::process::block_on(parley_runtime::service::serve_from_env(
            "parley-connect-relay",
            "0.0.0.0:50054",
            listen,
            RelayConfig::from_settings,
            parley_connect_relay::run,
        )),
    )
}
