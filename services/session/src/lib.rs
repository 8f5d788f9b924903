//! Parley's session service: every piece of conversation state the bridge
//! needs, so the gateway stays stateless.
//!
//! - **Active chats** per (business number, customer), found by conversation
//!   or by Connect contact id (current or initial, so transfers keep working).
//! - **Creation leases**: of any number of concurrent callers for a new
//!   customer, exactly one creates the Connect chat; the others wait and
//!   reuse it. A crashed holder's lease expires.
//! - **Message claims** for idempotent processing of WhatsApp and Connect
//!   message ids.
//! - **Message links**: WhatsApp message ids ↔ Connect message ids, both
//!   ways, so receipts, reactions and replies can name their message.
//! - **Pending buffers** per conversation and direction, for the gateway's
//!   debounce and ordering window: appended durably (completing the
//!   message's claim in the same transaction), taken as a lease, removed
//!   only when the flush is acknowledged.
//!
//! # Layout
//! - [`model`]: validated domain types; [`error`]: [`error::SessionError`].
//! - [`pending`]: the buffer rules as a pure state machine both backends
//!   apply.
//! - [`store`]: the [`store::SessionStore`] contract, implemented by
//!   [`embedded::EmbeddedStore`] (SQLite) and [`dynamo::DynamoStore`].
//! - [`grpc`]: the `parley.session.v1.Session` service.
//! - [`clock`]: epoch milliseconds.

pub mod clock;
pub mod dynamo;
pub mod embedded;
pub mod error;
pub mod grpc;
pub mod model;
pub mod pending;
pub mod store;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use parley_runtime::{
    config::Settings,
    server::{GrpcServer, ServerConfig},
};

/// Which store holds the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in this file.
    Embedded(PathBuf),
    /// SQLite in memory (gone when the process ends).
    InMemory,
    /// This DynamoDB table.
    DynamoDb(String),
}

/// Everything the session service needs to start.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// The store.
    pub backend: Backend,
    /// For DynamoDB: the AWS configuration; `None` loads the standard chain.
    pub aws: Option<aws_config::SdkConfig>,
    /// Defaults and caps.
    pub service: grpc::SessionConfig,
}

impl SessionSettings {
    /// Reads `PARLEY_SESSION_BACKEND` (`embedded`, `memory` or
    /// `dynamodb`), `PARLEY_SESSION_DB` and `PARLEY_SESSION_TABLE`.
    pub fn from_settings(settings: &mut Settings<'_>) -> Self {
        let table = settings
            .raw("session_table")
            .unwrap_or_else(|| "parley-sessions".into());
        let backend = match settings
            .raw("session_backend")
            .as_deref()
            .unwrap_or("embedded")
        {
            "embedded" => Backend::Embedded(
                settings
                    .raw("session_db")
                    .map_or_else(|| PathBuf::from("parley-data/session.db"), PathBuf::from),
            ),
            "memory" => Backend::InMemory,
            "dynamodb" if table.trim().is_empty() => {
                settings.problem("session_table", "must not be empty");
                Backend::DynamoDb(table)
            }
            "dynamodb" => Backend::DynamoDb(table),
            other => {
                settings.problem(
                    "session_backend",
                    format!("{other:?}: expected embedded, memory or dynamodb"),
                );
                Backend::InMemory
            }
        };
        Self {
            backend,
            aws: None,
            service: grpc::SessionConfig::default(),
        }
    }

    /// The DynamoDB store this configuration names (create-tables uses it).
    pub async fn dynamo(&self, table: &str) -> dynamo::DynamoStore {
        let aws = match &self.aws {
            Some(aws) => aws.clone(),
            None => aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await,
        };
        dynamo::DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table)
    }

    /// Opens the store.
    pub async fn open(&self) -> anyhow::Result<Arc<dyn store::SessionStore>> {
        Ok(match &self.backend {
            Backend::Embedded(path) => {
                let store = embedded::EmbeddedStore::open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                store.spawn_sweeper(Duration::from_secs(60));
                Arc::new(store)
            }
            Backend::InMemory => {
                let store = embedded::EmbeddedStore::in_memory()?;
                store.spawn_sweeper(Duration::from_secs(60));
                Arc::new(store)
            }
            Backend::DynamoDb(table) => Arc::new(self.dynamo(table).await),
        })
    }
}

/// Serves the session service on `listener` until `shutdown`.
pub async fn run(
    listener: tokio::net::TcpListener,
    server: ServerConfig,
    settings: SessionSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = settings.open().await?;
    tracing::info!(backend = ?settings.backend, "session store open");
    GrpcServer::new(server)
        .add_service(grpc::SessionService::new(store, settings.service).into_server())
        .serve(listener, shutdown)
        .await?;
    Ok(())
}
