//! Every WhatsAppSender RPC through the real Social Messaging and S3 SDK
//! clients, against the sandbox (Social Messaging) and moto (S3), with the
//! send ledger in the session service — the stack the builder starts.

use std::time::Duration;

use bytes::Bytes;
use parley_client::{WhatsAppApi, media};
use parley_local::{Component, Stack};
use parley_proto::{
    common::{ErrorReason, MediaHeader},
    session::{ClaimMessageRequest, MessageOrigin},
    whatsapp::{
        Button, ButtonsAction, DownloadMediaRequest, InteractiveMessage, ListAction, ListRow,
        ListSection, MarkReadRequest, MediaKind, MediaMessage, ReactionMessage, SendMessageRequest,
        TemplateMessage, TextMessage, UploadMediaStart, interactive_message,
        send_message_request::Content,
    },
};
use parley_sandbox::state::WhatsAppMedia;
use tonic::Code;

const NUMBER: &str = "phone-number-id-0123456789abcdef0123456789abcdef";
const META_ID: &str = "503650672828631";

async fn stack() -> Stack {
    Stack::builder()
        .with(Component::Session)
        .with(Component::WhatsAppSender)
        .with_moto()
        .sender_config(|c| {
            c.number_map
                .insert(META_ID, NUMBER)
                .expect("a valid mapping");
            c.ledger_claim_timeout = Duration::from_secs(1);
        })
        .start()
        .await
        .expect("the stack starts")
}

fn text(body: &str) -> Content {
    Content::Text(TextMessage {
        body: body.into(),
        preview_url: false,
    })
}

fn request(content: Content, reply_to: &str) -> SendMessageRequest {
    SendMessageRequest {
        business_number_id: NUMBER.into(),
        recipient: "14155550123".into(),
        reply_to_message_id: reply_to.into(),
        content: Some(content),
        idempotency_key: String::new(),
    }
}

#[tokio::test]
async fn text_reactions_interactive_templates_and_read_receipts() {
    let stack = stack().await;
    let client = stack.whatsapp();
    // 5,000 characters: two messages, the first quoting the customer's.
    let body = "ok ".repeat(1_667);
    let sent = client
        .send_message(request(text(&body), "wamid.IN"))
        .await
        .unwrap();
    assert_eq!(sent.message_ids.len(), 2);
    client
        .send_message(request(
            Content::Reaction(ReactionMessage {
                message_id: "wamid.IN".into(),
                emoji: "👀".into(),
            }),
            "",
        ))
        .await
        .unwrap();
    client
        .send_message(request(
            Content::Interactive(InteractiveMessage {
                body: "How can we help?".into(),
                action: Some(interactive_message::Action::Buttons(ButtonsAction {
                    buttons: vec![
                        Button {
                            id: "billing".into(),
                            title: "Billing".into(),
                        },
                        Button {
                            id: "other".into(),
                            title: "Other".into(),
                        },
                    ],
                })),
                ..InteractiveMessage::default()
            }),
            "",
        ))
        .await
        .unwrap();
    client
        .send_message(request(
            Content::Interactive(InteractiveMessage {
                body: "Pick a slot".into(),
                action: Some(interactive_message::Action::List(ListAction {
                    button: "Slots".into(),
                    sections: vec![ListSection {
                        title: "Monday".into(),
                        rows: vec![ListRow {
                            id: "mon-9".into(),
                            title: "9:00".into(),
                            description: String::new(),
                        }],
                    }],
                })),
                ..InteractiveMessage::default()
            }),
            "",
        ))
        .await
        .unwrap();
    client
        .send_message(request(
            Content::Template(TemplateMessage {
                name: "order_update".into(),
                language_code: "en_US".into(),
                body_parameters: vec!["42".into()],
            }),
            "",
        ))
        .await
        .unwrap();
    // The Meta numeric id works through the configured map.
    client
        .mark_read(MarkReadRequest {
            business_number_id: META_ID.into(),
            message_id: "wamid.IN".into(),
            show_typing: true,
        })
        .await
        .unwrap();
    // A customer known only by a business-scoped user id is addressed as
    // `recipient`.
    let mut by_user_id = request(text("hello"), "");
    by_user_id.recipient = "US.13491208655302741918".into();
    client.send_message(by_user_id).await.unwrap();

    let sent = stack.sandbox.sandbox.whatsapp_sent();
    assert_eq!(sent.len(), 8);
    assert!(sent.iter().all(|s| s.origination == NUMBER));
    assert_eq!(sent[0].message["to"], "+14155550123");
    assert_eq!(sent[0].message["context"]["message_id"], "wamid.IN");
    let joined: String = sent[..2]
        .iter()
        .map(|s| s.message["text"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(joined, body, "nothing lost across the split");
    assert_eq!(sent[2].message["reaction"]["emoji"], "👀");
    assert_eq!(sent[3].message["interactive"]["type"], "button");
    assert_eq!(
        sent[4].message["interactive"]["action"]["sections"][0]["rows"][0]["id"],
        "mon-9"
    );
    assert_eq!(
        sent[5].message["template"]["components"][0]["parameters"][0]["text"],
        "42"
    );
    assert_eq!(sent[6].message["status"], "read");
    assert_eq!(sent[6].message["typing_indicator"]["type"], "text");
    assert_eq!(sent[7].message["recipient"], "US.13491208655302741918");
    assert!(sent[7].message.get("to").is_none());
}

/// With an idempotency key, every part is sent at most once: a repeat
/// sends nothing, and a retry after a failure part-way resumes at the
/// first unsent part.
#[tokio::test]
async fn long_sends_are_effectively_once_and_resume_after_a_partial_failure() {
    let mut stack = stack().await;
    // See the first failure (the default policy would retry and resume).
    stack.set_call_policy(parley_client::CallPolicy::default().once());
    let client = stack.whatsapp();
    let sandbox = &stack.sandbox.sandbox;
    let body = "x".repeat(9_000); // three parts
    let mut keyed = request(text(&body), "");
    keyed.idempotency_key = "connect-msg-1".into();
    let first = client.send_message(keyed.clone()).await.unwrap();
    assert_eq!(first.message_ids.len(), 3);
    assert_eq!(first.already_sent, 0);
    // Sent again (an SQS redelivery, a second replica): nothing new goes out.
    let again = client.send_message(keyed.clone()).await.unwrap();
    assert_eq!(again.message_ids, first.message_ids);
    assert_eq!(again.already_sent, 3);
    assert_eq!(sandbox.whatsapp_sent().len(), 3);

    // Part 0 goes through, part 1 is throttled beyond the SDK's retries.
    let mut resumed = request(text(&body), "");
    resumed.idempotency_key = "connect-msg-2".into();
    sandbox.throttle_after(1, 10);
    let failed = client.send_message(resumed.clone()).await.unwrap_err();
    assert_eq!(failed.code, Code::Unavailable);
    assert!(failed.is_retryable());
    assert_eq!(
        failed.completed_ids().len(),
        1,
        "the part sent before the failure is reported"
    );
    assert_eq!(failed.aws_code(), "ThrottledRequestException");
    sandbox.throttle_next(0);
    let retried = client.send_message(resumed).await.unwrap();
    assert_eq!(retried.already_sent, 1);
    assert_eq!(retried.message_ids[0], failed.completed_ids()[0]);
    let parts: Vec<String> = sandbox.whatsapp_sent()[3..]
        .iter()
        .map(|s| s.message["text"]["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(parts.len(), 3, "no part twice");
    assert_eq!(parts.concat(), body);
}

/// A sender that died after claiming a part (and perhaps sending it) holds
/// the part until its claim times out: meanwhile a retry is told to wait
/// (BUSY, retryable, with a delay); after it, the part is sent.
#[tokio::test]
async fn a_part_claimed_by_a_vanished_sender_is_retried_after_its_timeout() {
    let mut stack = stack().await;
    stack.set_call_policy(parley_client::CallPolicy::default().once());
    let session = stack.session();
    use parley_client::SessionApi;
    let claimed = session
        .claim_message(ClaimMessageRequest {
            origin: MessageOrigin::WhatsappSend as i32,
            message_id: "connect-msg-3#0".into(),
            ttl_s: 0,
            in_progress_timeout_s: 1,
        })
        .await
        .unwrap();
    assert!(!claimed.claim_token.is_empty());
    let mut keyed = request(text("hello"), "");
    keyed.idempotency_key = "connect-msg-3".into();
    let busy = stack
        .whatsapp()
        .send_message(keyed.clone())
        .await
        .unwrap_err();
    assert_eq!(busy.code, Code::Aborted);
    assert_eq!(busy.reason(), ErrorReason::Busy);
    assert!(busy.is_retryable());
    assert!(busy.retry_after().is_some());
    assert!(stack.sandbox.sandbox.whatsapp_sent().is_empty());
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let sent = stack.whatsapp().send_message(keyed).await.unwrap();
    assert_eq!(sent.message_ids.len(), 1);
    assert_eq!(stack.sandbox.sandbox.whatsapp_sent().len(), 1);
}

fn upload_start(mime: &str, size: u64) -> UploadMediaStart {
    UploadMediaStart {
        business_number_id: NUMBER.into(),
        media: Some(MediaHeader {
            mime_type: mime.into(),
            file_name: String::new(),
            size_bytes: size,
        }),
    }
}

fn body_in_pieces(bytes: &[u8]) -> media::MediaBody {
    let pieces: Vec<std::io::Result<Bytes>> = bytes
        .chunks(8 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::StreamExt::boxed(futures::stream::iter(pieces))
}

#[tokio::test]
async fn voice_note_upload_streams_then_sends_by_id() {
    let stack = stack().await;
    let client = stack.whatsapp();
    let ogg: Vec<u8> = b"OggS"
        .iter()
        .copied()
        .chain((0..3_000_000u32).map(|i| (i % 253) as u8))
        .collect();
    let media_id = client
        .upload_media(
            upload_start("audio/ogg; codecs=opus", ogg.len() as u64),
            body_in_pieces(&ogg),
        )
        .await
        .unwrap();
    let stored = stack.sandbox.sandbox.whatsapp_media(&media_id).unwrap();
    assert_eq!(stored.bytes, ogg, "WhatsApp received the exact bytes");
    assert_eq!(stored.mime_type, "audio/ogg; codecs=opus");
    let staged = stack
        .s3()
        .unwrap()
        .list_objects_v2()
        .bucket(parley_local::stack::names::BUCKET)
        .send()
        .await
        .unwrap();
    assert_eq!(staged.key_count(), Some(0), "the staged copy is removed");

    client
        .send_message(request(
            Content::Media(MediaMessage {
                kind: MediaKind::Voice as i32,
                media_id: media_id.clone(),
                ..MediaMessage::default()
            }),
            "",
        ))
        .await
        .unwrap();
    let sent = stack.sandbox.sandbox.whatsapp_sent();
    assert_eq!(sent[0].message["audio"]["id"], media_id.as_str());
}

#[tokio::test]
async fn uploads_that_break_their_declared_size_are_the_callers_error() {
    let stack = stack().await;
    let client = stack.whatsapp();
    let photo = vec![7u8; 100_000];
    for declared in [50_000u64, 150_000] {
        let error = client
            .upload_media(upload_start("image/jpeg", declared), body_in_pieces(&photo))
            .await
            .unwrap_err();
        assert_eq!(
            error.code,
            Code::InvalidArgument,
            "declared {declared}: {error}"
        );
        assert!(error.message.contains("declared"), "{error}");
    }
    assert!(
        stack
            .sandbox
            .sandbox
            .calls()
            .iter()
            .all(|c| c != "PostWhatsAppMessageMedia"),
        "nothing was handed to WhatsApp"
    );
}

#[tokio::test]
async fn media_limits_are_checked_before_upload() {
    let stack = stack().await;
    let client = stack.whatsapp();
    for (mime, size, expected) in [
        ("image/heic", 100, "does not accept"),
        ("image/jpeg", 6 * 1024 * 1024, "exceeds"),
        ("audio/wav", 100, "does not accept"),
    ] {
        let error = client
            .upload_media(upload_start(mime, size), media::body_from(&b"x"[..]))
            .await
            .unwrap_err();
        assert_eq!(error.code, Code::InvalidArgument);
        assert_eq!(error.reason(), ErrorReason::InvalidMedia);
        assert!(error.message.contains(expected), "{}", error.message);
    }
    assert!(
        stack.sandbox.sandbox.calls().is_empty(),
        "nothing reached the API"
    );
}

#[tokio::test]
async fn customer_media_downloads_with_type_and_real_size() {
    let stack = stack().await;
    let client = stack.whatsapp();
    let photo: Vec<u8> = (0..70_000u32).map(|i| (i * 31 % 256) as u8).collect();
    stack.sandbox.sandbox.add_whatsapp_media(WhatsAppMedia {
        id: "1234567890".into(),
        mime_type: "image/jpeg".into(),
        bytes: photo.clone(),
    });
    let (header, bytes) = client
        .download_media(DownloadMediaRequest {
            business_number_id: NUMBER.into(),
            media_id: "1234567890".into(),
        })
        .await
        .unwrap();
    assert_eq!(header.mime_type, "image/jpeg");
    assert_eq!(
        header.size_bytes, 70_000,
        "real bytes, not the API's kilobytes"
    );
    assert_eq!(media::collect(bytes, 1 << 20).await.unwrap(), photo);

    let Err(missing) = client
        .download_media(DownloadMediaRequest {
            business_number_id: NUMBER.into(),
            media_id: "999".into(),
        })
        .await
    else {
        panic!("unknown media was downloaded")
    };
    assert_eq!(missing.code, Code::NotFound);
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_reason() {
    let stack = stack().await;
    let client = stack.whatsapp();
    let mut unknown = request(text("hi"), "");
    unknown.business_number_id = "999999".into();
    let error = client.send_message(unknown).await.unwrap_err();
    assert_eq!(error.code, Code::FailedPrecondition);
    assert_eq!(error.reason(), ErrorReason::Configuration);
    assert!(error.message.contains("not mapped"));
    let mut bad_recipient = request(text("hi"), "");
    bad_recipient.recipient = "not-a-number".into();
    assert_eq!(
        client.send_message(bad_recipient).await.unwrap_err().code,
        Code::InvalidArgument
    );
    let too_many = request(
        Content::Interactive(InteractiveMessage {
            body: "b".into(),
            action: Some(interactive_message::Action::Buttons(ButtonsAction {
                buttons: (0..4)
                    .map(|i| Button {
                        id: i.to_string(),
                        title: format!("b{i}"),
                    })
                    .collect(),
            })),
            ..InteractiveMessage::default()
        }),
        "",
    );
    let error = client.send_message(too_many).await.unwrap_err();
    assert_eq!(error.reason(), ErrorReason::LimitExceeded);
    assert!(
        error.message.contains("3 reply buttons"),
        "{}",
        error.message
    );
    let long_row = request(
        Content::Interactive(InteractiveMessage {
            body: "b".into(),
            action: Some(interactive_message::Action::List(ListAction {
                button: "Open".into(),
                sections: vec![ListSection {
                    title: String::new(),
                    rows: vec![ListRow {
                        id: "r".into(),
                        title: "a row title over 24 chars".into(),
                        description: String::new(),
                    }],
                }],
            })),
            ..InteractiveMessage::default()
        }),
        "",
    );
    let error = client.send_message(long_row).await.unwrap_err();
    assert_eq!(error.reason(), ErrorReason::LimitExceeded);
    assert!(error.message.contains("rows[0].title"), "{}", error.message);
    // The API's own validation surfaces too: media never uploaded.
    let error = client
        .send_message(request(
            Content::Media(MediaMessage {
                kind: MediaKind::Image as i32,
                media_id: "neverUploaded".into(),
                ..MediaMessage::default()
            }),
            "",
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code, Code::InvalidArgument);
    assert_eq!(error.aws_code(), "ValidationException");
    assert!(
        error.message.contains("never uploaded"),
        "{}",
        error.message
    );
    // Throttling beyond the SDK's retries is UNAVAILABLE, retryable.
    stack.sandbox.sandbox.throttle_next(10);
    let error = client
        .send_message(request(text("hi"), ""))
        .await
        .unwrap_err();
    assert_eq!(error.code, Code::Unavailable);
    assert_eq!(error.reason(), ErrorReason::Throttled);
    assert!(error.is_retryable());
}
