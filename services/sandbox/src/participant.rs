//! Connect Participant: connections, messages, events, attachments,
//! transcript and disconnect, each authorised by the `X-Amz-Bearer`
//! header; plus the attachment upload and download URLs the sandbox serves
//! itself. The customer's own messages and events are streamed to the
//! contact's topic too, as Connect does.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::{post, put},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    aws::{Api, AwsError, AwsResult, iso8601, parse_json},
    state::{Attachment, MAX_MESSAGE_BYTES, Sandbox, check_attachment, new_id, now_ms},
};

const API: Api = Api::Participant;

/// The routes of this service.
pub fn routes() -> Router<Arc<Sandbox>> {
    Router::new()
        .route(
            "/participant/connection",
            post(create_participant_connection),
        )
        .route("/participant/message", post(send_message))
        .route("/participant/event", post(send_event))
        .route("/participant/transcript", post(get_transcript))
        .route(
            "/participant/start-attachment-upload",
            post(start_attachment_upload),
        )
        .route(
            "/participant/complete-attachment-upload",
            post(complete_attachment_upload),
        )
        .route("/participant/attachment", post(get_attachment))
        .route("/participant/disconnect", post(disconnect_participant))
        .route("/sandbox-files/{id}", put(upload).get(download))
}

fn bearer(headers: &HeaderMap) -> AwsResult<String> {
    headers
        .get("x-amz-bearer")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| AwsError::access_denied(API, "missing X-Amz-Bearer token"))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateParticipantConnection {
    #[serde(rename = "Type", default)]
    kinds: Vec<String>,
    #[serde(default)]
    connect_participant: bool,
}

async fn create_participant_connection(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> AwsResult<Json<Value>> {
    sandbox.enter(API, "CreateParticipantConnection")?;
    let token = bearer(&headers)?;
    let request: CreateParticipantConnection = parse_json(API, &body)?;
    let credentials = request.kinds.iter().any(|k| k == "CONNECTION_CREDENTIALS");
    let websocket = request.kinds.iter().any(|k| k == "WEBSOCKET");
    if !credentials && !websocket {
        return Err(AwsError::validation(
            API,
            "Type must include WEBSOCKET or CONNECTION_CREDENTIALS",
        ));
    }
    let (connection_token, expires_at_ms) = sandbox.connect(&token, request.connect_participant)?;
    let mut response = json!({});
    if credentials {
        response["ConnectionCredentials"] =
            json!({ "ConnectionToken": connection_token, "Expiry": iso8601(expires_at_ms) });
    }
    if websocket {
        let ws_base = sandbox.config.public_url.replacen("http", "ws", 1);
        response["Websocket"] = json!({
            "Url": format!("{ws_base}/sandbox-websocket/{}", new_id()),
            "ConnectionExpiry": iso8601(expires_at_ms),
        });
    }
    Ok(Json(response))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendContent {
    content_type: String,
    content: Option<String>,
    client_token: Option<String>,
}

async fn send_message(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> AwsResult<Json<Value>> {
    sandbox.enter(API, "SendMessage")?;
    let contact_id = sandbox.authorise(&bearer(&headers)?)?;
    let request: SendContent = parse_json(API, &body)?;
    let content = request.content.unwrap_or_default();
    if !matches!(
        request.content_type.as_str(),
        "text/plain"
            | "text/markdown"
            | "application/json"
            | "application/vnd.amazonaws.connect.message.interactive.response"
    ) {
        return Err(AwsError::validation(
            API,
            format!("ContentType {} is not supported", request.content_type),
        ));
    }
    // The current API reference: up to 16,384 bytes for every content type.
    if content.is_empty() || content.len() > MAX_MESSAGE_BYTES {
        return Err(AwsError::validation(
            API,
            format!(
                "Content must be 1 to {MAX_MESSAGE_BYTES} bytes, got {}",
                content.len()
            ),
        ));
    }
    if let Some(token) = &request.client_token
        && let Some(previous) = sandbox.idempotent(&format!("SendMessage@{contact_id}"), token)
    {
        return Ok(Json(previous));
    }
    let item = sandbox.record(
        &contact_id,
        "MESSAGE",
        "CUSTOMER",
        &request.content_type,
        &content,
    )?;
    let response = json!({ "Id": item.id, "AbsoluteTime": iso8601(item.at_ms) });
    if let Some(token) = &request.client_token {
        sandbox.remember(&format!("SendMessage@{contact_id}"), token, &response);
    }
    sandbox.stream(&contact_id, &item).await;
    Ok(Json(response))
}

async fn send_event(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> AwsResult<Json<Value>> {
    sandbox.enter(API, "SendEvent")?;
    let contact_id = sandbox.authorise(&bearer(&headers)?)?;
    let request: SendContent = parse_json(API, &body)?;
    const EVENTS: [&str; 4] = [
        "application/vnd.amazonaws.connect.event.typing",
        "application/vnd.amazonaws.connect.event.message.delivered",
        "application/vnd.amazonaws.connect.event.message.read",
        "application/vnd.amazonaws.connect.event.connection.acknowledged",
    ];
    if !EVENTS.contains(&request.content_type.as_str()) {
        return Err(AwsError::validation(
            API,
            format!("event {} is not supported", request.content_type),
        ));
    }
    let content = request.content.unwrap_or_default();
    if request.content_type.ends_with(".delivered") || request.content_type.ends_with(".read") {
        let parsed: Value = serde_json::from_str(&content).map_err(|_| {
            AwsError::validation(API, "receipt Content must be JSON with a messageId")
        })?;
        if parsed
            .get("messageId")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(AwsError::validation(
                API,
                "receipt Content must name a messageId",
            ));
        }
    }
    if let Some(token) = &request.client_token
        && let Some(previous) = sandbox.idempotent(&format!("SendEvent@{contact_id}"), token)
    {
        return Ok(Json(previous));
    }
    let item = sandbox.record(
        &contact_id,
        "EVENT",
        "CUSTOMER",
        &request.content_type,
        &content,
    )?;
    let response = json!({ "Id": item.id, "AbsoluteTime": iso8601(item.at_ms) });
    if let Some(token) = &request.client_token {
        sandbox.remember(&format!("SendEvent@{contact_id}"), token, &response);
    }
    sandbox.stream(&contact_id, &item).await;
    Ok(Json(response))
}

async fn get_transcript(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> AwsResult<Json<Value>> {
    sandbox.enter(API, "GetTranscript")?;
    let contact_id = sandbox.authorise(&bearer(&headers)?)?;
    let _: Value = parse_json(API, &body)?;
    let contact = sandbox
        .contact(&contact_id)
        .ok_or_else(|| AwsError::not_found(API, "contact not found"))?;
    let items: Vec<Value> = contact
        .transcript
        .iter()
        .map(|item| {
            let mut entry = json!({
                "AbsoluteTime": iso8601(item.at_ms),
                "Id": item.id,
                "Type": item.kind,
                "ContentType": item.content_type,
                "ParticipantRole": item.role,
                "DisplayName": if item.role == "CUSTOMER" { contact.display_name.clone() } else { "Agent".into() },
            });
            if item.kind == "MESSAGE" {
                entry["Content"] = json!(item.content);
            }
            entry
        })
        .collect();
    Ok(Json(json!({
        "InitialContactId": contact.initial_contact_id,
        "Transcript": items,
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartAttachmentUpload {
    content_type: String,
    attachment_size_in_bytes: u64,
    attachment_name: String,
    client_token: Option<String>,
}

async fn start_attachment_upload(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> AwsResult<Json<Value>> {
    sandbox.enter(API, "StartAttachmentUpload")?;
    let contact_id = sandbox.authorise(&bearer(&headers)?)?;
    let request: StartAttachmentUpload = parse_json(API, &body)?;
    check_attachment(&request.attachment_name, request.attachment_size_in_bytes)?;
    // A retried start (same ClientToken) names the same attachment, so a
    // retried upload cannot add it to the chat twice.
    let id =
        match request.client_token.as_deref().and_then(|token| {
            sandbox.idempotent(&format!("StartAttachmentUpload@{contact_id}"), token)
        }) {
            Some(previous) => previous["AttachmentId"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            None => new_id(),
        };
    if let Some(token) = &request.client_token {
        sandbox.remember(
            &format!("StartAttachmentUpload@{contact_id}"),
            token,
            &json!({ "AttachmentId": id }),
        );
    }
    if sandbox.attachment(&id).is_some() {
        return Ok(Json(upload_metadata(&sandbox, &id, &request.content_type)));
    }
    sandbox.add_attachment(Attachment {
        id: id.clone(),
        contact_id,
        name: request.attachment_name,
        content_type: request.content_type.clone(),
        size: request.attachment_size_in_bytes,
        bytes: None,
        completed: false,
    });
    Ok(Json(upload_metadata(&sandbox, &id, &request.content_type)))
}

/// StartAttachmentUpload's answer: where to PUT the bytes, for 5 minutes.
fn upload_metadata(sandbox: &Sandbox, id: &str, content_type: &str) -> Value {
    json!({
        "AttachmentId": id,
        "UploadMetadata": {
            "Url": sandbox.file_url(id, 300),
            "UrlExpiry": iso8601(now_ms() + 300_000),
            "HeadersToInclude": {
                "Content-Type": content_type,
                "x-amz-meta-attachment-id": id,
            }
        }
    })
}

impl Sandbox {
    /// A pre-signed-looking URL of an attachment's bytes, valid `seconds`.
    pub fn file_url(&self, id: &str, seconds: i64) -> String {
        format!(
            "{}/sandbox-files/{id}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires={seconds}&X-Amz-Date={}&X-Amz-Signature={}",
            self.config.public_url,
            now_ms() / 1000,
            new_id().replace('-', "")
        )
    }
}

#[derive(Deserialize)]
struct Presigned {
    #[serde(rename = "X-Amz-Date", default)]
    signed_at_s: i64,
    #[serde(rename = "X-Amz-Expires", default)]
    expires_s: i64,
}

impl Presigned {
    /// A URL past its expiry is refused, as S3 refuses it.
    fn check(&self) -> AwsResult<()> {
        if self.signed_at_s > 0 && now_ms() / 1000 > self.signed_at_s + self.expires_s {
            return Err(AwsError::access_denied(API, "Request has expired"));
        }
        Ok(())
    }
}

async fn upload(
    State(sandbox): State<Arc<Sandbox>>,
    Path(id): Path<String>,
    Query(presigned): Query<Presigned>,
    headers: HeaderMap,
    body: Bytes,
) -> AwsResult<StatusCode> {
    presigned.check()?;
    if let Some(status) = sandbox.take_upload_failure() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return Err(AwsError::new(
            API,
            status,
            "ServiceUnavailable",
            "failure injected by the sandbox",
        ));
    }
    let attachment = sandbox
        .attachment(&id)
        .ok_or_else(|| AwsError::not_found(API, "no such upload"))?;
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type != attachment.content_type || headers.get("x-amz-meta-attachment-id").is_none()
    {
        return Err(AwsError::access_denied(
            API,
            "upload must carry the HeadersToInclude",
        ));
    }
    if body.len() as u64 != attachment.size {
        return Err(AwsError::validation(
            API,
            format!(
                "uploaded {} bytes, {} were declared",
                body.len(),
                attachment.size
            ),
        ));
    }
    sandbox.update_attachment(&id, |a| a.bytes = Some(body.to_vec()))?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CompleteAttachmentUpload {
    attachment_ids: Vec<String>,
}

async fn complete_attachment_upload(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> AwsResult<Json<Value>> {
    sandbox.enter(API, "CompleteAttachmentUpload")?;
    let contact_id = sandbox.authorise(&bearer(&headers)?)?;
    let request: CompleteAttachmentUpload = parse_json(API, &body)?;
    for id in &request.attachment_ids {
        let attachment = sandbox
            .attachment(id)
            .ok_or_else(|| AwsError::not_found(API, format!("attachment {id}")))?;
        if attachment.contact_id != contact_id || attachment.bytes.is_none() {
            return Err(AwsError::validation(
                API,
                format!("attachment {id} was not uploaded"),
            ));
        }
        if attachment.completed {
            continue; // a retried completion: already in the chat
        }
        let retain = sandbox.config.retain_payloads;
        sandbox.update_attachment(id, |a| {
            a.completed = true;
            if !retain {
                a.bytes = None;
            }
        })?;
        let item = sandbox.record(
            &contact_id,
            "ATTACHMENT",
            "CUSTOMER",
            &attachment.content_type,
            id,
        )?;
        sandbox.stream(&contact_id, &item).await;
    }
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetAttachment {
    attachment_id: String,
    url_expiry_in_seconds: Option<i64>,
}

async fn get_attachment(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> AwsResult<Json<Value>> {
    sandbox.enter(API, "GetAttachment")?;
    let contact_id = sandbox.authorise(&bearer(&headers)?)?;
    let request: GetAttachment = parse_json(API, &body)?;
    let seconds = request.url_expiry_in_seconds.unwrap_or(300);
    if !(5..=300).contains(&seconds) {
        return Err(AwsError::validation(
            API,
            "UrlExpiryInSeconds must be 5 to 300",
        ));
    }
    let attachment = sandbox
        .attachment(&request.attachment_id)
        .filter(|a| a.contact_id == contact_id && a.completed)
        .ok_or_else(|| AwsError::not_found(API, "attachment not found in this chat"))?;
    Ok(Json(json!({
        "Url": sandbox.file_url(&attachment.id, seconds),
        "UrlExpiry": iso8601(now_ms() + seconds * 1000),
        "AttachmentSizeInBytes": attachment.size,
    })))
}

async fn download(
    State(sandbox): State<Arc<Sandbox>>,
    Path(id): Path<String>,
    Query(presigned): Query<Presigned>,
) -> impl IntoResponse {
    if let Err(e) = presigned.check() {
        return e.into_response();
    }
    match sandbox
        .attachment(&id)
        .and_then(|a| a.bytes.map(|b| (a.content_type, b)))
    {
        Some((content_type, bytes)) => ([("content-type", content_type)], bytes).into_response(),
        None => AwsError::not_found(API, "no such file").into_response(),
    }
}

async fn disconnect_participant(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> AwsResult<Json<Value>> {
    sandbox.enter(API, "DisconnectParticipant")?;
    let contact_id = sandbox.authorise(&bearer(&headers)?)?;
    let _: Value = parse_json(API, &body)?;
    sandbox.update_contact(&contact_id, |c| c.disconnected = true)?;
    let item = sandbox.record(
        &contact_id,
        "EVENT",
        "CUSTOMER",
        "application/vnd.amazonaws.connect.event.participant.left",
        "",
    )?;
    sandbox.stream(&contact_id, &item).await;
    Ok(Json(json!({})))
}
