//! The pending buffer as a pure state machine: append, take (a lease),
//! ack, release and extend, with due times and the size cap. Both backends
//! load a buffer, apply one of these operations and store the result with a
//! version check, so the rules live here once and are unit-tested without a
//! store.
//!
//! A taken batch is not removed: its messages stay at the head of the
//! buffer, hidden behind the lease, until an ack removes exactly them. A
//! release or an expired lease therefore puts nothing back — the messages
//! never left — and order holds across any crash.

use std::time::Duration;

use crate::{
    error::{Result, SessionError},
    model::{
        AppendOptions, ConversationKey, Direction, Millis, PendingMessage, PendingState, TakenBatch,
    },
    store::{millis, new_token},
};

/// Bytes a buffer may hold: its payloads plus a per-message allowance for
/// ids and attribute names, kept under DynamoDB's 400 KB item limit with
/// room for the item's other attributes.
pub const MAX_BUFFER_BYTES: u64 = 350_000;
/// Bytes counted per message on top of its payload and id.
const PER_MESSAGE_OVERHEAD: u64 = 64;
/// How long a buffer with messages lives untouched before the store drops
/// it (a gateway fleet down for a week).
pub const BUFFER_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long an emptied buffer's record (and so its version) is kept.
pub const EMPTY_BUFFER_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// A message in a buffer with its position.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoredMessage {
    /// Position in the buffer; strictly increasing, never reused.
    pub seq: u64,
    /// The message.
    pub message: PendingMessage,
}

impl StoredMessage {
    /// What this message counts against [`MAX_BUFFER_BYTES`].
    pub fn weight(&self) -> u64 {
        self.message.payload.len() as u64
            + self.message.message_id.len() as u64
            + PER_MESSAGE_OVERHEAD
    }
}

/// The batch currently leased out of a buffer — or given back and not yet
/// acked (then `take_token` is empty): it is handed out again as the same
/// batch.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Lease {
    /// Proves the lease.
    pub take_token: String,
    /// Names the batch (for logs and traces).
    pub batch_id: String,
    /// The last message in the batch; an ack removes up to it.
    pub last_seq: u64,
    /// When the batch is put back.
    pub until_ms: Millis,
}

/// One direction's buffer of one conversation, as stored.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PendingBuffer {
    /// The conversation.
    pub key: ConversationKey,
    /// Which way its messages go.
    pub direction: Direction,
    /// Bumped by every change; never reset.
    pub version: u64,
    /// The next message's position.
    pub next_seq: u64,
    /// Waiting messages, in order.
    pub messages: Vec<StoredMessage>,
    /// The debounce of the latest append.
    pub flush_delay_ms: u64,
    /// The maximum wait of the latest append (0: none).
    pub max_wait_ms: u64,
    /// The batch out, if any (expired leases are cleared lazily).
    pub lease: Option<Lease>,
    /// Takes since the last ack.
    pub attempts: u32,
    /// When `due_at_ms` was last pushed back by a release (0: never), so a
    /// backoff survives later appends.
    pub not_before_ms: Millis,
}

impl PendingBuffer {
    /// A buffer that never held anything.
    pub fn empty(key: ConversationKey, direction: Direction) -> Self {
        Self {
            key,
            direction,
            version: 0,
            next_seq: 1,
            messages: Vec::new(),
            flush_delay_ms: 0,
            max_wait_ms: 0,
            lease: None,
            attempts: 0,
            not_before_ms: 0,
        }
    }

    /// Payload weight waiting.
    pub fn total_bytes(&self) -> u64 {
        self.messages.iter().map(StoredMessage::weight).sum()
    }

    /// The live lease, if any.
    pub fn live_lease(&self, now: Millis) -> Option<&Lease> {
        self.lease.as_ref().filter(|l| l.until_ms > now)
    }

    /// When the buffer should be flushed: `flush_delay` after the latest
    /// append, capped at `max_wait` after the oldest waiting one; while a
    /// batch is out, when its lease expires (so the buffer is listed again
    /// only if its holder vanished). 0 when empty.
    pub fn due_at(&self, now: Millis) -> Millis {
        let (Some(first), Some(last)) = (self.messages.first(), self.messages.last()) else {
            return 0;
        };
        if let Some(lease) = self.live_lease(now) {
            return lease.until_ms;
        }
        let by_quiet = last.message.appended_at_ms + self.flush_delay_ms as Millis;
        let due = if self.max_wait_ms == 0 {
            by_quiet
        } else {
            by_quiet.min(first.message.appended_at_ms + self.max_wait_ms as Millis)
        };
        due.max(self.not_before_ms)
    }

    /// The externally visible state.
    pub fn state(&self, now: Millis) -> PendingState {
        PendingState {
            key: self.key.clone(),
            direction: self.direction,
            version: self.version,
            message_count: self.messages.len() as u32,
            total_bytes: self.total_bytes(),
            first_append_at_ms: self
                .messages
                .first()
                .map_or(0, |m| m.message.appended_at_ms),
            last_append_at_ms: self.messages.last().map_or(0, |m| m.message.appended_at_ms),
            due_at_ms: self.due_at(now),
            leased_until_ms: self.live_lease(now).map_or(0, |l| l.until_ms),
            attempts: self.attempts,
        }
    }

    /// Whether a message with this id is waiting.
    pub fn contains(&self, message_id: &str) -> bool {
        self.messages
            .iter()
            .any(|m| m.message.message_id == message_id)
    }

    /// Appends `message` (stamped with `now`). Returns `false` when its id
    /// is already waiting (nothing changes). `LimitExceeded` when it would
    /// push the buffer past [`MAX_BUFFER_BYTES`].
    pub fn append(
        &mut self,
        mut message: PendingMessage,
        options: AppendOptions,
        now: Millis,
    ) -> Result<bool> {
        if self.contains(&message.message_id) {
            return Ok(false);
        }
        message.appended_at_ms = now;
        let stored = StoredMessage {
            seq: self.next_seq,
            message,
        };
        let total = self.total_bytes() + stored.weight();
        if total > MAX_BUFFER_BYTES {
            return Err(SessionError::LimitExceeded(format!(
                "the buffer would hold {total} bytes, more than {MAX_BUFFER_BYTES}: flush it, then append again"
            )));
        }
        self.next_seq += 1;
        self.messages.push(stored);
        self.flush_delay_ms = millis(options.flush_delay) as u64;
        self.max_wait_ms = millis(options.max_wait) as u64;
        self.version += 1;
        Ok(true)
    }

    /// Leases out up to `max_messages` (0: all) waiting messages. `Busy`
    /// while another batch is out; an empty batch (no token) when nothing
    /// waits. A batch given back (released, or its lease expired) is handed
    /// out again as the same batch — same id, same messages, nothing
    /// appended since — so a caller deriving idempotency keys from it
    /// repeats exactly the parts it may already have sent.
    pub fn take(
        &mut self,
        lease_for: Duration,
        max_messages: usize,
        expected_version: u64,
        now: Millis,
    ) -> Result<TakenBatch> {
        if expected_version != 0 && expected_version != self.version {
            return Err(SessionError::Conflict(format!(
                "buffer is at version {}, take was for {expected_version}",
                self.version
            )));
        }
        if let Some(lease) = self.live_lease(now) {
            return Err(SessionError::Busy {
                message: "a batch of this buffer is out; it is flushed by its holder".into(),
                retry_after: Duration::from_millis((lease.until_ms - now).max(1) as u64),
            });
        }
        if self.messages.is_empty() {
            self.lease = None;
            return Ok(TakenBatch {
                batch_id: String::new(),
                take_token: String::new(),
                lease_expires_at_ms: 0,
                messages: Vec::new(),
                state: self.state(now),
            });
        }
        let earlier = self.lease.as_ref().map(|l| {
            let count = self
                .messages
                .iter()
                .take_while(|m| m.seq <= l.last_seq)
                .count();
            (l.batch_id.clone(), count)
        });
        let (batch_id, count) = match earlier {
            Some((batch_id, count)) if count > 0 => (batch_id, count),
            _ => {
                let count = match max_messages {
                    0 => self.messages.len(),
                    n => n.min(self.messages.len()),
                };
                (new_token(), count)
            }
        };
        let batch = &self.messages[..count];
        let lease = Lease {
            take_token: new_token(),
            batch_id,
            last_seq: batch[count - 1].seq,
            until_ms: now + millis(lease_for),
        };
        let messages = batch.iter().map(|m| m.message.clone()).collect();
        self.lease = Some(lease.clone());
        self.attempts += 1;
        self.version += 1;
        Ok(TakenBatch {
            batch_id: lease.batch_id,
            take_token: lease.take_token,
            lease_expires_at_ms: lease.until_ms,
            messages,
            state: self.state(now),
        })
    }

    /// The lease `token` names, even if it has expired, as long as nobody
    /// took the buffer since. `LeaseLost` otherwise.
    fn own_lease(&self, token: &str) -> Result<&Lease> {
        self.lease
            .as_ref()
            .filter(|l| !token.is_empty() && l.take_token == token)
            .ok_or_else(|| {
                SessionError::LeaseLost(
                    "this batch is no longer yours: its lease expired and it was taken again"
                        .into(),
                )
            })
    }

    /// Removes the leased batch's messages for good. An expired lease may
    /// still be acked as long as nobody took the buffer since: the
    /// messages were delivered, and acking prevents a second delivery.
    pub fn ack(&mut self, token: &str) -> Result<()> {
        let last_seq = self.own_lease(token)?.last_seq;
        self.messages.retain(|m| m.seq > last_seq);
        self.lease = None;
        self.attempts = 0;
        self.not_before_ms = 0;
        self.version += 1;
        Ok(())
    }

    /// Gives the leased batch back, due again `retry_after` from now; the
    /// next take hands out the same batch.
    pub fn release(&mut self, token: &str, retry_after: Duration, now: Millis) -> Result<()> {
        self.own_lease(token)?;
        if let Some(lease) = self.lease.as_mut() {
            lease.take_token.clear();
            lease.until_ms = 0;
        }
        self.not_before_ms = now + millis(retry_after);
        self.version += 1;
        Ok(())
    }

    /// Keeps the leased batch out until `extend_by` from now.
    pub fn extend(&mut self, token: &str, extend_by: Duration, now: Millis) -> Result<Millis> {
        let until = now + millis(extend_by);
        self.own_lease(token)?;
        if let Some(lease) = self.lease.as_mut() {
            lease.until_ms = lease.until_ms.max(until);
        }
        self.version += 1;
        Ok(until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_800_000_000_000;

    fn buffer() -> PendingBuffer {
        PendingBuffer::empty(
            ConversationKey::parse("phone-number-id-abc", "14155550100").unwrap(),
            Direction::Inbound,
        )
    }

    fn message(id: &str, bytes: usize) -> PendingMessage {
        PendingMessage {
            message_id: id.into(),
            received_at_ms: T0,
            payload: vec![7; bytes],
            appended_at_ms: 0,
        }
    }

    fn options(delay_ms: u64, max_wait_ms: u64) -> AppendOptions {
        AppendOptions {
            flush_delay: Duration::from_millis(delay_ms),
            max_wait: Duration::from_millis(max_wait_ms),
        }
    }

    fn ids(messages: &[PendingMessage]) -> Vec<&str> {
        messages.iter().map(|m| m.message_id.as_str()).collect()
    }

    #[test]
    fn due_is_the_debounce_after_the_last_append_capped_by_the_max_wait() {
        let mut b = buffer();
        assert_eq!(b.due_at(T0), 0);
        b.append(message("a", 10), options(2_000, 5_000), T0)
            .unwrap();
        assert_eq!(b.due_at(T0), T0 + 2_000);
        b.append(message("b", 10), options(2_000, 5_000), T0 + 1_500)
            .unwrap();
        assert_eq!(b.due_at(T0), T0 + 3_500);
        b.append(message("c", 10), options(2_000, 5_000), T0 + 4_000)
            .unwrap();
        // 6,000 by the debounce, but never later than 5,000 after the first.
        assert_eq!(b.due_at(T0), T0 + 5_000);
        // Buffering off: due at once.
        let mut off = buffer();
        off.append(message("x", 1), options(0, 0), T0).unwrap();
        assert_eq!(off.due_at(T0), T0);
    }

    #[test]
    fn duplicates_are_ignored_and_versions_only_go_up() {
        let mut b = buffer();
        assert!(b.append(message("a", 1), options(0, 0), T0).unwrap());
        assert!(!b.append(message("a", 1), options(0, 0), T0).unwrap());
        assert_eq!(b.version, 1);
        let batch = b.take(Duration::from_secs(60), 0, 0, T0).unwrap();
        assert_eq!(b.version, 2);
        b.ack(&batch.take_token).unwrap();
        assert_eq!(b.version, 3);
        assert!(b.messages.is_empty());
        b.append(message("b", 1), options(0, 0), T0).unwrap();
        assert_eq!(b.version, 4, "no restart at 1 after a take");
    }

    #[test]
    fn a_taken_batch_stays_hidden_until_acked_and_later_appends_stay() {
        let mut b = buffer();
        for id in ["a", "b"] {
            b.append(message(id, 1), options(0, 0), T0).unwrap();
        }
        let batch = b.take(Duration::from_secs(60), 0, 0, T0).unwrap();
        assert_eq!(ids(&batch.messages), ["a", "b"]);
        assert_eq!(batch.state.leased_until_ms, T0 + 60_000);
        // Nobody else can take it meanwhile, and it is not due.
        assert!(matches!(
            b.take(Duration::from_secs(60), 0, 0, T0 + 1),
            Err(SessionError::Busy { retry_after, .. }) if retry_after == Duration::from_millis(59_999)
        ));
        assert_eq!(b.due_at(T0 + 1), T0 + 60_000);
        b.append(message("c", 1), options(0, 0), T0 + 5).unwrap();
        b.ack(&batch.take_token).unwrap();
        assert_eq!(
            ids(&b
                .messages
                .iter()
                .map(|m| m.message.clone())
                .collect::<Vec<_>>()),
            ["c"]
        );
        assert_eq!(b.attempts, 0);
    }

    #[test]
    fn release_and_expiry_put_the_batch_back_at_the_head_in_order() {
        let mut b = buffer();
        for id in ["a", "b", "c"] {
            b.append(message(id, 1), options(0, 0), T0).unwrap();
        }
        let first = b.take(Duration::from_secs(10), 2, 0, T0).unwrap();
        assert_eq!(ids(&first.messages), ["a", "b"]);
        b.release(&first.take_token, Duration::from_secs(3), T0 + 1)
            .unwrap();
        assert_eq!(b.due_at(T0 + 1), T0 + 3_001, "the release's backoff");
        // The same batch comes back — same id, same messages, not "c" — so
        // idempotency keys derived from it repeat exactly.
        let second = b.take(Duration::from_secs(10), 0, 0, T0 + 3_001).unwrap();
        assert_eq!(ids(&second.messages), ["a", "b"]);
        assert_eq!(second.batch_id, first.batch_id);
        assert_ne!(second.take_token, first.take_token);
        assert_eq!(second.state.attempts, 2);
        // The holder vanishes; after the lease, the next caller gets the same batch.
        let third = b.take(Duration::from_secs(10), 0, 0, T0 + 13_002).unwrap();
        assert_eq!(ids(&third.messages), ["a", "b"]);
        assert_eq!(third.batch_id, first.batch_id);
        // Once it is acked, the rest is a new batch.
        b.ack(&third.take_token).unwrap();
        let fourth = b.take(Duration::from_secs(10), 0, 0, T0 + 13_003).unwrap();
        assert_eq!(ids(&fourth.messages), ["c"]);
        assert_ne!(fourth.batch_id, first.batch_id);
        // The vanished holder can no longer ack or release, nor can a
        // holder that gave its batch back.
        assert!(matches!(
            b.ack(&first.take_token),
            Err(SessionError::LeaseLost(_))
        ));
        assert!(matches!(
            b.ack(&second.take_token),
            Err(SessionError::LeaseLost(_))
        ));
        assert!(matches!(
            b.release(&second.take_token, Duration::ZERO, T0),
            Err(SessionError::LeaseLost(_))
        ));
    }

    #[test]
    fn an_expired_lease_can_still_be_acked_if_nobody_took_the_buffer() {
        let mut b = buffer();
        b.append(message("a", 1), options(0, 0), T0).unwrap();
        let batch = b.take(Duration::from_secs(1), 0, 0, T0).unwrap();
        assert_eq!(b.due_at(T0 + 5_000), T0, "due again once the lease expired");
        b.ack(&batch.take_token).unwrap();
        assert!(b.messages.is_empty());
    }

    #[test]
    fn extend_keeps_the_batch_out() {
        let mut b = buffer();
        b.append(message("a", 1), options(0, 0), T0).unwrap();
        let batch = b.take(Duration::from_secs(1), 0, 0, T0).unwrap();
        b.extend(&batch.take_token, Duration::from_secs(60), T0 + 500)
            .unwrap();
        assert!(matches!(
            b.take(Duration::from_secs(1), 0, 0, T0 + 30_000),
            Err(SessionError::Busy { .. })
        ));
        assert!(matches!(
            b.extend("someone-else", Duration::from_secs(1), T0),
            Err(SessionError::LeaseLost(_))
        ));
    }

    #[test]
    fn the_size_cap_refuses_an_append_and_keeps_what_is_there() {
        let mut b = buffer();
        b.append(message("a", 200_000), options(0, 0), T0).unwrap();
        let before = b.clone();
        assert!(matches!(
            b.append(message("b", 200_000), options(0, 0), T0),
            Err(SessionError::LimitExceeded(_))
        ));
        assert_eq!(b, before);
        // Once flushed, the next append fits.
        let batch = b.take(Duration::from_secs(1), 0, 0, T0).unwrap();
        b.ack(&batch.take_token).unwrap();
        b.append(message("b", 200_000), options(0, 0), T0).unwrap();
    }

    #[test]
    fn take_can_require_an_unchanged_buffer() {
        let mut b = buffer();
        b.append(message("a", 1), options(0, 0), T0).unwrap();
        assert!(matches!(
            b.take(Duration::from_secs(1), 0, 7, T0),
            Err(SessionError::Conflict(_))
        ));
        assert!(b.take(Duration::from_secs(1), 0, 1, T0).is_ok());
    }
}
