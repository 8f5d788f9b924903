//! The DynamoDB backend: one table, items told apart by their key prefix,
//! conditional writes (and transactions where two items change together)
//! for every race, GSIs for the lookups (no scans), and `expiresAt` stored
//! as a Number so DynamoDB TTL really deletes items. Reads also check
//! expiry, since TTL deletion can lag by hours.
//!
//! | item | key | what |
//! |---|---|---|
//! | active chat | `chat#<conversation>` | found by conversation, and by `contactId` / `initialContactId` through the GSIs |
//! | ended chat | `ended#<initial contact id>` | the tombstone, found through the same GSIs until its grace ends |
//! | creation lease | `lease#<conversation>` | holder, expiry and the stable client token |
//! | claim | `claim#<origin>#<id>` | token, completed, stale time, result |
//! | link | `link#wa#<wamid>`, `link#connect#<id>` | both directions of a message link |
//! | buffer | `pending#<in\|out>#<conversation>` | the messages (a list), the lease, due time (`due-index`) |

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    Client,
    error::{ProvideErrorMetadata, SdkError},
    operation::transact_write_items::TransactWriteItemsError,
    primitives::Blob,
    types::{
        AttributeDefinition, AttributeValue, BillingMode, Delete, GlobalSecondaryIndex,
        KeySchemaElement, KeyType, Projection, ProjectionType, Put, ReturnValue,
        ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem, Update,
    },
};

use crate::{
    error::{Result, SessionError},
    model::{
        ActiveChat, AppendClaim, AppendOptions, ChatLookup, ClaimOutcome, ClaimRef,
        ConversationKey, Direction, EndOutcome, Lease, LeaseAttempt, LinkDirection, MessageLink,
        MessageOrigin, Millis, PendingMessage, PendingState, TakenBatch,
    },
    pending::{self, BUFFER_TTL, PendingBuffer, StoredMessage},
    store::{SessionStore, millis, new_token},
};

type Item = HashMap<String, AttributeValue>;

/// Index on the current contact id.
pub const CONTACT_INDEX: &str = "contact-index";
/// Index on the initial contact id (stable across transfers).
pub const INITIAL_CONTACT_INDEX: &str = "initial-contact-index";
/// Index of non-empty pending buffers by due time, one partition per
/// direction.
pub const DUE_INDEX: &str = "due-index";
/// The TTL attribute (epoch seconds, Number).
pub const TTL_ATTRIBUTE: &str = "expiresAt";
/// How long a conversation's StartChatContact client token is remembered
/// after its last lease.
const CLIENT_TOKEN_MEMORY: Duration = Duration::from_secs(24 * 3600);
/// Bounded retries of a version-checked read-modify-write under contention.
const WRITE_ATTEMPTS: usize = 64;

/// DynamoDB-backed [`SessionStore`].
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn get_s(item: &Item, name: &str) -> Result<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(SessionError::Store(format!(
            "item lacks string attribute {name}"
        ))),
    }
}

fn get_s_or_empty(item: &Item, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(v)) => v.clone(),
        _ => String::new(),
    }
}

fn get_n(item: &Item, name: &str) -> Result<i64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse::<i64>()
            .map_err(|e| SessionError::Store(format!("attribute {name} is not an integer: {e}"))),
        _ => Err(SessionError::Store(format!(
            "item lacks number attribute {name}"
        ))),
    }
}

fn get_n_or_zero(item: &Item, name: &str) -> i64 {
    get_n(item, name).unwrap_or(0)
}

fn store_error<E: ProvideErrorMetadata + std::fmt::Debug, R>(
    error: SdkError<E, R>,
) -> SessionError {
    let code = error.code().unwrap_or("unknown").to_owned();
    let message = error.message().unwrap_or_default().to_owned();
    SessionError::Store(format!("dynamodb {code}: {message}"))
}

fn condition_failed<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    matches!(
        error.code(),
        Some("ConditionalCheckFailedException" | "TransactionCanceledException")
    )
}

/// For a cancelled transaction, whether item `index`'s condition failed.
fn transaction_item_failed<R>(error: &SdkError<TransactWriteItemsError, R>, index: usize) -> bool {
    match error.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => cancelled
            .cancellation_reasons()
            .get(index)
            .and_then(|r| r.code())
            .is_some_and(|code| code == "ConditionalCheckFailed"),
        _ => false,
    }
}

fn build_error(e: impl std::fmt::Display) -> SessionError {
    SessionError::Store(e.to_string())
}

fn chat_pk(key: &ConversationKey) -> String {
    format!("chat#{}", key.storage_id())
}

fn ended_pk(initial_contact_id: &str) -> String {
    format!("ended#{initial_contact_id}")
}

fn lease_pk(key: &ConversationKey) -> String {
    format!("lease#{}", key.storage_id())
}

fn claim_pk(origin: MessageOrigin, id: &str) -> String {
    format!("claim#{}#{id}", origin.as_str())
}

fn pending_pk(key: &ConversationKey, direction: Direction) -> String {
    format!("pending#{}#{}", direction.as_str(), key.storage_id())
}

fn due_shard(direction: Direction) -> String {
    format!("due#{}", direction.as_str())
}

fn chat_item(pk: String, chat: &ActiveChat) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(pk)),
        ("business".to_owned(), s(chat.key.business().as_str())),
        ("customer".to_owned(), s(chat.key.customer().as_str())),
        ("contactId".to_owned(), s(&chat.contact_id)),
        ("initialContactId".to_owned(), s(&chat.initial_contact_id)),
        ("participantId".to_owned(), s(&chat.participant_id)),
        ("participantToken".to_owned(), s(&chat.participant_token)),
        ("connectionToken".to_owned(), s(&chat.connection_token)),
        (
            "connectionExpiresAtMs".to_owned(),
            n(chat.connection_expires_at_ms),
        ),
        ("displayName".to_owned(), s(&chat.customer_display_name)),
        ("channel".to_owned(), s(&chat.channel)),
        ("createdAtMs".to_owned(), n(chat.created_at_ms)),
        ("updatedAtMs".to_owned(), n(chat.updated_at_ms)),
        (TTL_ATTRIBUTE.to_owned(), n(chat.expires_at_s)),
        ("version".to_owned(), n(chat.version)),
        (
            "lastMessageId".to_owned(),
            s(&chat.last_customer_message_id),
        ),
        (
            "lastMessageAtMs".to_owned(),
            n(chat.last_customer_message_at_ms),
        ),
        ("customerPhone".to_owned(), s(&chat.customer_phone)),
        ("clientToken".to_owned(), s(&chat.client_token)),
        ("endedAtMs".to_owned(), n(chat.ended_at_ms)),
    ])
}

fn chat_from_item(item: &Item) -> Result<ActiveChat> {
    Ok(ActiveChat {
        key: ConversationKey::parse(&get_s(item, "business")?, &get_s(item, "customer")?)?,
        contact_id: get_s(item, "contactId")?,
        initial_contact_id: get_s(item, "initialContactId")?,
        participant_id: get_s(item, "participantId")?,
        participant_token: get_s(item, "participantToken")?,
        connection_token: get_s(item, "connectionToken")?,
        connection_expires_at_ms: get_n(item, "connectionExpiresAtMs")?,
        customer_display_name: get_s(item, "displayName")?,
        channel: get_s(item, "channel")?,
        created_at_ms: get_n(item, "createdAtMs")?,
        updated_at_ms: get_n(item, "updatedAtMs")?,
        expires_at_s: get_n(item, TTL_ATTRIBUTE)?,
        version: get_n(item, "version")? as u64,
        last_customer_message_id: get_s_or_empty(item, "lastMessageId"),
        last_customer_message_at_ms: get_n_or_zero(item, "lastMessageAtMs"),
        customer_phone: get_s_or_empty(item, "customerPhone"),
        client_token: get_s_or_empty(item, "clientToken"),
        ended_at_ms: get_n_or_zero(item, "endedAtMs"),
    })
}

fn link_item(pk: String, link: &MessageLink, ids: &[String], now: Millis, ttl: Duration) -> Item {
    let expires = now + millis(ttl);
    HashMap::from([
        ("pk".to_owned(), s(pk)),
        ("connectId".to_owned(), s(&link.connect_message_id)),
        (
            "whatsappIds".to_owned(),
            AttributeValue::L(ids.iter().map(s).collect()),
        ),
        (
            "direction".to_owned(),
            s(match link.direction {
                LinkDirection::ToAgent => "to-agent",
                LinkDirection::ToCustomer => "to-customer",
            }),
        ),
        ("business".to_owned(), s(link.key.business().as_str())),
        ("customer".to_owned(), s(link.key.customer().as_str())),
        // Not `contactId`: link items must stay out of the contact index.
        ("linkContactId".to_owned(), s(&link.contact_id)),
        ("createdAtMs".to_owned(), n(now)),
        ("excerpt".to_owned(), s(&link.excerpt)),
        ("kind".to_owned(), s(&link.kind)),
        ("interactive".to_owned(), s(&link.interactive_template)),
        ("expiresAtMs".to_owned(), n(expires)),
        (TTL_ATTRIBUTE.to_owned(), n(expires / 1000 + 1)),
    ])
}

fn link_from_item(item: &Item) -> Result<MessageLink> {
    let ids = match item.get("whatsappIds") {
        Some(AttributeValue::L(ids)) => ids.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
        _ => Vec::new(),
    };
    Ok(MessageLink {
        whatsapp_message_ids: ids,
        connect_message_id: get_s(item, "connectId")?,
        direction: if get_s_or_empty(item, "direction") == "to-customer" {
            LinkDirection::ToCustomer
        } else {
            LinkDirection::ToAgent
        },
        key: ConversationKey::parse(&get_s(item, "business")?, &get_s(item, "customer")?)?,
        contact_id: get_s_or_empty(item, "linkContactId"),
        created_at_ms: get_n_or_zero(item, "createdAtMs"),
        excerpt: get_s_or_empty(item, "excerpt"),
        kind: get_s_or_empty(item, "kind"),
        interactive_template: get_s_or_empty(item, "interactive"),
    })
}

fn buffer_item(buffer: &PendingBuffer, ttl: Duration, now: Millis) -> Item {
    let state = buffer.state(now);
    let lease = buffer.lease.as_ref();
    let expires = now + millis(ttl);
    let messages = buffer
        .messages
        .iter()
        .map(|m| {
            AttributeValue::M(HashMap::from([
                ("seq".to_owned(), n(m.seq)),
                ("id".to_owned(), s(&m.message.message_id)),
                ("at".to_owned(), n(m.message.received_at_ms)),
                ("appendedAt".to_owned(), n(m.message.appended_at_ms)),
                (
                    "payload".to_owned(),
                    AttributeValue::B(Blob::new(m.message.payload.clone())),
                ),
            ]))
        })
        .collect();
    let mut item = HashMap::from([
        (
            "pk".to_owned(),
            s(pending_pk(&buffer.key, buffer.direction)),
        ),
        ("business".to_owned(), s(buffer.key.business().as_str())),
        ("customer".to_owned(), s(buffer.key.customer().as_str())),
        ("direction".to_owned(), s(buffer.direction.as_str())),
        ("version".to_owned(), n(buffer.version)),
        ("nextSeq".to_owned(), n(buffer.next_seq)),
        ("messages".to_owned(), AttributeValue::L(messages)),
        ("messageCount".to_owned(), n(state.message_count)),
        ("totalBytes".to_owned(), n(state.total_bytes)),
        ("firstAppendAtMs".to_owned(), n(state.first_append_at_ms)),
        ("lastAppendAtMs".to_owned(), n(state.last_append_at_ms)),
        ("flushDelayMs".to_owned(), n(buffer.flush_delay_ms)),
        ("maxWaitMs".to_owned(), n(buffer.max_wait_ms)),
        (
            "takeToken".to_owned(),
            s(lease.map_or("", |l| l.take_token.as_str())),
        ),
        (
            "batchId".to_owned(),
            s(lease.map_or("", |l| l.batch_id.as_str())),
        ),
        (
            "batchLastSeq".to_owned(),
            n(lease.map_or(0, |l| l.last_seq)),
        ),
        (
            "leasedUntilMs".to_owned(),
            n(lease.map_or(0, |l| l.until_ms)),
        ),
        ("attempts".to_owned(), n(buffer.attempts)),
        ("notBeforeMs".to_owned(), n(buffer.not_before_ms)),
        ("dueAtMs".to_owned(), n(state.due_at_ms)),
        ("expiresAtMs".to_owned(), n(expires)),
        (TTL_ATTRIBUTE.to_owned(), n(expires / 1000 + 1)),
    ]);
    if !buffer.messages.is_empty() {
        // Only buffers with something to flush are in the due index.
        item.insert("dueShard".to_owned(), s(due_shard(buffer.direction)));
    }
    item
}

fn buffer_from_item(
    key: &ConversationKey,
    direction: Direction,
    item: Option<&Item>,
    now: Millis,
) -> Result<PendingBuffer> {
    let mut buffer = PendingBuffer::empty(key.clone(), direction);
    let Some(item) = item else {
        return Ok(buffer);
    };
    buffer.version = get_n(item, "version")? as u64;
    if get_n_or_zero(item, "expiresAtMs") <= now {
        // Past its TTL (DynamoDB deletes it eventually): empty, but its
        // version lives on.
        return Ok(buffer);
    }
    buffer.next_seq = get_n(item, "nextSeq")? as u64;
    if let Some(AttributeValue::L(entries)) = item.get("messages") {
        for entry in entries {
            let AttributeValue::M(m) = entry else {
                return Err(SessionError::Store("pending entry is not a map".into()));
            };
            buffer.messages.push(StoredMessage {
                seq: get_n(m, "seq")? as u64,
                message: PendingMessage {
                    message_id: get_s(m, "id")?,
                    received_at_ms: get_n(m, "at")?,
                    appended_at_ms: get_n(m, "appendedAt")?,
                    payload: match m.get("payload") {
                        Some(AttributeValue::B(b)) => b.clone().into_inner(),
                        _ => Vec::new(),
                    },
                },
            });
        }
    }
    buffer.flush_delay_ms = get_n_or_zero(item, "flushDelayMs") as u64;
    buffer.max_wait_ms = get_n_or_zero(item, "maxWaitMs") as u64;
    let batch_id = get_s_or_empty(item, "batchId");
    buffer.lease = (!batch_id.is_empty()).then(|| pending::Lease {
        take_token: get_s_or_empty(item, "takeToken"),
        batch_id,
        last_seq: get_n_or_zero(item, "batchLastSeq") as u64,
        until_ms: get_n_or_zero(item, "leasedUntilMs"),
    });
    buffer.attempts = get_n_or_zero(item, "attempts") as u32;
    buffer.not_before_ms = get_n_or_zero(item, "notBeforeMs");
    Ok(buffer)
}

/// A buffer's state as the due index projects it (no messages).
fn state_from_index(item: &Item, now: Millis) -> Result<PendingState> {
    let direction = Direction::from_str_name(&get_s(item, "direction")?)
        .ok_or_else(|| SessionError::Store("pending item has a bad direction".into()))?;
    let leased_until = get_n_or_zero(item, "leasedUntilMs");
    Ok(PendingState {
        key: ConversationKey::parse(&get_s(item, "business")?, &get_s(item, "customer")?)?,
        direction,
        version: get_n(item, "version")? as u64,
        message_count: get_n_or_zero(item, "messageCount") as u32,
        total_bytes: get_n_or_zero(item, "totalBytes") as u64,
        first_append_at_ms: get_n_or_zero(item, "firstAppendAtMs"),
        last_append_at_ms: get_n_or_zero(item, "lastAppendAtMs"),
        due_at_ms: get_n_or_zero(item, "dueAtMs"),
        leased_until_ms: if leased_until > now { leased_until } else { 0 },
        attempts: get_n_or_zero(item, "attempts") as u32,
    })
}

/// A short random pause before retrying a lost version race.
async fn contention_pause() {
    tokio::time::sleep(Duration::from_millis(
        1 + u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 8),
    ))
    .await;
}

impl DynamoStore {
    /// A store on `table` through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Creates the table, its indexes and TTL (for local use and tests; the
    /// same definition is what deployments provision).
    pub async fn create_table(&self) -> Result<()> {
        let attribute = |name: &str, kind: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind)
                .build()
                .expect("name and type are set")
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .expect("name and type are set")
        };
        let index = |name: &str, keys: Vec<KeySchemaElement>, projection: Projection| {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .set_key_schema(Some(keys))
                .projection(projection)
                .build()
                .expect("name, keys and projection are set")
        };
        let all = Projection::builder()
            .projection_type(ProjectionType::All)
            .build();
        // The due index carries the state, not the (large) messages.
        let mut due = Projection::builder().projection_type(ProjectionType::Include);
        for attribute in DUE_INDEX_ATTRIBUTES {
            due = due.non_key_attributes(attribute);
        }
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk", ScalarAttributeType::S))
            .attribute_definitions(attribute("contactId", ScalarAttributeType::S))
            .attribute_definitions(attribute("initialContactId", ScalarAttributeType::S))
            .attribute_definitions(attribute("dueShard", ScalarAttributeType::S))
            .attribute_definitions(attribute("dueAtMs", ScalarAttributeType::N))
            .key_schema(key("pk", KeyType::Hash))
            .global_secondary_indexes(index(
                CONTACT_INDEX,
                vec![key("contactId", KeyType::Hash)],
                all.clone(),
            ))
            .global_secondary_indexes(index(
                INITIAL_CONTACT_INDEX,
                vec![key("initialContactId", KeyType::Hash)],
                all,
            ))
            .global_secondary_indexes(index(
                DUE_INDEX,
                vec![
                    key("dueShard", KeyType::Hash),
                    key("dueAtMs", KeyType::Range),
                ],
                due.build(),
            ))
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.code() == Some("ResourceInUseException") => return Ok(()),
            Err(e) => return Err(store_error(e)),
        }
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL_ATTRIBUTE)
                    .build()
                    .expect("enabled and attribute are set"),
            )
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn get(&self, pk: String) -> Result<Option<Item>> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .consistent_read(true)
            .send()
            .await
            .map(|out| out.item)
            .map_err(store_error)
    }

    /// Raw item access for tests that check stored attribute types.
    pub async fn raw_chat_item(&self, key: &ConversationKey) -> Result<Option<Item>> {
        self.get(chat_pk(key)).await
    }

    /// Chats (active and ended) whose `attribute` is `contact_id`, through
    /// `index`, unexpired.
    async fn query_contact(
        &self,
        index: &str,
        attribute: &str,
        contact_id: &str,
        now: Millis,
    ) -> Result<Vec<(bool, ActiveChat)>> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#c = :c")
            .expression_attribute_names("#c", attribute)
            .expression_attribute_values(":c", s(contact_id))
            .send()
            .await
            .map_err(store_error)?
            .items
            .unwrap_or_default();
        let mut found = Vec::new();
        for item in &items {
            let active = get_s_or_empty(item, "pk").starts_with("chat#");
            let chat = chat_from_item(item)?;
            if !chat.expired(now) {
                found.push((active, chat));
            }
        }
        Ok(found)
    }

    async fn chats_by_contact(
        &self,
        contact_id: &str,
        now: Millis,
    ) -> Result<Vec<(bool, ActiveChat)>> {
        let mut found = self
            .query_contact(CONTACT_INDEX, "contactId", contact_id, now)
            .await?;
        found.extend(
            self.query_contact(INITIAL_CONTACT_INDEX, "initialContactId", contact_id, now)
                .await?,
        );
        Ok(found)
    }

    /// Loads a buffer, applies `change`, and writes it back conditioned on
    /// the version read (retrying a lost race). `extra` adds one more item
    /// to the same transaction (an append's claim); its condition failing
    /// means the claim is lost.
    async fn with_buffer<T>(
        &self,
        key: &ConversationKey,
        direction: Direction,
        ttl: Duration,
        now: Millis,
        extra: Option<Extra>,
        mut change: impl FnMut(&mut PendingBuffer) -> Result<T>,
    ) -> Result<(T, PendingState)> {
        for _ in 0..WRITE_ATTEMPTS {
            let item = self.get(pending_pk(key, direction)).await?;
            let mut buffer = buffer_from_item(key, direction, item.as_ref(), now)?;
            let before = buffer.version;
            let value = change(&mut buffer)?;
            if buffer.version == before && extra.is_none() {
                return Ok((value, buffer.state(now)));
            }
            let ttl = if buffer.messages.is_empty() {
                pending::EMPTY_BUFFER_TTL
            } else {
                ttl
            };
            let (condition, version) = if item.is_some() {
                (
                    "version = :v",
                    Some(HashMap::from([(":v".to_owned(), n(before))])),
                )
            } else {
                ("attribute_not_exists(pk)", None)
            };
            let new_item = buffer_item(&buffer, ttl, now);
            let written = match &extra {
                None => self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(new_item))
                    .condition_expression(condition)
                    .set_expression_attribute_values(version)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        if condition_failed(&e) {
                            None
                        } else {
                            Some(store_error(e))
                        }
                    }),
                Some(extra) => {
                    let put = Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(new_item))
                        .condition_expression(condition)
                        .set_expression_attribute_values(version)
                        .build()
                        .map_err(build_error)?;
                    let extra = match extra {
                        Extra::CompleteClaim(update) => {
                            TransactWriteItem::builder().update(update.clone()).build()
                        }
                        Extra::ClaimOnce(put) => {
                            TransactWriteItem::builder().put(put.clone()).build()
                        }
                    };
                    self.client
                        .transact_write_items()
                        .transact_items(TransactWriteItem::builder().put(put).build())
                        .transact_items(extra)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| {
                            if transaction_item_failed(&e, 1) {
                                Some(SessionError::LeaseLost(
                                    "this claim is not held by that token (it expired and was taken over)"
                                        .into(),
                                ))
                            } else if condition_failed(&e) {
                                None
                            } else {
                                Some(store_error(e))
                            }
                        })
                }
            };
            match written {
                Ok(()) => return Ok((value, buffer.state(now))),
                Err(Some(error)) => return Err(error),
                Err(None) => contention_pause().await,
            }
        }
        Err(SessionError::Busy {
            message: "pending buffer is under heavy contention; retry".into(),
            retry_after: Duration::from_millis(50),
        })
    }
}

/// A claim change written in the same transaction as a buffer; its
/// condition failing is reported as `LeaseLost`.
enum Extra {
    /// Complete a claim held by a token.
    CompleteClaim(Update),
    /// Create a claim, completed, unless one exists.
    ClaimOnce(Put),
}

/// What the due index projects besides its keys.
const DUE_INDEX_ATTRIBUTES: [&str; 10] = [
    "business",
    "customer",
    "direction",
    "version",
    "messageCount",
    "totalBytes",
    "firstAppendAtMs",
    "lastAppendAtMs",
    "leasedUntilMs",
    "attempts",
];

#[async_trait]
impl SessionStore for DynamoStore {
    async fn chat_by_key(&self, key: &ConversationKey, now: Millis) -> Result<Option<ActiveChat>> {
        match self.get(chat_pk(key)).await? {
            Some(item) => Ok(Some(chat_from_item(&item)?).filter(|c| !c.expired(now))),
            None => Ok(None),
        }
    }

    async fn chat_by_contact(&self, contact_id: &str, now: Millis) -> Result<ChatLookup> {
        let found = self.chats_by_contact(contact_id, now).await?;
        if let Some((_, chat)) = found.iter().find(|(active, _)| *active) {
            return Ok(ChatLookup::Active(Box::new(chat.clone())));
        }
        Ok(match found.into_iter().next() {
            Some((_, chat)) => ChatLookup::Ended(Box::new(chat)),
            None => ChatLookup::Unknown,
        })
    }

    async fn try_lease(
        &self,
        key: &ConversationKey,
        ttl: Duration,
        now: Millis,
    ) -> Result<LeaseAttempt> {
        if let Some(chat) = self.chat_by_key(key, now).await? {
            return Ok(LeaseAttempt::Exists(Box::new(chat)));
        }
        let held = self.get(lease_pk(key)).await?;
        let client_token = match &held {
            Some(item) if get_n_or_zero(item, "leaseExpiresAtMs") > now => {
                return Ok(LeaseAttempt::Busy {
                    until_ms: get_n_or_zero(item, "leaseExpiresAtMs"),
                });
            }
            Some(item) if get_n_or_zero(item, "forgetAtMs") > now => {
                get_s_or_empty(item, "clientToken")
            }
            _ => new_token(),
        };
        let lease = Lease {
            lease_id: new_token(),
            expires_at_ms: now + millis(ttl),
            client_token,
        };
        let forget = now + millis(CLIENT_TOKEN_MEMORY);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(lease_pk(key)))
            .item("leaseId", s(&lease.lease_id))
            .item("leaseExpiresAtMs", n(lease.expires_at_ms))
            .item("clientToken", s(&lease.client_token))
            .item("forgetAtMs", n(forget))
            .item(TTL_ATTRIBUTE, n(forget / 1000 + 1))
            .condition_expression("attribute_not_exists(pk) OR leaseExpiresAtMs <= :now")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match put {
            Ok(_) => {}
            Err(e) if condition_failed(&e) => {
                let until_ms = match self.get(lease_pk(key)).await? {
                    Some(item) => get_n_or_zero(&item, "leaseExpiresAtMs"),
                    None => now,
                };
                return Ok(LeaseAttempt::Busy { until_ms });
            }
            Err(e) => return Err(store_error(e)),
        }
        // A holder that just finished wrote its chat and deleted its lease
        // before we put ours: look again, and drop ours outright (its
        // client token belongs to that chat and must not start another).
        if let Some(chat) = self.chat_by_key(key, now).await? {
            let _ = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(lease_pk(key)))
                .condition_expression("leaseId = :id")
                .expression_attribute_values(":id", s(&lease.lease_id))
                .send()
                .await;
            return Ok(LeaseAttempt::Exists(Box::new(chat)));
        }
        Ok(LeaseAttempt::Granted(lease))
    }

    async fn complete_creation(
        &self,
        lease_id: &str,
        mut chat: ActiveChat,
        now: Millis,
    ) -> Result<ActiveChat> {
        if chat.client_token.is_empty()
            && let Some(lease) = self.get(lease_pk(&chat.key)).await?
        {
            chat.client_token = get_s_or_empty(&lease, "clientToken");
        }
        chat.version = 1;
        chat.created_at_ms = now;
        chat.updated_at_ms = now;
        chat.ended_at_ms = 0;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(chat_item(chat_pk(&chat.key), &chat)))
            .condition_expression("attribute_not_exists(pk) OR expiresAt <= :nowS")
            .expression_attribute_values(":nowS", n(now / 1000))
            .build()
            .map_err(build_error)?;
        let release = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(lease_pk(&chat.key)))
            .condition_expression("leaseId = :id")
            .expression_attribute_values(":id", s(lease_id))
            .build()
            .map_err(build_error)?;
        let written = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().delete(release).build())
            .send()
            .await;
        match written {
            Ok(_) => Ok(chat),
            Err(e) if condition_failed(&e) => Err(SessionError::LeaseLost(
                if self.chat_by_key(&chat.key, now).await?.is_some() {
                    "a chat already exists for this conversation"
                } else {
                    "the creation lease was taken over by another caller"
                }
                .into(),
            )),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn abandon_creation(
        &self,
        key: &ConversationKey,
        lease_id: &str,
        forget_token: bool,
    ) -> Result<()> {
        if forget_token {
            let deleted = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(lease_pk(key)))
                .condition_expression("leaseId = :id")
                .expression_attribute_values(":id", s(lease_id))
                .send()
                .await;
            return match deleted {
                Ok(_) => Ok(()),
                Err(e) if condition_failed(&e) => Ok(()),
                Err(e) => Err(store_error(e)),
            };
        }
        // Expire rather than delete: the client token stays for the next
        // holder, in case Connect did open the chat.
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(lease_pk(key)))
            .update_expression("SET leaseExpiresAtMs = :zero")
            .condition_expression("leaseId = :id")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":id", s(lease_id))
            .send()
            .await;
        match updated {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn extend_creation(
        &self,
        key: &ConversationKey,
        lease_id: &str,
        extend_by: Duration,
        now: Millis,
    ) -> Result<Millis> {
        let until = now + millis(extend_by);
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(lease_pk(key)))
            .update_expression("SET leaseExpiresAtMs = :until")
            .condition_expression("leaseId = :id AND leaseExpiresAtMs > :now")
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":id", s(lease_id))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match updated {
            Ok(_) => Ok(until),
            Err(e) if condition_failed(&e) => Err(SessionError::LeaseLost(
                "the creation lease is no longer yours".into(),
            )),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn update_chat(&self, chat: ActiveChat, now: Millis) -> Result<ActiveChat> {
        let expected = chat.version;
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(chat_pk(&chat.key)))
            .update_expression(
                "SET contactId = :contact, participantId = :pid, participantToken = :ptok, \
                 connectionToken = :ctok, connectionExpiresAtMs = :cexp, displayName = :name, \
                 channel = :channel, updatedAtMs = :now, expiresAt = :exp, customerPhone = :phone, \
                 version = :next",
            )
            .condition_expression("attribute_exists(pk) AND version = :v AND expiresAt > :nowS")
            .expression_attribute_values(":contact", s(&chat.contact_id))
            .expression_attribute_values(":pid", s(&chat.participant_id))
            .expression_attribute_values(":ptok", s(&chat.participant_token))
            .expression_attribute_values(":ctok", s(&chat.connection_token))
            .expression_attribute_values(":cexp", n(chat.connection_expires_at_ms))
            .expression_attribute_values(":name", s(&chat.customer_display_name))
            .expression_attribute_values(":channel", s(&chat.channel))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":exp", n(chat.expires_at_s))
            .expression_attribute_values(":phone", s(&chat.customer_phone))
            .expression_attribute_values(":next", n(expected + 1))
            .expression_attribute_values(":v", n(expected))
            .expression_attribute_values(":nowS", n(now / 1000))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match updated {
            Ok(out) => chat_from_item(&out.attributes.unwrap_or_default()),
            Err(e) if condition_failed(&e) => match self.chat_by_key(&chat.key, now).await? {
                Some(stored) => Err(SessionError::Conflict(format!(
                    "chat is at version {}, update was for {expected}",
                    stored.version
                ))),
                None => Err(SessionError::NotFound(
                    "no active chat for this conversation".into(),
                )),
            },
            Err(e) => Err(store_error(e)),
        }
    }

    async fn record_customer_activity(
        &self,
        key: &ConversationKey,
        message_id: &str,
        at_ms: Millis,
        now: Millis,
    ) -> Result<ActiveChat> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(chat_pk(key)))
            .update_expression("SET lastMessageId = :id, lastMessageAtMs = :at")
            .condition_expression(
                "attribute_exists(pk) AND expiresAt > :nowS AND \
                 (attribute_not_exists(lastMessageAtMs) OR lastMessageAtMs < :at)",
            )
            .expression_attribute_values(":id", s(message_id))
            .expression_attribute_values(":at", n(at_ms))
            .expression_attribute_values(":nowS", n(now / 1000))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match updated {
            Ok(out) => chat_from_item(&out.attributes.unwrap_or_default()),
            Err(e) if condition_failed(&e) => self.chat_by_key(key, now).await?.ok_or_else(|| {
                SessionError::NotFound("no active chat for this conversation".into())
            }),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn end_chat(
        &self,
        key: &ConversationKey,
        contact_id: &str,
        expected_version: u64,
        grace: Duration,
        now: Millis,
    ) -> Result<EndOutcome> {
        if let Some(chat) = self.chat_by_key(key, now).await?
            && (chat.contact_id == contact_id || chat.initial_contact_id == contact_id)
        {
            if expected_version != 0 && chat.version != expected_version {
                return Err(SessionError::Conflict(format!(
                    "chat is at version {}, end was for {expected_version}",
                    chat.version
                )));
            }
            let mut ended = chat.clone();
            ended.version += 1;
            ended.ended_at_ms = now;
            ended.updated_at_ms = now;
            ended.expires_at_s = (now + millis(grace)) / 1000 + 1;
            let delete = Delete::builder()
                .table_name(&self.table)
                .key("pk", s(chat_pk(key)))
                .condition_expression("version = :v AND contactId = :c")
                .expression_attribute_values(":v", n(chat.version))
                .expression_attribute_values(":c", s(&chat.contact_id))
                .build()
                .map_err(build_error)?;
            let tombstone = Put::builder()
                .table_name(&self.table)
                .set_item(Some(chat_item(ended_pk(&ended.initial_contact_id), &ended)))
                .build()
                .map_err(build_error)?;
            let written = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().delete(delete).build())
                .transact_items(TransactWriteItem::builder().put(tombstone).build())
                .send()
                .await;
            return match written {
                Ok(_) => Ok(EndOutcome {
                    ended: true,
                    chat: Some(ended),
                }),
                Err(e) if condition_failed(&e) => Err(SessionError::Conflict(
                    "the chat changed while it was being ended; re-read it".into(),
                )),
                Err(e) => Err(store_error(e)),
            };
        }
        let tombstone = self
            .chats_by_contact(contact_id, now)
            .await?
            .into_iter()
            .find(|(active, chat)| !active && chat.key == *key)
            .map(|(_, chat)| chat);
        Ok(EndOutcome {
            ended: false,
            chat: tombstone,
        })
    }

    async fn claim(
        &self,
        origin: MessageOrigin,
        message_id: &str,
        ttl: Duration,
        in_progress_timeout: Duration,
        now: Millis,
    ) -> Result<ClaimOutcome> {
        let token = new_token();
        let expires_ms = now + millis(ttl);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(claim_pk(origin, message_id)))
            .item("token", s(&token))
            .item("completed", AttributeValue::Bool(false))
            .item("staleAtMs", n(now + millis(in_progress_timeout)))
            .item("expiresAtMs", n(expires_ms))
            .item("result", s(""))
            .item(TTL_ATTRIBUTE, n(expires_ms / 1000 + 1))
            .condition_expression(
                "attribute_not_exists(pk) OR expiresAtMs <= :now OR (completed = :false AND staleAtMs <= :now)",
            )
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .send()
            .await;
        match put {
            Ok(_) => Ok(ClaimOutcome::Claimed { token }),
            Err(e) if condition_failed(&e) => {
                let item = self
                    .get(claim_pk(origin, message_id))
                    .await?
                    .unwrap_or_default();
                Ok(
                    if matches!(item.get("completed"), Some(AttributeValue::Bool(true))) {
                        ClaimOutcome::AlreadyCompleted {
                            result: get_s_or_empty(&item, "result"),
                        }
                    } else {
                        ClaimOutcome::InProgress {
                            retry_after: Duration::from_millis(
                                (get_n_or_zero(&item, "staleAtMs") - now).max(1) as u64,
                            ),
                        }
                    },
                )
            }
            Err(e) => Err(store_error(e)),
        }
    }

    async fn complete_claim(&self, claim: &ClaimRef, result: &str, _now: Millis) -> Result<()> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(claim_pk(claim.origin, &claim.message_id)))
            .update_expression("SET completed = :true, #r = :result")
            .condition_expression("#t = :token")
            .expression_attribute_names("#t", "token")
            .expression_attribute_names("#r", "result")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":token", s(&claim.token))
            .expression_attribute_values(":result", s(result))
            .send()
            .await;
        match updated {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Err(SessionError::LeaseLost(
                "this claim is not held by that token (it expired and was taken over)".into(),
            )),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn release_claim(&self, claim: &ClaimRef) -> Result<()> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(claim_pk(claim.origin, &claim.message_id)))
            .condition_expression("#t = :token AND completed = :false")
            .expression_attribute_names("#t", "token")
            .expression_attribute_values(":token", s(&claim.token))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn extend_claim(&self, claim: &ClaimRef, extend_by: Duration, now: Millis) -> Result<()> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(claim_pk(claim.origin, &claim.message_id)))
            .update_expression("SET staleAtMs = :until")
            .condition_expression("#t = :token AND completed = :false AND expiresAtMs > :now")
            .expression_attribute_names("#t", "token")
            .expression_attribute_values(":token", s(&claim.token))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":until", n(now + millis(extend_by)))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match updated {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Err(SessionError::LeaseLost(
                "this claim is not held by that token (it expired and was taken over)".into(),
            )),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn link_messages(
        &self,
        links: Vec<MessageLink>,
        ttl: Duration,
        now: Millis,
    ) -> Result<()> {
        for link in links {
            // The Connect side lists every WhatsApp id linked to it so far.
            let connect_pk = format!("link#connect#{}", link.connect_message_id);
            let mut ids = match self.get(connect_pk.clone()).await? {
                Some(item) if get_n_or_zero(&item, "expiresAtMs") > now => {
                    link_from_item(&item)?.whatsapp_message_ids
                }
                _ => Vec::new(),
            };
            for id in &link.whatsapp_message_ids {
                if !ids.contains(id) {
                    ids.push(id.clone());
                }
            }
            let mut items = vec![link_item(connect_pk, &link, &ids, now, ttl)];
            for id in &link.whatsapp_message_ids {
                items.push(link_item(
                    format!("link#wa#{id}"),
                    &link,
                    &link.whatsapp_message_ids,
                    now,
                    ttl,
                ));
            }
            for item in items {
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .send()
                    .await
                    .map_err(store_error)?;
            }
        }
        Ok(())
    }

    async fn message_link(
        &self,
        origin: MessageOrigin,
        message_id: &str,
        now: Millis,
    ) -> Result<Option<MessageLink>> {
        let pk = match origin {
            MessageOrigin::WhatsApp => format!("link#wa#{message_id}"),
            MessageOrigin::Connect => format!("link#connect#{message_id}"),
            _ => {
                return Err(SessionError::InvalidArgument(
                    "origin: links exist for WHATSAPP and CONNECT ids only".into(),
                ));
            }
        };
        match self.get(pk).await? {
            Some(item) if get_n_or_zero(&item, "expiresAtMs") > now => {
                Ok(Some(link_from_item(&item)?))
            }
            _ => Ok(None),
        }
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
        let extra = match &claim {
            AppendClaim::None => None,
            AppendClaim::Complete(claim) => Some(Extra::CompleteClaim(
                Update::builder()
                    .table_name(&self.table)
                    .key("pk", s(claim_pk(claim.origin, &claim.message_id)))
                    .update_expression("SET completed = :true")
                    .condition_expression("#t = :token")
                    .expression_attribute_names("#t", "token")
                    .expression_attribute_values(":true", AttributeValue::Bool(true))
                    .expression_attribute_values(":token", s(&claim.token))
                    .build()
                    .map_err(build_error)?,
            )),
            AppendClaim::Once { origin, ttl } => {
                let expires_ms = now + millis(*ttl);
                Some(Extra::ClaimOnce(
                    Put::builder()
                        .table_name(&self.table)
                        .item("pk", s(claim_pk(*origin, &message.message_id)))
                        .item("token", s(new_token()))
                        .item("completed", AttributeValue::Bool(true))
                        .item("staleAtMs", n(expires_ms))
                        .item("expiresAtMs", n(expires_ms))
                        .item("result", s(""))
                        .item(TTL_ATTRIBUTE, n(expires_ms / 1000 + 1))
                        .condition_expression(
                            "attribute_not_exists(pk) OR expiresAtMs <= :now OR (completed = :false AND staleAtMs <= :now)",
                        )
                        .expression_attribute_values(":now", n(now))
                        .expression_attribute_values(":false", AttributeValue::Bool(false))
                        .build()
                        .map_err(build_error)?,
                ))
            }
        };
        let appended = self
            .with_buffer(key, direction, ttl, now, extra, |buffer| {
                buffer.append(message.clone(), options, now)
            })
            .await;
        match (appended, &claim) {
            (Ok((_, state)), _) => Ok(state),
            // The claim was there: say whether it completed or is held.
            (Err(SessionError::LeaseLost(_)), AppendClaim::Once { origin, .. }) => {
                let item = self
                    .get(claim_pk(*origin, &message.message_id))
                    .await?
                    .unwrap_or_default();
                if matches!(item.get("completed"), Some(AttributeValue::Bool(true))) {
                    Err(SessionError::Duplicate(
                        "this message was appended before".into(),
                    ))
                } else {
                    Err(SessionError::Busy {
                        message: "this message is claimed by another caller".into(),
                        retry_after: Duration::from_millis(
                            (get_n_or_zero(&item, "staleAtMs") - now).max(1) as u64,
                        ),
                    })
                }
            }
            (Err(error), _) => Err(error),
        }
    }

    async fn peek_pending(
        &self,
        key: &ConversationKey,
        direction: Direction,
        now: Millis,
    ) -> Result<PendingState> {
        let item = self.get(pending_pk(key, direction)).await?;
        Ok(buffer_from_item(key, direction, item.as_ref(), now)?.state(now))
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
            .with_buffer(key, direction, BUFFER_TTL, now, None, |buffer| {
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
        let (_, state) = self
            .with_buffer(key, direction, BUFFER_TTL, now, None, |buffer| {
                buffer.ack(take_token)
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
        let (_, state) = self
            .with_buffer(key, direction, BUFFER_TTL, now, None, |buffer| {
                buffer.release(take_token, retry_after, now)
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
        let (until, _) = self
            .with_buffer(key, direction, BUFFER_TTL, now, None, |buffer| {
                buffer.extend(take_token, extend_by, now)
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
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .key_condition_expression("dueShard = :due AND dueAtMs <= :now")
            .expression_attribute_values(":due", s(due_shard(direction)))
            .expression_attribute_values(":now", n(now))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(store_error)?
            .items
            .unwrap_or_default();
        items
            .iter()
            .map(|item| state_from_index(item, now))
            .filter(|state| !matches!(state, Ok(s) if s.leased_until_ms > now))
            .collect()
    }
}
