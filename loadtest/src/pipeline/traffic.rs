//! The customers: who they are, what they send (texts, documents,
//! pictures, voice notes synthesised with known DTMF content), and how
//! their events reach the bridge — through the sandbox playing End User
//! Messaging Social and SNS, or straight into the gateway's SQS queue.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use anyhow::Context as _;
use serde_json::{Value, json};

use super::ledger::{Kind, NoteFacts, document_name, text_line};

/// The sample rate of the synthesised voice notes (WhatsApp's wideband).
const NOTE_RATE: u32 = 16_000;

/// The phone number of conversation `conv`'s customer (a fictional
/// range, one per conversation).
pub fn phone(conv: usize) -> String {
    format!("4477009{conv:05}")
}

/// A pool of voice notes, synthesised once and uploaded once.
pub struct NotePool {
    /// Each note's OGG/Opus bytes.
    pub oggs: Vec<Vec<u8>>,
    /// What the agent should see of each.
    pub facts: Vec<NoteFacts>,
}

impl NotePool {
    /// `count` notes with lengths spread over `seconds` (inclusive range),
    /// each opening with its own DTMF digits.
    pub fn synthesise(count: usize, seconds: (f64, f64)) -> anyhow::Result<Self> {
        use parley_sandbox::recognizer;
        let mut oggs = Vec::new();
        let mut facts = Vec::new();
        for index in 0..count {
            let length = if count == 1 {
                seconds.0
            } else {
                seconds.0 + (seconds.1 - seconds.0) * index as f64 / (count - 1) as f64
            };
            let keys = format!("{:03}", 100 + index);
            let mut pcm = recognizer::dtmf(&keys, NOTE_RATE);
            let rest = (length - pcm.len() as f64 / f64::from(NOTE_RATE)).max(0.0);
            pcm.extend(parley_transcoder::synth::speech_like(
                NOTE_RATE,
                rest,
                index as u64 + 1,
            ));
            let ogg = parley_transcoder::synth::encode_pcm(&pcm, NOTE_RATE)
                .context("encoding a voice note")?;
            let words: Vec<&str> = keys.chars().map(recognizer::word).collect();
            facts.push(NoteFacts {
                // 16-bit mono at 16 kHz plus the 44-byte header.
                wav_bytes: pcm.len() as u64 * 2 + 44,
                words: words.join(" "),
                seconds: pcm.len() as f64 / f64::from(NOTE_RATE),
            });
            oggs.push(ogg);
        }
        Ok(Self { oggs, facts })
    }
}

/// Media ids of what customers send, uploaded to the emulated WhatsApp.
#[derive(Debug, Clone, Default)]
pub struct Media {
    /// The PDF every document message carries.
    pub document: String,
    /// The JPEG every picture carries.
    pub image: String,
    /// One id per pool note.
    pub notes: Vec<String>,
}

impl Media {
    /// Uploads the run's media through the sandbox's customer API.
    pub async fn upload(
        http: &reqwest::Client,
        sandbox: &str,
        pool: &NotePool,
    ) -> anyhow::Result<Self> {
        let upload = |mime: &'static str, bytes: Vec<u8>| async move {
            let answer: Value = http
                .post(format!("{sandbox}/_sandbox/whatsapp/media"))
                .header("content-type", mime)
                .body(bytes)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            anyhow::Ok(answer["mediaId"].as_str().unwrap_or_default().to_owned())
        };
        let mut media = Self {
            document: upload(
                "application/pdf",
                b"%PDF-1.4\n% parley load test\n%%EOF\n".to_vec(),
            )
            .await?,
            image: upload("image/jpeg", b"\xff\xd8\xff\xe0 parley load test".to_vec()).await?,
            notes: Vec::new(),
        };
        for ogg in &pool.oggs {
            media
                .notes
                .push(upload("audio/ogg; codecs=opus", ogg.clone()).await?);
        }
        Ok(media)
    }
}

/// Builds the Meta webhook `value` for message `seq` of `conv`.
pub struct Messages {
    run: String,
    media: Media,
    /// Last WhatsApp timestamp given to each customer: they must rise, as
    /// WhatsApp's do, even when a customer sends faster than once a second.
    clocks: Vec<AtomicI64>,
}

impl Messages {
    /// Messages of run `run` for `conversations` customers.
    pub fn new(run: &str, conversations: usize, media: Media) -> Self {
        Self {
            run: run.to_owned(),
            media,
            clocks: (0..conversations).map(|_| AtomicI64::new(0)).collect(),
        }
    }

    /// The run's tag.
    pub fn run(&self) -> &str {
        &self.run
    }

    /// The webhook `value` of one message.
    pub fn value(&self, conv: usize, seq: usize, kind: Kind) -> Value {
        let body = match kind {
            Kind::Text => {
                json!({ "type": "text", "text": { "body": text_line(&self.run, conv, seq) } })
            }
            Kind::Document => json!({ "type": "document", "document": {
                "id": self.media.document, "mime_type": "application/pdf", "sha256": "-",
                "filename": document_name(&self.run, conv, seq) } }),
            Kind::Image => json!({ "type": "image", "image": {
                "id": self.media.image, "mime_type": "image/jpeg", "sha256": "-" } }),
            Kind::Voice { note } => json!({ "type": "audio", "audio": {
                "id": self.media.notes[note], "mime_type": "audio/ogg; codecs=opus", "sha256": "-",
                "voice": true } }),
        };
        let now = parley_sandbox::state::now_ms() / 1000;
        let clock = &self.clocks[conv];
        let previous = clock.load(Ordering::Relaxed);
        let timestamp = now.max(previous + 1);
        clock.store(timestamp, Ordering::Relaxed);
        let mut message = body;
        message["from"] = json!(phone(conv));
        message["id"] = json!(format!("wamid.lt-{}-c{conv}-m{seq}", self.run));
        message["timestamp"] = json!(timestamp.to_string());
        parley_sandbox::customer::message_value(&phone(conv), &format!("Load {conv}"), message)
    }
}

/// Where customer events are published.
#[derive(Clone)]
pub enum Feed {
    /// The sandbox wraps each as EUM does and delivers it through SNS
    /// (signed, over HTTP, or through moto).
    Sandbox {
        /// HTTP client.
        http: reqwest::Client,
        /// The sandbox's base URL.
        url: String,
    },
    /// Straight into the gateway's inbound queue, as SNS would deliver
    /// (an SNS envelope around the EUM message).
    Queue {
        /// The SQS client.
        sqs: aws_sdk_sqs::Client,
        /// The inbound queue.
        url: String,
        /// The business numbers (to wrap as EUM does).
        numbers: Arc<Vec<parley_sandbox::customer::WhatsAppNumber>>,
    },
}

impl Feed {
    /// Publishes one webhook `value`.
    pub async fn publish(&self, value: Value) -> anyhow::Result<()> {
        match self {
            Self::Sandbox { http, url } => {
                http.post(format!("{url}/_sandbox/whatsapp/inbound"))
                    .json(&value)
                    .send()
                    .await?
                    .error_for_status()?;
                Ok(())
            }
            Self::Queue { sqs, url, numbers } => {
                let eum = parley_sandbox::customer::eum_message(numbers, value);
                let envelope = json!({
                    "Type": "Notification",
                    "MessageId": uuid::Uuid::new_v4().to_string(),
                    "TopicArn": "arn:aws:sns:us-east-1:123456789012:parley-eum-in",
                    "Message": eum.to_string(),
                    "Timestamp": parley_sandbox::aws::iso8601(parley_sandbox::state::now_ms()),
                    "SignatureVersion": "1",
                });
                sqs.send_message()
                    .queue_url(url)
                    .message_body(envelope.to_string())
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(&e))
                    })?;
                Ok(())
            }
        }
    }

    /// The agent (the sandbox playing Connect) writes in `contact_id`'s
    /// chat.
    pub async fn agent_says(
        http: &reqwest::Client,
        sandbox: &str,
        contact_id: &str,
        text: &str,
    ) -> anyhow::Result<()> {
        http.post(format!("{sandbox}/_sandbox/agent-message"))
            .json(&json!({ "contact_id": contact_id, "content": text }))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}
