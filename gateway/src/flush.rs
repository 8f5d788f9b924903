//! The flusher: on every replica, per direction, find pending buffers that
//! are due and deliver them. Replicas compete only through the session's
//! take lease — never through local state — so any number may run, and a
//! replica that dies mid-delivery leaves a lease that expires and a batch
//! that the next taker gets back whole (same id, same messages).
//!
//! Per batch: take (lease) → keep the lease alive while delivering → ack
//! on success; release with exponential backoff on a transient failure;
//! after the last attempt (or on a permanent failure) the batch's messages
//! go to the dead letters with the reason, then the batch is acked.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use parley_client::SessionApi;
use parley_proto::{
    common::{ConversationKey, ErrorReason},
    session::{
        AckPendingRequest, BatchLeaseRef, Direction, ExtendLeaseRequest, ListDuePendingRequest,
        ReleasePendingRequest, TakePendingRequest, TakePendingResponse, extend_lease_request,
    },
};
use tokio::{sync::Notify, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::{
    config::FlushConfig,
    dead_letter::{DeadLetter, DeadLetters},
    deliver::{Batch, Deliver, DeliveryError, describe},
    metrics::{InFlight, label, metrics},
    test_hooks,
};

/// Local nudges: an append that makes a buffer due at a known time wakes
/// this replica's flusher then, instead of waiting for the next poll.
#[derive(Clone, Default)]
pub struct Wakeups {
    notify: Arc<Notify>,
}

impl Wakeups {
    /// Wakes the flusher at `due_at_ms` (epoch ms; now if past).
    pub fn at(&self, due_at_ms: i64) {
        let delay = due_at_ms.saturating_sub(now_ms()).max(0) as u64;
        let notify = self.notify.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            notify.notify_one();
        });
    }

    async fn notified(&self) {
        self.notify.notified().await;
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Flushes one direction's buffers.
pub struct Flusher {
    session: Arc<dyn SessionApi>,
    deliver: Arc<dyn Deliver>,
    dead_letters: Arc<dyn DeadLetters>,
    config: FlushConfig,
    wakeups: Wakeups,
    /// Buffers this replica is flushing now (so a poll does not start a
    /// second flush of the same buffer here; other replicas are kept out
    /// by the lease).
    in_flight: Mutex<HashSet<String>>,
}

impl Flusher {
    /// A flusher delivering with `deliver`.
    pub fn new(
        session: Arc<dyn SessionApi>,
        deliver: Arc<dyn Deliver>,
        dead_letters: Arc<dyn DeadLetters>,
        config: FlushConfig,
        wakeups: Wakeups,
    ) -> Arc<Self> {
        Arc::new(Self {
            session,
            deliver,
            dead_letters,
            config,
            wakeups,
            in_flight: Mutex::new(HashSet::new()),
        })
    }

    /// Lists due buffers and flushes them until `shutdown`; then lets the
    /// deliveries under way finish for up to `drain`, and abandons the rest
    /// to their leases (another replica, or this one restarted, retakes
    /// them).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken, drain: Duration) {
        let mut running = JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.config.poll) => {}
                _ = self.wakeups.notified() => {}
            }
            while running.try_join_next().is_some() {}
            let due = self
                .session
                .list_due_pending(ListDuePendingRequest {
                    direction: self.deliver.direction() as i32,
                    limit: u32::try_from(self.config.concurrency * 2).unwrap_or(u32::MAX),
                })
                .await;
            let due = match due {
                Ok(due) => due.due,
                Err(error) => {
                    tracing::warn!(error = %describe(&error), "listing due buffers failed");
                    continue;
                }
            };
            for state in due {
                let Some(key) = state.key else { continue };
                if running.len() >= self.config.concurrency {
                    break;
                }
                let id = storage_id(&key);
                if !self
                    .in_flight
                    .lock()
                    .expect("not poisoned")
                    .insert(id.clone())
                {
                    continue;
                }
                let flusher = self.clone();
                running.spawn(async move {
                    flusher.flush(key).await;
                    flusher.in_flight.lock().expect("not poisoned").remove(&id);
                });
            }
        }
        let drained = tokio::time::timeout(drain, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = running.len(),
                "deliveries still running at shutdown; their leases will expire and another replica retakes them"
            );
            running.abort_all();
        }
    }

    /// Takes one buffer's batch and delivers it.
    pub async fn flush(&self, key: ConversationKey) {
        let direction = self.deliver.direction();
        let taken = self
            .session
            .take_pending(TakePendingRequest {
                key: Some(key.clone()),
                direction: direction as i32,
                lease_ms: millis(self.config.lease),
                max_messages: self.config.max_messages,
                expected_version: 0,
            })
            .await;
        let taken = match taken {
            Ok(taken) if taken.take_token.is_empty() => return,
            Ok(taken) => taken,
            Err(error)
                if matches!(
                    error.reason(),
                    ErrorReason::Busy | ErrorReason::LeaseLost | ErrorReason::VersionConflict
                ) =>
            {
                return; // another replica has it
            }
            Err(error) => {
                tracing::warn!(error = %describe(&error), "take failed");
                return;
            }
        };
        let attempts = taken.state.as_ref().map_or(1, |s| s.attempts);
        if attempts > 1 {
            metrics()
                .retries
                .add(1, &[label("direction", direction_name(direction))]);
        }
        let span = tracing::info_span!(
            "flush",
            direction = direction.as_str_name(),
            conversation = %parley_identity::fingerprint(&storage_id(&key)),
            batch = %taken.batch_id,
            messages = taken.messages.len(),
            attempts,
        );
        self.deliver_taken(key, taken, attempts)
            .instrument(span)
            .await;
    }

    async fn deliver_taken(&self, key: ConversationKey, taken: TakePendingResponse, attempts: u32) {
        let direction = self.deliver.direction();
        let batch = Batch {
            key: key.clone(),
            batch_id: taken.batch_id.clone(),
            messages: taken.messages,
            attempts,
            final_attempt: attempts >= self.config.max_attempts,
        };
        test_hooks::crash_point("flush:taken");
        let lease_lost = CancellationToken::new();
        let extender = tokio::spawn(keep_lease(
            self.session.clone(),
            BatchLeaseRef {
                key: Some(key.clone()),
                direction: direction as i32,
                take_token: taken.take_token.clone(),
            },
            self.config.lease,
            lease_lost.clone(),
        ));
        let started = std::time::Instant::now();
        let working = InFlight::start("batch");
        let delivered = tokio::select! {
            delivered = self.deliver.deliver(&batch) => Some(delivered),
            _ = lease_lost.cancelled() => None,
        };
        drop(working);
        extender.abort();
        let outcome = match &delivered {
            Some(Ok(())) => "delivered",
            Some(Err(error)) if error.is_retry() && !batch.final_attempt => "retry",
            Some(Err(_)) => "dead_letter",
            None => "lease_lost",
        };
        let labels = [
            label("direction", direction_name(direction)),
            label("outcome", outcome),
        ];
        metrics().deliveries.add(1, &labels);
        metrics()
            .delivery_duration
            .record(started.elapsed().as_secs_f64(), &labels);
        test_hooks::crash_point("flush:delivered");
        let Some(delivered) = delivered else {
            tracing::warn!(
                "the batch's lease was lost mid-delivery; its next holder delivers it (idempotently)"
            );
            return;
        };
        let token = taken.take_token;
        match delivered {
            Ok(()) => self.ack(&key, &token).await,
            Err(error) if error.is_retry() && !batch.final_attempt => {
                let after = self.backoff(attempts).max(match &error {
                    DeliveryError::Retry { after, .. } => after.unwrap_or_default(),
                    DeliveryError::Fatal { .. } => Duration::ZERO,
                });
                tracing::warn!(reason = %error.reason(), retry_in_ms = after.as_millis() as u64, "delivery failed; the batch is released for a retry");
                let released = self
                    .session
                    .release_pending(ReleasePendingRequest {
                        key: Some(key),
                        direction: direction as i32,
                        take_token: token,
                        retry_after_ms: millis(after),
                    })
                    .await;
                if let Err(error) = released {
                    tracing::warn!(error = %describe(&error), "release failed; the lease expiry releases it");
                }
            }
            Err(error) => {
                tracing::error!(reason = %error.reason(), "the batch cannot be delivered; it goes to the dead letters");
                if self.dead_letter(&batch, error.reason()).await {
                    self.ack(&key, &token).await;
                } else {
                    let _ = self
                        .session
                        .release_pending(ReleasePendingRequest {
                            key: Some(key),
                            direction: direction as i32,
                            take_token: token,
                            retry_after_ms: millis(self.config.max_backoff),
                        })
                        .await;
                }
            }
        }
    }

    /// Sends every message of the batch to the dead letters.
    async fn dead_letter(&self, batch: &Batch, reason: &str) -> bool {
        let source = match self.deliver.direction().as_str_name() {
            "DIRECTION_OUTBOUND" => "outbound-batch",
            _ => "inbound-batch",
        };
        for message in &batch.messages {
            let letter = DeadLetter {
                source: source.into(),
                reason: format!("{reason} (after {} attempts)", batch.attempts),
                body: String::from_utf8_lossy(&message.payload).into_owned(),
                attributes: BTreeMap::from([("message_id".to_owned(), message.message_id.clone())]),
            };
            if let Err(error) = self.dead_letters.send(letter).await {
                tracing::error!(%error, "dead letter not stored; the batch is kept");
                return false;
            }
            metrics().dead_letters.add(1, &[label("source", source)]);
        }
        true
    }

    async fn ack(&self, key: &ConversationKey, token: &str) {
        // An ack lost in transit is safe to repeat only while the lease is
        // ours; LEASE_LOST means someone retook it and redelivers it
        // (idempotently).
        for attempt in 0..3 {
            let acked = self
                .session
                .ack_pending(AckPendingRequest {
                    key: Some(key.clone()),
                    direction: self.deliver.direction() as i32,
                    take_token: token.to_owned(),
                })
                .await;
            match acked {
                Ok(_) => {
                    test_hooks::crash_point("flush:acked");
                    return;
                }
                Err(error) if error.is(ErrorReason::LeaseLost) => {
                    if attempt == 0 {
                        tracing::warn!(
                            "ack refused: the lease was lost; the batch will be redelivered idempotently"
                        );
                    }
                    return;
                }
                Err(error) => {
                    tracing::warn!(error = %describe(&error), "ack failed");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
    }

    /// Exponential backoff with full jitter over the second half.
    fn backoff(&self, attempts: u32) -> Duration {
        let exponent = attempts.saturating_sub(1).min(20);
        let ceiling = self
            .config
            .backoff
            .saturating_mul(1 << exponent)
            .min(self.config.max_backoff);
        ceiling / 2 + ceiling.mul_f64(fastrand::f64() / 2.0)
    }
}

/// Extends a batch lease every third of its length until aborted; signals
/// `lost` when the lease is no longer ours.
async fn keep_lease(
    session: Arc<dyn SessionApi>,
    lease: BatchLeaseRef,
    length: Duration,
    lost: CancellationToken,
) {
    loop {
        tokio::time::sleep(length / 3).await;
        let extended = session
            .extend_lease(ExtendLeaseRequest {
                lease: Some(extend_lease_request::Lease::Batch(lease.clone())),
                extend_by_ms: millis(length),
            })
            .await;
        match extended {
            Ok(_) => {}
            Err(error) if error.is(ErrorReason::LeaseLost) => {
                lost.cancel();
                return;
            }
            Err(error) => tracing::warn!(error = %describe(&error), "lease extension failed"),
        }
    }
}

fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Outbound => "outbound",
        _ => "inbound",
    }
}

fn storage_id(key: &ConversationKey) -> String {
    format!("{}#{}", key.business_number_id, key.customer_id)
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}
