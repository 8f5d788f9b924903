//! The storage contract every backend implements with the same semantics
//! (the behavioural suite in `tests/` runs against each). Times are passed
//! in, so expiry is testable without waiting.

use std::time::Duration;

use async_trait::async_trait;

use crate::{
    error::Result,
    model::{
        ActiveChat, ClaimOutcome, ConversationKey, LeaseAttempt, MessageOrigin, Millis,
        PendingMessage, PendingState,
    },
};

/// Conversation state storage.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// The unexpired chat of a conversation.
    async fn chat_by_key(&self, key: &ConversationKey, now: Millis) -> Result<Option<ActiveChat>>;

    /// The unexpired chat whose current or initial contact id is `contact_id`.
    async fn chat_by_contact(&self, contact_id: &str, now: Millis) -> Result<Option<ActiveChat>>;

    /// Takes the creation lease for `key` unless a chat exists or another
    /// caller holds a live lease. Exactly one of any number of concurrent
    /// callers is granted it.
    async fn try_lease(
        &self,
        key: &ConversationKey,
        ttl: Duration,
        now: Millis,
    ) -> Result<LeaseAttempt>;

    /// Stores the chat created under `lease_id` and drops the lease. Fails
    /// with `Precondition` when a chat for the key already exists.
    async fn complete_creation(
        &self,
        lease_id: &str,
        chat: ActiveChat,
        now: Millis,
    ) -> Result<ActiveChat>;

    /// Drops a lease without storing a chat. Idempotent.
    async fn abandon_creation(&self, key: &ConversationKey, lease_id: &str) -> Result<()>;

    /// Replaces a chat whose stored version equals `chat.version`; returns
    /// it with the version bumped. `Conflict` on a version mismatch,
    /// `NotFound` when it is gone.
    async fn update_chat(&self, chat: ActiveChat, now: Millis) -> Result<ActiveChat>;

    /// Removes the chat whose current or initial contact id is `contact_id`;
    /// `false` when there was none.
    async fn end_chat(&self, contact_id: &str, now: Millis) -> Result<bool>;

    /// Claims a message id once. A claim not completed within
    /// `in_progress_timeout` counts as crashed and may be claimed again;
    /// every claim is forgotten after `ttl`.
    async fn claim(
        &self,
        origin: MessageOrigin,
        message_id: &str,
        ttl: Duration,
        in_progress_timeout: Duration,
        now: Millis,
    ) -> Result<ClaimOutcome>;

    /// Marks a claim completed. `Precondition` when `token` does not own it.
    async fn complete_claim(
        &self,
        origin: MessageOrigin,
        message_id: &str,
        token: &str,
        now: Millis,
    ) -> Result<()>;

    /// Drops a claim so a retry can take it. Idempotent for its owner.
    async fn release_claim(
        &self,
        origin: MessageOrigin,
        message_id: &str,
        token: &str,
    ) -> Result<()>;

    /// Appends a message to a conversation's buffer (ignored if its id is
    /// already there) and returns the buffer's state.
    async fn append_pending(
        &self,
        key: &ConversationKey,
        message: PendingMessage,
        ttl: Duration,
        now: Millis,
    ) -> Result<PendingState>;

    /// A buffer's state.
    async fn peek_pending(&self, key: &ConversationKey) -> Result<PendingState>;

    /// Takes the whole buffer if its version is `expected_version`, in
    /// arrival order. `Conflict` when a message arrived meanwhile.
    async fn take_pending(
        &self,
        key: &ConversationKey,
        expected_version: u64,
    ) -> Result<Vec<PendingMessage>>;

    /// Buffers whose last append is at least `quiet_for` old, oldest first.
    async fn list_due(
        &self,
        quiet_for: Duration,
        limit: usize,
        now: Millis,
    ) -> Result<Vec<PendingState>>;
}

/// Milliseconds in a duration, saturating.
pub fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// A fresh random id for leases and claim tokens.
pub fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
