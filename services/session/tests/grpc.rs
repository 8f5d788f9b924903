//! The session service over real loopback gRPC: exactly one chat creation
//! under a burst of EnsureChat calls, on both backends, and bad input
//! refused with the reason.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::*;
use parley_proto::{
    common::ConversationKey as PbKey,
    session::{
        ActiveChat as PbChat, AppendPendingRequest, ClaimMessageRequest, ClaimOutcome,
        CompleteChatCreationRequest, EnsureChatRequest, GetChatByContactRequest, MessageOrigin,
        PendingMessage, ensure_chat_response::Outcome, session_client::SessionClient,
    },
};
use parley_runtime::server::{GrpcServer, ServerConfig};
use parley_session::{
    grpc::{SessionConfig, SessionService},
    store::SessionStore,
};
use tonic::{Code, transport::Channel};

async fn serve(store: Arc<dyn SessionStore>) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        GrpcServer::new(ServerConfig::local(address))
            .add_service(SessionService::new(store, SessionConfig::default()).into_server())
            .serve(listener, async {
                let _ = stopped.await;
            }),
    );
    (format!("http://{address}"), stop)
}

async fn client(endpoint: &str) -> SessionClient<Channel> {
    SessionClient::new(
        Channel::from_shared(endpoint.to_owned())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    )
}

fn pb_key() -> PbKey {
    PbKey {
        business_number_id:
            "arn:aws:social-messaging:us-east-1:123456789012:phone-number-id/0123abcd".into(),
        customer_id: "+14155550123".into(),
    }
}

/// 200 EnsureChat calls for one new customer from 8 client tasks (each with
/// its own connection, like gateway replicas): exactly one gets the lease
/// and "creates" the chat; every other call returns that chat.
async fn one_creation_under_a_burst(endpoint: String) {
    let creations = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for replica in 0..8 {
        let endpoint = endpoint.clone();
        let creations = creations.clone();
        tasks.push(tokio::spawn(async move {
            let client = client(&endpoint).await;
            let calls: Vec<_> = (0..25)
                .map(|_| {
                    let mut client = client.clone();
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
                            .into_inner()
                            .outcome
                            .unwrap();
                        match outcome {
                            Outcome::Chat(chat) => chat.contact_id,
                            Outcome::Lease(lease) => {
                                creations.fetch_add(1, Ordering::SeqCst);
                                // StartChatContact takes a while.
                                tokio::time::sleep(Duration::from_millis(150)).await;
                                let stored = client
                                    .complete_chat_creation(CompleteChatCreationRequest {
                                        lease_id: lease.lease_id,
                                        chat: Some(PbChat {
                                            key: Some(pb_key()),
                                            contact_id: format!("contact-from-replica-{replica}"),
                                            initial_contact_id: format!(
                                                "contact-from-replica-{replica}"
                                            ),
                                            participant_token: "p".into(),
                                            connection_token: "c".into(),
                                            customer_display_name: "Kike".into(),
                                            channel: "WhatsApp".into(),
                                            ..PbChat::default()
                                        }),
                                    })
                                    .await
                                    .unwrap()
                                    .into_inner()
                                    .chat
                                    .unwrap();
                                stored.contact_id
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
    let found = client(&endpoint)
        .await
        .get_chat_by_contact(GetChatByContactRequest {
            contact_id: contacts[0].clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .chat
        .unwrap();
    assert_eq!(found.key.unwrap().customer_id, "14155550123");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_creates_one_chat_on_the_embedded_store() {
    let (endpoint, _stop) = serve(embedded_store()).await;
    one_creation_under_a_burst(endpoint).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_creates_one_chat_on_dynamodb() {
    let Some(moto) = start_moto() else { return };
    let (endpoint, _stop) = serve(Arc::new(dynamo_store(&moto, "burst").await)).await;
    one_creation_under_a_burst(endpoint).await;
}

#[tokio::test]
async fn bad_input_is_invalid_argument_with_the_reason() {
    let (endpoint, _stop) = serve(embedded_store()).await;
    let mut client = client(&endpoint).await;
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
                business_number_id: "503650672828631".into(),
                customer_id: "not-a-number".into(),
            },
            "customer_id",
        ),
        (
            PbKey {
                business_number_id: "x".repeat(300),
                customer_id: "14155550123".into(),
            },
            "256",
        ),
    ];
    for (key, expected) in cases {
        let status = client
            .ensure_chat(EnsureChatRequest {
                key: Some(key),
                ..EnsureChatRequest::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains(expected), "{}", status.message());
    }
    let status = client
        .claim_message(ClaimMessageRequest {
            origin: MessageOrigin::Whatsapp as i32,
            message_id: String::new(),
            ..ClaimMessageRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("message_id"));
    let status = client
        .claim_message(ClaimMessageRequest {
            origin: 0,
            message_id: "wamid.1".into(),
            ..ClaimMessageRequest::default()
        })
        .await
        .unwrap_err();
    assert!(status.message().contains("origin"));
    let status = client
        .append_pending(AppendPendingRequest {
            key: Some(pb_key()),
            message: Some(PendingMessage {
                message_id: "wamid.big".into(),
                received_at_ms: 0,
                payload: vec![0u8; 300 * 1024].into(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("payload"));
    let status = client
        .get_chat_by_contact(GetChatByContactRequest {
            contact_id: "nobody".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn claims_over_grpc() {
    let (endpoint, _stop) = serve(embedded_store()).await;
    let mut client = client(&endpoint).await;
    let claim = || ClaimMessageRequest {
        origin: MessageOrigin::Whatsapp as i32,
        message_id: "wamid.HBgL".into(),
        ttl_s: 0,
        in_progress_timeout_s: 0,
    };
    let first = client.claim_message(claim()).await.unwrap().into_inner();
    assert_eq!(first.outcome(), ClaimOutcome::Claimed);
    assert!(!first.claim_token.is_empty());
    assert_eq!(
        client
            .claim_message(claim())
            .await
            .unwrap()
            .into_inner()
            .outcome(),
        ClaimOutcome::InProgress
    );
}
