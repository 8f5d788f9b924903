//! The sender's calls over the real `aws-sdk-socialmessaging` and
//! `aws-sdk-s3` clients: send messages, mark read, and move media in and
//! out of WhatsApp through the media bucket.

use std::collections::HashMap;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_socialmessaging::{primitives::Blob, types::S3File};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::Value;

use crate::error::{Result, SenderError};

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
    pub number_map: HashMap<String, String>,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            meta_api_version: "v23.0".into(),
            media_bucket: String::new(),
            media_prefix: "parley-media/".into(),
            number_map: HashMap::new(),
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
    config: SenderConfig,
}

impl Sender {
    /// A sender with these clients and settings.
    pub fn new(
        social: aws_sdk_socialmessaging::Client,
        s3: aws_sdk_s3::Client,
        config: SenderConfig,
    ) -> Self {
        Self { social, s3, config }
    }

    /// The business number in the form the API accepts: `phone-number-id-…`
    /// and ARNs as they are, Meta numeric ids through the configured map.
    pub fn origination(&self, raw: &str) -> Result<String> {
        let raw = raw.trim();
        if raw.starts_with("phone-number-id-")
            || (raw.starts_with("arn:") && raw.contains(":phone-number-id/"))
        {
            return Ok(raw.to_owned());
        }
        if !raw.is_empty() && raw.chars().all(|c| c.is_ascii_digit()) {
            return self.config.number_map.get(raw).cloned().ok_or_else(|| {
                SenderError::Invalid(format!(
                    "Meta phone-number id {raw} is not mapped to an EUM phone-number-id (PARLEY_WHATSAPP_NUMBER_MAP)"
                ))
            });
        }
        Err(SenderError::Invalid(
            "business_number_id must be a Meta phone-number id, phone-number-id-… or its ARN"
                .into(),
        ))
    }

    /// Sends one Cloud API payload; returns the WhatsApp message id.
    pub async fn send_payload(&self, origination: &str, payload: &Value) -> Result<String> {
        let bytes =
            serde_json::to_vec(payload).map_err(|e| SenderError::Internal(e.to_string()))?;
        let sent = self
            .social
            .send_whats_app_message()
            .origination_phone_number_id(origination)
            .meta_api_version(&self.config.meta_api_version)
            .message(Blob::new(bytes))
            .send()
            .await
            .map_err(|e| SenderError::from_sdk("SendWhatsAppMessage", e))?;
        Ok(sent.message_id().unwrap_or_default().to_owned())
    }

    /// Stages `body` (exactly `size` bytes) in the media bucket and hands it
    /// to WhatsApp; returns the media id.
    pub async fn upload<S>(
        &self,
        origination: &str,
        mime_type: &str,
        size: u64,
        body: S,
    ) -> Result<String>
    where
        S: Stream<Item = Result<Bytes>> + Send + Unpin,
    {
        crate::media::check(mime_type, size)?;
        if self.config.media_bucket.is_empty() {
            return Err(SenderError::Internal(
                "no media bucket configured (PARLEY_WHATSAPP_MEDIA_BUCKET)".into(),
            ));
        }
        // One buffer, bounded by WhatsApp's limit for this type (checked above).
        let mut data = Vec::with_capacity(size as usize);
        let mut body = body;
        while let Some(chunk) = body.next().await {
            data.extend_from_slice(&chunk?);
            if data.len() as u64 > size {
                return Err(SenderError::Invalid(format!(
                    "more than the declared {size} bytes were sent"
                )));
            }
        }
        if data.len() as u64 != size {
            return Err(SenderError::Invalid(format!(
                "{} bytes were sent, {size} declared",
                data.len()
            )));
        }
        let key = format!(
            "{}outbound/{}",
            self.config.media_prefix,
            uuid::Uuid::new_v4()
        );
        self.s3
            .put_object()
            .bucket(&self.config.media_bucket)
            .key(&key)
            .content_type(mime_type)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| {
                SenderError::Unavailable(format!(
                    "staging media in S3: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                ))
            })?;
        let posted = self
            .social
            .post_whats_app_message_media()
            .origination_phone_number_id(origination)
            .source_s3_file(
                S3File::builder()
                    .bucket_name(&self.config.media_bucket)
                    .key(&key)
                    .build()
                    .map_err(|e| SenderError::Internal(e.to_string()))?,
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
    pub async fn download(&self, origination: &str, media_id: &str) -> Result<DownloadedMedia> {
        if media_id.is_empty()
            || !media_id.chars().all(|c| c.is_ascii_alphanumeric())
            || media_id.len() > 100
        {
            return Err(SenderError::Invalid(
                "media_id must be 1 to 100 letters and digits".into(),
            ));
        }
        if self.config.media_bucket.is_empty() {
            return Err(SenderError::Internal(
                "no media bucket configured (PARLEY_WHATSAPP_MEDIA_BUCKET)".into(),
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
            .origination_phone_number_id(origination)
            .media_id(media_id)
            .destination_s3_file(
                S3File::builder()
                    .bucket_name(&self.config.media_bucket)
                    .key(&prefix)
                    .build()
                    .map_err(|e| SenderError::Internal(e.to_string()))?,
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
            .map_err(|e| {
                SenderError::Unavailable(format!(
                    "listing staged media: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                ))
            })?;
        let key = listed
            .contents()
            .first()
            .and_then(|o| o.key())
            .ok_or_else(|| {
                SenderError::NotFound(format!("media {media_id} did not arrive in the bucket"))
            })?
            .to_owned();
        let object = self
            .s3
            .get_object()
            .bucket(&self.config.media_bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| {
                SenderError::Unavailable(format!(
                    "reading staged media: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                ))
            })?;
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
                            .send(Err(SenderError::Unavailable(format!(
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
