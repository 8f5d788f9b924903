//! The `parley.session.v1.Session` service: each handler parses and
//! validates the request into domain types, applies it to the store, and
//! responds. Errors become statuses in one place, [`status`].

use std::{sync::Arc, time::Duration};

use parley_proto::{
    common::{self as common_pb, ErrorDetail, ErrorReason},
    errors,
    session::{self as pb, session_server::Session},
};
use tonic::{Code, Request, Response, Status};

use crate::{
    clock::now_ms,
    error::SessionError,
    model::{
        ActiveChat, AppendClaim, AppendOptions, ChatLookup, ClaimOutcome, ClaimRef,
        ConversationKey, Direction, LeaseAttempt, LinkDirection, MessageLink, MessageOrigin,
        PendingMessage, PendingState, TakenBatch, require,
    },
    pending::BUFFER_TTL,
    store::SessionStore,
};

/// Defaults and caps of the session service.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// How long a chat record lives when the caller sets no expiry (Connect's
    /// default chat duration is 25 h).
    pub chat_ttl: Duration,
    /// Default of EnsureChat's wait for another caller's lease.
    pub default_wait: Duration,
    /// The longest EnsureChat may wait, whatever the caller asks.
    pub max_wait: Duration,
    /// Default creation lease.
    pub lease_ttl: Duration,
    /// How long claims are remembered.
    pub claim_ttl: Duration,
    /// When an uncompleted claim counts as crashed.
    pub claim_in_progress_timeout: Duration,
    /// How long an untaken pending buffer lives.
    pub pending_ttl: Duration,
    /// Default lease of a taken batch.
    pub batch_lease: Duration,
    /// How long an ended chat is still found by contact id.
    pub tombstone_grace: Duration,
    /// How long message links are kept.
    pub link_ttl: Duration,
    /// How often a waiting EnsureChat looks again.
    pub poll_interval: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            chat_ttl: Duration::from_secs(25 * 3600),
            default_wait: Duration::from_secs(10),
            max_wait: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(30),
            claim_ttl: Duration::from_secs(24 * 3600),
            claim_in_progress_timeout: Duration::from_secs(300),
            pending_ttl: BUFFER_TTL,
            batch_lease: Duration::from_secs(60),
            tombstone_grace: Duration::from_secs(3600),
            link_ttl: Duration::from_secs(7 * 24 * 3600),
            poll_interval: Duration::from_millis(20),
        }
    }
}

/// The gRPC service over any [`SessionStore`].
#[derive(Clone)]
pub struct SessionService {
    store: Arc<dyn SessionStore>,
    config: Arc<SessionConfig>,
}

impl SessionService {
    /// A service over `store`.
    pub fn new(store: Arc<dyn SessionStore>, config: SessionConfig) -> Self {
        Self {
            store,
            config: Arc::new(config),
        }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> pb::session_server::SessionServer<Self> {
        pb::session_server::SessionServer::new(self)
    }
}

/// The one mapping from [`SessionError`] to a gRPC status.
pub fn status(error: SessionError) -> Status {
    let (code, detail) = match &error {
        SessionError::InvalidArgument(_) => (
            Code::InvalidArgument,
            ErrorDetail::new(ErrorReason::InvalidRequest),
        ),
        SessionError::NotFound(_) => (Code::NotFound, ErrorDetail::new(ErrorReason::NotFound)),
        SessionError::Conflict(_) => (
            Code::Aborted,
            ErrorDetail::new(ErrorReason::VersionConflict),
        ),
        SessionError::LeaseLost(_) => (
            Code::FailedPrecondition,
            ErrorDetail::new(ErrorReason::LeaseLost),
        ),
        SessionError::Busy { retry_after, .. } => (
            Code::Aborted,
            ErrorDetail::new(ErrorReason::Busy).retry_after(*retry_after),
        ),
        SessionError::LimitExceeded(_) => (
            Code::ResourceExhausted,
            ErrorDetail::new(ErrorReason::LimitExceeded).retryable(false),
        ),
        SessionError::Store(_) => (
            Code::Unavailable,
            ErrorDetail::new(ErrorReason::Unavailable),
        ),
        // Answered as a state (`duplicate`), never as an error; here for
        // completeness.
        SessionError::Duplicate(_) => (
            Code::AlreadyExists,
            ErrorDetail::new(ErrorReason::InvalidRequest),
        ),
    };
    if let SessionError::Store(message) = &error {
        tracing::warn!(error = %message, "session store failed");
    }
    errors::status(code, error.to_string(), detail)
}

fn invalid(message: &str) -> Status {
    status(SessionError::InvalidArgument(message.to_owned()))
}

fn key_from(key: Option<common_pb::ConversationKey>) -> Result<ConversationKey, Status> {
    let key = key.ok_or_else(|| invalid("key: is missing"))?;
    ConversationKey::parse(&key.business_number_id, &key.customer_id).map_err(|e| status(e.into()))
}

fn key_to(key: &ConversationKey) -> common_pb::ConversationKey {
    common_pb::ConversationKey {
        business_number_id: key.business().as_str().to_owned(),
        customer_id: key.customer().as_str().to_owned(),
    }
}

fn chat_from(chat: Option<pb::ActiveChat>, default_expiry_s: i64) -> Result<ActiveChat, Status> {
    let chat = chat.ok_or_else(|| invalid("chat: is missing"))?;
    let active = ActiveChat {
        key: key_from(chat.key)?,
        contact_id: chat.contact_id,
        initial_contact_id: chat.initial_contact_id,
        participant_id: chat.participant_id,
        participant_token: chat.participant_token,
        connection_token: chat.connection_token,
        connection_expires_at_ms: chat.connection_expires_at_ms,
        customer_display_name: chat.customer_display_name,
        channel: chat.channel,
        created_at_ms: chat.created_at_ms,
        updated_at_ms: chat.updated_at_ms,
        expires_at_s: if chat.expires_at_s > 0 {
            chat.expires_at_s
        } else {
            default_expiry_s
        },
        version: chat.version,
        last_customer_message_id: chat.last_customer_message_id,
        last_customer_message_at_ms: chat.last_customer_message_at_ms,
        ended_at_ms: chat.ended_at_ms,
        customer_phone: chat.customer_phone,
        client_token: chat.client_token,
    };
    active.validate().map_err(status)?;
    Ok(active)
}

fn chat_to(chat: &ActiveChat) -> pb::ActiveChat {
    pb::ActiveChat {
        key: Some(key_to(&chat.key)),
        contact_id: chat.contact_id.clone(),
        initial_contact_id: chat.initial_contact_id.clone(),
        participant_id: chat.participant_id.clone(),
        participant_token: chat.participant_token.clone(),
        connection_token: chat.connection_token.clone(),
        connection_expires_at_ms: chat.connection_expires_at_ms,
        customer_display_name: chat.customer_display_name.clone(),
        channel: chat.channel.clone(),
        created_at_ms: chat.created_at_ms,
        updated_at_ms: chat.updated_at_ms,
        expires_at_s: chat.expires_at_s,
        version: chat.version,
        last_customer_message_id: chat.last_customer_message_id.clone(),
        last_customer_message_at_ms: chat.last_customer_message_at_ms,
        ended_at_ms: chat.ended_at_ms,
        customer_phone: chat.customer_phone.clone(),
        client_token: chat.client_token.clone(),
    }
}

fn chat_response(chat: ActiveChat) -> Response<pb::ActiveChatResponse> {
    Response::new(pb::ActiveChatResponse {
        chat: Some(chat_to(&chat)),
    })
}

fn direction_from(value: i32) -> Result<Direction, Status> {
    match pb::Direction::try_from(value) {
        Ok(pb::Direction::Inbound) => Ok(Direction::Inbound),
        Ok(pb::Direction::Outbound) => Ok(Direction::Outbound),
        _ => Err(invalid("direction: must be INBOUND or OUTBOUND")),
    }
}

fn direction_to(direction: Direction) -> i32 {
    match direction {
        Direction::Inbound => pb::Direction::Inbound as i32,
        Direction::Outbound => pb::Direction::Outbound as i32,
    }
}

fn pending_to(state: PendingState) -> pb::PendingState {
    pb::PendingState {
        key: Some(key_to(&state.key)),
        direction: direction_to(state.direction),
        version: state.version,
        message_count: state.message_count,
        total_bytes: state.total_bytes,
        first_append_at_ms: state.first_append_at_ms,
        last_append_at_ms: state.last_append_at_ms,
        due_at_ms: state.due_at_ms,
        leased_until_ms: state.leased_until_ms,
        attempts: state.attempts,
        duplicate: false,
    }
}

fn message_to(m: PendingMessage) -> pb::PendingMessage {
    pb::PendingMessage {
        message_id: m.message_id,
        received_at_ms: m.received_at_ms,
        payload: m.payload.into(),
        appended_at_ms: m.appended_at_ms,
    }
}

fn batch_to(batch: TakenBatch) -> pb::TakePendingResponse {
    pb::TakePendingResponse {
        batch_id: batch.batch_id,
        take_token: batch.take_token,
        lease_expires_at_ms: batch.lease_expires_at_ms,
        messages: batch.messages.into_iter().map(message_to).collect(),
        state: Some(pending_to(batch.state)),
    }
}

fn origin_from(value: i32) -> Result<MessageOrigin, Status> {
    match pb::MessageOrigin::try_from(value) {
        Ok(pb::MessageOrigin::Whatsapp) => Ok(MessageOrigin::WhatsApp),
        Ok(pb::MessageOrigin::Connect) => Ok(MessageOrigin::Connect),
        Ok(pb::MessageOrigin::WhatsappSend) => Ok(MessageOrigin::WhatsAppSend),
        Ok(pb::MessageOrigin::WhatsappStatus) => Ok(MessageOrigin::WhatsAppStatus),
        _ => Err(invalid(
            "origin: must be WHATSAPP, CONNECT, WHATSAPP_SEND or WHATSAPP_STATUS",
        )),
    }
}

fn claim_from(origin: i32, message_id: String, token: String) -> Result<ClaimRef, Status> {
    let origin = origin_from(origin)?;
    require("message_id", &message_id).map_err(status)?;
    require("claim_token", &token).map_err(status)?;
    Ok(ClaimRef {
        origin,
        message_id,
        token,
    })
}

fn link_from(link: pb::MessageLink) -> Result<MessageLink, Status> {
    let direction = match pb::LinkDirection::try_from(link.direction) {
        Ok(pb::LinkDirection::ToAgent) => LinkDirection::ToAgent,
        Ok(pb::LinkDirection::ToCustomer) => LinkDirection::ToCustomer,
        _ => return Err(invalid("direction: must be TO_AGENT or TO_CUSTOMER")),
    };
    let link = MessageLink {
        whatsapp_message_ids: link.whatsapp_message_ids,
        connect_message_id: link.connect_message_id,
        direction,
        key: key_from(link.key)?,
        contact_id: link.contact_id,
        created_at_ms: 0,
        excerpt: link.excerpt,
        kind: link.kind,
        interactive_template: link.interactive_template,
    };
    link.validate().map_err(status)?;
    Ok(link)
}

fn link_to(link: MessageLink) -> pb::MessageLink {
    pb::MessageLink {
        key: Some(key_to(&link.key)),
        whatsapp_message_ids: link.whatsapp_message_ids,
        connect_message_id: link.connect_message_id,
        direction: match link.direction {
            LinkDirection::ToAgent => pb::LinkDirection::ToAgent as i32,
            LinkDirection::ToCustomer => pb::LinkDirection::ToCustomer as i32,
        },
        contact_id: link.contact_id,
        created_at_ms: link.created_at_ms,
        excerpt: link.excerpt,
        kind: link.kind,
        interactive_template: link.interactive_template,
    }
}

fn seconds_or(value: u32, default: Duration) -> Duration {
    if value == 0 {
        default
    } else {
        Duration::from_secs(u64::from(value))
    }
}

fn millis_or(value: u32, default: Duration) -> Duration {
    if value == 0 {
        default
    } else {
        Duration::from_millis(u64::from(value))
    }
}

#[tonic::async_trait]
impl Session for SessionService {
    async fn ensure_chat(
        &self,
        request: Request<pb::EnsureChatRequest>,
    ) -> Result<Response<pb::EnsureChatResponse>, Status> {
        let request = request.into_inner();
        let key = key_from(request.key)?;
        let wait =
            millis_or(request.max_wait_ms, self.config.default_wait).min(self.config.max_wait);
        let lease_ttl = millis_or(request.lease_ttl_ms, self.config.lease_ttl);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let outcome = self
                .store
                .try_lease(&key, lease_ttl, now_ms())
                .await
                .map_err(status)?;
            let outcome = match outcome {
                LeaseAttempt::Exists(chat) => {
                    pb::ensure_chat_response::Outcome::Chat(chat_to(&chat))
                }
                LeaseAttempt::Granted(lease) => {
                    tracing::info!(conversation = %key.fingerprint(), "creation lease granted");
                    pb::ensure_chat_response::Outcome::Lease(pb::CreationLease {
                        lease_id: lease.lease_id,
                        expires_at_ms: lease.expires_at_ms,
                        client_token: lease.client_token,
                    })
                }
                LeaseAttempt::Busy { until_ms } => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(status(SessionError::Busy {
                            message: "another caller is still creating this chat".into(),
                            retry_after: Duration::from_millis(
                                (until_ms - now_ms()).clamp(1, 30_000) as u64,
                            ),
                        }));
                    }
                    tokio::time::sleep(self.config.poll_interval).await;
                    continue;
                }
            };
            return Ok(Response::new(pb::EnsureChatResponse {
                outcome: Some(outcome),
            }));
        }
    }

    async fn complete_chat_creation(
        &self,
        request: Request<pb::CompleteChatCreationRequest>,
    ) -> Result<Response<pb::ActiveChatResponse>, Status> {
        let request = request.into_inner();
        require("lease_id", &request.lease_id).map_err(status)?;
        let now = now_ms();
        let chat = chat_from(
            request.chat,
            now / 1000 + self.config.chat_ttl.as_secs() as i64,
        )?;
        let stored = self
            .store
            .complete_creation(&request.lease_id, chat, now)
            .await
            .map_err(status)?;
        tracing::info!(conversation = %stored.key.fingerprint(), contact_id = %stored.contact_id, "chat stored");
        Ok(chat_response(stored))
    }

    async fn abandon_chat_creation(
        &self,
        request: Request<pb::AbandonChatCreationRequest>,
    ) -> Result<Response<pb::AbandonChatCreationResponse>, Status> {
        let request = request.into_inner();
        let key = key_from(request.key)?;
        require("lease_id", &request.lease_id).map_err(status)?;
        self.store
            .abandon_creation(&key, &request.lease_id, request.forget_client_token)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::AbandonChatCreationResponse {}))
    }

    async fn get_chat_by_conversation(
        &self,
        request: Request<pb::GetChatByConversationRequest>,
    ) -> Result<Response<pb::ActiveChatResponse>, Status> {
        let key = key_from(request.into_inner().key)?;
        match self
            .store
            .chat_by_key(&key, now_ms())
            .await
            .map_err(status)?
        {
            Some(chat) => Ok(chat_response(chat)),
            None => Err(status(SessionError::NotFound(
                "no active chat for this conversation".into(),
            ))),
        }
    }

    async fn get_chat_by_contact(
        &self,
        request: Request<pb::GetChatByContactRequest>,
    ) -> Result<Response<pb::GetChatByContactResponse>, Status> {
        let contact_id = request.into_inner().contact_id;
        require("contact_id", &contact_id).map_err(status)?;
        let lookup = self
            .store
            .chat_by_contact(&contact_id, now_ms())
            .await
            .map_err(status)?;
        let (state, chat) = match lookup {
            ChatLookup::Active(chat) => (pb::ChatState::Active, Some(chat_to(&chat))),
            ChatLookup::Ended(chat) => (pb::ChatState::Ended, Some(chat_to(&chat))),
            ChatLookup::Unknown => (pb::ChatState::Unknown, None),
        };
        Ok(Response::new(pb::GetChatByContactResponse {
            state: state as i32,
            chat,
        }))
    }

    async fn update_chat(
        &self,
        request: Request<pb::UpdateChatRequest>,
    ) -> Result<Response<pb::ActiveChatResponse>, Status> {
        let now = now_ms();
        let chat = chat_from(
            request.into_inner().chat,
            now / 1000 + self.config.chat_ttl.as_secs() as i64,
        )?;
        Ok(chat_response(
            self.store.update_chat(chat, now).await.map_err(status)?,
        ))
    }

    async fn record_customer_activity(
        &self,
        request: Request<pb::RecordCustomerActivityRequest>,
    ) -> Result<Response<pb::ActiveChatResponse>, Status> {
        let request = request.into_inner();
        let key = key_from(request.key)?;
        require("message_id", &request.message_id).map_err(status)?;
        Ok(chat_response(
            self.store
                .record_customer_activity(&key, &request.message_id, request.at_ms, now_ms())
                .await
                .map_err(status)?,
        ))
    }

    async fn end_chat(
        &self,
        request: Request<pb::EndChatRequest>,
    ) -> Result<Response<pb::EndChatResponse>, Status> {
        let request = request.into_inner();
        let key = key_from(request.key)?;
        require("contact_id", &request.contact_id).map_err(status)?;
        let outcome = self
            .store
            .end_chat(
                &key,
                &request.contact_id,
                request.expected_version,
                millis_or(request.grace_ms, self.config.tombstone_grace),
                now_ms(),
            )
            .await
            .map_err(status)?;
        if outcome.ended {
            tracing::info!(conversation = %key.fingerprint(), contact_id = %request.contact_id, "chat ended");
        }
        Ok(Response::new(pb::EndChatResponse {
            ended: outcome.ended,
            chat: outcome.chat.as_ref().map(chat_to),
        }))
    }

    async fn claim_message(
        &self,
        request: Request<pb::ClaimMessageRequest>,
    ) -> Result<Response<pb::ClaimMessageResponse>, Status> {
        let request = request.into_inner();
        let origin = origin_from(request.origin)?;
        require("message_id", &request.message_id).map_err(status)?;
        let outcome = self
            .store
            .claim(
                origin,
                &request.message_id,
                seconds_or(request.ttl_s, self.config.claim_ttl),
                seconds_or(
                    request.in_progress_timeout_s,
                    self.config.claim_in_progress_timeout,
                ),
                now_ms(),
            )
            .await
            .map_err(status)?;
        let mut response = pb::ClaimMessageResponse::default();
        match outcome {
            ClaimOutcome::Claimed { token } => {
                response.outcome = pb::ClaimOutcome::Claimed as i32;
                response.claim_token = token;
            }
            ClaimOutcome::AlreadyCompleted { result } => {
                response.outcome = pb::ClaimOutcome::AlreadyCompleted as i32;
                response.result = result;
            }
            ClaimOutcome::InProgress { retry_after } => {
                response.outcome = pb::ClaimOutcome::InProgress as i32;
                response.retry_after_ms =
                    u32::try_from(retry_after.as_millis()).unwrap_or(u32::MAX);
            }
        }
        Ok(Response::new(response))
    }

    async fn complete_claim(
        &self,
        request: Request<pb::CompleteClaimRequest>,
    ) -> Result<Response<pb::CompleteClaimResponse>, Status> {
        let request = request.into_inner();
        let claim = claim_from(request.origin, request.message_id, request.claim_token)?;
        if request.result.len() > crate::model::MAX_RESULT_LEN {
            return Err(invalid("result: is longer than 1024 bytes"));
        }
        self.store
            .complete_claim(&claim, &request.result, now_ms())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CompleteClaimResponse {}))
    }

    async fn release_claim(
        &self,
        request: Request<pb::ReleaseClaimRequest>,
    ) -> Result<Response<pb::ReleaseClaimResponse>, Status> {
        let request = request.into_inner();
        let claim = claim_from(request.origin, request.message_id, request.claim_token)?;
        self.store.release_claim(&claim).await.map_err(status)?;
        Ok(Response::new(pb::ReleaseClaimResponse {}))
    }

    async fn extend_claim(
        &self,
        request: Request<pb::ExtendClaimRequest>,
    ) -> Result<Response<pb::ExtendClaimResponse>, Status> {
        let request = request.into_inner();
        let claim = request.claim.ok_or_else(|| invalid("claim: is missing"))?;
        let claim = claim_from(claim.origin, claim.message_id, claim.claim_token)?;
        self.store
            .extend_claim(
                &claim,
                Duration::from_millis(u64::from(request.extend_by_ms)),
                now_ms(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ExtendClaimResponse {}))
    }

    async fn link_messages(
        &self,
        request: Request<pb::LinkMessagesRequest>,
    ) -> Result<Response<pb::LinkMessagesResponse>, Status> {
        let request = request.into_inner();
        if request.links.is_empty() || request.links.len() > 100 {
            return Err(invalid("links: 1 to 100 links per call"));
        }
        let links = request
            .links
            .into_iter()
            .map(link_from)
            .collect::<Result<Vec<_>, _>>()?;
        self.store
            .link_messages(
                links,
                seconds_or(request.ttl_s, self.config.link_ttl),
                now_ms(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::LinkMessagesResponse {}))
    }

    async fn get_message_link(
        &self,
        request: Request<pb::GetMessageLinkRequest>,
    ) -> Result<Response<pb::MessageLink>, Status> {
        let request = request.into_inner();
        let origin = origin_from(request.origin)?;
        require("message_id", &request.message_id).map_err(status)?;
        match self
            .store
            .message_link(origin, &request.message_id, now_ms())
            .await
            .map_err(status)?
        {
            Some(link) => Ok(Response::new(link_to(link))),
            None => Err(status(SessionError::NotFound(
                "no link for this message id".into(),
            ))),
        }
    }

    async fn append_pending(
        &self,
        request: Request<pb::AppendPendingRequest>,
    ) -> Result<Response<pb::PendingState>, Status> {
        let request = request.into_inner();
        let key = key_from(request.key)?;
        let direction = direction_from(request.direction)?;
        let message = request
            .message
            .ok_or_else(|| invalid("message: is missing"))?;
        let message = PendingMessage {
            message_id: message.message_id,
            received_at_ms: message.received_at_ms,
            payload: message.payload.to_vec(),
            appended_at_ms: 0,
        };
        message.validate().map_err(status)?;
        let claim = match (request.complete_claim, request.once) {
            (Some(_), Some(_)) => {
                return Err(invalid("give complete_claim or once, not both"));
            }
            (Some(c), None) => {
                let claim = claim_from(c.origin, c.message_id, c.claim_token)?;
                if claim.message_id != message.message_id {
                    return Err(invalid(
                        "complete_claim: must be the claim of the message appended",
                    ));
                }
                AppendClaim::Complete(claim)
            }
            (None, Some(once)) => AppendClaim::Once {
                origin: origin_from(once.origin)?,
                ttl: Duration::from_secs(u64::from(once.ttl_s.max(1))),
            },
            (None, None) => AppendClaim::None,
        };
        let options = AppendOptions {
            flush_delay: Duration::from_millis(u64::from(request.flush_delay_ms)),
            max_wait: Duration::from_millis(u64::from(request.max_wait_ms)),
        };
        let now = now_ms();
        let appended = self
            .store
            .append_pending(
                &key,
                direction,
                message,
                options,
                claim,
                self.config.pending_ttl,
                now,
            )
            .await;
        match appended {
            Ok(state) => Ok(Response::new(pending_to(state))),
            Err(SessionError::Duplicate(_)) => {
                let state = self
                    .store
                    .peek_pending(&key, direction, now)
                    .await
                    .map_err(status)?;
                Ok(Response::new(pb::PendingState {
                    duplicate: true,
                    ..pending_to(state)
                }))
            }
            Err(error) => Err(status(error)),
        }
    }

    async fn peek_pending(
        &self,
        request: Request<pb::PeekPendingRequest>,
    ) -> Result<Response<pb::PendingState>, Status> {
        let request = request.into_inner();
        let key = key_from(request.key)?;
        let direction = direction_from(request.direction)?;
        Ok(Response::new(pending_to(
            self.store
                .peek_pending(&key, direction, now_ms())
                .await
                .map_err(status)?,
        )))
    }

    async fn take_pending(
        &self,
        request: Request<pb::TakePendingRequest>,
    ) -> Result<Response<pb::TakePendingResponse>, Status> {
        let request = request.into_inner();
        let key = key_from(request.key)?;
        let direction = direction_from(request.direction)?;
        let batch = self
            .store
            .take_pending(
                &key,
                direction,
                millis_or(request.lease_ms, self.config.batch_lease),
                request.max_messages as usize,
                request.expected_version,
                now_ms(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(batch_to(batch)))
    }

    async fn ack_pending(
        &self,
        request: Request<pb::AckPendingRequest>,
    ) -> Result<Response<pb::PendingState>, Status> {
        let request = request.into_inner();
        let key = key_from(request.key)?;
        let direction = direction_from(request.direction)?;
        require("take_token", &request.take_token).map_err(status)?;
        Ok(Response::new(pending_to(
            self.store
                .ack_pending(&key, direction, &request.take_token, now_ms())
                .await
                .map_err(status)?,
        )))
    }

    async fn release_pending(
        &self,
        request: Request<pb::ReleasePendingRequest>,
    ) -> Result<Response<pb::PendingState>, Status> {
        let request = request.into_inner();
        let key = key_from(request.key)?;
        let direction = direction_from(request.direction)?;
        require("take_token", &request.take_token).map_err(status)?;
        Ok(Response::new(pending_to(
            self.store
                .release_pending(
                    &key,
                    direction,
                    &request.take_token,
                    Duration::from_millis(u64::from(request.retry_after_ms)),
                    now_ms(),
                )
                .await
                .map_err(status)?,
        )))
    }

    async fn list_due_pending(
        &self,
        request: Request<pb::ListDuePendingRequest>,
    ) -> Result<Response<pb::ListDuePendingResponse>, Status> {
        let request = request.into_inner();
        let direction = direction_from(request.direction)?;
        let limit = if request.limit == 0 {
            100
        } else {
            request.limit.min(1_000)
        } as usize;
        let due = self
            .store
            .list_due(direction, limit, now_ms())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListDuePendingResponse {
            due: due.into_iter().map(pending_to).collect(),
        }))
    }

    async fn extend_lease(
        &self,
        request: Request<pb::ExtendLeaseRequest>,
    ) -> Result<Response<pb::ExtendLeaseResponse>, Status> {
        let request = request.into_inner();
        let extend_by = Duration::from_millis(u64::from(request.extend_by_ms));
        if extend_by.is_zero() || extend_by > Duration::from_secs(3600) {
            return Err(invalid("extend_by_ms: 1 to 3,600,000"));
        }
        let now = now_ms();
        let expires_at_ms = match request.lease {
            Some(pb::extend_lease_request::Lease::Creation(lease)) => {
                let key = key_from(lease.key)?;
                require("lease_id", &lease.lease_id).map_err(status)?;
                self.store
                    .extend_creation(&key, &lease.lease_id, extend_by, now)
                    .await
            }
            Some(pb::extend_lease_request::Lease::Batch(batch)) => {
                let key = key_from(batch.key)?;
                let direction = direction_from(batch.direction)?;
                require("take_token", &batch.take_token).map_err(status)?;
                self.store
                    .extend_batch(&key, direction, &batch.take_token, extend_by, now)
                    .await
            }
            None => return Err(invalid("lease: is missing")),
        }
        .map_err(status)?;
        Ok(Response::new(pb::ExtendLeaseResponse { expires_at_ms }))
    }
}
