//! `parley-session`: serve the session gRPC API on the embedded store or
//! DynamoDB, or create the DynamoDB table for local use.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use parley_runtime::{
    config::{ProcessEnv, Settings},
    server::{GrpcServer, ServerConfig},
    telemetry::{self, TelemetryConfig},
};
use parley_session::{
    dynamo::DynamoStore,
    embedded::EmbeddedStore,
    grpc::{SessionConfig, SessionService},
    store::SessionStore,
};

const DEFAULT_LISTEN: &str = "0.0.0.0:50051";

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

/// Which store holds the state.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Backend {
    Embedded(PathBuf),
    DynamoDb(String),
}

fn backend(settings: &mut Settings<'_>) -> Backend {
    let table = settings
        .raw("session_table")
        .unwrap_or_else(|| "parley-sessions".into());
    match settings
        .raw("session_backend")
        .as_deref()
        .unwrap_or("embedded")
    {
        "embedded" => Backend::Embedded(
            settings
                .raw("session_db")
                .map_or_else(|| PathBuf::from("parley-data/session.db"), PathBuf::from),
        ),
        "dynamodb" => Backend::DynamoDb(table),
        other => {
            settings.problem(
                "session_backend",
                format!("{other:?}: expected embedded or dynamodb"),
            );
            Backend::Embedded(PathBuf::new())
        }
    }
}

async fn dynamo(table: &str) -> DynamoStore {
    // Region, credentials and AWS_ENDPOINT_URL[_DYNAMODB] come from the
    // standard AWS configuration chain.
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), table)
}

async fn run(command: Command) -> anyhow::Result<()> {
    let env = ProcessEnv;
    let mut settings = Settings::new(&env);
    let telemetry_config = TelemetryConfig::from_settings(&mut settings, "parley-session");
    let mut server_config = ServerConfig::from_settings(&mut settings, DEFAULT_LISTEN.parse()?);
    let backend = backend(&mut settings);
    settings.finish()?;
    let _telemetry = telemetry::init(&telemetry_config).map_err(|e| anyhow::anyhow!("{e}"))?;

    match command {
        Command::CreateTables => {
            let Backend::DynamoDb(table) = backend else {
                anyhow::bail!("create-tables needs PARLEY_SESSION_BACKEND=dynamodb");
            };
            dynamo(&table).await.create_table().await?;
            println!("table {table} is ready");
            Ok(())
        }
        Command::Serve { listen } => {
            if let Some(listen) = listen {
                server_config.listen = listen;
            }
            let store: Arc<dyn SessionStore> = match &backend {
                Backend::Embedded(path) => {
                    let store = EmbeddedStore::open(path)
                        .with_context(|| format!("opening {}", path.display()))?;
                    store.spawn_sweeper(Duration::from_secs(60));
                    Arc::new(store)
                }
                Backend::DynamoDb(table) => Arc::new(dynamo(table).await),
            };
            let listener = tokio::net::TcpListener::bind(server_config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", server_config.listen))?;
            tracing::info!(address = %listener.local_addr()?, backend = ?backend, "parley-session serving");
            GrpcServer::new(server_config)
                .add_service(SessionService::new(store, SessionConfig::default()).into_server())
                .serve(listener, parley_runtime::shutdown_signal())
                .await?;
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    parley_runtime::process::exit(
        "parley-session",
        parley_runtime::process::block_on(run(cli.command)),
    )
}
