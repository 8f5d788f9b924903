//! Every WhatsAppSender RPC through the real Social Messaging and S3 SDK
//! clients, against the sandbox (Social Messaging) and moto (S3).

use parley_proto::{
    common::{ErrorDetail, ErrorReason, MediaHeader},
    whatsapp::{
        Button, ButtonsAction, DownloadMediaRequest, InteractiveMessage, ListAction, ListRow,
        ListSection, MarkReadRequest, MediaKind, MediaMessage, ReactionMessage, SendMessageRequest,
        TemplateMessage, TextMessage, UploadMediaRequest, UploadMediaStart,
        download_media_response, interactive_message, send_message_request::Content,
        upload_media_request, whats_app_sender_client::WhatsAppSenderClient,
    },
};
use parley_runtime::server::{GrpcServer, ServerConfig};
use parley_sandbox::{RunningSandbox, SandboxConfig, moto, state::WhatsAppMedia};
use parley_whatsapp_sender::{
    grpc::SenderService,
    sender::{Sender, SenderConfig},
};
use prost::Message as _;
use tonic::{Code, transport::Channel};

const NUMBER: &str = "phone-number-id-0123456789abcdef0123456789abcdef";
const BUCKET: &str = "parley-media";

struct Harness {
    sandbox: RunningSandbox,
    client: WhatsAppSenderClient<Channel>,
    s3: aws_sdk_s3::Client,
    _moto: moto::Moto,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn harness() -> Option<Harness> {
    let moto = moto::start()?;
    let moto_config = moto::aws_config(&moto.endpoint).await;
    let s3 = moto::s3_client(&moto_config);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let sandbox = parley_sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig {
            s3: Some(s3.clone()),
            ..SandboxConfig::default()
        },
    )
    .await
    .unwrap();
    let social = aws_sdk_socialmessaging::Client::new(&moto::aws_config(&sandbox.endpoint).await);
    let sender = Sender::new(
        social,
        s3.clone(),
        SenderConfig {
            media_bucket: BUCKET.into(),
            number_map: [("503650672828631".to_owned(), NUMBER.to_owned())].into(),
            ..SenderConfig::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        GrpcServer::new(ServerConfig::local(address))
            .add_service(SenderService::new(sender).into_server())
            .serve(listener, async {
                let _ = stopped.await;
            }),
    );
    let client = WhatsAppSenderClient::new(
        Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    Some(Harness {
        sandbox,
        client,
        s3,
        _moto: moto,
        _stop: stop,
    })
}

fn request(content: Content, reply_to: &str) -> SendMessageRequest {
    SendMessageRequest {
        business_number_id: NUMBER.into(),
        recipient: "14155550123".into(),
        reply_to_message_id: reply_to.into(),
        content: Some(content),
    }
}

fn reason(status: &tonic::Status) -> ErrorReason {
    ErrorDetail::decode(status.details()).unwrap().reason()
}

#[tokio::test]
async fn text_reactions_interactive_templates_and_read_receipts() {
    let Some(mut h) = harness().await else { return };
    // 5,000 characters: two messages, the first quoting the customer's.
    let body = "ok ".repeat(1_667);
    let sent = h
        .client
        .send_message(request(
            Content::Text(TextMessage {
                body: body.clone(),
                preview_url: false,
            }),
            "wamid.IN",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sent.message_ids.len(), 2);
    h.client
        .send_message(request(
            Content::Reaction(ReactionMessage {
                message_id: "wamid.IN".into(),
                emoji: "👀".into(),
            }),
            "",
        ))
        .await
        .unwrap();
    h.client
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
    h.client
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
    h.client
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
    h.client
        .mark_read(MarkReadRequest {
            business_number_id: "503650672828631".into(),
            message_id: "wamid.IN".into(),
            show_typing: true,
        })
        .await
        .unwrap();

    let sent = h.sandbox.sandbox.whatsapp_sent();
    assert_eq!(sent.len(), 7);
    assert!(sent.iter().all(|s| s.origination == NUMBER));
    assert_eq!(sent[0].message["to"], "+14155550123");
    assert_eq!(sent[0].message["context"]["message_id"], "wamid.IN");
    let text: String = sent[..2]
        .iter()
        .map(|s| s.message["text"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(text, body, "nothing lost across the split");
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
}

fn upload_requests(mime: &str, bytes: &[u8], declared: u64) -> Vec<UploadMediaRequest> {
    std::iter::once(UploadMediaRequest {
        message: Some(upload_media_request::Message::Start(UploadMediaStart {
            business_number_id: NUMBER.into(),
            media: Some(MediaHeader {
                mime_type: mime.into(),
                file_name: String::new(),
                size_bytes: declared,
            }),
        })),
    })
    .chain(bytes.chunks(8 * 1024).map(|c| UploadMediaRequest {
        message: Some(upload_media_request::Message::Chunk(c.to_vec().into())),
    }))
    .collect()
}

#[tokio::test]
async fn voice_note_upload_then_send_by_id() {
    let Some(mut h) = harness().await else { return };
    let ogg: Vec<u8> = b"OggS"
        .iter()
        .copied()
        .chain((0..50_000u32).map(|i| (i % 253) as u8))
        .collect();
    let media_id = h
        .client
        .upload_media(tokio_stream::iter(upload_requests(
            "audio/ogg; codecs=opus",
            &ogg,
            ogg.len() as u64,
        )))
        .await
        .unwrap()
        .into_inner()
        .media_id;
    let stored = h.sandbox.sandbox.whatsapp_media(&media_id).unwrap();
    assert_eq!(stored.bytes, ogg, "WhatsApp received the exact bytes");
    assert_eq!(stored.mime_type, "audio/ogg; codecs=opus");
    let staged = h.s3.list_objects_v2().bucket(BUCKET).send().await.unwrap();
    assert_eq!(staged.key_count(), Some(0), "the staged copy is removed");

    h.client
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
    let sent = h.sandbox.sandbox.whatsapp_sent();
    assert_eq!(sent[0].message["audio"]["id"], media_id.as_str());
}

#[tokio::test]
async fn media_limits_are_checked_before_upload() {
    let Some(mut h) = harness().await else { return };
    for (mime, size, expected) in [
        ("image/heic", 100, "does not accept"),
        ("image/jpeg", 6 * 1024 * 1024, "exceeds"),
        ("audio/wav", 100, "does not accept"),
    ] {
        let status = h
            .client
            .upload_media(tokio_stream::iter(upload_requests(mime, b"x", size)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(reason(&status), ErrorReason::InvalidMedia);
        assert!(status.message().contains(expected), "{}", status.message());
    }
    assert!(
        h.sandbox.sandbox.calls().is_empty(),
        "nothing reached the API"
    );
}

#[tokio::test]
async fn customer_media_downloads_with_type_and_real_size() {
    let Some(mut h) = harness().await else { return };
    let photo: Vec<u8> = (0..70_000u32).map(|i| (i * 31 % 256) as u8).collect();
    h.sandbox.sandbox.add_whatsapp_media(WhatsAppMedia {
        id: "1234567890".into(),
        mime_type: "image/jpeg".into(),
        bytes: photo.clone(),
    });
    let mut stream = h
        .client
        .download_media(DownloadMediaRequest {
            business_number_id: NUMBER.into(),
            media_id: "1234567890".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut header = None;
    let mut body = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        match message.message {
            Some(download_media_response::Message::Header(h)) => header = Some(h),
            Some(download_media_response::Message::Chunk(c)) => body.extend_from_slice(&c),
            None => {}
        }
    }
    let header = header.unwrap();
    assert_eq!(header.mime_type, "image/jpeg");
    assert_eq!(
        header.size_bytes, 70_000,
        "real bytes, not the API's kilobytes"
    );
    assert_eq!(body, photo);

    let status = h
        .client
        .download_media(DownloadMediaRequest {
            business_number_id: NUMBER.into(),
            media_id: "999".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_reason() {
    let Some(mut h) = harness().await else { return };
    let mut unknown = request(
        Content::Text(TextMessage {
            body: "hi".into(),
            preview_url: false,
        }),
        "",
    );
    unknown.business_number_id = "999999".into();
    let status = h.client.send_message(unknown).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("not mapped"));
    let mut bad_recipient = request(
        Content::Text(TextMessage {
            body: "hi".into(),
            preview_url: false,
        }),
        "",
    );
    bad_recipient.recipient = "not-a-number".into();
    assert_eq!(
        h.client
            .send_message(bad_recipient)
            .await
            .unwrap_err()
            .code(),
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
    assert!(
        h.client
            .send_message(too_many)
            .await
            .unwrap_err()
            .message()
            .contains("3 reply buttons")
    );
    // The API's own validation surfaces too: media never uploaded.
    let status = h
        .client
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
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("never uploaded"),
        "{}",
        status.message()
    );
    // Throttling beyond the SDK's retries is UNAVAILABLE.
    h.sandbox.sandbox.throttle_next(10);
    let status = h
        .client
        .send_message(request(
            Content::Text(TextMessage {
                body: "hi".into(),
                preview_url: false,
            }),
            "",
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
}
