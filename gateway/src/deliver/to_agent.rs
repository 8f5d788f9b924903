//! Customer → agent: a burst of one customer's WhatsApp messages delivered
//! to their Connect chat, in order, each part once.
//!
//! The chat is found or opened first (the burst's first text becomes the
//! chat's initial message, so a bot in the flow reads it). Each step of the
//! plan ([`crate::render::to_agent`]) is then sent with a ClientToken made
//! of the contact and the messages it carries, so a batch retaken after a
//! crash repeats only what Connect already dropped as a duplicate. A chat
//! that ended under us is closed in the session and a new one opened; the
//! step that hit it is sent there, never dropped. Links (WhatsApp id ↔
//! Connect id) are stored before the batch is acked; on the customer's
//! phone the messages are then marked read (per route).

use std::sync::Arc;

use futures::future::BoxFuture;
use parley_client::ClientError;
use parley_identity::BusinessNumber;
use parley_proto::{
    common::ErrorReason,
    connect::{ContentType, SendMessageRequest},
    session::{
        ActiveChat, Direction, GetMessageLinkRequest, LinkDirection, LinkMessagesRequest,
        MessageLink, MessageOrigin, RecordCustomerActivityRequest,
    },
    whatsapp::{
        SendMessageRequest as WaSend, TextMessage, send_message_request::Content as WaContent,
    },
};
use tracing::Instrument as _;

use super::{
    Batch, Deliver, DeliveryError,
    chat::{self, ChatError, Customer, Initial},
    decode, describe,
    media::{self, Attached},
    voice,
};
use crate::{
    config::GatewayConfig,
    ingest::AgentItemBuffer,
    keys,
    model::CustomerMessage,
    receipts,
    render::{
        to_agent::{self as render, Step},
        to_customer::Menu,
    },
    routing::{LiveRouting, Route},
    services::Services,
    test_hooks,
};

/// How many times one step may meet an ended chat and move to a new one.
const REOPENS: usize = 2;

/// Delivers inbound batches to Connect.
pub struct ToAgent {
    services: Services,
    routing: LiveRouting,
    config: Arc<GatewayConfig>,
    opening: chat::Opening,
}

impl ToAgent {
    /// A deliverer over `services`; a chat it opens hands what Connect
    /// posted before streaming began to `agent_items`.
    pub fn new(
        services: Services,
        routing: LiveRouting,
        config: Arc<GatewayConfig>,
        agent_items: AgentItemBuffer,
    ) -> Self {
        Self {
            services,
            routing,
            opening: chat::Opening {
                agent_items,
                lease: config.chat_creation_lease,
            },
            config,
        }
    }
}

impl Deliver for ToAgent {
    fn direction(&self) -> Direction {
        Direction::Inbound
    }

    fn deliver<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let messages: Vec<CustomerMessage> = decode(batch)?;
            let span = crate::trace::delivery_span(
                "to_agent",
                messages.iter().map(|m| m.traceparent.as_str()),
            );
            self.deliver_batch(batch, messages).instrument(span).await
        })
    }
}

/// What a sent step left behind: its Connect ids, for the link.
struct Sent {
    ids: Vec<String>,
    excerpt: String,
    kind: &'static str,
}

impl ToAgent {
    async fn deliver_batch(
        &self,
        batch: &Batch,
        messages: Vec<CustomerMessage>,
    ) -> Result<(), DeliveryError> {
        let Some(first) = messages.first() else {
            return Ok(());
        };
        let key = batch.key.clone();
        let number = BusinessNumber::parse(&key.business_number_id)
            .map_err(|e| DeliveryError::fatal(format!("the batch's business number: {e}")))?;
        let route = self
            .routing
            .get()
            .route(&number)
            .map_err(|e| DeliveryError::retry(e.0))?;
        let customer = Customer {
            key: &key,
            profile_name: &first.profile_name,
            phone: &first.phone,
        };
        let steps = render::plan(&messages);
        let link_ttl_s = u32::try_from(self.config.claim_ttl.as_secs()).unwrap_or(u32::MAX);
        let initial = match steps.first() {
            Some(Step::Text {
                text,
                wamids,
                quote,
            }) if quote.is_empty() => Some(Initial {
                text,
                wamids,
                link_ttl_s,
            }),
            _ => None,
        };
        let ensured =
            chat::ensure(&self.services, &self.opening, &customer, &route, initial).await?;
        if ensured.initial_sent {
            test_hooks::crash_point("deliver:chat-opened");
        }
        let mut chat = ensured.chat;
        let mut links = Vec::new();
        for (index, step) in steps.iter().enumerate() {
            if index == 0 && ensured.initial_sent {
                continue; // sent with the chat, and linked then
            }
            // A retaken batch may have got further before: skip steps whose
            // link is stored (the initial message has no ClientToken, so
            // this is what keeps it single).
            if batch.attempts > 1 && self.delivered_before(step, &chat).await? {
                continue;
            }
            let mut reopens = 0;
            let sent = loop {
                match self
                    .send_step(step, &mut chat, &route, batch.final_attempt)
                    .await
                {
                    Ok(sent) => break sent,
                    Err(ChatError::Ended) if reopens < REOPENS => {
                        reopens += 1;
                        chat::end(&self.services, &chat, self.config.ended_chat_grace).await?;
                        chat = chat::ensure(&self.services, &self.opening, &customer, &route, None)
                            .await?
                            .chat;
                    }
                    Err(ChatError::Ended) => {
                        return Err(DeliveryError::retry(
                            "the customer's chat keeps ending while the burst is delivered",
                        ));
                    }
                    Err(ChatError::Failed(error)) => {
                        self.store_links(links, link_ttl_s).await;
                        return Err(error.into());
                    }
                }
            };
            test_hooks::crash_point("deliver:step");
            if !sent.ids.is_empty() {
                links.push(MessageLink {
                    whatsapp_message_ids: step.wamids(),
                    connect_message_id: sent.ids[0].clone(),
                    direction: LinkDirection::ToAgent as i32,
                    key: Some(key.clone()),
                    contact_id: chat.contact_id.clone(),
                    created_at_ms: 0,
                    excerpt: sent.excerpt,
                    kind: sent.kind.into(),
                    interactive_template: String::new(),
                });
            }
        }
        if !links.is_empty() {
            self.services
                .session
                .link_messages(LinkMessagesRequest {
                    links,
                    ttl_s: link_ttl_s,
                })
                .await?;
        }
        self.after_delivery(&messages, &route).await;
        Ok(())
    }

    /// Whether a retaken step was delivered to this chat before.
    async fn delivered_before(
        &self,
        step: &Step,
        chat: &ActiveChat,
    ) -> Result<bool, DeliveryError> {
        let Some(wamid) = step.wamids().into_iter().next() else {
            return Ok(false);
        };
        match self
            .services
            .session
            .get_message_link(GetMessageLinkRequest {
                origin: MessageOrigin::Whatsapp as i32,
                message_id: wamid,
            })
            .await
        {
            Ok(link) => Ok(
                link.contact_id == chat.contact_id && link.direction() == LinkDirection::ToAgent
            ),
            Err(error) if error.is(ErrorReason::NotFound) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Stores the links of what was sent before a failure, so a quote of
    /// those messages still resolves; best effort (the retry stores them).
    async fn store_links(&self, links: Vec<MessageLink>, ttl_s: u32) {
        if links.is_empty() {
            return;
        }
        if let Err(error) = self
            .services
            .session
            .link_messages(LinkMessagesRequest { links, ttl_s })
            .await
        {
            tracing::warn!(error = %describe(&error), "links not stored");
        }
    }

    /// The stored excerpt of a linked message (empty when unknown).
    async fn link_of(&self, wamid: &str) -> Option<MessageLink> {
        if wamid.is_empty() {
            return None;
        }
        self.services
            .session
            .get_message_link(GetMessageLinkRequest {
                origin: MessageOrigin::Whatsapp as i32,
                message_id: wamid.to_owned(),
            })
            .await
            .ok()
    }

    /// Sends one step to the chat.
    async fn send_step(
        &self,
        step: &Step,
        chat: &mut ActiveChat,
        route: &Route,
        final_attempt: bool,
    ) -> Result<Sent, ChatError> {
        let contact = chat.contact_id.clone();
        match step {
            Step::Text {
                text,
                wamids,
                quote,
            } => {
                let mut content = String::new();
                if let Some(link) = self.link_of(quote).await
                    && !link.excerpt.is_empty()
                {
                    content.push_str(&render::quote_line(&link.excerpt));
                    content.push('\n');
                }
                content.push_str(text);
                let token = keys::key(
                    [contact.as_str(), "text"]
                        .into_iter()
                        .chain(wamids.iter().map(String::as_str)),
                );
                let ids = self
                    .send_text(chat, ContentType::TextPlain, content, token, "")
                    .await?;
                Ok(Sent {
                    ids,
                    excerpt: render::excerpt(text, 80),
                    kind: "text",
                })
            }
            Step::Choice {
                wamid,
                reply_to,
                option_id,
                title,
            } => {
                let chosen = self
                    .link_of(reply_to)
                    .await
                    .and_then(|link| serde_json::from_str::<Menu>(&link.interactive_template).ok())
                    .and_then(|menu| menu.chosen(option_id, title).cloned());
                let (content_type, content) = match chosen {
                    Some(choice) if !choice.response.is_empty() => {
                        (ContentType::InteractiveResponse, choice.response)
                    }
                    Some(choice) => (ContentType::TextPlain, choice.title),
                    None => (ContentType::TextPlain, title.clone()),
                };
                let token = keys::key([contact.as_str(), wamid, "choice"]);
                let ids = self
                    .send_text(chat, content_type, content, token, "")
                    .await?;
                Ok(Sent {
                    ids,
                    excerpt: render::excerpt(title, 80),
                    kind: "choice",
                })
            }
            Step::Reaction {
                wamid,
                target,
                emoji,
            } => {
                let quoted = self
                    .link_of(target)
                    .await
                    .map(|l| l.excerpt)
                    .unwrap_or_default();
                let text = render::reaction_text(emoji, &quoted);
                let token = keys::key([contact.as_str(), wamid, "reaction"]);
                let ids = self
                    .send_text(chat, ContentType::TextPlain, text, token, "")
                    .await?;
                Ok(Sent {
                    ids,
                    excerpt: String::new(),
                    kind: "reaction",
                })
            }
            Step::Notice { wamid, kind, text } => {
                let token = keys::key([contact.as_str(), wamid, "notice"]);
                let ids = self
                    .send_text(chat, ContentType::AgentNotice, text.clone(), token, kind)
                    .await?;
                Ok(Sent {
                    ids,
                    excerpt: String::new(),
                    kind: "notice",
                })
            }
            Step::Attachment {
                wamid,
                kind,
                media_id,
                mime_type,
                file_name,
            } => {
                let business = chat_business(chat);
                let (services, business, contact) = (&self.services, &business, &contact);
                let attached = chat::with_connection(&self.services, chat, |token| {
                    Box::pin(media::to_agent(
                        services, token, business, wamid, *kind, media_id, mime_type, file_name,
                        contact,
                    ))
                })
                .await;
                match attached {
                    Ok(Attached::Sent(ids)) => Ok(Sent {
                        ids,
                        excerpt: format!("[{}]", kind.as_str()),
                        kind: kind.as_str(),
                    }),
                    Ok(Attached::Refused(why)) => {
                        self.notice(chat, wamid, "media_refused", format!(
                            "The customer sent a {} ({file_name}) that could not be attached: {why}.",
                            kind.as_str()
                        ))
                        .await
                    }
                    Err(ChatError::Failed(error)) if final_attempt => {
                        self.notice(chat, wamid, "media_failed", format!(
                            "The customer sent a {} ({file_name}) that could not be attached: {}.",
                            kind.as_str(),
                            describe(&error)
                        ))
                        .await
                    }
                    Err(error) => Err(error),
                }
            }
            Step::Voice {
                wamid, media_id, ..
            } => {
                self.send_voice(chat, route, wamid, media_id, final_attempt)
                    .await
            }
        }
    }

    async fn send_voice(
        &self,
        chat: &mut ActiveChat,
        route: &Route,
        wamid: &str,
        media_id: &str,
        final_attempt: bool,
    ) -> Result<Sent, ChatError> {
        let contact = chat.contact_id.clone();
        let business = chat_business(chat);
        let file_name =
            render::attachment_name(crate::model::MediaKind::Audio, "", "audio/wav", wamid)
                .replacen("audio-", "voice-note-", 1);
        let attachment_token = keys::key([contact.as_str(), wamid, "voice"]);
        let (services, business, file_name, attachment_token) =
            (&self.services, &business, &file_name, &attachment_token);
        let outcome = chat::with_connection(&self.services, chat, |token| {
            Box::pin(async move {
                let result = voice::to_agent(
                    services,
                    token,
                    business,
                    media_id,
                    file_name.clone(),
                    attachment_token.clone(),
                    route,
                )
                .await?;
                // An expired connection surfaces through the attachment:
                // let with_connection refresh and run the note again.
                match &result.attach_error {
                    Some(error) if error.is(ErrorReason::ConnectionExpired) => Err(error.clone()),
                    _ => Ok(result),
                }
            })
        })
        .await;
        let result = match outcome {
            Ok(result) => result,
            Err(ChatError::Failed(error)) if !error.is_retryable() || final_attempt => {
                return self
                    .notice(chat, wamid, "voice_failed", format!(
                        "The customer sent a voice note that could not be fetched or converted: {}.",
                        describe(&error)
                    ))
                    .await;
            }
            Err(error) => return Err(error),
        };
        // The audio: retried while attempts last, unless Connect refused it.
        if let Some(error) = &result.attach_error
            && error.is_retryable()
            && !final_attempt
        {
            return Err(ChatError::Failed(error.clone()));
        }
        let mut ids: Vec<String> = result.attachment_id.iter().cloned().collect();
        let mut notes = Vec::new();
        if let Some(error) = &result.attach_error {
            notes.push(format!(
                "the audio could not be attached ({})",
                describe(error)
            ));
        }
        match (&result.transcript, &result.transcribe_error) {
            (Some(transcript), _) => {
                let text = render::transcript_text(
                    result.duration_ms,
                    &transcript.text,
                    &transcript.language,
                );
                let token = keys::key([contact.as_str(), wamid, "transcript"]);
                ids.extend(
                    self.send_text(chat, ContentType::TextPlain, text, token, "")
                        .await?,
                );
                if route.echo_transcript && !transcript.text.trim().is_empty() {
                    self.echo(chat, route, wamid, &transcript.text).await;
                }
            }
            (None, Some(error)) => {
                notes.push(format!("it could not be transcribed ({})", describe(error)));
            }
            (None, None) => {}
        }
        if !notes.is_empty() {
            let text = format!(
                "The customer sent a voice note{}: {}.",
                if result.attachment_id.is_some() {
                    " (attached)"
                } else {
                    ""
                },
                notes.join("; ")
            );
            let sent = self.notice(chat, wamid, "voice_partial", text).await?;
            ids.extend(sent.ids);
        }
        Ok(Sent {
            ids,
            excerpt: "[voice note]".into(),
            kind: "voice",
        })
    }

    /// Quotes the transcript back to the customer, once.
    async fn echo(&self, chat: &ActiveChat, route: &Route, wamid: &str, transcript: &str) {
        let body = route
            .echo_template
            .replace("{transcript}", transcript.trim());
        let sent = self
            .services
            .whatsapp
            .send_message(WaSend {
                business_number_id: chat_business(chat),
                recipient: chat_customer(chat),
                reply_to_message_id: wamid.to_owned(),
                content: Some(WaContent::Text(TextMessage {
                    body,
                    preview_url: false,
                })),
                idempotency_key: keys::key(["echo", wamid]),
            })
            .await;
        if let Err(error) = sent {
            tracing::warn!(error = %describe(&error), "transcript echo not sent");
        }
    }

    /// Sends an agent-only notice for `wamid`.
    async fn notice(
        &self,
        chat: &mut ActiveChat,
        wamid: &str,
        kind: &'static str,
        text: String,
    ) -> Result<Sent, ChatError> {
        let token = keys::key([chat.contact_id.as_str(), wamid, kind]);
        let ids = self
            .send_text(chat, ContentType::AgentNotice, text, token, kind)
            .await?;
        Ok(Sent {
            ids,
            excerpt: String::new(),
            kind: "notice",
        })
    }

    /// Sends text (or a notice, or an interactive response) to the chat.
    async fn send_text(
        &self,
        chat: &mut ActiveChat,
        content_type: ContentType,
        content: String,
        client_token: String,
        notice_kind: &str,
    ) -> Result<Vec<String>, ChatError> {
        let connect = &self.services.connect;
        let (content, client_token) = (&content, &client_token);
        let sent = chat::with_connection(&self.services, chat, |token| {
            connect.send_message(SendMessageRequest {
                connection_token: token,
                content_type: content_type as i32,
                content: content.clone(),
                client_token: client_token.clone(),
                notice_kind: notice_kind.to_owned(),
            })
        })
        .await?;
        Ok(sent.message_ids)
    }

    /// Receipts on the customer's phone and the chat's activity, once the
    /// burst is with the agent. Best effort: the messages are delivered.
    async fn after_delivery(&self, messages: &[CustomerMessage], route: &Route) {
        let Some(last) = messages.last() else {
            return;
        };
        let key = parley_proto::common::ConversationKey {
            business_number_id: last.business.clone(),
            customer_id: last.customer.clone(),
        };
        let recorded = self
            .services
            .session
            .record_customer_activity(RecordCustomerActivityRequest {
                key: Some(key),
                message_id: last.wamid.clone(),
                at_ms: last.sent_at_ms,
            })
            .await;
        log_failure("record customer activity", recorded.err());
        if route.mark_read {
            receipts::mark_read(&self.services, &last.business, &last.wamid, false).await;
        }
        for message in messages {
            receipts::react(
                &self.services,
                message,
                receipts::Progress::Delivered,
                &route.reactions.delivered,
            )
            .await;
        }
    }
}

fn log_failure(what: &str, error: Option<ClientError>) {
    if let Some(error) = error {
        tracing::warn!(error = %describe(&error), "{what} failed");
    }
}

/// The business number of a chat.
fn chat_business(chat: &ActiveChat) -> String {
    chat.key
        .as_ref()
        .map(|k| k.business_number_id.clone())
        .unwrap_or_default()
}

/// The customer of a chat.
pub(crate) fn chat_customer(chat: &ActiveChat) -> String {
    chat.key
        .as_ref()
        .map(|k| k.customer_id.clone())
        .unwrap_or_default()
}
