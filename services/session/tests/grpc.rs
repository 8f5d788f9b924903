//! The session service over real loopback gRPC, through the client crate,
//! on both backends: exactly one chat creation under a burst, the crash
//! windows of the contracts (a caller abandoned after a take, a claim or a
//! creation lease), errors as typed reasons, and bad input refused.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use parley_client::{CallPolicy, ConnectApi, SessionApi};
use parley_local::{Component, SessionStore, Stack};
use parley_proto::{
    common::{ConversationKey as PbKey, ErrorReason},
    connect::StartChatRequest,
    session::{
        AckPendingRequest, ActiveChat as PbChat, AppendPendingRequest, ChatState,
        ClaimMessageRequest, ClaimOutcome, CompleteChatCreationRequest, Direction,
        EnsureChatRequest, GetChatByContactRequest, MessageOrigin, PendingMessage,
        TakePendingRequest, UpdateChatRequest, ensure_chat_response::Outcome,
    },
};
use tonic::Code;

fn pb_key() -> PbKey {
    PbKey {
        business_number_id:
            "arn:aws:social-messaging:us-east-1:123456789012:phone-number-id/0123abcd".into(),
        customer_id: "+14155550123".into(),
    }
}

async fn session_stack(store: SessionStore) -> Stack {
    let mut stack = Stack::builder()
        .with(Component::Session)
        .session_store(store)
        .start()
        .await
        .expect("the stack starts");
    stack.set_call_policy(CallPolicy::default().once());
    stack
}

fn chat_for(contact: &str) -> PbChat {
    PbChat {
        key: Some(pb_key()),
        contact_id: contact.into(),
        initial_contact_id: contact.into(),
        participant_token: "p".into(),
        connection_token: "c".into(),
        customer_display_name: "Kike".into(),
        channel: "WhatsApp".into(),
        ..PbChat::default()
    }
}

/// 200 EnsureChat calls for one new customer from 8 clients (each with its
/// own connection, like gateway replicas): exactly one gets the lease and
/// "creates" the chat; every other call returns that chat.
async fn one_creation_under_a_burst(stack: &Stack) {
    let creations = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for replica in 0..8 {
        let client = Arc::new(stack.session());
        let creations = creations.clone();
        tasks.push(tokio::spawn(async move {
            let calls: Vec<_> = (0..25)
                .map(|_| {
                    let client = client.clone();
                    let creations = creations.clone();
                    tokio::spawn(async move {
                        let outcome = client
                            .ensure_chat(EnsureChatRequest {
                                key: Some(pb_key()),
                                max_wait_ms: 20_000,
                                lease_ttl_ms: 0,
                            })
                            .await
                            .unwrap()
                            .outcome
                            .unwrap();
                        match outcome {
                            Outcome::Chat(chat) => chat.contact_id,
                            Outcome::Lease(lease) => {
                                creations.fetch_add(1, Ordering::SeqCst);
                                // StartChatContact takes a while.
                                tokio::time::sleep(Duration::from_millis(150)).await;
                                client
                                    .complete_chat_creation(CompleteChatCreationRequest {
                                        lease_id: lease.lease_id,
                                        chat: Some(chat_for(&format!(
                                            "contact-from-replica-{replica}"
                                        ))),
                                    })
                                    .await
                                    .unwrap()
                                    .chat
                                    .unwrap()
                                    .contact_id
                            }
                        }
                    })
                })
                .collect();
            let mut contacts = Vec::new();
            for call in calls {
                contacts.push(call.await.unwrap());
            }
            contacts
        }));
    }
    let mut contacts = Vec::new();
    for task in tasks {
        contacts.extend(task.await.unwrap());
    }
    assert_eq!(contacts.len(), 200);
    assert_eq!(
        creations.load(Ordering::SeqCst),
        1,
        "exactly one chat creation"
    );
    assert!(
        contacts.windows(2).all(|w| w[0] == w[1]),
        "every call got the same chat"
    );
    // And outbound lookups find it by contact id.
    let found = stack
        .session()
        .get_chat_by_contact(GetChatByContactRequest {
            contact_id: contacts[0].clone(),
        })
        .await
        .unwrap();
    assert_eq!(found.state(), ChatState::Active);
    assert_eq!(found.chat.unwrap().key.unwrap().customer_id, "14155550123");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_creates_one_chat_on_the_embedded_store() {
    one_creation_under_a_burst(&session_stack(SessionStore::Memory).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_creates_one_chat_on_dynamodb() {
    one_creation_under_a_burst(&session_stack(SessionStore::DynamoDb).await).await;
}

fn append(id: &str) -> AppendPendingRequest {
    AppendPendingRequest {
        key: Some(pb_key()),
        direction: Direction::Inbound as i32,
        message: Some(PendingMessage {
            message_id: id.into(),
            payload: format!("payload of {id}").into_bytes().into(),
            ..PendingMessage::default()
        }),
        ..AppendPendingRequest::default()
    }
}

fn take(lease_ms: u32) -> TakePendingRequest {
    TakePendingRequest {
        key: Some(pb_key()),
        direction: Direction::Inbound as i32,
        lease_ms,
        ..TakePendingRequest::default()
    }
}

/// The crash windows of the buffer, over the wire: a caller that takes a
/// batch and vanishes loses nothing (the batch comes back, in order, to
/// the next caller), cannot ack late, and nobody else can take the buffer
/// while its lease lives.
async fn an_abandoned_take_loses_nothing(stack: &Stack) {
    let session = stack.session();
    for id in ["wamid.1", "wamid.2", "wamid.3"] {
        session.append_pending(append(id)).await.unwrap();
    }
    let dead = session.take_pending(take(400)).await.unwrap();
    assert_eq!(dead.messages.len(), 3);
    // Meanwhile another replica is told to come back when the lease ends.
    let busy = session.take_pending(take(400)).await.unwrap_err();
    assert_eq!(busy.code, Code::Aborted);
    assert_eq!(busy.reason(), ErrorReason::Busy);
    assert!(busy.is_retryable());
    assert!(busy.retry_after().unwrap() <= Duration::from_millis(400));
    tokio::time::sleep(Duration::from_millis(450)).await;
    let retaken = session.take_pending(take(30_000)).await.unwrap();
    let ids: Vec<&str> = retaken
        .messages
        .iter()
        .map(|m| m.message_id.as_str())
        .collect();
    assert_eq!(
        ids,
        ["wamid.1", "wamid.2", "wamid.3"],
        "the same head, in order"
    );
    assert_eq!(retaken.messages[1].payload, b"payload of wamid.2"[..]);
    let late = session
        .ack_pending(AckPendingRequest {
            key: Some(pb_key()),
            direction: Direction::Inbound as i32,
            take_token: dead.take_token,
        })
        .await
        .unwrap_err();
    assert_eq!(late.code, Code::FailedPrecondition);
    assert_eq!(late.reason(), ErrorReason::LeaseLost);
    let acked = session
        .ack_pending(AckPendingRequest {
            key: Some(pb_key()),
            direction: Direction::Inbound as i32,
            take_token: retaken.take_token,
        })
        .await
        .unwrap();
    assert_eq!(acked.message_count, 0);
    assert!(
        acked.version > dead.state.unwrap().version,
        "versions only go up"
    );
}

#[tokio::test]
async fn an_abandoned_take_loses_nothing_on_the_embedded_store() {
    an_abandoned_take_loses_nothing(&session_stack(SessionStore::Memory).await).await;
}

#[tokio::test]
async fn an_abandoned_take_loses_nothing_on_dynamodb() {
    an_abandoned_take_loses_nothing(&session_stack(SessionStore::DynamoDb).await).await;
}

/// A creation lease whose holder opened the Connect chat and then vanished
/// (before storing it): the next holder gets the same client token, so
/// Connect returns the same contact — one chat, not two.
#[tokio::test]
async fn a_creation_taken_over_after_a_crash_opens_no_second_chat() {
    let mut stack = Stack::builder()
        .with(Component::Session)
        .with(Component::ConnectRelay)
        .start()
        .await
        .unwrap();
    stack.set_call_policy(CallPolicy::default().once());
    let (session, connect) = (stack.session(), stack.connect());
    let ensure = || EnsureChatRequest {
        key: Some(pb_key()),
        max_wait_ms: 2_000,
        lease_ttl_ms: 300,
    };
    let start = |token: &str| StartChatRequest {
        key: Some(pb_key()),
        initial_message: "hola".into(),
        client_token: token.into(),
        ..StartChatRequest::default()
    };
    let Some(Outcome::Lease(first)) = session.ensure_chat(ensure()).await.unwrap().outcome else {
        panic!("the first caller gets the lease")
    };
    let opened = connect
        .start_chat(start(&first.client_token))
        .await
        .unwrap();
    // ... and the first caller dies here. The second waits out its lease.
    let Some(Outcome::Lease(second)) = session.ensure_chat(ensure()).await.unwrap().outcome else {
        panic!("the lease is handed over")
    };
    assert_eq!(second.client_token, first.client_token);
    let reopened = connect
        .start_chat(start(&second.client_token))
        .await
        .unwrap();
    assert_eq!(reopened.contact_id, opened.contact_id);
    let stored = session
        .complete_chat_creation(CompleteChatCreationRequest {
            lease_id: second.lease_id,
            chat: Some(PbChat {
                participant_id: reopened.participant_id,
                participant_token: reopened.participant_token,
                connection_token: reopened.connection_token,
                ..chat_for(&reopened.contact_id)
            }),
        })
        .await
        .unwrap();
    assert_eq!(stored.chat.unwrap().client_token, first.client_token);
    assert_eq!(
        stack.sandbox.sandbox.contacts().len(),
        1,
        "one Connect chat"
    );
}

#[tokio::test]
async fn an_abandoned_claim_is_reclaimed_after_its_timeout() {
    let stack = session_stack(SessionStore::Memory).await;
    let session = stack.session();
    let claim = || ClaimMessageRequest {
        origin: MessageOrigin::Whatsapp as i32,
        message_id: "wamid.HBgL".into(),
        ttl_s: 0,
        in_progress_timeout_s: 1,
    };
    let first = session.claim_message(claim()).await.unwrap();
    assert_eq!(first.outcome(), ClaimOutcome::Claimed);
    assert!(!first.claim_token.is_empty());
    let busy = session.claim_message(claim()).await.unwrap();
    assert_eq!(busy.outcome(), ClaimOutcome::InProgress);
    assert!(busy.retry_after_ms > 0 && busy.retry_after_ms <= 1_000);
    // The claimer died: after the timeout the message is claimable again.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        session.claim_message(claim()).await.unwrap().outcome(),
        ClaimOutcome::Claimed
    );
}

#[tokio::test]
async fn conflicts_and_limits_are_typed() {
    let stack = session_stack(SessionStore::Memory).await;
    let session = stack.session();
    let Some(Outcome::Lease(lease)) = session
        .ensure_chat(EnsureChatRequest {
            key: Some(pb_key()),
            ..EnsureChatRequest::default()
        })
        .await
        .unwrap()
        .outcome
    else {
        panic!()
    };
    let chat = session
        .complete_chat_creation(CompleteChatCreationRequest {
            lease_id: lease.lease_id,
            chat: Some(chat_for("contact-1")),
        })
        .await
        .unwrap()
        .chat
        .unwrap();
    session
        .update_chat(UpdateChatRequest {
            chat: Some(chat.clone()),
        })
        .await
        .unwrap();
    let stale = session
        .update_chat(UpdateChatRequest { chat: Some(chat) })
        .await
        .unwrap_err();
    assert_eq!(stale.code, Code::Aborted);
    assert_eq!(stale.reason(), ErrorReason::VersionConflict);

    let big = |id: &str| AppendPendingRequest {
        message: Some(PendingMessage {
            message_id: id.into(),
            payload: vec![0u8; 200_000].into(),
            ..PendingMessage::default()
        }),
        ..append(id)
    };
    session.append_pending(big("a")).await.unwrap();
    let full = session.append_pending(big("b")).await.unwrap_err();
    assert_eq!(full.code, Code::ResourceExhausted);
    assert_eq!(full.reason(), ErrorReason::LimitExceeded);
    assert!(
        !full.is_retryable(),
        "flush first; retrying unchanged cannot help"
    );
}

#[tokio::test]
async fn bad_input_is_invalid_argument_with_the_reason() {
    let stack = session_stack(SessionStore::Memory).await;
    let session = stack.session();
    let cases = [
        (
            PbKey {
                business_number_id: String::new(),
                customer_id: "14155550123".into(),
            },
            "business_number_id",
        ),
        (
            PbKey {
                business_number_id: "phone-number-id-0123abcd".into(),
                customer_id: "not-a-number".into(),
            },
            "customer_id",
        ),
        (
            PbKey {
                business_number_id: format!("phone-number-id-{}", "x".repeat(300)),
                customer_id: "14155550123".into(),
            },
            "128",
        ),
        // A Meta numeric id must be resolved by the gateway before it gets here.
        (
            PbKey {
                business_number_id: "503650672828631".into(),
                customer_id: "14155550123".into(),
            },
            "not mapped",
        ),
    ];
    for (key, expected) in cases {
        let error = session
            .ensure_chat(EnsureChatRequest {
                key: Some(key),
                ..EnsureChatRequest::default()
            })
            .await
            .unwrap_err();
        assert_eq!(error.code, Code::InvalidArgument);
        assert_eq!(error.reason(), ErrorReason::InvalidRequest);
        assert!(error.message.contains(expected), "{}", error.message);
    }
    let error = session
        .claim_message(ClaimMessageRequest {
            origin: MessageOrigin::Whatsapp as i32,
            message_id: String::new(),
            ..ClaimMessageRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code, Code::InvalidArgument);
    assert!(error.message.contains("message_id"));
    let error = session
        .claim_message(ClaimMessageRequest {
            origin: 0,
            message_id: "wamid.1".into(),
            ..ClaimMessageRequest::default()
        })
        .await
        .unwrap_err();
    assert!(error.message.contains("origin"));
    let error = session
        .append_pending(AppendPendingRequest {
            message: Some(PendingMessage {
                message_id: "wamid.big".into(),
                payload: vec![0u8; 300 * 1024].into(),
                ..PendingMessage::default()
            }),
            ..append("x")
        })
        .await
        .unwrap_err();
    assert_eq!(error.code, Code::InvalidArgument);
    assert!(error.message.contains("payload"));
    let mut no_direction = append("wamid.d");
    no_direction.direction = 0;
    let error = session.append_pending(no_direction).await.unwrap_err();
    assert!(error.message.contains("direction"), "{}", error.message);
    let lookup = session
        .get_chat_by_contact(GetChatByContactRequest {
            contact_id: "nobody".into(),
        })
        .await
        .unwrap();
    assert_eq!(lookup.state(), ChatState::Unknown);
}
