//! The sandbox plays the WhatsApp customer: media a customer "sends" is
//! stored where `GetWhatsAppMessageMedia` serves it from, and a webhook
//! `value` (or a whole EUM message) is wrapped exactly as AWS End User
//! Messaging Social publishes it and published to the inbound topic —
//! whoever consumes that topic (the gateway over SQS or HTTP) sees what it
//! would see in production.
//!
//! - `POST /_sandbox/whatsapp/media` — the bytes, with their MIME type as
//!   `Content-Type` → `{"mediaId": …}`.
//! - `POST /_sandbox/whatsapp/inbound` — a Meta webhook `value` object, or
//!   a whole EUM SNS `Message` → `{"MessageId": …}`.
//! - `GET /_sandbox/contacts` — every contact with its transcript and
//!   attachments, in order.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::HeaderMap,
    routing::{get, post},
};
use serde_json::{Value, json};

use crate::{
    aws::{Api, AwsError, AwsResult},
    sns::ACCOUNT_ID,
    state::{Sandbox, WhatsAppMedia, new_id, now_ms},
};

/// A WhatsApp business number the sandbox knows.
#[derive(Debug, Clone)]
pub struct WhatsAppNumber {
    /// Meta's numeric phone-number id (`metadata.phone_number_id`).
    pub meta_id: String,
    /// EUM's id: `phone-number-id-<32 hex>`.
    pub phone_number_id: String,
    /// The number as customers see it.
    pub display_number: String,
    /// Meta's WhatsApp Business Account id.
    pub waba_id: String,
}

impl Default for WhatsAppNumber {
    fn default() -> Self {
        Self {
            meta_id: "106540352242922".into(),
            phone_number_id: "phone-number-id-0123456789abcdef0123456789abcdef".into(),
            display_number: "15550783881".into(),
            waba_id: "102290129340398".into(),
        }
    }
}

impl WhatsAppNumber {
    /// The number's EUM ARN.
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:social-messaging:us-east-1:{ACCOUNT_ID}:phone-number-id/{}",
            self.phone_number_id.trim_start_matches("phone-number-id-")
        )
    }
}

/// The routes of the customer API.
pub fn routes() -> Router<Arc<Sandbox>> {
    Router::new()
        .route("/_sandbox/whatsapp/media", post(upload_media))
        .route("/_sandbox/whatsapp/inbound", post(inbound))
        .route("/_sandbox/contacts", get(contacts))
}

async fn upload_media(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> AwsResult<Json<Value>> {
    let mime_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            AwsError::validation(Api::Social, "send the media's MIME type as Content-Type")
        })?
        .to_owned();
    if body.is_empty() {
        return Err(AwsError::validation(Api::Social, "the media is empty"));
    }
    let id = sandbox.add_customer_media(&mime_type, body.to_vec());
    Ok(Json(json!({ "mediaId": id })))
}

impl Sandbox {
    /// Stores media a customer sent; its media id.
    pub fn add_customer_media(&self, mime_type: &str, bytes: Vec<u8>) -> String {
        // Meta media ids are digits.
        let id = format!(
            "{}",
            now_ms() * 1000 + i64::from(uuid::Uuid::new_v4().as_bytes()[0])
        );
        self.add_whatsapp_media(WhatsAppMedia {
            id: id.clone(),
            mime_type: mime_type.to_owned(),
            bytes,
        });
        id
    }

    /// The EUM SNS `Message` for a webhook `value`, as EUM publishes it
    /// for one of this sandbox's numbers.
    pub fn eum_message(&self, value: Value) -> Value {
        eum_message(&self.config.whatsapp_numbers, value)
    }

    /// Publishes an EUM message to the inbound topic; the SNS message id.
    pub async fn publish_inbound(self: &Arc<Self>, eum: Value) -> AwsResult<String> {
        let topic = self.config.inbound_topic_arn.clone();
        self.publish(&topic, eum.to_string(), &BTreeMap::new())
            .await
    }

    /// Publishes to `topic_arn`: through moto's SNS when the sandbox has
    /// one, else to its own HTTP subscribers.
    pub async fn publish(
        self: &Arc<Self>,
        topic_arn: &str,
        message: String,
        attributes: &BTreeMap<String, String>,
    ) -> AwsResult<String> {
        let Some(sns) = self.config.sns.clone() else {
            return Ok(self.sns_publish(topic_arn, message, attributes));
        };
        let mut publish = sns.publish().topic_arn(topic_arn).message(message);
        for (name, value) in attributes {
            publish = publish.message_attributes(
                name,
                aws_sdk_sns::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(value)
                    .build()
                    .map_err(|e| AwsError::validation(Api::Social, e.to_string()))?,
            );
        }
        let published = publish.send().await.map_err(|e| {
            AwsError::validation(
                Api::Social,
                format!(
                    "publishing to {topic_arn}: {}",
                    aws_sdk_sns::error::DisplayErrorContext(&e)
                ),
            )
        })?;
        Ok(published.message_id().unwrap_or_default().to_owned())
    }
}

async fn inbound(State(sandbox): State<Arc<Sandbox>>, body: Bytes) -> AwsResult<Json<Value>> {
    let value: Value = crate::aws::parse_json(Api::Social, &body)?;
    let eum = if value.get("whatsAppWebhookEntry").is_some() {
        value
    } else if value.get("messages").is_some()
        || value.get("statuses").is_some()
        || value.get("errors").is_some()
    {
        sandbox.eum_message(value)
    } else {
        return Err(AwsError::validation(
            Api::Social,
            "send a webhook value (with messages, statuses or errors) or a whole EUM message",
        ));
    };
    let id = sandbox.publish_inbound(eum).await?;
    Ok(Json(json!({ "MessageId": id })))
}

async fn contacts(State(sandbox): State<Arc<Sandbox>>) -> Json<Value> {
    Json(json!({ "contacts": sandbox.contacts() }))
}

/// The EUM SNS `Message` for a webhook `value`, as EUM publishes it: the
/// number the value names (by Meta id) among `numbers`, else the first.
/// Load generators that feed a queue directly build their messages here.
pub fn eum_message(numbers: &[WhatsAppNumber], mut value: Value) -> Value {
    let number = numbers
        .iter()
        .find(|n| {
            value
                .pointer("/metadata/phone_number_id")
                .and_then(Value::as_str)
                == Some(&n.meta_id)
        })
        .or_else(|| numbers.first())
        .cloned()
        .unwrap_or_default();
    if value.get("messaging_product").is_none() {
        value["messaging_product"] = json!("whatsapp");
    }
    if value.get("metadata").is_none() {
        value["metadata"] = json!({
            "display_phone_number": number.display_number,
            "phone_number_id": number.meta_id,
        });
    }
    let entry = json!({
        "id": number.waba_id,
        "changes": [{ "value": value, "field": "messages" }],
    });
    json!({
        "context": {
            "MetaWabaIds": [{
                "wabaId": number.waba_id,
                "arn": format!("arn:aws:social-messaging:us-east-1:{ACCOUNT_ID}:waba/{}", new_id().replace('-', "")),
            }],
            "MetaPhoneNumberIds": [{
                "metaPhoneNumberId": number.meta_id,
                "arn": number.arn(),
            }],
        },
        "whatsAppWebhookEntry": entry.to_string(),
        "aws_account_id": ACCOUNT_ID,
        "message_timestamp": crate::aws::iso8601(now_ms()),
        "messageId": new_id(),
    })
}

/// A webhook `value` with one text message from `customer`.
pub fn text_value(customer: &str, name: &str, message_id: &str, text: &str) -> Value {
    message_value(
        customer,
        name,
        json!({ "from": customer, "id": message_id, "timestamp": (now_ms() / 1000).to_string(), "type": "text", "text": { "body": text } }),
    )
}

/// A webhook `value` carrying `message` (a Meta message object) from
/// `customer`, with the contact's profile.
pub fn message_value(customer: &str, name: &str, message: Value) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "profile": { "name": name }, "wa_id": customer }],
        "messages": [message],
    })
}
