//! Connect chat streaming: every transcript item of a contact with
//! streaming started is published to its SNS topic in Connect's format —
//! the JSON message and the message attributes Connect sets — so the real
//! SNS → SQS path (moto) carries it to the gateway.

use std::{collections::BTreeMap, sync::Arc};

use serde_json::json;

use crate::{
    sns::ACCOUNT_ID,
    state::{ChatItem, Contact, Sandbox},
};

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
        "AbsoluteTime": crate::aws::iso8601(item.at_ms),
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
    /// started: through moto's SNS when configured, else to the sandbox's
    /// own HTTP subscribers. Failures are logged, as Connect does not fail
    /// the chat when delivery fails.
    pub async fn stream(self: &Arc<Self>, contact_id: &str, item: &ChatItem) {
        self.stream_with(contact_id, item, &[]).await;
    }

    /// [`Self::stream`] with extra message attributes — a `traceparent`,
    /// for a demo or a test to follow an agent message through Parley
    /// (Connect itself sets none).
    pub async fn stream_with(
        self: &Arc<Self>,
        contact_id: &str,
        item: &ChatItem,
        extra: &[(&str, &str)],
    ) {
        let Some(contact) = self.contact(contact_id) else {
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
        // The customer's typing is for the agent only; everything else is
        // visible to all.
        let visibility = if item.content_type.ends_with(".typing") && item.role == "CUSTOMER" {
            "AGENT"
        } else {
            "ALL"
        };
        let mut attributes: BTreeMap<String, String> = [
            ("InitialContactId", contact.initial_contact_id.as_str()),
            ("ContactId", contact.contact_id.as_str()),
            ("ParticipantRole", item.role.as_str()),
            ("Type", item.kind.as_str()),
            ("ContentType", item.content_type.as_str()),
            ("MessageVisibility", visibility),
            ("InstanceId", contact.instance_id.as_str()),
            ("AccountId", ACCOUNT_ID),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (name, value) in extra {
            attributes.insert((*name).to_owned(), (*value).to_owned());
        }
        if let Err(e) = self.publish(&topic, message.to_string(), &attributes).await {
            tracing::warn!(error = %e.message, "streaming publish failed");
        }
    }
}
