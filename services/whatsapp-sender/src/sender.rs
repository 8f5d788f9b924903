//! The sender's calls over the real `aws-sdk-socialmessaging` and
//! `aws-sdk-s3` clients: send messages, mark read, and move media in and
//! out of WhatsApp through the media bucket.

use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_socialmessaging::{primitives::Blob, types::S3File};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use parley_identity::{BusinessNumber, NumberDirectory};
use serde_json::Value;

use crate::{
    error::{ErrorKind, Result, SenderError},
    ledger::{PartClaim, SendLedger},
};

/// Settings of the sender.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Meta Graph API version the messages are written for.
    pub meta_api_version: String,
    /// Bucket media is staged in (EUM reads and writes it).
    pub media_bucket: String,
    /// Key prefix for staged media.
    pub media_prefix: String,
    /// Meta phone-number ids → EUM `phone-number-id-…` (the webhook carries
    /// the Meta id; the API wants the EUM one).
    pub number_map: NumberDirectory,
    /// The AWS configuration; `None` loads the standard chain at start.
    pub aws: Option<aws_config::SdkConfig>,
    /// An S3 endpoint other than the AWS configuration's (local runs put
    /// the media bucket on another stand-in than Social Messaging).
    pub s3_endpoint: Option<String>,
    /// The session service, for the send ledger that makes sends
    /// effectively-once across replicas; `None` keeps the ledger in memory.
    pub session: Option<parley_runtime::client::ClientConfig>,
    /// How long a part claimed by a sender that vanished blocks a retry
    /// before it is sent again.
    pub ledger_claim_timeout: std::time::Duration,
}

impl SenderConfig {
    /// Reads `PARLEY_WHATSAPP_META_API_VERSION`, `PARLEY_WHATSAPP_MEDIA_BUCKET`,
    /// `PARLEY_WHATSAPP_MEDIA_PREFIX`, `PARLEY_WHATSAPP_NUMBER_MAP`
    /// (`metaId=phone-number-id-…,…`), `PARLEY_WHATSAPP_S3_ENDPOINT` and
    /// the session client (`PARLEY_SESSION_ENDPOINT`, …), and validates them.
    pub fn from_settings(settings: &mut parley_runtime::config::Settings<'_>) -> Self {
        let defaults = Self::default();
        let number_map = match NumberDirectory::parse_pairs(
            &settings.raw("whatsapp_number_map").unwrap_or_default(),
        ) {
            Ok(map) => map,
            Err(problems) => {
                for problem in problems {
                    settings.problem("whatsapp_number_map", problem);
                }
                NumberDirectory::new()
            }
        };
        let session = settings
            .raw("session_endpoint")
            .map(|_| parley_runtime::client::ClientConfig::from_settings(settings, "session", ""));
        let config = Self {
            meta_api_version: settings
                .raw("whatsapp_meta_api_version")
                .unwrap_or(defaults.meta_api_version),
            media_bucket: settings.raw("whatsapp_media_bucket").unwrap_or_default(),
            media_prefix: settings
                .raw("whatsapp_media_prefix")
                .unwrap_or(defaults.media_prefix),
            number_map,
            aws: None,
            s3_endpoint: settings.raw("whatsapp_s3_endpoint"),
            session,
            ledger_claim_timeout: settings.millis(
                "whatsapp_ledger_claim_timeout_ms",
                defaults.ledger_claim_timeout,
            ),
        };
        for (name, problem) in config.problems() {
            settings.problem(name, problem);
        }
        config
    }

    /// What is wrong with this configuration, by setting name; checked at
    /// start.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.media_bucket.trim().is_empty() {
            problems.push((
                "whatsapp_media_bucket",
                "is required (media to and from WhatsApp is staged there)".into(),
            ));
        }
        if self.meta_api_version.trim().is_empty() {
            problems.push(("whatsapp_meta_api_version", "must not be empty".into()));
        }
        problems
    }
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            meta_api_version: "v23.0".into(),
            media_bucket: String::new(),
            media_prefix: "parley-media/".into(),
            number_map: NumberDirectory::new(),
            aws: None,
            s3_endpoint: None,
            session: None,
            ledger_claim_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// Media coming out of WhatsApp.
pub struct DownloadedMedia {
    /// MIME type reported by WhatsApp.
    pub mime_type: String,
    /// Real size in bytes (not the API's rounded kilobytes).
    pub size: u64,
    /// The bytes.
    pub body: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>,
}

/// The sender over its clients.
#[derive(Clone)]
pub struct Sender {
    social: aws_sdk_socialmessaging::Client,
    s3: aws_sdk_s3::Client,
    ledger: Arc<dyn SendLedger>,
    config: SenderConfig,
}

/// What a (possibly resumed) send did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// WhatsApp message ids of every part, in order.
    pub message_ids: Vec<String>,
    /// How many parts earlier attempts had sent.
    pub already_sent: usize,
}

impl Sender {
    /// A sender with these clients, ledger and settings.
    pub fn new(
        social: aws_sdk_socialmessaging::Client,
        s3: aws_sdk_s3::Client,
        ledger: Arc<dyn SendLedger>,
        config: SenderConfig,
    ) -> Self {
        Self {
            social,
            s3,
            ledger,
            config,
        }
    }

    /// The business number in the form the API accepts (`phone-number-id-…`),
    /// from that form, its ARN, or a Meta id the number map knows.
    pub fn origination(&self, raw: &str) -> Result<BusinessNumber> {
        Ok(self.config.number_map.resolve(raw)?)
    }

    /// Sends the parts of one message in order. With an idempotency key,
    /// each part goes out at most once under `<key>#<n>`: parts an earlier
    /// attempt sent are skipped (their ids returned), and a failure
    /// part-way reports the parts sent so far.
    pub async fn send_parts(
        &self,
        origination: &BusinessNumber,
        parts: &[Value],
        idempotency_key: &str,
    ) -> Result<Sent> {
        let mut sent = Sent {
            message_ids: Vec::with_capacity(parts.len()),
            already_sent: 0,
        };
        for (index, payload) in parts.iter().enumerate() {
            if idempotency_key.is_empty() {
                let id = self
                    .send_payload(origination, payload)
                    .await
                    .map_err(|e| e.with_completed(sent.message_ids.clone()))?;
                sent.message_ids.push(id);
                continue;
            }
            let key = format!("{idempotency_key}#{index}");
            let token = match self
                .ledger
                .claim(&key)
                .await
                .map_err(|e| e.with_completed(sent.message_ids.clone()))?
            {
                PartClaim::Sent(id) => {
                    sent.message_ids.push(id);
                    sent.already_sent += 1;
                    continue;
                }
                PartClaim::InProgress(retry_after) => {
                    return Err(SenderError::new(
                        ErrorKind::Busy(retry_after),
                        format!("part {index} of this message is being sent by another caller"),
                    )
                    .with_completed(sent.message_ids));
                }
                PartClaim::Claimed(token) => token,
            };
            match self.send_payload(origination, payload).await {
                Ok(id) => {
                    if let Err(e) = self.ledger.complete(&key, &token, &id).await {
                        // Sent but not recorded: a retry after this claim's
                        // timeout would send it again. Say so; carry on.
                        tracing::warn!(error = %e, part = index, "sent part not recorded in the ledger");
                    }
                    sent.message_ids.push(id);
                }
                Err(error) => {
                    let _ = self.ledger.release(&key, &token).await;
                    return Err(error.with_completed(sent.message_ids));
                }
            }
        }
        Ok(sent)
    }

    /// Sends one Cloud API payload; returns the WhatsApp message id.
    pub async fn send_payload(
        &self,
        origination: &BusinessNumber,
        payload: &Value,
    ) -> Result<String> {
        let bytes =
            serde_json::to_vec(payload).map_err(|e| SenderError::internal(e.to_string()))?;
        let sent = self
            .social
            .send_whats_app_message()
            .origination_phone_number_id(origination.as_str())
            .meta_api_version(&self.config.meta_api_version)
            .message(Blob::new(bytes))
            .send()
            .await
            .map_err(|e| SenderError::from_sdk("SendWhatsAppMessage", e))?;
        Ok(sent.message_id().unwrap_or_default().to_owned())
    }

    /// Streams `body` (exactly `size` bytes, never held whole in memory)
    /// into the media bucket and hands it to WhatsApp; returns the media id.
    pub async fn upload<S>(
        &self,
        origination: &BusinessNumber,
        mime_type: &str,
        size: u64,
        body: S,
    ) -> Result<String>
    where
        S: Stream<Item = Result<Bytes>> + Send + Sync + 'static,
    {
        crate::media::check(mime_type, size)?;
        if self.config.media_bucket.is_empty() {
            return Err(SenderError::new(
                ErrorKind::Configuration,
                "no media bucket configured (PARLEY_WHATSAPP_MEDIA_BUCKET)",
            ));
        }
        let key = format!(
            "{}outbound/{}",
            self.config.media_prefix,
            uuid::Uuid::new_v4()
        );
        // Count as the bytes pass: a body that is shorter or longer than
        // declared is the caller's error, reported as such.
        let counted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = counted.clone();
        let frames = body.map(move |chunk| {
            let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()))?;
            let total = counter.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::SeqCst)
                + chunk.len() as u64;
            if total > size {
                return Err(std::io::Error::other(format!(
                    "more than the declared {size} bytes were sent"
                )));
            }
            Ok(http_body::Frame::data(chunk))
        });
        let stream = ByteStream::from_body_1_x(http_body_util::StreamBody::new(frames));
        let put = self
            .s3
            .put_object()
            .bucket(&self.config.media_bucket)
            .key(&key)
            .content_type(mime_type)
            .content_length(size as i64)
            .body(stream)
            .send()
            .await;
        let received = counted.load(std::sync::atomic::Ordering::SeqCst);
        if received != size {
            // Nothing usable was staged; drop whatever was.
            let _ = self
                .s3
                .delete_object()
                .bucket(&self.config.media_bucket)
                .key(&key)
                .send()
                .await;
            return Err(SenderError::invalid(format!(
                "{received} bytes were sent, {size} declared"
            )));
        }
        put.map_err(|e| SenderError::from_sdk("PutObject", e))?;
        let posted = self
            .social
            .post_whats_app_message_media()
            .origination_phone_number_id(origination.as_str())
            .source_s3_file(
                S3File::builder()
                    .bucket_name(&self.config.media_bucket)
                    .key(&key)
                    .build()
                    .map_err(|e| SenderError::internal(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| SenderError::from_sdk("PostWhatsAppMessageMedia", e));
        // The staged copy is no longer needed either way.
        let _ = self
            .s3
            .delete_object()
            .bucket(&self.config.media_bucket)
            .key(&key)
            .send()
            .await;
        Ok(posted?.media_id().unwrap_or_default().to_owned())
    }

    /// Has WhatsApp write a customer's media into the bucket, then streams
    /// it back with its MIME type and real size.
    pub async fn download(
        &self,
        origination: &BusinessNumber,
        media_id: &str,
    ) -> Result<DownloadedMedia> {
        if media_id.is_empty()
            || !media_id.chars().all(|c| c.is_ascii_alphanumeric())
            || media_id.len() > 100
        {
            return Err(SenderError::invalid(
                "media_id must be 1 to 100 letters and digits",
            ));
        }
        if self.config.media_bucket.is_empty() {
            return Err(SenderError::new(
                ErrorKind::Configuration,
                "no media bucket configured (PARLEY_WHATSAPP_MEDIA_BUCKET)",
            ));
        }
        let prefix = format!(
            "{}inbound/{}/",
            self.config.media_prefix,
            uuid::Uuid::new_v4()
        );
        let fetched = self
            .social
            .get_whats_app_message_media()
            .origination_phone_number_id(origination.as_str())
            .media_id(media_id)
            .destination_s3_file(
                S3File::builder()
                    .bucket_name(&self.config.media_bucket)
                    .key(&prefix)
                    .build()
                    .map_err(|e| SenderError::internal(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| SenderError::from_sdk("GetWhatsAppMessageMedia", e))?;
        let mime_type = fetched
            .mime_type()
            .unwrap_or("application/octet-stream")
            .to_owned();
        // EUM appends the media id and an extension to the key: find it
        // rather than guess the extension.
        let listed = self
            .s3
            .list_objects_v2()
            .bucket(&self.config.media_bucket)
            .prefix(&prefix)
            .send()
            .await
            .map_err(|e| SenderError::from_sdk("ListObjectsV2", e))?;
        let key = listed
            .contents()
            .first()
            .and_then(|o| o.key())
            .ok_or_else(|| {
                SenderError::new(
                    ErrorKind::NotFound,
                    format!("media {media_id} did not arrive in the bucket"),
                )
            })?
            .to_owned();
        let object = self
            .s3
            .get_object()
            .bucket(&self.config.media_bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| SenderError::from_sdk("GetObject", e))?;
        let size = object.content_length().unwrap_or(0).max(0) as u64;
        let s3 = self.s3.clone();
        let bucket = self.config.media_bucket.clone();
        let mut stream = object.body;
        let body = async_stream_body(move |tx| async move {
            loop {
                match stream.try_next().await {
                    Ok(Some(chunk)) => {
                        if tx.send(Ok(chunk)).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx
                            .send(Err(SenderError::unavailable(format!(
                                "reading staged media: {e}"
                            ))))
                            .await;
                        break;
                    }
                }
            }
            // Customer media does not linger in the bucket.
            let _ = s3.delete_object().bucket(&bucket).key(&key).send().await;
        });
        Ok(DownloadedMedia {
            mime_type,
            size,
            body,
        })
    }
}

/// Runs `produce` in a task feeding a bounded channel, seen as a stream.
fn async_stream_body<F, Fut>(
    produce: F,
) -> std::pin::Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(produce(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
