//! The parse stage: an event's body (and its message attributes) as a
//! source received it → plain types. Bodies arrive as SNS notifications
//! (an HTTP subscription, or SQS without raw delivery: the payload is the
//! notification's `Message` and the attributes its `MessageAttributes`) or
//! raw (SQS with raw delivery: the payload is the body, the attributes are
//! the SQS message's). Parsing never panics and never guesses: what it
//! cannot read is refused with a reason (and goes to the dead letters).

pub mod connect;
pub mod whatsapp;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::model::AgentItem;

/// Why an event could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ParseError {
    /// What is wrong, for the dead-letter queue and the logs (never the
    /// message's content).
    pub reason: String,
}

impl ParseError {
    /// An error with `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// A string field of a JSON object (empty when absent or not a string).
pub(crate) fn str_at(value: &Value, field: &str) -> String {
    value.get(field).map(json_str).unwrap_or_default()
}

/// A JSON scalar as text (ids arrive as strings or numbers).
pub(crate) fn json_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// A payload and its message attributes, unwrapped from SNS if it came
/// wrapped.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    /// The message itself.
    pub message: Value,
    /// Its message attributes (SNS's, or the SQS message's).
    pub attributes: BTreeMap<String, String>,
    /// The SNS message id, when it came as a notification.
    pub sns_message_id: Option<String>,
}

/// Unwraps a body: an SNS notification's `Message` and `MessageAttributes`,
/// or the raw body with the transport's `attributes`.
pub fn payload(body: &str, attributes: &BTreeMap<String, String>) -> Result<Payload, ParseError> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| ParseError::new(format!("the body is not JSON: {e}")))?;
    let is_notification = value.get("Type").and_then(Value::as_str) == Some("Notification")
        && value.get("TopicArn").is_some();
    if !is_notification {
        return Ok(Payload {
            message: value,
            attributes: attributes.clone(),
            sns_message_id: None,
        });
    }
    let text = value
        .get("Message")
        .and_then(Value::as_str)
        .ok_or_else(|| ParseError::new("an SNS notification without a Message"))?;
    let message: Value = serde_json::from_str(text)
        .map_err(|e| ParseError::new(format!("the SNS Message is not JSON: {e}")))?;
    let mut merged = attributes.clone();
    if let Some(sns_attributes) = value.get("MessageAttributes").and_then(Value::as_object) {
        for (name, attribute) in sns_attributes {
            merged.insert(name.clone(), str_at(attribute, "Value"));
        }
    }
    Ok(Payload {
        message,
        attributes: merged,
        sns_message_id: value
            .get("MessageId")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// Parses an inbound event (End User Messaging Social or a Meta webhook).
pub fn inbound(
    body: &str,
    attributes: &BTreeMap<String, String>,
) -> Result<whatsapp::Webhook, ParseError> {
    whatsapp::parse(&payload(body, attributes)?.message)
}

/// Parses an outbound event (Connect chat streaming).
pub fn outbound(
    body: &str,
    attributes: &BTreeMap<String, String>,
) -> Result<AgentItem, ParseError> {
    let payload = payload(body, attributes)?;
    connect::parse(&payload.message, &payload.attributes)
}
