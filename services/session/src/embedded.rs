//! The embedded backend: SQLite (bundled) in one file, for local runs and
//! small deployments. Every operation is one immediate transaction, which
//! gives the same conditional semantics as DynamoDB's conditional writes;
//! expired rows are invisible to reads and swept periodically.
//!
//! A pending buffer is one row whose messages are a prost-encoded blob, as
//! the DynamoDB backend keeps it in one item: both load the buffer, apply
//! [`crate::pending::PendingBuffer`]'s rules, and write it back.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use prost::Message as _;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::{
    error::{Result, SessionError},
    model::{
        ActiveChat, AppendClaim, AppendOptions, ChatLookup, ClaimOutcome, ClaimRef,
        ConversationKey, Direction, EndOutcome, Lease, LeaseAttempt, LinkDirection, MessageLink,
        MessageOrigin, Millis, PendingMessage, PendingState, TakenBatch,
    },
    pending::{self, BUFFER_TTL, EMPTY_BUFFER_TTL, PendingBuffer, StoredMessage},
    store::{SessionStore, millis, new_token},
};

/// Bumped when the schema changes; an older local database is rebuilt.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
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
    version INTEGER NOT NULL,
    last_message_id TEXT NOT NULL,
    last_message_at_ms INTEGER NOT NULL,
    customer_phone TEXT NOT NULL,
    client_token TEXT NOT NULL,
    ended_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS chats_contact ON chats(contact_id);
CREATE INDEX IF NOT EXISTS chats_initial_contact ON chats(initial_contact_id);
CREATE TABLE IF NOT EXISTS ended_chats (
    conv TEXT NOT NULL,
    business TEXT NOT NULL,
    customer TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    initial_contact_id TEXT PRIMARY KEY,
    participant_id TEXT NOT NULL,
    participant_token TEXT NOT NULL,
    connection_token TEXT NOT NULL,
    connection_expires_at_ms INTEGER NOT NULL,
    display_name TEXT NOT NULL,
    channel TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    expires_at_s INTEGER NOT NULL,
    version INTEGER NOT NULL,
    last_message_id TEXT NOT NULL,
    last_message_at_ms INTEGER NOT NULL,
    customer_phone TEXT NOT NULL,
    client_token TEXT NOT NULL,
    ended_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ended_contact ON ended_chats(contact_id);
CREATE TABLE IF NOT EXISTS leases (
    conv TEXT PRIMARY KEY,
    lease_id TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    client_token TEXT NOT NULL,
    forget_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    origin TEXT NOT NULL,
    message_id TEXT NOT NULL,
    token TEXT NOT NULL,
    completed INTEGER NOT NULL,
    stale_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (origin, message_id)
);
CREATE TABLE IF NOT EXISTS links (
    origin TEXT NOT NULL,
    message_id TEXT NOT NULL,
    connect_id TEXT NOT NULL,
    whatsapp_ids TEXT NOT NULL,
    direction TEXT NOT NULL,
    business TEXT NOT NULL,
    customer TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    excerpt TEXT NOT NULL,
    kind TEXT NOT NULL,
    interactive TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    PRIMARY KEY (origin, message_id)
);
CREATE TABLE IF NOT EXISTS pending (
    conv TEXT NOT NULL,
    dir TEXT NOT NULL,
    business TEXT NOT NULL,
    customer TEXT NOT NULL,
    version INTEGER NOT NULL,
    next_seq INTEGER NOT NULL,
    messages BLOB NOT NULL,
    message_count INTEGER NOT NULL,
    flush_delay_ms INTEGER NOT NULL,
    max_wait_ms INTEGER NOT NULL,
    take_token TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    batch_last_seq INTEGER NOT NULL,
    leased_until_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    not_before_ms INTEGER NOT NULL,
    due_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    PRIMARY KEY (conv, dir)
);
CREATE INDEX IF NOT EXISTS pending_due ON pending(dir, due_at_ms);
";

const CHAT_COLUMNS: &str = "conv, business, customer, contact_id, initial_contact_id, participant_id, \
    participant_token, connection_token, connection_expires_at_ms, display_name, channel, created_at_ms, \
    updated_at_ms, expires_at_s, version, last_message_id, last_message_at_ms, customer_phone, client_token, ended_at_ms";

/// The messages of a buffer as stored in its row.
#[derive(Clone, PartialEq, prost::Message)]
struct StoredMessages {
    #[prost(message, repeated, tag = "1")]
    messages: Vec<StoredRow>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StoredRow {
    #[prost(uint64, tag = "1")]
    seq: u64,
    #[prost(string, tag = "2")]
    message_id: String,
    #[prost(int64, tag = "3")]
    received_at_ms: i64,
    #[prost(bytes = "vec", tag = "4")]
    payload: Vec<u8>,
    #[prost(int64, tag = "5")]
    appended_at_ms: i64,
}

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
        connection
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(store_error)?;
        let version: i64 = connection
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(store_error)?;
        let has_tables: bool = connection
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table')",
                [],
                |r| r.get(0),
            )
            .map_err(store_error)?;
        if has_tables && version != SCHEMA_VERSION {
            // A local store from an older Parley: its state is a cache of
            // Connect's (chats time out, buffers are re-sent by SQS), so it
            // is rebuilt rather than migrated.
            tracing::warn!(
                found = version,
                expected = SCHEMA_VERSION,
                "session database has an older schema; rebuilding it"
            );
            connection
                .execute_batch(
                    "DROP TABLE IF EXISTS chats; DROP TABLE IF EXISTS ended_chats; DROP TABLE IF EXISTS leases; \
                     DROP TABLE IF EXISTS claims; DROP TABLE IF EXISTS links; DROP TABLE IF EXISTS pending; \
                     DROP TABLE IF EXISTS pending_state;",
                )
                .map_err(store_error)?;
        }
        connection.execute_batch(SCHEMA).map_err(store_error)?;
        connection
            .execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))
            .map_err(store_error)?;
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
            for sql in [
                "DELETE FROM chats WHERE expires_at_s * 1000 <= ?1",
                "DELETE FROM ended_chats WHERE expires_at_s * 1000 <= ?1",
                "DELETE FROM leases WHERE forget_at_ms <= ?1",
                "DELETE FROM claims WHERE expires_at_ms <= ?1",
                "DELETE FROM links WHERE expires_at_ms <= ?1",
                "DELETE FROM pending WHERE expires_at_ms <= ?1",
            ] {
                removed += tx.execute(sql, [now]).map_err(store_error)?;
            }
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

fn conversion_error(e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

fn chat_from_row(row: &Row<'_>) -> rusqlite::Result<ActiveChat> {
    let business: String = row.get(1)?;
    let customer: String = row.get(2)?;
    let key = ConversationKey::parse(&business, &customer).map_err(conversion_error)?;
    Ok(ActiveChat {
        key,
        contact_id: row.get(3)?,
        initial_contact_id: row.get(4)?,
        participant_id: row.get(5)?,
        participant_token: row.get(6)?,
        connection_token: row.get(7)?,
        connection_expires_at_ms: row.get(8)?,
        customer_display_name: row.get(9)?,
        channel: row.get(10)?,
        created_at_ms: row.get(11)?,
        updated_at_ms: row.get(12)?,
        expires_at_s: row.get(13)?,
        version: row.get::<_, i64>(14)? as u64,
        last_customer_message_id: row.get(15)?,
        last_customer_message_at_ms: row.get(16)?,
        customer_phone: row.get(17)?,
        client_token: row.get(18)?,
        ended_at_ms: row.get(19)?,
    })
}

/// The first unexpired chat of `table` matching `filter` (with `?1` the
/// argument and `?2` now).
fn select_chat(
    tx: &rusqlite::Connection,
    table: &str,
    filter: &str,
    arg: &str,
    now: Millis,
) -> Result<Option<ActiveChat>> {
    let sql = format!(
        "SELECT {CHAT_COLUMNS} FROM {table} WHERE {filter} AND expires_at_s * 1000 > ?2 ORDER BY updated_at_ms DESC LIMIT 1"
    );
    tx.query_row(&sql, params![arg, now], chat_from_row)
        .optional()
        .map_err(store_error)
}

fn active_by_key(
    tx: &rusqlite::Connection,
    key: &ConversationKey,
    now: Millis,
) -> Result<Option<ActiveChat>> {
    select_chat(tx, "chats", "conv = ?1", &key.storage_id(), now)
}

fn write_chat(tx: &rusqlite::Connection, table: &str, verb: &str, chat: &ActiveChat) -> Result<()> {
    tx.execute(
        &format!(
            "{verb} INTO {table} ({CHAT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
        ),
        params![
            chat.key.storage_id(),
            chat.key.business().as_str(),
            chat.key.customer().as_str(),
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
            chat.last_customer_message_id,
            chat.last_customer_message_at_ms,
            chat.customer_phone,
            chat.client_token,
            chat.ended_at_ms,
        ],
    )
    .map_err(store_error)?;
    Ok(())
}

fn claim_matches(tx: &rusqlite::Connection, claim: &ClaimRef) -> Result<bool> {
    tx.query_row(
        "SELECT EXISTS(SELECT 1 FROM claims WHERE origin = ?1 AND message_id = ?2 AND token = ?3)",
        [claim.origin.as_str(), &claim.message_id, &claim.token],
        |r| r.get(0),
    )
    .map_err(store_error)
}

/// Records `message_id` as claimed and completed, unless it was claimed
/// before: `Duplicate` when that claim completed, `Busy` while it is in
/// progress elsewhere.
fn claim_once(
    tx: &rusqlite::Connection,
    origin: MessageOrigin,
    message_id: &str,
    ttl: Duration,
    now: Millis,
) -> Result<()> {
    let existing: Option<(bool, Millis, Millis)> = tx
        .query_row(
            "SELECT completed, stale_at_ms, expires_at_ms FROM claims WHERE origin = ?1 AND message_id = ?2",
            [origin.as_str(), message_id],
            |r| Ok((r.get::<_, i64>(0)? != 0, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(store_error)?;
    match existing {
        Some((_, _, expires)) if expires <= now => {}
        Some((true, _, _)) => {
            return Err(SessionError::Duplicate(
                "this message was appended before".into(),
            ));
        }
        Some((false, stale_at, _)) if stale_at > now => {
            return Err(SessionError::Busy {
                message: "this message is claimed by another caller".into(),
                retry_after: Duration::from_millis((stale_at - now) as u64),
            });
        }
        _ => {}
    }
    tx.execute(
        "INSERT OR REPLACE INTO claims (origin, message_id, token, completed, stale_at_ms, expires_at_ms, result) VALUES (?1, ?2, ?3, 1, ?4, ?4, '')",
        params![origin.as_str(), message_id, new_token(), now + millis(ttl)],
    )
    .map_err(store_error)?;
    Ok(())
}

fn lost_claim() -> SessionError {
    SessionError::LeaseLost(
        "this claim is not held by that token (it expired and was taken over)".into(),
    )
}

fn load_buffer(
    tx: &rusqlite::Connection,
    key: &ConversationKey,
    direction: Direction,
    now: Millis,
) -> Result<PendingBuffer> {
    let row = tx
        .query_row(
            "SELECT version, next_seq, messages, flush_delay_ms, max_wait_ms, take_token, batch_id, \
             batch_last_seq, leased_until_ms, attempts, not_before_ms, expires_at_ms \
             FROM pending WHERE conv = ?1 AND dir = ?2",
            [key.storage_id(), direction.as_str().to_owned()],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, i64>(8)?,
                    r.get::<_, u32>(9)?,
                    r.get::<_, i64>(10)?,
                    r.get::<_, i64>(11)?,
                ))
            },
        )
        .optional()
        .map_err(store_error)?;
    let mut buffer = PendingBuffer::empty(key.clone(), direction);
    let Some((
        version,
        next_seq,
        blob,
        delay,
        max_wait,
        token,
        batch_id,
        last_seq,
        until,
        attempts,
        not_before,
        expires,
    )) = row
    else {
        return Ok(buffer);
    };
    buffer.version = version as u64;
    if expires <= now {
        // An abandoned buffer past its TTL: gone, but its version lives on.
        return Ok(buffer);
    }
    let stored = StoredMessages::decode(blob.as_slice()).map_err(store_error)?;
    buffer.next_seq = next_seq as u64;
    buffer.messages = stored
        .messages
        .into_iter()
        .map(|m| StoredMessage {
            seq: m.seq,
            message: PendingMessage {
                message_id: m.message_id,
                received_at_ms: m.received_at_ms,
                payload: m.payload,
                appended_at_ms: m.appended_at_ms,
            },
        })
        .collect();
    buffer.flush_delay_ms = delay as u64;
    buffer.max_wait_ms = max_wait as u64;
    buffer.lease = (!batch_id.is_empty()).then_some(pending::Lease {
        take_token: token,
        batch_id,
        last_seq: last_seq as u64,
        until_ms: until,
    });
    buffer.attempts = attempts;
    buffer.not_before_ms = not_before;
    Ok(buffer)
}

fn save_buffer(
    tx: &rusqlite::Connection,
    buffer: &PendingBuffer,
    ttl: Duration,
    now: Millis,
) -> Result<()> {
    let blob = StoredMessages {
        messages: buffer
            .messages
            .iter()
            .map(|m| StoredRow {
                seq: m.seq,
                message_id: m.message.message_id.clone(),
                received_at_ms: m.message.received_at_ms,
                payload: m.message.payload.clone(),
                appended_at_ms: m.message.appended_at_ms,
            })
            .collect(),
    }
    .encode_to_vec();
    let lease = buffer.lease.as_ref();
    tx.execute(
        "INSERT OR REPLACE INTO pending (conv, dir, business, customer, version, next_seq, messages, message_count, \
         flush_delay_ms, max_wait_ms, take_token, batch_id, batch_last_seq, leased_until_ms, attempts, not_before_ms, \
         due_at_ms, expires_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        params![
            buffer.key.storage_id(),
            buffer.direction.as_str(),
            buffer.key.business().as_str(),
            buffer.key.customer().as_str(),
            buffer.version as i64,
            buffer.next_seq as i64,
            blob,
            buffer.messages.len() as i64,
            buffer.flush_delay_ms as i64,
            buffer.max_wait_ms as i64,
            lease.map_or("", |l| l.take_token.as_str()),
            lease.map_or("", |l| l.batch_id.as_str()),
            lease.map_or(0, |l| l.last_seq as i64),
            lease.map_or(0, |l| l.until_ms),
            buffer.attempts,
            buffer.not_before_ms,
            buffer.due_at(now),
            now + millis(ttl),
        ],
    )
    .map_err(store_error)?;
    Ok(())
}

impl EmbeddedStore {
    /// Loads a buffer, applies `change`, and stores it, in one transaction.
    async fn with_buffer<T: Send + 'static>(
        &self,
        key: &ConversationKey,
        direction: Direction,
        ttl: Duration,
        now: Millis,
        change: impl FnOnce(&mut PendingBuffer, &rusqlite::Transaction<'_>) -> Result<T>
        + Send
        + 'static,
    ) -> Result<(T, PendingState)> {
        let key = key.clone();
        self.transact(move |tx| {
            let mut buffer = load_buffer(tx, &key, direction, now)?;
            let before = buffer.version;
            let value = change(&mut buffer, tx)?;
            if buffer.version != before {
                let ttl = if buffer.messages.is_empty() {
                    EMPTY_BUFFER_TTL
                } else {
                    ttl
                };
                save_buffer(tx, &buffer, ttl, now)?;
            }
            Ok((value, buffer.state(now)))
        })
        .await
    }
}

fn link_from_row(row: &Row<'_>) -> rusqlite::Result<MessageLink> {
    let business: String = row.get(4)?;
    let customer: String = row.get(5)?;
    Ok(MessageLink {
        connect_message_id: row.get(0)?,
        whatsapp_message_ids: row
            .get::<_, String>(1)?
            .split('\n')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        direction: if row.get::<_, String>(2)? == "to-customer" {
            LinkDirection::ToCustomer
        } else {
            LinkDirection::ToAgent
        },
        contact_id: row.get(3)?,
        key: ConversationKey::parse(&business, &customer).map_err(conversion_error)?,
        created_at_ms: row.get(6)?,
        excerpt: row.get(7)?,
        kind: row.get(8)?,
        interactive_template: row.get(9)?,
    })
}

fn direction_name(direction: LinkDirection) -> &'static str {
    match direction {
        LinkDirection::ToAgent => "to-agent",
        LinkDirection::ToCustomer => "to-customer",
    }
}

#[async_trait]
impl SessionStore for EmbeddedStore {
    async fn chat_by_key(&self, key: &ConversationKey, now: Millis) -> Result<Option<ActiveChat>> {
        let key = key.clone();
        self.transact(move |tx| active_by_key(tx, &key, now)).await
    }

    async fn chat_by_contact(&self, contact_id: &str, now: Millis) -> Result<ChatLookup> {
        let id = contact_id.to_owned();
        self.transact(move |tx| {
            for filter in ["contact_id = ?1", "initial_contact_id = ?1"] {
                if let Some(chat) = select_chat(tx, "chats", filter, &id, now)? {
                    return Ok(ChatLookup::Active(Box::new(chat)));
                }
            }
            for filter in ["contact_id = ?1", "initial_contact_id = ?1"] {
                if let Some(chat) = select_chat(tx, "ended_chats", filter, &id, now)? {
                    return Ok(ChatLookup::Ended(Box::new(chat)));
                }
            }
            Ok(ChatLookup::Unknown)
        })
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
            if let Some(chat) = active_by_key(tx, &key, now)? {
                return Ok(LeaseAttempt::Exists(Box::new(chat)));
            }
            let id = key.storage_id();
            let held: Option<(Millis, String, Millis)> = tx
                .query_row(
                    "SELECT expires_at_ms, client_token, forget_at_ms FROM leases WHERE conv = ?1",
                    [&id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(store_error)?;
            let client_token = match held {
                Some((until_ms, _, _)) if until_ms > now => {
                    return Ok(LeaseAttempt::Busy { until_ms });
                }
                Some((_, token, forget)) if forget > now => token,
                _ => new_token(),
            };
            let lease = Lease {
                lease_id: new_token(),
                expires_at_ms: now + millis(ttl),
                client_token,
            };
            tx.execute(
                "INSERT OR REPLACE INTO leases (conv, lease_id, expires_at_ms, client_token, forget_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, lease.lease_id, lease.expires_at_ms, lease.client_token, now + CLIENT_TOKEN_MEMORY_MS],
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
            if active_by_key(tx, &chat.key, now)?.is_some() {
                return Err(SessionError::LeaseLost(
                    "a chat already exists for this conversation".into(),
                ));
            }
            let holder: Option<(String, String)> = tx
                .query_row(
                    "SELECT lease_id, client_token FROM leases WHERE conv = ?1",
                    [&id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(store_error)?;
            match holder {
                Some((holder, token)) if holder == lease_id => {
                    if chat.client_token.is_empty() {
                        chat.client_token = token;
                    }
                }
                _ => {
                    return Err(SessionError::LeaseLost(
                        "the creation lease was taken over by another caller".into(),
                    ));
                }
            }
            chat.version = 1;
            chat.created_at_ms = now;
            chat.updated_at_ms = now;
            chat.ended_at_ms = 0;
            write_chat(tx, "chats", "INSERT OR REPLACE", &chat)?;
            tx.execute("DELETE FROM leases WHERE conv = ?1", [&id])
                .map_err(store_error)?;
            Ok(chat)
        })
        .await
    }

    async fn abandon_creation(
        &self,
        key: &ConversationKey,
        lease_id: &str,
        forget_token: bool,
    ) -> Result<()> {
        let (id, lease_id) = (key.storage_id(), lease_id.to_owned());
        self.transact(move |tx| {
            // Expire rather than delete: the client token stays for the
            // next holder, in case Connect did open the chat.
            let statement = if forget_token {
                "DELETE FROM leases WHERE conv = ?1 AND lease_id = ?2"
            } else {
                "UPDATE leases SET expires_at_ms = 0 WHERE conv = ?1 AND lease_id = ?2"
            };
            tx.execute(statement, [id, lease_id]).map_err(store_error)?;
            Ok(())
        })
        .await
    }

    async fn extend_creation(
        &self,
        key: &ConversationKey,
        lease_id: &str,
        extend_by: Duration,
        now: Millis,
    ) -> Result<Millis> {
        let (id, lease_id) = (key.storage_id(), lease_id.to_owned());
        let until = now + millis(extend_by);
        self.transact(move |tx| {
            let updated = tx
                .execute(
                    "UPDATE leases SET expires_at_ms = MAX(expires_at_ms, ?3) WHERE conv = ?1 AND lease_id = ?2 AND expires_at_ms > ?4",
                    params![id, lease_id, until, now],
                )
                .map_err(store_error)?;
            if updated == 0 {
                return Err(SessionError::LeaseLost("the creation lease is no longer yours".into()));
            }
            Ok(until)
        })
        .await
    }

    async fn update_chat(&self, mut chat: ActiveChat, now: Millis) -> Result<ActiveChat> {
        self.transact(move |tx| {
            let stored = active_by_key(tx, &chat.key, now)?.ok_or_else(|| {
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
            chat.client_token = stored.client_token;
            chat.ended_at_ms = 0;
            // Customer activity has its own writer; keep the newer.
            if stored.last_customer_message_at_ms >= chat.last_customer_message_at_ms {
                chat.last_customer_message_id = stored.last_customer_message_id;
                chat.last_customer_message_at_ms = stored.last_customer_message_at_ms;
            }
            write_chat(tx, "chats", "INSERT OR REPLACE", &chat)?;
            Ok(chat)
        })
        .await
    }

    async fn record_customer_activity(
        &self,
        key: &ConversationKey,
        message_id: &str,
        at_ms: Millis,
        now: Millis,
    ) -> Result<ActiveChat> {
        let (key, message_id) = (key.clone(), message_id.to_owned());
        self.transact(move |tx| {
            let mut chat = active_by_key(tx, &key, now)?.ok_or_else(|| {
                SessionError::NotFound("no active chat for this conversation".into())
            })?;
            if at_ms > chat.last_customer_message_at_ms {
                tx.execute(
                    "UPDATE chats SET last_message_id = ?2, last_message_at_ms = ?3 WHERE conv = ?1",
                    params![key.storage_id(), message_id, at_ms],
                )
                .map_err(store_error)?;
                chat.last_customer_message_id = message_id;
                chat.last_customer_message_at_ms = at_ms;
            }
            Ok(chat)
        })
        .await
    }

    async fn end_chat(
        &self,
        key: &ConversationKey,
        contact_id: &str,
        expected_version: u64,
        grace: Duration,
        now: Millis,
    ) -> Result<EndOutcome> {
        let (key, contact) = (key.clone(), contact_id.to_owned());
        self.transact(move |tx| {
            if let Some(chat) = active_by_key(tx, &key, now)?
                && (chat.contact_id == contact || chat.initial_contact_id == contact)
            {
                if expected_version != 0 && chat.version != expected_version {
                    return Err(SessionError::Conflict(format!(
                        "chat is at version {}, end was for {expected_version}",
                        chat.version
                    )));
                }
                let mut ended = chat;
                ended.version += 1;
                ended.ended_at_ms = now;
                ended.updated_at_ms = now;
                ended.expires_at_s = (now + millis(grace)) / 1000 + 1;
                tx.execute("DELETE FROM chats WHERE conv = ?1", [key.storage_id()])
                    .map_err(store_error)?;
                write_chat(tx, "ended_chats", "INSERT OR REPLACE", &ended)?;
                return Ok(EndOutcome {
                    ended: true,
                    chat: Some(ended),
                });
            }
            let mut tombstone = None;
            for filter in ["contact_id = ?1", "initial_contact_id = ?1"] {
                if tombstone.is_none() {
                    tombstone = select_chat(tx, "ended_chats", filter, &contact, now)?
                        .filter(|c| c.key == key);
                }
            }
            Ok(EndOutcome {
                ended: false,
                chat: tombstone,
            })
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
            let existing: Option<(bool, Millis, Millis, String)> = tx
                .query_row(
                    "SELECT completed, stale_at_ms, expires_at_ms, result FROM claims WHERE origin = ?1 AND message_id = ?2",
                    [origin.as_str(), &id],
                    |r| Ok((r.get::<_, i64>(0)? != 0, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(store_error)?;
            match existing {
                Some((_, _, expires, _)) if expires <= now => {}
                Some((true, _, _, result)) => return Ok(ClaimOutcome::AlreadyCompleted { result }),
                Some((false, stale_at, _, _)) if stale_at > now => {
                    return Ok(ClaimOutcome::InProgress {
                        retry_after: Duration::from_millis((stale_at - now) as u64),
                    });
                }
                _ => {}
            }
            let token = new_token();
            tx.execute(
                "INSERT OR REPLACE INTO claims (origin, message_id, token, completed, stale_at_ms, expires_at_ms, result) VALUES (?1, ?2, ?3, 0, ?4, ?5, '')",
                params![origin.as_str(), id, token, now + millis(in_progress_timeout), now + millis(ttl)],
            )
            .map_err(store_error)?;
            Ok(ClaimOutcome::Claimed { token })
        })
        .await
    }

    async fn complete_claim(&self, claim: &ClaimRef, result: &str, _now: Millis) -> Result<()> {
        let (claim, result) = (claim.clone(), result.to_owned());
        self.transact(move |tx| {
            let updated = tx
                .execute(
                    "UPDATE claims SET completed = 1, result = ?4 WHERE origin = ?1 AND message_id = ?2 AND token = ?3",
                    params![claim.origin.as_str(), claim.message_id, claim.token, result],
                )
                .map_err(store_error)?;
            if updated == 0 {
                return Err(lost_claim());
            }
            Ok(())
        })
        .await
    }

    async fn release_claim(&self, claim: &ClaimRef) -> Result<()> {
        let claim = claim.clone();
        self.transact(move |tx| {
            tx.execute(
                "DELETE FROM claims WHERE origin = ?1 AND message_id = ?2 AND token = ?3 AND completed = 0",
                [claim.origin.as_str(), &claim.message_id, &claim.token],
            )
            .map_err(store_error)?;
            Ok(())
        })
        .await
    }

    async fn extend_claim(&self, claim: &ClaimRef, extend_by: Duration, now: Millis) -> Result<()> {
        let claim = claim.clone();
        let until = now + millis(extend_by);
        self.transact(move |tx| {
            let updated = tx
                .execute(
                    "UPDATE claims SET stale_at_ms = MAX(stale_at_ms, ?4) WHERE origin = ?1 AND message_id = ?2 AND token = ?3 AND completed = 0 AND expires_at_ms > ?5",
                    params![claim.origin.as_str(), claim.message_id, claim.token, until, now],
                )
                .map_err(store_error)?;
            if updated == 0 {
                return Err(lost_claim());
            }
            Ok(())
        })
        .await
    }

    async fn link_messages(
        &self,
        links: Vec<MessageLink>,
        ttl: Duration,
        now: Millis,
    ) -> Result<()> {
        let expires = now + millis(ttl);
        self.transact(move |tx| {
            for link in links {
                let mut whatsapp_ids: Vec<String> = tx
                    .query_row(
                        "SELECT whatsapp_ids FROM links WHERE origin = 'connect' AND message_id = ?1 AND expires_at_ms > ?2",
                        params![link.connect_message_id, now],
                        |r| r.get::<_, String>(0),
                    )
                    .optional()
                    .map_err(store_error)?
                    .map(|ids| ids.split('\n').filter(|s| !s.is_empty()).map(str::to_owned).collect())
                    .unwrap_or_default();
                for id in &link.whatsapp_message_ids {
                    if !whatsapp_ids.contains(id) {
                        whatsapp_ids.push(id.clone());
                    }
                }
                let row = |origin: &str, message_id: &str, ids: &str| {
                    tx.execute(
                        "INSERT OR REPLACE INTO links (origin, message_id, connect_id, whatsapp_ids, direction, business, customer, contact_id, created_at_ms, excerpt, kind, interactive, expires_at_ms) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                        params![
                            origin,
                            message_id,
                            link.connect_message_id,
                            ids,
                            direction_name(link.direction),
                            link.key.business().as_str(),
                            link.key.customer().as_str(),
                            link.contact_id,
                            now,
                            link.excerpt,
                            link.kind,
                            link.interactive_template,
                            expires,
                        ],
                    )
                    .map_err(store_error)
                };
                row("connect", &link.connect_message_id, &whatsapp_ids.join("\n"))?;
                for id in &link.whatsapp_message_ids {
                    row("wa", id, &link.whatsapp_message_ids.join("\n"))?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn message_link(
        &self,
        origin: MessageOrigin,
        message_id: &str,
        now: Millis,
    ) -> Result<Option<MessageLink>> {
        let origin = match origin {
            MessageOrigin::WhatsApp => "wa",
            MessageOrigin::Connect => "connect",
            _ => {
                return Err(SessionError::InvalidArgument(
                    "origin: links exist for WHATSAPP and CONNECT ids only".into(),
                ));
            }
        };
        let id = message_id.to_owned();
        self.transact(move |tx| {
            tx.query_row(
                "SELECT connect_id, whatsapp_ids, direction, contact_id, business, customer, created_at_ms, excerpt, kind, interactive \
                 FROM links WHERE origin = ?1 AND message_id = ?2 AND expires_at_ms > ?3",
                params![origin, id, now],
                link_from_row,
            )
            .optional()
            .map_err(store_error)
        })
        .await
    }

    async fn append_pending(
        &self,
        key: &ConversationKey,
        direction: Direction,
        message: PendingMessage,
        options: AppendOptions,
        claim: AppendClaim,
        ttl: Duration,
        now: Millis,
    ) -> Result<PendingState> {
        let (_, state) = self
            .with_buffer(key, direction, ttl, now, move |buffer, tx| {
                match &claim {
                    AppendClaim::None => {}
                    AppendClaim::Complete(claim) => {
                        if !claim_matches(tx, claim)? {
                            return Err(lost_claim());
                        }
                        tx.execute(
                            "UPDATE claims SET completed = 1 WHERE origin = ?1 AND message_id = ?2 AND token = ?3",
                            [claim.origin.as_str(), &claim.message_id, &claim.token],
                        )
                        .map_err(store_error)?;
                    }
                    AppendClaim::Once { origin, ttl } => {
                        claim_once(tx, *origin, &message.message_id, *ttl, now)?;
                    }
                }
                buffer.append(message, options, now)
            })
            .await?;
        Ok(state)
    }

    async fn peek_pending(
        &self,
        key: &ConversationKey,
        direction: Direction,
        now: Millis,
    ) -> Result<PendingState> {
        let key = key.clone();
        self.transact(move |tx| Ok(load_buffer(tx, &key, direction, now)?.state(now)))
            .await
    }

    async fn take_pending(
        &self,
        key: &ConversationKey,
        direction: Direction,
        lease: Duration,
        max_messages: usize,
        expected_version: u64,
        now: Millis,
    ) -> Result<TakenBatch> {
        let (batch, _) = self
            .with_buffer(key, direction, BUFFER_TTL, now, move |buffer, _| {
                buffer.take(lease, max_messages, expected_version, now)
            })
            .await?;
        Ok(batch)
    }

    async fn ack_pending(
        &self,
        key: &ConversationKey,
        direction: Direction,
        take_token: &str,
        now: Millis,
    ) -> Result<PendingState> {
        let token = take_token.to_owned();
        let (_, state) = self
            .with_buffer(key, direction, BUFFER_TTL, now, move |buffer, _| {
                buffer.ack(&token)
            })
            .await?;
        Ok(state)
    }

    async fn release_pending(
        &self,
        key: &ConversationKey,
        direction: Direction,
        take_token: &str,
        retry_after: Duration,
        now: Millis,
    ) -> Result<PendingState> {
        let token = take_token.to_owned();
        let (_, state) = self
            .with_buffer(key, direction, BUFFER_TTL, now, move |buffer, _| {
                buffer.release(&token, retry_after, now)
            })
            .await?;
        Ok(state)
    }

    async fn extend_batch(
        &self,
        key: &ConversationKey,
        direction: Direction,
        take_token: &str,
        extend_by: Duration,
        now: Millis,
    ) -> Result<Millis> {
        let token = take_token.to_owned();
        let (until, _) = self
            .with_buffer(key, direction, BUFFER_TTL, now, move |buffer, _| {
                buffer.extend(&token, extend_by, now)
            })
            .await?;
        Ok(until)
    }

    async fn list_due(
        &self,
        direction: Direction,
        limit: usize,
        now: Millis,
    ) -> Result<Vec<PendingState>> {
        self.transact(move |tx| {
            let mut statement = tx
                .prepare(
                    "SELECT business, customer FROM pending \
                     WHERE dir = ?1 AND message_count > 0 AND due_at_ms <= ?2 AND expires_at_ms > ?2 \
                     ORDER BY due_at_ms LIMIT ?3",
                )
                .map_err(store_error)?;
            let keys = statement
                .query_map(params![direction.as_str(), now, limit as i64], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(store_error)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(store_error)?;
            keys.into_iter()
                .map(|(business, customer)| {
                    let key = ConversationKey::parse(&business, &customer)?;
                    Ok(load_buffer(tx, &key, direction, now)?.state(now))
                })
                .collect()
        })
        .await
    }
}

/// How long a conversation's StartChatContact client token is remembered
/// after its last lease (longer than any plausible takeover).
const CLIENT_TOKEN_MEMORY_MS: Millis = 24 * 3600 * 1000;
