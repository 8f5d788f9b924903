//! `parley-transcriber`: serve the Transcriber gRPC API.

use std::{net::SocketAddr, process::ExitCode};

use clap::{Parser, Subcommand};
use parley_transcriber::TranscriberSettings;

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

fn main() -> ExitCode {
    let Command::Serve { listen } = Cli::parse().command;
    parley_runtime::process::exit(
        "parley-transcriber",
        parley_runtime::process::block_on(parley_runtime::service::serve_from_env(
            "parley-transcriber",
            "0.0.0.0:50053",
            listen,
            TranscriberSettings::from_settings,
            parley_transcriber::run,
        )),
    )
}
