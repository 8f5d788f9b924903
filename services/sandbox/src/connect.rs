//! Amazon Connect's chat operations: `PUT /contact/chat`
//! (StartChatContact) and `POST /contact/start-streaming`
//! (StartContactStreaming).

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    extract::State,
    routing::{post, put},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    aws::{AwsError, AwsResult},
    state::{Contact, MAX_MESSAGE_CHARS, Sandbox, new_id},
};

/// The routes of this service.
pub fn routes() -> Router<Arc<Sandbox>> {
    Router::new()
        .route("/contact/chat", put(start_chat_contact))
        .route("/contact/start-streaming", post(start_contact_streaming))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ParticipantDetails {
    display_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChatMessage {
    content_type: String,
    content: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartChatContact {
    instance_id: String,
    contact_flow_id: String,
    #[serde(default)]
    attributes: HashMap<String, String>,
    participant_details: ParticipantDetails,
    initial_message: Option<ChatMessage>,
    client_token: Option<String>,
    chat_duration_in_minutes: Option<i64>,
    #[serde(default)]
    supported_messaging_content_types: Vec<String>,
}

async fn start_chat_contact(
    State(sandbox): State<Arc<Sandbox>>,
    Json(request): Json<StartChatContact>,
) -> AwsResult<Json<Value>> {
    sandbox.enter("StartChatContact")?;
    if let Some(token) = &request.client_token
        && let Some(previous) = sandbox.idempotent("StartChatContact", token)
    {
        return Ok(Json(previous));
    }
    if request.instance_id.is_empty() || request.contact_flow_id.is_empty() {
        return Err(AwsError::validation(
            "InstanceId and ContactFlowId are required",
        ));
    }
    let name_len = request.participant_details.display_name.chars().count();
    if !(1..=256).contains(&name_len) {
        return Err(AwsError::validation(
            "ParticipantDetails.DisplayName must be 1 to 256 characters",
        ));
    }
    if let Some(minutes) = request.chat_duration_in_minutes
        && !(60..=10_080).contains(&minutes)
    {
        return Err(AwsError::validation(
            "ChatDurationInMinutes must be between 60 and 10080",
        ));
    }
    if let Some(message) = &request.initial_message
        && message.content.chars().count() > MAX_MESSAGE_CHARS
    {
        return Err(AwsError::validation(format!(
            "InitialMessage.Content exceeds {MAX_MESSAGE_CHARS} characters"
        )));
    }
    let contact_id = new_id();
    let participant_id = new_id();
    let mut contact = Contact {
        contact_id: contact_id.clone(),
        initial_contact_id: contact_id.clone(),
        instance_id: request.instance_id,
        contact_flow_id: request.contact_flow_id,
        attributes: request.attributes,
        display_name: request.participant_details.display_name,
        participant_id: participant_id.clone(),
        chat_duration_minutes: request.chat_duration_in_minutes.unwrap_or(1_500),
        streaming_endpoint: None,
        customer_connected: false,
        disconnected: false,
        transcript: Vec::new(),
        supported_content_types: request.supported_messaging_content_types,
    };
    if let Some(message) = request.initial_message {
        contact.transcript.push(crate::state::ChatItem {
            id: new_id(),
            kind: "MESSAGE".into(),
            role: "CUSTOMER".into(),
            content_type: message.content_type,
            content: message.content,
            at_ms: crate::state::now_ms(),
        });
    }
    let participant_token = sandbox.add_contact(contact);
    let response = json!({
        "ContactId": contact_id,
        "ParticipantId": participant_id,
        "ParticipantToken": participant_token,
    });
    if let Some(token) = &request.client_token {
        sandbox.remember("StartChatContact", token, &response);
    }
    Ok(Json(response))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamingConfiguration {
    streaming_endpoint_arn: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartContactStreaming {
    contact_id: String,
    chat_streaming_configuration: StreamingConfiguration,
}

async fn start_contact_streaming(
    State(sandbox): State<Arc<Sandbox>>,
    Json(request): Json<StartContactStreaming>,
) -> AwsResult<Json<Value>> {
    sandbox.enter("StartContactStreaming")?;
    let arn = request.chat_streaming_configuration.streaming_endpoint_arn;
    if !arn.starts_with("arn:") || arn.ends_with(".fifo") {
        return Err(AwsError::validation(
            "StreamingEndpointArn must be a standard SNS topic ARN",
        ));
    }
    sandbox.update_contact(&request.contact_id, |c| c.streaming_endpoint = Some(arn))?;
    Ok(Json(json!({ "StreamingId": new_id() })))
}
