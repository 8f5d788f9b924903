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
    types::{ConnectionType, ParticipantRole, SortKey},
};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use parley_text::{CONNECT_TEXT_LIMIT, split_text};
use sha2::{Digest, Sha256};

use crate::error::{ErrorKind, RelayError, Result};

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
    /// Longest wait for an attachment URL's TCP (and TLS) connection.
    pub http_connect_timeout: std::time::Duration,
    /// Longest an attachment upload or download may take in all (20 MB
    /// over a slow link).
    pub http_timeout: std::time::Duration,
    /// The AWS configuration; `None` loads the standard chain (environment,
    /// profile, task or instance role) at start.
    pub aws: Option<aws_config::SdkConfig>,
}

impl RelayConfig {
    /// Reads `PARLEY_CONNECT_INSTANCE_ID`, `PARLEY_CONNECT_CONTACT_FLOW_ID`,
    /// `PARLEY_CONNECT_STREAMING_TOPIC_ARN`,
    /// `PARLEY_CONNECT_CHAT_DURATION_MINUTES`, `PARLEY_CONNECT_LOCAL_ORIGIN`
    /// and `PARLEY_CONNECT_HTTP_TIMEOUT_MS`, and validates them.
    pub fn from_settings(settings: &mut parley_runtime::config::Settings<'_>) -> Self {
        let defaults = Self::default();
        let config = Self {
            instance_id: settings.raw("connect_instance_id").unwrap_or_default(),
            contact_flow_id: settings.raw("connect_contact_flow_id").unwrap_or_default(),
            streaming_topic_arn: settings
                .raw("connect_streaming_topic_arn")
                .unwrap_or_default(),
            chat_duration_minutes: settings.parse(
                "connect_chat_duration_minutes",
                defaults.chat_duration_minutes,
            ),
            local_origin: settings.raw("connect_local_origin").unwrap_or_default(),
            http_timeout: settings.millis("connect_http_timeout_ms", defaults.http_timeout),
            ..defaults
        };
        for (name, problem) in config.problems() {
            settings.problem(name, problem);
        }
        config
    }

    /// What is wrong with this configuration, by setting name; empty when
    /// it can be used. Checked at start, so a bad deployment fails at once
    /// instead of on every call.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.instance_id.trim().is_empty() {
            problems.push((
                "connect_instance_id",
                "is required (the default Connect instance)".into(),
            ));
        }
        if self.contact_flow_id.trim().is_empty() {
            problems.push((
                "connect_contact_flow_id",
                "is required (the default inbound flow)".into(),
            ));
        }
        if !self.streaming_topic_arn.starts_with("arn:") {
            problems.push((
                "connect_streaming_topic_arn",
                "must be the ARN of the standard SNS topic agent messages are streamed to".into(),
            ));
        }
        if !(60..=10_080).contains(&self.chat_duration_minutes) {
            problems.push((
                "connect_chat_duration_minutes",
                "must be within 60..=10080".into(),
            ));
        }
        if self.http_timeout.is_zero() {
            problems.push(("connect_http_timeout_ms", "must be at least 1".into()));
        }
        problems
    }
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
            http_connect_timeout: std::time::Duration::from_secs(5),
            http_timeout: std::time::Duration::from_secs(120),
            aws: None,
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
    /// What the customer can see that Connect posted before streaming
    /// began, oldest first, without the customer's own messages (see
    /// [`Relay::earlier_items`]).
    pub earlier_items: Vec<TranscriptItem>,
}

/// One item of a chat's transcript, as the customer's participant reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TranscriptItem {
    /// Connect's item id (a streamed item's `Id` too).
    pub id: String,
    /// `MESSAGE`, `ATTACHMENT` or `EVENT`.
    pub kind: String,
    /// MIME type of the content.
    pub content_type: String,
    /// Text, or an event's JSON.
    pub content: String,
    /// `AGENT`, `SYSTEM`, `CUSTOM_BOT`, …
    pub participant_role: String,
    /// Who posted it, as shown.
    pub display_name: String,
    /// When Connect stamped it, epoch ms.
    pub absolute_time_ms: i64,
    /// Its attachments.
    pub attachments: Vec<TranscriptAttachment>,
}

/// An attachment on a transcript item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TranscriptAttachment {
    /// Connect's attachment id.
    pub id: String,
    /// File name.
    pub name: String,
    /// MIME type.
    pub content_type: String,
    /// `APPROVED`, `REJECTED` or `IN_PROGRESS`.
    pub status: String,
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

/// The content type agent-only notices are sent with.
pub const NOTICE_CONTENT_TYPE: &str = "application/json";

/// The body of an agent-only notice: `{"parleyNotice":{"version":1,
/// "kind":…,"text":…}}`. Lex bots and flow blocks read only text/plain (and
/// interactive responses) as customer input, so a JSON message is shown to
/// the agent and never taken for something the customer said.
pub fn notice_content(kind: &str, text: &str) -> Result<String> {
    if text.trim().is_empty() {
        return Err(RelayError::invalid("a notice needs text"));
    }
    if text.chars().count() > CONNECT_TEXT_LIMIT || kind.len() > 64 {
        return Err(RelayError::new(
            ErrorKind::Limit,
            format!("a notice's text is at most {CONNECT_TEXT_LIMIT} characters and its kind 64"),
        ));
    }
    Ok(serde_json::json!({
        "parleyNotice": { "version": 1, "kind": if kind.is_empty() { "notice" } else { kind }, "text": text }
    })
    .to_string())
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
        return Err(RelayError::invalid_media(format!(
            "Connect chat does not accept .{extension} attachments (allowed: {})",
            ALLOWED_EXTENSIONS.join(", ")
        )));
    }
    if size == 0 {
        return Err(RelayError::invalid_media(
            "attachment size must be declared and non-zero",
        ));
    }
    if size > MAX_ATTACHMENT_BYTES {
        return Err(RelayError::invalid_media(format!(
            "attachment of {size} bytes exceeds Connect's {MAX_ATTACHMENT_BYTES}-byte limit"
        )));
    }
    Ok(())
}

/// A transcript item from the SDK's.
fn transcript_item(item: &aws_sdk_connectparticipant::types::Item) -> TranscriptItem {
    TranscriptItem {
        id: item.id().unwrap_or_default().to_owned(),
        kind: item
            .r#type()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        content_type: item.content_type().unwrap_or_default().to_owned(),
        content: item.content().unwrap_or_default().to_owned(),
        participant_role: item
            .participant_role()
            .map(|r| r.as_str().to_owned())
            .unwrap_or_default(),
        display_name: item.display_name().unwrap_or_default().to_owned(),
        absolute_time_ms: epoch_ms(item.absolute_time()),
        attachments: item
            .attachments()
            .iter()
            .map(|a| TranscriptAttachment {
                id: a.attachment_id().unwrap_or_default().to_owned(),
                name: a.attachment_name().unwrap_or_default().to_owned(),
                content_type: a.content_type().unwrap_or_default().to_owned(),
                status: a
                    .status()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
            })
            .collect(),
    }
}

/// An ISO 8601 time (an expiry, an item's stamp) as epoch ms; 0 when
/// absent or malformed.
fn epoch_ms(expiry: Option<&str>) -> i64 {
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
        let http = reqwest::Client::builder()
            .connect_timeout(config.http_connect_timeout)
            .timeout(config.http_timeout)
            // Attachment URLs are followed only where url_allowed says.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            connect,
            participant,
            http,
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
            return Err(RelayError::new(
                ErrorKind::Configuration,
                "no Connect instance or contact flow configured",
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
        // No initial message (a chat opened by media): the flow starts
        // without one, and the media follows as an attachment.
        let first = parts.next().filter(|p| !p.trim().is_empty());
        let channel = if request.channel.is_empty() {
            "WhatsApp"
        } else {
            request.channel.as_str()
        };
        let internal = |e: aws_sdk_connect::error::BuildError| RelayError::internal(e.to_string());

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
            .set_initial_message(
                first
                    .map(|first| {
                        ChatMessage::builder()
                            .content_type(content_type)
                            .content(first)
                            .build()
                    })
                    .transpose()
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
        let participant_id = started.participant_id().unwrap_or_default().to_owned();
        let connected = self
            .stream_and_connect(
                instance,
                &contact_id,
                &participant_token,
                &request.client_token,
            )
            .await;
        let (connection_token, connection_expires_at_ms) = match connected {
            Ok(connection) => connection,
            Err(error) if error.retryable() => {
                // Transient: the contact stays; a retry with the same
                // client token gets it back from StartChatContact and
                // finishes these steps.
                return Err(error);
            }
            Err(mut error) => {
                // No half-started chat is left behind: stop the contact.
                // (The caller must then use a new client token: the old
                // one would return this stopped contact.)
                let stopped = self
                    .connect
                    .stop_contact()
                    .instance_id(instance)
                    .contact_id(&contact_id)
                    .send()
                    .await;
                error.message = match stopped {
                    Ok(_) => format!("{}; the new contact was stopped", error.message),
                    Err(e) => format!(
                        "{}; stopping the new contact failed too: {}",
                        error.message,
                        RelayError::from_sdk("StopContact", e)
                    ),
                };
                return Err(error);
            }
        };
        // Connect streams only what is posted after StartContactStreaming:
        // read what came before (a flow's greeting, a bot's prompt) so the
        // caller can send it as if streamed. A failure (the SDK has
        // retried throttling already) must not cost the customer the chat,
        // nor make every retry of a burst of new chats repeat four calls.
        let earlier_items = if self.config.streaming_topic_arn.is_empty() {
            Vec::new()
        } else {
            match self.earlier_items(&connection_token, &contact_id).await {
                Ok(items) => items,
                Err(error) => {
                    tracing::error!(%error, "the chat's earlier items cannot be read; a greeting posted before streaming began will not reach WhatsApp");
                    Vec::new()
                }
            }
        };
        let chat = StartedChat {
            contact_id,
            participant_id,
            participant_token,
            connection_token,
            connection_expires_at_ms,
            earlier_items,
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

    /// StartContactStreaming (when a topic is configured), then
    /// CreateParticipantConnection: a started contact's remaining steps.
    async fn stream_and_connect(
        &self,
        instance: &str,
        contact_id: &str,
        participant_token: &str,
        client_token: &str,
    ) -> Result<(String, i64)> {
        if !self.config.streaming_topic_arn.is_empty() {
            self.connect
                .start_contact_streaming()
                .instance_id(instance)
                .contact_id(contact_id)
                .chat_streaming_configuration(
                    ChatStreamingConfiguration::builder()
                        .streaming_endpoint_arn(&self.config.streaming_topic_arn)
                        .build()
                        .map_err(|e| RelayError::internal(e.to_string()))?,
                )
                .set_client_token(derive_token(client_token, "streaming"))
                .send()
                .await
                .map_err(|e| RelayError::from_sdk("StartContactStreaming", e))?;
        }
        self.refresh_connection(participant_token).await
    }

    /// The items of `contact_id` the customer can see, oldest first, the
    /// customer's own left out: GetTranscript as the customer's
    /// participant, a few pages at most (a chat that just opened has a
    /// handful). Items of earlier contacts (a persistent chat's history)
    /// are left out too.
    pub async fn earlier_items(
        &self,
        connection_token: &str,
        contact_id: &str,
    ) -> Result<Vec<TranscriptItem>> {
        const PAGES: usize = 4;
        let mut items = Vec::new();
        let mut next_token: Option<String> = None;
        for _ in 0..PAGES {
            let page = self
                .participant
                .get_transcript()
                .connection_token(connection_token)
                .max_results(100)
                .sort_order(SortKey::Ascending)
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|e| RelayError::from_sdk("GetTranscript", e))?;
            items.extend(
                page.transcript()
                    .iter()
                    .filter(|item| {
                        item.participant_role() != Some(&ParticipantRole::Customer)
                            && item
                                .contact_id()
                                .is_none_or(|c| c.is_empty() || c == contact_id)
                    })
                    .map(transcript_item),
            );
            next_token = page
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if next_token.is_none() {
                break;
            }
        }
        items.sort_by(|a, b| {
            a.absolute_time_ms
                .cmp(&b.absolute_time_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        items.dedup_by(|a, b| a.id == b.id);
        Ok(items)
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
            RelayError::internal("CreateParticipantConnection returned no credentials")
        })?;
        Ok((
            credentials
                .connection_token()
                .unwrap_or_default()
                .to_owned(),
            epoch_ms(credentials.expiry()),
        ))
    }

    /// Sends text, split in order at Connect's limit; one message id per
    /// part, each part with its own ClientToken derived from
    /// `client_token`. A failure part-way lists the parts already sent.
    pub async fn send_message(
        &self,
        connection_token: &str,
        content_type: &str,
        content: &str,
        client_token: &str,
    ) -> Result<Vec<String>> {
        if content.is_empty() {
            return Err(RelayError::invalid("message content is empty"));
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
                .map_err(|e| RelayError::from_sdk("SendMessage", e).with_completed(ids.clone()))?;
            ids.push(sent.id().unwrap_or_default().to_owned());
        }
        Ok(ids)
    }

    /// Sends a notice meant for the agent only (see [`notice_content`]).
    pub async fn send_notice(
        &self,
        connection_token: &str,
        kind: &str,
        text: &str,
        client_token: &str,
    ) -> Result<String> {
        let content = notice_content(kind, text)?;
        let ids = self
            .send_message(
                connection_token,
                NOTICE_CONTENT_TYPE,
                &content,
                client_token,
            )
            .await?;
        Ok(ids.into_iter().next().unwrap_or_default())
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
        let metadata = started
            .upload_metadata()
            .ok_or_else(|| RelayError::internal("StartAttachmentUpload returned no upload URL"))?;
        let url = metadata.url().unwrap_or_default();
        if !self.url_allowed(url) {
            return Err(RelayError::internal("refusing an upload URL outside AWS"));
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
            .map_err(|e| RelayError::unavailable(format!("attachment upload failed: {e}")))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            let message = format!(
                "attachment upload refused ({status}): {}",
                body.chars().take(300).collect::<String>()
            );
            // A 5xx is the store's trouble; a 403 an expired or refused
            // pre-signed URL: both go away with a fresh upload.
            return Err(
                if status.is_server_error() || status == reqwest::StatusCode::FORBIDDEN {
                    RelayError::unavailable(message)
                } else {
                    RelayError::invalid(message)
                },
            );
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
            return Err(RelayError::internal(
                "refusing to follow an attachment URL outside AWS",
            ));
        }
        let response = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| RelayError::unavailable(format!("attachment download failed: {e}")))?;
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
                .map_err(|e| RelayError::unavailable(format!("attachment download broke off: {e}")))
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
        let ogg = check_attachment("voice.ogg", 1_000).unwrap_err();
        assert_eq!(ogg.kind, ErrorKind::InvalidMedia);
        assert!(ogg.message.contains(".ogg"));
        assert_eq!(
            check_attachment("big.pdf", MAX_ATTACHMENT_BYTES + 1)
                .unwrap_err()
                .kind,
            ErrorKind::InvalidMedia
        );
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
    fn notices_are_json_the_agent_reads_and_bots_ignore() {
        let content =
            notice_content("unsupported_media", "The customer sent a sticker \"x\"").unwrap();
        let value: serde_json::Value = serde_json::from_str(&content).unwrap();
        assert_eq!(value["parleyNotice"]["kind"], "unsupported_media");
        assert_eq!(
            value["parleyNotice"]["text"],
            "The customer sent a sticker \"x\""
        );
        assert_eq!(value["parleyNotice"]["version"], 1);
        assert_eq!(
            notice_content("x", " ").unwrap_err().kind,
            ErrorKind::Invalid
        );
        assert_eq!(
            notice_content("x", &"y".repeat(1_025)).unwrap_err().kind,
            ErrorKind::Limit
        );
    }

    #[test]
    fn expiry_parses_iso8601() {
        assert_eq!(epoch_ms(Some("2025-11-11T02:24:27Z")), 1_762_827_867_000);
        assert_eq!(epoch_ms(Some("nonsense")), 0);
    }
}
