//! Every ConnectRelay RPC through the real AWS SDK clients against the
//! wire-level sandbox, including each error path the gateway acts on.

use std::time::Duration;

use parley_connect_relay::{
    grpc::RelayService,
    relay::{Relay, RelayConfig},
};
use parley_proto::{
    common::{ConversationKey, ErrorDetail, ErrorReason, MediaHeader},
    connect::{
        AttachmentStart, ChatEvent, ContentType, DisconnectRequest, FetchAttachmentRequest,
        RefreshConnectionRequest, SendAttachmentRequest, SendEventRequest, SendMessageRequest,
        StartChatRequest, StartChatResponse, connect_relay_client::ConnectRelayClient,
        fetch_attachment_response, send_attachment_request,
    },
};
use parley_runtime::server::{GrpcServer, ServerConfig};
use parley_sandbox::{RunningSandbox, SandboxConfig};
use prost::Message as _;
use tonic::{Code, transport::Channel};

struct Harness {
    sandbox: RunningSandbox,
    client: ConnectRelayClient<Channel>,
    relay: Relay,
    _stop: tokio::sync::oneshot::Sender<()>,
}

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:parley-connect-out";

async fn harness() -> Harness {
    let sandbox = parley_sandbox::start("127.0.0.1:0".parse().unwrap(), SandboxConfig::default())
        .await
        .unwrap();
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&sandbox.endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_connect::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(5)),
        )
        .load()
        .await;
    let relay = Relay::new(
        aws_sdk_connect::Client::new(&aws),
        aws_sdk_connectparticipant::Client::new(&aws),
        RelayConfig {
            instance_id: "instance-1".into(),
            contact_flow_id: "flow-1".into(),
            streaming_topic_arn: TOPIC.into(),
            local_origin: sandbox.endpoint.clone(),
            ..RelayConfig::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        GrpcServer::new(ServerConfig::local(address))
            .add_service(RelayService::new(relay.clone()).into_server())
            .serve(listener, async {
                let _ = stopped.await;
            }),
    );
    let client = ConnectRelayClient::new(
        Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    Harness {
        sandbox,
        client,
        relay,
        _stop: stop,
    }
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

async fn start(h: &mut Harness, message: &str, token: &str) -> StartChatResponse {
    h.client
        .start_chat(start_request(message, token))
        .await
        .unwrap()
        .into_inner()
}

fn reason(status: &tonic::Status) -> ErrorReason {
    ErrorDetail::decode(status.details()).unwrap().reason()
}

fn customer_messages(h: &Harness, contact_id: &str) -> Vec<String> {
    h.sandbox
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
async fn start_chat_runs_the_documented_sequence() {
    let mut h = harness().await;
    let chat = start(&mut h, "Hola, necesito ayuda", "wamid.1").await;
    assert_eq!(
        h.sandbox.sandbox.calls(),
        [
            "StartChatContact",
            "StartContactStreaming",
            "CreateParticipantConnection"
        ]
    );
    let contact = h.sandbox.sandbox.contact(&chat.contact_id).unwrap();
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
    assert_eq!(contact.streaming_endpoint.as_deref(), Some(TOPIC));
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
    let again = start(&mut h, "Hola, necesito ayuda", "wamid.1").await;
    assert_eq!(again.contact_id, chat.contact_id);
}

#[tokio::test]
async fn long_text_is_split_in_order() {
    let mut h = harness().await;
    let long: String = (0..300).map(|i| format!("palabra{i} ")).collect();
    assert!(long.chars().count() > 2_048);
    let chat = start(&mut h, &long, "wamid.long").await;
    let messages = customer_messages(&h, &chat.contact_id);
    assert!(messages.len() >= 3);
    assert!(messages.iter().all(|m| m.chars().count() <= 1_024));
    assert_eq!(messages.concat(), long, "nothing lost, order kept");

    // 1,025 characters → two messages.
    let text = format!("{} {}", "a".repeat(700), "b".repeat(324));
    let sent = h
        .client
        .send_message(SendMessageRequest {
            connection_token: chat.connection_token.clone(),
            content_type: ContentType::TextPlain as i32,
            content: text.clone(),
            client_token: "wamid.2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sent.message_ids.len(), 2);
    let messages = customer_messages(&h, &chat.contact_id);
    assert_eq!(messages[messages.len() - 2..].concat(), text);
}

#[tokio::test]
async fn expired_token_is_session_gone_then_refresh_works() {
    let mut h = harness().await;
    let chat = start(&mut h, "hi", "wamid.x").await;
    h.sandbox.sandbox.expire_connections();
    let send = |token: String| SendMessageRequest {
        connection_token: token,
        content_type: ContentType::TextPlain as i32,
        content: "are you there?".into(),
        client_token: String::new(),
    };
    let status = h
        .client
        .send_message(send(chat.connection_token.clone()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), ErrorReason::SessionGone);

    let refreshed = h
        .client
        .refresh_connection(RefreshConnectionRequest {
            participant_token: chat.participant_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(refreshed.connection_token, chat.connection_token);
    h.client
        .send_message(send(refreshed.connection_token.clone()))
        .await
        .unwrap();

    // After the customer leaves, even a refresh is refused.
    h.client
        .disconnect(DisconnectRequest {
            connection_token: refreshed.connection_token.clone(),
            client_token: String::new(),
        })
        .await
        .unwrap();
    let status = h
        .client
        .send_message(send(refreshed.connection_token))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), ErrorReason::SessionGone);
    let status = h
        .client
        .refresh_connection(RefreshConnectionRequest {
            participant_token: chat.participant_token,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), ErrorReason::SessionGone);
}

#[tokio::test]
async fn throttling_is_retried_then_unavailable() {
    let mut h = harness().await;
    let chat = start(&mut h, "hi", "wamid.t").await;
    let send = || SendMessageRequest {
        connection_token: chat.connection_token.clone(),
        content_type: ContentType::TextPlain as i32,
        content: "hello".into(),
        client_token: String::new(),
    };
    // One throttle: the SDK's retry absorbs it.
    h.sandbox.sandbox.throttle_next(1);
    h.client.send_message(send()).await.unwrap();
    // More than the SDK's attempts: UNAVAILABLE with THROTTLED.
    h.sandbox.sandbox.throttle_next(10);
    let status = h.client.send_message(send()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason(&status), ErrorReason::Throttled);
}

fn attachment_requests(
    token: &str,
    name: &str,
    mime: &str,
    bytes: &[u8],
    declared: u64,
) -> Vec<SendAttachmentRequest> {
    std::iter::once(SendAttachmentRequest {
        message: Some(send_attachment_request::Message::Start(AttachmentStart {
            connection_token: token.into(),
            media: Some(MediaHeader {
                mime_type: mime.into(),
                file_name: name.into(),
                size_bytes: declared,
            }),
            client_token: String::new(),
        })),
    })
    .chain(bytes.chunks(16 * 1024).map(|c| SendAttachmentRequest {
        message: Some(send_attachment_request::Message::Chunk(c.to_vec().into())),
    }))
    .collect()
}

#[tokio::test]
async fn attachments_go_in_and_come_out_intact() {
    let mut h = harness().await;
    let chat = start(&mut h, "voice note follows", "wamid.a").await;
    let wav: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let id = h
        .client
        .send_attachment(tokio_stream::iter(attachment_requests(
            &chat.connection_token,
            "voice.wav",
            "audio/wav",
            &wav,
            wav.len() as u64,
        )))
        .await
        .unwrap()
        .into_inner()
        .attachment_id;
    let stored = h.sandbox.sandbox.attachment(&id).unwrap();
    assert!(stored.completed);
    assert_eq!(stored.bytes.as_deref(), Some(&wav[..]));
    let contact = h.sandbox.sandbox.contact(&chat.contact_id).unwrap();
    assert!(
        contact
            .transcript
            .iter()
            .any(|i| i.kind == "ATTACHMENT" && i.content == id)
    );

    let mut stream = h
        .client
        .fetch_attachment(FetchAttachmentRequest {
            connection_token: chat.connection_token.clone(),
            attachment_id: id,
        })
        .await
        .unwrap()
        .into_inner();
    let mut header = None;
    let mut body = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        match message.message {
            Some(fetch_attachment_response::Message::Header(h)) => header = Some(h),
            Some(fetch_attachment_response::Message::Chunk(c)) => body.extend_from_slice(&c),
            None => {}
        }
    }
    let header = header.unwrap();
    assert_eq!(header.mime_type, "audio/wav");
    assert_eq!(header.size_bytes, wav.len() as u64);
    assert_eq!(body, wav);
}

#[tokio::test]
async fn disallowed_or_oversized_attachments_are_refused_before_any_upload() {
    let mut h = harness().await;
    let chat = start(&mut h, "hi", "wamid.d").await;
    let before = h.sandbox.sandbox.calls().len();
    let status = h
        .client
        .send_attachment(tokio_stream::iter(attachment_requests(
            &chat.connection_token,
            "voice.ogg",
            "audio/ogg",
            b"OggS",
            4,
        )))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason(&status), ErrorReason::InvalidMedia);
    assert!(status.message().contains(".ogg"));
    let status = h
        .client
        .send_attachment(tokio_stream::iter(attachment_requests(
            &chat.connection_token,
            "scan.pdf",
            "application/pdf",
            b"%PDF",
            21 * 1024 * 1024,
        )))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), ErrorReason::InvalidMedia);
    assert_eq!(
        h.sandbox.sandbox.calls().len(),
        before,
        "nothing reached Connect"
    );
}

#[tokio::test]
async fn events_and_receipts() {
    let mut h = harness().await;
    let chat = start(&mut h, "hi", "wamid.e").await;
    for (event, message_id) in [
        (ChatEvent::Typing, ""),
        (ChatEvent::MessageDelivered, "msg-1"),
        (ChatEvent::MessageRead, "msg-1"),
    ] {
        h.client
            .send_event(SendEventRequest {
                connection_token: chat.connection_token.clone(),
                event: event as i32,
                message_id: message_id.into(),
                client_token: String::new(),
            })
            .await
            .unwrap();
    }
    let events: Vec<_> = h
        .sandbox
        .sandbox
        .contact(&chat.contact_id)
        .unwrap()
        .transcript
        .into_iter()
        .filter(|i| i.kind == "EVENT")
        .collect();
    assert_eq!(events.len(), 3);
    assert!(events[1].content_type.ends_with("message.delivered"));
    assert_eq!(events[1].content, r#"{"messageId":"msg-1"}"#);
    let status = h
        .client
        .send_event(SendEventRequest {
            connection_token: chat.connection_token,
            event: ChatEvent::MessageRead as i32,
            message_id: String::new(),
            client_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn validation_errors_carry_the_reason() {
    let mut h = harness().await;
    let mut request = start_request("hi", "");
    request.key = None;
    let status = h.client.start_chat(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("customer_id"));
    // Connect's own validation (chat duration out of range) comes back with its message.
    let mut request = start_request("hi", "");
    request.chat_duration_minutes = 5;
    let status = h.client.start_chat(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("ChatDurationInMinutes"),
        "{}",
        status.message()
    );
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

#[tokio::test]
async fn harness_relay_is_shared() {
    // The relay used by the service is the same one tests can call directly.
    let h = harness().await;
    assert!(
        h.relay
            .url_allowed(&format!("{}/sandbox-files/x", h.sandbox.endpoint))
    );
}
