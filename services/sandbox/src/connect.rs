//! Amazon Connect's contact operations Parley (or a user of the sandbox)
//! calls: `PUT /contact/chat` (StartChatContact), `POST
//! /contact/start-streaming` (StartContactStreaming), `POST
//! /contact/stop-streaming` (StopContactStreaming), `POST /contact/stop`
//! (StopContact), `POST /contact/attributes` (UpdateContactAttributes) and
//! `GET /contacts/{InstanceId}/{ContactId}` (DescribeContact).

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    routing::{get, post, put},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    aws::{Api, AwsError, AwsResult, parse_json},
    state::{Contact, MAX_MESSAGE_BYTES, Sandbox, new_id, now_ms},
};

/// The routes of this service.
pub fn routes() -> Router<Arc<Sandbox>> {
    Router::new()
        .route("/contact/chat", put(start_chat_contact))
        .route("/contact/start-streaming", post(start_contact_streaming))
        .route("/contact/stop-streaming", post(stop_contact_streaming))
        .route("/contact/stop", post(stop_contact))
        .route("/contact/attributes", post(update_contact_attributes))
        .route("/contacts/{instance}/{contact}", get(describe_contact))
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
    body: Bytes,
) -> AwsResult<Json<Value>> {
    sandbox.enter(Api::Connect, "StartChatContact")?;
    let request: StartChatContact = parse_json(Api::Connect, &body)?;
    if let Some(token) = &request.client_token
        && let Some(previous) = sandbox.idempotent("StartChatContact", token)
    {
        return Ok(Json(previous));
    }
    if request.instance_id.is_empty() || request.contact_flow_id.is_empty() {
        return Err(AwsError::validation(
            Api::Connect,
            "InstanceId and ContactFlowId are required",
        ));
    }
    let known = &sandbox.config.known_instances;
    if !known.is_empty() && !known.contains(&request.instance_id) {
        return Err(AwsError::not_found(
            Api::Connect,
            format!("instance {} not found", request.instance_id),
        ));
    }
    let name_len = request.participant_details.display_name.chars().count();
    if !(1..=256).contains(&name_len) {
        return Err(AwsError::invalid_parameter(
            "ParticipantDetails.DisplayName must be 1 to 256 characters",
        ));
    }
    if let Some(minutes) = request.chat_duration_in_minutes
        && !(60..=10_080).contains(&minutes)
    {
        return Err(AwsError::invalid_parameter(
            "ChatDurationInMinutes must be between 60 and 10080",
        ));
    }
    if let Some(message) = &request.initial_message
        && (message.content.is_empty() || message.content.len() > MAX_MESSAGE_BYTES)
    {
        return Err(AwsError::invalid_parameter(format!(
            "InitialMessage.Content must be 1 to {MAX_MESSAGE_BYTES} bytes"
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
        ended: false,
        updated_attributes: HashMap::new(),
        transcript: Vec::new(),
        supported_content_types: request.supported_messaging_content_types,
    };
    let initial_text = request
        .initial_message
        .as_ref()
        .map(|message| message.content.clone());
    if let Some(message) = request.initial_message {
        contact.transcript.push(crate::state::ChatItem {
            id: new_id(),
            kind: "MESSAGE".into(),
            role: "CUSTOMER".into(),
            content_type: message.content_type,
            content: message.content,
            at_ms: now_ms(),
        });
    }
    if let Some(greeting) = &sandbox.config.flow_greeting {
        contact.transcript.push(crate::state::ChatItem {
            id: new_id(),
            kind: "MESSAGE".into(),
            role: "SYSTEM".into(),
            content_type: "text/plain".into(),
            content: greeting.clone(),
            at_ms: now_ms(),
        });
    }
    let participant_token = sandbox.add_contact(contact);
    if let Some(text) = initial_text {
        sandbox.observe(
            crate::state::ObservedKind::AgentMessage,
            &contact_id,
            "",
            &text,
            0,
        );
    }
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
    body: Bytes,
) -> AwsResult<Json<Value>> {
    sandbox.enter(Api::Connect, "StartContactStreaming")?;
    let request: StartContactStreaming = parse_json(Api::Connect, &body)?;
    let arn = request.chat_streaming_configuration.streaming_endpoint_arn;
    if !arn.starts_with("arn:") || arn.ends_with(".fifo") {
        return Err(AwsError::invalid_parameter(
            "StreamingEndpointArn must be a standard SNS topic ARN",
        ));
    }
    sandbox.update_contact(&request.contact_id, |c| c.streaming_endpoint = Some(arn))?;
    Ok(Json(json!({ "StreamingId": new_id() })))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContactRef {
    contact_id: String,
    instance_id: String,
}

async fn stop_contact_streaming(
    State(sandbox): State<Arc<Sandbox>>,
    body: Bytes,
) -> AwsResult<Json<Value>> {
    sandbox.enter(Api::Connect, "StopContactStreaming")?;
    let request: ContactRef = parse_json(Api::Connect, &body)?;
    sandbox.update_contact(&request.contact_id, |c| c.streaming_endpoint = None)?;
    Ok(Json(json!({})))
}

/// Stops a contact: the chat ends (streamed as `chat.ended`), and its
/// participants' tokens stop working.
async fn stop_contact(State(sandbox): State<Arc<Sandbox>>, body: Bytes) -> AwsResult<Json<Value>> {
    sandbox.enter(Api::Connect, "StopContact")?;
    let request: ContactRef = parse_json(Api::Connect, &body)?;
    if request.instance_id.is_empty() {
        return Err(AwsError::validation(Api::Connect, "InstanceId is required"));
    }
    sandbox.end_contact(&request.contact_id).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateContactAttributes {
    initial_contact_id: String,
    attributes: HashMap<String, String>,
}

async fn update_contact_attributes(
    State(sandbox): State<Arc<Sandbox>>,
    body: Bytes,
) -> AwsResult<Json<Value>> {
    sandbox.enter(Api::Connect, "UpdateContactAttributes")?;
    let request: UpdateContactAttributes = parse_json(Api::Connect, &body)?;
    sandbox.update_contact(&request.initial_contact_id, |c| {
        c.updated_attributes.extend(request.attributes);
    })?;
    Ok(Json(json!({})))
}

async fn describe_contact(
    State(sandbox): State<Arc<Sandbox>>,
    Path((instance, contact_id)): Path<(String, String)>,
) -> AwsResult<Json<Value>> {
    sandbox.enter(Api::Connect, "DescribeContact")?;
    let contact = sandbox
        .contact(&contact_id)
        .filter(|c| c.instance_id == instance)
        .ok_or_else(|| {
            AwsError::not_found(Api::Connect, format!("contact {contact_id} not found"))
        })?;
    let started = contact.transcript.first().map_or(now_ms(), |i| i.at_ms);
    let mut description = json!({
        "Id": contact.contact_id,
        "InitialContactId": contact.initial_contact_id,
        "Channel": "CHAT",
        "InitiationMethod": "API",
        // REST-JSON timestamps are epoch seconds (JSON numbers).
        "InitiationTimestamp": started as f64 / 1000.0,
    });
    if contact.ended || contact.disconnected {
        let ended = contact.transcript.last().map_or(now_ms(), |i| i.at_ms);
        description["DisconnectTimestamp"] = json!(ended as f64 / 1000.0);
    }
    Ok(Json(json!({ "Contact": description })))
}

impl Sandbox {
    /// Ends a contact's chat as Connect does when an agent closes it or it
    /// is stopped: `participant.left`… then `chat.ended` are streamed and
    /// the customer's tokens are refused from then on. Idempotent.
    pub async fn end_contact(self: &Arc<Self>, contact_id: &str) -> AwsResult<()> {
        let already = self.update_contact(contact_id, |c| std::mem::replace(&mut c.ended, true))?;
        if already {
            return Ok(());
        }
        let item = self.record(
            contact_id,
            "EVENT",
            "SYSTEM",
            "application/vnd.amazonaws.connect.event.chat.ended",
            "",
        )?;
        self.stream(contact_id, &item).await;
        Ok(())
    }
}
