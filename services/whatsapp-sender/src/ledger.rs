//! The ledger that makes WhatsApp sends effectively-once. The Social
//! Messaging API has no idempotency token, so each part of a send is
//! claimed under `<idempotency key>#<part>` before it is sent and completed
//! with its WhatsApp message id after: a retry (or another replica) finds
//! the parts already sent and resumes at the first one that is not.
//!
//! The one window left is a crash between WhatsApp accepting a part and
//! the ledger recording it: that part's claim stays open until its
//! in-progress timeout and is then sent again. No API offers better; the
//! window is one call wide.

use std::{collections::HashMap, sync::Arc, sync::Mutex, time::Duration};

use futures::future::BoxFuture;
use parley_client::SessionApi;
use parley_proto::session as pb;

use crate::error::{ErrorKind, Result, SenderError};

/// What claiming a part found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartClaim {
    /// Sent before; this is its WhatsApp message id.
    Sent(String),
    /// The caller may send it; complete or release with this token.
    Claimed(String),
    /// Someone is sending it right now (or crashed doing so).
    InProgress(Duration),
}

/// Where parts of idempotent sends are recorded.
pub trait SendLedger: Send + Sync + 'static {
    /// Claims part `key`.
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<PartClaim>>;
    /// Records part `key` as sent as `message_id`.
    fn complete<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<()>>;
    /// Gives part `key` up after a failed send, so a retry sends it.
    fn release<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, Result<()>>;
}

/// The ledger in the session service (shared by every sender replica).
pub struct SessionLedger {
    session: Arc<dyn SessionApi>,
    in_progress_timeout: Duration,
}

impl SessionLedger {
    /// A ledger in `session`; a part whose sender vanished is sent again
    /// after `in_progress_timeout`.
    pub fn new(session: Arc<dyn SessionApi>, in_progress_timeout: Duration) -> Self {
        Self {
            session,
            in_progress_timeout,
        }
    }
}

fn ledger_error(error: parley_client::ClientError) -> SenderError {
    let kind = if error.is_retryable() {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Internal
    };
    SenderError::new(kind, format!("send ledger: {error}"))
}

impl SendLedger for SessionLedger {
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<PartClaim>> {
        Box::pin(async move {
            let claimed = self
                .session
                .claim_message(pb::ClaimMessageRequest {
                    origin: pb::MessageOrigin::WhatsappSend as i32,
                    message_id: key.to_owned(),
                    ttl_s: 0,
                    in_progress_timeout_s: self.in_progress_timeout.as_secs().max(1) as u32,
                })
                .await
                .map_err(ledger_error)?;
            Ok(match claimed.outcome() {
                pb::ClaimOutcome::Claimed => PartClaim::Claimed(claimed.claim_token),
                pb::ClaimOutcome::AlreadyCompleted => PartClaim::Sent(claimed.result),
                _ => PartClaim::InProgress(Duration::from_millis(u64::from(
                    claimed.retry_after_ms.max(1),
                ))),
            })
        })
    }

    fn complete<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.session
                .complete_claim(pb::CompleteClaimRequest {
                    origin: pb::MessageOrigin::WhatsappSend as i32,
                    message_id: key.to_owned(),
                    claim_token: token.to_owned(),
                    result: message_id.to_owned(),
                })
                .await
                .map(|_| ())
                .map_err(ledger_error)
        })
    }

    fn release<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.session
                .release_claim(pb::ReleaseClaimRequest {
                    origin: pb::MessageOrigin::WhatsappSend as i32,
                    message_id: key.to_owned(),
                    claim_token: token.to_owned(),
                })
                .await
                .map(|_| ())
                .map_err(ledger_error)
        })
    }
}

/// A ledger in this process's memory: idempotent across retries to this
/// replica only (for a sender run without a session service, and tests).
#[derive(Default)]
pub struct MemoryLedger {
    parts: Mutex<HashMap<String, Part>>,
}

enum Part {
    Sending(String),
    Sent(String),
}

impl SendLedger for MemoryLedger {
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<PartClaim>> {
        Box::pin(async move {
            let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
            Ok(match parts.get(key) {
                Some(Part::Sent(id)) => PartClaim::Sent(id.clone()),
                Some(Part::Sending(_)) => PartClaim::InProgress(Duration::from_secs(1)),
                None => {
                    let token = uuid::Uuid::new_v4().to_string();
                    parts.insert(key.to_owned(), Part::Sending(token.clone()));
                    PartClaim::Claimed(token)
                }
            })
        })
    }

    fn complete<'a>(
        &'a self,
        key: &'a str,
        _token: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.parts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.to_owned(), Part::Sent(message_id.to_owned()));
            Ok(())
        })
    }

    fn release<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
            if matches!(parts.get(key), Some(Part::Sending(t)) if t == token) {
                parts.remove(key);
            }
            Ok(())
        })
    }
}
