//! The `parley.session.v1.Session` service: each handler parses and
//! validates the request into domain types, applies it to the store, and
//! responds. Errors become statuses in one place, [`status`].

use std::{sync::Arc, time::Duration};

use parley_proto::{
    common::{self as common_pb, ErrorDetail, ErrorReason},
    session::{self as pb, session_server::Session},
};
use prost::Message as _;
use tonic::{Request, Response, Status};

use crate::{
    clock::now_ms,
    error::SessionError,
    model::{
        ActiveChat, ClaimOutcome, ConversationKey, LeaseAttempt, MessageOrigin, PendingMessage,
        PendingState, require,
    },
    store::SessionStore,
};

/// Defaults and caps of the session service.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// How long a chat record lives when the caller sets no expiry (Connect's
    /// default chat duration is 25 h).
    pub chat_ttl: Duration,
    /// Default and cap of EnsureChat's wait for another caller's lease.
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
            pending_ttl: Duration::from_secs(24 * 3600),
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
    let (code, reason) = match &error {
        SessionError::InvalidArgument(_) => {
            (tonic::Code::InvalidArgument, ErrorReason::InvalidRequest)
        }
        SessionError::NotFound(_) => (tonic::Code::NotFound, ErrorReason::Unspecified),
        SessionError::Conflict(_) => (tonic::Code::Aborted, ErrorReason::Unspecified),
        SessionError::Precondition(_) => {
            (tonic::Code::FailedPrecondition, ErrorReason::Unspecified)
        }
        SessionError::Busy(_) => (tonic::Code::Unavailable, ErrorReason::Unspecified),
        SessionError::Store(_) => (tonic::Code::Unavailable, ErrorReason::Unspecified),
    };
    if let SessionError::Store(message) = &error {
        tracing::warn!(error = %message, "session store failed");
    }
    let detail = ErrorDetail {
        reason: reason as i32,
        aws_error_code: String::new(),
    };
    Status::with_details(code, error.to_string(), detail.encode_to_vec().into())
}

fn key_from(key: Option<common_pb::ConversationKey>) -> Result<ConversationKey, Status> {
    let key = key.ok_or_else(|| status(SessionError::InvalidArgument("key: is missing".into())))?;
    ConversationKey::new(&key.business_number_id, &key.customer_id).map_err(status)
}

fn key_to(key: &ConversationKey) -> common_pb::ConversationKey {
    common_pb::ConversationKey {
        business_number_id: key.business().to_owned(),
        customer_id: key.customer().to_owned(),
    }
}

fn chat_from(chat: Option<pb::ActiveChat>, default_expiry_s: i64) -> Result<ActiveChat, Status> {
    let chat =
        chat.ok_or_else(|| status(SessionError::InvalidArgument("chat: is missing".into())))?;
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
    }
}

fn chat_response(chat: ActiveChat) -> Response<pb::ActiveChatResponse> {
    Response::new(pb::ActiveChatResponse {
        chat: Some(chat_to(&chat)),
    })
}

fn pending_to(state: PendingState) -> pb::PendingState {
    pb::PendingState {
        key: Some(key_to(&state.key)),
        version: state.version,
        message_count: state.message_count,
        last_append_at_ms: state.last_append_at_ms,
    }
}

fn origin_from(value: i32) -> Result<MessageOrigin, Status> {
    match pb::MessageOrigin::try_from(value) {
        Ok(pb::MessageOrigin::Whatsapp) => Ok(MessageOrigin::WhatsApp),
        Ok(pb::MessageOrigin::Connect) => Ok(MessageOrigin::Connect),
        _ => Err(status(SessionError::InvalidArgument(
            "origin: must be WHATSAPP or CONNECT".into(),
        ))),
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
                    })
                }
                LeaseAttempt::Busy { .. } => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(status(SessionError::Busy(
                            "another caller is still creating this chat; retry".into(),
                        )));
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
            .abandon_creation(&key, &request.lease_id)
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
    ) -> Result<Response<pb::ActiveChatResponse>, Status> {
        let contact_id = request.into_inner().contact_id;
        require("contact_id", &contact_id).map_err(status)?;
        match self
            .store
            .chat_by_contact(&contact_id, now_ms())
            .await
            .map_err(status)?
        {
            Some(chat) => Ok(chat_response(chat)),
            None => Err(status(SessionError::NotFound(format!(
                "no active chat for contact {contact_id}"
            )))),
        }
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

    async fn end_chat(
        &self,
        request: Request<pb::EndChatRequest>,
    ) -> Result<Response<pb::EndChatResponse>, Status> {
        let contact_id = request.into_inner().contact_id;
        require("contact_id", &contact_id).map_err(status)?;
        let ended = self
            .store
            .end_chat(&contact_id, now_ms())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::EndChatResponse { ended }))
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
        let (outcome, claim_token) = match outcome {
            ClaimOutcome::Claimed { token } => (pb::ClaimOutcome::Claimed, token),
            ClaimOutcome::AlreadyCompleted => (pb::ClaimOutcome::AlreadyCompleted, String::new()),
            ClaimOutcome::InProgress => (pb::ClaimOutcome::InProgress, String::new()),
        };
        Ok(Response::new(pb::ClaimMessageResponse {
            outcome: outcome as i32,
            claim_token,
        }))
    }

    async fn complete_claim(
        &self,
        request: Request<pb::CompleteClaimRequest>,
    ) -> Result<Response<pb::CompleteClaimResponse>, Status> {
        let request = request.into_inner();
        let origin = origin_from(request.origin)?;
        require("message_id", &request.message_id).map_err(status)?;
        require("claim_token", &request.claim_token).map_err(status)?;
        self.store
            .complete_claim(origin, &request.message_id, &request.claim_token, now_ms())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CompleteClaimResponse {}))
    }

    async fn release_claim(
        &self,
        request: Request<pb::ReleaseClaimRequest>,
    ) -> Result<Response<pb::ReleaseClaimResponse>, Status> {
        let request = request.into_inner();
        let origin = origin_from(request.origin)?;
        require("message_id", &request.message_id).map_err(status)?;
        require("claim_token", &request.claim_token).map_err(status)?;
        self.store
            .release_claim(origin, &request.message_id, &request.claim_token)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ReleaseClaimResponse {}))
    }

    async fn append_pending(
        &self,
        request: Request<pb::AppendPendingRequest>,
    ) -> Result<Response<pb::PendingState>, Status> {
        let request = request.into_inner();
        let key = key_from(request.key)?;
        let message = request
            .message
            .ok_or_else(|| status(SessionError::InvalidArgument("message: is missing".into())))?;
        let message = PendingMessage {
            message_id: message.message_id,
            received_at_ms: message.received_at_ms,
            payload: message.payload.to_vec(),
        };
        message.validate().map_err(status)?;
        let state = self
            .store
            .append_pending(&key, message, self.config.pending_ttl, now_ms())
            .await
            .map_err(status)?;
        Ok(Response::new(pending_to(state)))
    }

    async fn peek_pending(
        &self,
        request: Request<pb::PeekPendingRequest>,
    ) -> Result<Response<pb::PendingState>, Status> {
        let key = key_from(request.into_inner().key)?;
        Ok(Response::new(pending_to(
            self.store.peek_pending(&key).await.map_err(status)?,
        )))
    }

    async fn take_pending(
        &self,
        request: Request<pb::TakePendingRequest>,
    ) -> Result<Response<pb::TakePendingResponse>, Status> {
        let request = request.into_inner();
        let key = key_from(request.key)?;
        let messages = self
            .store
            .take_pending(&key, request.expected_version)
            .await
            .map_err(|e| match e {
                SessionError::Conflict(m) => Status::failed_precondition(m),
                other => status(other),
            })?;
        Ok(Response::new(pb::TakePendingResponse {
            messages: messages
                .into_iter()
                .map(|m| pb::PendingMessage {
                    message_id: m.message_id,
                    received_at_ms: m.received_at_ms,
                    payload: m.payload.into(),
                })
                .collect(),
        }))
    }

    async fn list_due_pending(
        &self,
        request: Request<pb::ListDuePendingRequest>,
    ) -> Result<Response<pb::ListDuePendingResponse>, Status> {
        let request = request.into_inner();
        let limit = if request.limit == 0 {
            100
        } else {
            request.limit.min(1_000)
        } as usize;
        let due = self
            .store
            .list_due(
                Duration::from_millis(u64::from(request.quiet_for_ms)),
                limit,
                now_ms(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListDuePendingResponse {
            due: due.into_iter().map(pending_to).collect(),
        }))
    }
}
