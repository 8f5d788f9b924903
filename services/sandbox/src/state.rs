//! The emulated world: contacts, participants, connections, transcripts and
//! attachments, with the rules the real services enforce.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::aws::{Api, AwsError, AwsResult};

/// Connect's limit on a chat message's content (every content type), in
/// bytes, per the current API reference. (Some channels enforce less:
/// Parley splits text at 1,024 characters anyway.)
pub const MAX_MESSAGE_BYTES: usize = 16_384;
/// Connect chat's attachment size limit.
pub const MAX_ATTACHMENT_BYTES: u64 = 20 * 1024 * 1024;
/// File extensions Connect chat accepts as attachments.
pub const ALLOWED_EXTENSIONS: [&str; 18] = [
    "csv", "doc", "docx", "heic", "jfif", "jpeg", "jpg", "mov", "mp4", "pdf", "png", "ppt", "pptx",
    "rtf", "txt", "wav", "xls", "xlsx",
];

/// Sandbox settings.
#[derive(Clone)]
pub struct SandboxConfig {
    /// Base URL the sandbox is reachable at, used in upload/download URLs.
    /// Empty: filled in with the listening address.
    pub public_url: String,
    /// How long connection tokens live (Connect: one day).
    pub connection_ttl: Duration,
    /// The S3 (moto) that WhatsApp media moves through.
    pub s3: Option<aws_sdk_s3::Client>,
    /// The SNS (moto) Connect streaming events and customer webhooks are
    /// published to; `None`: the sandbox plays SNS itself, delivering to
    /// its HTTP subscribers.
    pub sns: Option<aws_sdk_sns::Client>,
    /// The WhatsApp business numbers customers write to (the first is the
    /// default).
    pub whatsapp_numbers: Vec<crate::customer::WhatsAppNumber>,
    /// The topic EUM publishes customer webhooks to.
    pub inbound_topic_arn: String,
    /// Connect instances that exist; empty: any instance id is accepted.
    /// StartChatContact on another answers ResourceNotFoundException.
    pub known_instances: Vec<String>,
    /// Keep attachment bytes and transcription audio (tests inspect them);
    /// off for long load tests, where only sizes and the observation log
    /// are needed and the bytes would grow without bound.
    pub retain_payloads: bool,
    /// A message the contact flow posts (as `SYSTEM`) the moment a chat
    /// starts — before anyone can have started streaming, so only the
    /// transcript has it, as with a real flow's greeting or bot prompt.
    pub flow_greeting: Option<String>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            public_url: String::new(),
            connection_ttl: Duration::from_secs(24 * 3600),
            s3: None,
            sns: None,
            whatsapp_numbers: vec![crate::customer::WhatsAppNumber::default()],
            inbound_topic_arn: format!(
                "arn:aws:sns:us-east-1:{}:parley-eum-in",
                crate::sns::ACCOUNT_ID
            ),
            known_instances: Vec::new(),
            retain_payloads: true,
            flow_greeting: None,
        }
    }
}

/// Now, epoch milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An id in Connect's style.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// One entry of a chat transcript.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChatItem {
    /// Message or event id.
    pub id: String,
    /// `MESSAGE`, `EVENT` or `ATTACHMENT`.
    pub kind: String,
    /// `CUSTOMER`, `AGENT` or `SYSTEM`.
    pub role: String,
    /// Content type as sent.
    pub content_type: String,
    /// Content (message text, event payload, or attachment id).
    pub content: String,
    /// When it happened.
    pub at_ms: i64,
}

/// One emulated chat contact.
#[derive(Debug, Clone, Serialize)]
pub struct Contact {
    /// Current contact id.
    pub contact_id: String,
    /// Initial contact id.
    pub initial_contact_id: String,
    /// Instance it was started on.
    pub instance_id: String,
    /// Contact flow.
    pub contact_flow_id: String,
    /// Contact attributes as given.
    pub attributes: HashMap<String, String>,
    /// Customer display name.
    pub display_name: String,
    /// The customer participant.
    pub participant_id: String,
    /// Chat duration requested.
    pub chat_duration_minutes: i64,
    /// Where streaming events go, once StartContactStreaming was called.
    pub streaming_endpoint: Option<String>,
    /// Whether the customer connected (CreateParticipantConnection with ConnectParticipant).
    pub customer_connected: bool,
    /// Whether the customer left.
    pub disconnected: bool,
    /// Whether the chat ended (agent closed it, or the contact was stopped).
    pub ended: bool,
    /// Attributes set with UpdateContactAttributes, merged.
    #[serde(skip)]
    pub updated_attributes: HashMap<String, String>,
    /// Everything said and done in the chat, in order.
    pub transcript: Vec<ChatItem>,
    /// Content types the client declared it supports.
    pub supported_content_types: Vec<String>,
}

/// An attachment on its way in or stored.
#[derive(Debug, Clone, Serialize)]
pub struct Attachment {
    /// Id.
    pub id: String,
    /// Contact it belongs to.
    pub contact_id: String,
    /// File name.
    pub name: String,
    /// MIME type.
    pub content_type: String,
    /// Declared size.
    pub size: u64,
    /// The bytes, once uploaded.
    #[serde(skip)]
    pub bytes: Option<Vec<u8>>,
    /// Completed (CompleteAttachmentUpload) and so visible in the chat.
    pub completed: bool,
}

/// Media known to the emulated WhatsApp.
#[derive(Debug, Clone)]
pub struct WhatsAppMedia {
    /// Media id.
    pub id: String,
    /// MIME type.
    pub mime_type: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A WhatsApp message Parley "sent".
#[derive(Debug, Clone, Serialize)]
pub struct SentWhatsApp {
    /// The id returned.
    pub message_id: String,
    /// The business number it was sent from.
    pub origination: String,
    /// The Meta Cloud API payload, decoded.
    pub message: serde_json::Value,
}

#[derive(Debug, Clone)]
struct Connection {
    contact_id: String,
    expires_at_ms: i64,
}

#[derive(Default)]
struct World {
    contacts: HashMap<String, Contact>,
    participant_tokens: HashMap<String, String>,
    connections: HashMap<String, Connection>,
    idempotent: HashMap<String, serde_json::Value>,
    attachments: HashMap<String, Attachment>,
    throttled_until_ms: i64,
    throttle_remaining: u32,
    throttle_skip: u32,
    upload_failures: Vec<u16>,
    calls: Vec<String>,
    whatsapp_media: HashMap<String, WhatsAppMedia>,
    whatsapp_sent: Vec<SentWhatsApp>,
    transcription_requests: Vec<TranscriptionRequest>,
    transcribe_failure: Option<TranscribeFailure>,
    transcriptions_open: usize,
    transcriptions_peak: usize,
    observations: Vec<Observation>,
}

/// What the sandbox has seen arrive, as the agent or the customer would
/// see it: the log a load test measures arrival, order and content
/// against (`GET /_sandbox/observed?after=N`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observation {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When the sandbox saw it, epoch microseconds.
    pub at_us: i64,
    /// What arrived.
    pub kind: ObservedKind,
    /// The contact it arrived on (agent side); empty for WhatsApp sends.
    pub contact_id: String,
    /// The customer a WhatsApp message went to; empty on the agent side.
    pub to: String,
    /// The text of a message, or an attachment's file name.
    pub content: String,
    /// An attachment's size in bytes; 0 otherwise.
    pub size: u64,
}

/// Kinds of [`Observation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObservedKind {
    /// A customer's message, visible to the agent in the chat.
    AgentMessage,
    /// A customer's attachment, completed and visible to the agent.
    AgentAttachment,
    /// A WhatsApp message sent to the customer.
    CustomerWhatsApp,
}

/// What a Transcribe Streaming request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptionRequest {
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub http_version: String,
    /// Its `x-amzn-transcribe-*` headers.
    pub headers: HashMap<String, String>,
    /// The audio of each event, as it arrived.
    pub audio_events: Vec<Vec<u8>>,
}

/// A failure armed for the next transcription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscribeFailure {
    /// The exception, e.g. `LimitExceededException`.
    pub exception: String,
    /// Refuse the request (HTTP error) rather than fail mid-stream.
    pub at_start: bool,
}

/// The sandbox: configuration plus the emulated world.
pub struct Sandbox {
    /// Settings.
    pub config: SandboxConfig,
    world: Mutex<World>,
    /// SNS topics and HTTP subscriptions (when the sandbox plays SNS).
    pub topics: crate::sns::Topics,
    /// The S3 buckets (when no moto is configured).
    pub buckets: crate::s3::Buckets,
    /// For SNS HTTP deliveries.
    pub http: reqwest::Client,
}

impl std::fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// An empty world.
    pub fn new(config: SandboxConfig) -> Self {
        Self {
            config,
            world: Mutex::new(World::default()),
            topics: crate::sns::Topics::default(),
            buckets: crate::s3::Buckets::default(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap_or_default(),
        }
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way later calls would trip on, so keep serving.
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an API call; fails it (as `api` throttles) when throttling
    /// is armed.
    pub fn enter(&self, api: Api, operation: &str) -> AwsResult<()> {
        let mut world = self.world();
        world.calls.push(operation.to_owned());
        if world.throttle_skip > 0 {
            world.throttle_skip -= 1;
            return Ok(());
        }
        if world.throttle_remaining > 0 {
            world.throttle_remaining -= 1;
            return Err(AwsError::throttled(api, operation));
        }
        if world.throttled_until_ms > now_ms() {
            return Err(AwsError::throttled(api, operation));
        }
        Ok(())
    }

    /// Throttles every call for `duration` from now: a storm that clears
    /// with time, as AWS's do.
    pub fn throttle_for(&self, duration: Duration) {
        self.world().throttled_until_ms = now_ms() + duration.as_millis() as i64;
    }

    /// Makes the next attachment uploads (PUTs to the upload URL) answer
    /// these HTTP statuses, one each, as S3 sometimes does.
    pub fn fail_next_uploads(&self, statuses: &[u16]) {
        self.world().upload_failures = statuses.to_vec();
    }

    /// The next armed upload failure, if any.
    pub fn take_upload_failure(&self) -> Option<u16> {
        let mut world = self.world();
        (!world.upload_failures.is_empty()).then(|| world.upload_failures.remove(0))
    }

    /// Every contact, in no particular order.
    pub fn contacts(&self) -> Vec<Contact> {
        let mut contacts: Vec<Contact> = self.world().contacts.values().cloned().collect();
        contacts.sort_by_key(|c| c.transcript.first().map_or(0, |i| i.at_ms));
        contacts
    }

    /// Every attachment of a contact.
    pub fn attachments_of(&self, contact_id: &str) -> Vec<Attachment> {
        self.world()
            .attachments
            .values()
            .filter(|a| a.contact_id == contact_id)
            .cloned()
            .collect()
    }

    /// Operations called so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.world().calls.clone()
    }

    /// Makes the next `count` API calls fail with the API's throttling error.
    pub fn throttle_next(&self, count: u32) {
        self.throttle_after(0, count);
    }

    /// Lets `skip` calls through, then throttles the `count` after them
    /// (a failure part-way through a multi-call operation).
    pub fn throttle_after(&self, skip: u32, count: u32) {
        let mut world = self.world();
        world.throttle_skip = skip;
        world.throttle_remaining = count;
    }

    /// Expires every connection token now.
    pub fn expire_connections(&self) {
        for connection in self.world().connections.values_mut() {
            connection.expires_at_ms = 0;
        }
    }

    /// A response stored under an idempotency token, if any.
    pub fn idempotent(&self, operation: &str, token: &str) -> Option<serde_json::Value> {
        self.world()
            .idempotent
            .get(&format!("{operation}#{token}"))
            .cloned()
    }

    /// Remembers a response under an idempotency token.
    pub fn remember(&self, operation: &str, token: &str, response: &serde_json::Value) {
        self.world()
            .idempotent
            .insert(format!("{operation}#{token}"), response.clone());
    }

    /// Adds a contact and returns its participant token.
    pub fn add_contact(&self, contact: Contact) -> String {
        let token = format!("ptok-{}", new_id());
        let mut world = self.world();
        world
            .participant_tokens
            .insert(token.clone(), contact.contact_id.clone());
        world.contacts.insert(contact.contact_id.clone(), contact);
        token
    }

    /// A contact by id.
    pub fn contact(&self, contact_id: &str) -> Option<Contact> {
        self.world().contacts.get(contact_id).cloned()
    }

    /// Changes a contact.
    pub fn update_contact<T>(
        &self,
        contact_id: &str,
        change: impl FnOnce(&mut Contact) -> T,
    ) -> AwsResult<T> {
        let mut world = self.world();
        let contact = world.contacts.get_mut(contact_id).ok_or_else(|| {
            AwsError::not_found(Api::Connect, format!("contact {contact_id} not found"))
        })?;
        Ok(change(contact))
    }

    /// Creates a connection from a participant token.
    pub fn connect(
        &self,
        participant_token: &str,
        connect_participant: bool,
    ) -> AwsResult<(String, i64)> {
        let mut world = self.world();
        let contact_id = world
            .participant_tokens
            .get(participant_token)
            .cloned()
            .ok_or_else(|| {
                AwsError::access_denied(Api::Participant, "participant token is not valid")
            })?;
        let contact = world
            .contacts
            .get_mut(&contact_id)
            .ok_or_else(|| AwsError::access_denied(Api::Participant, "chat has ended"))?;
        if contact.disconnected || contact.ended {
            return Err(AwsError::access_denied(
                Api::Participant,
                "the chat has ended or the participant has left it",
            ));
        }
        contact.customer_connected |= connect_participant;
        let token = format!("ctok-{}", new_id());
        let expires_at_ms = now_ms() + self.config.connection_ttl.as_millis() as i64;
        world.connections.insert(
            token.clone(),
            Connection {
                contact_id,
                expires_at_ms,
            },
        );
        Ok((token, expires_at_ms))
    }

    /// The contact a live connection token belongs to.
    pub fn authorise(&self, connection_token: &str) -> AwsResult<String> {
        let world = self.world();
        let connection = world.connections.get(connection_token).ok_or_else(|| {
            AwsError::access_denied(Api::Participant, "connection token is not valid")
        })?;
        if connection.expires_at_ms <= now_ms() {
            return Err(AwsError::access_denied(
                Api::Participant,
                "connection token has expired",
            ));
        }
        match world.contacts.get(&connection.contact_id) {
            Some(contact) if !contact.disconnected && !contact.ended => {
                Ok(connection.contact_id.clone())
            }
            _ => Err(AwsError::access_denied(
                Api::Participant,
                "the chat has ended or the participant has left it",
            )),
        }
    }

    /// Gives a contact a new contact id, as a transfer does; the initial
    /// contact id and the tokens stay. Returns the new id.
    pub fn transfer(&self, contact_id: &str) -> AwsResult<String> {
        let mut world = self.world();
        let mut contact = world.contacts.remove(contact_id).ok_or_else(|| {
            AwsError::not_found(Api::Connect, format!("contact {contact_id} not found"))
        })?;
        let new_id = new_id();
        contact.contact_id = new_id.clone();
        for connection in world.connections.values_mut() {
            if connection.contact_id == contact_id {
                connection.contact_id = new_id.clone();
            }
        }
        for owner in world.participant_tokens.values_mut() {
            if owner == contact_id {
                *owner = new_id.clone();
            }
        }
        for attachment in world.attachments.values_mut() {
            if attachment.contact_id == contact_id {
                attachment.contact_id = new_id.clone();
            }
        }
        world.contacts.insert(new_id.clone(), contact);
        Ok(new_id)
    }

    /// Appends to a contact's transcript and returns the item's id.
    pub fn record(
        &self,
        contact_id: &str,
        kind: &str,
        role: &str,
        content_type: &str,
        content: &str,
    ) -> AwsResult<ChatItem> {
        let item = ChatItem {
            id: new_id(),
            kind: kind.into(),
            role: role.into(),
            content_type: content_type.into(),
            content: content.into(),
            at_ms: now_ms(),
        };
        self.update_contact(contact_id, |c| c.transcript.push(item.clone()))?;
        if role == "CUSTOMER" {
            match kind {
                "MESSAGE" => self.observe(ObservedKind::AgentMessage, contact_id, "", content, 0),
                "ATTACHMENT" => {
                    let (name, size) = self
                        .world()
                        .attachments
                        .get(content)
                        .map(|a| (a.name.clone(), a.size))
                        .unwrap_or_default();
                    self.observe(ObservedKind::AgentAttachment, contact_id, "", &name, size);
                }
                _ => {}
            }
        }
        Ok(item)
    }

    /// Appends to the observation log.
    pub(crate) fn observe(
        &self,
        kind: ObservedKind,
        contact_id: &str,
        to: &str,
        content: &str,
        size: u64,
    ) {
        let mut world = self.world();
        let seq = world.observations.len() as u64 + 1;
        world.observations.push(Observation {
            seq,
            at_us: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            kind,
            contact_id: contact_id.to_owned(),
            to: to.to_owned(),
            content: content.to_owned(),
            size,
        });
    }

    /// Up to `limit` observations after sequence number `after`, in order.
    pub fn observed(&self, after: u64, limit: usize) -> Vec<Observation> {
        let world = self.world();
        let start = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(world.observations.len());
        world.observations[start..]
            .iter()
            .take(limit)
            .cloned()
            .collect()
    }

    /// The S3 client media moves through, if configured.
    pub fn s3(&self) -> Option<aws_sdk_s3::Client> {
        self.config.s3.clone()
    }

    /// Adds media to the emulated WhatsApp (as if a customer had sent it).
    pub fn add_whatsapp_media(&self, media: WhatsAppMedia) {
        self.world().whatsapp_media.insert(media.id.clone(), media);
    }

    /// Media by id.
    pub fn whatsapp_media(&self, id: &str) -> Option<WhatsAppMedia> {
        self.world().whatsapp_media.get(id).cloned()
    }

    /// Records a WhatsApp message as sent.
    pub fn record_whatsapp(&self, origination: &str, message_id: &str, message: serde_json::Value) {
        let to = message
            .get("to")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        let text = message
            .pointer("/text/body")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        self.observe(ObservedKind::CustomerWhatsApp, "", to, text, 0);
        self.world().whatsapp_sent.push(SentWhatsApp {
            message_id: message_id.to_owned(),
            origination: origination.to_owned(),
            message,
        });
    }

    /// Every WhatsApp message sent so far, in order.
    pub fn whatsapp_sent(&self) -> Vec<SentWhatsApp> {
        self.world().whatsapp_sent.clone()
    }

    /// Remembers a stream request; counts it open until
    /// [`Self::transcription_closed`].
    pub fn transcription_opened(&self, request: TranscriptionRequest) -> usize {
        let mut world = self.world();
        world.transcription_requests.push(request);
        world.transcriptions_open += 1;
        world.transcriptions_peak = world.transcriptions_peak.max(world.transcriptions_open);
        world.transcription_requests.len() - 1
    }

    /// Records the audio of one event of stream `index`.
    pub fn transcription_audio(&self, index: usize, audio: &[u8]) {
        if !self.config.retain_payloads {
            return;
        }
        if let Some(request) = self.world().transcription_requests.get_mut(index) {
            request.audio_events.push(audio.to_vec());
        }
    }

    /// A stream has ended.
    pub fn transcription_closed(&self) {
        let mut world = self.world();
        world.transcriptions_open = world.transcriptions_open.saturating_sub(1);
    }

    /// Every stream request so far.
    pub fn transcription_requests(&self) -> Vec<TranscriptionRequest> {
        self.world().transcription_requests.clone()
    }

    /// The most streams that were open at once.
    pub fn peak_concurrent_transcriptions(&self) -> usize {
        self.world().transcriptions_peak
    }

    /// Makes the next transcription stream fail mid-way with this
    /// exception (`BadRequestException`, `LimitExceededException`, …).
    pub fn fail_next_transcription(&self, exception: &str) {
        self.world().transcribe_failure = Some(TranscribeFailure {
            exception: exception.to_owned(),
            at_start: false,
        });
    }

    /// Makes the next transcription request be refused outright, with
    /// this exception as an HTTP error, before any audio is read.
    pub fn refuse_next_transcription(&self, exception: &str) {
        self.world().transcribe_failure = Some(TranscribeFailure {
            exception: exception.to_owned(),
            at_start: true,
        });
    }

    /// Takes the armed transcription failure.
    pub fn take_transcribe_failure(&self) -> Option<TranscribeFailure> {
        self.world().transcribe_failure.take()
    }

    /// Stores a new attachment slot.
    pub fn add_attachment(&self, attachment: Attachment) {
        self.world()
            .attachments
            .insert(attachment.id.clone(), attachment);
    }

    /// An attachment by id.
    pub fn attachment(&self, id: &str) -> Option<Attachment> {
        self.world().attachments.get(id).cloned()
    }

    /// Changes an attachment.
    pub fn update_attachment<T>(
        &self,
        id: &str,
        change: impl FnOnce(&mut Attachment) -> T,
    ) -> AwsResult<T> {
        let mut world = self.world();
        let attachment = world.attachments.get_mut(id).ok_or_else(|| {
            AwsError::not_found(Api::Participant, format!("attachment {id} not found"))
        })?;
        Ok(change(attachment))
    }
}

/// Checks an attachment's name, type and size the way Connect chat does.
pub fn check_attachment(name: &str, size: u64) -> AwsResult<()> {
    let extension = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if !ALLOWED_EXTENSIONS.contains(&extension.as_str()) {
        return Err(AwsError::validation(
            Api::Participant,
            format!("attachment type .{extension} is not supported"),
        ));
    }
    if size > MAX_ATTACHMENT_BYTES {
        return Err(AwsError::quota(
            Api::Participant,
            format!("attachment of {size} bytes exceeds the {MAX_ATTACHMENT_BYTES}-byte limit"),
        ));
    }
    if name.is_empty() || name.len() > 256 {
        return Err(AwsError::validation(
            Api::Participant,
            "AttachmentName must be 1 to 256 characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_observation_log_pages_in_order_from_a_sequence_number() {
        let sandbox = Sandbox::new(SandboxConfig::default());
        for n in 0..5 {
            sandbox.record_whatsapp(
                "number",
                &format!("m{n}"),
                serde_json::json!({ "to": "447700900001", "type": "text", "text": { "body": format!("hello {n}") } }),
            );
        }
        let first = sandbox.observed(0, 2);
        assert_eq!(first.iter().map(|o| o.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(first[0].kind, ObservedKind::CustomerWhatsApp);
        assert_eq!(first[0].to, "447700900001");
        assert_eq!(first[1].content, "hello 1");
        let rest = sandbox.observed(2, 100);
        assert_eq!(
            rest.iter().map(|o| o.content.as_str()).collect::<Vec<_>>(),
            vec!["hello 2", "hello 3", "hello 4"]
        );
        assert!(sandbox.observed(5, 10).is_empty());
        assert!(sandbox.observed(u64::MAX, 10).is_empty());
    }
}
