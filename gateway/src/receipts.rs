//! What the customer's phone shows about their own messages: read
//! receipts, progress reactions (received, delivered to the agent, failed)
//! and the typing indicator. All best effort — the messages themselves are
//! delivered either way — and all idempotent, so a retried batch shows
//! nothing twice.

use parley_proto::whatsapp::{
    MarkReadRequest, ReactionMessage, SendMessageRequest, send_message_request::Content,
};

use crate::{deliver::describe, keys, model::CustomerMessage, services::Services};

/// Where a customer's message stands, as a reaction shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The gateway has it.
    Received,
    /// The agent's chat has it.
    Delivered,
}

impl Progress {
    fn name(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Delivered => "delivered",
        }
    }
}

/// Reacts with `emoji` (none when empty) to show `message`'s progress.
pub async fn react(
    services: &Services,
    message: &CustomerMessage,
    progress: Progress,
    emoji: &str,
) {
    if emoji.is_empty() {
        return;
    }
    let sent = services
        .whatsapp
        .send_message(SendMessageRequest {
            business_number_id: message.business.clone(),
            recipient: message.customer.clone(),
            reply_to_message_id: String::new(),
            content: Some(Content::Reaction(ReactionMessage {
                message_id: message.wamid.clone(),
                emoji: emoji.to_owned(),
            })),
            idempotency_key: keys::key(["reaction", progress.name(), &message.wamid]),
        })
        .await;
    if let Err(error) = sent {
        tracing::warn!(error = %describe(&error), progress = progress.name(), "progress reaction not sent");
    }
}

/// Marks `wamid` (and every earlier message) read; with `typing`, also
/// shows WhatsApp's typing indicator (which WhatsApp ties to a read
/// receipt).
pub async fn mark_read(services: &Services, business: &str, wamid: &str, typing: bool) {
    let read = services
        .whatsapp
        .mark_read(MarkReadRequest {
            business_number_id: business.to_owned(),
            message_id: wamid.to_owned(),
            show_typing: typing,
        })
        .await;
    if let Err(error) = read {
        tracing::warn!(error = %describe(&error), typing, "read receipt not sent");
    }
}
