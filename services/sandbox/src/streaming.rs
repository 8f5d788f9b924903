//! Connect chat streaming: every transcript item of a contact with
//! streaming started is published to its SNS topic in Connect's format —
//! the JSON message and the message attributes Connect sets — so the real
//! SNS → SQS path (moto) carries it to the gateway.

use aws_sdk_sns::types::MessageAttributeValue;
use serde_json::json;

use crate::state::{ChatItem, Contact, Sandbox};

const ACCOUNT_ID: &str = "123456789012";

fn attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("data type is set")
}

/// The streaming message for one transcript item.
pub fn streaming_message(
    contact: &Contact,
    item: &ChatItem,
    attachment: Option<(&str, &str)>,
) -> serde_json::Value {
    let display_name = if item.role == "CUSTOMER" {
        contact.display_name.as_str()
    } else {
        "Agent"
    };
    let mut message = json!({
        "AbsoluteTime": crate::participant::iso8601(item.at_ms),
        "ContentType": item.content_type,
        "Id": item.id,
        "Type": item.kind,
        "ParticipantId": if item.role == "CUSTOMER" { contact.participant_id.clone() } else { format!("agent-{}", contact.contact_id) },
        "DisplayName": display_name,
        "ParticipantRole": item.role,
        "InitialContactId": contact.initial_contact_id,
        "ContactId": contact.contact_id,
    });
    match (item.kind.as_str(), attachment) {
        ("ATTACHMENT", Some((name, content_type))) => {
            message["Attachments"] = json!([{
                "ContentType": content_type,
                "AttachmentId": item.content,
                "AttachmentName": name,
                "Status": "APPROVED",
            }]);
        }
        ("MESSAGE", _) => message["Content"] = json!(item.content),
        _ => {}
    }
    message
}

impl Sandbox {
    /// Publishes `item` to the contact's streaming topic, if streaming was
    /// started and an SNS client is configured. Failures are logged, as
    /// Connect does not fail the chat when delivery fails.
    pub async fn stream(&self, contact_id: &str, item: &ChatItem) {
        let (Some(sns), Some(contact)) = (self.config.sns.clone(), self.contact(contact_id)) else {
            return;
        };
        let Some(topic) = contact.streaming_endpoint.clone() else {
            return;
        };
        let attachment = (item.kind == "ATTACHMENT")
            .then(|| self.attachment(&item.content))
            .flatten()
            .map(|a| (a.name, a.content_type));
        let message = streaming_message(
            &contact,
            item,
            attachment.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
        );
        let visibility = if item.content_type.ends_with(".typing") && item.role == "CUSTOMER" {
            "AGENT"
        } else {
            "ALL"
        };
        let published = sns
            .publish()
            .topic_arn(&topic)
            .message(message.to_string())
            .message_attributes("InitialContactId", attribute(&contact.initial_contact_id))
            .message_attributes("ContactId", attribute(&contact.contact_id))
            .message_attributes("ParticipantRole", attribute(&item.role))
            .message_attributes("Type", attribute(&item.kind))
            .message_attributes("ContentType", attribute(&item.content_type))
            .message_attributes("MessageVisibility", attribute(visibility))
            .message_attributes("InstanceId", attribute(&contact.instance_id))
            .message_attributes("AccountId", attribute(ACCOUNT_ID))
            .send()
            .await;
        if let Err(e) = published {
            tracing::warn!(error = %aws_sdk_sns::error::DisplayErrorContext(&e), "streaming publish failed");
        }
    }
}
