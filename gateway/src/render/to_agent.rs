//! What the agent sees of a customer's burst: a plan of steps, in order.
//! Consecutive texts (and everything shown as text: locations, contacts,
//! orders, template buttons, system notices) merge into one message with
//! newlines; media never merges and is never overtaken; a caption follows
//! its picture as text. Pure: no I/O, so every mapping is unit-tested.
//!
//! Steps that need something only the session knows — the message a reply
//! quotes, the menu an interactive answer chose from — name it; delivery
//! looks it up.

use crate::model::{
    ContactCard, Content, CustomerMessage, MediaKind, OrderItem, Referral, ReplyKind,
};

/// One thing to do at the agent's side.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Text, sent as `text/plain` (split at Connect's limit by the relay).
    Text {
        /// What to send.
        text: String,
        /// The customer messages it carries, in order.
        wamids: Vec<String>,
        /// The message the first of them replies to, to show as a quote.
        quote: String,
    },
    /// A file to attach (picture, video, document, sticker, audio file).
    Attachment {
        /// The customer message.
        wamid: String,
        /// What WhatsApp calls it.
        kind: MediaKind,
        /// WhatsApp's media id.
        media_id: String,
        /// Its MIME type.
        mime_type: String,
        /// A file name for the agent.
        file_name: String,
    },
    /// A voice note: attached as WAV and transcribed.
    Voice {
        /// The customer message.
        wamid: String,
        /// WhatsApp's media id.
        media_id: String,
        /// Its MIME type (OGG/Opus).
        mime_type: String,
    },
    /// An answer to an interactive message: its title, or the interactive
    /// response Connect expects when the menu Parley sent is known.
    Choice {
        /// The customer message.
        wamid: String,
        /// The menu message it answers.
        reply_to: String,
        /// The option's id.
        option_id: String,
        /// What the customer tapped.
        title: String,
    },
    /// A reaction, quoting the message it reacts to.
    Reaction {
        /// The customer message.
        wamid: String,
        /// The message reacted to.
        target: String,
        /// The emoji (empty: removed).
        emoji: String,
    },
    /// Something only the agent should read (what arrived and why it is
    /// not shown as sent).
    Notice {
        /// The customer message.
        wamid: String,
        /// The notice's kind (`unsupported`, …).
        kind: &'static str,
        /// Its text.
        text: String,
    },
}

impl Step {
    /// The customer messages this step carries.
    pub fn wamids(&self) -> Vec<String> {
        match self {
            Self::Text { wamids, .. } => wamids.clone(),
            Self::Attachment { wamid, .. }
            | Self::Voice { wamid, .. }
            | Self::Choice { wamid, .. }
            | Self::Reaction { wamid, .. }
            | Self::Notice { wamid, .. } => vec![wamid.clone()],
        }
    }
}

/// The steps for a burst of one customer's messages, in the order the
/// customer sent them: by WhatsApp's timestamp (whole seconds), and in
/// arrival order within a second (webhooks may arrive out of order).
pub fn plan(messages: &[CustomerMessage]) -> Vec<Step> {
    let mut ordered: Vec<&CustomerMessage> = messages.iter().collect();
    ordered.sort_by_key(|m| m.sent_at_ms);
    let mut steps: Vec<Step> = Vec::new();
    for message in ordered {
        for step in steps_of(message) {
            push_merging(&mut steps, step);
        }
    }
    steps
}

/// Appends `step`, merging it into the previous text when both are plain
/// text and the new one quotes nothing (a quote starts its own message).
fn push_merging(steps: &mut Vec<Step>, step: Step) {
    if let Step::Text {
        text,
        wamids,
        quote,
    } = &step
        && quote.is_empty()
        && let Some(Step::Text {
            text: previous,
            wamids: carried,
            ..
        }) = steps.last_mut()
    {
        previous.push('\n');
        previous.push_str(text);
        carried.extend(wamids.iter().cloned());
        return;
    }
    steps.push(step);
}

fn text_step(message: &CustomerMessage, text: String) -> Step {
    Step::Text {
        text: decorate(message, text),
        wamids: vec![message.wamid.clone()],
        quote: message.context.reply_to.clone(),
    }
}

/// Marks forwarded messages and names the ad a message came from.
fn decorate(message: &CustomerMessage, text: String) -> String {
    let mut out = String::new();
    if let Some(referral) = &message.referral {
        out.push_str(&referral_line(referral));
        out.push('\n');
    }
    if !message.context.referred_product.is_empty() {
        out.push_str(&format!(
            "🛍 About product {}\n",
            message.context.referred_product
        ));
    }
    if message.context.frequently_forwarded {
        out.push_str("↪↪ Forwarded many times:\n");
    } else if message.context.forwarded {
        out.push_str("↪ Forwarded:\n");
    }
    out.push_str(&text);
    out
}

fn referral_line(referral: &Referral) -> String {
    let mut line = String::from("📣 Came from an ad");
    if !referral.headline.is_empty() {
        line.push_str(&format!(": {}", referral.headline));
    }
    if !referral.body.is_empty() {
        line.push_str(&format!(" — {}", referral.body));
    }
    if !referral.source_url.is_empty() {
        line.push_str(&format!(" ({})", referral.source_url));
    }
    line
}

/// The steps of one message.
fn steps_of(message: &CustomerMessage) -> Vec<Step> {
    let wamid = message.wamid.clone();
    match &message.content {
        Content::Text { body } => vec![text_step(message, body.clone())],
        Content::Media {
            kind,
            media_id,
            mime_type,
            caption,
            file_name,
            voice,
            ..
        } => {
            let is_voice = *kind == MediaKind::Audio && (*voice || is_opus(mime_type));
            let mut steps = vec![if is_voice {
                Step::Voice {
                    wamid: wamid.clone(),
                    media_id: media_id.clone(),
                    mime_type: mime_type.clone(),
                }
            } else {
                Step::Attachment {
                    wamid: wamid.clone(),
                    kind: *kind,
                    media_id: media_id.clone(),
                    mime_type: mime_type.clone(),
                    file_name: attachment_name(*kind, file_name, mime_type, &wamid),
                }
            }];
            let decorated = decorate(message, caption.clone());
            if !decorated.is_empty() {
                steps.push(Step::Text {
                    text: decorated,
                    wamids: vec![wamid],
                    quote: String::new(),
                });
            }
            steps
        }
        Content::Location {
            latitude,
            longitude,
            name,
            address,
            url,
        } => vec![text_step(
            message,
            location_text(*latitude, *longitude, name, address, url),
        )],
        Content::Contacts { cards } => vec![text_step(message, contacts_text(cards))],
        Content::Interactive {
            kind: ReplyKind::Flow,
            response_json,
            ..
        } => vec![text_step(
            message,
            format!("📝 Form answers: {response_json}"),
        )],
        Content::Interactive { id, title, .. } => vec![Step::Choice {
            wamid,
            reply_to: message.context.reply_to.clone(),
            option_id: id.clone(),
            title: title.clone(),
        }],
        Content::Button { text, .. } => vec![text_step(message, text.clone())],
        Content::Order {
            catalog_id,
            text,
            items,
        } => vec![text_step(message, order_text(catalog_id, text, items))],
        Content::Reaction { message_id, emoji } => vec![Step::Reaction {
            wamid,
            target: message_id.clone(),
            emoji: emoji.clone(),
        }],
        Content::System { kind, body } => vec![Step::Notice {
            wamid,
            kind: "system",
            text: if body.is_empty() {
                format!("WhatsApp reports: {kind}")
            } else {
                format!("WhatsApp reports: {body}")
            },
        }],
        Content::Unsupported { kind, reason } => vec![Step::Notice {
            wamid,
            kind: "unsupported",
            text: unsupported_text(kind, reason),
        }],
    }
}

/// Whether a MIME type is OGG/Opus (voice notes, also when WhatsApp did
/// not flag them).
pub fn is_opus(mime_type: &str) -> bool {
    let mime = mime_type.to_ascii_lowercase();
    mime.starts_with("audio/ogg") || mime.contains("opus")
}

/// The file name the agent sees: the customer's, else one made of the
/// kind and a short id, with the extension of the MIME type.
pub fn attachment_name(kind: MediaKind, given: &str, mime_type: &str, wamid: &str) -> String {
    let given = given.trim();
    if !given.is_empty() && !given.contains(['/', '\\']) {
        return given.to_owned();
    }
    let short: String = parley_identity::fingerprint(wamid)
        .chars()
        .take(8)
        .collect();
    format!("{}-{short}.{}", kind.as_str(), extension(mime_type))
}

/// A file extension for a MIME type.
pub fn extension(mime_type: &str) -> &'static str {
    let essence = mime_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "image/jpeg" | "image/jpg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "image/heic" => "heic",
        "video/mp4" => "mp4",
        "video/3gpp" => "3gp",
        "video/quicktime" => "mov",
        "audio/ogg" => "ogg",
        "audio/mpeg" => "mp3",
        "audio/mp4" | "audio/aac" => "m4a",
        "audio/amr" => "amr",
        "audio/wav" | "audio/x-wav" | "audio/wave" => "wav",
        "application/pdf" => "pdf",
        "text/plain" => "txt",
        "text/csv" => "csv",
        "application/msword" => "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "application/vnd.ms-powerpoint" => "ppt",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation" => "pptx",
        _ => "bin",
    }
}

/// A location as text, with a maps link anyone can open.
pub fn location_text(
    latitude: f64,
    longitude: f64,
    name: &str,
    address: &str,
    url: &str,
) -> String {
    let mut text = String::from("📍 Location");
    if !name.is_empty() {
        text.push_str(&format!(": {name}"));
    }
    if !address.is_empty() {
        text.push_str(&format!("\n{address}"));
    }
    text.push_str(&format!(
        "\n{latitude:.6}, {longitude:.6}\nhttps://www.google.com/maps/search/?api=1&query={latitude:.6},{longitude:.6}"
    ));
    if !url.is_empty() {
        text.push_str(&format!("\n{url}"));
    }
    text
}

/// Shared contact cards as readable lines.
pub fn contacts_text(cards: &[ContactCard]) -> String {
    let mut text = String::from(if cards.len() == 1 {
        "👤 Shared a contact:"
    } else {
        "👥 Shared contacts:"
    });
    for card in cards {
        text.push_str("\n• ");
        text.push_str(if card.name.is_empty() {
            "(no name)"
        } else {
            &card.name
        });
        if !card.organization.is_empty() {
            text.push_str(&format!(" ({})", card.organization));
        }
        for phone in &card.phones {
            text.push_str(&format!("\n  📞 {phone}"));
        }
        for email in &card.emails {
            text.push_str(&format!("\n  ✉ {email}"));
        }
    }
    text
}

/// An order as readable lines with a total per currency.
pub fn order_text(catalog_id: &str, note: &str, items: &[OrderItem]) -> String {
    let mut text = format!("🛒 Order from catalog {catalog_id}:");
    let mut totals: Vec<(String, f64)> = Vec::new();
    for item in items {
        text.push_str(&format!(
            "\n• {} × {} at {:.2} {}",
            item.quantity, item.product_retailer_id, item.item_price, item.currency
        ));
        let line = item.quantity * item.item_price;
        match totals.iter_mut().find(|(c, _)| *c == item.currency) {
            Some((_, sum)) => *sum += line,
            None => totals.push((item.currency.clone(), line)),
        }
    }
    for (currency, sum) in totals {
        text.push_str(&format!("\nTotal: {sum:.2} {currency}"));
    }
    if !note.is_empty() {
        text.push_str(&format!("\nNote: {note}"));
    }
    text
}

/// What the agent is told about a message Parley cannot show.
pub fn unsupported_text(kind: &str, reason: &str) -> String {
    let mut text = format!("The customer sent a message of a type Parley cannot show ({kind})");
    if !reason.is_empty() {
        text.push_str(&format!(": {reason}"));
    }
    text.push_str(". Ask them to send it another way if it matters.");
    text
}

/// The text of a reaction, quoting the message it reacts to.
pub fn reaction_text(emoji: &str, quoted: &str) -> String {
    let target = if quoted.is_empty() {
        "a message".to_owned()
    } else {
        format!("«{quoted}»")
    };
    if emoji.is_empty() {
        format!("(removed their reaction to {target})")
    } else {
        format!("Reacted {emoji} to {target}")
    }
}

/// A quote line for a reply.
pub fn quote_line(excerpt: &str) -> String {
    format!("↩ In reply to «{excerpt}»:")
}

/// A short excerpt of a message, for quotes and links (first line, at most
/// `max` characters).
pub fn excerpt(text: &str, max: usize) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim();
    if line.chars().count() <= max {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The label of a voice note's transcript for the agent.
pub fn transcript_text(duration_ms: u64, transcript: &str, language: &str) -> String {
    let seconds = duration_ms / 1000;
    let mut label = format!("🎤 Voice note ({}:{:02})", seconds / 60, seconds % 60);
    if !language.is_empty() {
        label.push_str(&format!(", {language}"));
    }
    if transcript.trim().is_empty() {
        format!("{label}: no speech recognised.")
    } else {
        format!("{label}, transcript:\n{}", transcript.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MessageContext;

    fn message(wamid: &str, content: Content) -> CustomerMessage {
        CustomerMessage {
            wamid: wamid.into(),
            business: "phone-number-id-0123456789abcdef0123456789abcdef".into(),
            customer: "14155550100".into(),
            phone: "14155550100".into(),
            profile_name: "Ana".into(),
            sent_at_ms: 0,
            context: MessageContext::default(),
            referral: None,
            content,
            traceparent: String::new(),
        }
    }

    fn text(wamid: &str, body: &str) -> CustomerMessage {
        message(wamid, Content::Text { body: body.into() })
    }

    fn image(wamid: &str, caption: &str) -> CustomerMessage {
        message(
            wamid,
            Content::Media {
                kind: MediaKind::Image,
                media_id: format!("m-{wamid}"),
                mime_type: "image/jpeg".into(),
                caption: caption.into(),
                file_name: String::new(),
                voice: false,
                animated: false,
            },
        )
    }

    #[test]
    fn consecutive_texts_merge_in_order_and_media_is_never_overtaken() {
        let steps = plan(&[
            text("w1", "hello"),
            text("w2", "are you there?"),
            image("w3", "my receipt"),
            text("w4", "thanks"),
        ]);
        assert_eq!(steps.len(), 3, "{steps:#?}");
        assert_eq!(
            steps[0],
            Step::Text {
                text: "hello\nare you there?".into(),
                wamids: vec!["w1".into(), "w2".into()],
                quote: String::new()
            }
        );
        assert!(matches!(&steps[1], Step::Attachment { wamid, .. } if wamid == "w3"));
        // The caption is text after its picture, and the next text joins it.
        assert_eq!(
            steps[2],
            Step::Text {
                text: "my receipt\nthanks".into(),
                wamids: vec!["w3".into(), "w4".into()],
                quote: String::new()
            }
        );
    }

    #[test]
    fn messages_are_put_back_in_the_order_they_were_sent() {
        let mut late = text("w1", "first");
        late.sent_at_ms = 1_000;
        let mut early = text("w2", "second");
        early.sent_at_ms = 2_000;
        // Arrived second-first; the same second keeps arrival order.
        let mut same = text("w3", "third");
        same.sent_at_ms = 2_000;
        let steps = plan(&[early, late, same]);
        assert!(
            matches!(&steps[0], Step::Text { text, .. } if text == "first\nsecond\nthird"),
            "{steps:?}"
        );
    }

    #[test]
    fn a_reply_starts_its_own_message_with_its_quote() {
        let mut reply = text("w2", "yes, that one");
        reply.context.reply_to = "wamid.agent".into();
        let steps = plan(&[text("w1", "hi"), reply]);
        assert_eq!(steps.len(), 2);
        assert!(matches!(&steps[1], Step::Text { quote, .. } if quote == "wamid.agent"));
    }

    #[test]
    fn voice_notes_are_recognised_by_flag_or_codec() {
        let mut voice = message(
            "w1",
            Content::Media {
                kind: MediaKind::Audio,
                media_id: "m".into(),
                mime_type: "audio/ogg; codecs=opus".into(),
                caption: String::new(),
                file_name: String::new(),
                voice: false,
                animated: false,
            },
        );
        assert!(matches!(plan(&[voice.clone()])[0], Step::Voice { .. }));
        if let Content::Media { mime_type, .. } = &mut voice.content {
            *mime_type = "audio/mpeg".into();
        }
        assert!(matches!(plan(&[voice])[0], Step::Attachment { .. }));
    }

    #[test]
    fn everything_else_reads_as_text_or_a_notice() {
        let location = message(
            "w1",
            Content::Location {
                latitude: 38.7223,
                longitude: -9.1393,
                name: "Praça do Comércio".into(),
                address: "Lisboa".into(),
                url: String::new(),
            },
        );
        let steps = plan(&[location]);
        let Step::Text { text, .. } = &steps[0] else {
            panic!("{steps:?}")
        };
        assert!(text.contains("Praça do Comércio") && text.contains("38.722300, -9.139300"));
        assert!(text.contains("google.com/maps"));

        let unsupported = message(
            "w2",
            Content::Unsupported {
                kind: "unsupported".into(),
                reason: "Message type unknown".into(),
            },
        );
        assert!(matches!(
            &plan(&[unsupported])[0],
            Step::Notice { kind: "unsupported", text, .. } if text.contains("Message type unknown")
        ));
    }

    #[test]
    fn orders_total_per_currency() {
        let text = order_text(
            "cat",
            "gift wrap",
            &[
                OrderItem {
                    product_retailer_id: "sku1".into(),
                    quantity: 2.0,
                    item_price: 10.0,
                    currency: "EUR".into(),
                },
                OrderItem {
                    product_retailer_id: "sku2".into(),
                    quantity: 1.0,
                    item_price: 5.5,
                    currency: "EUR".into(),
                },
            ],
        );
        assert!(text.contains("Total: 25.50 EUR"), "{text}");
        assert!(text.contains("Note: gift wrap"));
    }

    #[test]
    fn names_and_labels() {
        assert_eq!(
            attachment_name(MediaKind::Document, "report.pdf", "application/pdf", "w"),
            "report.pdf"
        );
        assert!(attachment_name(MediaKind::Image, "", "image/jpeg", "w").starts_with("image-"));
        assert!(attachment_name(MediaKind::Image, "../x", "image/jpeg", "w").ends_with(".jpg"));
        assert_eq!(excerpt("\n  first line  \nsecond", 40), "first line");
        assert_eq!(excerpt("abcdef", 4), "abc…");
        assert_eq!(reaction_text("👍", "hi"), "Reacted 👍 to «hi»");
        assert!(reaction_text("", "").contains("removed"));
        assert!(
            transcript_text(65_000, "hello", "en-US").starts_with("🎤 Voice note (1:05), en-US")
        );
    }
}
