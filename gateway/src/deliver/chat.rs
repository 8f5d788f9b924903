//! A conversation's Connect chat, as delivery needs it: found or opened
//! exactly once however many replicas race (the session's creation lease
//! and its stable client token), used with a connection that is refreshed
//! when it expires, and closed when Connect says it ended — after which the
//! next message opens a new chat.

use std::{collections::HashMap, time::Duration};

use futures::future::BoxFuture;
use parley_client::ClientError;
use parley_proto::{
    common::{ConversationKey, ErrorReason},
    connect::{ContentType, RefreshConnectionRequest, StartChatRequest},
    session::{
        AbandonChatCreationRequest, ActiveChat, ChatState, CompleteChatCreationRequest,
        CreationLease, EndChatRequest, EnsureChatRequest, GetChatByContactRequest, LinkDirection,
        LinkMessagesRequest, MessageLink, UpdateChatRequest, ensure_chat_response::Outcome,
    },
};

use super::DeliveryError;
use crate::{
    ingest::{self, AgentItemBuffer},
    routing::Route,
    services::Services,
};

/// Longest initial message Connect takes.
const INITIAL_MESSAGE_CHARS: usize = 1_024;

/// Who the chat is with, for the chat Connect opens.
#[derive(Debug, Clone)]
pub struct Customer<'a> {
    /// The conversation.
    pub key: &'a ConversationKey,
    /// WhatsApp profile name (the agent's label for the customer).
    pub profile_name: &'a str,
    /// Phone digits, when the customer is known by number.
    pub phone: &'a str,
}

/// The first text of a burst, sent as the chat's initial message so the
/// contact flow (a bot) sees it.
#[derive(Debug, Clone)]
pub struct Initial<'a> {
    /// The text.
    pub text: &'a str,
    /// The customer messages it carries.
    pub wamids: &'a [String],
    /// How long links are kept.
    pub link_ttl_s: u32,
}

/// What opening a chat takes besides the services.
#[derive(Clone)]
pub struct Opening {
    /// Where the items Connect posted before streaming began go.
    pub agent_items: AgentItemBuffer,
    /// How long the creation lease is held (see
    /// [`GatewayConfig::chat_creation_lease`](crate::config::GatewayConfig)).
    pub lease: Duration,
}

/// A chat found or opened.
#[derive(Debug, Clone)]
pub struct Ensured {
    /// The chat.
    pub chat: ActiveChat,
    /// Whether this call opened it with the initial message (then that text
    /// is delivered already).
    pub initial_sent: bool,
}

/// The id a message link gets for text sent as a chat's initial message
/// (StartChatContact returns no message id for it).
pub fn initial_link_id(contact_id: &str) -> String {
    format!("initial:{contact_id}")
}

/// Finds the conversation's chat, or opens one under the session's
/// creation lease.
pub async fn ensure(
    services: &Services,
    opening: &Opening,
    customer: &Customer<'_>,
    route: &Route,
    initial: Option<Initial<'_>>,
) -> Result<Ensured, DeliveryError> {
    // A lease lost to a takeover means another replica holds it: ask again
    // (bounded), and it answers with that replica's chat.
    for _ in 0..4 {
        let answer = services
            .session
            .ensure_chat(EnsureChatRequest {
                key: Some(customer.key.clone()),
                max_wait_ms: 10_000,
                lease_ttl_ms: u32::try_from(opening.lease.as_millis()).unwrap_or(u32::MAX),
            })
            .await?;
        match answer.outcome {
            Some(Outcome::Chat(chat)) => {
                return Ok(Ensured {
                    chat,
                    initial_sent: false,
                });
            }
            Some(Outcome::Lease(lease)) => {
                if let Some(ensured) = open(
                    services,
                    &opening.agent_items,
                    customer,
                    route,
                    initial.clone(),
                    lease,
                )
                .await?
                {
                    return Ok(ensured);
                }
            }
            None => return Err(DeliveryError::retry("session.ensure_chat answered nothing")),
        }
    }
    Err(DeliveryError::retry(
        "the chat is being opened by another replica",
    ))
}

/// Opens the chat under `lease`; `None` when the lease was lost meanwhile.
async fn open(
    services: &Services,
    agent_items: &AgentItemBuffer,
    customer: &Customer<'_>,
    route: &Route,
    initial: Option<Initial<'_>>,
    lease: CreationLease,
) -> Result<Option<Ensured>, DeliveryError> {
    let initial = initial
        .filter(|i| !i.text.trim().is_empty() && i.text.chars().count() <= INITIAL_MESSAGE_CHARS);
    let display_name = if customer.profile_name.trim().is_empty() {
        "WhatsApp customer".to_owned()
    } else {
        customer.profile_name.to_owned()
    };
    let attributes = HashMap::from([
        ("Channel".to_owned(), "WhatsApp".to_owned()),
        ("customerId".to_owned(), customer.key.customer_id.clone()),
        ("customerName".to_owned(), display_name.clone()),
        (
            "systemNumber".to_owned(),
            customer.key.business_number_id.clone(),
        ),
    ]);
    let started = services
        .connect
        .start_chat(StartChatRequest {
            key: Some(customer.key.clone()),
            instance_id: route.instance_id.clone(),
            contact_flow_id: route.contact_flow_id.clone(),
            display_name: display_name.clone(),
            initial_message: initial
                .as_ref()
                .map(|i| i.text.to_owned())
                .unwrap_or_default(),
            initial_content_type: ContentType::TextPlain as i32,
            chat_duration_minutes: route.chat_duration_minutes,
            // Stable across takeovers: a holder that crashed after Connect
            // opened the chat left the same token, and Connect answers the
            // repeat with that chat.
            client_token: lease.client_token.clone(),
            attributes,
            persistent_chat: None,
            channel: "WhatsApp".into(),
        })
        .await;
    let started = match started {
        Ok(started) => started,
        Err(error) => {
            // A failure the relay could not resume from made it stop the
            // contact it opened: the token must not be reused then.
            give_back(services, customer, &lease, !error.is_retryable()).await;
            return Err(error.into());
        }
    };
    let initial_contact_id = if started.initial_contact_id.is_empty() {
        started.contact_id.clone()
    } else {
        started.initial_contact_id.clone()
    };
    // Connect streams only what is posted after StartContactStreaming; a
    // flow's greeting or a bot's first prompt can come before, and the
    // relay read those from the transcript. They join the outbound buffer
    // as streamed items do (once per Connect id, so one also streamed is
    // sent once), before the chat is stored: a crash here repeats
    // StartChat (same client token, same contact) and this step.
    let received_at_ms = crate::flush::now_ms();
    for earlier in &started.earlier_items {
        let Some(item) = crate::parse::connect::transcript_item(
            earlier,
            &started.contact_id,
            &initial_contact_id,
        ) else {
            continue;
        };
        match agent_items
            .append(customer.key.clone(), &item, received_at_ms)
            .await
        {
            ingest::Outcome::Done => {}
            ingest::Outcome::Retry { reason, .. } => {
                // The token is kept, so the retry finds this contact.
                give_back(services, customer, &lease, false).await;
                return Err(DeliveryError::retry(reason));
            }
            ingest::Outcome::Reject { reason } => {
                tracing::warn!(item = %item.id, %reason, "an earlier chat item cannot be buffered");
            }
        }
    }
    if !started.earlier_items.is_empty() {
        crate::test_hooks::crash_point("deliver:earlier-buffered");
    }
    if let Some(initial) = &initial {
        // Recorded before the chat is stored: a replica that finds the chat
        // stored also finds the initial text delivered.
        services
            .session
            .link_messages(LinkMessagesRequest {
                links: vec![MessageLink {
                    whatsapp_message_ids: initial.wamids.to_vec(),
                    connect_message_id: initial_link_id(&started.contact_id),
                    direction: LinkDirection::ToAgent as i32,
                    key: Some(customer.key.clone()),
                    contact_id: started.contact_id.clone(),
                    created_at_ms: 0,
                    excerpt: crate::render::to_agent::excerpt(initial.text, 80),
                    kind: "text".into(),
                    interactive_template: String::new(),
                }],
                ttl_s: initial.link_ttl_s,
            })
            .await?;
    }
    let chat = ActiveChat {
        key: Some(customer.key.clone()),
        contact_id: started.contact_id.clone(),
        initial_contact_id,
        participant_id: started.participant_id,
        participant_token: started.participant_token,
        connection_token: started.connection_token,
        connection_expires_at_ms: started.connection_expires_at_ms,
        customer_display_name: display_name,
        channel: "WhatsApp".into(),
        customer_phone: customer.phone.to_owned(),
        client_token: lease.client_token,
        ..ActiveChat::default()
    };
    match services
        .session
        .complete_chat_creation(CompleteChatCreationRequest {
            lease_id: lease.lease_id,
            chat: Some(chat),
        })
        .await
    {
        Ok(stored) => Ok(Some(Ensured {
            chat: stored.chat.unwrap_or_default(),
            initial_sent: initial.is_some(),
        })),
        Err(error) if error.is(ErrorReason::LeaseLost) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Gives the creation lease back after a failed creation, so a retry need
/// not wait it out; `forget_token` when the contact was stopped (the token
/// would find it again). Best effort: an unreturned lease just expires.
async fn give_back(
    services: &Services,
    customer: &Customer<'_>,
    lease: &CreationLease,
    forget_token: bool,
) {
    let _ = services
        .session
        .abandon_chat_creation(AbandonChatCreationRequest {
            key: Some(customer.key.clone()),
            lease_id: lease.lease_id.clone(),
            forget_client_token: forget_token,
        })
        .await;
}

/// Why a call on a chat failed.
#[derive(Debug)]
pub enum ChatError {
    /// The chat ended (or its participant can no longer connect): open a
    /// new one.
    Ended,
    /// Anything else.
    Failed(ClientError),
}

impl From<ClientError> for ChatError {
    fn from(error: ClientError) -> Self {
        if error.is(ErrorReason::ChatEnded) {
            Self::Ended
        } else {
            Self::Failed(error)
        }
    }
}

/// Runs `call` with the chat's connection token. An expired connection is
/// refreshed from the participant token once (and stored); a chat that
/// can no longer be reached is [`ChatError::Ended`].
pub async fn with_connection<'a, T>(
    services: &Services,
    chat: &mut ActiveChat,
    mut call: impl FnMut(String) -> BoxFuture<'a, parley_client::Result<T>>,
) -> Result<T, ChatError> {
    match call(chat.connection_token.clone()).await {
        Err(error) if error.is(ErrorReason::ConnectionExpired) => {}
        other => return other.map_err(ChatError::from),
    }
    refresh(services, chat).await?;
    call(chat.connection_token.clone())
        .await
        .map_err(|error| match error.reason() {
            ErrorReason::ConnectionExpired => ChatError::Ended,
            _ => ChatError::from(error),
        })
}

/// A fresh connection for `chat`, stored for every replica.
async fn refresh(services: &Services, chat: &mut ActiveChat) -> Result<(), ChatError> {
    let fresh = services
        .connect
        .refresh_connection(RefreshConnectionRequest {
            participant_token: chat.participant_token.clone(),
        })
        .await
        .map_err(|error| match error.reason() {
            // The participant token no longer works: the chat is over.
            ErrorReason::ConnectionExpired | ErrorReason::ChatEnded => ChatError::Ended,
            _ => ChatError::Failed(error),
        })?;
    chat.connection_token = fresh.connection_token;
    chat.connection_expires_at_ms = fresh.connection_expires_at_ms;
    // Another replica may have refreshed (or ended) it meanwhile; either
    // way the token in hand works for this delivery.
    if let Ok(stored) = services
        .session
        .update_chat(UpdateChatRequest {
            chat: Some(chat.clone()),
        })
        .await
        && let Some(stored) = stored.chat
    {
        *chat = stored;
    }
    Ok(())
}

/// Marks `chat` ended (only if it is still the conversation's chat), so
/// the next message opens a new one. Returns whether this call ended it.
pub async fn end(
    services: &Services,
    chat: &ActiveChat,
    grace: std::time::Duration,
) -> Result<bool, DeliveryError> {
    let ended = services
        .session
        .end_chat(EndChatRequest {
            key: chat.key.clone(),
            contact_id: chat.contact_id.clone(),
            expected_version: 0,
            grace_ms: u32::try_from(grace.as_millis()).unwrap_or(u32::MAX),
        })
        .await?;
    Ok(ended.ended)
}

/// Whether the chat of an agent item that has none stored may just not be
/// stored yet — a flow's greeting can beat the chat's creation, and a
/// creation cut short by a crash is finished by a takeover — rather than
/// gone: while less than `grace` has passed `since_ms` (when the item was
/// posted or buffered, whichever the caller knows to be its start).
pub fn may_be_stored_yet(since_ms: i64, grace: Duration) -> bool {
    let age = crate::flush::now_ms().saturating_sub(since_ms);
    age < i64::try_from(grace.as_millis()).unwrap_or(i64::MAX)
}

/// The chat a Connect contact belongs to: by its contact id, else by the
/// contact it started as (a transfer changes the contact id). Ended chats
/// within their grace period count.
pub async fn by_contact(
    services: &Services,
    contact_id: &str,
    initial_contact_id: &str,
) -> Result<Option<ActiveChat>, DeliveryError> {
    for id in [contact_id, initial_contact_id] {
        if id.is_empty() {
            continue;
        }
        let found = services
            .session
            .get_chat_by_contact(GetChatByContactRequest {
                contact_id: id.to_owned(),
            })
            .await?;
        match found.state() {
            ChatState::Active | ChatState::Ended => {
                if let Some(chat) = found.chat {
                    return Ok(Some(chat));
                }
            }
            _ => {}
        }
    }
    Ok(None)
}
