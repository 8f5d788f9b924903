//! The relay's logic over the real AWS SDK clients: start a chat (and
//! connect the customer), send text (split to Connect's limit), move
//! attachments in and out (streamed, checked first), send events, refresh
//! and disconnect.

use std::collections::HashMap;

use aws_sdk_connect::types::{
    ChatMessage, ChatStreamingConfiguration, ParticipantDetails, PersistentChat, RehydrationType,
};
use aws_sdk_connectparticipant::{
    primitives::{DateTime, DateTimeFormat},
    types::ConnectionType,
};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use parley_text::{CONNECT_TEXT_LIMIT, split_text};
use sha2::{Digest, Sha256};

use crate::error::{RelayError, Result};

/// Connect chat's attachment size limit.
pub const MAX_ATTACHMENT_BYTES: u64 = 20 * 1024 * 1024;
/// Extensions Connect chat accepts as attachments.
pub const ALLOWED_EXTENSIONS: [&str; 18] = [
    "csv", "doc", "docx", "heic", "jfif", "jpeg", "jpg", "mov", "mp4", "pdf", "png", "ppt", "pptx",
    "rtf", "txt", "wav", "xls", "xlsx",
];
/// Content types the bridge declares it can show the customer.
const SUPPORTED_CONTENT_TYPES: [&str; 5] = [
    "text/plain",
    "text/markdown",
    "application/json",
    "application/vnd.amazonaws.connect.message.interactive",
    "application/vnd.amazonaws.connect.message.interactive.response",
];

/// Settings of the relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Default Connect instance.
    pub instance_id: String,
    /// Default inbound contact flow.
    pub contact_flow_id: String,
    /// SNS topic for Connect's chat streaming (outbound messages).
    pub streaming_topic_arn: String,
    /// Default chat duration, minutes (60..=10080).
    pub chat_duration_minutes: i32,
    /// Attachment URLs are only followed to https hosts ending in one of
    /// these (no SSRF through a forged URL).
    pub allowed_url_host_suffixes: Vec<String>,
    /// An extra origin (`http://127.0.0.1:4599`) allowed for local runs
    /// against the sandbox; empty in production.
    pub local_origin: String,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            instance_id: String::new(),
            contact_flow_id: String::new(),
            streaming_topic_arn: String::new(),
            chat_duration_minutes: 1_500,
            allowed_url_host_suffixes: vec![".amazonaws.com".into()],
            local_origin: String::new(),
        }
    }
}

/// What the caller needs to start a chat.
#[derive(Debug, Clone, Default)]
pub struct StartChat {
    /// Business number id (written into the contact attributes).
    pub business_number_id: String,
    /// Customer WhatsApp id (written into the contact attributes).
    pub customer_id: String,
    /// Overrides of the configured instance and flow.
    pub instance_id: String,
    /// Contact flow override.
    pub contact_flow_id: String,
    /// Customer display name; a placeholder when empty.
    pub display_name: String,
    /// First message; split when longer than Connect's limit.
    pub initial_message: String,
    /// Its content type.
    pub content_type: String,
    /// Minutes, 0 for the default.
    pub chat_duration_minutes: u32,
    /// Idempotency token from the triggering message.
    pub client_token: String,
    /// Extra contact attributes.
    pub attributes: HashMap<String, String>,
    /// Channel label; `WhatsApp` when empty.
    pub channel: String,
    /// Previous contact to rehydrate from, and how.
    pub persistent_chat: Option<(String, String)>,
}

/// A started and connected chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedChat {
    /// Contact id (also the initial contact id).
    pub contact_id: String,
    /// Customer participant id.
    pub participant_id: String,
    /// Participant token.
    pub participant_token: String,
    /// Connection token.
    pub connection_token: String,
    /// Its expiry, epoch ms.
    pub connection_expires_at_ms: i64,
}

/// An attachment being fetched: its facts and a byte stream.
pub struct FetchedAttachment {
    /// MIME type reported by the download.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
    /// The bytes.
    pub body: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>,
}

/// Derives a stable sub-token (e.g. one per message part) from a client
/// token, so retries of the same request stay idempotent.
pub fn derive_token(base: &str, part: &str) -> Option<String> {
    if base.is_empty() {
        return None;
    }
    let digest = Sha256::digest(format!("{base}#{part}"));
    Some(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks an attachment against Connect chat's allow-list and size limit.
pub fn check_attachment(file_name: &str, size: u64) -> Result<()> {
    let extension = file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if !ALLOWED_EXTENSIONS.contains(&extension.as_str()) {
        return Err(RelayError::InvalidMedia(format!(
            "Connect chat does not accept .{extension} attachments (allowed: {})",
            ALLOWED_EXTENSIONS.join(", ")
        )));
    }
    if size == 0 {
        return Err(RelayError::InvalidMedia(
            "attachment size must be declared and non-zero".into(),
        ));
    }
    if size > MAX_ATTACHMENT_BYTES {
        return Err(RelayError::InvalidMedia(format!(
            "attachment of {size} bytes exceeds Connect's {MAX_ATTACHMENT_BYTES}-byte limit"
        )));
    }
    Ok(())
}

fn expiry_ms(expiry: Option<&str>) -> i64 {
    expiry
        .and_then(|e| DateTime::from_str(e, DateTimeFormat::DateTime).ok())
        .and_then(|d| d.to_millis().ok())
        .unwrap_or(0)
}

/// The relay over the two SDK clients and an HTTP client for attachments.
#[derive(Clone)]
pub struct Relay {
    connect: aws_sdk_connect::Client,
    participant: aws_sdk_connectparticipant::Client,
    http: reqwest::Client,
    config: RelayConfig,
}

impl Relay {
    /// A relay with these clients and settings.
    pub fn new(
        connect: aws_sdk_connect::Client,
        participant: aws_sdk_connectparticipant::Client,
        config: RelayConfig,
    ) -> Self {
        Self {
            connect,
            participant,
            http: reqwest::Client::new(),
            config,
        }
    }

    /// Whether `url` may be followed: https on an AWS host, or the
    /// configured local origin.
    pub fn url_allowed(&self, url: &str) -> bool {
        if !self.config.local_origin.is_empty()
            && url.starts_with(&format!("{}/", self.config.local_origin))
        {
            return true;
        }
        let Ok(parsed) = reqwest::Url::parse(url) else {
            return false;
        };
        parsed.scheme() == "https"
            && parsed.username().is_empty()
            && parsed.password().is_none()
            && parsed.host_str().is_some_and(|host| {
                self.config
                    .allowed_url_host_suffixes
                    .iter()
                    .any(|suffix| host.ends_with(suffix.as_str()))
            })
    }

    /// StartChatContact → StartContactStreaming → CreateParticipantConnection,
    /// then the rest of a long initial message.
    pub async fn start_chat(&self, request: StartChat) -> Result<StartedChat> {
        let instance = if request.instance_id.is_empty() {
            &self.config.instance_id
        } else {
            &request.instance_id
        };
        let flow = if request.contact_flow_id.is_empty() {
            &self.config.contact_flow_id
        } else {
            &request.contact_flow_id
        };
        if instance.is_empty() || flow.is_empty() {
            return Err(RelayError::Invalid(
                "no Connect instance or contact flow configured".into(),
            ));
        }
        let display_name: String = match request.display_name.trim() {
            "" => "WhatsApp customer".to_owned(),
            name => name.chars().take(256).collect(),
        };
        let content_type = if request.content_type.is_empty() {
            "text/plain"
        } else {
            request.content_type.as_str()
        };
        let mut parts = split_text(&request.initial_message, CONNECT_TEXT_LIMIT).into_iter();
        let first = parts
            .next()
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| "New conversation".into());
        let channel = if request.channel.is_empty() {
            "WhatsApp"
        } else {
            request.channel.as_str()
        };
        let internal = |e: aws_sdk_connect::error::BuildError| RelayError::Internal(e.to_string());

        let mut start = self
            .connect
            .start_chat_contact()
            .instance_id(instance)
            .contact_flow_id(flow)
            .participant_details(
                ParticipantDetails::builder()
                    .display_name(display_name)
                    .build()
                    .map_err(internal)?,
            )
            .initial_message(
                ChatMessage::builder()
                    .content_type(content_type)
                    .content(first)
                    .build()
                    .map_err(internal)?,
            )
            .chat_duration_in_minutes(match request.chat_duration_minutes {
                0 => self.config.chat_duration_minutes,
                m => m as i32,
            })
            .attributes("Channel", channel)
            .attributes("customerId", &request.customer_id)
            .attributes("systemNumber", &request.business_number_id);
        for (k, v) in &request.attributes {
            start = start.attributes(k, v);
        }
        for t in SUPPORTED_CONTENT_TYPES {
            start = start.supported_messaging_content_types(t);
        }
        if !request.client_token.is_empty() {
            start = start.client_token(&request.client_token);
        }
        if let Some((source, rehydration)) = &request.persistent_chat {
            start = start.persistent_chat(
                PersistentChat::builder()
                    .source_contact_id(source)
                    .rehydration_type(RehydrationType::from(rehydration.as_str()))
                    .build(),
            );
        }
        let started = start
            .send()
            .await
            .map_err(|e| RelayError::from_sdk("StartChatContact", e))?;
        let contact_id = started.contact_id().unwrap_or_default().to_owned();
        let participant_token = started.participant_token().unwrap_or_default().to_owned();

        if !self.config.streaming_topic_arn.is_empty() {
            self.connect
                .start_contact_streaming()
                .instance_id(instance)
                .contact_id(&contact_id)
                .chat_streaming_configuration(
                    ChatStreamingConfiguration::builder()
                        .streaming_endpoint_arn(&self.config.streaming_topic_arn)
                        .build()
                        .map_err(internal)?,
                )
                .set_client_token(derive_token(&request.client_token, "streaming"))
                .send()
                .await
                .map_err(|e| RelayError::from_sdk("StartContactStreaming", e))?;
        }
        let (connection_token, connection_expires_at_ms) =
            self.refresh_connection(&participant_token).await?;
        let chat = StartedChat {
            contact_id,
            participant_id: started.participant_id().unwrap_or_default().to_owned(),
            participant_token,
            connection_token,
            connection_expires_at_ms,
        };
        let rest: String = parts.collect();
        if !rest.is_empty() {
            self.send_message(
                &chat.connection_token,
                content_type,
                &rest,
                &request.client_token,
            )
            .await?;
        }
        Ok(chat)
    }

    /// CreateParticipantConnection with the participant token: a fresh
    /// connection token and its expiry (epoch ms).
    pub async fn refresh_connection(&self, participant_token: &str) -> Result<(String, i64)> {
        let connection = self
            .participant
            .create_participant_connection()
            .participant_token(participant_token)
            .r#type(ConnectionType::ConnectionCredentials)
            .connect_participant(true)
            .send()
            .await
            .map_err(|e| RelayError::from_sdk("CreateParticipantConnection", e))?;
        let credentials = connection.connection_credentials().ok_or_else(|| {
            RelayError::Internal("CreateParticipantConnection returned no credentials".into())
        })?;
        Ok((
            credentials
                .connection_token()
                .unwrap_or_default()
                .to_owned(),
            expiry_ms(credentials.expiry()),
        ))
    }

    /// Sends text, split in order at Connect's limit; one message id per part.
    pub async fn send_message(
        &self,
        connection_token: &str,
        content_type: &str,
        content: &str,
        client_token: &str,
    ) -> Result<Vec<String>> {
        if content.is_empty() {
            return Err(RelayError::Invalid("message content is empty".into()));
        }
        let parts = match content_type {
            "text/plain" | "text/markdown" => split_text(content, CONNECT_TEXT_LIMIT),
            _ => vec![content.to_owned()],
        };
        let mut ids = Vec::with_capacity(parts.len());
        for (index, part) in parts.iter().enumerate() {
            let sent = self
                .participant
                .send_message()
                .connection_token(connection_token)
                .content_type(content_type)
                .content(part)
                .set_client_token(derive_token(client_token, &format!("part-{index}")))
                .send()
                .await
                .map_err(|e| RelayError::from_sdk("SendMessage", e))?;
            ids.push(sent.id().unwrap_or_default().to_owned());
        }
        Ok(ids)
    }

    /// Sends a typing indicator or a delivered/read receipt.
    pub async fn send_event(
        &self,
        connection_token: &str,
        content_type: &str,
        content: Option<String>,
        client_token: &str,
    ) -> Result<String> {
        let sent = self
            .participant
            .send_event()
            .connection_token(connection_token)
            .content_type(content_type)
            .set_content(content)
            .set_client_token(derive_token(client_token, "event"))
            .send()
            .await
            .map_err(|e| RelayError::from_sdk("SendEvent", e))?;
        Ok(sent.id().unwrap_or_default().to_owned())
    }

    /// StartAttachmentUpload → PUT (streamed) → CompleteAttachmentUpload.
    /// The body must be exactly `size` bytes.
    pub async fn send_attachment<S>(
        &self,
        connection_token: &str,
        file_name: &str,
        content_type: &str,
        size: u64,
        client_token: &str,
        body: S,
    ) -> Result<String>
    where
        S: Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + Sync + 'static,
    {
        check_attachment(file_name, size)?;
        let started = self
            .participant
            .start_attachment_upload()
            .connection_token(connection_token)
            .content_type(content_type)
            .attachment_size_in_bytes(size as i64)
            .attachment_name(file_name)
            .set_client_token(derive_token(client_token, "upload"))
            .send()
            .await
            .map_err(|e| RelayError::from_sdk("StartAttachmentUpload", e))?;
        let attachment_id = started.attachment_id().unwrap_or_default().to_owned();
        let metadata = started.upload_metadata().ok_or_else(|| {
            RelayError::Internal("StartAttachmentUpload returned no upload URL".into())
        })?;
        let url = metadata.url().unwrap_or_default();
        if !self.url_allowed(url) {
            return Err(RelayError::Internal(
                "refusing an upload URL outside AWS".into(),
            ));
        }
        let mut put = self
            .http
            .put(url)
            .header("content-length", size)
            .body(reqwest::Body::wrap_stream(body));
        for (name, value) in metadata.headers_to_include().into_iter().flatten() {
            put = put.header(name.as_str(), value.as_str());
        }
        let response = put
            .send()
            .await
            .map_err(|e| RelayError::Unavailable(format!("attachment upload failed: {e}")))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(RelayError::Invalid(format!(
                "attachment upload refused ({status}): {body}"
            )));
        }
        self.participant
            .complete_attachment_upload()
            .connection_token(connection_token)
            .attachment_ids(&attachment_id)
            .set_client_token(derive_token(client_token, "complete"))
            .send()
            .await
            .map_err(|e| RelayError::from_sdk("CompleteAttachmentUpload", e))?;
        Ok(attachment_id)
    }

    /// GetAttachment → download from the signed URL, streamed.
    pub async fn fetch_attachment(
        &self,
        connection_token: &str,
        attachment_id: &str,
    ) -> Result<FetchedAttachment> {
        let found = self
            .participant
            .get_attachment()
            .connection_token(connection_token)
            .attachment_id(attachment_id)
            .send()
            .await
            .map_err(|e| RelayError::from_sdk("GetAttachment", e))?;
        let url = found.url().unwrap_or_default();
        if !self.url_allowed(url) {
            return Err(RelayError::Internal(
                "refusing to follow an attachment URL outside AWS".into(),
            ));
        }
        let response = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| RelayError::Unavailable(format!("attachment download failed: {e}")))?;
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let size = response
            .content_length()
            .unwrap_or(found.attachment_size_in_bytes().max(0) as u64);
        let body = response.bytes_stream().map(|chunk| {
            chunk
                .map_err(|e| RelayError::Unavailable(format!("attachment download broke off: {e}")))
        });
        Ok(FetchedAttachment {
            content_type,
            size,
            body: Box::pin(body),
        })
    }

    /// Leaves the chat as the customer.
    pub async fn disconnect(&self, connection_token: &str, client_token: &str) -> Result<()> {
        self.participant
            .disconnect_participant()
            .connection_token(connection_token)
            .set_client_token(derive_token(client_token, "disconnect"))
            .send()
            .await
            .map_err(|e| RelayError::from_sdk("DisconnectParticipant", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_are_checked_before_any_call() {
        assert!(check_attachment("voice.wav", 1_000).is_ok());
        assert!(
            matches!(check_attachment("voice.ogg", 1_000), Err(RelayError::InvalidMedia(m)) if m.contains(".ogg"))
        );
        assert!(matches!(
            check_attachment("big.pdf", MAX_ATTACHMENT_BYTES + 1),
            Err(RelayError::InvalidMedia(_))
        ));
        assert!(check_attachment("photo.JPG", 10).is_ok());
    }

    #[test]
    fn derived_tokens_are_stable_and_distinct() {
        assert_eq!(
            derive_token("wamid.1", "part-0"),
            derive_token("wamid.1", "part-0")
        );
        assert_ne!(
            derive_token("wamid.1", "part-0"),
            derive_token("wamid.1", "part-1")
        );
        assert_eq!(derive_token("", "part-0"), None);
    }

    #[test]
    fn expiry_parses_iso8601() {
        assert_eq!(expiry_ms(Some("2025-11-11T02:24:27Z")), 1_762_827_867_000);
        assert_eq!(expiry_ms(Some("nonsense")), 0);
    }
}
