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

use crate::{aws::AwsResult, state::Sandbox};

/// The routes of the control API.
pub fn routes() -> Router<Arc<Sandbox>> {
    Router::new()
        .route("/_sandbox/contacts/{id}", get(contact))
        .route("/_sandbox/calls", get(calls))
        .route("/_sandbox/whatsapp/sent", get(whatsapp_sent))
        .route("/_sandbox/throttle", post(throttle))
        .route("/_sandbox/expire-connections", post(expire))
        .route("/_sandbox/agent-message", post(agent_message))
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
struct Throttle {
    count: u32,
}

async fn throttle(
    State(sandbox): State<Arc<Sandbox>>,
    Json(request): Json<Throttle>,
) -> StatusCode {
    sandbox.throttle_next(request.count);
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

async fn agent_message(
    State(sandbox): State<Arc<Sandbox>>,
    Json(request): Json<AgentMessage>,
) -> AwsResult<Json<Value>> {
    let item = sandbox.record(
        &request.contact_id,
        "MESSAGE",
        "AGENT",
        &request.content_type,
        &request.content,
    )?;
    Ok(Json(json!({ "Id": item.id })))
}

async fn whatsapp_sent(State(sandbox): State<Arc<Sandbox>>) -> Json<Value> {
    Json(serde_json::to_value(sandbox.whatsapp_sent()).unwrap_or_default())
}
