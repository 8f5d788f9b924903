//! The session service's domain types, validated at the edge so stores and
//! logic only ever see well-formed values.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::error::{Result, SessionError};

/// Longest id or token accepted (Connect tokens are well under this).
pub const MAX_FIELD_LEN: usize = 4_096;
/// Largest pending message payload accepted.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// Epoch milliseconds.
pub type Millis = i64;

/// A conversation: one customer talking to one business number.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ConversationKey {
    business: String,
    customer: String,
}

impl ConversationKey {
    /// Validates and normalises a key. The business number may be a Meta
    /// phone-number id (digits), the EUM `phone-number-id-<hex>` form or its
    /// ARN (stored in the `phone-number-id-` form); the customer is a
    /// WhatsApp id, digits with an optional leading `+`.
    pub fn new(business_number_id: &str, customer_id: &str) -> Result<Self> {
        Ok(Self {
            business: normalise_business(business_number_id)?,
            customer: normalise_customer(customer_id)?,
        })
    }

    /// The business number in its stored form.
    pub fn business(&self) -> &str {
        &self.business
    }

    /// The customer's WhatsApp id, digits only.
    pub fn customer(&self) -> &str {
        &self.customer
    }

    /// The storage key: unambiguous because neither part contains `#`.
    pub fn storage_id(&self) -> String {
        format!("{}#{}", self.business, self.customer)
    }

    /// A short, stable, non-reversible tag for logs and spans: phone numbers
    /// never appear in clear.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(format!(
            "parley-conversation:{}#{}",
            self.business, self.customer
        ));
        digest[..6].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for ConversationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConversationKey({})", self.fingerprint())
    }
}

fn normalise_business(raw: &str) -> Result<String> {
    let raw = raw.trim();
    let invalid = |why: &str| SessionError::InvalidArgument(format!("business_number_id: {why}"));
    if raw.is_empty() {
        return Err(invalid("is empty"));
    }
    if raw.len() > 256 {
        return Err(invalid("is longer than 256 characters"));
    }
    if let Some(id) = raw.strip_prefix("arn:") {
        // arn:aws:social-messaging:<region>:<account>:phone-number-id/<id>
        let resource = id.rsplit(':').next().unwrap_or_default();
        let Some(hex) = resource.strip_prefix("phone-number-id/") else {
            return Err(invalid("is an ARN but not of a phone-number-id"));
        };
        return normalise_business(&format!("phone-number-id-{hex}"));
    }
    if let Some(hex) = raw.strip_prefix("phone-number-id-") {
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid("phone-number-id-… must end in letters and digits"));
        }
        return Ok(raw.to_owned());
    }
    if raw.chars().all(|c| c.is_ascii_digit()) {
        return Ok(raw.to_owned());
    }
    Err(invalid(
        "expected a Meta phone-number id, phone-number-id-… or its ARN",
    ))
}

fn normalise_customer(raw: &str) -> Result<String> {
    let digits = raw.trim().strip_prefix('+').unwrap_or(raw.trim());
    if digits.is_empty() {
        return Err(SessionError::InvalidArgument(
            "customer_id: is empty".into(),
        ));
    }
    if !digits.chars().all(|c| c.is_ascii_digit()) || !(6..=20).contains(&digits.len()) {
        return Err(SessionError::InvalidArgument(
            "customer_id: expected a WhatsApp id of 6 to 20 digits".into(),
        ));
    }
    Ok(digits.to_owned())
}

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
    /// Optimistic-concurrency version, bumped on every write.
    pub version: u64,
}

impl fmt::Debug for ActiveChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens and names stay out of debug output.
        f.debug_struct("ActiveChat")
            .field("key", &self.key)
            .field("contact_id", &self.contact_id)
            .field("initial_contact_id", &self.initial_contact_id)
            .field("version", &self.version)
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
        {
            return Err(SessionError::InvalidArgument(
                "customer_display_name (256), channel (64) or participant_id is too long".into(),
            ));
        }
        Ok(())
    }

    /// Whether the record has passed its expiry.
    pub fn expired(&self, now: Millis) -> bool {
        self.expires_at_s * 1000 <= now
    }
}

/// Where a claimed message id comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageOrigin {
    /// A WhatsApp message id.
    WhatsApp,
    /// A Connect streaming message id.
    Connect,
}

impl MessageOrigin {
    /// Short name used in storage keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WhatsApp => "wa",
            Self::Connect => "connect",
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
    AlreadyCompleted,
    /// Someone else is processing it now.
    InProgress,
}

/// One buffered customer message.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingMessage {
    /// WhatsApp message id; duplicates are ignored.
    pub message_id: String,
    /// When the webhook reported it.
    pub received_at_ms: Millis,
    /// The gateway's serialised message (opaque here).
    pub payload: Vec<u8>,
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

/// The state of one pending buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingState {
    /// The conversation.
    pub key: ConversationKey,
    /// Bumped by every append; 0 when empty.
    pub version: u64,
    /// Messages waiting.
    pub message_count: u32,
    /// Time of the last append; 0 when empty.
    pub last_append_at_ms: Millis,
}

impl PendingState {
    /// The state of a buffer with nothing in it.
    pub fn empty(key: ConversationKey) -> Self {
        Self {
            key,
            version: 0,
            message_count: 0,
            last_append_at_ms: 0,
        }
    }
}

/// A granted right to create the chat for one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Proves the holder.
    pub lease_id: String,
    /// When another caller may take it over.
    pub expires_at_ms: Millis,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_numbers_normalise() {
        let arn = "arn:aws:social-messaging:us-east-1:123456789012:phone-number-id/0123abcd";
        assert_eq!(
            ConversationKey::new(arn, "+14155550100")
                .unwrap()
                .business(),
            "phone-number-id-0123abcd"
        );
        assert_eq!(
            ConversationKey::new("phone-number-id-0123abcd", "14155550100")
                .unwrap()
                .customer(),
            "14155550100"
        );
        assert_eq!(
            ConversationKey::new("503650672828631", "14155550100")
                .unwrap()
                .business(),
            "503650672828631"
        );
    }

    #[test]
    fn malformed_numbers_are_rejected_with_the_field_named() {
        for (business, customer, field) in [
            ("", "14155550100", "business_number_id"),
            ("phone-number-id-", "14155550100", "business_number_id"),
            (
                "arn:aws:sns:us-east-1:1:topic",
                "14155550100",
                "business_number_id",
            ),
            ("pn#1", "14155550100", "business_number_id"),
            ("503650672828631", "", "customer_id"),
            ("503650672828631", "+1-415-555", "customer_id"),
            ("503650672828631", "123", "customer_id"),
        ] {
            let err = ConversationKey::new(business, customer).unwrap_err();
            assert!(
                err.to_string().contains(field),
                "{business:?}/{customer:?}: {err}"
            );
        }
    }

    #[test]
    fn fingerprints_hide_numbers_but_are_stable() {
        let key = ConversationKey::new("503650672828631", "14155550100").unwrap();
        let tag = key.fingerprint();
        assert_eq!(tag.len(), 12);
        assert_eq!(
            tag,
            ConversationKey::new("503650672828631", "+14155550100")
                .unwrap()
                .fingerprint()
        );
        assert!(!format!("{key:?}").contains("14155550100"));
    }
}
