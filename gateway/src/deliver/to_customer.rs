//! Agent → customer: a window of one conversation's Connect items,
//! ordered by Connect's clock (the streaming topic is a standard topic and
//! may reorder), each sent to WhatsApp once — the sender's ledger keys
//! every part by the Connect item id. Text goes as text or WhatsApp
//! formatting, interactive templates as buttons or lists (their options
//! kept in the link, so the customer's tap maps back), approved
//! attachments as media, `chat.ended` closes the session (with an optional
//! goodbye). What WhatsApp refuses is told to the agent.

use std::sync::Arc;

use futures::future::BoxFuture;
use parley_identity::BusinessNumber;
use parley_proto::{
    connect::{ContentType, SendMessageRequest},
    session::{ActiveChat, Direction, LinkDirection, LinkMessagesRequest, MessageLink},
    whatsapp::{
        MediaMessage, SendMessageRequest as WaSend, TextMessage,
        send_message_request::Content as WaContent,
    },
};
use tracing::Instrument as _;

use super::{
    Batch, Deliver, DeliveryError,
    chat::{self, ChatError},
    decode, describe, media,
};
use crate::{
    config::GatewayConfig,
    keys,
    model::{AgentItem, ItemKind},
    render::{to_agent::excerpt, to_customer},
    routing::{LiveRouting, Route},
    services::Services,
    test_hooks,
};

/// The least wait before retrying an item whose chat is not stored yet.
const NOT_STORED_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// Connect's content type of interactive messages.
pub const INTERACTIVE: &str = "application/vnd.amazonaws.connect.message.interactive";

/// Delivers outbound batches to WhatsApp.
pub struct ToCustomer {
    services: Services,
    routing: LiveRouting,
    config: Arc<GatewayConfig>,
}

impl ToCustomer {
    /// A deliverer over `services`.
    pub fn new(services: Services, routing: LiveRouting, config: Arc<GatewayConfig>) -> Self {
        Self {
            services,
            routing,
            config,
        }
    }
}

impl Deliver for ToCustomer {
    fn direction(&self) -> Direction {
        Direction::Outbound
    }

    fn deliver<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let items: Vec<AgentItem> = decode(batch)?;
            let span = crate::trace::delivery_span(
                "to_customer",
                items.iter().map(|i| i.traceparent.as_str()),
            );
            self.deliver_batch(batch, items).instrument(span).await
        })
    }
}

/// Orders a window of items as Connect stamped them.
pub fn in_order(items: &mut [AgentItem]) {
    items.sort_by(|a, b| {
        a.absolute_time_ms
            .cmp(&b.absolute_time_ms)
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// What to send for an agent's message.
pub fn render(item: &AgentItem, route: &Route) -> to_customer::Rendered {
    let content_type = item
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    match content_type {
        "text/markdown" if route.markdown => to_customer::markdown(&item.content),
        INTERACTIVE => to_customer::interactive(&item.content),
        _ => to_customer::plain(&item.content),
    }
}

impl ToCustomer {
    async fn deliver_batch(
        &self,
        batch: &Batch,
        mut items: Vec<AgentItem>,
    ) -> Result<(), DeliveryError> {
        in_order(&mut items);
        let number = BusinessNumber::parse(&batch.key.business_number_id)
            .map_err(|e| DeliveryError::fatal(format!("the batch's business number: {e}")))?;
        let route = self
            .routing
            .get()
            .route(&number)
            .map_err(|e| DeliveryError::retry(e.0))?;
        let ttl_s = u32::try_from(self.config.claim_ttl.as_secs()).unwrap_or(u32::MAX);
        let mut links = Vec::new();
        for item in &items {
            let Some(mut chat) =
                chat::by_contact(&self.services, &item.contact_id, &item.initial_contact_id)
                    .await?
            else {
                // Measured from when the item was buffered: a chat's
                // earlier items are buffered as it opens, however old.
                let buffered_at_ms = batch
                    .messages
                    .iter()
                    .map(|m| m.received_at_ms)
                    .min()
                    .unwrap_or_default();
                if chat::may_be_stored_yet(buffered_at_ms, self.config.unknown_chat_grace) {
                    // A chat being opened: the items Connect posted before
                    // streaming began are buffered just before the chat is
                    // stored, and a creation cut short by a crash is
                    // finished once its lease runs out. Soon, then with the
                    // growing backoff, which outlasts the lease.
                    return Err(DeliveryError::Retry {
                        reason: "the item's chat is not stored yet".into(),
                        after: Some(NOT_STORED_RETRY),
                    });
                }
                // Its chat is gone for good (ended beyond the grace period).
                tracing::warn!(item = %item.id, "no chat for an agent message any more; dropped");
                continue;
            };
            match item.kind {
                ItemKind::Message => {
                    if let Some(link) = self.send_message(item, &mut chat, &route).await? {
                        links.push(link);
                    }
                }
                ItemKind::Attachment => {
                    for attachment in &item.attachments {
                        if let Some(link) =
                            self.send_attachment(item, attachment, &mut chat).await?
                        {
                            links.push(link);
                        }
                    }
                }
                ItemKind::Event => {
                    if item.event() == Some("chat.ended") {
                        self.chat_ended(item, &chat, &route).await?;
                    }
                }
            }
            test_hooks::crash_point("deliver:step");
        }
        if !links.is_empty() {
            self.services
                .session
                .link_messages(LinkMessagesRequest { links, ttl_s })
                .await?;
        }
        Ok(())
    }

    /// Sends an agent's text or interactive message.
    async fn send_message(
        &self,
        item: &AgentItem,
        chat: &mut ActiveChat,
        route: &Route,
    ) -> Result<Option<MessageLink>, DeliveryError> {
        let rendered = render(item, route);
        let excerpt_text = match &rendered.content {
            WaContent::Text(text) => excerpt(&text.body, 80),
            WaContent::Interactive(interactive) => excerpt(&interactive.body, 80),
            _ => String::new(),
        };
        let kind = if rendered.menu.is_some() {
            "interactive"
        } else {
            "text"
        };
        let menu = rendered
            .menu
            .as_ref()
            .and_then(|m| serde_json::to_string(m).ok())
            .unwrap_or_default();
        let ids = self
            .send(chat, rendered.content, &item.id, &item.id)
            .await?;
        Ok(ids.map(|ids| link(chat, item, ids, excerpt_text, kind, menu)))
    }

    /// Sends one approved attachment as WhatsApp media.
    async fn send_attachment(
        &self,
        item: &AgentItem,
        attachment: &crate::model::AgentAttachment,
        chat: &mut ActiveChat,
    ) -> Result<Option<MessageLink>, DeliveryError> {
        if !attachment.status.is_empty() && attachment.status != "APPROVED" {
            // Connect's scanner rejected it, or it is still being scanned
            // (Connect streams it again once approved).
            if attachment.status == "REJECTED" {
                self.notice(
                    chat,
                    &item.id,
                    format!(
                        "{} was not sent to the customer: Connect's scan rejected it.",
                        attachment.name
                    ),
                )
                .await?;
            }
            return Ok(None);
        }
        let business = chat
            .key
            .as_ref()
            .map(|k| k.business_number_id.clone())
            .unwrap_or_default();
        let (services, business) = (&self.services, &business);
        let uploaded = chat::with_connection(&self.services, chat, |token| {
            Box::pin(media::to_customer(
                services,
                token,
                business,
                &attachment.id,
                &attachment.name,
            ))
        })
        .await;
        let (media_id, kind, file_name) = match uploaded {
            Ok(Ok(uploaded)) => uploaded,
            Ok(Err(why)) => {
                self.notice(
                    chat,
                    &item.id,
                    format!("{} was not sent to the customer: {why}.", attachment.name),
                )
                .await?;
                return Ok(None);
            }
            Err(ChatError::Ended) => {
                return Err(DeliveryError::fatal(
                    "the chat ended before its attachment could be fetched",
                ));
            }
            Err(ChatError::Failed(error)) => return Err(error.into()),
        };
        let content = WaContent::Media(MediaMessage {
            kind: kind as i32,
            media_id,
            caption: String::new(),
            file_name: if kind == parley_proto::whatsapp::MediaKind::Document {
                file_name
            } else {
                String::new()
            },
            link: String::new(),
        });
        let key = format!("{}#{}", item.id, attachment.id);
        let ids = self.send(chat, content, &key, &item.id).await?;
        Ok(ids.map(|ids| {
            link(
                chat,
                item,
                ids,
                format!("[{}]", attachment.name),
                "attachment",
                String::new(),
            )
        }))
    }

    /// Sends to the customer under `key`; a refusal is told to the agent
    /// (`None`), a transient failure is an error.
    async fn send(
        &self,
        chat: &mut ActiveChat,
        content: WaContent,
        key: &str,
        item_id: &str,
    ) -> Result<Option<Vec<String>>, DeliveryError> {
        let sent = self
            .services
            .whatsapp
            .send_message(WaSend {
                business_number_id: chat
                    .key
                    .as_ref()
                    .map(|k| k.business_number_id.clone())
                    .unwrap_or_default(),
                recipient: super::to_agent::chat_customer(chat),
                reply_to_message_id: String::new(),
                content: Some(content),
                idempotency_key: key.to_owned(),
            })
            .await;
        match sent {
            Ok(sent) => Ok(Some(sent.message_ids)),
            Err(error) if !DeliveryError::from(error.clone()).is_retry() => {
                self.notice(
                    chat,
                    item_id,
                    format!(
                        "This message was not delivered to the customer on WhatsApp: {}.",
                        describe(&error)
                    ),
                )
                .await?;
                Ok(None)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Tells the agent (only) something about their item.
    async fn notice(
        &self,
        chat: &mut ActiveChat,
        item_id: &str,
        text: String,
    ) -> Result<(), DeliveryError> {
        let token = keys::key([chat.contact_id.as_str(), item_id, "not-delivered"]);
        let connect = &self.services.connect;
        let (text, token) = (&text, &token);
        let sent = chat::with_connection(&self.services, chat, |connection| {
            connect.send_message(SendMessageRequest {
                connection_token: connection,
                content_type: ContentType::AgentNotice as i32,
                content: text.clone(),
                client_token: token.clone(),
                notice_kind: "not_delivered".into(),
            })
        })
        .await;
        match sent {
            Ok(_) | Err(ChatError::Ended) => Ok(()),
            Err(ChatError::Failed(error)) => Err(error.into()),
        }
    }

    /// The agent (or the flow) ended the chat: close the session so the
    /// customer's next message opens a new chat, and say goodbye if
    /// configured.
    async fn chat_ended(
        &self,
        item: &AgentItem,
        chat: &ActiveChat,
        route: &Route,
    ) -> Result<(), DeliveryError> {
        chat::end(&self.services, chat, self.config.ended_chat_grace).await?;
        if !route.goodbye.trim().is_empty() {
            let mut chat = chat.clone();
            self.send(
                &mut chat,
                WaContent::Text(TextMessage {
                    body: route.goodbye.clone(),
                    preview_url: false,
                }),
                &format!("goodbye#{}", item.contact_id),
                &item.id,
            )
            .await?;
        }
        Ok(())
    }
}

fn link(
    chat: &ActiveChat,
    item: &AgentItem,
    wamids: Vec<String>,
    excerpt: String,
    kind: &str,
    menu: String,
) -> MessageLink {
    MessageLink {
        whatsapp_message_ids: wamids,
        connect_message_id: item.id.clone(),
        direction: LinkDirection::ToCustomer as i32,
        key: chat.key.clone(),
        contact_id: chat.contact_id.clone(),
        created_at_ms: 0,
        excerpt,
        kind: kind.into(),
        interactive_template: menu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, at: i64) -> AgentItem {
        AgentItem {
            id: id.into(),
            kind: ItemKind::Message,
            content_type: "text/plain".into(),
            content: id.into(),
            participant_role: "AGENT".into(),
            visibility: "ALL".into(),
            contact_id: "c".into(),
            initial_contact_id: "c".into(),
            absolute_time_ms: at,
            display_name: "Agent".into(),
            attachments: Vec::new(),
            traceparent: String::new(),
        }
    }

    #[test]
    fn a_window_is_sent_in_connects_order() {
        let mut items = vec![item("b", 2), item("c", 2), item("a", 1)];
        in_order(&mut items);
        let ids: Vec<_> = items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }
}
