//! The control API for tests and local runs, under `/_sandbox/`: inspect
//! what Parley did, and make the emulated AWS misbehave on purpose.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    aws::{Api, AwsError, AwsResult},
    state::Sandbox,
};

/// The routes of the control API.
pub fn routes() -> Router<Arc<Sandbox>> {
    Router::new()
        .route("/_sandbox/contacts/{id}", get(contact))
        .route("/_sandbox/calls", get(calls))
        .route("/_sandbox/observed", get(observed))
        .route("/_sandbox/whatsapp/sent", get(whatsapp_sent))
        .route("/_sandbox/throttle", post(throttle))
        .route("/_sandbox/expire-connections", post(expire))
        .route("/_sandbox/agent-message", post(agent_message))
        .route("/_sandbox/agent-event", post(agent_event))
        .route("/_sandbox/agent-attachment", post(agent_attachment))
        .route("/_sandbox/transfer", post(transfer))
}

#[derive(Deserialize)]
struct Transfer {
    contact_id: String,
}

/// Transfers a chat to another queue: Connect gives the contact a new
/// ContactId (the initial one stays), and later items carry the new id.
async fn transfer(
    State(sandbox): State<Arc<Sandbox>>,
    Json(request): Json<Transfer>,
) -> AwsResult<Json<Value>> {
    let new_contact_id = sandbox.transfer(&request.contact_id)?;
    Ok(Json(json!({ "ContactId": new_contact_id })))
}

async fn contact(
    State(sandbox): State<Arc<Sandbox>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, StatusCode> {
    sandbox
        .contact(&id)
        .map(|c| Json(serde_json::to_value(c).unwrap_or_default()))
        .ok_or(StatusCode::NOT_FOUND)
}

async fn calls(State(sandbox): State<Arc<Sandbox>>) -> Json<Value> {
    Json(json!(sandbox.calls()))
}

#[derive(Deserialize)]
struct ObservedQuery {
    /// Sequence number already seen (0: from the start).
    #[serde(default)]
    after: u64,
    /// Most observations to return.
    #[serde(default = "observed_page")]
    limit: usize,
}

fn observed_page() -> usize {
    1000
}

/// The observation log after `after`, at most `limit` (≤ 10 000) entries.
async fn observed(
    State(sandbox): State<Arc<Sandbox>>,
    axum::extract::Query(query): axum::extract::Query<ObservedQuery>,
) -> Json<Value> {
    Json(json!({ "observations": sandbox.observed(query.after, query.limit.min(10_000)) }))
}

#[derive(Deserialize)]
struct Throttle {
    /// Calls to throttle.
    #[serde(default)]
    count: u32,
    /// Calls to let through before throttling starts.
    #[serde(default)]
    after: u32,
    /// Or: throttle every call for this long.
    #[serde(default)]
    seconds: f64,
}

async fn throttle(
    State(sandbox): State<Arc<Sandbox>>,
    Json(request): Json<Throttle>,
) -> StatusCode {
    if request.seconds > 0.0 {
        sandbox.throttle_for(std::time::Duration::from_secs_f64(request.seconds));
    } else {
        sandbox.throttle_after(request.after, request.count);
    }
    StatusCode::NO_CONTENT
}

async fn expire(State(sandbox): State<Arc<Sandbox>>) -> StatusCode {
    sandbox.expire_connections();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct AgentMessage {
    contact_id: String,
    content: String,
    #[serde(default = "plain")]
    content_type: String,
}

fn plain() -> String {
    "text/plain".into()
}

/// The agent (or a bot) writes in the chat; streamed to the contact's topic.
async fn agent_message(
    State(sandbox): State<Arc<Sandbox>>,
    Json(request): Json<AgentMessage>,
) -> AwsResult<Json<Value>> {
    let id = sandbox
        .agent_says(&request.contact_id, &request.content_type, &request.content)
        .await?;
    Ok(Json(json!({ "Id": id })))
}

impl Sandbox {
    /// The agent (or a bot) writes in the chat; streamed to the contact's
    /// topic. The item's id.
    pub async fn agent_says(
        self: &Arc<Self>,
        contact_id: &str,
        content_type: &str,
        content: &str,
    ) -> AwsResult<String> {
        self.agent_says_traced(contact_id, content_type, content, "")
            .await
    }

    /// [`Self::agent_says`], the streamed item carrying `traceparent` (when
    /// not empty) as a message attribute.
    pub async fn agent_says_traced(
        self: &Arc<Self>,
        contact_id: &str,
        content_type: &str,
        content: &str,
        traceparent: &str,
    ) -> AwsResult<String> {
        let item = self.record(contact_id, "MESSAGE", "AGENT", content_type, content)?;
        let extra: &[(&str, &str)] = if traceparent.is_empty() {
            &[]
        } else {
            &[("traceparent", traceparent)]
        };
        self.stream_with(contact_id, &item, extra).await;
        Ok(item.id)
    }

    /// An event in the chat (`participant.joined`, `typing`, `chat.ended`
    /// …); streamed. `chat.ended` ends the contact: the customer's tokens
    /// stop working.
    pub async fn agent_event(self: &Arc<Self>, contact_id: &str, event: &str) -> AwsResult<String> {
        if event == "chat.ended" {
            self.end_contact(contact_id).await?;
            return Ok(String::new());
        }
        let content_type = format!("application/vnd.amazonaws.connect.event.{event}");
        let item = self.record(contact_id, "EVENT", "AGENT", &content_type, "")?;
        self.stream(contact_id, &item).await;
        Ok(item.id)
    }

    /// The agent sends a file: a downloadable, approved attachment,
    /// streamed. Its attachment id.
    pub async fn agent_attaches(
        self: &Arc<Self>,
        contact_id: &str,
        name: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> AwsResult<String> {
        let id = crate::state::new_id();
        self.add_attachment(crate::state::Attachment {
            id: id.clone(),
            contact_id: contact_id.to_owned(),
            name: name.to_owned(),
            content_type: content_type.to_owned(),
            size: bytes.len() as u64,
            bytes: Some(bytes),
            completed: true,
        });
        let item = self.record(contact_id, "ATTACHMENT", "AGENT", content_type, &id)?;
        self.stream(contact_id, &item).await;
        Ok(id)
    }
}

#[derive(Deserialize)]
struct AgentEvent {
    contact_id: String,
    /// e.g. `participant.joined`, `participant.left`, `chat.ended`, `typing`.
    event: String,
}

/// An event in the chat (agent joins, leaves, types; chat ends); streamed.
/// `chat.ended` ends the contact: the customer's tokens stop working.
async fn agent_event(
    State(sandbox): State<Arc<Sandbox>>,
    Json(request): Json<AgentEvent>,
) -> AwsResult<Json<Value>> {
    let id = sandbox
        .agent_event(&request.contact_id, &request.event)
        .await?;
    Ok(Json(json!({ "Id": id })))
}

#[derive(Deserialize)]
struct AgentAttachment {
    contact_id: String,
    name: String,
    content_type: String,
    /// The file's bytes, base64.
    bytes_base64: String,
}

/// The agent sends a file; it becomes a downloadable attachment, streamed.
async fn agent_attachment(
    State(sandbox): State<Arc<Sandbox>>,
    Json(request): Json<AgentAttachment>,
) -> AwsResult<Json<Value>> {
    let bytes = crate::social::base64_decode(&request.bytes_base64)
        .ok_or_else(|| AwsError::validation(Api::Participant, "bytes_base64 is not base64"))?;
    let id = sandbox
        .agent_attaches(
            &request.contact_id,
            &request.name,
            &request.content_type,
            bytes,
        )
        .await?;
    Ok(Json(json!({ "AttachmentId": id })))
}

async fn whatsapp_sent(State(sandbox): State<Arc<Sandbox>>) -> Json<Value> {
    Json(serde_json::to_value(sandbox.whatsapp_sent()).unwrap_or_default())
}
