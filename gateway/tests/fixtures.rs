//! Every published payload in `tests/fixtures/events/` (see its
//! `sources.md`) through the gateway's parsers: each full event yields the
//! messages and statuses it holds, each placeholder or fragment is refused
//! with a clear reason, each interactive template renders.

use std::{collections::BTreeMap, path::PathBuf};

use parley_gateway::{parse, render};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events")
}

/// The bodies a source would receive: Lambda event records unwrapped (an
/// SQS record's body with its attributes; an SNS record's notification).
fn bodies(text: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let value: Value = serde_json::from_str(text).expect("every fixture is JSON");
    let Some(records) = value.get("Records").and_then(Value::as_array) else {
        return vec![(text.to_owned(), BTreeMap::new())];
    };
    records
        .iter()
        .map(|record| {
            if let Some(sns) = record.get("Sns") {
                return (sns.to_string(), BTreeMap::new());
            }
            let attributes = record
                .get("messageAttributes")
                .and_then(Value::as_object)
                .map(|a| {
                    a.iter()
                        .filter_map(|(k, v)| {
                            Some((k.clone(), v.get("stringValue")?.as_str()?.to_owned()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            (record["body"].as_str().unwrap().to_owned(), attributes)
        })
        .collect()
}

/// What each fixture must yield.
enum Expect {
    /// A WhatsApp event: its messages' kinds, its statuses, its
    /// value-level errors.
    Inbound(&'static [&'static str], &'static [&'static str], usize),
    /// A Connect streaming notification: (role, whether the customer sees it).
    Outbound(&'static str, bool),
    /// Refused, the reason containing this.
    Refused(&'static str),
    /// A Connect interactive template: rendered with this many options.
    Template(usize),
}

use Expect::*;

const EXPECTED: &[(&str, Expect)] = &[
    (
        "connect_chat_item_attachment_agent_chatjs_spec_fragment.json",
        Refused("MessageVisibility"),
    ),
    (
        "connect_chat_item_attachment_chatjs_readme_fragment.json",
        Refused("MessageVisibility"),
    ),
    (
        "connect_chat_transcript_s3_capture_digicall.json",
        Refused("transcript"),
    ),
    (
        "connect_interactive_carousel_chat_ui_examples.json",
        Template(10),
    ),
    (
        "connect_interactive_listpicker_chat_ui_examples.json",
        Template(3),
    ),
    (
        "connect_interactive_panel_chat_ui_examples.json",
        Template(3),
    ),
    (
        "connect_interactive_quickreply_chat_ui_examples.json",
        Template(4),
    ),
    (
        "connect_interactive_response_sendmessage_show_more_chat_interface.json",
        Refused("without an Id"),
    ),
    (
        "connect_interactive_timepicker_chat_ui_examples.json",
        Template(3),
    ),
    (
        "connect_stream_lambda_sns_system_agent_disconnected.json",
        Outbound("SYSTEM", true),
    ),
    (
        "connect_stream_lambda_sns_system_greeting.json",
        Outbound("SYSTEM", true),
    ),
    (
        "connect_stream_sns_docs_customer_text.json",
        Outbound("CUSTOMER", false),
    ),
    (
        "connect_ws_frame_interactive_listpicker_bot_chat_interface.json",
        Refused("websocket frame"),
    ),
    (
        "connect_ws_frame_interactive_listpicker_page2_bot_chat_interface.json",
        Refused("websocket frame"),
    ),
    (
        "eum_docs_event_header_placeholder.json",
        Refused("whatsAppWebhookEntry is not JSON"),
    ),
    (
        "eum_sns_message_text_aws_sample.json",
        Inbound(&["text"], &[], 0),
    ),
    (
        "eum_sns_message_text_clonyo_docs.json",
        Inbound(&["text"], &[], 0),
    ),
    (
        "eum_sqs_sns_envelope_text_emoji_name_clonyo.json",
        Inbound(&["text"], &[], 0),
    ),
    (
        "eum_sqs_sns_envelope_voice_note_clonyo.json",
        Inbound(&["voice"], &[], 0),
    ),
    (
        "meta_capture_audio_voice_sberp.json",
        Inbound(&["voice"], &[], 0),
    ),
    (
        "meta_capture_document_filename_file_caption_sberp.json",
        Inbound(&["document"], &[], 0),
    ),
    (
        "meta_capture_document_unicode_filename_sberp.json",
        Inbound(&["document"], &[], 0),
    ),
    (
        "meta_capture_image_caption_sberp.json",
        Inbound(&["image"], &[], 0),
    ),
    (
        "meta_capture_status_delivered_cbp_sberp.json",
        Inbound(&[], &["Delivered"], 0),
    ),
    (
        "meta_capture_status_failed_131047_sberp.json",
        Inbound(&[], &["Failed"], 0),
    ),
    (
        "meta_capture_status_read_minimal_sberp.json",
        Inbound(&[], &["Read"], 0),
    ),
    (
        "meta_capture_status_sent_cbp_sberp.json",
        Inbound(&[], &["Sent"], 0),
    ),
    (
        "meta_capture_text_emoji_escaped_sberp.json",
        Inbound(&["text"], &[], 0),
    ),
    (
        "meta_capture_text_multiline_markdown_sberp.json",
        Inbound(&["text"], &[], 0),
    ),
    (
        "meta_docs_webhook_button_reply.json",
        Inbound(&["interactive"], &[], 0),
    ),
    (
        "meta_docs_webhook_button_template_quick_reply.json",
        Inbound(&["button"], &[], 0),
    ),
    (
        "meta_docs_webhook_image_with_url.json",
        Inbound(&["image"], &[], 0),
    ),
    (
        "meta_docs_webhook_list_reply.json",
        Inbound(&["interactive"], &[], 0),
    ),
    (
        "meta_docs_webhook_location.json",
        Inbound(&["location"], &[], 0),
    ),
    (
        "meta_docs_webhook_status_failed_131049.json",
        Inbound(&[], &["Failed"], 0),
    ),
    (
        "meta_docs_webhook_status_sent_pmp.json",
        Inbound(&[], &["Sent"], 0),
    ),
    // The page calls it "read"; the payload says "sent", and the payload wins.
    (
        "meta_docs_webhook_status_v24_minimal_labelled_read.json",
        Inbound(&[], &["Sent"], 0),
    ),
    (
        "meta_docs_webhook_sticker_animated.json",
        Inbound(&["sticker"], &[], 0),
    ),
    (
        "meta_docs_webhook_system_user_changed_number.json",
        Inbound(&["system"], &[], 0),
    ),
    ("meta_docs_webhook_text.json", Inbound(&["text"], &[], 0)),
    (
        "meta_docs_webhook_text_ctwa_referral.json",
        Inbound(&["text"], &[], 0),
    ),
    (
        "meta_docs_webhook_text_referred_product_context.json",
        Inbound(&["text"], &[], 0),
    ),
    (
        "meta_docs_webhook_value_errors_rate_limit.json",
        Inbound(&[], &[], 1),
    ),
    (
        "meta_entry_image_aws_eum_docs.json",
        Inbound(&["image"], &[], 0),
    ),
    (
        "meta_entry_status_sent_pricing_aws_eum_docs.json",
        Inbound(&[], &["Sent"], 0),
    ),
    (
        "meta_entry_text_aws_eum_docs_diego.json",
        Inbound(&["text"], &[], 0),
    ),
    (
        "meta_entry_text_bsuid_user_id_aws_sample.json",
        Inbound(&["text"], &[], 0),
    ),
    (
        "meta_webhook_audio_not_voice_pywa.json",
        Inbound(&["audio"], &[], 0),
    ),
    (
        "meta_webhook_audio_voice_pywa.json",
        Inbound(&["voice"], &[], 0),
    ),
    (
        "meta_webhook_batched_two_changes_netflie.json",
        Inbound(&["text", "text"], &[], 0),
    ),
    (
        "meta_webhook_button_template_quick_reply_pywa.json",
        Inbound(&["button"], &[], 0),
    ),
    (
        "meta_webhook_contacts_pywa.json",
        Inbound(&["contacts"], &[], 0),
    ),
    (
        "meta_webhook_document_pywa.json",
        Inbound(&["document"], &[], 0),
    ),
    ("meta_webhook_image_pywa.json", Inbound(&["image"], &[], 0)),
    (
        "meta_webhook_image_with_url_pywa.json",
        Inbound(&["image"], &[], 0),
    ),
    (
        "meta_webhook_interactive_button_reply_capture_crus17.json",
        Inbound(&["interactive"], &[], 0),
    ),
    (
        "meta_webhook_interactive_button_reply_pywa.json",
        Inbound(&["interactive"], &[], 0),
    ),
    (
        "meta_webhook_interactive_list_reply_description_pywa.json",
        Inbound(&["interactive"], &[], 0),
    ),
    (
        "meta_webhook_interactive_nfm_reply_flow_netflie.json",
        Inbound(&["interactive"], &[], 0),
    ),
    // An interactive message with no body: kept (as unsupported) with the
    // value's error, never dropped.
    (
        "meta_webhook_interactive_value_errors_pywa.json",
        Inbound(&["unsupported"], &[], 1),
    ),
    (
        "meta_webhook_location_current_pywa.json",
        Inbound(&["location"], &[], 0),
    ),
    (
        "meta_webhook_location_named_pywa.json",
        Inbound(&["location"], &[], 0),
    ),
    ("meta_webhook_order_pywa.json", Inbound(&["order"], &[], 0)),
    (
        "meta_webhook_reaction_pywa.json",
        Inbound(&["reaction"], &[], 0),
    ),
    (
        "meta_webhook_reaction_removed_empty_emoji_pywa.json",
        Inbound(&["reaction"], &[], 0),
    ),
    (
        "meta_webhook_reaction_removed_no_emoji_pywa.json",
        Inbound(&["reaction"], &[], 0),
    ),
    (
        "meta_webhook_referral_ctwa_pywa.json",
        Inbound(&["text"], &[], 0),
    ),
    (
        "meta_webhook_status_failed_pywa.json",
        Inbound(&[], &["Failed"], 0),
    ),
    (
        "meta_webhook_status_group_read_pywa.json",
        Inbound(&[], &["Read"], 0),
    ),
    (
        "meta_webhook_status_played_bsuid_contacts_pywa.json",
        Inbound(&[], &["Played"], 0),
    ),
    (
        "meta_webhook_status_sent_biz_opaque_callback_pywa.json",
        Inbound(&[], &["Sent"], 0),
    ),
    (
        "meta_webhook_sticker_animated_pywa.json",
        Inbound(&["sticker"], &[], 0),
    ),
    (
        "meta_webhook_sticker_static_pywa.json",
        Inbound(&["sticker"], &[], 0),
    ),
    (
        "meta_webhook_system_user_changed_number_pywa.json",
        Inbound(&["system"], &[], 0),
    ),
    (
        "meta_webhook_text_frequently_forwarded_pywa.json",
        Inbound(&["text"], &[], 0),
    ),
    ("meta_webhook_text_pywa.json", Inbound(&["text"], &[], 0)),
    (
        "meta_webhook_text_reply_context_pywa.json",
        Inbound(&["text"], &[], 0),
    ),
    (
        "meta_webhook_unknown_type_legacy_errors_netflie.json",
        Inbound(&["unsupported"], &[], 0),
    ),
    (
        "meta_webhook_unsupported_pywa.json",
        Inbound(&["unsupported"], &[], 0),
    ),
    (
        "meta_webhook_unsupported_with_type_pywa.json",
        Inbound(&["unsupported"], &[], 0),
    ),
    (
        "meta_webhook_video_forwarded_pywa.json",
        Inbound(&["video"], &[], 0),
    ),
];

fn read(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap()
}

#[test]
fn every_fixture_is_covered_and_yields_what_it_holds() {
    let mut names: Vec<_> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        81,
        "the corpus has 81 payloads (the brief says 80; sources.md lists 81)"
    );
    let listed: Vec<_> = EXPECTED.iter().map(|(name, _)| name.to_string()).collect();
    assert_eq!(names, listed, "every fixture has an expectation, in order");

    for (name, expect) in EXPECTED {
        let text = read(name);
        let body_list = bodies(&text);
        assert_eq!(body_list.len(), 1, "{name}: one event per fixture");
        let (body, attributes) = &body_list[0];
        match expect {
            Inbound(kinds, statuses, errors) => {
                let webhook = parse::inbound(body, attributes)
                    .unwrap_or_else(|e| panic!("{name}: {}", e.reason));
                let got: Vec<_> = webhook
                    .messages
                    .iter()
                    .map(|m| m.content.kind_name())
                    .collect();
                assert_eq!(&got, kinds, "{name}: messages");
                let got: Vec<_> = webhook
                    .statuses
                    .iter()
                    .map(|s| format!("{:?}", s.status))
                    .collect();
                assert_eq!(&got, statuses, "{name}: statuses");
                assert_eq!(webhook.errors.len(), *errors, "{name}: errors");
                for message in &webhook.messages {
                    assert!(
                        message.wamid.starts_with("wamid.") || !message.wamid.is_empty(),
                        "{name}: id"
                    );
                    assert!(
                        !message.from.is_empty() || !message.from_user_id.is_empty(),
                        "{name}: sender"
                    );
                    assert!(
                        !message.meta_phone_number_id.is_empty(),
                        "{name}: business number"
                    );
                }
                for status in &webhook.statuses {
                    assert!(!status.wamid.is_empty(), "{name}: status id");
                }
            }
            Outbound(role, for_customer) => {
                let item = parse::outbound(body, attributes)
                    .unwrap_or_else(|e| panic!("{name}: {}", e.reason));
                assert_eq!(item.participant_role, *role, "{name}");
                assert_eq!(item.for_customer(), *for_customer, "{name}");
                assert!(!item.id.is_empty() && !item.contact_id.is_empty(), "{name}");
            }
            Refused(reason) => {
                let refused = if name.starts_with("connect_") {
                    parse::outbound(body, attributes).err()
                } else {
                    parse::inbound(body, attributes).err()
                };
                let refused = refused.unwrap_or_else(|| panic!("{name}: should be refused"));
                assert!(
                    refused.reason.contains(reason),
                    "{name}: {}",
                    refused.reason
                );
            }
            Template(options) => {
                let rendered = render::to_customer::interactive(body);
                let menu = rendered.menu.unwrap_or_else(|| panic!("{name}: a menu"));
                assert_eq!(menu.choices.len(), *options, "{name}: options");
            }
        }
    }
}

fn only_message(name: &str) -> parse::whatsapp::RawMessage {
    let (body, attributes) = bodies(&read(name)).remove(0);
    let mut webhook = parse::inbound(&body, &attributes).unwrap();
    assert_eq!(webhook.messages.len(), 1);
    webhook.messages.remove(0)
}

#[test]
fn details_survive_every_envelope() {
    use parley_gateway::model::{Content, MediaKind, ReplyKind};

    // Three layers deep: SQS record → SNS notification → EUM message →
    // the entry as a JSON string. The number's ARN comes from the context.
    let (body, attributes) = bodies(&read("eum_sqs_sns_envelope_voice_note_clonyo.json")).remove(0);
    let webhook = parse::inbound(&body, &attributes).unwrap();
    assert_eq!(webhook.numbers[0].0, "642999532234769");
    assert!(
        webhook.numbers[0]
            .1
            .ends_with("phone-number-id/b49d8750cd264153a40df4fea2e5b17a")
    );
    assert!(matches!(
        &webhook.messages[0].content,
        Content::Media { kind: MediaKind::Audio, voice: true, mime_type, .. } if mime_type.starts_with("audio/ogg")
    ));

    // Meta's escapes decode: a unicode file name, an emoji pair.
    assert!(matches!(
        only_message("meta_capture_document_unicode_filename_sberp.json").content,
        Content::Media { file_name, .. } if file_name == "Cotação-10.pdf"
    ));
    assert!(matches!(
        only_message("meta_capture_text_emoji_escaped_sberp.json").content,
        Content::Text { body } if body.contains('🤘')
    ));
    // A business-scoped user id is a real customer.
    let bsuid = only_message("meta_entry_text_bsuid_user_id_aws_sample.json");
    assert_eq!(bsuid.from_user_id, "US.26852818834383302");
    // Removed reactions: an empty emoji, present or absent.
    for name in [
        "meta_webhook_reaction_removed_empty_emoji_pywa.json",
        "meta_webhook_reaction_removed_no_emoji_pywa.json",
    ] {
        assert!(
            matches!(only_message(name).content, Content::Reaction { emoji, .. } if emoji.is_empty()),
            "{name}"
        );
    }
    // Replies and forwards keep their context; ads their referral.
    assert!(
        !only_message("meta_webhook_text_reply_context_pywa.json")
            .context
            .reply_to
            .is_empty()
    );
    assert!(
        only_message("meta_webhook_text_frequently_forwarded_pywa.json")
            .context
            .frequently_forwarded
    );
    assert!(
        only_message("meta_docs_webhook_text_ctwa_referral.json")
            .referral
            .is_some()
    );
    assert!(
        !only_message("meta_docs_webhook_text_referred_product_context.json")
            .context
            .referred_product
            .is_empty()
    );
    // A flow's answers are kept as JSON; a list row keeps its description.
    assert!(matches!(
        only_message("meta_webhook_interactive_nfm_reply_flow_netflie.json").content,
        Content::Interactive { kind: ReplyKind::Flow, response_json, .. } if response_json.starts_with('{')
    ));
    assert!(matches!(
        only_message("meta_webhook_interactive_list_reply_description_pywa.json").content,
        Content::Interactive { kind: ReplyKind::List, description, .. } if !description.is_empty()
    ));
    // Locations keep coordinates given as numbers.
    assert!(matches!(
        only_message("meta_docs_webhook_location.json").content,
        Content::Location { latitude, longitude, .. } if latitude != 0.0 && longitude != 0.0
    ));
    // Contacts: all three cards.
    assert!(matches!(
        only_message("meta_webhook_contacts_pywa.json").content,
        Content::Contacts { cards } if cards.len() == 3
    ));
    // A failed status carries Meta's error.
    let (body, attributes) =
        bodies(&read("meta_capture_status_failed_131047_sberp.json")).remove(0);
    let webhook = parse::inbound(&body, &attributes).unwrap();
    assert_eq!(webhook.statuses[0].errors[0].code, 131047);
    // Connect: the attributes' ContactId (the current contact) wins over
    // the item's, and the initial contact is kept.
    let (body, attributes) = bodies(&read(
        "connect_stream_lambda_sns_system_agent_disconnected.json",
    ))
    .remove(0);
    let item = parse::outbound(&body, &attributes).unwrap();
    assert!(
        item.contact_id.starts_with("fc367a2e"),
        "{}",
        item.contact_id
    );
    assert!(
        item.initial_contact_id.starts_with("00ed6f5e"),
        "{}",
        item.initial_contact_id
    );
}

#[test]
fn bad_input_is_refused_with_a_reason_and_never_panics() {
    let empty = BTreeMap::new();
    for body in [
        "",
        "null",
        "[]",
        "{}",
        "{\"Type\":\"Notification\",\"TopicArn\":\"t\"}",
        "\u{0}",
    ] {
        assert!(parse::inbound(body, &empty).is_err(), "{body:?}");
        assert!(parse::outbound(body, &empty).is_err(), "{body:?}");
    }
}
