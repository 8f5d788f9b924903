//! Sources: where events come from. [`sqs`] consumes the queues subscribed
//! to the two SNS topics; [`http`] takes SNS HTTP(S) deliveries (signatures
//! checked by [`sns`]) and Meta's webhooks (checked by [`meta`]). Every
//! source hands events to the same [`Ingest`] and settles them the same
//! way ([`settle`]).

pub mod http;
pub mod meta;
pub mod sns;
pub mod sqs;

use std::{sync::Arc, time::Duration};

use crate::{
    dead_letter::{DeadLetter, DeadLetters},
    ingest::{Event, Ingest, Outcome, Stream},
    metrics::{InFlight, label, metrics},
};

/// What a source does with an event once it was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Acknowledge it (delete it from the queue, answer 200).
    Ack,
    /// Let the transport deliver it again after the delay.
    Again(Duration),
}

/// How long a rejected event waits when its dead letter could not be
/// stored.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(30);

/// Handles `event` and decides its fate: a rejected event is acknowledged
/// only once its dead letter is stored.
pub async fn settle(
    ingest: &Ingest,
    dead_letters: &Arc<dyn DeadLetters>,
    stream: Stream,
    event: &Event,
) -> Settled {
    let _working = InFlight::start("event");
    let metrics = metrics();
    if event.sent_at_ms > 0 {
        let lag = (event.received_at_ms - event.sent_at_ms).max(0) as f64 / 1000.0;
        metrics.lag.record(lag, &[label("stream", stream.as_str())]);
    }
    let outcome = ingest.handle(stream, event).await;
    let name = match &outcome {
        Outcome::Done => "done",
        Outcome::Retry { .. } => "retry",
        Outcome::Reject { .. } => "rejected",
    };
    metrics.events.add(
        1,
        &[label("stream", stream.as_str()), label("outcome", name)],
    );
    match outcome {
        Outcome::Done => Settled::Ack,
        Outcome::Retry { after, reason } => {
            tracing::info!(stream = stream.as_str(), %reason, retry_in_ms = after.as_millis() as u64, "event retried");
            Settled::Again(after)
        }
        Outcome::Reject { reason } => {
            tracing::warn!(stream = stream.as_str(), %reason, "event dead-lettered");
            let letter = DeadLetter {
                source: stream.as_str().into(),
                reason,
                body: event.body.clone(),
                attributes: event.attributes.clone(),
            };
            match dead_letters.send(letter).await {
                Ok(()) => {
                    metrics
                        .dead_letters
                        .add(1, &[label("source", stream.as_str())]);
                    Settled::Ack
                }
                Err(error) => {
                    tracing::error!(%error, "dead letter not stored; the event stays");
                    Settled::Again(DEAD_LETTER_RETRY)
                }
            }
        }
    }
}
