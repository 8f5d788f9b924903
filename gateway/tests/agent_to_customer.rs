//! The bridge end to end, agent → customer: Connect's streamed items
//! reach WhatsApp rendered for it, the customer's answers and WhatsApp's
//! statuses come back to Connect, and the chat's life (transfer, end, a new
//! chat) is followed.

use std::time::Duration;

use parley_local::{
    Stack,
    conversation::{customer_texts, eventually, notices, receipts, whatsapp_text},
};
use parley_sandbox::state::{Contact, SentWhatsApp};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// A chat opened by `customer`'s first text.
async fn open_chat(stack: &Stack, phone: &str) -> Contact {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let customer = stack.customer(phone, "Customer");
    customer.text("hi").await.unwrap();
    // Streaming starts a moment after Connect opened the chat, and the
    // gateway knows the chat once the session stored it; an agent writing
    // before both would be talking into a chat nobody streams.
    let chat = eventually(WAIT, || {
        stack
            .chats_of(phone)
            .into_iter()
            .find(|c| !customer_texts(c).is_empty() && c.streaming_endpoint.is_some())
    })
    .await
    .expect("a chat");
    let session = stack.session();
    for _ in 0..200 {
        let found = parley_client::SessionApi::get_chat_by_contact(
            &session,
            parley_proto::session::GetChatByContactRequest {
                contact_id: chat.contact_id.clone(),
            },
        )
        .await
        .unwrap();
        if found.state() == parley_proto::session::ChatState::Active {
            return chat;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the session never stored the chat")
}

/// The WhatsApp messages sent to `phone` that are not read receipts, once
/// there are `count`.
async fn received(stack: &Stack, phone: &str, count: usize) -> Vec<SentWhatsApp> {
    eventually(WAIT, || {
        let sent: Vec<SentWhatsApp> = stack.whatsapp_to(phone);
        (sent.len() >= count).then_some(sent)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "{count} messages never reached {phone}: {:#?}\nSNS failures: {:#?}\nchats: {:#?}",
            stack.whatsapp_to(phone),
            stack.sandbox.sandbox.topics.failures(),
            stack.chats_of(phone)
        )
    })
}

#[tokio::test]
async fn a_greeting_posted_before_streaming_began_reaches_whatsapp_once() {
    // Connect streams only what is posted after StartContactStreaming; a
    // flow's greeting comes before it and would never arrive by streaming.
    let greeting = "Welcome! Tell us how we can help.";
    let stack = Stack::builder()
        .bridge()
        .sandbox_config(move |config| config.flow_greeting = Some(greeting.into()))
        .start()
        .await
        .unwrap();
    let phone = "14155550391";
    let customer = stack.customer(phone, "Greeted");
    customer.text("hi").await.unwrap();
    let sent = received(&stack, phone, 1).await;
    assert_eq!(whatsapp_text(&sent[0]), greeting);
    // Later messages in the same chat do not bring it again.
    customer.text("my order is late").await.unwrap();
    eventually(WAIT, || {
        let chats = stack.chats_of(phone);
        (chats.len() == 1 && customer_texts(&chats[0]).len() == 2).then_some(())
    })
    .await
    .expect("the second text reached the same chat");
    assert!(stack.settled(phone, WAIT).await, "buffers drained");
    let texts: Vec<String> = stack
        .whatsapp_to(phone)
        .iter()
        .map(whatsapp_text)
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(texts, [greeting], "the greeting once, nothing else");
}

#[tokio::test]
async fn text_markdown_and_a_quick_reply_reach_whatsapp_and_the_choice_comes_back() {
    let stack = Stack::builder().bridge().start().await.unwrap();
    let phone = "14155550301";
    let chat = open_chat(&stack, phone).await;
    let agent = stack.agent();
    agent
        .says(&chat.contact_id, "text/plain", "Hello! How can I help?")
        .await
        .unwrap();
    agent
        .says(
            &chat.contact_id,
            "text/markdown",
            "Your order is **shipped** and _on its way_.",
        )
        .await
        .unwrap();
    let template = json!({
        "templateType": "QuickReply",
        "version": "1.0",
        "data": { "content": { "title": "Was this helpful?", "elements": [
            { "title": "Yes" }, { "title": "No" }, { "title": "Talk to agent" }
        ]}}
    });
    agent
        .says(
            &chat.contact_id,
            "application/vnd.amazonaws.connect.message.interactive",
            &template.to_string(),
        )
        .await
        .unwrap();
    let sent = received(&stack, phone, 3).await;
    assert_eq!(whatsapp_text(&sent[0]), "Hello! How can I help?");
    assert_eq!(
        whatsapp_text(&sent[1]),
        "Your order is *shipped* and _on its way_."
    );
    assert_eq!(sent[2].message["type"], "interactive");
    let buttons = sent[2].message["interactive"]["action"]["buttons"]
        .as_array()
        .unwrap();
    assert_eq!(buttons.len(), 3);
    assert_eq!(buttons[2]["reply"]["title"], "Talk to agent");

    // The customer taps the third button: the agent reads its title.
    let customer = stack.customer(phone, "Customer");
    let id = buttons[2]["reply"]["id"].as_str().unwrap();
    customer
        .choose(&sent[2].message_id, id, "Talk to agent")
        .await
        .unwrap();
    let texts = eventually(WAIT, || {
        let texts = customer_texts(&stack.chats_of(phone)[0]);
        (texts.len() >= 2).then_some(texts)
    })
    .await
    .expect("the choice reaches the agent");
    assert_eq!(texts, ["hi", "Talk to agent"]);
}

#[tokio::test]
async fn whatsapp_statuses_become_connect_receipts_and_failures_notices() {
    let stack = Stack::builder().bridge().start().await.unwrap();
    let phone = "14155550302";
    let chat = open_chat(&stack, phone).await;
    let agent = stack.agent();
    let item = agent
        .says(&chat.contact_id, "text/plain", "Your code is ready")
        .await
        .unwrap();
    let failed_item = agent
        .says(&chat.contact_id, "text/plain", "Anything else?")
        .await
        .unwrap();
    let sent = received(&stack, phone, 2).await;
    let customer = stack.customer(phone, "Customer");
    customer
        .status(&sent[0].message_id, "delivered")
        .await
        .unwrap();
    customer.status(&sent[0].message_id, "read").await.unwrap();
    customer
        .status(&sent[1].message_id, "failed")
        .await
        .unwrap();
    let got = eventually(WAIT, || {
        let contact = stack.chats_of(phone).into_iter().next()?;
        let receipts = receipts(&contact);
        (receipts.len() >= 2 && !notices(&contact).is_empty())
            .then_some((receipts, notices(&contact)))
    })
    .await
    .expect("receipts and a notice");
    let (receipts, notices) = got;
    assert!(
        receipts.contains(&("delivered".into(), item.clone())),
        "{receipts:?}"
    );
    assert!(receipts.contains(&("read".into(), item)), "{receipts:?}");
    assert!(!receipts.iter().any(|(_, id)| *id == failed_item));
    assert!(
        notices[0].contains("131047") && notices[0].contains("Anything else?"),
        "{notices:?}"
    );
}

#[tokio::test]
async fn an_agents_wav_arrives_as_a_voice_note() {
    let stack = Stack::builder().bridge().start().await.unwrap();
    let phone = "14155550303";
    let chat = open_chat(&stack, phone).await;
    let samples = parley_transcoder::synth::speech_like(16_000, 2.0, 3);
    let wav = {
        let mut wav =
            parley_transcoder::pcm::wav_header(16_000, Some(samples.len() as u64 * 2)).to_vec();
        wav.extend(parley_transcoder::synth::to_le_bytes(&samples));
        wav
    };
    stack
        .agent()
        .attaches(&chat.contact_id, "instructions.wav", "audio/wav", wav)
        .await
        .unwrap();
    let sent = received(&stack, phone, 1).await;
    assert_eq!(sent[0].message["type"], "audio", "{:?}", sent[0].message);
    let media_id = sent[0].message["audio"]["id"]
        .as_str()
        .expect("sent by media id");
    let media = stack
        .sandbox
        .sandbox
        .whatsapp_media(media_id)
        .expect("the uploaded media");
    assert!(
        media.mime_type.starts_with("audio/ogg"),
        "{}",
        media.mime_type
    );
    assert_eq!(&media.bytes[..4], b"OggS");
}

#[tokio::test]
async fn an_ended_chat_says_goodbye_and_the_next_message_opens_a_new_chat() {
    let routing = format!(
        "{}goodbye = \"Thanks for chatting with us!\"\n",
        parley_local::stack::default_routing()
    );
    let stack = Stack::builder()
        .bridge()
        .routing(routing)
        .start()
        .await
        .unwrap();
    let phone = "14155550304";
    let chat = open_chat(&stack, phone).await;
    let agent = stack.agent();
    // participant.left alone (it also fires on transfers) ends nothing.
    agent
        .event(&chat.contact_id, "participant.left")
        .await
        .unwrap();
    agent
        .says(&chat.contact_id, "text/plain", "Bye now")
        .await
        .unwrap();
    agent.event(&chat.contact_id, "chat.ended").await.unwrap();
    let sent = received(&stack, phone, 2).await;
    assert_eq!(whatsapp_text(&sent[0]), "Bye now");
    assert_eq!(whatsapp_text(&sent[1]), "Thanks for chatting with us!");
    stack
        .customer(phone, "Customer")
        .text("one more thing")
        .await
        .unwrap();
    let chats = eventually(WAIT, || {
        let chats = stack.chats_of(phone);
        (chats.len() == 2 && !customer_texts(&chats[1]).is_empty()).then_some(chats)
    })
    .await
    .unwrap_or_else(|| panic!("a new chat: {:#?}", stack.chats_of(phone)));
    assert_eq!(customer_texts(&chats[1]), ["one more thing"]);
    assert_eq!(customer_texts(&chats[0]), ["hi"]);
}

#[tokio::test]
async fn a_transfer_keeps_the_conversation_going_both_ways() {
    let stack = Stack::builder().bridge().start().await.unwrap();
    let phone = "14155550305";
    let chat = open_chat(&stack, phone).await;
    let agent = stack.agent();
    let new_contact = agent.transfers(&chat.contact_id).unwrap();
    agent
        .says(&new_contact, "text/plain", "Hi, I'm from billing")
        .await
        .unwrap();
    let sent = received(&stack, phone, 1).await;
    assert_eq!(whatsapp_text(&sent[0]), "Hi, I'm from billing");
    stack
        .customer(phone, "Customer")
        .text("thanks")
        .await
        .unwrap();
    let texts = eventually(WAIT, || {
        let chats = stack.chats_of(phone);
        let texts: Vec<String> = chats.iter().flat_map(customer_texts).collect();
        (texts.len() >= 2).then_some(texts)
    })
    .await
    .expect("the customer's reply reaches the transferred chat");
    assert_eq!(texts, ["hi", "thanks"]);
    assert_eq!(stack.chats_of(phone).len(), 1);
}

#[tokio::test]
async fn agent_messages_are_sent_in_connects_order_each_once() {
    let stack = Stack::builder().bridge().start().await.unwrap();
    let phone = "14155550306";
    let chat = open_chat(&stack, phone).await;
    let agent = stack.agent();
    for n in 1..=6 {
        agent
            .says(&chat.contact_id, "text/plain", &format!("line {n}"))
            .await
            .unwrap();
    }
    let sent = received(&stack, phone, 6).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let texts: Vec<String> = stack.whatsapp_to(phone).iter().map(whatsapp_text).collect();
    let expected: Vec<String> = (1..=6).map(|n| format!("line {n}")).collect();
    assert_eq!(texts, expected);
    assert_eq!(sent.len(), 6);
}
