//! The embedded backend: SQLite (bundled) in one file, for local runs and
//! small deployments. Transactions give the same conditional semantics as
//! DynamoDB's conditional writes; expired rows are invisible to reads and
//! swept periodically.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::{
    error::{Result, SessionError},
    model::{
        ActiveChat, ClaimOutcome, ConversationKey, Lease, LeaseAttempt, MessageOrigin, Millis,
        PendingMessage, PendingState,
    },
    store::{SessionStore, millis, new_token},
};

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS chats (
    conv TEXT PRIMARY KEY,
    business TEXT NOT NULL,
    customer TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    initial_contact_id TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    participant_token TEXT NOT NULL,
    connection_token TEXT NOT NULL,
    connection_expires_at_ms INTEGER NOT NULL,
    display_name TEXT NOT NULL,
    channel TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    expires_at_s INTEGER NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS chats_contact ON chats(contact_id);
CREATE INDEX IF NOT EXISTS chats_initial_contact ON chats(initial_contact_id);
CREATE TABLE IF NOT EXISTS leases (
    conv TEXT PRIMARY KEY,
    lease_id TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    origin TEXT NOT NULL,
    message_id TEXT NOT NULL,
    token TEXT NOT NULL,
    completed INTEGER NOT NULL,
    claimed_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    PRIMARY KEY (origin, message_id)
);
CREATE TABLE IF NOT EXISTS pending (
    conv TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (conv, seq),
    UNIQUE (conv, message_id)
);
CREATE TABLE IF NOT EXISTS pending_state (
    conv TEXT PRIMARY KEY,
    business TEXT NOT NULL,
    customer TEXT NOT NULL,
    version INTEGER NOT NULL,
    message_count INTEGER NOT NULL,
    last_append_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_due ON pending_state(last_append_at_ms);
";

const CHAT_COLUMNS: &str = "business, customer, contact_id, initial_contact_id, participant_id, participant_token, \
    connection_token, connection_expires_at_ms, display_name, channel, created_at_ms, updated_at_ms, expires_at_s, version";

/// SQLite-backed [`SessionStore`].
#[derive(Clone)]
pub struct EmbeddedStore {
    connection: Arc<Mutex<Connection>>,
}

fn store_error(e: impl std::fmt::Display) -> SessionError {
    SessionError::Store(e.to_string())
}

impl EmbeddedStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(store_error)?;
        }
        Self::from_connection(Connection::open(path).map_err(store_error)?)
    }

    /// A private in-memory database (tests, throwaway runs).
    pub fn in_memory() -> Result<Self> {
        Self::from_connection(Connection::open_in_memory().map_err(store_error)?)
    }

    fn from_connection(connection: Connection) -> Result<Self> {
        connection
            .busy_timeout(Duration::from_secs(5))
            .map_err(store_error)?;
        connection.execute_batch(SCHEMA).map_err(store_error)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `work` in one immediate transaction on a blocking thread.
    async fn transact<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection
                .lock()
                .map_err(|_| store_error("connection lock poisoned"))?;
            let tx = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(store_error)?;
            let value = work(&tx)?;
            tx.commit().map_err(store_error)?;
            Ok(value)
        })
        .await
        .map_err(store_error)?
    }

    /// Deletes expired rows; returns how many went.
    pub async fn sweep(&self, now: Millis) -> Result<usize> {
        self.transact(move |tx| {
            let mut removed = 0;
            removed += tx.execute("DELETE FROM chats WHERE expires_at_s * 1000 <= ?1", [now]).map_err(store_error)?;
            removed += tx.execute("DELETE FROM leases WHERE expires_at_ms <= ?1", [now]).map_err(store_error)?;
            removed += tx.execute("DELETE FROM claims WHERE expires_at_ms <= ?1", [now]).map_err(store_error)?;
            removed += tx
                .execute(
                    "DELETE FROM pending WHERE conv IN (SELECT conv FROM pending_state WHERE expires_at_ms <= ?1)",
                    [now],
                )
                .map_err(store_error)?;
            removed += tx.execute("DELETE FROM pending_state WHERE expires_at_ms <= ?1", [now]).map_err(store_error)?;
            Ok(removed)
        })
        .await
    }

    /// Sweeps every `interval` until the store is dropped everywhere else.
    pub fn spawn_sweeper(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.connection);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(connection) = weak.upgrade() else {
                    break;
                };
                let store = EmbeddedStore { connection };
                match store.sweep(crate::clock::now_ms()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(removed = n, "swept expired session rows"),
                    Err(e) => tracing::warn!(error = %e, "sweep failed"),
                }
            }
        })
    }
}

fn chat_from_row(row: &Row<'_>) -> rusqlite::Result<(String, String, ActiveChat)> {
    let business: String = row.get(0)?;
    let customer: String = row.get(1)?;
    let key = ConversationKey::new(&business, &customer).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok((
        business,
        customer,
        ActiveChat {
            key,
            contact_id: row.get(2)?,
            initial_contact_id: row.get(3)?,
            participant_id: row.get(4)?,
            participant_token: row.get(5)?,
            connection_token: row.get(6)?,
            connection_expires_at_ms: row.get(7)?,
            customer_display_name: row.get(8)?,
            channel: row.get(9)?,
            created_at_ms: row.get(10)?,
            updated_at_ms: row.get(11)?,
            expires_at_s: row.get(12)?,
            version: row.get::<_, i64>(13)? as u64,
        },
    ))
}

fn select_chat(
    tx: &rusqlite::Connection,
    filter: &str,
    arg: &str,
    now: Millis,
) -> Result<Option<ActiveChat>> {
    let sql = format!(
        "SELECT {CHAT_COLUMNS} FROM chats WHERE {filter} AND expires_at_s * 1000 > ?2 LIMIT 1"
    );
    tx.query_row(&sql, params![arg, now], chat_from_row)
        .optional()
        .map(|found| found.map(|(_, _, chat)| chat))
        .map_err(store_error)
}

fn write_chat(tx: &rusqlite::Connection, chat: &ActiveChat) -> Result<()> {
    tx.execute(
        &format!("INSERT OR REPLACE INTO chats (conv, {CHAT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
        params![
            chat.key.storage_id(),
            chat.key.business(),
            chat.key.customer(),
            chat.contact_id,
            chat.initial_contact_id,
            chat.participant_id,
            chat.participant_token,
            chat.connection_token,
            chat.connection_expires_at_ms,
            chat.customer_display_name,
            chat.channel,
            chat.created_at_ms,
            chat.updated_at_ms,
            chat.expires_at_s,
            chat.version as i64,
        ],
    )
    .map_err(store_error)?;
    Ok(())
}

fn pending_state(tx: &rusqlite::Connection, key: &ConversationKey) -> Result<PendingState> {
    tx.query_row(
        "SELECT version, message_count, last_append_at_ms FROM pending_state WHERE conv = ?1",
        [key.storage_id()],
        |row| {
            Ok(PendingState {
                key: key.clone(),
                version: row.get::<_, i64>(0)? as u64,
                message_count: row.get(1)?,
                last_append_at_ms: row.get(2)?,
            })
        },
    )
    .optional()
    .map_err(store_error)
    .map(|state| state.unwrap_or_else(|| PendingState::empty(key.clone())))
}

#[async_trait]
impl SessionStore for EmbeddedStore {
    async fn chat_by_key(&self, key: &ConversationKey, now: Millis) -> Result<Option<ActiveChat>> {
        let id = key.storage_id();
        self.transact(move |tx| select_chat(tx, "conv = ?1", &id, now))
            .await
    }

    async fn chat_by_contact(&self, contact_id: &str, now: Millis) -> Result<Option<ActiveChat>> {
        let id = contact_id.to_owned();
        self.transact(
            move |tx| match select_chat(tx, "contact_id = ?1", &id, now)? {
                Some(chat) => Ok(Some(chat)),
                None => select_chat(tx, "initial_contact_id = ?1", &id, now),
            },
        )
        .await
    }

    async fn try_lease(
        &self,
        key: &ConversationKey,
        ttl: Duration,
        now: Millis,
    ) -> Result<LeaseAttempt> {
        let key = key.clone();
        self.transact(move |tx| {
            let id = key.storage_id();
            if let Some(chat) = select_chat(tx, "conv = ?1", &id, now)? {
                return Ok(LeaseAttempt::Exists(Box::new(chat)));
            }
            let held: Option<Millis> = tx
                .query_row(
                    "SELECT expires_at_ms FROM leases WHERE conv = ?1",
                    [&id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(store_error)?;
            if let Some(until_ms) = held.filter(|&until| until > now) {
                return Ok(LeaseAttempt::Busy { until_ms });
            }
            let lease = Lease {
                lease_id: new_token(),
                expires_at_ms: now + millis(ttl),
            };
            tx.execute(
                "INSERT OR REPLACE INTO leases (conv, lease_id, expires_at_ms) VALUES (?1, ?2, ?3)",
                params![id, lease.lease_id, lease.expires_at_ms],
            )
            .map_err(store_error)?;
            Ok(LeaseAttempt::Granted(lease))
        })
        .await
    }

    async fn complete_creation(
        &self,
        lease_id: &str,
        mut chat: ActiveChat,
        now: Millis,
    ) -> Result<ActiveChat> {
        let lease_id = lease_id.to_owned();
        self.transact(move |tx| {
            let id = chat.key.storage_id();
            if select_chat(tx, "conv = ?1", &id, now)?.is_some() {
                return Err(SessionError::Precondition(
                    "a chat already exists for this conversation".into(),
                ));
            }
            let holder: Option<String> = tx
                .query_row("SELECT lease_id FROM leases WHERE conv = ?1", [&id], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(store_error)?;
            if holder.as_deref().is_some_and(|h| h != lease_id) {
                return Err(SessionError::Precondition(
                    "the creation lease was taken over by another caller".into(),
                ));
            }
            chat.version = 1;
            chat.created_at_ms = now;
            chat.updated_at_ms = now;
            write_chat(tx, &chat)?;
            tx.execute("DELETE FROM leases WHERE conv = ?1", [&id])
                .map_err(store_error)?;
            Ok(chat)
        })
        .await
    }

    async fn abandon_creation(&self, key: &ConversationKey, lease_id: &str) -> Result<()> {
        let (id, lease_id) = (key.storage_id(), lease_id.to_owned());
        self.transact(move |tx| {
            tx.execute(
                "DELETE FROM leases WHERE conv = ?1 AND lease_id = ?2",
                [id, lease_id],
            )
            .map_err(store_error)?;
            Ok(())
        })
        .await
    }

    async fn update_chat(&self, mut chat: ActiveChat, now: Millis) -> Result<ActiveChat> {
        self.transact(move |tx| {
            let stored =
                select_chat(tx, "conv = ?1", &chat.key.storage_id(), now)?.ok_or_else(|| {
                    SessionError::NotFound("no active chat for this conversation".into())
                })?;
            if stored.version != chat.version {
                return Err(SessionError::Conflict(format!(
                    "chat is at version {}, update was for {}",
                    stored.version, chat.version
                )));
            }
            chat.version += 1;
            chat.created_at_ms = stored.created_at_ms;
            chat.updated_at_ms = now;
            write_chat(tx, &chat)?;
            Ok(chat)
        })
        .await
    }

    async fn end_chat(&self, contact_id: &str, now: Millis) -> Result<bool> {
        let id = contact_id.to_owned();
        self.transact(move |tx| {
            let removed = tx
                .execute(
                    "DELETE FROM chats WHERE (contact_id = ?1 OR initial_contact_id = ?1) AND expires_at_s * 1000 > ?2",
                    params![id, now],
                )
                .map_err(store_error)?;
            Ok(removed > 0)
        })
        .await
    }

    async fn claim(
        &self,
        origin: MessageOrigin,
        message_id: &str,
        ttl: Duration,
        in_progress_timeout: Duration,
        now: Millis,
    ) -> Result<ClaimOutcome> {
        let id = message_id.to_owned();
        self.transact(move |tx| {
            let existing: Option<(bool, Millis, Millis)> = tx
                .query_row(
                    "SELECT completed, claimed_at_ms, expires_at_ms FROM claims WHERE origin = ?1 AND message_id = ?2",
                    [origin.as_str(), &id],
                    |r| Ok((r.get::<_, i64>(0)? != 0, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(store_error)?;
            match existing {
                Some((_, _, expires)) if expires <= now => {}
                Some((true, _, _)) => return Ok(ClaimOutcome::AlreadyCompleted),
                Some((false, claimed_at, _)) if claimed_at + millis(in_progress_timeout) > now => {
                    return Ok(ClaimOutcome::InProgress);
                }
                _ => {}
            }
            let token = new_token();
            tx.execute(
                "INSERT OR REPLACE INTO claims (origin, message_id, token, completed, claimed_at_ms, expires_at_ms) VALUES (?1, ?2, ?3, 0, ?4, ?5)",
                params![origin.as_str(), id, token, now, now + millis(ttl)],
            )
            .map_err(store_error)?;
            Ok(ClaimOutcome::Claimed { token })
        })
        .await
    }

    async fn complete_claim(
        &self,
        origin: MessageOrigin,
        message_id: &str,
        token: &str,
        _now: Millis,
    ) -> Result<()> {
        let (id, token) = (message_id.to_owned(), token.to_owned());
        self.transact(move |tx| {
            let updated = tx
                .execute(
                    "UPDATE claims SET completed = 1 WHERE origin = ?1 AND message_id = ?2 AND token = ?3",
                    [origin.as_str(), &id, &token],
                )
                .map_err(store_error)?;
            if updated == 0 {
                return Err(SessionError::Precondition("this claim is not held by that token".into()));
            }
            Ok(())
        })
        .await
    }

    async fn release_claim(
        &self,
        origin: MessageOrigin,
        message_id: &str,
        token: &str,
    ) -> Result<()> {
        let (id, token) = (message_id.to_owned(), token.to_owned());
        self.transact(move |tx| {
            tx.execute(
                "DELETE FROM claims WHERE origin = ?1 AND message_id = ?2 AND token = ?3 AND completed = 0",
                [origin.as_str(), &id, &token],
            )
            .map_err(store_error)?;
            Ok(())
        })
        .await
    }

    async fn append_pending(
        &self,
        key: &ConversationKey,
        message: PendingMessage,
        ttl: Duration,
        now: Millis,
    ) -> Result<PendingState> {
        let key = key.clone();
        self.transact(move |tx| {
            let id = key.storage_id();
            let state = pending_state(tx, &key)?;
            let duplicate: bool = tx
                .query_row(
                    "SELECT EXISTS(SELECT 1 FROM pending WHERE conv = ?1 AND message_id = ?2)",
                    [&id, &message.message_id],
                    |r| r.get(0),
                )
                .map_err(store_error)?;
            if duplicate {
                return Ok(state);
            }
            let next = PendingState {
                key: key.clone(),
                version: state.version + 1,
                message_count: state.message_count + 1,
                last_append_at_ms: now,
            };
            tx.execute(
                "INSERT INTO pending (conv, seq, message_id, received_at_ms, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, next.version as i64, message.message_id, message.received_at_ms, message.payload],
            )
            .map_err(store_error)?;
            tx.execute(
                "INSERT OR REPLACE INTO pending_state (conv, business, customer, version, message_count, last_append_at_ms, expires_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id, key.business(), key.customer(), next.version as i64, next.message_count, now, now + millis(ttl)],
            )
            .map_err(store_error)?;
            Ok(next)
        })
        .await
    }

    async fn peek_pending(&self, key: &ConversationKey) -> Result<PendingState> {
        let key = key.clone();
        self.transact(move |tx| pending_state(tx, &key)).await
    }

    async fn take_pending(
        &self,
        key: &ConversationKey,
        expected_version: u64,
    ) -> Result<Vec<PendingMessage>> {
        let key = key.clone();
        self.transact(move |tx| {
            let id = key.storage_id();
            let state = pending_state(tx, &key)?;
            if state.version != expected_version {
                return Err(SessionError::Conflict(format!(
                    "buffer is at version {}, take was for {expected_version}",
                    state.version
                )));
            }
            let mut statement = tx
                .prepare("SELECT message_id, received_at_ms, payload FROM pending WHERE conv = ?1 ORDER BY seq")
                .map_err(store_error)?;
            let messages = statement
                .query_map([&id], |r| {
                    Ok(PendingMessage {
                        message_id: r.get(0)?,
                        received_at_ms: r.get(1)?,
                        payload: r.get(2)?,
                    })
                })
                .map_err(store_error)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(store_error)?;
            tx.execute("DELETE FROM pending WHERE conv = ?1", [&id]).map_err(store_error)?;
            tx.execute("DELETE FROM pending_state WHERE conv = ?1", [&id]).map_err(store_error)?;
            Ok(messages)
        })
        .await
    }

    async fn list_due(
        &self,
        quiet_for: Duration,
        limit: usize,
        now: Millis,
    ) -> Result<Vec<PendingState>> {
        self.transact(move |tx| {
            let mut statement = tx
                .prepare(
                    "SELECT business, customer, version, message_count, last_append_at_ms FROM pending_state \
                     WHERE last_append_at_ms <= ?1 AND expires_at_ms > ?2 ORDER BY last_append_at_ms LIMIT ?3",
                )
                .map_err(store_error)?;
            let rows = statement
                .query_map(params![now - millis(quiet_for), now, limit as i64], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, u32>(3)?, r.get::<_, Millis>(4)?))
                })
                .map_err(store_error)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(store_error)?;
            rows.into_iter()
                .map(|(business, customer, version, count, last)| {
                    Ok(PendingState {
                        key: ConversationKey::new(&business, &customer)?,
                        version: version as u64,
                        message_count: count,
                        last_append_at_ms: last,
                    })
                })
                .collect()
        })
        .await
    }
}
