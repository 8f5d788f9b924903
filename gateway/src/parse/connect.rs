//! Connect chat-streaming items: the JSON chat item Connect publishes to
//! the streaming topic, and the message attributes it sets on it
//! (`ContactId`, `InitialContactId`, `ParticipantRole`,
//! `MessageVisibility`, …). Only the attributes say who may see an item,
//! so an item without them is refused rather than guessed at.

use std::collections::BTreeMap;

use parley_proto::connect::TranscriptItem;
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
    let kind = item_kind(&str_at(item, "Type")).ok_or_else(|| {
        ParseError::new(format!(
            "a chat item of unknown Type {:?}",
            str_at(item, "Type")
        ))
    })?;
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

/// Connect's item `Type`.
fn item_kind(name: &str) -> Option<ItemKind> {
    match name {
        "MESSAGE" => Some(ItemKind::Message),
        "EVENT" => Some(ItemKind::Event),
        "ATTACHMENT" => Some(ItemKind::Attachment),
        _ => None,
    }
}

/// An item a new chat's transcript held before streaming began (the relay
/// read it as the customer's participant), as the streamed item would
/// have been: `None` for what is not sent to WhatsApp (the customer's own
/// messages, events other than the chat's end, unknown types).
pub fn transcript_item(
    item: &TranscriptItem,
    contact_id: &str,
    initial_contact_id: &str,
) -> Option<AgentItem> {
    let kind = item_kind(&item.r#type)?;
    let parsed = AgentItem {
        id: item.id.clone(),
        kind,
        content_type: item.content_type.clone(),
        content: item.content.clone(),
        participant_role: item.participant_role.clone(),
        // The customer's own transcript holds only what the customer may
        // see.
        visibility: "ALL".into(),
        contact_id: contact_id.to_owned(),
        initial_contact_id: initial_contact_id.to_owned(),
        absolute_time_ms: item.absolute_time_ms,
        display_name: item.display_name.clone(),
        attachments: item
            .attachments
            .iter()
            .map(|a| AgentAttachment {
                id: a.attachment_id.clone(),
                name: a.name.clone(),
                content_type: a.content_type.clone(),
                status: a.status.clone(),
            })
            .collect(),
        traceparent: String::new(),
    };
    let wanted = !item.id.is_empty()
        && parsed.for_customer()
        && (kind != ItemKind::Event || parsed.event() == Some("chat.ended"));
    wanted.then_some(parsed)
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

    fn transcript(r#type: &str, role: &str, content_type: &str) -> TranscriptItem {
        TranscriptItem {
            id: "t1".into(),
            r#type: r#type.into(),
            content_type: content_type.into(),
            content: "Welcome!".into(),
            participant_role: role.into(),
            display_name: "SYSTEM_MESSAGE".into(),
            absolute_time_ms: 1_700_000_000_000,
            attachments: Vec::new(),
        }
    }

    #[test]
    fn a_transcript_item_becomes_the_item_streaming_would_have_carried() {
        let greeting = transcript_item(&transcript("MESSAGE", "SYSTEM", "text/plain"), "c2", "c1")
            .expect("a flow's greeting is sent");
        assert_eq!(greeting.kind, ItemKind::Message);
        assert_eq!(
            (
                greeting.contact_id.as_str(),
                greeting.initial_contact_id.as_str()
            ),
            ("c2", "c1")
        );
        assert_eq!(greeting.content, "Welcome!");
        assert!(greeting.for_customer());
        let ended = "application/vnd.amazonaws.connect.event.chat.ended";
        assert!(transcript_item(&transcript("EVENT", "SYSTEM", ended), "c", "c").is_some());
        for skipped in [
            transcript("MESSAGE", "CUSTOMER", "text/plain"),
            transcript(
                "EVENT",
                "SYSTEM",
                "application/vnd.amazonaws.connect.event.participant.joined",
            ),
            transcript("CONNECTION_ACK", "SYSTEM", ""),
        ] {
            assert!(transcript_item(&skipped, "c", "c").is_none(), "{skipped:?}");
        }
    }
}
