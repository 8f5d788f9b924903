//! One behavioural suite, run against every backend: the embedded store
//! always, DynamoDB through the real SDK against moto server.

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use parley_session::{
    error::SessionError,
    model::{ClaimOutcome, LeaseAttempt, MessageOrigin, PendingMessage},
    store::SessionStore,
};

const T0: i64 = 1_800_000_000_000; // a fixed "now", epoch ms
const HOUR_S: i64 = 3_600;
const TTL: Duration = Duration::from_secs(24 * 3600);

async fn chat_lifecycle(store: Arc<dyn SessionStore>) {
    let k = key(1);
    let lease = match store
        .try_lease(&k, Duration::from_secs(30), T0)
        .await
        .unwrap()
    {
        LeaseAttempt::Granted(lease) => lease,
        other => panic!("expected a lease, got {other:?}"),
    };
    assert!(matches!(
        store
            .try_lease(&k, Duration::from_secs(30), T0 + 1)
            .await
            .unwrap(),
        LeaseAttempt::Busy { .. }
    ));
    let stored = store
        .complete_creation(
            &lease.lease_id,
            chat(&k, "contact-1", T0 / 1000 + HOUR_S),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(stored.created_at_ms, T0);
    // The lease is gone and the chat is what callers get now.
    match store
        .try_lease(&k, Duration::from_secs(30), T0 + 2)
        .await
        .unwrap()
    {
        LeaseAttempt::Exists(chat) => assert_eq!(chat.contact_id, "contact-1"),
        other => panic!("expected the chat, got {other:?}"),
    }
    assert_eq!(store.chat_by_key(&k, T0).await.unwrap().unwrap(), stored);
    assert_eq!(
        store
            .chat_by_contact("contact-1", T0)
            .await
            .unwrap()
            .unwrap()
            .key,
        k
    );

    // A transfer changes the contact id; both ids still find the chat.
    let mut transferred = stored.clone();
    transferred.contact_id = "contact-2".into();
    let updated = store
        .update_chat(transferred.clone(), T0 + 10)
        .await
        .unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.created_at_ms, T0);
    assert_eq!(
        store
            .chat_by_contact("contact-2", T0)
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );
    assert_eq!(
        store
            .chat_by_contact("contact-1", T0)
            .await
            .unwrap()
            .unwrap()
            .contact_id,
        "contact-2"
    );
    // A writer holding the old version loses.
    assert!(matches!(
        store.update_chat(transferred, T0 + 20).await,
        Err(SessionError::Conflict(_))
    ));

    assert!(
        store.end_chat("contact-1", T0).await.unwrap(),
        "ends by initial contact id"
    );
    assert!(
        !store.end_chat("contact-2", T0).await.unwrap(),
        "already ended"
    );
    assert!(store.chat_by_key(&k, T0).await.unwrap().is_none());
    assert!(matches!(
        store.update_chat(updated, T0).await,
        Err(SessionError::NotFound(_))
    ));
}

async fn crashed_lease_holder(store: Arc<dyn SessionStore>) {
    let k = key(2);
    let LeaseAttempt::Granted(first) = store
        .try_lease(&k, Duration::from_secs(30), T0)
        .await
        .unwrap()
    else {
        panic!("first caller gets the lease")
    };
    assert!(
        matches!(store.try_lease(&k, Duration::from_secs(30), T0 + 29_000).await.unwrap(), LeaseAttempt::Busy { until_ms } if until_ms == T0 + 30_000)
    );
    // The holder crashed: after its lease expires the next caller takes over.
    let LeaseAttempt::Granted(second) = store
        .try_lease(&k, Duration::from_secs(30), T0 + 31_000)
        .await
        .unwrap()
    else {
        panic!("expired lease is handed over")
    };
    assert_ne!(first.lease_id, second.lease_id);
    // The crashed holder waking up cannot store its chat over the new holder.
    let late = store
        .complete_creation(
            &first.lease_id,
            chat(&k, "late", T0 / 1000 + HOUR_S),
            T0 + 32_000,
        )
        .await;
    assert!(
        matches!(late, Err(SessionError::Precondition(_))),
        "{late:?}"
    );
    store
        .complete_creation(
            &second.lease_id,
            chat(&k, "winner", T0 / 1000 + HOUR_S),
            T0 + 33_000,
        )
        .await
        .unwrap();
    // A second completion finds the chat there.
    let again = store
        .complete_creation(
            &second.lease_id,
            chat(&k, "again", T0 / 1000 + HOUR_S),
            T0 + 34_000,
        )
        .await;
    assert!(matches!(again, Err(SessionError::Precondition(_))));
    assert_eq!(
        store
            .chat_by_key(&k, T0 + 35_000)
            .await
            .unwrap()
            .unwrap()
            .contact_id,
        "winner"
    );

    // Abandoning frees the lease at once.
    let k3 = key(3);
    let LeaseAttempt::Granted(lease) = store
        .try_lease(&k3, Duration::from_secs(30), T0)
        .await
        .unwrap()
    else {
        panic!()
    };
    store.abandon_creation(&k3, &lease.lease_id).await.unwrap();
    assert!(matches!(
        store
            .try_lease(&k3, Duration::from_secs(30), T0 + 1)
            .await
            .unwrap(),
        LeaseAttempt::Granted(_)
    ));
}

async fn chats_expire(store: Arc<dyn SessionStore>) {
    let k = key(4);
    let LeaseAttempt::Granted(lease) = store
        .try_lease(&k, Duration::from_secs(30), T0)
        .await
        .unwrap()
    else {
        panic!()
    };
    store
        .complete_creation(&lease.lease_id, chat(&k, "short", T0 / 1000 + 10), T0)
        .await
        .unwrap();
    assert!(store.chat_by_key(&k, T0 + 9_000).await.unwrap().is_some());
    assert!(
        store.chat_by_key(&k, T0 + 10_000).await.unwrap().is_none(),
        "expired chats are gone"
    );
    assert!(
        store
            .chat_by_contact("short", T0 + 11_000)
            .await
            .unwrap()
            .is_none()
    );
    // An expired chat does not block a new one.
    let LeaseAttempt::Granted(lease) = store
        .try_lease(&k, Duration::from_secs(30), T0 + 11_000)
        .await
        .unwrap()
    else {
        panic!("an expired chat counts as none")
    };
    store
        .complete_creation(
            &lease.lease_id,
            chat(&k, "fresh", T0 / 1000 + HOUR_S),
            T0 + 11_000,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .chat_by_key(&k, T0 + 12_000)
            .await
            .unwrap()
            .unwrap()
            .contact_id,
        "fresh"
    );
}

async fn claims(store: Arc<dyn SessionStore>) {
    let five_min = Duration::from_secs(300);
    let ClaimOutcome::Claimed { token } = store
        .claim(MessageOrigin::WhatsApp, "wamid.A", TTL, five_min, T0)
        .await
        .unwrap()
    else {
        panic!("first claim wins")
    };
    assert_eq!(
        store
            .claim(MessageOrigin::WhatsApp, "wamid.A", TTL, five_min, T0 + 1)
            .await
            .unwrap(),
        ClaimOutcome::InProgress
    );
    // The same id from the other origin is a different message.
    assert!(matches!(
        store
            .claim(MessageOrigin::Connect, "wamid.A", TTL, five_min, T0)
            .await
            .unwrap(),
        ClaimOutcome::Claimed { .. }
    ));
    assert!(matches!(
        store
            .complete_claim(MessageOrigin::WhatsApp, "wamid.A", "not-the-token", T0)
            .await,
        Err(SessionError::Precondition(_))
    ));
    store
        .complete_claim(MessageOrigin::WhatsApp, "wamid.A", &token, T0 + 2)
        .await
        .unwrap();
    assert_eq!(
        store
            .claim(MessageOrigin::WhatsApp, "wamid.A", TTL, five_min, T0 + 3)
            .await
            .unwrap(),
        ClaimOutcome::AlreadyCompleted
    );

    // Released after a failure: a retry may claim it.
    let ClaimOutcome::Claimed { token } = store
        .claim(MessageOrigin::WhatsApp, "wamid.B", TTL, five_min, T0)
        .await
        .unwrap()
    else {
        panic!()
    };
    store
        .release_claim(MessageOrigin::WhatsApp, "wamid.B", &token)
        .await
        .unwrap();
    assert!(matches!(
        store
            .claim(MessageOrigin::WhatsApp, "wamid.B", TTL, five_min, T0 + 1)
            .await
            .unwrap(),
        ClaimOutcome::Claimed { .. }
    ));

    // A crashed, never-completed attempt can be retried after the timeout.
    let ClaimOutcome::Claimed { token: stale } = store
        .claim(MessageOrigin::WhatsApp, "wamid.C", TTL, five_min, T0)
        .await
        .unwrap()
    else {
        panic!()
    };
    let ClaimOutcome::Claimed { token: retry } = store
        .claim(
            MessageOrigin::WhatsApp,
            "wamid.C",
            TTL,
            five_min,
            T0 + 301_000,
        )
        .await
        .unwrap()
    else {
        panic!("a stale in-progress claim is reclaimable")
    };
    assert!(matches!(
        store
            .complete_claim(MessageOrigin::WhatsApp, "wamid.C", &stale, T0)
            .await,
        Err(SessionError::Precondition(_))
    ));
    store
        .complete_claim(MessageOrigin::WhatsApp, "wamid.C", &retry, T0)
        .await
        .unwrap();

    // Claims are forgotten after their TTL.
    assert!(matches!(
        store
            .claim(
                MessageOrigin::WhatsApp,
                "wamid.A",
                TTL,
                five_min,
                T0 + 24 * 3_600_000 + 10
            )
            .await
            .unwrap(),
        ClaimOutcome::Claimed { .. }
    ));
}

fn message(id: &str, at: i64) -> PendingMessage {
    PendingMessage {
        message_id: id.into(),
        received_at_ms: at,
        payload: format!("payload of {id}").into_bytes(),
    }
}

async fn pending_buffer(store: Arc<dyn SessionStore>) {
    let k = key(5);
    assert_eq!(store.peek_pending(&k).await.unwrap().version, 0);
    for (i, id) in ["wamid.1", "wamid.2", "wamid.3"].iter().enumerate() {
        let state = store
            .append_pending(&k, message(id, T0 + i as i64), TTL, T0 + 100 * i as i64)
            .await
            .unwrap();
        assert_eq!(state.version, i as u64 + 1);
        assert_eq!(state.message_count, i as u32 + 1);
        assert_eq!(state.last_append_at_ms, T0 + 100 * i as i64);
    }
    // A redelivered webhook changes nothing.
    let state = store
        .append_pending(&k, message("wamid.2", T0), TTL, T0 + 500)
        .await
        .unwrap();
    assert_eq!(
        (state.version, state.message_count, state.last_append_at_ms),
        (3, 3, T0 + 200)
    );

    // Due after a quiet period.
    assert!(
        store
            .list_due(Duration::from_millis(1_000), 10, T0 + 1_000)
            .await
            .unwrap()
            .is_empty()
    );
    let due = store
        .list_due(Duration::from_millis(1_000), 10, T0 + 1_200)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].key, k);

    // A take with a stale version fails and leaves everything in place.
    assert!(matches!(
        store.take_pending(&k, 2).await,
        Err(SessionError::Conflict(_))
    ));
    let taken = store.take_pending(&k, 3).await.unwrap();
    let ids: Vec<_> = taken.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids, ["wamid.1", "wamid.2", "wamid.3"]);
    assert_eq!(taken[1].payload, b"payload of wamid.2");
    assert_eq!(store.peek_pending(&k).await.unwrap().version, 0);
    assert!(store.take_pending(&k, 0).await.unwrap().is_empty());
    assert!(
        store
            .list_due(Duration::ZERO, 10, T0 + 2_000)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn concurrent_claims_are_exclusive(store: Arc<dyn SessionStore>) {
    let tasks: Vec<_> = (0..1_000)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = format!("wamid.concurrent.{}", i % 100);
                store
                    .claim(
                        MessageOrigin::WhatsApp,
                        &id,
                        TTL,
                        Duration::from_secs(300),
                        T0,
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut claimed = 0;
    for task in tasks {
        if matches!(task.await.unwrap(), ClaimOutcome::Claimed { .. }) {
            claimed += 1;
        }
    }
    assert_eq!(claimed, 100, "each of 100 ids claimed exactly once");
}

async fn concurrent_appends_keep_order(store: Arc<dyn SessionStore>) {
    // Four customers, each with its own sender appending in order, all at
    // once; plus two senders racing on one more customer.
    let mut tasks = Vec::new();
    for customer in 0..4u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                store
                    .append_pending(
                        &key(100 + customer),
                        message(&format!("c{customer}-{i:02}"), T0 + i),
                        TTL,
                        T0 + i,
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for sender in 0..2 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                store
                    .append_pending(
                        &key(200),
                        message(&format!("s{sender}-{i:02}"), T0),
                        TTL,
                        T0,
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for customer in 0..4u32 {
        let k = key(100 + customer);
        let state = store.peek_pending(&k).await.unwrap();
        let taken = store.take_pending(&k, state.version).await.unwrap();
        let expected: Vec<String> = (0..25).map(|i| format!("c{customer}-{i:02}")).collect();
        assert_eq!(
            taken
                .iter()
                .map(|m| m.message_id.clone())
                .collect::<Vec<_>>(),
            expected
        );
    }
    let state = store.peek_pending(&key(200)).await.unwrap();
    let taken = store.take_pending(&key(200), state.version).await.unwrap();
    assert_eq!(taken.len(), 40, "nothing lost");
    for sender in 0..2 {
        let own: Vec<_> = taken
            .iter()
            .filter(|m| m.message_id.starts_with(&format!("s{sender}-")))
            .map(|m| m.message_id.clone())
            .collect();
        let mut sorted = own.clone();
        sorted.sort();
        assert_eq!(own, sorted, "each sender's messages keep their order");
    }
}

macro_rules! embedded_suite {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(embedded_store()).await;
                }
            )*
        }

        /// All scenarios on DynamoDB (moto), each on its own table; one moto
        /// for the lot, stopped at the end.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn dynamodb_backend_passes_the_suite() {
            let Some(moto) = start_moto() else { return };
            $(
                let store = dynamo_store(&moto, stringify!($scenario)).await;
                eprintln!("dynamodb: {}", stringify!($scenario));
                $scenario(Arc::new(store)).await;
            )*
        }
    };
}

embedded_suite!(
    chat_lifecycle,
    crashed_lease_holder,
    chats_expire,
    claims,
    pending_buffer,
    concurrent_claims_are_exclusive,
    concurrent_appends_keep_order,
);

/// DynamoDB TTL only acts on Number attributes (the AWS sample stored a
/// String, and nothing ever expired). moto never deletes expired items, so
/// check what is stored; real expiry is covered by `chats_expire` above.
#[tokio::test]
async fn dynamodb_stores_expiry_as_a_number() {
    let Some(moto) = start_moto() else { return };
    let store = dynamo_store(&moto, "ttl-check").await;
    let k = key(9);
    let LeaseAttempt::Granted(lease) = store
        .try_lease(&k, Duration::from_secs(30), T0)
        .await
        .unwrap()
    else {
        panic!()
    };
    store
        .complete_creation(&lease.lease_id, chat(&k, "c", T0 / 1000 + HOUR_S), T0)
        .await
        .unwrap();
    let item = store.raw_chat_item(&k).await.unwrap().unwrap();
    assert_eq!(
        item.get("expiresAt"),
        Some(&aws_sdk_dynamodb::types::AttributeValue::N(
            (T0 / 1000 + HOUR_S).to_string()
        ))
    );
}

#[tokio::test]
async fn embedded_sweep_deletes_expired_rows() {
    let store = embedded_store();
    let k = key(10);
    let LeaseAttempt::Granted(lease) = store
        .try_lease(&k, Duration::from_secs(30), T0)
        .await
        .unwrap()
    else {
        panic!()
    };
    store
        .complete_creation(&lease.lease_id, chat(&k, "c", T0 / 1000 + 10), T0)
        .await
        .unwrap();
    store
        .claim(
            MessageOrigin::WhatsApp,
            "wamid.x",
            Duration::from_secs(5),
            Duration::from_secs(5),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(store.sweep(T0 + 1_000).await.unwrap(), 0);
    assert_eq!(
        store.sweep(T0 + 11_000).await.unwrap(),
        2,
        "the chat and the claim"
    );
}
