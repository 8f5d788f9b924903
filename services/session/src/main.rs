//! `parley-session`: serve the session gRPC API on the embedded store or
//! DynamoDB, or create the DynamoDB table for local use.

use std::{net::SocketAddr, process::ExitCode};

use clap::{Parser, Subcommand};
use parley_runtime::config::{ProcessEnv, Settings};
use parley_session::{Backend, SessionSettings};

#[derive(Parser)]
#[command(
    name = "parley-session",
    version,
    about = "Conversation state for Parley"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the parley.session.v1 gRPC API (with health and reflection).
    Serve {
        /// Address to listen on [env: PARLEY_LISTEN] [default: 0.0.0.0:50051]
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Create the DynamoDB table, its indexes and TTL (idempotent).
    CreateTables,
}

async fn create_tables() -> anyhow::Result<()> {
    let mut settings = Settings::new(&ProcessEnv);
    let config = SessionSettings::from_settings(&mut settings);
    settings.finish()?;
    let Backend::DynamoDb(table) = &config.backend else {
        anyhow::bail!("create-tables needs PARLEY_SESSION_BACKEND=dynamodb");
    };
    config.dynamo(table).await.create_table().await?;
    println!("table {table} is ready");
    Ok(())
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Serve { listen } => {
            parley_runtime::process::block_on(parley_runtime::service::serve_from_env(
                "parley-session",
                "0.0.0.0:50051",
                listen,
                SessionSettings::from_settings,
                parley_session::run,
            ))
        }
        Command::CreateTables => parley_runtime::process::block_on(create_tables()),
    };
    parley_runtime::process::exit("parley-session", outcome)
}
