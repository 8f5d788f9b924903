//! Dead letters: events and batches that cannot be handled, kept with the
//! reason — an SQS queue (the reason as a message attribute) or, for local
//! runs, a JSON-lines file. Nothing is acknowledged as dead-lettered until
//! the letter is stored: a failed send leaves the event to be retried.

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use aws_sdk_sqs::types::MessageAttributeValue;
use futures::future::BoxFuture;
use serde::Serialize;

/// What could not be handled, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// Where it came from: `inbound`, `outbound` (events as received) or
    /// `inbound-batch`, `outbound-batch` (buffered messages that could not
    /// be delivered).
    pub source: String,
    /// Why (no message content).
    pub reason: String,
    /// The event body, or the buffered message (JSON).
    pub body: String,
    /// The event's message attributes.
    pub attributes: BTreeMap<String, String>,
}

/// Where dead letters are kept.
pub trait DeadLetters: Send + Sync + 'static {
    /// Stores `letter`; `Err` when it could not be stored.
    fn send(&self, letter: DeadLetter) -> BoxFuture<'_, anyhow::Result<()>>;
}

/// Dead letters on an SQS queue.
pub struct SqsDeadLetters {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsDeadLetters {
    /// Letters to `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String) -> Self {
        Self { client, queue_url }
    }
}

/// SQS message attributes hold at most 10 entries and 256 KB in all with
/// the body; reasons are cut to keep well inside.
const MAX_REASON_CHARS: usize = 1_000;

fn attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(if value.is_empty() { "-" } else { value })
        .build()
        .expect("data type is set")
}

impl DeadLetters for SqsDeadLetters {
    fn send(&self, letter: DeadLetter) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let reason: String = letter.reason.chars().take(MAX_REASON_CHARS).collect();
            let mut send = self
                .client
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(&letter.body)
                .message_attributes("parley.reason", attribute(&reason))
                .message_attributes("parley.source", attribute(&letter.source));
            // Keep the event's own attributes (Connect's visibility, trace
            // context), within SQS's limit of 10 in all.
            for (name, value) in letter.attributes.iter().take(8) {
                send = send.message_attributes(name, attribute(value));
            }
            send.send().await?;
            Ok(())
        })
    }
}

/// Dead letters appended to a JSON-lines file.
#[derive(Clone)]
pub struct FileDeadLetters {
    path: PathBuf,
    lock: Arc<Mutex<()>>,
}

impl FileDeadLetters {
    /// Letters appended to `path`.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: Arc::default(),
        }
    }

    /// Every letter stored so far.
    pub fn read(&self) -> Vec<DeadLetter> {
        #[derive(serde::Deserialize)]
        struct Stored {
            source: String,
            reason: String,
            body: String,
            attributes: BTreeMap<String, String>,
        }
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<Stored>(line).ok())
            .map(|s| DeadLetter {
                source: s.source,
                reason: s.reason,
                body: s.body,
                attributes: s.attributes,
            })
            .collect()
    }
}

impl DeadLetters for FileDeadLetters {
    fn send(&self, letter: DeadLetter) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let line = serde_json::to_string(&letter)?;
            let path = self.path.clone();
            let lock = self.lock.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)?;
                writeln!(file, "{line}")?;
                file.sync_data()?;
                Ok(())
            })
            .await??;
            Ok(())
        })
    }
}

/// No dead-letter target: every letter is refused, so the event stays with
/// its transport (an SQS queue's redrive policy moves it to the queue's own
/// dead-letter queue; SNS retries an HTTP delivery).
pub struct NoDeadLetters;

impl DeadLetters for NoDeadLetters {
    fn send(&self, letter: DeadLetter) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            tracing::error!(source = %letter.source, reason = %letter.reason, "no dead-letter target configured: left with the transport");
            anyhow::bail!("no dead-letter target is configured")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_letters_are_kept_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let letters = FileDeadLetters::new(dir.path().join("dead.jsonl"));
        for n in 0..2 {
            letters
                .send(DeadLetter {
                    source: "inbound".into(),
                    reason: format!("bad {n}"),
                    body: "{}".into(),
                    attributes: BTreeMap::new(),
                })
                .await
                .unwrap();
        }
        let read = letters.read();
        assert_eq!(read.len(), 2);
        assert_eq!(read[1].reason, "bad 1");
        assert!(NoDeadLetters.send(read[0].clone()).await.is_err());
    }
}
