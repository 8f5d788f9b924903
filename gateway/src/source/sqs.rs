//! The SQS source: long polling, batches of up to 10, bounded concurrency,
//! and per-message settlement — one bad message never holds back or re-runs
//! its batch-mates. A message is deleted only after its effects are
//! durable; while it is worked on (a voice note can take a while) its
//! visibility is extended, so no other consumer sees it meanwhile.
//!
//! FIFO queues (`.fifo`, the customer as message group) keep order per
//! customer: the messages of one group in a receive are handled one after
//! another, and when one must wait, the rest of its group waits with it.
//!
//! Shutdown: stop receiving, let the messages under way finish within the
//! drain deadline, and make the rest visible again at once.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;

use super::{Settled, settle};
use crate::{
    config::QueueConfig,
    dead_letter::DeadLetters,
    flush::now_ms,
    ingest::{Event, Ingest, Stream},
    trace,
};

/// Longest visibility timeout SQS allows (12 hours).
const MAX_VISIBILITY_S: i32 = 43_200;

/// Consumes one queue.
pub struct SqsSource {
    client: aws_sdk_sqs::Client,
    queue: QueueConfig,
    stream: Stream,
    ingest: Arc<Ingest>,
    dead_letters: Arc<dyn DeadLetters>,
    /// Receipt handles of the messages under way (made visible again if
    /// shutdown cuts them short).
    in_flight: Mutex<HashSet<String>>,
}

impl SqsSource {
    /// A consumer of `queue` feeding `ingest`.
    pub fn new(
        client: aws_sdk_sqs::Client,
        queue: QueueConfig,
        stream: Stream,
        ingest: Arc<Ingest>,
        dead_letters: Arc<dyn DeadLetters>,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            queue,
            stream,
            ingest,
            dead_letters,
            in_flight: Mutex::new(HashSet::new()),
        })
    }

    fn is_fifo(&self) -> bool {
        self.queue.url.ends_with(".fifo")
    }

    /// Receives and handles messages until `shutdown`, then drains.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken, drain: Duration) {
        let permits = Arc::new(Semaphore::new(self.queue.concurrency));
        let mut running = JoinSet::new();
        loop {
            while running.try_join_next().is_some() {}
            // Receive only what can be worked on now.
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = permits.clone().acquire_owned() => permit.expect("never closed"),
            };
            let room = i32::try_from(permits.available_permits() + 1).unwrap_or(i32::MAX);
            let received = tokio::select! {
                _ = shutdown.cancelled() => break,
                received = self
                    .client
                    .receive_message()
                    .queue_url(&self.queue.url)
                    .max_number_of_messages(self.queue.batch.min(room))
                    .wait_time_seconds(self.queue.wait.as_secs() as i32)
                    .visibility_timeout(visibility_s(self.queue.visibility))
                    .message_attribute_names("All")
                    .message_system_attribute_names(MessageSystemAttributeName::All)
                    .send() => received,
            };
            drop(first);
            let messages = match received {
                Ok(received) => received.messages.unwrap_or_default(),
                Err(error) => {
                    tracing::warn!(queue = %self.queue.url, error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "receive failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
            };
            for group in self.groups(messages) {
                let permit = permits.clone().acquire_owned().await.expect("never closed");
                let source = self.clone();
                running.spawn(async move {
                    source.handle_group(group).await;
                    drop(permit);
                });
            }
        }
        let drained = tokio::time::timeout(drain, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            running.abort_all();
            let left: Vec<String> = self
                .in_flight
                .lock()
                .expect("not poisoned")
                .drain()
                .collect();
            tracing::warn!(
                left = left.len(),
                "messages still under way at shutdown: made visible again"
            );
            for receipt in left {
                self.set_visibility(&receipt, Duration::ZERO).await;
            }
        }
    }

    /// Splits a receive into groups handled in order: one per FIFO message
    /// group, else one per message.
    fn groups(&self, messages: Vec<Message>) -> Vec<Vec<Message>> {
        if !self.is_fifo() {
            return messages.into_iter().map(|m| vec![m]).collect();
        }
        let mut order: Vec<String> = Vec::new();
        let mut groups: HashMap<String, Vec<Message>> = HashMap::new();
        for message in messages {
            let group = message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned()
                .unwrap_or_default();
            if !groups.contains_key(&group) {
                order.push(group.clone());
            }
            groups.entry(group).or_default().push(message);
        }
        order
            .into_iter()
            .filter_map(|g| groups.remove(&g))
            .collect()
    }

    async fn handle_group(&self, group: Vec<Message>) {
        let mut waiting: Option<Duration> = None;
        for message in group {
            let Some(receipt) = message.receipt_handle().map(str::to_owned) else {
                continue;
            };
            if let Some(delay) = waiting {
                // An earlier message of this group must wait: so does this
                // one, to keep the customer's order.
                self.set_visibility(&receipt, delay).await;
                continue;
            }
            self.in_flight
                .lock()
                .expect("not poisoned")
                .insert(receipt.clone());
            let settled = self.handle(&message, &receipt).await;
            match settled {
                Settled::Ack => self.delete(&receipt).await,
                Settled::Again(delay) => {
                    self.set_visibility(&receipt, delay).await;
                    if self.is_fifo() {
                        waiting = Some(delay);
                    }
                }
            }
            self.in_flight
                .lock()
                .expect("not poisoned")
                .remove(&receipt);
        }
    }

    /// Handles one message, keeping it invisible while that runs.
    async fn handle(&self, message: &Message, receipt: &str) -> Settled {
        let event = event_of(message);
        let heartbeat = {
            let client = self.client.clone();
            let url = self.queue.url.clone();
            let receipt = receipt.to_owned();
            let visibility = self.queue.visibility;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(visibility / 2).await;
                    let extended = client
                        .change_message_visibility()
                        .queue_url(&url)
                        .receipt_handle(&receipt)
                        .visibility_timeout(visibility_s(visibility))
                        .send()
                        .await;
                    if let Err(error) = extended {
                        tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "visibility not extended");
                    }
                }
            })
        };
        let settled = settle(&self.ingest, &self.dead_letters, self.stream, &event).await;
        heartbeat.abort();
        settled
    }

    async fn delete(&self, receipt: &str) {
        for attempt in 0..3u32 {
            match self
                .client
                .delete_message()
                .queue_url(&self.queue.url)
                .receipt_handle(receipt)
                .send()
                .await
            {
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "delete failed; the redelivery will find the work done");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
    }

    async fn set_visibility(&self, receipt: &str, delay: Duration) {
        let changed = self
            .client
            .change_message_visibility()
            .queue_url(&self.queue.url)
            .receipt_handle(receipt)
            .visibility_timeout(visibility_s(delay))
            .send()
            .await;
        if let Err(error) = changed {
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "visibility not changed; the message returns when its timeout ends");
        }
    }
}

fn visibility_s(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs())
        .unwrap_or(MAX_VISIBILITY_S)
        .min(MAX_VISIBILITY_S)
}

/// An SQS message as an event: its body, its string attributes, and its
/// trace context (a `traceparent` attribute, or X-Ray's header).
pub fn event_of(message: &Message) -> Event {
    let attributes: BTreeMap<String, String> = message
        .message_attributes()
        .map(|attributes| {
            attributes
                .iter()
                .filter_map(|(name, value)| Some((name.clone(), value.string_value()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let traceparent = attributes
        .get("traceparent")
        .cloned()
        .or_else(|| {
            message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::AwsTraceHeader))
                .and_then(|header| trace::xray_to_traceparent(header))
        })
        .unwrap_or_default();
    let sent_at_ms = message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    Event {
        body: message.body().unwrap_or_default().to_owned(),
        attributes,
        traceparent,
        received_at_ms: now_ms(),
        sent_at_ms,
    }
}
