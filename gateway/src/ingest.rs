//! The front of the pipeline: one event from a source → parse → dedupe →
//! buffer. An event is acknowledged only once its effects are durable:
//! each customer message (or agent item) is appended to its conversation's
//! pending buffer *once* — the session records its id as claimed and
//! completed in the same transaction as the append, so dedupe and buffer
//! are one call and no crash can leave one without the other. A
//! redelivered event finds its messages done and changes nothing.
//!
//! WhatsApp statuses (delivered, read, failed) of messages Parley sent are
//! turned into Connect receipts or agent notices here, at once: they need
//! no ordering and every effect carries an idempotency key.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use parley_client::ClientError;
use parley_identity::{BusinessNumber, CustomerId};
use parley_proto::{
    common::{ConversationKey, ErrorReason},
    connect::{ChatEvent, ContentType, SendEventRequest, SendMessageRequest},
    session::{
        AppendOnce, AppendPendingRequest, Direction, GetMessageLinkRequest, MessageOrigin,
        PendingMessage,
    },
};
use tracing::Instrument as _;

use crate::{
    config::GatewayConfig,
    deliver::{chat, describe},
    flush::Wakeups,
    keys,
    model::{AgentItem, Content, CustomerMessage, ItemKind, MediaKind, StatusKind},
    parse::{
        self,
        whatsapp::{RawMessage, RawStatus},
    },
    receipts,
    routing::LiveRouting,
    services::Services,
    test_hooks, trace,
};

/// Which stream an event came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// WhatsApp (End User Messaging Social, or Meta's webhook).
    Inbound,
    /// Amazon Connect chat streaming.
    Outbound,
}

impl Stream {
    /// Its name in logs, spans and dead letters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// An event as a source received it.
#[derive(Debug, Clone, Default)]
pub struct Event {
    /// The body (an SNS notification, a raw message, a Meta webhook).
    pub body: String,
    /// Transport message attributes (SQS's; SNS's are inside the body).
    pub attributes: BTreeMap<String, String>,
    /// W3C trace context the transport carried, if any.
    pub traceparent: String,
    /// When the source received it.
    pub received_at_ms: i64,
    /// When it was published, when the transport says (0: unknown).
    pub sent_at_ms: i64,
}

/// What the source does with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled, or nothing to do: acknowledge it.
    Done,
    /// Not now: deliver it again after `after`.
    Retry {
        /// The delay.
        after: Duration,
        /// Why, for the logs.
        reason: String,
    },
    /// Never: dead-letter it with `reason`, then acknowledge it.
    Reject {
        /// Why.
        reason: String,
    },
}

impl Outcome {
    fn retry(after: Duration, reason: impl Into<String>) -> Self {
        Self::Retry {
            after,
            reason: reason.into(),
        }
    }

    fn reject(reason: impl Into<String>) -> Self {
        Self::Reject {
            reason: reason.into(),
        }
    }

    /// The outcome of a failed service call.
    fn from_error(error: &ClientError) -> Self {
        if error.is_retryable()
            || matches!(
                error.reason(),
                ErrorReason::Busy
                    | ErrorReason::Throttled
                    | ErrorReason::Unavailable
                    | ErrorReason::Configuration
                    | ErrorReason::LeaseLost
                    | ErrorReason::VersionConflict
            )
        {
            Self::retry(
                error.retry_after().unwrap_or(Duration::from_secs(2)),
                describe(error),
            )
        } else {
            Self::reject(describe(error))
        }
    }
}

/// Parses, dedupes and buffers events.
pub struct Ingest {
    services: Services,
    routing: LiveRouting,
    config: Arc<GatewayConfig>,
    inbound_wakeups: Wakeups,
    agent_items: AgentItemBuffer,
}

impl Ingest {
    /// An ingest stage over `services`, waking the inbound flusher when a
    /// buffer becomes due; agent items go through `agent_items`.
    pub fn new(
        services: Services,
        routing: LiveRouting,
        config: Arc<GatewayConfig>,
        inbound_wakeups: Wakeups,
        agent_items: AgentItemBuffer,
    ) -> Self {
        Self {
            services,
            routing,
            config,
            inbound_wakeups,
            agent_items,
        }
    }

    /// Handles one event; the source acts on the outcome.
    pub async fn handle(&self, stream: Stream, event: &Event) -> Outcome {
        let span = tracing::info_span!(
            "ingest",
            stream = stream.as_str(),
            outcome = tracing::field::Empty
        );
        // The transport's trace context, else one the publisher put in the
        // SNS message attributes.
        let traceparent = if event.traceparent.is_empty() {
            parse::payload(&event.body, &event.attributes)
                .ok()
                .and_then(|p| p.attributes.get("traceparent").cloned())
                .unwrap_or_default()
        } else {
            event.traceparent.clone()
        };
        trace::continue_trace(&span, &traceparent);
        let outcome = async {
            match stream {
                Stream::Inbound => self.inbound(event).await,
                Stream::Outbound => self.outbound(event).await,
            }
        }
        .instrument(span.clone())
        .await;
        span.record(
            "outcome",
            match &outcome {
                Outcome::Done => "done",
                Outcome::Retry { .. } => "retry",
                Outcome::Reject { .. } => "reject",
            },
        );
        outcome
    }

    async fn inbound(&self, event: &Event) -> Outcome {
        let webhook = match parse::inbound(&event.body, &event.attributes) {
            Ok(webhook) => webhook,
            Err(error) => return Outcome::reject(error.reason),
        };
        for (number, error) in &webhook.errors {
            tracing::warn!(
                business = %parley_identity::fingerprint(number),
                code = error.code,
                title = %error.title,
                "WhatsApp reported an error for the business number"
            );
        }
        let traceparent = trace::traceparent_of(&tracing::Span::current());
        for message in &webhook.messages {
            let outcome = self
                .accept_message(&webhook.numbers, message, event, &traceparent)
                .await;
            if outcome != Outcome::Done {
                return outcome;
            }
        }
        for status in &webhook.statuses {
            let outcome = self.accept_status(status).await;
            if outcome != Outcome::Done {
                return outcome;
            }
        }
        Outcome::Done
    }

    /// The business number a webhook's message was sent to.
    fn business_number(
        &self,
        numbers: &[(String, String)],
        meta_id: &str,
    ) -> Result<BusinessNumber, String> {
        if let Some((_, arn)) = numbers.iter().find(|(id, _)| id == meta_id) {
            return BusinessNumber::parse(arn).map_err(|e| format!("the event's number ARN: {e}"));
        }
        self.routing.get().directory().resolve(meta_id).map_err(|e| {
            format!(
                "business number with Meta id {meta_id} is not known: the event does not map it and the routing file has no meta_id for it ({e})"
            )
        })
    }

    /// Claims, buffers and acknowledges one customer message.
    async fn accept_message(
        &self,
        numbers: &[(String, String)],
        raw: &RawMessage,
        event: &Event,
        traceparent: &str,
    ) -> Outcome {
        let number = match self.business_number(numbers, &raw.meta_phone_number_id) {
            Ok(number) => number,
            Err(reason) => return Outcome::reject(reason),
        };
        let sender = if raw.from.is_empty() {
            &raw.from_user_id
        } else {
            &raw.from
        };
        let customer = match CustomerId::parse(sender) {
            Ok(customer) => customer,
            Err(error) => {
                return Outcome::reject(format!("message {}: the sender: {error}", raw.wamid));
            }
        };
        let route = match self.routing.get().route(&number) {
            Ok(route) => route,
            Err(error) => return Outcome::reject(error.0),
        };
        let forwarded = match &raw.content {
            Content::Reaction { .. } => route.forward_reactions,
            Content::Media {
                kind: MediaKind::Sticker,
                ..
            } => route.forward_stickers,
            _ => true,
        };
        if !forwarded {
            tracing::debug!(kind = raw.content.kind_name(), "ignored by route");
            return Outcome::Done;
        }
        let message = CustomerMessage {
            wamid: raw.wamid.clone(),
            business: number.as_str().to_owned(),
            customer: customer.as_str().to_owned(),
            phone: customer.phone().unwrap_or_default().to_owned(),
            profile_name: raw.profile_name.clone(),
            sent_at_ms: raw.timestamp_s.saturating_mul(1000),
            context: raw.context.clone(),
            referral: raw.referral.clone(),
            content: raw.content.clone(),
            traceparent: traceparent.to_owned(),
        };
        let key = ConversationKey {
            business_number_id: message.business.clone(),
            customer_id: message.customer.clone(),
        };
        tracing::info!(
            kind = message.content.kind_name(),
            conversation = %parley_identity::fingerprint(&format!("{}#{}", key.business_number_id, key.customer_id)),
            "customer message"
        );
        let payload = match serde_json::to_vec(&message) {
            Ok(payload) => payload,
            Err(error) => return Outcome::reject(format!("message {}: {error}", raw.wamid)),
        };
        let appended = append_once(
            &self.services,
            self.config.claim_ttl,
            MessageOrigin::Whatsapp,
            &message.wamid,
            key,
            Direction::Inbound,
            payload,
            event.received_at_ms,
            (route.buffer, route.max_wait),
        )
        .await;
        match appended {
            Appended::Now(due_at_ms) => {
                crate::metrics::metrics().messages.add(
                    1,
                    &[
                        crate::metrics::label("direction", "inbound"),
                        crate::metrics::label("kind", message.content.kind_name()),
                    ],
                );
                self.inbound_wakeups.at(due_at_ms);
                receipts::react(
                    &self.services,
                    &message,
                    receipts::Progress::Received,
                    &route.reactions.received,
                )
                .await;
                Outcome::Done
            }
            Appended::Before => Outcome::Done,
            Appended::Not(outcome) => outcome,
        }
    }

    /// A status of a message Parley sent: a Connect receipt (delivered,
    /// read) or an agent notice (failed).
    async fn accept_status(&self, status: &RawStatus) -> Outcome {
        let event = match &status.status {
            StatusKind::Delivered => ChatEvent::MessageDelivered,
            StatusKind::Read | StatusKind::Played => ChatEvent::MessageRead,
            StatusKind::Failed => ChatEvent::Unspecified,
            _ => return Outcome::Done,
        };
        let link = self
            .services
            .session
            .get_message_link(GetMessageLinkRequest {
                origin: MessageOrigin::Whatsapp as i32,
                message_id: status.wamid.clone(),
            })
            .await;
        let link = match link {
            Ok(link) => link,
            // Not a message Parley sent (or its link expired): nothing to tell.
            Err(error) if error.is(ErrorReason::NotFound) => return Outcome::Done,
            Err(error) => return Outcome::from_error(&error),
        };
        let mut chat = match chat::by_contact(&self.services, &link.contact_id, "").await {
            Ok(Some(chat)) => chat,
            Ok(None) => return Outcome::Done,
            Err(error) => {
                return Outcome::retry(Duration::from_secs(2), error.reason().to_owned());
            }
        };
        let status_name = format!("{:?}", status.status).to_ascii_lowercase();
        let client_token = keys::key([status.wamid.as_str(), status_name.as_str()]);
        let sent = if event == ChatEvent::Unspecified {
            let reason = status
                .errors
                .first()
                .map(|e| e.describe())
                .unwrap_or_else(|| "no reason given".into());
            let text = format!(
                "WhatsApp could not deliver a message to the customer{}: {reason}.",
                if link.excerpt.is_empty() {
                    String::new()
                } else {
                    format!(" («{}»)", link.excerpt)
                }
            );
            let (connect, text, client_token) = (&self.services.connect, &text, &client_token);
            chat::with_connection(&self.services, &mut chat, |token| {
                Box::pin(async move {
                    connect
                        .send_message(SendMessageRequest {
                            connection_token: token,
                            content_type: ContentType::AgentNotice as i32,
                            content: text.clone(),
                            client_token: client_token.clone(),
                            notice_kind: "whatsapp_failed".into(),
                        })
                        .await
                        .map(drop)
                })
            })
            .await
        } else {
            let (connect, message_id, client_token) = (
                &self.services.connect,
                &link.connect_message_id,
                &client_token,
            );
            chat::with_connection(&self.services, &mut chat, |token| {
                Box::pin(async move {
                    connect
                        .send_event(SendEventRequest {
                            connection_token: token,
                            event: event as i32,
                            message_id: message_id.clone(),
                            client_token: client_token.clone(),
                        })
                        .await
                        .map(drop)
                })
            })
            .await
        };
        match sent {
            Ok(()) | Err(chat::ChatError::Ended) => Outcome::Done,
            Err(chat::ChatError::Failed(error)) => Outcome::from_error(&error),
        }
    }

    async fn outbound(&self, event: &Event) -> Outcome {
        let mut item = match parse::outbound(&event.body, &event.attributes) {
            Ok(item) => item,
            Err(error) => return Outcome::reject(error.reason),
        };
        if !item.for_customer() {
            return Outcome::Done;
        }
        match (item.kind, item.event()) {
            (ItemKind::Event, Some("chat.ended")) => {}
            (ItemKind::Event, Some("typing")) => return self.typing(&item).await,
            (ItemKind::Event, _) => return Outcome::Done,
            _ => {}
        }
        let chat = match chat::by_contact(
            &self.services,
            &item.contact_id,
            &item.initial_contact_id,
        )
        .await
        {
            Ok(Some(chat)) => chat,
            Ok(None) => {
                let grace = self.config.unknown_chat_grace;
                let posted_at_ms = if item.absolute_time_ms > 0 {
                    item.absolute_time_ms
                } else {
                    event.received_at_ms
                };
                return if chat::may_be_stored_yet(posted_at_ms, grace) {
                    Outcome::retry(Duration::from_secs(1), "no chat stored for the contact yet")
                } else {
                    Outcome::reject(format!(
                        "no Parley chat for contact {} after {} s",
                        item.contact_id,
                        grace.as_secs()
                    ))
                };
            }
            Err(error) => return Outcome::retry(Duration::from_secs(2), error.reason().to_owned()),
        };
        let Some(key) = chat.key.clone() else {
            return Outcome::reject("the stored chat has no conversation key");
        };
        item.traceparent = trace::traceparent_of(&tracing::Span::current());
        tracing::info!(kind = ?item.kind, content_type = %item.content_type, "agent item");
        self.agent_items
            .append(key, &item, event.received_at_ms)
            .await
    }

    /// The agent is typing: WhatsApp's typing indicator (per route). It
    /// also marks the customer's last message read.
    async fn typing(&self, item: &AgentItem) -> Outcome {
        let Ok(Some(chat)) =
            chat::by_contact(&self.services, &item.contact_id, &item.initial_contact_id).await
        else {
            return Outcome::Done;
        };
        let Some(key) = &chat.key else {
            return Outcome::Done;
        };
        let Ok(number) = BusinessNumber::parse(&key.business_number_id) else {
            return Outcome::Done;
        };
        let Ok(route) = self.routing.get().route(&number) else {
            return Outcome::Done;
        };
        if route.typing_indicator && !chat.last_customer_message_id.is_empty() {
            receipts::mark_read(
                &self.services,
                &key.business_number_id,
                &chat.last_customer_message_id,
                true,
            )
            .await;
        }
        Outcome::Done
    }
}

/// Appends `message_id` to its buffer once: the session records the
/// message as claimed and completed in the same transaction as the append,
/// so there is no state in between for a crash to strand, and a
/// redelivery finds it done.
#[allow(clippy::too_many_arguments)] // one call's fields, named at each use
async fn append_once(
    services: &Services,
    claim_ttl: Duration,
    origin: MessageOrigin,
    message_id: &str,
    key: ConversationKey,
    direction: Direction,
    payload: Vec<u8>,
    received_at_ms: i64,
    (flush_delay, max_wait): (Duration, Duration),
) -> Appended {
    test_hooks::crash_point("ingest:parsed");
    let appended = services
        .session
        .append_pending(AppendPendingRequest {
            key: Some(key),
            direction: direction as i32,
            message: Some(PendingMessage {
                message_id: message_id.to_owned(),
                received_at_ms,
                payload: payload.into(),
                appended_at_ms: 0,
            }),
            flush_delay_ms: u32::try_from(flush_delay.as_millis()).unwrap_or(u32::MAX),
            max_wait_ms: u32::try_from(max_wait.as_millis()).unwrap_or(u32::MAX),
            complete_claim: None,
            once: Some(AppendOnce {
                origin: origin as i32,
                ttl_s: u32::try_from(claim_ttl.as_secs()).unwrap_or(u32::MAX),
            }),
        })
        .await;
    match appended {
        Ok(state) if state.duplicate => Appended::Before,
        Ok(state) => {
            test_hooks::crash_point("ingest:appended");
            Appended::Now(state.due_at_ms)
        }
        Err(error) if error.is(ErrorReason::LimitExceeded) => {
            // The buffer is full: the flusher drains it, then this
            // message fits.
            Appended::Not(Outcome::retry(
                Duration::from_secs(1),
                "the conversation's buffer is full; waiting for it to flush",
            ))
        }
        Err(error) => Appended::Not(Outcome::from_error(&error)),
    }
}

/// Puts agent items in their conversation's outbound buffer, once per
/// Connect item id, and wakes the outbound flusher. Streamed items (the
/// outbound source) and the items a new chat's transcript held before
/// streaming began take this one path, so an item seen both ways is sent
/// to WhatsApp once.
#[derive(Clone)]
pub struct AgentItemBuffer {
    services: Services,
    config: Arc<GatewayConfig>,
    wakeups: Wakeups,
}

impl AgentItemBuffer {
    /// A buffer over the session service, waking `wakeups` when due.
    pub fn new(services: Services, config: Arc<GatewayConfig>, wakeups: Wakeups) -> Self {
        Self {
            services,
            config,
            wakeups,
        }
    }

    /// Appends `item` to `key`'s outbound buffer unless it was before.
    pub async fn append(
        &self,
        key: ConversationKey,
        item: &AgentItem,
        received_at_ms: i64,
    ) -> Outcome {
        let payload = match serde_json::to_vec(item) {
            Ok(payload) => payload,
            Err(error) => return Outcome::reject(format!("item {}: {error}", item.id)),
        };
        let window = self.config.outbound_window;
        match append_once(
            &self.services,
            self.config.claim_ttl,
            MessageOrigin::Connect,
            &item.id,
            key,
            Direction::Outbound,
            payload,
            received_at_ms,
            (window, window * 4),
        )
        .await
        {
            Appended::Now(due_at_ms) => {
                crate::metrics::metrics().messages.add(
                    1,
                    &[
                        crate::metrics::label("direction", "outbound"),
                        crate::metrics::label("kind", item.kind.as_str()),
                    ],
                );
                self.wakeups.at(due_at_ms);
                Outcome::Done
            }
            Appended::Before => Outcome::Done,
            Appended::Not(outcome) => outcome,
        }
    }
}

/// What appending did.
enum Appended {
    /// Appended now; the buffer is due at this time.
    Now(i64),
    /// Appended by an earlier delivery of the event.
    Before,
    /// Not appended.
    Not(Outcome),
}
