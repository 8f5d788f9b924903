//! Meta Cloud API message payloads, built from typed requests: the JSON
//! `SendWhatsAppMessage` carries for each kind of message.

use parley_proto::whatsapp::{self as pb, send_message_request::Content};
use serde_json::{Value, json};

use crate::error::{Result, SenderError};

/// A recipient as the Cloud API wants it: `+` and digits.
pub fn recipient(raw: &str) -> Result<String> {
    let digits = raw.trim().trim_start_matches('+');
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) || digits.len() > 20 {
        return Err(SenderError::Invalid(
            "recipient must be a WhatsApp id (digits, optional +)".into(),
        ));
    }
    Ok(format!("+{digits}"))
}

fn base(to: &str, kind: &str, reply_to: &str) -> Value {
    let mut message = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": kind,
    });
    if !reply_to.is_empty() {
        message["context"] = json!({ "message_id": reply_to });
    }
    message
}

fn media_kind(kind: i32) -> Result<&'static str> {
    Ok(match pb::MediaKind::try_from(kind) {
        Ok(pb::MediaKind::Image) => "image",
        Ok(pb::MediaKind::Video) => "video",
        Ok(pb::MediaKind::Audio | pb::MediaKind::Voice) => "audio",
        Ok(pb::MediaKind::Document) => "document",
        Ok(pb::MediaKind::Sticker) => "sticker",
        _ => return Err(SenderError::Invalid("media.kind is required".into())),
    })
}

/// The payloads for one request, in order (long text gives several).
pub fn payloads(to: &str, reply_to: &str, content: Content) -> Result<Vec<Value>> {
    Ok(match content {
        Content::Text(text) => {
            if text.body.is_empty() {
                return Err(SenderError::Invalid("text.body is empty".into()));
            }
            parley_text::split_text(&text.body, parley_text::WHATSAPP_TEXT_LIMIT)
                .into_iter()
                .enumerate()
                .map(|(i, part)| {
                    // Only the first part quotes the message replied to.
                    let mut message = base(to, "text", if i == 0 { reply_to } else { "" });
                    message["text"] = json!({ "preview_url": text.preview_url, "body": part });
                    message
                })
                .collect()
        }
        Content::Reaction(reaction) => {
            if reaction.message_id.is_empty() {
                return Err(SenderError::Invalid(
                    "reaction.message_id is required".into(),
                ));
            }
            let mut message = base(to, "reaction", "");
            message["reaction"] =
                json!({ "message_id": reaction.message_id, "emoji": reaction.emoji });
            vec![message]
        }
        Content::Media(media) => {
            let kind = media_kind(media.kind)?;
            if media.media_id.is_empty() {
                return Err(SenderError::Invalid(
                    "media.media_id is required (UploadMedia first)".into(),
                ));
            }
            let mut body = json!({ "id": media.media_id });
            if !media.caption.is_empty() && matches!(kind, "image" | "video" | "document") {
                body["caption"] = json!(media.caption);
            }
            if kind == "document" && !media.file_name.is_empty() {
                body["filename"] = json!(media.file_name);
            }
            let mut message = base(to, kind, reply_to);
            message[kind] = body;
            vec![message]
        }
        Content::Interactive(interactive) => {
            let action = match interactive.action {
                Some(pb::interactive_message::Action::Buttons(buttons)) => {
                    if buttons.buttons.is_empty() || buttons.buttons.len() > 3 {
                        return Err(SenderError::Invalid(
                            "1 to 3 reply buttons are allowed".into(),
                        ));
                    }
                    if let Some(b) = buttons
                        .buttons
                        .iter()
                        .find(|b| b.title.chars().count() > 20 || b.title.is_empty())
                    {
                        return Err(SenderError::Invalid(format!(
                            "button title {:?} must be 1 to 20 characters",
                            b.title
                        )));
                    }
                    (
                        "button",
                        json!({ "buttons": buttons.buttons.iter().map(|b| json!({"type": "reply", "reply": {"id": b.id, "title": b.title}})).collect::<Vec<_>>() }),
                    )
                }
                Some(pb::interactive_message::Action::List(list)) => {
                    if list.sections.is_empty() || list.button.is_empty() {
                        return Err(SenderError::Invalid(
                            "a list needs a button label and sections".into(),
                        ));
                    }
                    let sections: Vec<Value> = list
                        .sections
                        .iter()
                        .map(|s| {
                            json!({
                                "title": s.title,
                                "rows": s.rows.iter().map(|r| json!({"id": r.id, "title": r.title, "description": r.description})).collect::<Vec<_>>(),
                            })
                        })
                        .collect();
                    (
                        "list",
                        json!({ "button": list.button, "sections": sections }),
                    )
                }
                None => {
                    return Err(SenderError::Invalid(
                        "interactive.action is required".into(),
                    ));
                }
            };
            if interactive.body.is_empty() {
                return Err(SenderError::Invalid("interactive.body is required".into()));
            }
            let mut body = json!({ "type": action.0, "body": { "text": interactive.body }, "action": action.1 });
            if !interactive.header.is_empty() {
                body["header"] = json!({ "type": "text", "text": interactive.header });
            }
            if !interactive.footer.is_empty() {
                body["footer"] = json!({ "text": interactive.footer });
            }
            let mut message = base(to, "interactive", reply_to);
            message["interactive"] = body;
            vec![message]
        }
        Content::Template(template) => {
            if template.name.is_empty() || template.language_code.is_empty() {
                return Err(SenderError::Invalid(
                    "template name and language_code are required".into(),
                ));
            }
            let mut body =
                json!({ "name": template.name, "language": { "code": template.language_code } });
            if !template.body_parameters.is_empty() {
                body["components"] = json!([{
                    "type": "body",
                    "parameters": template.body_parameters.iter().map(|p| json!({"type": "text", "text": p})).collect::<Vec<_>>(),
                }]);
            }
            let mut message = base(to, "template", "");
            message["template"] = body;
            vec![message]
        }
    })
}

/// A read receipt, optionally with the typing indicator.
pub fn mark_read(message_id: &str, show_typing: bool) -> Value {
    let mut message =
        json!({ "messaging_product": "whatsapp", "status": "read", "message_id": message_id });
    if show_typing {
        message["typing_indicator"] = json!({ "type": "text" });
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_splits_and_only_the_first_part_quotes() {
        let body = "x".repeat(5_000);
        let parts = payloads(
            "+14155550123",
            "wamid.Q",
            Content::Text(pb::TextMessage {
                body: body.clone(),
                preview_url: false,
            }),
        )
        .unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0]["context"]["message_id"], "wamid.Q");
        assert!(parts[1].get("context").is_none());
        let joined: String = parts
            .iter()
            .map(|p| p["text"]["body"].as_str().unwrap())
            .collect();
        assert_eq!(joined, body);
    }

    #[test]
    fn recipients_normalise() {
        assert_eq!(recipient("14155550123").unwrap(), "+14155550123");
        assert!(recipient("+1 415").is_err());
    }

    #[test]
    fn voice_notes_go_as_audio_and_documents_keep_their_name() {
        let voice = payloads(
            "+1",
            "",
            Content::Media(pb::MediaMessage {
                kind: pb::MediaKind::Voice as i32,
                media_id: "m1".into(),
                ..Default::default()
            }),
        )
        .unwrap();
        assert_eq!(voice[0]["type"], "audio");
        assert_eq!(voice[0]["audio"]["id"], "m1");
        let doc = payloads(
            "+1",
            "",
            Content::Media(pb::MediaMessage {
                kind: pb::MediaKind::Document as i32,
                media_id: "m2".into(),
                file_name: "invoice.pdf".into(),
                caption: "here".into(),
            }),
        )
        .unwrap();
        assert_eq!(doc[0]["document"]["filename"], "invoice.pdf");
        assert_eq!(doc[0]["document"]["caption"], "here");
    }
}
