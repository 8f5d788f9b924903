//! Connect chat-streaming items: the JSON chat item Connect publishes to
//! the streaming topic, and the message attributes it sets on it
//! (`ContactId`, `InitialContactId`, `ParticipantRole`,
//! `MessageVisibility`, …). Only the attributes say who may see an item,
//! so an item without them is refused rather than guessed at.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::model::{AgentAttachment, AgentItem, ItemKind};

use super::{ParseError, str_at};

/// Parses a streaming item and its attributes.
pub fn parse(item: &Value, attributes: &BTreeMap<String, String>) -> Result<AgentItem, ParseError> {
    if item.get("topic").is_some() && item.get("contentType").is_some() {
        return Err(ParseError::new(
            "a chat websocket frame, not a streaming notification",
        ));
    }
    if item.get("Transcript").is_some() || item.get("Participants").is_some() {
        return Err(ParseError::new(
            "a chat transcript, not a streaming notification",
        ));
    }
    let id = str_at(item, "Id");
    if id.is_empty() {
        return Err(ParseError::new("a chat item without an Id"));
    }
    let kind = match str_at(item, "Type").as_str() {
        "MESSAGE" => ItemKind::Message,
        "EVENT" => ItemKind::Event,
        "ATTACHMENT" => ItemKind::Attachment,
        other => {
            return Err(ParseError::new(format!(
                "a chat item of unknown Type {other:?}"
            )));
        }
    };
    let attribute = |name: &str| attributes.get(name).cloned().unwrap_or_default();
    let visibility = attribute("MessageVisibility");
    if visibility.is_empty() {
        return Err(ParseError::new(
            "no MessageVisibility attribute: who may see the item is unknown (enable the SNS message attributes, or raw delivery with attributes)",
        ));
    }
    // The attributes name the contact the item is in now; the item's own
    // fields can lag a transfer. Either is looked up, current first.
    let contact_id = Some(attribute("ContactId"))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| str_at(item, "ContactId"));
    let initial_contact_id = Some(str_at(item, "InitialContactId"))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| attribute("InitialContactId"));
    if contact_id.is_empty() && initial_contact_id.is_empty() {
        return Err(ParseError::new("a chat item without a ContactId"));
    }
    let participant_role = Some(str_at(item, "ParticipantRole"))
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| attribute("ParticipantRole"));
    let content_type = Some(str_at(item, "ContentType"))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| attribute("ContentType"));
    let attachments = item
        .get("Attachments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| AgentAttachment {
            id: str_at(a, "AttachmentId"),
            name: str_at(a, "AttachmentName"),
            content_type: str_at(a, "ContentType"),
            status: str_at(a, "Status"),
        })
        .collect();
    Ok(AgentItem {
        id,
        kind,
        content_type,
        content: str_at(item, "Content"),
        participant_role,
        visibility,
        contact_id,
        initial_contact_id,
        absolute_time_ms: parse_time(&str_at(item, "AbsoluteTime")),
        display_name: str_at(item, "DisplayName"),
        attachments,
        traceparent: String::new(),
    })
}

/// An ISO 8601 time as epoch ms (0 when absent or malformed).
pub fn parse_time(text: &str) -> i64 {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn attributes_decide_visibility_and_the_current_contact() {
        let item = json!({"Id": "m1", "Type": "MESSAGE", "ContentType": "text/plain", "Content": "hi",
            "ParticipantRole": "AGENT", "ContactId": "old", "InitialContactId": "first",
            "AbsoluteTime": "2021-09-08T13:28:24.656Z"});
        let attributes: BTreeMap<String, String> =
            [("MessageVisibility", "ALL"), ("ContactId", "new")]
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect();
        let parsed = parse(&item, &attributes).unwrap();
        assert_eq!(parsed.contact_id, "new");
        assert_eq!(parsed.initial_contact_id, "first");
        assert_eq!(parsed.absolute_time_ms, 1_631_107_704_656);
        assert!(parsed.for_customer());
        let refused = parse(&item, &BTreeMap::new()).unwrap_err();
        assert!(refused.reason.contains("MessageVisibility"));
    }
}
