//! Meta Cloud API message payloads, built from typed requests: the JSON
//! `SendWhatsAppMessage` carries for each kind of message.

use parley_proto::whatsapp::{self as pb, send_message_request::Content};
use serde_json::{Value, json};

use parley_identity::CustomerId;

use crate::error::{Result, SenderError};

/// A message's addressee: a phone number goes in `to`, a business-scoped
/// user id in `recipient` (Meta's rule; `to` wins when both are given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient(CustomerId);

/// A recipient as the Cloud API wants it: a WhatsApp id (digits, optional
/// `+`) or a business-scoped user id.
pub fn recipient(raw: &str) -> Result<Recipient> {
    CustomerId::parse(raw).map(Recipient).map_err(|_| {
        SenderError::invalid(
            "recipient must be a WhatsApp id (digits, optional +) or a business-scoped user id",
        )
    })
}

fn base(to: &Recipient, kind: &str, reply_to: &str) -> Value {
    let mut message = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "type": kind,
    });
    match &to.0 {
        CustomerId::Phone(digits) => message["to"] = json!(format!("+{digits}")),
        CustomerId::User(user) => message["recipient"] = json!(user),
    }
    if !reply_to.is_empty() {
        message["context"] = json!({ "message_id": reply_to });
    }
    message
}

pub use parley_proto::whatsapp::limits;

fn within(field: &str, value: &str, min: usize, max: usize) -> Result<()> {
    let length = value.chars().count();
    if length < min || length > max {
        return Err(SenderError::limit(format!(
            "{field} must be {min} to {max} characters, got {length}"
        )));
    }
    Ok(())
}

/// Checks an interactive message against WhatsApp's limits before anything
/// is sent, naming the field that is over.
pub fn check_interactive(interactive: &pb::InteractiveMessage) -> Result<()> {
    within("interactive.header", &interactive.header, 0, limits::HEADER)?;
    within("interactive.footer", &interactive.footer, 0, limits::HEADER)?;
    within("interactive.body", &interactive.body, 1, limits::BODY)?;
    match &interactive.action {
        Some(pb::interactive_message::Action::Buttons(buttons)) => {
            if buttons.buttons.is_empty() || buttons.buttons.len() > limits::BUTTONS {
                return Err(SenderError::limit(format!(
                    "1 to {} reply buttons are allowed, got {}",
                    limits::BUTTONS,
                    buttons.buttons.len()
                )));
            }
            let mut ids = std::collections::HashSet::new();
            for (i, button) in buttons.buttons.iter().enumerate() {
                within(
                    &format!("buttons[{i}].title"),
                    &button.title,
                    1,
                    limits::BUTTON_TITLE,
                )?;
                within(&format!("buttons[{i}].id"), &button.id, 1, limits::ID)?;
                if !ids.insert(&button.id) {
                    return Err(SenderError::invalid(format!(
                        "buttons[{i}].id is not unique"
                    )));
                }
            }
        }
        Some(pb::interactive_message::Action::List(list)) => {
            within("list.button", &list.button, 1, limits::BUTTON_TITLE)?;
            if list.sections.is_empty() || list.sections.len() > limits::SECTIONS {
                return Err(SenderError::limit(format!(
                    "1 to {} list sections are allowed, got {}",
                    limits::SECTIONS,
                    list.sections.len()
                )));
            }
            let rows: usize = list.sections.iter().map(|s| s.rows.len()).sum();
            if rows == 0 || rows > limits::ROWS {
                return Err(SenderError::limit(format!(
                    "1 to {} list rows are allowed in all, got {rows}",
                    limits::ROWS
                )));
            }
            let mut ids = std::collections::HashSet::new();
            for (s, section) in list.sections.iter().enumerate() {
                let min = usize::from(list.sections.len() > 1);
                within(
                    &format!("sections[{s}].title"),
                    &section.title,
                    min,
                    limits::ROW_TITLE,
                )?;
                for (r, row) in section.rows.iter().enumerate() {
                    let field = format!("sections[{s}].rows[{r}]");
                    within(&format!("{field}.title"), &row.title, 1, limits::ROW_TITLE)?;
                    within(
                        &format!("{field}.description"),
                        &row.description,
                        0,
                        limits::ROW_DESCRIPTION,
                    )?;
                    within(&format!("{field}.id"), &row.id, 1, limits::ID)?;
                    if !ids.insert(&row.id) {
                        return Err(SenderError::invalid(format!("{field}.id is not unique")));
                    }
                }
            }
        }
        None => return Err(SenderError::invalid("interactive.action is required")),
    }
    Ok(())
}

fn media_kind(kind: i32) -> Result<&'static str> {
    Ok(match pb::MediaKind::try_from(kind) {
        Ok(pb::MediaKind::Image) => "image",
        Ok(pb::MediaKind::Video) => "video",
        Ok(pb::MediaKind::Audio | pb::MediaKind::Voice) => "audio",
        Ok(pb::MediaKind::Document) => "document",
        Ok(pb::MediaKind::Sticker) => "sticker",
        _ => return Err(SenderError::invalid("media.kind is required")),
    })
}

/// The payloads for one request, in order (long text gives several).
pub fn payloads(to: &Recipient, reply_to: &str, content: Content) -> Result<Vec<Value>> {
    Ok(match content {
        Content::Text(text) => {
            if text.body.is_empty() {
                return Err(SenderError::invalid("text.body is empty"));
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
                return Err(SenderError::invalid("reaction.message_id is required"));
            }
            let mut message = base(to, "reaction", "");
            message["reaction"] =
                json!({ "message_id": reaction.message_id, "emoji": reaction.emoji });
            vec![message]
        }
        Content::Media(media) => {
            let kind = media_kind(media.kind)?;
            let mut body = match (media.media_id.is_empty(), media.link.is_empty()) {
                (false, true) => json!({ "id": media.media_id }),
                (true, false) if media.link.starts_with("https://") => {
                    json!({ "link": media.link })
                }
                (true, false) => {
                    return Err(SenderError::invalid("media.link must be an https URL"));
                }
                _ => {
                    return Err(SenderError::invalid(
                        "media needs a media_id (from UploadMedia) or a link, not both",
                    ));
                }
            };
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
            check_interactive(&interactive)?;
            let action = match interactive.action {
                Some(pb::interactive_message::Action::Buttons(buttons)) => (
                    "button",
                    json!({ "buttons": buttons.buttons.iter().map(|b| json!({"type": "reply", "reply": {"id": b.id, "title": b.title}})).collect::<Vec<_>>() }),
                ),
                Some(pb::interactive_message::Action::List(list)) => {
                    let sections: Vec<Value> = list
                        .sections
                        .iter()
                        .map(|s| {
                            let mut section = json!({
                                "rows": s.rows.iter().map(|r| {
                                    let mut row = json!({"id": r.id, "title": r.title});
                                    if !r.description.is_empty() {
                                        row["description"] = json!(r.description);
                                    }
                                    row
                                }).collect::<Vec<_>>(),
                            });
                            if !s.title.is_empty() {
                                section["title"] = json!(s.title);
                            }
                            section
                        })
                        .collect();
                    (
                        "list",
                        json!({ "button": list.button, "sections": sections }),
                    )
                }
                None => return Err(SenderError::invalid("interactive.action is required")),
            };
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
                return Err(SenderError::invalid(
                    "template name and language_code are required",
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
            &recipient("14155550123").unwrap(),
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
    fn numbers_go_in_to_and_user_ids_in_recipient() {
        let text = |to: &str| {
            payloads(
                &recipient(to).unwrap(),
                "",
                Content::Text(pb::TextMessage {
                    body: "hi".into(),
                    preview_url: false,
                }),
            )
            .unwrap()
            .remove(0)
        };
        let by_number = text("14155550123");
        assert_eq!(by_number["to"], "+14155550123");
        assert!(by_number.get("recipient").is_none());
        let by_user = text("US.13491208655302741918");
        assert_eq!(by_user["recipient"], "US.13491208655302741918");
        assert!(by_user.get("to").is_none());
        assert!(recipient("+1 415").is_err());
    }

    fn list(rows: Vec<(&str, &str, &str)>, sections: usize) -> pb::InteractiveMessage {
        pb::InteractiveMessage {
            header: String::new(),
            body: "Pick one".into(),
            footer: String::new(),
            action: Some(pb::interactive_message::Action::List(pb::ListAction {
                button: "Options".into(),
                sections: (0..sections)
                    .map(|s| pb::ListSection {
                        title: format!("Section {s}"),
                        rows: rows
                            .iter()
                            .enumerate()
                            .map(|(i, (id, title, description))| pb::ListRow {
                                id: format!("{s}-{i}-{id}"),
                                title: (*title).into(),
                                description: (*description).into(),
                            })
                            .collect(),
                    })
                    .collect(),
            })),
        }
    }

    #[test]
    fn interactive_limits_are_whatsapps_and_name_the_field() {
        use crate::error::ErrorKind;
        assert!(check_interactive(&list(vec![("a", "Apples", "Red ones")], 1)).is_ok());
        for (message, field) in [
            (list(vec![("a", &"t".repeat(25), "")], 1), "rows[0].title"),
            (
                list(vec![("a", "Apples", &"d".repeat(73))], 1),
                "description",
            ),
            (list(vec![("a", "x", ""); 11], 1), "rows are allowed"),
            (list(vec![("a", "x", ""); 6], 2), "rows are allowed"),
            (
                pb::InteractiveMessage {
                    header: "h".repeat(61),
                    ..list(vec![("a", "x", "")], 1)
                },
                "interactive.header",
            ),
            (
                pb::InteractiveMessage {
                    footer: "f".repeat(61),
                    ..list(vec![("a", "x", "")], 1)
                },
                "interactive.footer",
            ),
            (
                pb::InteractiveMessage {
                    body: "b".into(),
                    header: String::new(),
                    footer: String::new(),
                    action: Some(pb::interactive_message::Action::Buttons(
                        pb::ButtonsAction {
                            buttons: vec![pb::Button {
                                id: "1".into(),
                                title: "t".repeat(21),
                            }],
                        },
                    )),
                },
                "buttons[0].title",
            ),
        ] {
            let error = check_interactive(&message).unwrap_err();
            assert_eq!(error.kind, ErrorKind::Limit, "{field}: {error}");
            assert!(error.message.contains(field), "{field}: {error}");
        }
    }

    #[test]
    fn voice_notes_go_as_audio_and_documents_keep_their_name() {
        let voice = payloads(
            &recipient("14155550123").unwrap(),
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
            &recipient("14155550123").unwrap(),
            "",
            Content::Media(pb::MediaMessage {
                kind: pb::MediaKind::Document as i32,
                media_id: "m2".into(),
                file_name: "invoice.pdf".into(),
                caption: "here".into(),
                link: String::new(),
            }),
        )
        .unwrap();
        assert_eq!(doc[0]["document"]["filename"], "invoice.pdf");
        assert_eq!(doc[0]["document"]["caption"], "here");
    }
}
