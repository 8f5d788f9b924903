//! What the customer sees of an agent's (or bot's) message: plain text as
//! is, markdown as WhatsApp's own formatting (read with a real markdown
//! parser), and Connect's interactive templates (QuickReply, ListPicker,
//! TimePicker, Panel, Carousel) as WhatsApp reply buttons or a list —
//! within WhatsApp's limits, else as a numbered text menu. The options are
//! remembered (as the message link's `interactive_template`), so the
//! customer's tap goes back to Connect as the option Connect offered.

use parley_proto::whatsapp::{
    self as wa, Button, ButtonsAction, InteractiveMessage, ListAction, ListRow, ListSection,
    TextMessage, send_message_request::Content,
};
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use parley_proto::whatsapp::limits;

/// One option Connect offered, and what to send back when it is chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    /// The id WhatsApp reports back (`opt-<n>`).
    pub id: String,
    /// The option's full title (what Lex matches).
    pub title: String,
    /// For Connect's action elements (Show more, Previous options): the
    /// interactive response to send instead of the title.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub response: String,
}

/// The options of an interactive message, as the message link keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Menu {
    /// The Connect template type.
    pub template: String,
    /// Its options, in order.
    pub choices: Vec<Choice>,
}

impl Menu {
    /// The option a WhatsApp reply (by id, or by its title) chose.
    pub fn chosen(&self, id: &str, title: &str) -> Option<&Choice> {
        self.choices
            .iter()
            .find(|c| c.id == id)
            .or_else(|| self.choices.iter().find(|c| c.title == title))
    }

    /// The option a numbered-menu answer (`2`) chose.
    pub fn numbered(&self, text: &str) -> Option<&Choice> {
        let n: usize = text.trim().trim_end_matches('.').parse().ok()?;
        self.choices.get(n.checked_sub(1)?)
    }
}

/// What to send, and the menu to remember (for interactive messages).
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The WhatsApp message.
    pub content: Content,
    /// The options offered, when any.
    pub menu: Option<Menu>,
}

fn text(body: String) -> Content {
    Content::Text(TextMessage {
        body,
        preview_url: false,
    })
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

/// Shortens to `max` characters with an ellipsis.
fn fit(text: &str, max: usize) -> String {
    if chars(text) <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Plain text, as is.
pub fn plain(body: &str) -> Rendered {
    Rendered {
        content: text(body.to_owned()),
        menu: None,
    }
}

/// Markdown → WhatsApp formatting: `*bold*`, `_italic_`, `~strike~`,
/// ``` `code` ``` and ```` ``` ```` blocks, `-` and numbered lists, `> `
/// quotes, and links as `text (url)`.
pub fn markdown(source: &str) -> Rendered {
    let mut out = String::new();
    let mut lists: Vec<Option<u64>> = Vec::new();
    let mut link: Vec<String> = Vec::new();
    let options = Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES;
    for event in Parser::new_ext(source, options) {
        match event {
            Event::Start(tag) => match tag {
                Tag::Paragraph => {}
                Tag::Heading { .. } => out.push('*'),
                Tag::BlockQuote(_) => out.push_str("> "),
                Tag::CodeBlock(_) => out.push_str("```\n"),
                Tag::List(start) => lists.push(start),
                Tag::Item => {
                    let depth = lists.len().saturating_sub(1);
                    out.push_str(&"  ".repeat(depth));
                    match lists.last_mut() {
                        Some(Some(n)) => {
                            out.push_str(&format!("{n}. "));
                            *n += 1;
                        }
                        _ => out.push_str("- "),
                    }
                }
                Tag::Emphasis => out.push('_'),
                Tag::Strong => out.push('*'),
                Tag::Strikethrough => out.push('~'),
                Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. } => {
                    link.push(dest_url.to_string())
                }
                _ => {}
            },
            Event::End(tag) => match tag {
                TagEnd::Paragraph => out.push_str("\n\n"),
                TagEnd::Heading(_) => out.push_str("*\n\n"),
                TagEnd::BlockQuote(_) => {}
                TagEnd::CodeBlock => {
                    if !out.ends_with('\n') {
                        out.push('\n');
                    }
                    out.push_str("```\n\n");
                }
                TagEnd::List(_) => {
                    lists.pop();
                    if lists.is_empty() {
                        out.push('\n');
                    }
                }
                TagEnd::Item if !out.ends_with('\n') => out.push('\n'),
                TagEnd::Emphasis => out.push('_'),
                TagEnd::Strong => out.push('*'),
                TagEnd::Strikethrough => out.push('~'),
                TagEnd::Link | TagEnd::Image => {
                    if let Some(url) = link.pop() {
                        out.push_str(&format!(" ({url})"));
                    }
                }
                _ => {}
            },
            Event::Text(t) => out.push_str(&t),
            Event::Code(code) => {
                out.push('`');
                out.push_str(&code);
                out.push('`');
            }
            Event::SoftBreak | Event::HardBreak => out.push('\n'),
            Event::Rule => out.push_str("———\n\n"),
            Event::Html(html) | Event::InlineHtml(html) => out.push_str(&html),
            _ => {}
        }
    }
    let body = out.trim_end().to_owned();
    Rendered {
        content: text(if body.is_empty() {
            source.to_owned()
        } else {
            body
        }),
        menu: None,
    }
}

/// An option parsed from a template's element.
struct Element {
    title: String,
    subtitle: String,
    url: String,
    action: String,
}

fn elements(content: &Value) -> Vec<Element> {
    content
        .get("elements")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| Element {
            title: e
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            subtitle: e
                .get("subtitle")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            url: if e.get("type").and_then(Value::as_str) == Some("hyperlink") {
                e.get("url")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            } else {
                String::new()
            },
            action: e
                .get("actionDetail")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        })
        .filter(|e| !e.title.is_empty())
        .collect()
}

fn str_of<'a>(value: &'a Value, field: &str) -> &'a str {
    value.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// Connect's interactive template → WhatsApp. Unknown or malformed
/// templates come out as their title (never as raw JSON).
pub fn interactive(source: &str) -> Rendered {
    let Ok(template) = serde_json::from_str::<Value>(source) else {
        return plain(source);
    };
    let kind = str_of(&template, "templateType").to_owned();
    let content = template
        .pointer("/data/content")
        .cloned()
        .unwrap_or(Value::Null);
    let title = str_of(&content, "title").to_owned();
    let subtitle = str_of(&content, "subtitle").to_owned();
    let mut options: Vec<(String, String, String)> = Vec::new(); // (title, description, response)
    let mut links: Vec<(String, String)> = Vec::new();
    match kind.as_str() {
        "QuickReply" | "ListPicker" | "Panel" => {
            for element in elements(&content) {
                if !element.url.is_empty() {
                    links.push((element.title, element.url));
                    continue;
                }
                let response = if element.action.is_empty() {
                    String::new()
                } else {
                    action_response(&template, &content, &element.action)
                };
                options.push((element.title, element.subtitle, response));
            }
        }
        "TimePicker" => {
            for slot in content
                .get("timeslots")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let date = str_of(slot, "date");
                let minutes = slot.get("duration").and_then(Value::as_i64).unwrap_or(0);
                let when = time_label(date);
                options.push((when, format!("{minutes} min"), String::new()));
            }
        }
        "Carousel" => {
            // WhatsApp has no free-form carousel: every card's options in
            // one numbered menu, under the card titles.
            let mut menu = title.clone();
            let mut choices = Vec::new();
            for card in content
                .get("elements")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let card_content = card
                    .pointer("/data/content")
                    .cloned()
                    .unwrap_or(Value::Null);
                menu.push_str(&format!("\n\n*{}*", str_of(&card_content, "title")));
                for element in elements(&card_content) {
                    if !element.url.is_empty() {
                        menu.push_str(&format!("\n{}: {}", element.title, element.url));
                        continue;
                    }
                    choices.push(Choice {
                        id: format!("opt-{}", choices.len() + 1),
                        title: element.title.clone(),
                        response: String::new(),
                    });
                    menu.push_str(&format!("\n{}. {}", choices.len(), element.title));
                }
            }
            menu.push_str("\n\nReply with a number.");
            return Rendered {
                content: text(menu.trim_start().to_owned()),
                menu: Some(Menu {
                    template: kind,
                    choices,
                }),
            };
        }
        _ => {
            let shown = if title.is_empty() {
                source.to_owned()
            } else {
                title
            };
            return plain(&shown);
        }
    }
    let choices: Vec<Choice> = options
        .iter()
        .enumerate()
        .map(|(i, (title, _, response))| Choice {
            id: format!("opt-{}", i + 1),
            title: title.clone(),
            response: response.clone(),
        })
        .collect();
    let mut body = if title.is_empty() {
        "Choose an option".to_owned()
    } else {
        title.clone()
    };
    if !subtitle.is_empty() && kind != "QuickReply" {
        body.push('\n');
        body.push_str(&subtitle);
    }
    for (name, url) in &links {
        body.push_str(&format!("\n{name}: {url}"));
    }
    let menu = Some(Menu {
        template: kind.clone(),
        choices: choices.clone(),
    });
    let fits_body = chars(&body) <= limits::BODY && !choices.is_empty();
    // Up to three short options: reply buttons.
    if fits_body
        && choices.len() <= limits::BUTTONS
        && options
            .iter()
            .all(|(t, _, _)| chars(t) <= limits::BUTTON_TITLE)
        && options
            .iter()
            .all(|(_, d, _)| d.is_empty() || kind == "QuickReply" || kind == "Panel")
    {
        return Rendered {
            content: Content::Interactive(InteractiveMessage {
                header: String::new(),
                body,
                footer: String::new(),
                action: Some(wa::interactive_message::Action::Buttons(ButtonsAction {
                    buttons: choices
                        .iter()
                        .map(|c| Button {
                            id: c.id.clone(),
                            title: c.title.clone(),
                        })
                        .collect(),
                })),
            }),
            menu,
        };
    }
    // Up to ten options: a list. A title too long for a row is cut, and
    // shown whole as the row's description when that is free (the menu
    // remembers the whole title, so the answer maps back either way).
    if fits_body
        && choices.len() <= limits::ROWS
        && options.iter().all(|(t, d, _)| {
            chars(t) <= limits::ROW_TITLE || (d.is_empty() && chars(t) <= limits::ROW_DESCRIPTION)
        })
    {
        return Rendered {
            content: Content::Interactive(InteractiveMessage {
                header: String::new(),
                body,
                footer: String::new(),
                action: Some(wa::interactive_message::Action::List(ListAction {
                    button: "Options".into(),
                    sections: vec![ListSection {
                        title: String::new(),
                        rows: choices
                            .iter()
                            .zip(&options)
                            .map(|(c, (title, description, _))| ListRow {
                                id: c.id.clone(),
                                title: fit(title, limits::ROW_TITLE),
                                description: if chars(title) > limits::ROW_TITLE {
                                    title.clone()
                                } else {
                                    fit(description, limits::ROW_DESCRIPTION)
                                },
                            })
                            .collect(),
                    }],
                })),
            }),
            menu,
        };
    }
    // Anything else: a numbered text menu.
    let mut numbered = body;
    for (i, (title, description, _)) in options.iter().enumerate() {
        numbered.push_str(&format!("\n{}. {title}", i + 1));
        if !description.is_empty() {
            numbered.push_str(&format!(" — {description}"));
        }
    }
    numbered.push_str("\n\nReply with a number.");
    Rendered {
        content: text(numbered),
        menu,
    }
}

/// The interactive response Connect expects for an action element.
fn action_response(template: &Value, content: &Value, action: &str) -> String {
    serde_json::json!({
        "version": "1.0",
        "data": {
            "actionName": action,
            "preIndex": content.get("preIndex").cloned().unwrap_or(Value::from(-1)),
            "nextIndex": content.get("nextIndex").cloned().unwrap_or(Value::from(0)),
            "listId": str_of(content, "listId"),
            "templateType": str_of(template, "templateType"),
            "referenceId": str_of(content, "referenceId"),
        },
        "action": action,
    })
    .to_string()
}

/// A time slot as people read it: `Sat 31 Oct 18:00 (UTC+00:00)`.
fn time_label(date: &str) -> String {
    let parsed = time::OffsetDateTime::parse(date, &time::format_description::well_known::Rfc3339)
        .or_else(|_| {
            // Connect writes minutes-precision offsets without seconds.
            time::OffsetDateTime::parse(
                date,
                time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute][offset_hour sign:mandatory]:[offset_minute]"
                ),
            )
        });
    match parsed {
        Ok(t) => t
            .format(time::macros::format_description!(
                "[weekday repr:short] [day] [month repr:short] [hour]:[minute]"
            ))
            .unwrap_or_else(|_| date.to_owned()),
        Err(_) => date.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/events/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn body_of(rendered: &Rendered) -> String {
        match &rendered.content {
            Content::Text(t) => t.body.clone(),
            Content::Interactive(i) => i.body.clone(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn markdown_becomes_whatsapp_formatting() {
        let rendered = markdown(
            "# Your order\n\nIt is **shipped** and _on its way_, ~~late~~ on time.\n\n- one\n- two\n\n1. first\n2. second\n\nUse `code` or see [the site](https://example.com).",
        );
        let body = body_of(&rendered);
        assert!(body.starts_with("*Your order*"), "{body}");
        assert!(body.contains("*shipped*"), "{body}");
        assert!(body.contains("_on its way_"), "{body}");
        assert!(body.contains("~late~"), "{body}");
        assert!(body.contains("- one\n- two"), "{body}");
        assert!(body.contains("1. first\n2. second"), "{body}");
        assert!(body.contains("`code`"), "{body}");
        assert!(body.contains("the site (https://example.com)"), "{body}");
        assert!(!body.contains("**"), "{body}");
    }

    #[test]
    fn a_quick_reply_becomes_buttons_or_a_list() {
        // Four options: too many for buttons, short enough for a list.
        let rendered = interactive(&fixture(
            "connect_interactive_quickreply_chat_ui_examples.json",
        ));
        let Content::Interactive(message) = &rendered.content else {
            panic!("{rendered:?}")
        };
        let Some(wa::interactive_message::Action::List(list)) = &message.action else {
            panic!("a list")
        };
        assert_eq!(list.sections[0].rows.len(), 4);
        assert_eq!(message.body, "How was your experience?");
        let menu = rendered.menu.unwrap();
        assert_eq!(
            menu.chosen("opt-3", "").unwrap().title,
            "Lorem ipsum dolor sit amet"
        );
        assert_eq!(menu.numbered("2").unwrap().id, "opt-2");
    }

    #[test]
    fn a_panel_whose_titles_do_not_fit_buttons_becomes_a_list() {
        // "Check self-service options" is 26 characters: over a button's 20
        // and a row's 24, so the row shows it cut, and whole beneath.
        let rendered = interactive(&fixture("connect_interactive_panel_chat_ui_examples.json"));
        let Content::Interactive(message) = &rendered.content else {
            panic!("{rendered:?}")
        };
        let Some(wa::interactive_message::Action::List(list)) = &message.action else {
            panic!("a list: {message:?}")
        };
        let rows = &list.sections[0].rows;
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].title.chars().count(), 24);
        assert_eq!(rows[0].description, "Check self-service options");
        assert_eq!(rows[1].title, "Talk to an Agent");
        assert_eq!(
            rendered.menu.unwrap().chosen("opt-1", "").unwrap().title,
            "Check self-service options"
        );
    }

    #[test]
    fn three_short_options_become_buttons() {
        let template = serde_json::json!({
            "templateType": "QuickReply",
            "version": "1.0",
            "data": {"content": {"title": "Ready?", "elements": [
                {"title": "Yes"}, {"title": "No"}, {"title": "Later"}
            ]}}
        });
        let rendered = interactive(&template.to_string());
        let Content::Interactive(message) = &rendered.content else {
            panic!("{rendered:?}")
        };
        assert!(matches!(
            &message.action,
            Some(wa::interactive_message::Action::Buttons(b)) if b.buttons.len() == 3 && b.buttons[2].title == "Later"
        ));
    }

    #[test]
    fn a_list_picker_and_a_time_picker_become_lists() {
        let rendered = interactive(&fixture(
            "connect_interactive_listpicker_chat_ui_examples.json",
        ));
        let Content::Interactive(message) = &rendered.content else {
            panic!()
        };
        let Some(wa::interactive_message::Action::List(list)) = &message.action else {
            panic!()
        };
        assert_eq!(list.sections[0].rows[0].title, "Billing");
        assert_eq!(
            list.sections[0].rows[0].description,
            "Request billing information"
        );
        let times = interactive(&fixture(
            "connect_interactive_timepicker_chat_ui_examples.json",
        ));
        let menu = times.menu.unwrap();
        assert_eq!(menu.choices.len(), 3);
        assert!(
            menu.choices[0].title.contains("31 Oct 18:00"),
            "{:?}",
            menu.choices[0]
        );
    }

    #[test]
    fn a_carousel_becomes_a_numbered_menu_with_its_links() {
        let rendered = interactive(&fixture(
            "connect_interactive_carousel_chat_ui_examples.json",
        ));
        let body = body_of(&rendered);
        assert!(body.contains("1. Purchase Ticket"), "{body}");
        assert!(body.contains("Learn More: https://github.com"), "{body}");
        assert!(body.contains("Reply with a number"), "{body}");
        assert!(rendered.menu.unwrap().choices.len() >= 6);
    }

    #[test]
    fn show_more_answers_with_connects_interactive_response() {
        let frame: Value = serde_json::from_str(&fixture(
            "connect_ws_frame_interactive_listpicker_bot_chat_interface.json",
        ))
        .unwrap();
        let item: Value = serde_json::from_str(frame["content"].as_str().unwrap()).unwrap();
        let rendered = interactive(item["Content"].as_str().unwrap());
        let menu = rendered.menu.unwrap();
        let more = menu
            .choices
            .iter()
            .find(|c| c.title == "Show more")
            .unwrap();
        let response: Value = serde_json::from_str(&more.response).unwrap();
        assert_eq!(response["action"], "SHOW_MORE");
        assert_eq!(response["data"]["templateType"], "ListPicker");
        assert_eq!(response["data"]["nextIndex"], 5);
        assert_eq!(response["data"]["listId"], "serviceList");
    }

    #[test]
    fn long_options_fall_back_to_numbered_text() {
        let options: Vec<Value> = (0..12)
            .map(|i| serde_json::json!({"title": format!("Option number {i}")}))
            .collect();
        let template = serde_json::json!({"templateType": "ListPicker", "version": "1.0",
            "data": {"content": {"title": "Pick", "elements": options}}})
        .to_string();
        let body = body_of(&interactive(&template));
        assert!(body.contains("12. Option number 11"), "{body}");
        assert_eq!(body_of(&interactive("not json")), "not json");
    }
}
