//! Every ConnectRelay RPC through the real AWS SDK clients against the
//! wire-level sandbox, including each error path the gateway acts on —
//! on the stack the builder starts, through the client crate.

use bytes::Bytes;
use parley_client::{CallPolicy, ClientError, ConnectApi, media};
use parley_connect_relay::relay::{Relay, RelayConfig};
use parley_local::{Component, Stack, stack::names};
use parley_proto::{
    common::{ConversationKey, ErrorReason, MediaHeader},
    connect::{
        AttachmentStart, ChatEvent, ContentType, DisconnectRequest, FetchAttachmentRequest,
        RefreshConnectionRequest, SendEventRequest, SendMessageRequest, StartChatRequest,
        StartChatResponse,
    },
};
use tonic::Code;

/// A relay stack whose client tries each call once, so tests see the first
/// failure (the default policy would retry what is retryable).
async fn stack() -> Stack {
    stack_with(|_| {}).await
}

async fn stack_with(tweak: impl FnOnce(&mut RelayConfig) + Send + 'static) -> Stack {
    let mut stack = Stack::builder()
        .with(Component::ConnectRelay)
        .relay_config(tweak)
        .start()
        .await
        .expect("the stack starts");
    stack.set_call_policy(CallPolicy::default().once());
    stack
}

fn start_request(message: &str, token: &str) -> StartChatRequest {
    StartChatRequest {
        key: Some(ConversationKey {
            business_number_id: "phone-number-id-0123abcd".into(),
            customer_id: "14155550123".into(),
        }),
        display_name: String::new(),
        initial_message: message.into(),
        client_token: token.into(),
        ..StartChatRequest::default()
    }
}

async fn start(stack: &Stack, message: &str, token: &str) -> StartChatResponse {
    stack
        .connect()
        .start_chat(start_request(message, token))
        .await
        .unwrap()
}

fn send(token: &str, content: &str, client_token: &str) -> SendMessageRequest {
    SendMessageRequest {
        connection_token: token.into(),
        content_type: ContentType::TextPlain as i32,
        content: content.into(),
        client_token: client_token.into(),
        notice_kind: String::new(),
    }
}

fn customer_messages(stack: &Stack, contact_id: &str) -> Vec<String> {
    stack
        .sandbox
        .sandbox
        .contact(contact_id)
        .unwrap()
        .transcript
        .iter()
        .filter(|i| i.kind == "MESSAGE")
        .map(|i| i.content.clone())
        .collect()
}

#[tokio::test]
async fn what_the_flow_posted_before_streaming_began_comes_back_with_the_chat() {
    let greeting = "Welcome to Example Co. A bot will help you.";
    let mut stack = Stack::builder()
        .with(Component::ConnectRelay)
        .sandbox_config(move |config| config.flow_greeting = Some(greeting.into()))
        .start()
        .await
        .expect("the stack starts");
    stack.set_call_policy(CallPolicy::default().once());
    let chat = start(&stack, "Hola", "wamid.greeted").await;
    let contact = stack.sandbox.sandbox.contact(&chat.contact_id).unwrap();
    let posted = contact
        .transcript
        .iter()
        .find(|item| item.role == "SYSTEM")
        .expect("the flow greeted");
    assert_eq!(chat.earlier_items.len(), 1, "{:?}", chat.earlier_items);
    let item = &chat.earlier_items[0];
    assert_eq!(
        (
            item.id.as_str(),
            item.r#type.as_str(),
            item.participant_role.as_str()
        ),
        (posted.id.as_str(), "MESSAGE", "SYSTEM"),
        "the streamed item's id, so the gateway can tell them apart"
    );
    assert_eq!(item.content, greeting);
    assert_eq!(item.absolute_time_ms, posted.at_ms);
    // A retry with the same token (a crash before the chat was stored)
    // finds the same contact and the same items.
    let again = start(&stack, "Hola", "wamid.greeted").await;
    assert_eq!(again.contact_id, chat.contact_id);
    assert_eq!(again.earlier_items, chat.earlier_items);
    // Without a greeting only the customer's own message is there: none.
    let plain = stack_with(|_| {}).await;
    assert!(
        start(&plain, "Hola", "wamid.plain")
            .await
            .earlier_items
            .is_empty()
    );
}

#[tokio::test]
async fn start_chat_runs_the_documented_sequence() {
    let stack = stack().await;
    let chat = start(&stack, "Hola, necesito ayuda", "wamid.1").await;
    assert_eq!(
        stack.sandbox.sandbox.calls(),
        [
            "StartChatContact",
            "StartContactStreaming",
            "CreateParticipantConnection",
            "GetTranscript"
        ]
    );
    let contact = stack.sandbox.sandbox.contact(&chat.contact_id).unwrap();
    assert_eq!(
        contact.display_name, "WhatsApp customer",
        "never an empty DisplayName"
    );
    assert_eq!(contact.attributes["Channel"], "WhatsApp");
    assert_eq!(contact.attributes["customerId"], "14155550123");
    assert_eq!(
        contact.attributes["systemNumber"],
        "phone-number-id-0123abcd"
    );
    assert_eq!(
        contact.streaming_endpoint.as_deref(),
        Some(stack.streaming_topic_arn.as_str())
    );
    assert!(contact.customer_connected, "ConnectParticipant=true");
    assert!(
        contact
            .supported_content_types
            .iter()
            .any(|t| t == "text/markdown")
    );
    assert_eq!(chat.initial_contact_id, chat.contact_id);
    let day_ms = 24 * 3_600_000;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (chat.connection_expires_at_ms - now - day_ms).abs() < 120_000,
        "connection lasts a day"
    );

    // A retry with the same client token reuses the chat.
    let again = start(&stack, "Hola, necesito ayuda", "wamid.1").await;
    assert_eq!(again.contact_id, chat.contact_id);

    // A chat opened by media has no initial message.
    let quiet = start(&stack, "", "wamid.media").await;
    assert!(customer_messages(&stack, &quiet.contact_id).is_empty());
}

#[tokio::test]
async fn long_text_is_split_in_order() {
    let stack = stack().await;
    let long: String = (0..300).map(|i| format!("palabra{i} ")).collect();
    assert!(long.chars().count() > 2_048);
    let chat = start(&stack, &long, "wamid.long").await;
    let messages = customer_messages(&stack, &chat.contact_id);
    assert!(messages.len() >= 3);
    assert!(messages.iter().all(|m| m.chars().count() <= 1_024));
    assert_eq!(messages.concat(), long, "nothing lost, order kept");

    // 1,025 characters → two messages.
    let text = format!("{} {}", "a".repeat(700), "b".repeat(324));
    let sent = stack
        .connect()
        .send_message(send(&chat.connection_token, &text, "wamid.2"))
        .await
        .unwrap();
    assert_eq!(sent.message_ids.len(), 2);
    let messages = customer_messages(&stack, &chat.contact_id);
    assert_eq!(messages[messages.len() - 2..].concat(), text);
}

/// A split send that fails part-way says which parts went out; sent again
/// with the same client token, no part is doubled (each part has its own
/// ClientToken, which Connect deduplicates).
#[tokio::test]
async fn a_split_send_failing_part_way_resumes_without_doubles() {
    let stack = stack().await;
    let chat = start(&stack, "hi", "wamid.p").await;
    let text = format!(
        "{} {} {}",
        "a".repeat(1_000),
        "b".repeat(1_000),
        "c".repeat(400)
    );
    stack.sandbox.sandbox.throttle_after(1, 10);
    let error = stack
        .connect()
        .send_message(send(&chat.connection_token, &text, "wamid.split"))
        .await
        .unwrap_err();
    assert_eq!(error.reason(), ErrorReason::Throttled);
    assert!(error.is_retryable());
    assert_eq!(error.completed_ids().len(), 1);
    assert_eq!(error.aws_code(), "ThrottlingException");
    stack.sandbox.sandbox.throttle_next(0);
    let sent = stack
        .connect()
        .send_message(send(&chat.connection_token, &text, "wamid.split"))
        .await
        .unwrap();
    assert_eq!(sent.message_ids[0], error.completed_ids()[0]);
    let messages = customer_messages(&stack, &chat.contact_id);
    assert_eq!(messages.len(), 4, "hi, then three parts, none twice");
    assert_eq!(messages[1..].concat(), text);
}

#[tokio::test]
async fn an_expired_connection_refreshes_and_an_ended_chat_says_so() {
    let stack = stack().await;
    let client = stack.connect();
    let chat = start(&stack, "hi", "wamid.x").await;
    stack.sandbox.sandbox.expire_connections();
    let error = client
        .send_message(send(&chat.connection_token, "are you there?", ""))
        .await
        .unwrap_err();
    assert_eq!(error.code, Code::FailedPrecondition);
    assert_eq!(error.reason(), ErrorReason::ConnectionExpired);
    assert_eq!(error.aws_code(), "AccessDeniedException");

    let refreshed = client
        .refresh_connection(RefreshConnectionRequest {
            participant_token: chat.participant_token.clone(),
        })
        .await
        .unwrap();
    assert_ne!(refreshed.connection_token, chat.connection_token);
    client
        .send_message(send(&refreshed.connection_token, "are you there?", ""))
        .await
        .unwrap();

    // The agent ends the chat: sends are refused, and so is a refresh —
    // which says the chat ended (start a new one).
    stack
        .sandbox
        .sandbox
        .end_contact(&chat.contact_id)
        .await
        .unwrap();
    let error = client
        .send_message(send(&refreshed.connection_token, "hello?", ""))
        .await
        .unwrap_err();
    assert_eq!(error.reason(), ErrorReason::ConnectionExpired);
    let error = client
        .refresh_connection(RefreshConnectionRequest {
            participant_token: chat.participant_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.reason(), ErrorReason::ChatEnded);
    assert!(!error.is_retryable());

    // After the customer leaves, the same.
    let other = start(&stack, "hi", "wamid.y").await;
    client
        .disconnect(DisconnectRequest {
            connection_token: other.connection_token.clone(),
            client_token: String::new(),
        })
        .await
        .unwrap();
    let error = client
        .refresh_connection(RefreshConnectionRequest {
            participant_token: other.participant_token,
        })
        .await
        .unwrap_err();
    assert_eq!(error.reason(), ErrorReason::ChatEnded);
}

#[tokio::test]
async fn throttling_is_retried_then_unavailable() {
    let stack = stack().await;
    let chat = start(&stack, "hi", "wamid.t").await;
    // One throttle: the SDK's retry absorbs it.
    stack.sandbox.sandbox.throttle_next(1);
    stack
        .connect()
        .send_message(send(&chat.connection_token, "hello", ""))
        .await
        .unwrap();
    // More than the SDK's attempts: UNAVAILABLE with THROTTLED.
    stack.sandbox.sandbox.throttle_next(10);
    let error = stack
        .connect()
        .send_message(send(&chat.connection_token, "hello", ""))
        .await
        .unwrap_err();
    assert_eq!(error.code, Code::Unavailable);
    assert_eq!(error.reason(), ErrorReason::Throttled);
    assert!(error.is_retryable());
}

/// StartChat's errors are told apart per operation: an unknown instance is
/// a configuration problem, not a gone session; Connect throttling new
/// chats (LimitExceededException) is retryable.
#[tokio::test]
async fn start_chat_errors_are_mapped_per_operation() {
    let stack = Stack::builder()
        .with(Component::ConnectRelay)
        .sandbox_config(|c| c.known_instances = vec![names::INSTANCE.into()])
        .start()
        .await
        .unwrap();
    let mut other_instance = start_request("hi", "wamid.c");
    other_instance.instance_id = "not-an-instance".into();
    let error = stack
        .connect()
        .start_chat(other_instance)
        .await
        .unwrap_err();
    assert_eq!(error.code, Code::FailedPrecondition);
    assert_eq!(error.reason(), ErrorReason::Configuration);
    assert_eq!(error.aws_code(), "ResourceNotFoundException");
    assert!(!error.is_retryable());

    let mut once = stack;
    once.set_call_policy(CallPolicy::default().once());
    once.sandbox.sandbox.throttle_next(10);
    let error = once
        .connect()
        .start_chat(start_request("hi", "wamid.l"))
        .await
        .unwrap_err();
    assert_eq!(error.reason(), ErrorReason::Throttled);
    assert_eq!(error.aws_code(), "LimitExceededException");
    assert!(error.is_retryable());
}

/// No half-started chats: when a step after StartChatContact fails for
/// good, the new contact is stopped; when it fails for now, the contact
/// stays and a retry with the same client token completes it.
#[tokio::test]
async fn a_chat_that_cannot_be_completed_is_stopped_and_a_transient_failure_resumes() {
    let stack = stack_with(|c| {
        c.streaming_topic_arn = "arn:aws:sns:us-east-1:123456789012:not-standard.fifo".into()
    })
    .await;
    let error = stack
        .connect()
        .start_chat(start_request("hi", "wamid.o"))
        .await
        .unwrap_err();
    assert_eq!(error.aws_code(), "InvalidParameterException");
    assert!(error.message.contains("stopped"), "{}", error.message);
    let contacts = stack.sandbox.sandbox.contacts();
    assert_eq!(contacts.len(), 1);
    assert!(contacts[0].ended, "the orphan contact was stopped");
    assert!(
        stack
            .sandbox
            .sandbox
            .calls()
            .contains(&"StopContact".to_owned())
    );

    let stack = stack_with(|_| {}).await;
    stack.sandbox.sandbox.throttle_after(1, 10);
    let error = stack
        .connect()
        .start_chat(start_request("hi", "wamid.r"))
        .await
        .unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(
        !stack
            .sandbox
            .sandbox
            .calls()
            .contains(&"StopContact".to_owned())
    );
    stack.sandbox.sandbox.throttle_next(0);
    let chat = start(&stack, "hi", "wamid.r").await;
    let contacts = stack.sandbox.sandbox.contacts();
    assert_eq!(contacts.len(), 1, "the same contact, completed");
    assert_eq!(contacts[0].contact_id, chat.contact_id);
    assert!(contacts[0].customer_connected);
}

fn attachment(token: &str, name: &str, mime: &str, declared: u64) -> AttachmentStart {
    AttachmentStart {
        connection_token: token.into(),
        media: Some(MediaHeader {
            mime_type: mime.into(),
            file_name: name.into(),
            size_bytes: declared,
        }),
        client_token: String::new(),
    }
}

fn body(bytes: &[u8]) -> media::MediaBody {
    let pieces: Vec<std::io::Result<Bytes>> = bytes
        .chunks(16 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::StreamExt::boxed(futures::stream::iter(pieces))
}

#[tokio::test]
async fn attachments_go_in_and_come_out_intact() {
    let stack = stack().await;
    let client = stack.connect();
    let chat = start(&stack, "voice note follows", "wamid.a").await;
    let wav: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let id = client
        .send_attachment(
            attachment(
                &chat.connection_token,
                "voice.wav",
                "audio/wav",
                wav.len() as u64,
            ),
            body(&wav),
        )
        .await
        .unwrap()
        .attachment_id;
    let stored = stack.sandbox.sandbox.attachment(&id).unwrap();
    assert!(stored.completed);
    assert_eq!(stored.bytes.as_deref(), Some(&wav[..]));
    let contact = stack.sandbox.sandbox.contact(&chat.contact_id).unwrap();
    assert!(
        contact
            .transcript
            .iter()
            .any(|i| i.kind == "ATTACHMENT" && i.content == id)
    );

    let Ok((header, bytes)) = client
        .fetch_attachment(FetchAttachmentRequest {
            connection_token: chat.connection_token.clone(),
            attachment_id: id,
            file_name: "voice.wav".into(),
        })
        .await
    else {
        panic!("the attachment downloads")
    };
    assert_eq!(header.mime_type, "audio/wav");
    assert_eq!(header.file_name, "voice.wav");
    assert_eq!(header.size_bytes, wav.len() as u64);
    assert_eq!(media::collect(bytes, 1 << 20).await.unwrap(), wav);
}

#[tokio::test]
async fn attachment_upload_failures_are_told_apart() {
    let stack = stack().await;
    let client = stack.connect();
    let chat = start(&stack, "hi", "wamid.u").await;
    let bytes = vec![3u8; 10_000];
    // The store answering 503 or 403 (an expired URL) is worth a retry.
    for status in [503, 403] {
        stack.sandbox.sandbox.fail_next_uploads(&[status]);
        let error = client
            .send_attachment(
                attachment(&chat.connection_token, "doc.pdf", "application/pdf", 10_000),
                body(&bytes),
            )
            .await
            .unwrap_err();
        assert_eq!(error.code, Code::Unavailable, "{status}: {error}");
        assert!(error.is_retryable());
    }
    // More bytes than declared is the caller's mistake, not throttling.
    let error = client
        .send_attachment(
            attachment(&chat.connection_token, "doc.pdf", "application/pdf", 5_000),
            body(&bytes),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code, Code::InvalidArgument, "{error}");
    assert!(error.message.contains("declared"), "{error}");
    // And then it works.
    client
        .send_attachment(
            attachment(&chat.connection_token, "doc.pdf", "application/pdf", 10_000),
            body(&bytes),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_retried_attachment_with_its_client_token_is_attached_once() {
    let stack = stack().await;
    let client = stack.connect();
    let chat = start(&stack, "hi", "wamid.r").await;
    let bytes = vec![5u8; 20_000];
    let send = || {
        let mut start = attachment(&chat.connection_token, "photo.jpg", "image/jpeg", 20_000);
        start.client_token = "wamid.r#media".into();
        client.send_attachment(start, body(&bytes))
    };
    let first = send().await.unwrap().attachment_id;
    // The gateway died before recording it and sends it again.
    let second = send().await.unwrap().attachment_id;
    assert_eq!(first, second);
    let contact = stack.sandbox.sandbox.contact(&chat.contact_id).unwrap();
    let attached = contact
        .transcript
        .iter()
        .filter(|i| i.kind == "ATTACHMENT")
        .count();
    assert_eq!(attached, 1);
}

#[tokio::test]
async fn disallowed_or_oversized_attachments_are_refused_before_any_upload() {
    let stack = stack().await;
    let client = stack.connect();
    let chat = start(&stack, "hi", "wamid.d").await;
    let before = stack.sandbox.sandbox.calls().len();
    let error: ClientError = client
        .send_attachment(
            attachment(&chat.connection_token, "voice.ogg", "audio/ogg", 4),
            body(b"OggS"),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code, Code::InvalidArgument);
    assert_eq!(error.reason(), ErrorReason::InvalidMedia);
    assert!(error.message.contains(".ogg"));
    let error = client
        .send_attachment(
            attachment(
                &chat.connection_token,
                "scan.pdf",
                "application/pdf",
                21 * 1024 * 1024,
            ),
            body(b"%PDF"),
        )
        .await
        .unwrap_err();
    assert_eq!(error.reason(), ErrorReason::InvalidMedia);
    assert_eq!(
        stack.sandbox.sandbox.calls().len(),
        before,
        "nothing reached Connect"
    );
}

#[tokio::test]
async fn events_receipts_and_agent_only_notices() {
    let stack = stack().await;
    let client = stack.connect();
    let chat = start(&stack, "hi", "wamid.e").await;
    for (event, message_id) in [
        (ChatEvent::Typing, ""),
        (ChatEvent::MessageDelivered, "msg-1"),
        (ChatEvent::MessageRead, "msg-1"),
    ] {
        client
            .send_event(SendEventRequest {
                connection_token: chat.connection_token.clone(),
                event: event as i32,
                message_id: message_id.into(),
                client_token: String::new(),
            })
            .await
            .unwrap();
    }
    let transcript = stack
        .sandbox
        .sandbox
        .contact(&chat.contact_id)
        .unwrap()
        .transcript;
    let events: Vec<_> = transcript.iter().filter(|i| i.kind == "EVENT").collect();
    assert_eq!(events.len(), 3);
    assert!(events[1].content_type.ends_with("message.delivered"));
    assert_eq!(events[1].content, r#"{"messageId":"msg-1"}"#);
    let error = client
        .send_event(SendEventRequest {
            connection_token: chat.connection_token.clone(),
            event: ChatEvent::MessageRead as i32,
            message_id: String::new(),
            client_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code, Code::InvalidArgument);

    // A notice for the agent only: JSON, which bots and flows do not read
    // as customer input.
    let mut notice = send(
        &chat.connection_token,
        "The customer sent a sticker; it could not be attached.",
        "notice-1",
    );
    notice.content_type = ContentType::AgentNotice as i32;
    notice.notice_kind = "unsupported_media".into();
    client.send_message(notice).await.unwrap();
    let last = stack
        .sandbox
        .sandbox
        .contact(&chat.contact_id)
        .unwrap()
        .transcript
        .pop()
        .unwrap();
    assert_eq!(last.content_type, "application/json");
    let body: serde_json::Value = serde_json::from_str(&last.content).unwrap();
    assert_eq!(body["parleyNotice"]["kind"], "unsupported_media");
    assert!(
        body["parleyNotice"]["text"]
            .as_str()
            .unwrap()
            .contains("sticker")
    );
}

#[tokio::test]
async fn validation_errors_carry_the_reason() {
    let stack = stack().await;
    let client = stack.connect();
    let mut request = start_request("hi", "");
    request.key = None;
    let error = client.start_chat(request).await.unwrap_err();
    assert_eq!(error.code, Code::InvalidArgument);
    assert!(error.message.contains("customer_id"));
    // Connect's own validation (chat duration out of range) comes back with
    // its message and its own error code.
    let mut request = start_request("hi", "");
    request.chat_duration_minutes = 5;
    let error = client.start_chat(request).await.unwrap_err();
    assert_eq!(error.code, Code::InvalidArgument);
    assert_eq!(error.aws_code(), "InvalidParameterException");
    assert!(
        error.message.contains("ChatDurationInMinutes"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_relay_without_its_required_settings_does_not_start() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let error = parley_connect_relay::run(
        listener,
        parley_runtime::server::ServerConfig::local(address),
        RelayConfig::default(),
        std::future::pending(),
    )
    .await
    .unwrap_err()
    .to_string();
    for setting in [
        "PARLEY_CONNECT_INSTANCE_ID",
        "PARLEY_CONNECT_CONTACT_FLOW_ID",
        "PARLEY_CONNECT_STREAMING_TOPIC_ARN",
    ] {
        assert!(error.contains(setting), "{error}");
    }
}

#[test]
fn only_aws_https_urls_are_followed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let relay = rt.block_on(async {
        let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .load()
            .await;
        Relay::new(
            aws_sdk_connect::Client::new(&aws),
            aws_sdk_connectparticipant::Client::new(&aws),
            RelayConfig::default(),
        )
    });
    assert!(
        relay.url_allowed("https://bucket.s3.us-east-1.amazonaws.com/attachment?X-Amz-Signature=1")
    );
    for bad in [
        "http://bucket.s3.amazonaws.com/x",
        "https://evil.example.com/x",
        "https://amazonaws.com.evil.example/x",
        "https://user@bucket.s3.amazonaws.com/x",
        "file:///etc/passwd",
        "http://127.0.0.1:4599/sandbox-files/x",
        "not a url",
    ] {
        assert!(!relay.url_allowed(bad), "{bad} must be refused");
    }
}
