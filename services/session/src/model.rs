//! The session service's domain types, validated at the edge so stores and
//! logic only ever see well-formed values.

use std::{fmt, time::Duration};

pub use parley_identity::ConversationKey;

use crate::error::{Result, SessionError};

/// Longest id or token accepted (Connect tokens are well under this).
pub const MAX_FIELD_LEN: usize = 4_096;
/// Largest pending message payload accepted.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Largest claim result stored.
pub const MAX_RESULT_LEN: usize = 1_024;
/// Longest excerpt a message link keeps, in characters.
pub const MAX_EXCERPT_CHARS: usize = 100;

/// Epoch milliseconds.
pub type Millis = i64;

/// Checks an id or token: present and of sane length.
pub fn require(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        Err(SessionError::InvalidArgument(format!("{field}: is empty")))
    } else if value.len() > MAX_FIELD_LEN {
        Err(SessionError::InvalidArgument(format!(
            "{field}: is longer than {MAX_FIELD_LEN} bytes"
        )))
    } else {
        Ok(())
    }
}

/// The Connect chat bound to a conversation.
#[derive(Clone, PartialEq, Eq)]
pub struct ActiveChat {
    /// The conversation.
    pub key: ConversationKey,
    /// Current Connect contact id (changes after a transfer).
    pub contact_id: String,
    /// The contact id the chat started with.
    pub initial_contact_id: String,
    /// The customer participant's id.
    pub participant_id: String,
    /// Creates new connections; lives as long as the participant.
    pub participant_token: String,
    /// Authorises Connect Participant calls; expires after about a day.
    pub connection_token: String,
    /// When `connection_token` expires.
    pub connection_expires_at_ms: Millis,
    /// Customer display name (never empty).
    pub customer_display_name: String,
    /// Channel label, e.g. `WhatsApp`.
    pub channel: String,
    /// When the chat was stored.
    pub created_at_ms: Millis,
    /// When it was last changed.
    pub updated_at_ms: Millis,
    /// When the record expires, epoch seconds.
    pub expires_at_s: i64,
    /// Optimistic-concurrency version, bumped on every write, never reset.
    pub version: u64,
    /// The customer's latest WhatsApp message id.
    pub last_customer_message_id: String,
    /// When the customer last wrote.
    pub last_customer_message_at_ms: Millis,
    /// When the chat ended; 0 while active.
    pub ended_at_ms: Millis,
    /// The customer's phone number when known (digits).
    pub customer_phone: String,
    /// StartChatContact's ClientToken for this chat.
    pub client_token: String,
}

impl fmt::Debug for ActiveChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens, names and numbers stay out of debug output.
        f.debug_struct("ActiveChat")
            .field("key", &self.key)
            .field("contact_id", &self.contact_id)
            .field("initial_contact_id", &self.initial_contact_id)
            .field("version", &self.version)
            .field("ended_at_ms", &self.ended_at_ms)
            .finish_non_exhaustive()
    }
}

impl ActiveChat {
    /// Checks the fields a stored chat must have.
    pub fn validate(&self) -> Result<()> {
        require("contact_id", &self.contact_id)?;
        require("initial_contact_id", &self.initial_contact_id)?;
        require("participant_token", &self.participant_token)?;
        require("connection_token", &self.connection_token)?;
        if self.customer_display_name.len() > 256
            || self.channel.len() > 64
            || self.participant_id.len() > MAX_FIELD_LEN
            || self.client_token.len() > 500
            || self.last_customer_message_id.len() > MAX_FIELD_LEN
        {
            return Err(SessionError::InvalidArgument(
                "customer_display_name (256), channel (64), client_token (500) or an id is too long"
                    .into(),
            ));
        }
        if !self.customer_phone.is_empty()
            && parley_identity::CustomerId::parse(&self.customer_phone)
                .ok()
                .and_then(|c| c.phone().map(str::to_owned))
                .is_none()
        {
            return Err(SessionError::InvalidArgument(
                "customer_phone: expected a WhatsApp id (digits)".into(),
            ));
        }
        Ok(())
    }

    /// Whether the record has passed its expiry.
    pub fn expired(&self, now: Millis) -> bool {
        self.expires_at_s * 1000 <= now
    }
}

/// What a lookup by contact id found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatLookup {
    /// The chat is active.
    Active(Box<ActiveChat>),
    /// The chat ended less than its grace period ago.
    Ended(Box<ActiveChat>),
    /// Nothing is stored for the id (unknown, or not stored yet).
    Unknown,
}

/// What ending a chat did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndOutcome {
    /// Whether this call ended it (false: it had ended already, or never existed).
    pub ended: bool,
    /// The chat as ended, when known.
    pub chat: Option<ActiveChat>,
}

/// Where a claimed message id comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageOrigin {
    /// A WhatsApp message id.
    WhatsApp,
    /// A Connect streaming message id.
    Connect,
    /// One part of an outgoing WhatsApp send.
    WhatsAppSend,
    /// A WhatsApp status webhook.
    WhatsAppStatus,
}

impl MessageOrigin {
    /// Short name used in storage keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WhatsApp => "wa",
            Self::Connect => "connect",
            Self::WhatsAppSend => "wa-send",
            Self::WhatsAppStatus => "wa-status",
        }
    }
}

/// The result of claiming a message id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The caller owns the message; the token completes or releases it.
    Claimed {
        /// Proves ownership.
        token: String,
    },
    /// Already processed.
    AlreadyCompleted {
        /// What the completer stored.
        result: String,
    },
    /// Someone else is processing it now.
    InProgress {
        /// When their claim counts as crashed.
        retry_after: Duration,
    },
}

/// A claim the caller holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRef {
    /// Where the id comes from.
    pub origin: MessageOrigin,
    /// The id.
    pub message_id: String,
    /// The token from the claim.
    pub token: String,
}

/// What an append does with the message's claim, in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendClaim {
    /// Nothing.
    None,
    /// Completes a claim the caller holds (`LeaseLost` when it does not).
    Complete(ClaimRef),
    /// Appends only a message never claimed before: records it claimed and
    /// completed for `ttl` with the append. A message claimed and
    /// completed before is `Duplicate` (nothing appended); one whose claim
    /// is in progress elsewhere is `Busy`.
    Once {
        /// Where the id comes from.
        origin: MessageOrigin,
        /// How long the claim is kept.
        ttl: Duration,
    },
}

/// Which way a buffer's messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Customer → agent.
    Inbound,
    /// Agent → customer.
    Outbound,
}

impl Direction {
    /// Short name used in storage keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "in",
            Self::Outbound => "out",
        }
    }

    /// The direction a storage name stands for.
    pub fn from_str_name(name: &str) -> Option<Self> {
        match name {
            "in" => Some(Self::Inbound),
            "out" => Some(Self::Outbound),
            _ => None,
        }
    }
}

/// One buffered message.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingMessage {
    /// Message id; duplicates are ignored.
    pub message_id: String,
    /// When it was sent (webhook or Connect clock).
    pub received_at_ms: Millis,
    /// The gateway's serialised message (opaque here).
    pub payload: Vec<u8>,
    /// When it was appended (set by the store).
    pub appended_at_ms: Millis,
}

impl fmt::Debug for PendingMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingMessage")
            .field("message_id", &self.message_id)
            .field("payload_bytes", &self.payload.len())
            .finish()
    }
}

impl PendingMessage {
    /// Checks id and payload size.
    pub fn validate(&self) -> Result<()> {
        require("message_id", &self.message_id)?;
        if self.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(SessionError::InvalidArgument(format!(
                "payload: {} bytes exceeds {MAX_PAYLOAD_BYTES}",
                self.payload.len()
            )));
        }
        Ok(())
    }
}

/// How an append sets the buffer's due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppendOptions {
    /// Flush this long after the latest append.
    pub flush_delay: Duration,
    /// ... but no later than this long after the oldest waiting message
    /// (zero: no cap).
    pub max_wait: Duration,
}

/// The state of one pending buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingState {
    /// The conversation.
    pub key: ConversationKey,
    /// Which way.
    pub direction: Direction,
    /// Bumped by every change; never reset.
    pub version: u64,
    /// Messages waiting.
    pub message_count: u32,
    /// Bytes waiting (counted against the cap).
    pub total_bytes: u64,
    /// When the oldest waiting message was appended; 0 when empty.
    pub first_append_at_ms: Millis,
    /// When the latest was; 0 when empty.
    pub last_append_at_ms: Millis,
    /// When to flush; 0 when empty.
    pub due_at_ms: Millis,
    /// When the batch out expires; 0 when none.
    pub leased_until_ms: Millis,
    /// Takes since the last ack.
    pub attempts: u32,
}

/// A leased batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenBatch {
    /// Names the batch; empty when nothing was taken.
    pub batch_id: String,
    /// Proves the lease; empty when nothing was taken.
    pub take_token: String,
    /// When the batch is put back.
    pub lease_expires_at_ms: Millis,
    /// The messages, in order.
    pub messages: Vec<PendingMessage>,
    /// The buffer with the batch out.
    pub state: PendingState,
}

/// A granted right to create the chat for one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Proves the holder.
    pub lease_id: String,
    /// When another caller may take it over.
    pub expires_at_ms: Millis,
    /// StartChatContact's ClientToken, kept across takeovers.
    pub client_token: String,
}

/// What trying to take a creation lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAttempt {
    /// A chat exists: use it.
    Exists(Box<ActiveChat>),
    /// The caller holds the lease now.
    Granted(Lease),
    /// Another caller holds a live lease until then.
    Busy {
        /// When that lease expires.
        until_ms: Millis,
    },
}

/// Which way a linked message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkDirection {
    /// Customer → agent.
    ToAgent,
    /// Agent → customer.
    ToCustomer,
}

/// A WhatsApp message and the Connect message it became or came from.
#[derive(Clone, PartialEq, Eq)]
pub struct MessageLink {
    /// WhatsApp message ids (several for a merged burst or a split reply).
    pub whatsapp_message_ids: Vec<String>,
    /// The Connect message id.
    pub connect_message_id: String,
    /// Which way it went.
    pub direction: LinkDirection,
    /// The conversation.
    pub key: ConversationKey,
    /// The Connect contact.
    pub contact_id: String,
    /// When it was linked.
    pub created_at_ms: Millis,
    /// A short excerpt of the text.
    pub excerpt: String,
    /// What kind of message it was.
    pub kind: String,
    /// For Connect interactive messages: the template and its options.
    pub interactive_template: String,
}

impl fmt::Debug for MessageLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageLink")
            .field("whatsapp_message_ids", &self.whatsapp_message_ids)
            .field("connect_message_id", &self.connect_message_id)
            .field("direction", &self.direction)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl MessageLink {
    /// Checks ids and sizes.
    pub fn validate(&self) -> Result<()> {
        require("connect_message_id", &self.connect_message_id)?;
        if self.whatsapp_message_ids.is_empty() || self.whatsapp_message_ids.len() > 64 {
            return Err(SessionError::InvalidArgument(
                "whatsapp_message_ids: 1 to 64 ids".into(),
            ));
        }
        for id in &self.whatsapp_message_ids {
            require("whatsapp_message_ids", id)?;
        }
        if self.excerpt.chars().count() > MAX_EXCERPT_CHARS
            || self.kind.len() > 64
            || self.interactive_template.len() > 16 * 1024
        {
            return Err(SessionError::InvalidArgument(
                "excerpt (100 characters), kind (64) or interactive_template (16 KiB) is too long"
                    .into(),
            ));
        }
        Ok(())
    }
}
