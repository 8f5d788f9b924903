//! WhatsApp webhooks, in every form they arrive: the EUM SNS `Message`
//! (whose `whatsAppWebhookEntry` is a JSON *string*), a Meta Cloud API
//! webhook body (`object` + `entry[]`), or a bare entry. Every change of
//! every entry, every message and every status of every change is read
//! (libraries often read only the first), with Meta's whole message union.
//! Unknown fields are ignored; a payload that is not a webhook is refused
//! with a reason.

use serde_json::Value;

use crate::model::{
    ContactCard, Content, MediaKind, MessageContext, MetaError, OrderItem, Referral, ReplyKind,
    StatusKind,
};

use super::{ParseError, json_str, str_at};

/// A message as the webhook carries it, before identities are resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct RawMessage {
    /// Meta's id of the business number it was sent to.
    pub meta_phone_number_id: String,
    /// WhatsApp's message id.
    pub wamid: String,
    /// The customer's WhatsApp id (`from`), when present.
    pub from: String,
    /// The customer's business-scoped user id, when present.
    pub from_user_id: String,
    /// The customer's profile name, from the change's `contacts`.
    pub profile_name: String,
    /// When sent, epoch seconds (WhatsApp's clock).
    pub timestamp_s: i64,
    /// What it replies to.
    pub context: MessageContext,
    /// The ad behind it.
    pub referral: Option<Referral>,
    /// What it carries.
    pub content: Content,
}

/// A status as the webhook carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawStatus {
    /// Meta's id of the business number.
    pub meta_phone_number_id: String,
    /// The message Parley sent.
    pub wamid: String,
    /// What happened.
    pub status: StatusKind,
    /// When, epoch seconds.
    pub timestamp_s: i64,
    /// The customer (`recipient_id`).
    pub recipient: String,
    /// Why it failed.
    pub errors: Vec<MetaError>,
}

/// Everything one webhook said.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Webhook {
    /// EUM's map of Meta phone-number ids to their ARNs (`context`).
    pub numbers: Vec<(String, String)>,
    /// Customer messages, in order.
    pub messages: Vec<RawMessage>,
    /// Statuses of Parley's messages, in order.
    pub statuses: Vec<RawStatus>,
    /// Errors Meta reported for a whole change (with the business number).
    pub errors: Vec<(String, MetaError)>,
}

impl Webhook {
    /// Whether it carries nothing Parley acts on.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.statuses.is_empty() && self.errors.is_empty()
    }
}

/// Parses any form of WhatsApp webhook payload.
pub fn parse(payload: &Value) -> Result<Webhook, ParseError> {
    let mut webhook = Webhook::default();
    if let Some(entry) = payload.get("whatsAppWebhookEntry") {
        // EUM: the entry is a JSON string inside the SNS message.
        let Some(text) = entry.as_str() else {
            return Err(ParseError::new("whatsAppWebhookEntry is not a string"));
        };
        let entry: Value = serde_json::from_str(text)
            .map_err(|e| ParseError::new(format!("whatsAppWebhookEntry is not JSON: {e}")))?;
        if let Some(ids) = payload
            .pointer("/context/MetaPhoneNumberIds")
            .and_then(Value::as_array)
        {
            for id in ids {
                let (meta, arn) = (str_at(id, "metaPhoneNumberId"), str_at(id, "arn"));
                if !meta.is_empty() && !arn.is_empty() {
                    webhook.numbers.push((meta, arn));
                }
            }
        }
        read_entry(&entry, &mut webhook)?;
    } else if let Some(entries) = payload.get("entry").and_then(Value::as_array) {
        // A Meta Cloud API webhook body.
        if payload.get("object").and_then(Value::as_str) != Some("whatsapp_business_account") {
            return Err(ParseError::new(
                "a webhook body whose object is not whatsapp_business_account",
            ));
        }
        for entry in entries {
            read_entry(entry, &mut webhook)?;
        }
    } else if payload.get("changes").is_some() {
        // A bare entry, as EUM's documentation shows them decoded.
        read_entry(payload, &mut webhook)?;
    } else {
        return Err(ParseError::new(
            "not a WhatsApp webhook (no whatsAppWebhookEntry, entry[] or changes[])",
        ));
    }
    Ok(webhook)
}

fn read_entry(entry: &Value, webhook: &mut Webhook) -> Result<(), ParseError> {
    let Some(changes) = entry.get("changes").and_then(Value::as_array) else {
        return Err(ParseError::new("a webhook entry without changes[]"));
    };
    for change in changes {
        let field = change
            .get("field")
            .and_then(Value::as_str)
            .unwrap_or("messages");
        if field != "messages" {
            // Account and template updates are not conversation events.
            continue;
        }
        let Some(value) = change.get("value") else {
            return Err(ParseError::new("a change without a value"));
        };
        read_value(value, webhook);
    }
    Ok(())
}

/// Reads one webhook `value`: its messages, statuses and errors.
pub fn read_value(value: &Value, webhook: &mut Webhook) {
    let number = value
        .pointer("/metadata/phone_number_id")
        .map(json_str)
        .unwrap_or_default();
    let contacts = value.get("contacts").and_then(Value::as_array);
    for message in value
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let from = str_at(message, "from");
        let from_user_id = str_at(message, "from_user_id");
        let profile_name = contacts
            .into_iter()
            .flatten()
            .find(|c| {
                (!from.is_empty() && json_str(c.get("wa_id").unwrap_or(&Value::Null)) == from)
                    || (!from_user_id.is_empty() && str_at(c, "user_id") == from_user_id)
            })
            .or_else(|| contacts.and_then(|c| (c.len() == 1).then(|| &c[0])))
            .and_then(|c| c.pointer("/profile/name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        webhook.messages.push(RawMessage {
            meta_phone_number_id: number.clone(),
            wamid: str_at(message, "id"),
            from,
            from_user_id,
            profile_name,
            timestamp_s: message
                .get("timestamp")
                .map(json_str)
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
            context: context(message),
            referral: referral(message),
            content: content(message),
        });
    }
    for status in value
        .get("statuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        webhook.statuses.push(RawStatus {
            meta_phone_number_id: number.clone(),
            wamid: str_at(status, "id"),
            status: match str_at(status, "status").as_str() {
                "sent" => StatusKind::Sent,
                "delivered" => StatusKind::Delivered,
                "read" => StatusKind::Read,
                "played" => StatusKind::Played,
                "failed" => StatusKind::Failed,
                other => StatusKind::Other(other.to_owned()),
            },
            timestamp_s: status
                .get("timestamp")
                .map(json_str)
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
            recipient: str_at(status, "recipient_id"),
            errors: errors(status.get("errors")),
        });
    }
    for error in errors(value.get("errors")) {
        webhook.errors.push((number.clone(), error));
    }
}

fn errors(list: Option<&Value>) -> Vec<MetaError> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| MetaError {
            code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
            title: str_at(e, "title"),
            details: e
                .pointer("/error_data/details")
                .or_else(|| e.get("details"))
                .or_else(|| e.get("message"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        })
        .collect()
}

fn context(message: &Value) -> MessageContext {
    let Some(context) = message.get("context") else {
        return MessageContext::default();
    };
    MessageContext {
        reply_to: str_at(context, "id"),
        forwarded: context
            .get("forwarded")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        frequently_forwarded: context
            .get("frequently_forwarded")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        referred_product: context
            .pointer("/referred_product/product_retailer_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    }
}

fn referral(message: &Value) -> Option<Referral> {
    let referral = message.get("referral")?;
    Some(Referral {
        headline: str_at(referral, "headline"),
        body: str_at(referral, "body"),
        source_url: str_at(referral, "source_url"),
        source_type: str_at(referral, "source_type"),
    })
}

fn media(message: &Value, kind: MediaKind, field: &str) -> Content {
    let body = message.get(field).unwrap_or(&Value::Null);
    Content::Media {
        kind,
        media_id: json_str(body.get("id").unwrap_or(&Value::Null)),
        mime_type: str_at(body, "mime_type"),
        caption: str_at(body, "caption"),
        file_name: str_at(body, "filename"),
        voice: body.get("voice").and_then(Value::as_bool).unwrap_or(false),
        animated: body
            .get("animated")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}

fn unsupported(message: &Value, kind: &str) -> Content {
    let reason = errors(message.get("errors"))
        .first()
        .map(MetaError::describe)
        .unwrap_or_else(|| "not a message type Parley knows".into());
    let kind = message
        .pointer("/unsupported/type")
        .and_then(Value::as_str)
        .unwrap_or(kind)
        .to_owned();
    Content::Unsupported { kind, reason }
}

/// What one message carries, by its `type`.
fn content(message: &Value) -> Content {
    let kind = str_at(message, "type");
    match kind.as_str() {
        "text" => Content::Text {
            body: message
                .pointer("/text/body")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        },
        "image" => media(message, MediaKind::Image, "image"),
        "video" => media(message, MediaKind::Video, "video"),
        "audio" => media(message, MediaKind::Audio, "audio"),
        "document" => media(message, MediaKind::Document, "document"),
        "sticker" => media(message, MediaKind::Sticker, "sticker"),
        "location" => {
            let location = message.get("location").unwrap_or(&Value::Null);
            let number = |name: &str| {
                location
                    .get(name)
                    .and_then(|v| {
                        v.as_f64()
                            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    })
                    .unwrap_or(0.0)
            };
            Content::Location {
                latitude: number("latitude"),
                longitude: number("longitude"),
                name: str_at(location, "name"),
                address: str_at(location, "address"),
                url: str_at(location, "url"),
            }
        }
        "contacts" => Content::Contacts {
            cards: message
                .get("contacts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|card| ContactCard {
                    name: card
                        .pointer("/name/formatted_name")
                        .or_else(|| card.pointer("/name/first_name"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    phones: card
                        .get("phones")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|p| str_at(p, "phone"))
                        .filter(|p| !p.is_empty())
                        .collect(),
                    emails: card
                        .get("emails")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|e| str_at(e, "email"))
                        .filter(|e| !e.is_empty())
                        .collect(),
                    organization: card
                        .pointer("/org/company")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                })
                .collect(),
        },
        "interactive" => {
            let interactive = message.get("interactive").unwrap_or(&Value::Null);
            match str_at(interactive, "type").as_str() {
                "button_reply" => Content::Interactive {
                    kind: ReplyKind::Button,
                    id: interactive
                        .pointer("/button_reply/id")
                        .map(json_str)
                        .unwrap_or_default(),
                    title: interactive
                        .pointer("/button_reply/title")
                        .map(json_str)
                        .unwrap_or_default(),
                    description: String::new(),
                    response_json: String::new(),
                },
                "list_reply" => Content::Interactive {
                    kind: ReplyKind::List,
                    id: interactive
                        .pointer("/list_reply/id")
                        .map(json_str)
                        .unwrap_or_default(),
                    title: interactive
                        .pointer("/list_reply/title")
                        .map(json_str)
                        .unwrap_or_default(),
                    description: interactive
                        .pointer("/list_reply/description")
                        .map(json_str)
                        .unwrap_or_default(),
                    response_json: String::new(),
                },
                "nfm_reply" => Content::Interactive {
                    kind: ReplyKind::Flow,
                    id: String::new(),
                    title: interactive
                        .pointer("/nfm_reply/name")
                        .map(json_str)
                        .unwrap_or_default(),
                    description: interactive
                        .pointer("/nfm_reply/body")
                        .map(json_str)
                        .unwrap_or_default(),
                    response_json: interactive
                        .pointer("/nfm_reply/response_json")
                        .map(json_str)
                        .unwrap_or_default(),
                },
                _ => unsupported(message, "interactive"),
            }
        }
        "button" => Content::Button {
            text: message
                .pointer("/button/text")
                .map(json_str)
                .unwrap_or_default(),
            payload: message
                .pointer("/button/payload")
                .map(json_str)
                .unwrap_or_default(),
        },
        "order" => {
            let order = message.get("order").unwrap_or(&Value::Null);
            Content::Order {
                catalog_id: str_at(order, "catalog_id"),
                text: str_at(order, "text"),
                items: order
                    .get("product_items")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|item| OrderItem {
                        product_retailer_id: str_at(item, "product_retailer_id"),
                        quantity: item
                            .get("quantity")
                            .and_then(|q| {
                                q.as_f64()
                                    .or_else(|| q.as_str().and_then(|s| s.parse().ok()))
                            })
                            .unwrap_or(0.0),
                        item_price: item
                            .get("item_price")
                            .and_then(|p| {
                                p.as_f64()
                                    .or_else(|| p.as_str().and_then(|s| s.parse().ok()))
                            })
                            .unwrap_or(0.0),
                        currency: str_at(item, "currency"),
                    })
                    .collect(),
            }
        }
        "reaction" => Content::Reaction {
            message_id: message
                .pointer("/reaction/message_id")
                .map(json_str)
                .unwrap_or_default(),
            // A removed reaction has an empty or missing emoji.
            emoji: message
                .pointer("/reaction/emoji")
                .map(json_str)
                .unwrap_or_default(),
        },
        "system" => {
            let system = message.get("system").unwrap_or(&Value::Null);
            Content::System {
                kind: str_at(system, "type"),
                body: str_at(system, "body"),
            }
        }
        other => unsupported(message, if other.is_empty() { "unknown" } else { other }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn value(message: Value) -> Value {
        json!({
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "1555", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": "14155550100"}],
            "messages": [message],
        })
    }

    fn one(message: Value) -> RawMessage {
        let mut webhook = Webhook::default();
        read_value(&value(message), &mut webhook);
        webhook.messages.remove(0)
    }

    #[test]
    fn a_removed_reaction_has_an_empty_emoji_and_unknown_types_are_kept() {
        let removed = one(
            json!({"from": "14155550100", "id": "w1", "timestamp": 1, "type": "reaction", "reaction": {"message_id": "w0"}}),
        );
        assert_eq!(
            removed.content,
            Content::Reaction {
                message_id: "w0".into(),
                emoji: String::new()
            }
        );
        let future =
            one(json!({"from": "14155550100", "id": "w2", "type": "hologram", "hologram": {}}));
        assert!(matches!(future.content, Content::Unsupported { kind, .. } if kind == "hologram"));
        assert_eq!(future.profile_name, "Ana");
    }

    #[test]
    fn garbage_never_panics() {
        for payload in [
            json!(null),
            json!([]),
            json!({"entry": "x"}),
            json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {"messages": [null, 3, {"type": 7}]}}]}]}),
            json!({"whatsAppWebhookEntry": "{\"changes\":[{\"value\":{\"statuses\":[{\"id\":null}]}}]}"}),
        ] {
            let _ = parse(&payload);
        }
    }
}
