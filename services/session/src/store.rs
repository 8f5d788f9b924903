//! The storage contract every backend implements with the same semantics
//! (the behavioural suite in `tests/` runs against each). Times are passed
//! in, so expiry is testable without waiting.

use std::time::Duration;

use async_trait::async_trait;

use crate::{
    error::Result,
    model::{
        ActiveChat, AppendClaim, AppendOptions, ChatLookup, ClaimOutcome, ClaimRef,
        ConversationKey, Direction, EndOutcome, LeaseAttempt, MessageLink, MessageOrigin, Millis,
        PendingMessage, PendingState, TakenBatch,
    },
};

/// Conversation state storage.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    // ---- chats ----

    /// The unexpired active chat of a conversation.
    async fn chat_by_key(&self, key: &ConversationKey, now: Millis) -> Result<Option<ActiveChat>>;

    /// The chat whose current or initial contact id is `contact_id`: active,
    /// recently ended (a tombstone within its grace period), or unknown.
    async fn chat_by_contact(&self, contact_id: &str, now: Millis) -> Result<ChatLookup>;

    /// Takes the creation lease for `key` unless a chat exists or another
    /// caller holds a live lease. Exactly one of any number of concurrent
    /// callers is granted it. The lease's client token is created with the
    /// first lease and kept by takeovers until a chat is stored.
    async fn try_lease(
        &self,
        key: &ConversationKey,
        ttl: Duration,
        now: Millis,
    ) -> Result<LeaseAttempt>;

    /// Stores the chat created under `lease_id` and drops the lease.
    /// `LeaseLost` when a chat for the key already exists or the lease was
    /// taken over.
    async fn complete_creation(
        &self,
        lease_id: &str,
        chat: ActiveChat,
        now: Millis,
    ) -> Result<ActiveChat>;

    /// Expires a lease without storing a chat, keeping its client token for
    /// the next holder unless `forget_token` (then the lease is deleted and
    /// the next holder gets a fresh token). Idempotent.
    async fn abandon_creation(
        &self,
        key: &ConversationKey,
        lease_id: &str,
        forget_token: bool,
    ) -> Result<()>;

    /// Extends a creation lease to at least `now + extend_by`; returns the
    /// new expiry. `LeaseLost` when it is no longer the caller's.
    async fn extend_creation(
        &self,
        key: &ConversationKey,
        lease_id: &str,
        extend_by: Duration,
        now: Millis,
    ) -> Result<Millis>;

    /// Replaces the caller-owned fields of a chat whose stored version
    /// equals `chat.version` (customer activity is kept); returns it with
    /// the version bumped. `Conflict` on a version mismatch, `NotFound`
    /// when it is gone.
    async fn update_chat(&self, chat: ActiveChat, now: Millis) -> Result<ActiveChat>;

    /// Records the customer's latest message on the active chat if it is
    /// newer than the one recorded. `NotFound` when there is no chat.
    async fn record_customer_activity(
        &self,
        key: &ConversationKey,
        message_id: &str,
        at_ms: Millis,
        now: Millis,
    ) -> Result<ActiveChat>;

    /// Ends the active chat of `key` if its current or initial contact id
    /// is `contact_id` (and its version is `expected_version`, unless 0),
    /// leaving a tombstone found by contact id until `now + grace`.
    /// `Conflict` on a version mismatch; `ended == false` when it had ended
    /// already (the tombstone is returned) or is unknown.
    async fn end_chat(
        &self,
        key: &ConversationKey,
        contact_id: &str,
        expected_version: u64,
        grace: Duration,
        now: Millis,
    ) -> Result<EndOutcome>;

    // ---- claims ----

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

    /// Marks a claim completed with `result`. `LeaseLost` when the token
    /// does not own it.
    async fn complete_claim(&self, claim: &ClaimRef, result: &str, now: Millis) -> Result<()>;

    /// Drops an uncompleted claim so a retry can take it. Idempotent.
    async fn release_claim(&self, claim: &ClaimRef) -> Result<()>;

    /// Keeps an uncompleted claim from counting as crashed until
    /// `now + extend_by`. `LeaseLost` when it is no longer the caller's.
    async fn extend_claim(&self, claim: &ClaimRef, extend_by: Duration, now: Millis) -> Result<()>;

    // ---- message links ----

    /// Stores links (both ways), kept for `ttl`. Linking more WhatsApp ids
    /// to a Connect id adds to its list.
    async fn link_messages(
        &self,
        links: Vec<MessageLink>,
        ttl: Duration,
        now: Millis,
    ) -> Result<()>;

    /// The unexpired link of a WhatsApp or Connect message id.
    async fn message_link(
        &self,
        origin: MessageOrigin,
        message_id: &str,
        now: Millis,
    ) -> Result<Option<MessageLink>>;

    // ---- pending buffers ----

    /// Appends a message (ignored if its id is already waiting), doing
    /// what `claim` says with its claim in the same transaction.
    /// `LimitExceeded` past the size cap; `LeaseLost` when a claim to
    /// complete is no longer the caller's; `Duplicate` or `Busy` for an
    /// append-once of a message claimed before (nothing is appended then).
    #[allow(clippy::too_many_arguments)]
    async fn append_pending(
        &self,
        key: &ConversationKey,
        direction: Direction,
        message: PendingMessage,
        options: AppendOptions,
        claim: AppendClaim,
        ttl: Duration,
        now: Millis,
    ) -> Result<PendingState>;

    /// A buffer's state.
    async fn peek_pending(
        &self,
        key: &ConversationKey,
        direction: Direction,
        now: Millis,
    ) -> Result<PendingState>;

    /// Leases out a batch (see [`crate::pending::PendingBuffer::take`]).
    async fn take_pending(
        &self,
        key: &ConversationKey,
        direction: Direction,
        lease: Duration,
        max_messages: usize,
        expected_version: u64,
        now: Millis,
    ) -> Result<TakenBatch>;

    /// Removes a leased batch for good.
    async fn ack_pending(
        &self,
        key: &ConversationKey,
        direction: Direction,
        take_token: &str,
        now: Millis,
    ) -> Result<PendingState>;

    /// Gives a leased batch back, due again after `retry_after`.
    async fn release_pending(
        &self,
        key: &ConversationKey,
        direction: Direction,
        take_token: &str,
        retry_after: Duration,
        now: Millis,
    ) -> Result<PendingState>;

    /// Extends a batch's lease to at least `now + extend_by`.
    async fn extend_batch(
        &self,
        key: &ConversationKey,
        direction: Direction,
        take_token: &str,
        extend_by: Duration,
        now: Millis,
    ) -> Result<Millis>;

    /// Buffers of `direction` that are due and not leased, soonest first.
    async fn list_due(
        &self,
        direction: Direction,
        limit: usize,
        now: Millis,
    ) -> Result<Vec<PendingState>>;
}

/// Milliseconds in a duration, saturating.
pub fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// A fresh random id for leases and tokens.
pub fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The excerpt a link keeps of a text: its first characters.
pub fn excerpt(text: &str) -> String {
    text.chars().take(crate::model::MAX_EXCERPT_CHARS).collect()
}
