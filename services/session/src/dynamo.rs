//! The DynamoDB backend: one table, items told apart by their key prefix,
//! conditional writes for every race, GSIs for the lookups (no scans), and
//! `expiresAt` stored as a Number so DynamoDB TTL really deletes items.
//! Reads also check expiry, since TTL deletion can lag by hours.

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    Client,
    error::{ProvideErrorMetadata, SdkError},
    primitives::Blob,
    types::{
        AttributeDefinition, AttributeValue, BillingMode, Delete, GlobalSecondaryIndex,
        KeySchemaElement, KeyType, Projection, ProjectionType, Put, ReturnValue,
        ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem,
    },
};

use crate::{
    error::{Result, SessionError},
    model::{
        ActiveChat, ClaimOutcome, ConversationKey, Lease, LeaseAttempt, MessageOrigin, Millis,
        PendingMessage, PendingState,
    },
    store::{SessionStore, millis, new_token},
};

type Item = HashMap<String, AttributeValue>;

/// Index on the current contact id.
pub const CONTACT_INDEX: &str = "contact-index";
/// Index on the initial contact id (stable across transfers).
pub const INITIAL_CONTACT_INDEX: &str = "initial-contact-index";
/// Index of pending buffers by last append time.
pub const DUE_INDEX: &str = "due-index";
/// The TTL attribute (epoch seconds, Number).
pub const TTL_ATTRIBUTE: &str = "expiresAt";
const DUE_SHARD: &str = "due";

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

fn chat_pk(key: &ConversationKey) -> String {
    format!("chat#{}", key.storage_id())
}

fn lease_pk(key: &ConversationKey) -> String {
    format!("lease#{}", key.storage_id())
}

fn claim_pk(origin: MessageOrigin, id: &str) -> String {
    format!("claim#{}#{id}", origin.as_str())
}

fn pending_pk(key: &ConversationKey) -> String {
    format!("pending#{}", key.storage_id())
}

fn chat_item(chat: &ActiveChat) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(chat_pk(&chat.key))),
        ("business".to_owned(), s(chat.key.business())),
        ("customer".to_owned(), s(chat.key.customer())),
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
    ])
}

fn chat_from_item(item: &Item) -> Result<ActiveChat> {
    Ok(ActiveChat {
        key: ConversationKey::new(&get_s(item, "business")?, &get_s(item, "customer")?)?,
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
    })
}

fn pending_from_item(key: &ConversationKey, item: &Item) -> Result<PendingState> {
    Ok(PendingState {
        key: key.clone(),
        version: get_n(item, "version")? as u64,
        message_count: get_n(item, "messageCount")? as u32,
        last_append_at_ms: get_n(item, "lastAppendAtMs")?,
    })
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
        let index = |name: &str, keys: Vec<KeySchemaElement>| {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .set_key_schema(Some(keys))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .expect("name, keys and projection are set")
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk", ScalarAttributeType::S))
            .attribute_definitions(attribute("contactId", ScalarAttributeType::S))
            .attribute_definitions(attribute("initialContactId", ScalarAttributeType::S))
            .attribute_definitions(attribute("dueShard", ScalarAttributeType::S))
            .attribute_definitions(attribute("lastAppendAtMs", ScalarAttributeType::N))
            .key_schema(key("pk", KeyType::Hash))
            .global_secondary_indexes(index(CONTACT_INDEX, vec![key("contactId", KeyType::Hash)]))
            .global_secondary_indexes(index(
                INITIAL_CONTACT_INDEX,
                vec![key("initialContactId", KeyType::Hash)],
            ))
            .global_secondary_indexes(index(
                DUE_INDEX,
                vec![
                    key("dueShard", KeyType::Hash),
                    key("lastAppendAtMs", KeyType::Range),
                ],
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
    pub async fn raw_chat_item(
        &self,
        key: &ConversationKey,
    ) -> Result<Option<HashMap<String, AttributeValue>>> {
        self.get(chat_pk(key)).await
    }

    async fn query_contact(
        &self,
        index: &str,
        attribute: &str,
        contact_id: &str,
        now: Millis,
    ) -> Result<Option<ActiveChat>> {
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
        for item in &items {
            let chat = chat_from_item(item)?;
            if !chat.expired(now) {
                return Ok(Some(chat));
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl SessionStore for DynamoStore {
    async fn chat_by_key(&self, key: &ConversationKey, now: Millis) -> Result<Option<ActiveChat>> {
        match self.get(chat_pk(key)).await? {
            Some(item) => Ok(Some(chat_from_item(&item)?).filter(|c| !c.expired(now))),
            None => Ok(None),
        }
    }

    async fn chat_by_contact(&self, contact_id: &str, now: Millis) -> Result<Option<ActiveChat>> {
        match self
            .query_contact(CONTACT_INDEX, "contactId", contact_id, now)
            .await?
        {
            Some(chat) => Ok(Some(chat)),
            None => {
                self.query_contact(INITIAL_CONTACT_INDEX, "initialContactId", contact_id, now)
                    .await
            }
        }
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
        let lease = Lease {
            lease_id: new_token(),
            expires_at_ms: now + millis(ttl),
        };
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(lease_pk(key)))
            .item("leaseId", s(&lease.lease_id))
            .item("leaseExpiresAtMs", n(lease.expires_at_ms))
            .item(TTL_ATTRIBUTE, n(lease.expires_at_ms / 1000 + 1))
            .condition_expression("attribute_not_exists(pk) OR leaseExpiresAtMs <= :now")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match put {
            Ok(_) => {}
            Err(e) if condition_failed(&e) => {
                let until_ms = match self.get(lease_pk(key)).await? {
                    Some(item) => get_n(&item, "leaseExpiresAtMs")?,
                    None => now,
                };
                return Ok(LeaseAttempt::Busy { until_ms });
            }
            Err(e) => return Err(store_error(e)),
        }
        // A holder that just finished wrote its chat before dropping the
        // lease we now hold: look again, so that chat is never duplicated.
        if let Some(chat) = self.chat_by_key(key, now).await? {
            self.abandon_creation(key, &lease.lease_id).await?;
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
        chat.version = 1;
        chat.created_at_ms = now;
        chat.updated_at_ms = now;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(chat_item(&chat)))
            .condition_expression("attribute_not_exists(pk) OR expiresAt <= :nowS")
            .expression_attribute_values(":nowS", n(now / 1000))
            .build()
            .map_err(|e| SessionError::Store(e.to_string()))?;
        let release = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(lease_pk(&chat.key)))
            .condition_expression("attribute_not_exists(pk) OR leaseId = :id")
            .expression_attribute_values(":id", s(lease_id))
            .build()
            .map_err(|e| SessionError::Store(e.to_string()))?;
        let written = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().delete(release).build())
            .send()
            .await;
        match written {
            Ok(_) => Ok(chat),
            Err(e) if condition_failed(&e) => Err(SessionError::Precondition(
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

    async fn abandon_creation(&self, key: &ConversationKey, lease_id: &str) -> Result<()> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(lease_pk(key)))
            .condition_expression("leaseId = :id")
            .expression_attribute_values(":id", s(lease_id))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn update_chat(&self, mut chat: ActiveChat, now: Millis) -> Result<ActiveChat> {
        let expected = chat.version;
        let Some(stored) = self.chat_by_key(&chat.key, now).await? else {
            return Err(SessionError::NotFound(
                "no active chat for this conversation".into(),
            ));
        };
        chat.version = expected + 1;
        chat.created_at_ms = stored.created_at_ms;
        chat.updated_at_ms = now;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(chat_item(&chat)))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(expected))
            .send()
            .await;
        match put {
            Ok(_) => Ok(chat),
            Err(e) if condition_failed(&e) => Err(SessionError::Conflict(format!(
                "chat is no longer at version {expected}"
            ))),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn end_chat(&self, contact_id: &str, now: Millis) -> Result<bool> {
        let Some(chat) = self.chat_by_contact(contact_id, now).await? else {
            return Ok(false);
        };
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(chat_pk(&chat.key)))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(store_error(e)),
        }
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
            .item("claimedAtMs", n(now))
            .item("expiresAtMs", n(expires_ms))
            .item(TTL_ATTRIBUTE, n(expires_ms / 1000 + 1))
            .condition_expression(
                "attribute_not_exists(pk) OR expiresAtMs <= :now OR (completed = :false AND claimedAtMs <= :stale)",
            )
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":stale", n(now - millis(in_progress_timeout)))
            .send()
            .await;
        match put {
            Ok(_) => Ok(ClaimOutcome::Claimed { token }),
            Err(e) if condition_failed(&e) => {
                let completed = match self.get(claim_pk(origin, message_id)).await? {
                    Some(item) => matches!(item.get("completed"), Some(AttributeValue::Bool(true))),
                    None => false,
                };
                Ok(if completed {
                    ClaimOutcome::AlreadyCompleted
                } else {
                    ClaimOutcome::InProgress
                })
            }
            Err(e) => Err(store_error(e)),
        }
    }

    async fn complete_claim(
        &self,
        origin: MessageOrigin,
        message_id: &str,
        token: &str,
        _now: Millis,
    ) -> Result<()> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(claim_pk(origin, message_id)))
            .update_expression("SET completed = :true")
            .condition_expression("#t = :token")
            .expression_attribute_names("#t", "token")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":token", s(token))
            .send()
            .await;
        match updated {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Err(SessionError::Precondition(
                "this claim is not held by that token".into(),
            )),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn release_claim(
        &self,
        origin: MessageOrigin,
        message_id: &str,
        token: &str,
    ) -> Result<()> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(claim_pk(origin, message_id)))
            .condition_expression("#t = :token AND completed = :false")
            .expression_attribute_names("#t", "token")
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn append_pending(
        &self,
        key: &ConversationKey,
        message: PendingMessage,
        ttl: Duration,
        now: Millis,
    ) -> Result<PendingState> {
        let entry = AttributeValue::M(HashMap::from([
            ("id".to_owned(), s(&message.message_id)),
            ("at".to_owned(), n(message.received_at_ms)),
            (
                "payload".to_owned(),
                AttributeValue::B(Blob::new(message.payload)),
            ),
        ]));
        let expires_ms = now + millis(ttl);
        // Version-checked append: each attempt names the version it read,
        // so concurrent appends to one buffer serialise instead of relying
        // on the store to make list_append atomic under contention (moto,
        // for one, does not). Bounded: a buffer is written by one sender.
        for _ in 0..64 {
            let current = self.get(pending_pk(key)).await?;
            let version = match &current {
                Some(item) => {
                    if matches!(item.get("ids"), Some(AttributeValue::Ss(ids)) if ids.contains(&message.message_id))
                    {
                        // A redelivered webhook: already buffered.
                        return pending_from_item(key, item);
                    }
                    get_n(item, "version")?
                }
                None => 0,
            };
            let condition = if version == 0 {
                "attribute_not_exists(version)"
            } else {
                "version = :version"
            };
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(pending_pk(key)))
                .update_expression(
                    "SET messages = list_append(if_not_exists(messages, :empty), :entry), \
                     version = :next, \
                     messageCount = if_not_exists(messageCount, :zero) + :one, \
                     lastAppendAtMs = :now, business = :b, customer = :c, dueShard = :due, \
                     expiresAtMs = :expMs, expiresAt = :exp \
                     ADD ids :idSet",
                )
                .condition_expression(condition)
                .expression_attribute_values(":empty", AttributeValue::L(vec![]))
                .expression_attribute_values(":entry", AttributeValue::L(vec![entry.clone()]))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":next", n(version + 1))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":b", s(key.business()))
                .expression_attribute_values(":c", s(key.customer()))
                .expression_attribute_values(":due", s(DUE_SHARD))
                .expression_attribute_values(":expMs", n(expires_ms))
                .expression_attribute_values(":exp", n(expires_ms / 1000 + 1))
                .expression_attribute_values(
                    ":idSet",
                    AttributeValue::Ss(vec![message.message_id.clone()]),
                )
                .return_values(ReturnValue::AllNew);
            if version != 0 {
                update = update.expression_attribute_values(":version", n(version));
            }
            match update.send().await {
                Ok(out) => return pending_from_item(key, &out.attributes.unwrap_or_default()),
                Err(e) if condition_failed(&e) => {
                    tokio::time::sleep(Duration::from_millis(
                        1 + u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 8),
                    ))
                    .await;
                }
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(SessionError::Busy(
            "pending buffer is under heavy contention; retry".into(),
        ))
    }

    async fn peek_pending(&self, key: &ConversationKey) -> Result<PendingState> {
        match self.get(pending_pk(key)).await? {
            Some(item) => pending_from_item(key, &item),
            None => Ok(PendingState::empty(key.clone())),
        }
    }

    async fn take_pending(
        &self,
        key: &ConversationKey,
        expected_version: u64,
    ) -> Result<Vec<PendingMessage>> {
        let mut delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pending_pk(key)))
            .return_values(ReturnValue::AllOld);
        delete = if expected_version == 0 {
            delete.condition_expression("attribute_not_exists(pk)")
        } else {
            delete
                .condition_expression("version = :v")
                .expression_attribute_values(":v", n(expected_version))
        };
        let old = match delete.send().await {
            Ok(out) => out.attributes.unwrap_or_default(),
            Err(e) if condition_failed(&e) => {
                let now_at = self.peek_pending(key).await?.version;
                return Err(SessionError::Conflict(format!(
                    "buffer is at version {now_at}, take was for {expected_version}"
                )));
            }
            Err(e) => return Err(store_error(e)),
        };
        let Some(AttributeValue::L(entries)) = old.get("messages") else {
            return Ok(Vec::new());
        };
        entries
            .iter()
            .map(|entry| {
                let AttributeValue::M(m) = entry else {
                    return Err(SessionError::Store("pending entry is not a map".into()));
                };
                Ok(PendingMessage {
                    message_id: get_s(m, "id")?,
                    received_at_ms: get_n(m, "at")?,
                    payload: match m.get("payload") {
                        Some(AttributeValue::B(b)) => b.clone().into_inner(),
                        _ => Vec::new(),
                    },
                })
            })
            .collect()
    }

    async fn list_due(
        &self,
        quiet_for: Duration,
        limit: usize,
        now: Millis,
    ) -> Result<Vec<PendingState>> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .key_condition_expression("dueShard = :due AND lastAppendAtMs <= :cut")
            .filter_expression("expiresAtMs > :now")
            .expression_attribute_values(":due", s(DUE_SHARD))
            .expression_attribute_values(":cut", n(now - millis(quiet_for)))
            .expression_attribute_values(":now", n(now))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(store_error)?
            .items
            .unwrap_or_default();
        items
            .iter()
            .map(|item| {
                let key =
                    ConversationKey::new(&get_s(item, "business")?, &get_s(item, "customer")?)?;
                pending_from_item(&key, item)
            })
            .collect()
    }
}
