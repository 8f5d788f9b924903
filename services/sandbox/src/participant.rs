//! Connect Participant: connections, messages, events, attachments and
//! disconnect, each authorised by the `X-Amz-Bearer` header; plus the
//! attachment upload and download URLs the sandbox serves itself.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::{post, put},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    aws::{AwsError, AwsResult},
    state::{Attachment, MAX_MESSAGE_CHARS, Sandbox, check_attachment, new_id, now_ms},
};

/// The routes of this service.
pub fn routes() -> Router<Arc<Sandbox>> {
    Router::new()
        .route(
            "/participant/connection",
            post(create_participant_connection),
        )
        .route("/participant/message", post(send_message))
        .route("/participant/event", post(send_event))
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
        .ok_or_else(|| AwsError::access_denied("missing X-Amz-Bearer token"))
}

/// An epoch-ms time as ISO 8601 (UTC), as Connect writes times.
pub fn iso8601(ms: i64) -> String {
    // Seconds precision is enough for the SDK's date-time parser.
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a calendar date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
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
    Json(request): Json<CreateParticipantConnection>,
) -> AwsResult<Json<Value>> {
    sandbox.enter("CreateParticipantConnection")?;
    let token = bearer(&headers)?;
    if !request.kinds.iter().any(|k| k == "CONNECTION_CREDENTIALS") {
        return Err(AwsError::validation(
            "Type must include CONNECTION_CREDENTIALS",
        ));
    }
    let (connection_token, expires_at_ms) = sandbox.connect(&token, request.connect_participant)?;
    Ok(Json(json!({
        "ConnectionCredentials": { "ConnectionToken": connection_token, "Expiry": iso8601(expires_at_ms) }
    })))
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
    Json(request): Json<SendContent>,
) -> AwsResult<Json<Value>> {
    sandbox.enter("SendMessage")?;
    let contact_id = sandbox.authorise(&bearer(&headers)?)?;
    let content = request.content.unwrap_or_default();
    let limit = match request.content_type.as_str() {
        "text/plain" | "text/markdown" => MAX_MESSAGE_CHARS,
        "application/json" => 12_000,
        "application/vnd.amazonaws.connect.message.interactive.response" => 12_288,
        other => {
            return Err(AwsError::validation(format!(
                "ContentType {other} is not supported"
            )));
        }
    };
    let chars = content.chars().count();
    if chars == 0 || chars > limit {
        return Err(AwsError::validation(format!(
            "Content must be 1 to {limit} characters, got {chars}"
        )));
    }
    if let Some(token) = &request.client_token
        && let Some(previous) = sandbox.idempotent("SendMessage", token)
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
        sandbox.remember("SendMessage", token, &response);
    }
    Ok(Json(response))
}

async fn send_event(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    Json(request): Json<SendContent>,
) -> AwsResult<Json<Value>> {
    sandbox.enter("SendEvent")?;
    let contact_id = sandbox.authorise(&bearer(&headers)?)?;
    const EVENTS: [&str; 3] = [
        "application/vnd.amazonaws.connect.event.typing",
        "application/vnd.amazonaws.connect.event.message.delivered",
        "application/vnd.amazonaws.connect.event.message.read",
    ];
    if !EVENTS.contains(&request.content_type.as_str()) {
        return Err(AwsError::validation(format!(
            "event {} is not supported",
            request.content_type
        )));
    }
    let content = request.content.unwrap_or_default();
    if request.content_type != EVENTS[0] {
        let parsed: Value = serde_json::from_str(&content)
            .map_err(|_| AwsError::validation("receipt Content must be JSON with a messageId"))?;
        if parsed
            .get("messageId")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(AwsError::validation(
                "receipt Content must name a messageId",
            ));
        }
    }
    let item = sandbox.record(
        &contact_id,
        "EVENT",
        "CUSTOMER",
        &request.content_type,
        &content,
    )?;
    Ok(Json(
        json!({ "Id": item.id, "AbsoluteTime": iso8601(item.at_ms) }),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartAttachmentUpload {
    content_type: String,
    attachment_size_in_bytes: u64,
    attachment_name: String,
}

async fn start_attachment_upload(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    Json(request): Json<StartAttachmentUpload>,
) -> AwsResult<Json<Value>> {
    sandbox.enter("StartAttachmentUpload")?;
    let contact_id = sandbox.authorise(&bearer(&headers)?)?;
    check_attachment(&request.attachment_name, request.attachment_size_in_bytes)?;
    let id = new_id();
    sandbox.add_attachment(Attachment {
        id: id.clone(),
        contact_id,
        name: request.attachment_name,
        content_type: request.content_type.clone(),
        size: request.attachment_size_in_bytes,
        bytes: None,
        completed: false,
    });
    Ok(Json(json!({
        "AttachmentId": id,
        "UploadMetadata": {
            "Url": format!("{}/sandbox-files/{id}", sandbox.config.public_url),
            "UrlExpiry": iso8601(now_ms() + 300_000),
            "HeadersToInclude": {
                "Content-Type": request.content_type,
                "x-amz-meta-attachment-id": id,
            }
        }
    })))
}

async fn upload(
    State(sandbox): State<Arc<Sandbox>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> AwsResult<StatusCode> {
    let attachment = sandbox
        .attachment(&id)
        .ok_or_else(|| AwsError::not_found("no such upload"))?;
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type != attachment.content_type || headers.get("x-amz-meta-attachment-id").is_none()
    {
        return Err(AwsError::access_denied(
            "upload must carry the HeadersToInclude",
        ));
    }
    if body.len() as u64 != attachment.size {
        return Err(AwsError::validation(format!(
            "uploaded {} bytes, {} were declared",
            body.len(),
            attachment.size
        )));
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
    Json(request): Json<CompleteAttachmentUpload>,
) -> AwsResult<Json<Value>> {
    sandbox.enter("CompleteAttachmentUpload")?;
    let contact_id = sandbox.authorise(&bearer(&headers)?)?;
    for id in &request.attachment_ids {
        let attachment = sandbox
            .attachment(id)
            .ok_or_else(|| AwsError::not_found(format!("attachment {id}")))?;
        if attachment.contact_id != contact_id || attachment.bytes.is_none() {
            return Err(AwsError::validation(format!(
                "attachment {id} was not uploaded"
            )));
        }
        sandbox.update_attachment(id, |a| a.completed = true)?;
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
}

async fn get_attachment(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    Json(request): Json<GetAttachment>,
) -> AwsResult<Json<Value>> {
    sandbox.enter("GetAttachment")?;
    let contact_id = sandbox.authorise(&bearer(&headers)?)?;
    let attachment = sandbox
        .attachment(&request.attachment_id)
        .filter(|a| a.contact_id == contact_id && a.completed)
        .ok_or_else(|| AwsError::not_found("attachment not found in this chat"))?;
    Ok(Json(json!({
        "Url": format!("{}/sandbox-files/{}", sandbox.config.public_url, attachment.id),
        "UrlExpiry": iso8601(now_ms() + 300_000),
        "AttachmentSizeInBytes": attachment.size,
    })))
}

async fn download(
    State(sandbox): State<Arc<Sandbox>>,
    Path(id): Path<String>,
) -> impl IntoResponse {
    match sandbox
        .attachment(&id)
        .and_then(|a| a.bytes.map(|b| (a.content_type, b)))
    {
        Some((content_type, bytes)) => ([("content-type", content_type)], bytes).into_response(),
        None => AwsError::not_found("no such file").into_response(),
    }
}

async fn disconnect_participant(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
) -> AwsResult<Json<Value>> {
    sandbox.enter("DisconnectParticipant")?;
    let contact_id = sandbox.authorise(&bearer(&headers)?)?;
    sandbox.update_contact(&contact_id, |c| c.disconnected = true)?;
    sandbox.record(
        &contact_id,
        "EVENT",
        "CUSTOMER",
        "application/vnd.amazonaws.connect.event.participant.left",
        "",
    )?;
    Ok(Json(json!({})))
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_format_as_iso8601() {
        assert_eq!(super::iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::iso8601(1_762_827_867_000), "2025-11-11T02:24:27Z");
        assert_eq!(super::iso8601(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
