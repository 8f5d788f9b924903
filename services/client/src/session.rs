//! The session service (`parley.session.v1.Session`).

use std::sync::Arc;

use parley_proto::session::{self as pb, session_client::SessionClient};
use parley_runtime::client::TracedChannel;

use crate::{CallFuture, CallPolicy, always, never, unary};

/// Conversation state: chats, claims, links, pending buffers.
pub trait SessionApi: Send + Sync + 'static {
    /// The active chat, or a creation lease (see the proto).
    fn ensure_chat(&self, request: pb::EnsureChatRequest)
    -> CallFuture<'_, pb::EnsureChatResponse>;
    /// Stores a chat created under a lease.
    fn complete_chat_creation(
        &self,
        request: pb::CompleteChatCreationRequest,
    ) -> CallFuture<'_, pb::ActiveChatResponse>;
    /// Gives a creation lease up.
    fn abandon_chat_creation(
        &self,
        request: pb::AbandonChatCreationRequest,
    ) -> CallFuture<'_, pb::AbandonChatCreationResponse>;
    /// The active chat of a conversation (NOT_FOUND when none).
    fn get_chat_by_conversation(
        &self,
        request: pb::GetChatByConversationRequest,
    ) -> CallFuture<'_, pb::ActiveChatResponse>;
    /// The chat of a contact id: active, ended or unknown.
    fn get_chat_by_contact(
        &self,
        request: pb::GetChatByContactRequest,
    ) -> CallFuture<'_, pb::GetChatByContactResponse>;
    /// A version-checked chat update.
    fn update_chat(&self, request: pb::UpdateChatRequest)
    -> CallFuture<'_, pb::ActiveChatResponse>;
    /// Records the customer's latest message.
    fn record_customer_activity(
        &self,
        request: pb::RecordCustomerActivityRequest,
    ) -> CallFuture<'_, pb::ActiveChatResponse>;
    /// Ends a chat, leaving a tombstone.
    fn end_chat(&self, request: pb::EndChatRequest) -> CallFuture<'_, pb::EndChatResponse>;
    /// Claims a message id.
    fn claim_message(
        &self,
        request: pb::ClaimMessageRequest,
    ) -> CallFuture<'_, pb::ClaimMessageResponse>;
    /// Completes a claim.
    fn complete_claim(
        &self,
        request: pb::CompleteClaimRequest,
    ) -> CallFuture<'_, pb::CompleteClaimResponse>;
    /// Releases a claim.
    fn release_claim(
        &self,
        request: pb::ReleaseClaimRequest,
    ) -> CallFuture<'_, pb::ReleaseClaimResponse>;
    /// Extends a claim.
    fn extend_claim(
        &self,
        request: pb::ExtendClaimRequest,
    ) -> CallFuture<'_, pb::ExtendClaimResponse>;
    /// Links message ids.
    fn link_messages(
        &self,
        request: pb::LinkMessagesRequest,
    ) -> CallFuture<'_, pb::LinkMessagesResponse>;
    /// Follows a message link.
    fn get_message_link(
        &self,
        request: pb::GetMessageLinkRequest,
    ) -> CallFuture<'_, pb::MessageLink>;
    /// Appends to a pending buffer.
    fn append_pending(&self, request: pb::AppendPendingRequest)
    -> CallFuture<'_, pb::PendingState>;
    /// Reads a pending buffer's state.
    fn peek_pending(&self, request: pb::PeekPendingRequest) -> CallFuture<'_, pb::PendingState>;
    /// Leases a batch out of a pending buffer.
    fn take_pending(
        &self,
        request: pb::TakePendingRequest,
    ) -> CallFuture<'_, pb::TakePendingResponse>;
    /// Removes a leased batch.
    fn ack_pending(&self, request: pb::AckPendingRequest) -> CallFuture<'_, pb::PendingState>;
    /// Gives a leased batch back.
    fn release_pending(
        &self,
        request: pb::ReleasePendingRequest,
    ) -> CallFuture<'_, pb::PendingState>;
    /// Buffers due for a flush.
    fn list_due_pending(
        &self,
        request: pb::ListDuePendingRequest,
    ) -> CallFuture<'_, pb::ListDuePendingResponse>;
    /// Extends a creation lease or a batch lease.
    fn extend_lease(
        &self,
        request: pb::ExtendLeaseRequest,
    ) -> CallFuture<'_, pb::ExtendLeaseResponse>;
}

/// [`SessionApi`] over gRPC.
#[derive(Clone)]
pub struct GrpcSession {
    client: SessionClient<TracedChannel>,
    policy: Arc<CallPolicy>,
}

impl GrpcSession {
    /// A client on `channel`.
    pub fn new(channel: TracedChannel, policy: CallPolicy) -> Self {
        Self {
            client: SessionClient::new(channel),
            policy: Arc::new(policy),
        }
    }
}

// Which calls may be retried: reads and calls whose repeat is a no-op. A
// claim, a take, an ack or a release repeated after a lost response would
// find the caller's own first attempt (IN_PROGRESS, BUSY, LEASE_LOST), so
// those are tried once and the caller decides.
impl SessionApi for GrpcSession {
    unary!(
        "session",
        ensure_chat,
        pb::EnsureChatRequest,
        pb::EnsureChatResponse,
        always
    );
    unary!(
        "session",
        complete_chat_creation,
        pb::CompleteChatCreationRequest,
        pb::ActiveChatResponse,
        never
    );
    unary!(
        "session",
        abandon_chat_creation,
        pb::AbandonChatCreationRequest,
        pb::AbandonChatCreationResponse,
        always
    );
    unary!(
        "session",
        get_chat_by_conversation,
        pb::GetChatByConversationRequest,
        pb::ActiveChatResponse,
        always
    );
    unary!(
        "session",
        get_chat_by_contact,
        pb::GetChatByContactRequest,
        pb::GetChatByContactResponse,
        always
    );
    unary!(
        "session",
        update_chat,
        pb::UpdateChatRequest,
        pb::ActiveChatResponse,
        never
    );
    unary!(
        "session",
        record_customer_activity,
        pb::RecordCustomerActivityRequest,
        pb::ActiveChatResponse,
        always
    );
    unary!(
        "session",
        end_chat,
        pb::EndChatRequest,
        pb::EndChatResponse,
        always
    );
    unary!(
        "session",
        claim_message,
        pb::ClaimMessageRequest,
        pb::ClaimMessageResponse,
        never
    );
    unary!(
        "session",
        complete_claim,
        pb::CompleteClaimRequest,
        pb::CompleteClaimResponse,
        always
    );
    unary!(
        "session",
        release_claim,
        pb::ReleaseClaimRequest,
        pb::ReleaseClaimResponse,
        always
    );
    unary!(
        "session",
        extend_claim,
        pb::ExtendClaimRequest,
        pb::ExtendClaimResponse,
        always
    );
    unary!(
        "session",
        link_messages,
        pb::LinkMessagesRequest,
        pb::LinkMessagesResponse,
        always
    );
    unary!(
        "session",
        get_message_link,
        pb::GetMessageLinkRequest,
        pb::MessageLink,
        always
    );
    unary!(
        "session",
        append_pending,
        pb::AppendPendingRequest,
        pb::PendingState,
        always
    );
    unary!(
        "session",
        peek_pending,
        pb::PeekPendingRequest,
        pb::PendingState,
        always
    );
    unary!(
        "session",
        take_pending,
        pb::TakePendingRequest,
        pb::TakePendingResponse,
        never
    );
    unary!(
        "session",
        ack_pending,
        pb::AckPendingRequest,
        pb::PendingState,
        never
    );
    unary!(
        "session",
        release_pending,
        pb::ReleasePendingRequest,
        pb::PendingState,
        never
    );
    unary!(
        "session",
        list_due_pending,
        pb::ListDuePendingRequest,
        pb::ListDuePendingResponse,
        always
    );
    unary!(
        "session",
        extend_lease,
        pb::ExtendLeaseRequest,
        pb::ExtendLeaseResponse,
        always
    );
}
