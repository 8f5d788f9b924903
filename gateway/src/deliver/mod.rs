//! The deliver stage: a batch taken from a pending buffer, delivered to its
//! side — [`to_agent`] (customer → Connect) or [`to_customer`] (agent →
//! WhatsApp) — with every part under an idempotency key, so a batch
//! delivered again after a crash or a retry shows nothing twice.
//!
//! Shared pieces: [`chat`] (find or open the chat, refresh its connection,
//! close it), [`media`] (attachments both ways) and [`voice`] (a voice note
//! transcoded, attached and transcribed from one decode).

pub mod chat;
pub mod media;
pub mod to_agent;
pub mod to_customer;
pub mod voice;

use std::time::Duration;

use futures::future::BoxFuture;
use parley_client::ClientError;
use parley_proto::{
    common::{ConversationKey, ErrorReason},
    session::{Direction, PendingMessage},
};

/// A batch of one conversation's messages, as the flusher took it.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The conversation.
    pub key: ConversationKey,
    /// The batch (stable across retakes).
    pub batch_id: String,
    /// Its messages, in order.
    pub messages: Vec<PendingMessage>,
    /// Takes of this batch so far, this one included.
    pub attempts: u32,
    /// Whether this is the last attempt before the dead letters: delivery
    /// then degrades (sends what it can, tells the agent the rest) rather
    /// than asking for another retry.
    pub final_attempt: bool,
}

/// Why a batch was not delivered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth another try, no sooner than `after` when given.
    #[error("{reason}")]
    Retry {
        /// Why, for logs and the dead letters (never message content).
        reason: String,
        /// The delay a service asked for.
        after: Option<Duration>,
    },
    /// Will not work however often it is tried.
    #[error("{reason}")]
    Fatal {
        /// Why.
        reason: String,
    },
}

impl DeliveryError {
    /// A retryable failure.
    pub fn retry(reason: impl Into<String>) -> Self {
        Self::Retry {
            reason: reason.into(),
            after: None,
        }
    }

    /// A permanent failure.
    pub fn fatal(reason: impl Into<String>) -> Self {
        Self::Fatal {
            reason: reason.into(),
        }
    }

    /// Whether another try may work.
    pub fn is_retry(&self) -> bool {
        matches!(self, Self::Retry { .. })
    }

    /// The reason, either way.
    pub fn reason(&self) -> &str {
        match self {
            Self::Retry { reason, .. } | Self::Fatal { reason } => reason,
        }
    }
}

impl From<ClientError> for DeliveryError {
    fn from(error: ClientError) -> Self {
        let reason = describe(&error);
        // Configuration can be fixed while the batch waits, and a lost
        // lease or a busy peer clears by itself: all worth retrying.
        let transient = error.is_retryable()
            || matches!(
                error.reason(),
                ErrorReason::Configuration
                    | ErrorReason::LeaseLost
                    | ErrorReason::Busy
                    | ErrorReason::Unavailable
                    | ErrorReason::Throttled
                    | ErrorReason::VersionConflict
            );
        if transient {
            Self::Retry {
                reason,
                after: error.retry_after(),
            }
        } else {
            Self::Fatal { reason }
        }
    }
}

/// A client error in one line without personal data (services keep it
/// out of their status messages).
pub fn describe(error: &ClientError) -> String {
    format!(
        "{}.{} failed ({:?}): {}",
        error.service,
        error.method,
        error.reason(),
        error.message
    )
}

/// Delivers batches of one direction.
pub trait Deliver: Send + Sync + 'static {
    /// The buffers this delivers from.
    fn direction(&self) -> Direction;
    /// Delivers every message of `batch`, each effectively once.
    fn deliver<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), DeliveryError>>;
}

/// Decodes the JSON payloads of a batch; a payload that does not decode
/// (written by an incompatible gateway version) is a permanent failure.
pub fn decode<T: serde::de::DeserializeOwned>(batch: &Batch) -> Result<Vec<T>, DeliveryError> {
    batch
        .messages
        .iter()
        .map(|m| {
            serde_json::from_slice(&m.payload).map_err(|e| {
                DeliveryError::fatal(format!(
                    "pending message {} cannot be read: {e}",
                    m.message_id
                ))
            })
        })
        .collect()
}
