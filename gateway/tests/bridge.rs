//! The bridge end to end, customer → agent: the gateway and every service
//! on loopback over real gRPC, the real AWS SDKs against the sandbox (and
//! moto for the SQS feed), events published as End User Messaging Social
//! publishes them and delivered by (emulated) SNS with real signatures.

use std::time::Duration;

use parley_local::{
    Stack,
    conversation::{customer_texts, eventually, notices},
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

async fn bridge() -> Stack {
    Stack::builder()
        .bridge()
        .start()
        .await
        .expect("the bridge starts")
}

/// The customer's single chat, once `count` texts reached it.
async fn texts_at_agent(stack: &Stack, phone: &str, count: usize) -> Vec<String> {
    eventually(WAIT, || {
        let chats = stack.chats_of(phone);
        let texts: Vec<String> = chats.iter().flat_map(customer_texts).collect();
        (texts.len() >= count).then_some(texts)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "{count} texts never reached the agent; chats: {:#?}",
            stack.chats_of(phone)
        )
    })
}

#[tokio::test]
async fn a_new_customers_text_opens_a_chat() {
    let stack = bridge().await;
    let ana = stack.customer("14155550101", "Ana");
    ana.text("Hello, I need help with my order").await.unwrap();
    let texts = texts_at_agent(&stack, &ana.phone, 1).await;
    assert_eq!(texts, ["Hello, I need help with my order"]);
    let chats = stack.chats_of(&ana.phone);
    assert_eq!(chats.len(), 1);
    assert_eq!(chats[0].display_name, "Ana");
    assert!(chats[0].streaming_endpoint.is_some(), "streaming started");
}

#[tokio::test]
async fn a_burst_arrives_as_one_message_in_order() {
    let stack = bridge().await;
    let bo = stack.customer("14155550102", "Bo");
    for n in 1..=5 {
        bo.text(&format!("part {n}")).await.unwrap();
    }
    let texts = texts_at_agent(&stack, &bo.phone, 1).await;
    // Settle: nothing more arrives.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let texts_after: Vec<String> = stack
        .chats_of(&bo.phone)
        .iter()
        .flat_map(customer_texts)
        .collect();
    assert_eq!(texts, texts_after);
    assert_eq!(texts, ["part 1\npart 2\npart 3\npart 4\npart 5"]);
}

#[tokio::test]
async fn the_same_event_delivered_three_times_has_one_effect() {
    let stack = bridge().await;
    let cy = stack.customer("14155550103", "Cy");
    let value =
        parley_sandbox::customer::text_value(&cy.phone, &cy.name, "wamid.dup.1", "only once");
    for _ in 0..3 {
        cy.publish(value.clone()).await.unwrap();
    }
    let texts = texts_at_agent(&stack, &cy.phone, 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let texts_after: Vec<String> = stack
        .chats_of(&cy.phone)
        .iter()
        .flat_map(customer_texts)
        .collect();
    assert_eq!(texts, ["only once"]);
    assert_eq!(texts_after, texts);
}

#[tokio::test]
async fn location_contacts_and_unsupported_reach_the_agent_readably() {
    let stack = bridge().await;
    let di = stack.customer("14155550104", "Di");
    di.send(json!({
        "type": "location",
        "location": { "latitude": 38.7223, "longitude": -9.1393, "name": "Praça do Comércio", "address": "Lisboa" }
    }))
    .await
    .unwrap();
    di.send(json!({
        "type": "contacts",
        "contacts": [{ "name": { "formatted_name": "Eve Example" }, "phones": [{ "phone": "+1 415 555 0199" }] }]
    }))
    .await
    .unwrap();
    di.send(json!({
        "type": "unsupported",
        "errors": [{ "code": 131051, "title": "Message type unknown" }]
    }))
    .await
    .unwrap();
    // Sent within one second and delivered by a standard topic, their
    // order is not defined; each must arrive, readable.
    let texts = eventually(WAIT, || {
        let texts: Vec<String> = stack
            .chats_of(&di.phone)
            .iter()
            .flat_map(customer_texts)
            .collect();
        let all = texts.join("\n");
        (all.contains("Praça do Comércio") && all.contains("Eve Example")).then_some(all)
    })
    .await
    .expect("the location and the contact reach the agent");
    assert!(
        texts.contains("google.com/maps") && texts.contains("+1 415 555 0199"),
        "{texts}"
    );
    let notes = eventually(WAIT, || {
        let notes: Vec<String> = stack.chats_of(&di.phone).iter().flat_map(notices).collect();
        (!notes.is_empty()).then_some(notes)
    })
    .await
    .expect("the agent is told about the unsupported message");
    assert!(notes[0].contains("unsupported"), "{notes:?}");
}

#[tokio::test]
async fn a_malformed_event_is_dead_lettered_with_its_reason() {
    let stack = bridge().await;
    let sandbox = &stack.sandbox.sandbox;
    sandbox
        .publish(
            &sandbox.config.inbound_topic_arn,
            "{not json".into(),
            &Default::default(),
        )
        .await
        .unwrap();
    let letters = eventually(WAIT, || {
        let letters = futures_lite_block(stack.dead_letters());
        (!letters.is_empty()).then_some(letters)
    })
    .await
    .expect("a dead letter");
    assert_eq!(letters[0].source, "inbound");
    assert!(
        letters[0].reason.contains("not JSON"),
        "{}",
        letters[0].reason
    );
}

/// Runs a future to completion inside a sync poll (the file-backed dead
/// letters need no I/O runtime).
fn futures_lite_block<F: std::future::Future>(future: F) -> F::Output {
    futures::executor::block_on(future)
}

/// A voice note saying "four two seven" to the sandbox's recognizer.
fn voice_note() -> Vec<u8> {
    let mut samples = vec![0i16; 4_800];
    samples.extend(parley_sandbox::recognizer::dtmf("427", 48_000));
    samples.extend(vec![0i16; 4_800]);
    parley_transcoder::synth::encode_pcm(&samples, 48_000).unwrap()
}

#[tokio::test]
async fn a_first_message_that_is_a_voice_note_is_attached_transcribed_and_echoed() {
    let routing = format!(
        "{}echo_transcript = true\n",
        parley_local::stack::default_routing()
    );
    let stack = Stack::builder()
        .bridge()
        .routing(routing)
        .start()
        .await
        .unwrap();
    let ed = stack.customer("14155550105", "Ed");
    let wamid = ed.voice_note(voice_note()).await.unwrap();
    let texts = texts_at_agent(&stack, &ed.phone, 1).await;
    assert!(texts[0].starts_with("🎤 Voice note (0:00"), "{texts:?}");
    assert!(texts[0].ends_with("four two seven"), "{texts:?}");
    let chat = &stack.chats_of(&ed.phone)[0];
    let attachments = stack.attachments_of(&chat.contact_id);
    assert_eq!(attachments.len(), 1, "{attachments:?}");
    assert!(attachments[0].completed && attachments[0].content_type == "audio/wav");
    let wav = attachments[0].bytes.clone().unwrap();
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(
        wav.len() as u64,
        attachments[0].size,
        "the declared size was exact"
    );
    // The transcript is quoted back to the customer, replying to the note.
    let echo = eventually(WAIT, || stack.whatsapp_to(&ed.phone).into_iter().next())
        .await
        .unwrap_or_else(|| panic!("an echo: {:?}", stack.sandbox.sandbox.whatsapp_sent()));
    assert_eq!(echo.message["context"]["message_id"], wamid);
    assert!(
        echo.message["text"]["body"]
            .as_str()
            .unwrap()
            .contains("four two seven")
    );
}

#[tokio::test]
async fn a_picture_with_its_caption_and_a_sticker_as_png() {
    let stack = bridge().await;
    let fi = stack.customer("14155550106", "Fi");
    let jpeg = b"\xff\xd8\xff\xe0 a tiny jpeg".to_vec();
    fi.media(
        "image",
        "image/jpeg",
        jpeg.clone(),
        json!({ "caption": "my receipt" }),
    )
    .await
    .unwrap();
    let sticker = {
        let pixels = image::RgbaImage::from_pixel(4, 4, image::Rgba([0, 200, 0, 255]));
        let mut webp = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgba8(pixels)
            .write_to(&mut webp, image::ImageFormat::WebP)
            .unwrap();
        webp.into_inner()
    };
    fi.media(
        "sticker",
        "image/webp",
        sticker,
        json!({ "animated": false }),
    )
    .await
    .unwrap();
    let attachments = eventually(WAIT, || {
        let chat = stack.chats_of(&fi.phone).into_iter().next()?;
        let attachments = stack.attachments_of(&chat.contact_id);
        (attachments.iter().filter(|a| a.completed).count() == 2).then_some(attachments)
    })
    .await
    .expect("both attached");
    let picture = attachments
        .iter()
        .find(|a| a.content_type == "image/jpeg")
        .unwrap();
    assert_eq!(picture.bytes.as_deref(), Some(&jpeg[..]));
    assert!(picture.name.ends_with(".jpg"), "{}", picture.name);
    let png = attachments
        .iter()
        .find(|a| a.content_type == "image/png")
        .expect("the sticker as PNG");
    assert_eq!(&png.bytes.as_deref().unwrap()[..4], b"\x89PNG");
    let texts = texts_at_agent(&stack, &fi.phone, 1).await;
    assert_eq!(texts, ["my receipt"]);
    // The caption follows its picture in the chat.
    let chat = &stack.chats_of(&fi.phone)[0];
    let order: Vec<&str> = chat.transcript.iter().map(|i| i.kind.as_str()).collect();
    let picture_at = chat
        .transcript
        .iter()
        .position(|i| i.content == picture.id)
        .unwrap();
    let caption_at = chat
        .transcript
        .iter()
        .position(|i| i.content == "my receipt")
        .unwrap();
    assert!(picture_at < caption_at, "{order:?}");
}

#[tokio::test]
async fn an_expired_connection_is_refreshed_and_the_message_delivered() {
    let stack = bridge().await;
    let gi = stack.customer("14155550107", "Gi");
    gi.text("first").await.unwrap();
    texts_at_agent(&stack, &gi.phone, 1).await;
    stack.sandbox.sandbox.expire_connections();
    gi.text("second").await.unwrap();
    let texts = texts_at_agent(&stack, &gi.phone, 2).await;
    assert_eq!(texts, ["first", "second"]);
    assert_eq!(
        stack.chats_of(&gi.phone).len(),
        1,
        "the same chat, refreshed"
    );
}

#[tokio::test]
async fn with_the_transcriber_down_the_audio_is_attached_and_the_agent_told() {
    let stack = Stack::builder()
        .bridge()
        .gateway_config(|config| {
            config.transcriber = parley_runtime::client::ClientConfig::new("http://127.0.0.1:9");
        })
        .start()
        .await
        .unwrap();
    let hu = stack.customer("14155550108", "Hu");
    hu.voice_note(voice_note()).await.unwrap();
    let notes = eventually(WAIT, || {
        let notes: Vec<String> = stack.chats_of(&hu.phone).iter().flat_map(notices).collect();
        (!notes.is_empty()).then_some(notes)
    })
    .await
    .expect("the agent is told");
    assert!(
        notes[0].contains("voice note (attached)") && notes[0].contains("could not be transcribed"),
        "{notes:?}"
    );
    let chat = &stack.chats_of(&hu.phone)[0];
    let attachments = stack.attachments_of(&chat.contact_id);
    assert_eq!(attachments.len(), 1);
    assert!(attachments[0].completed);
}

#[tokio::test]
async fn forged_sns_and_meta_signatures_are_refused_and_change_nothing() {
    let stack = Stack::builder()
        .bridge()
        .gateway_config(|config| {
            config.http.meta_app_secret = Some("app-secret".into());
            config.http.meta_verify_token = Some("verify-me".into());
        })
        .start()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let base = stack.gateway_url(0);
    // A notification signed by a key that is not SNS's: a self-signed
    // certificate served from an untrusted origin, and one with the
    // sandbox's certificate but a changed message.
    let value =
        parley_sandbox::customer::text_value("14155550109", "Ivy", "wamid.forged", "forged");
    let eum = stack.sandbox.sandbox.eum_message(value);
    let forged = json!({
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": stack.sandbox.sandbox.config.inbound_topic_arn,
        "Message": eum.to_string(),
        "Timestamp": "2026-01-01T00:00:00.000Z",
        "SignatureVersion": "2",
        "Signature": "AAAA",
        "SigningCertURL": format!("{}/_sandbox/sns/signing-cert.pem", stack.sandbox.endpoint),
    });
    let refused = http
        .post(format!("{base}/sns/inbound"))
        .body(forged.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let mut elsewhere = forged.clone();
    elsewhere["SigningCertURL"] = json!("https://evil.example.com/cert.pem");
    let refused = http
        .post(format!("{base}/sns/inbound"))
        .body(elsewhere.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    // Meta: the handshake needs the token; a body needs the app secret's
    // signature over exactly its bytes.
    let handshake = http
        .get(format!(
            "{base}/webhooks/meta?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=4242"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(handshake.text().await.unwrap(), "4242");
    let wrong = http
        .get(format!(
            "{base}/webhooks/meta?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let webhook = json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value":
            parley_sandbox::customer::text_value("14155550109", "Ivy", "wamid.meta.1", "via Meta")
                .as_object().cloned().map(|mut v| { v.insert("metadata".into(), json!({"phone_number_id": "106540352242922", "display_phone_number": "15550783881"})); v }).unwrap()
        }]}]
    })
    .to_string();
    let forged = http
        .post(format!("{base}/webhooks/meta"))
        .header(
            "x-hub-signature-256",
            parley_gateway::source::meta::sign("wrong-secret", webhook.as_bytes()),
        )
        .body(webhook.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let signed = http
        .post(format!("{base}/webhooks/meta"))
        .header(
            "x-hub-signature-256",
            parley_gateway::source::meta::sign("app-secret", webhook.as_bytes()),
        )
        .body(webhook)
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
    let texts = texts_at_agent(&stack, "14155550109", 1).await;
    assert_eq!(texts, ["via Meta"], "only the signed webhook had an effect");
}

#[tokio::test]
async fn two_replicas_on_one_queue_open_one_chat_per_customer_in_order() {
    let stack = Stack::builder()
        .bridge()
        .sqs_feed()
        .gateway_replicas(2)
        .start()
        .await
        .unwrap();
    let customers: Vec<_> = (0..4)
        .map(|n| stack.customer(&format!("1415555020{n}"), &format!("C{n}")))
        .collect();
    for round in 1..=3 {
        for customer in &customers {
            customer
                .text(&format!("{} says {round}", customer.name))
                .await
                .unwrap();
        }
    }
    for customer in &customers {
        let texts = eventually(Duration::from_secs(30), || {
            let texts: Vec<String> = stack
                .chats_of(&customer.phone)
                .iter()
                .flat_map(customer_texts)
                .collect();
            (texts.join("\n").lines().count() >= 3).then_some(texts)
        })
        .await
        .unwrap_or_else(|| panic!("{}: {:#?}", customer.name, stack.chats_of(&customer.phone)));
        assert_eq!(
            stack.chats_of(&customer.phone).len(),
            1,
            "one chat for {}",
            customer.name
        );
        let lines: Vec<String> = texts.join("\n").lines().map(str::to_owned).collect();
        let expected: Vec<String> = (1..=3)
            .map(|r| format!("{} says {r}", customer.name))
            .collect();
        assert_eq!(lines, expected, "each once, in order");
    }
}

#[tokio::test]
async fn a_throttling_storm_delays_but_delivers_everything_once() {
    let stack = Stack::builder()
        .bridge()
        .gateway_config(|config| config.flush.max_attempts = 12)
        .start()
        .await
        .unwrap();
    let jo = stack.customer("14155550110", "Jo");
    jo.text("before the storm").await.unwrap();
    texts_at_agent(&stack, &jo.phone, 1).await;
    // For four seconds every call to any emulated AWS API is throttled, as
    // Connect and Social Messaging do under load.
    stack.sandbox.sandbox.throttle_for(Duration::from_secs(4));
    let storm = std::time::Instant::now();
    for n in 1..=3 {
        jo.text(&format!("during the storm {n}")).await.unwrap();
    }
    let texts = eventually(Duration::from_secs(60), || {
        let texts: Vec<String> = stack
            .chats_of(&jo.phone)
            .iter()
            .flat_map(customer_texts)
            .collect();
        (texts.join("\n").lines().count() >= 4).then_some(texts)
    })
    .await
    .unwrap_or_else(|| panic!("{:#?}", stack.chats_of(&jo.phone)));
    assert!(
        storm.elapsed() >= Duration::from_secs(3),
        "delivered during the storm?"
    );
    assert!(stack.settled(&jo.phone, WAIT).await);
    let lines: Vec<String> = stack
        .chats_of(&jo.phone)
        .iter()
        .flat_map(customer_texts)
        .flat_map(|t| t.lines().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    assert_eq!(
        lines,
        [
            "before the storm",
            "during the storm 1",
            "during the storm 2",
            "during the storm 3"
        ],
        "{texts:?}"
    );
    assert!(
        stack.dead_letters().await.is_empty(),
        "nothing dead-lettered"
    );
}
