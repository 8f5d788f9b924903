//! One behavioural suite, run against every backend: the embedded store
//! always, DynamoDB through the real SDK against moto server.

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use parley_session::{
    error::SessionError,
    model::{
        AppendClaim, AppendOptions, ChatLookup, ClaimOutcome, ClaimRef, Direction, LeaseAttempt,
        LinkDirection, MessageLink, MessageOrigin, PendingMessage,
    },
    pending::MAX_BUFFER_BYTES,
    store::SessionStore,
};

const T0: i64 = 1_800_000_000_000; // a fixed "now", epoch ms
const HOUR_S: i64 = 3_600;
const TTL: Duration = Duration::from_secs(24 * 3600);
const LEASE: Duration = Duration::from_secs(30);
const FIVE_MIN: Duration = Duration::from_secs(300);
const GRACE: Duration = Duration::from_secs(3600);

async fn granted(
    store: &dyn SessionStore,
    k: &parley_session::model::ConversationKey,
    now: i64,
) -> parley_session::model::Lease {
    match store.try_lease(k, LEASE, now).await.unwrap() {
        LeaseAttempt::Granted(lease) => lease,
        other => panic!("expected a lease, got {other:?}"),
    }
}

async fn chat_lifecycle(store: Arc<dyn SessionStore>) {
    let k = key(1);
    let lease = granted(&*store, &k, T0).await;
    assert!(!lease.client_token.is_empty());
    assert!(matches!(
        store.try_lease(&k, LEASE, T0 + 1).await.unwrap(),
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
    assert_eq!(
        stored.client_token, lease.client_token,
        "the chat keeps its client token"
    );
    // The lease is gone and the chat is what callers get now.
    match store.try_lease(&k, LEASE, T0 + 2).await.unwrap() {
        LeaseAttempt::Exists(chat) => assert_eq!(chat.contact_id, "contact-1"),
        other => panic!("expected the chat, got {other:?}"),
    }
    assert_eq!(store.chat_by_key(&k, T0).await.unwrap().unwrap(), stored);
    assert!(matches!(
        store.chat_by_contact("contact-1", T0).await.unwrap(),
        ChatLookup::Active(chat) if chat.key == k
    ));

    // A transfer changes the contact id; both ids still find the chat.
    let mut transferred = stored.clone();
    transferred.contact_id = "contact-2".into();
    let updated = store
        .update_chat(transferred.clone(), T0 + 10)
        .await
        .unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.created_at_ms, T0);
    for id in ["contact-1", "contact-2"] {
        assert!(
            matches!(store.chat_by_contact(id, T0).await.unwrap(), ChatLookup::Active(c) if c.contact_id == "contact-2"),
            "{id}"
        );
    }
    // A writer holding the old version loses.
    assert!(matches!(
        store.update_chat(transferred, T0 + 20).await,
        Err(SessionError::Conflict(_))
    ));

    // Ending with a stale version is refused; with the right one it ends.
    assert!(matches!(
        store.end_chat(&k, "contact-1", 1, GRACE, T0 + 30).await,
        Err(SessionError::Conflict(_))
    ));
    let ended = store
        .end_chat(&k, "contact-1", 2, GRACE, T0 + 30)
        .await
        .unwrap();
    assert!(ended.ended, "ends by initial contact id");
    let tombstone = ended.chat.unwrap();
    assert_eq!(tombstone.ended_at_ms, T0 + 30);
    assert!(tombstone.version > 2, "versions only go up");
    // Ending again returns the tombstone, without ending anything.
    let again = store
        .end_chat(&k, "contact-2", 0, GRACE, T0 + 40)
        .await
        .unwrap();
    assert!(!again.ended);
    assert_eq!(
        again.chat.map(|c| c.contact_id),
        Some("contact-2".to_owned())
    );
    assert!(store.chat_by_key(&k, T0 + 50).await.unwrap().is_none());
    // Late agent messages can still find the ended chat, within the grace.
    for id in ["contact-1", "contact-2"] {
        assert!(matches!(
            store.chat_by_contact(id, T0 + 60).await.unwrap(),
            ChatLookup::Ended(c) if c.ended_at_ms == T0 + 30
        ));
    }
    assert_eq!(
        store
            .chat_by_contact("contact-2", T0 + 30 + 3_600_000 + 2_000)
            .await
            .unwrap(),
        ChatLookup::Unknown,
        "the tombstone goes after its grace"
    );
    assert_eq!(
        store.chat_by_contact("never-seen", T0).await.unwrap(),
        ChatLookup::Unknown
    );
    assert!(matches!(
        store.update_chat(updated, T0 + 70).await,
        Err(SessionError::NotFound(_))
    ));

    // The customer writes again: a new chat, with a new client token (the
    // old one would make Connect answer with the ended contact).
    let next = granted(&*store, &k, T0 + 80).await;
    assert_ne!(next.client_token, lease.client_token);
    store
        .complete_creation(
            &next.lease_id,
            chat(&k, "contact-3", T0 / 1000 + HOUR_S),
            T0 + 80,
        )
        .await
        .unwrap();
    assert!(matches!(
        store.chat_by_contact("contact-1", T0 + 90).await.unwrap(),
        ChatLookup::Ended(_)
    ));
}

/// The DynamoDB backend once deleted by conversation without re-checking
/// the contact id: a late `chat.ended` of an old chat ended the new one.
async fn ending_an_old_chat_leaves_the_new_one(store: Arc<dyn SessionStore>) {
    let k = key(11);
    let lease = granted(&*store, &k, T0).await;
    store
        .complete_creation(&lease.lease_id, chat(&k, "old", T0 / 1000 + HOUR_S), T0)
        .await
        .unwrap();
    assert!(
        store
            .end_chat(&k, "old", 0, GRACE, T0 + 1)
            .await
            .unwrap()
            .ended
    );
    let lease = granted(&*store, &k, T0 + 2).await;
    store
        .complete_creation(&lease.lease_id, chat(&k, "new", T0 / 1000 + HOUR_S), T0 + 2)
        .await
        .unwrap();
    // The old chat's end arrives again (SNS redelivery).
    let outcome = store.end_chat(&k, "old", 0, GRACE, T0 + 3).await.unwrap();
    assert!(!outcome.ended);
    assert_eq!(
        store
            .chat_by_key(&k, T0 + 4)
            .await
            .unwrap()
            .unwrap()
            .contact_id,
        "new",
        "the new chat is untouched"
    );
    // An id that never belonged to this conversation ends nothing.
    let unknown = store
        .end_chat(&k, "someone-else", 0, GRACE, T0 + 5)
        .await
        .unwrap();
    assert!(!unknown.ended && unknown.chat.is_none());
    assert!(store.chat_by_key(&k, T0 + 6).await.unwrap().is_some());
}

async fn crashed_lease_holder_keeps_the_client_token(store: Arc<dyn SessionStore>) {
    let k = key(2);
    let first = granted(&*store, &k, T0).await;
    assert!(
        matches!(store.try_lease(&k, LEASE, T0 + 29_000).await.unwrap(), LeaseAttempt::Busy { until_ms } if until_ms == T0 + 30_000)
    );
    // The holder crashed (perhaps after Connect opened the chat): after its
    // lease expires the next caller takes over with the same client token,
    // so its StartChatContact returns the same contact.
    let second = granted(&*store, &k, T0 + 31_000).await;
    assert_ne!(first.lease_id, second.lease_id);
    assert_eq!(first.client_token, second.client_token);
    // The crashed holder waking up cannot store its chat over the new holder.
    let late = store
        .complete_creation(
            &first.lease_id,
            chat(&k, "late", T0 / 1000 + HOUR_S),
            T0 + 32_000,
        )
        .await;
    assert!(matches!(late, Err(SessionError::LeaseLost(_))), "{late:?}");
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
    assert!(matches!(again, Err(SessionError::LeaseLost(_))));
    assert_eq!(
        store
            .chat_by_key(&k, T0 + 35_000)
            .await
            .unwrap()
            .unwrap()
            .contact_id,
        "winner"
    );

    // Abandoning frees the lease at once, and keeps the client token (the
    // failed StartChat may have opened the chat after all).
    let k3 = key(3);
    let lease = granted(&*store, &k3, T0).await;
    store
        .abandon_creation(&k3, &lease.lease_id, false)
        .await
        .unwrap();
    let next = granted(&*store, &k3, T0 + 1).await;
    assert_eq!(next.client_token, lease.client_token);

    // …unless the caller stopped the contact it opened: then the token must
    // not be reused (Connect would answer with the stopped contact).
    let k4 = key(4);
    let stopped = granted(&*store, &k4, T0).await;
    store
        .abandon_creation(&k4, &stopped.lease_id, true)
        .await
        .unwrap();
    let fresh = granted(&*store, &k4, T0 + 1).await;
    assert_ne!(fresh.client_token, stopped.client_token);
    // Abandoning the old lease again (a retried call) leaves the new one be.
    store
        .abandon_creation(&k4, &stopped.lease_id, true)
        .await
        .unwrap();
    assert!(matches!(
        store.try_lease(&k4, LEASE, T0 + 2).await.unwrap(),
        LeaseAttempt::Busy { .. }
    ));

    // A lease can be extended while StartChat runs long, only by its holder.
    let until = store
        .extend_creation(&k3, &next.lease_id, Duration::from_secs(120), T0 + 2)
        .await
        .unwrap();
    assert_eq!(until, T0 + 2 + 120_000);
    assert!(matches!(
        store.try_lease(&k3, LEASE, T0 + 60_000).await.unwrap(),
        LeaseAttempt::Busy { .. }
    ));
    assert!(matches!(
        store
            .extend_creation(&k3, &lease.lease_id, Duration::from_secs(1), T0 + 3)
            .await,
        Err(SessionError::LeaseLost(_))
    ));
}

async fn chats_expire(store: Arc<dyn SessionStore>) {
    let k = key(4);
    let lease = granted(&*store, &k, T0).await;
    store
        .complete_creation(&lease.lease_id, chat(&k, "short", T0 / 1000 + 10), T0)
        .await
        .unwrap();
    assert!(store.chat_by_key(&k, T0 + 9_000).await.unwrap().is_some());
    assert!(
        store.chat_by_key(&k, T0 + 10_000).await.unwrap().is_none(),
        "expired chats are gone"
    );
    assert_eq!(
        store.chat_by_contact("short", T0 + 11_000).await.unwrap(),
        ChatLookup::Unknown
    );
    // An expired chat does not block a new one.
    let lease = granted(&*store, &k, T0 + 11_000).await;
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

async fn customer_activity_only_moves_forward(store: Arc<dyn SessionStore>) {
    let k = key(12);
    assert!(matches!(
        store.record_customer_activity(&k, "wamid.0", T0, T0).await,
        Err(SessionError::NotFound(_))
    ));
    let lease = granted(&*store, &k, T0).await;
    let stored = store
        .complete_creation(&lease.lease_id, chat(&k, "c", T0 / 1000 + HOUR_S), T0)
        .await
        .unwrap();
    let chat = store
        .record_customer_activity(&k, "wamid.2", T0 + 200, T0)
        .await
        .unwrap();
    assert_eq!(chat.last_customer_message_id, "wamid.2");
    // An older message arriving late does not move it back.
    let chat = store
        .record_customer_activity(&k, "wamid.1", T0 + 100, T0)
        .await
        .unwrap();
    assert_eq!(
        (
            chat.last_customer_message_id.as_str(),
            chat.last_customer_message_at_ms
        ),
        ("wamid.2", T0 + 200)
    );
    assert_eq!(
        chat.version, stored.version,
        "activity does not bump the version"
    );
    // A connection refresh written from an older copy keeps the activity.
    let mut refreshed = stored.clone();
    refreshed.connection_token = "fresh-token".into();
    let updated = store.update_chat(refreshed, T0 + 300).await.unwrap();
    assert_eq!(updated.connection_token, "fresh-token");
    let read = store.chat_by_key(&k, T0 + 300).await.unwrap().unwrap();
    assert_eq!(read.last_customer_message_id, "wamid.2");
    assert_eq!(read.connection_token, "fresh-token");
}

fn claim_ref(origin: MessageOrigin, id: &str, token: &str) -> ClaimRef {
    ClaimRef {
        origin,
        message_id: id.into(),
        token: token.into(),
    }
}

async fn claims(store: Arc<dyn SessionStore>) {
    let wa = MessageOrigin::WhatsApp;
    let ClaimOutcome::Claimed { token } =
        store.claim(wa, "wamid.A", TTL, FIVE_MIN, T0).await.unwrap()
    else {
        panic!("first claim wins")
    };
    assert_eq!(
        store
            .claim(wa, "wamid.A", TTL, FIVE_MIN, T0 + 1)
            .await
            .unwrap(),
        ClaimOutcome::InProgress {
            retry_after: Duration::from_millis(299_999)
        }
    );
    // The same id from another origin is a different message.
    assert!(matches!(
        store
            .claim(MessageOrigin::Connect, "wamid.A", TTL, FIVE_MIN, T0)
            .await
            .unwrap(),
        ClaimOutcome::Claimed { .. }
    ));
    assert!(matches!(
        store
            .complete_claim(&claim_ref(wa, "wamid.A", "not-the-token"), "", T0)
            .await,
        Err(SessionError::LeaseLost(_))
    ));
    store
        .complete_claim(&claim_ref(wa, "wamid.A", &token), "connect-msg-9", T0 + 2)
        .await
        .unwrap();
    assert_eq!(
        store
            .claim(wa, "wamid.A", TTL, FIVE_MIN, T0 + 3)
            .await
            .unwrap(),
        ClaimOutcome::AlreadyCompleted {
            result: "connect-msg-9".into()
        },
        "a later claimer learns what came of it"
    );

    // Released after a failure: a retry may claim it.
    let ClaimOutcome::Claimed { token } =
        store.claim(wa, "wamid.B", TTL, FIVE_MIN, T0).await.unwrap()
    else {
        panic!()
    };
    store
        .release_claim(&claim_ref(wa, "wamid.B", &token))
        .await
        .unwrap();
    assert!(matches!(
        store
            .claim(wa, "wamid.B", TTL, FIVE_MIN, T0 + 1)
            .await
            .unwrap(),
        ClaimOutcome::Claimed { .. }
    ));

    // A crashed, never-completed attempt can be retried after the timeout.
    let ClaimOutcome::Claimed { token: stale } =
        store.claim(wa, "wamid.C", TTL, FIVE_MIN, T0).await.unwrap()
    else {
        panic!()
    };
    let ClaimOutcome::Claimed { token: retry } = store
        .claim(wa, "wamid.C", TTL, FIVE_MIN, T0 + 301_000)
        .await
        .unwrap()
    else {
        panic!("a stale in-progress claim is reclaimable")
    };
    assert!(matches!(
        store
            .complete_claim(&claim_ref(wa, "wamid.C", &stale), "", T0)
            .await,
        Err(SessionError::LeaseLost(_))
    ));
    assert!(matches!(
        store
            .extend_claim(&claim_ref(wa, "wamid.C", &stale), FIVE_MIN, T0 + 301_001)
            .await,
        Err(SessionError::LeaseLost(_))
    ));
    store
        .complete_claim(&claim_ref(wa, "wamid.C", &retry), "", T0)
        .await
        .unwrap();

    // Long work extends its claim and is not taken over.
    let ClaimOutcome::Claimed { token: long } =
        store.claim(wa, "wamid.D", TTL, FIVE_MIN, T0).await.unwrap()
    else {
        panic!()
    };
    store
        .extend_claim(
            &claim_ref(wa, "wamid.D", &long),
            Duration::from_secs(600),
            T0 + 200_000,
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .claim(wa, "wamid.D", TTL, FIVE_MIN, T0 + 400_000)
            .await
            .unwrap(),
        ClaimOutcome::InProgress { .. }
    ));

    // Claims are forgotten after their TTL.
    assert!(matches!(
        store
            .claim(wa, "wamid.A", TTL, FIVE_MIN, T0 + 24 * 3_600_000 + 10)
            .await
            .unwrap(),
        ClaimOutcome::Claimed { .. }
    ));
}

fn link(wamids: &[&str], connect: &str, direction: LinkDirection) -> MessageLink {
    MessageLink {
        whatsapp_message_ids: wamids.iter().map(|s| s.to_string()).collect(),
        connect_message_id: connect.into(),
        direction,
        key: key(13),
        contact_id: "contact-13".into(),
        created_at_ms: 0,
        excerpt: "Hello there".into(),
        kind: "text".into(),
        interactive_template: String::new(),
    }
}

async fn message_links(store: Arc<dyn SessionStore>) {
    let week = Duration::from_secs(7 * 24 * 3600);
    // A merged burst: two WhatsApp messages became one Connect message.
    store
        .link_messages(
            vec![link(
                &["wamid.1", "wamid.2"],
                "cm-1",
                LinkDirection::ToAgent,
            )],
            week,
            T0,
        )
        .await
        .unwrap();
    let by_wa = store
        .message_link(MessageOrigin::WhatsApp, "wamid.2", T0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_wa.connect_message_id, "cm-1");
    assert_eq!(by_wa.key, key(13));
    assert_eq!(by_wa.contact_id, "contact-13");
    assert_eq!(by_wa.excerpt, "Hello there");
    assert_eq!(by_wa.direction, LinkDirection::ToAgent);
    // A reply split into parts, linked part by part, lists them all.
    store
        .link_messages(
            vec![link(&["wamid.a"], "cm-2", LinkDirection::ToCustomer)],
            week,
            T0,
        )
        .await
        .unwrap();
    store
        .link_messages(
            vec![link(&["wamid.b"], "cm-2", LinkDirection::ToCustomer)],
            week,
            T0,
        )
        .await
        .unwrap();
    let mut parts = store
        .message_link(MessageOrigin::Connect, "cm-2", T0)
        .await
        .unwrap()
        .unwrap()
        .whatsapp_message_ids;
    parts.sort();
    assert_eq!(parts, ["wamid.a", "wamid.b"]);
    assert!(
        store
            .message_link(MessageOrigin::WhatsApp, "wamid.unknown", T0)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .message_link(
                MessageOrigin::Connect,
                "cm-1",
                T0 + week.as_millis() as i64 + 1
            )
            .await
            .unwrap()
            .is_none(),
        "links expire"
    );
}

fn message(id: &str, at: i64) -> PendingMessage {
    PendingMessage {
        message_id: id.into(),
        received_at_ms: at,
        payload: format!("payload of {id}").into_bytes(),
        appended_at_ms: 0,
    }
}

fn now_due() -> AppendOptions {
    AppendOptions::default()
}

fn ids(messages: &[PendingMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.message_id.as_str()).collect()
}

async fn append(
    store: &dyn SessionStore,
    k: &parley_session::model::ConversationKey,
    id: &str,
    options: AppendOptions,
    now: i64,
) {
    store
        .append_pending(
            k,
            Direction::Inbound,
            message(id, now),
            options,
            AppendClaim::None,
            TTL,
            now,
        )
        .await
        .unwrap();
}

/// The buffer take is a lease: nothing is deleted before the flush is
/// acknowledged, so a taker that dies loses nothing.
async fn pending_two_phase_take(store: Arc<dyn SessionStore>) {
    let k = key(5);
    let inbound = Direction::Inbound;
    assert_eq!(
        store.peek_pending(&k, inbound, T0).await.unwrap().version,
        0
    );
    for (i, id) in ["wamid.1", "wamid.2", "wamid.3"].iter().enumerate() {
        let state = store
            .append_pending(
                &k,
                inbound,
                message(id, T0),
                now_due(),
                AppendClaim::None,
                TTL,
                T0 + 100 * i as i64,
            )
            .await
            .unwrap();
        assert_eq!(state.version, i as u64 + 1);
        assert_eq!(state.message_count, i as u32 + 1);
        assert_eq!(state.last_append_at_ms, T0 + 100 * i as i64);
        assert_eq!(state.first_append_at_ms, T0);
    }
    // A redelivered webhook changes nothing.
    let state = store
        .append_pending(
            &k,
            inbound,
            message("wamid.2", T0),
            now_due(),
            AppendClaim::None,
            TTL,
            T0 + 500,
        )
        .await
        .unwrap();
    assert_eq!((state.version, state.message_count), (3, 3));
    assert!(state.total_bytes > 0);

    // Take; the taker "dies" (never acks).
    let first = store
        .take_pending(&k, inbound, Duration::from_secs(10), 0, 0, T0 + 1_000)
        .await
        .unwrap();
    assert_eq!(ids(&first.messages), ["wamid.1", "wamid.2", "wamid.3"]);
    assert_eq!(first.messages[1].payload, b"payload of wamid.2");
    assert!(!first.take_token.is_empty() && !first.batch_id.is_empty());
    assert_eq!(first.lease_expires_at_ms, T0 + 11_000);
    // Meanwhile nobody else can take this buffer, and it is not listed due.
    let busy = store
        .take_pending(&k, inbound, Duration::from_secs(10), 0, 0, T0 + 2_000)
        .await;
    assert!(
        matches!(busy, Err(SessionError::Busy { retry_after, .. }) if retry_after == Duration::from_secs(9)),
        "{busy:?}"
    );
    assert!(
        store
            .list_due(inbound, 10, T0 + 2_000)
            .await
            .unwrap()
            .is_empty()
    );
    // A message arriving meanwhile joins the buffer behind the batch.
    store
        .append_pending(
            &k,
            inbound,
            message("wamid.4", T0),
            now_due(),
            AppendClaim::None,
            TTL,
            T0 + 3_000,
        )
        .await
        .unwrap();
    // The lease expires: the buffer is due again and the same batch is
    // handed out again — same id, same messages, the new one not joined
    // (so idempotency keys derived from the batch repeat exactly).
    let due = store.list_due(inbound, 10, T0 + 11_001).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].key, k);
    let second = store
        .take_pending(&k, inbound, Duration::from_secs(10), 0, 0, T0 + 11_001)
        .await
        .unwrap();
    assert_eq!(ids(&second.messages), ["wamid.1", "wamid.2", "wamid.3"]);
    assert_eq!(second.batch_id, first.batch_id);
    assert_eq!(second.state.attempts, 2);
    // The dead taker's token no longer acks anything.
    assert!(matches!(
        store
            .ack_pending(&k, inbound, &first.take_token, T0 + 11_002)
            .await,
        Err(SessionError::LeaseLost(_))
    ));
    // Release (a failed delivery) with a backoff: due again after it.
    let released = store
        .release_pending(
            &k,
            inbound,
            &second.take_token,
            Duration::from_secs(5),
            T0 + 12_000,
        )
        .await
        .unwrap();
    assert_eq!(released.due_at_ms, T0 + 17_000);
    assert!(
        store
            .list_due(inbound, 10, T0 + 16_999)
            .await
            .unwrap()
            .is_empty()
    );
    let third = store
        .take_pending(&k, inbound, Duration::from_secs(10), 2, 0, T0 + 17_000)
        .await
        .unwrap();
    assert_eq!(
        ids(&third.messages),
        ["wamid.1", "wamid.2", "wamid.3"],
        "a given-back batch comes back whole, whatever max_messages says"
    );
    assert_eq!(third.batch_id, first.batch_id);
    let acked = store
        .ack_pending(&k, inbound, &third.take_token, T0 + 17_001)
        .await
        .unwrap();
    assert_eq!(acked.message_count, 1);
    assert_eq!(acked.attempts, 0);
    let rest = store
        .take_pending(&k, inbound, Duration::from_secs(10), 0, 0, T0 + 17_002)
        .await
        .unwrap();
    assert_eq!(ids(&rest.messages), ["wamid.4"]);
    assert_ne!(rest.batch_id, first.batch_id);
    let emptied = store
        .ack_pending(&k, inbound, &rest.take_token, T0 + 17_003)
        .await
        .unwrap();
    assert_eq!(emptied.message_count, 0);
    // Versions only go up, also across an emptied buffer.
    let version = emptied.version;
    assert!(version > 6);
    let empty = store
        .take_pending(&k, inbound, Duration::from_secs(10), 0, 0, T0 + 17_004)
        .await
        .unwrap();
    assert!(empty.messages.is_empty() && empty.take_token.is_empty());
    let after = store
        .append_pending(
            &k,
            inbound,
            message("wamid.5", T0),
            now_due(),
            AppendClaim::None,
            TTL,
            T0 + 17_005,
        )
        .await
        .unwrap();
    assert_eq!(after.version, version + 1);
    // A take that must see an unchanged buffer refuses a changed one.
    assert!(matches!(
        store
            .take_pending(&k, inbound, LEASE, 0, version, T0 + 17_006)
            .await,
        Err(SessionError::Conflict(_))
    ));
    // Extending keeps a long batch out.
    let long = store
        .take_pending(&k, inbound, Duration::from_secs(1), 0, 0, T0 + 20_000)
        .await
        .unwrap();
    store
        .extend_batch(
            &k,
            inbound,
            &long.take_token,
            Duration::from_secs(600),
            T0 + 20_500,
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .take_pending(&k, inbound, LEASE, 0, 0, T0 + 300_000)
            .await,
        Err(SessionError::Busy { .. })
    ));
}

async fn pending_due_times_and_directions(store: Arc<dyn SessionStore>) {
    let k = key(6);
    let debounce = AppendOptions {
        flush_delay: Duration::from_secs(2),
        max_wait: Duration::from_secs(5),
    };
    append(&*store, &k, "a", debounce, T0).await;
    append(&*store, &k, "b", debounce, T0 + 1_500).await;
    assert!(
        store
            .list_due(Direction::Inbound, 10, T0 + 3_499)
            .await
            .unwrap()
            .is_empty()
    );
    let due = store
        .list_due(Direction::Inbound, 10, T0 + 3_500)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].due_at_ms, T0 + 3_500);
    // A customer who keeps typing is flushed at the maximum wait anyway.
    for at in [3_000, 4_500] {
        append(&*store, &k, &format!("m{at}"), debounce, T0 + at).await;
    }
    let state = store
        .peek_pending(&k, Direction::Inbound, T0 + 4_600)
        .await
        .unwrap();
    assert_eq!(state.due_at_ms, T0 + 5_000, "capped at 5 s after the first");
    // Another business number can have other settings (per number, per append).
    let other = key(7);
    store
        .append_pending(
            &other,
            Direction::Inbound,
            message("x", T0),
            AppendOptions {
                flush_delay: Duration::from_millis(500),
                max_wait: Duration::ZERO,
            },
            AppendClaim::None,
            TTL,
            T0,
        )
        .await
        .unwrap();
    let due: Vec<_> = store
        .list_due(Direction::Inbound, 10, T0 + 6_000)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.key, s.due_at_ms))
        .collect();
    assert_eq!(
        due,
        [(other.clone(), T0 + 500), (k.clone(), T0 + 5_000)],
        "soonest first"
    );

    // The outbound buffer of the same conversation is separate.
    store
        .append_pending(
            &k,
            Direction::Outbound,
            message("agent-1", T0),
            now_due(),
            AppendClaim::None,
            TTL,
            T0,
        )
        .await
        .unwrap();
    let out = store
        .take_pending(&k, Direction::Outbound, LEASE, 0, 0, T0 + 10)
        .await
        .unwrap();
    assert_eq!(ids(&out.messages), ["agent-1"]);
    assert_eq!(
        store
            .peek_pending(&k, Direction::Inbound, T0 + 10)
            .await
            .unwrap()
            .message_count,
        4,
        "taking outbound leaves the customer's burst alone"
    );
    let listed: Vec<_> = store
        .list_due(Direction::Outbound, 10, T0 + 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(
        listed,
        [k],
        "outbound lists only outbound buffers (leased ones once their lease ends)"
    );
}

/// A buffer never outgrows what one DynamoDB item holds: the append is
/// refused with LimitExceeded (not retried), and what is there stays.
async fn pending_size_cap(store: Arc<dyn SessionStore>) {
    let k = key(8);
    let big = |id: &str| PendingMessage {
        message_id: id.into(),
        received_at_ms: T0,
        payload: vec![b'x'; 150_000],
        appended_at_ms: 0,
    };
    for id in ["big-1", "big-2"] {
        store
            .append_pending(
                &k,
                Direction::Inbound,
                big(id),
                now_due(),
                AppendClaim::None,
                TTL,
                T0,
            )
            .await
            .unwrap();
    }
    let refused = store
        .append_pending(
            &k,
            Direction::Inbound,
            big("big-3"),
            now_due(),
            AppendClaim::None,
            TTL,
            T0,
        )
        .await;
    assert!(
        matches!(refused, Err(SessionError::LimitExceeded(_))),
        "{refused:?}"
    );
    let state = store
        .peek_pending(&k, Direction::Inbound, T0)
        .await
        .unwrap();
    assert_eq!(state.message_count, 2);
    assert!(state.total_bytes <= MAX_BUFFER_BYTES);
    // Flush, then the append fits.
    let batch = store
        .take_pending(&k, Direction::Inbound, LEASE, 0, 0, T0)
        .await
        .unwrap();
    store
        .ack_pending(&k, Direction::Inbound, &batch.take_token, T0)
        .await
        .unwrap();
    store
        .append_pending(
            &k,
            Direction::Inbound,
            big("big-3"),
            now_due(),
            AppendClaim::None,
            TTL,
            T0,
        )
        .await
        .unwrap();
}

/// Append and claim completion are one transaction: a crash cannot leave a
/// claimed message outside the buffer or a buffered message with an open
/// claim; a claim that was taken over appends nothing.
async fn append_once_dedupes_in_one_transaction(store: Arc<dyn SessionStore>) {
    let k = key(11);
    let wa = MessageOrigin::WhatsApp;
    let once = || AppendClaim::Once {
        origin: wa,
        ttl: TTL,
    };
    store
        .append_pending(
            &k,
            Direction::Inbound,
            message("wamid.O1", T0),
            now_due(),
            once(),
            TTL,
            T0,
        )
        .await
        .unwrap();
    // The message is claimed and completed with the append.
    assert!(matches!(
        store
            .claim(wa, "wamid.O1", TTL, FIVE_MIN, T0 + 1)
            .await
            .unwrap(),
        ClaimOutcome::AlreadyCompleted { .. }
    ));
    // A redelivery, while waiting and after the batch was acked: a
    // duplicate, nothing appended.
    let again = store
        .append_pending(
            &k,
            Direction::Inbound,
            message("wamid.O1", T0),
            now_due(),
            once(),
            TTL,
            T0 + 2,
        )
        .await;
    assert!(
        matches!(again, Err(SessionError::Duplicate(_))),
        "{again:?}"
    );
    let batch = store
        .take_pending(&k, Direction::Inbound, LEASE, 0, 0, T0 + 3)
        .await
        .unwrap();
    store
        .ack_pending(&k, Direction::Inbound, &batch.take_token, T0 + 4)
        .await
        .unwrap();
    let after_ack = store
        .append_pending(
            &k,
            Direction::Inbound,
            message("wamid.O1", T0),
            now_due(),
            once(),
            TTL,
            T0 + 5,
        )
        .await;
    assert!(
        matches!(after_ack, Err(SessionError::Duplicate(_))),
        "{after_ack:?}"
    );
    assert_eq!(
        store
            .peek_pending(&k, Direction::Inbound, T0 + 6)
            .await
            .unwrap()
            .message_count,
        0
    );
    // A message claimed by someone else (in progress) is busy, not lost.
    let ClaimOutcome::Claimed { .. } = store
        .claim(wa, "wamid.O2", TTL, FIVE_MIN, T0)
        .await
        .unwrap()
    else {
        panic!()
    };
    let busy = store
        .append_pending(
            &k,
            Direction::Inbound,
            message("wamid.O2", T0),
            now_due(),
            once(),
            TTL,
            T0 + 7,
        )
        .await;
    assert!(matches!(busy, Err(SessionError::Busy { .. })), "{busy:?}");
    // A refused append (size cap) records nothing: the retry goes through.
    let huge = PendingMessage {
        payload: vec![b'x'; MAX_BUFFER_BYTES as usize + 1],
        ..message("wamid.O3", T0)
    };
    let refused = store
        .append_pending(&k, Direction::Inbound, huge, now_due(), once(), TTL, T0 + 8)
        .await;
    assert!(
        matches!(refused, Err(SessionError::LimitExceeded(_))),
        "{refused:?}"
    );
    store
        .append_pending(
            &k,
            Direction::Inbound,
            message("wamid.O3", T0),
            now_due(),
            once(),
            TTL,
            T0 + 9,
        )
        .await
        .unwrap();
}

async fn append_completes_the_claim_atomically(store: Arc<dyn SessionStore>) {
    let k = key(9);
    let wa = MessageOrigin::WhatsApp;
    let ClaimOutcome::Claimed { token } =
        store.claim(wa, "wamid.X", TTL, FIVE_MIN, T0).await.unwrap()
    else {
        panic!()
    };
    store
        .append_pending(
            &k,
            Direction::Inbound,
            message("wamid.X", T0),
            now_due(),
            AppendClaim::Complete(claim_ref(wa, "wamid.X", &token)),
            TTL,
            T0,
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .claim(wa, "wamid.X", TTL, FIVE_MIN, T0 + 1)
            .await
            .unwrap(),
        ClaimOutcome::AlreadyCompleted { .. }
    ));
    // A holder whose claim expired and was taken over appends nothing.
    let ClaimOutcome::Claimed { token: stale } =
        store.claim(wa, "wamid.Y", TTL, FIVE_MIN, T0).await.unwrap()
    else {
        panic!()
    };
    let ClaimOutcome::Claimed { token: fresh } = store
        .claim(wa, "wamid.Y", TTL, FIVE_MIN, T0 + 301_000)
        .await
        .unwrap()
    else {
        panic!()
    };
    let late = store
        .append_pending(
            &k,
            Direction::Inbound,
            message("wamid.Y", T0),
            now_due(),
            AppendClaim::Complete(claim_ref(wa, "wamid.Y", &stale)),
            TTL,
            T0 + 301_001,
        )
        .await;
    assert!(matches!(late, Err(SessionError::LeaseLost(_))), "{late:?}");
    assert_eq!(
        store
            .peek_pending(&k, Direction::Inbound, T0 + 301_002)
            .await
            .unwrap()
            .message_count,
        1,
        "the stale holder's append did not happen"
    );
    store
        .append_pending(
            &k,
            Direction::Inbound,
            message("wamid.Y", T0),
            now_due(),
            AppendClaim::Complete(claim_ref(wa, "wamid.Y", &fresh)),
            TTL,
            T0 + 301_003,
        )
        .await
        .unwrap();
    // A refused append (size cap) leaves the claim open, for a retry.
    let ClaimOutcome::Claimed { token: open } =
        store.claim(wa, "wamid.Z", TTL, FIVE_MIN, T0).await.unwrap()
    else {
        panic!()
    };
    let huge = PendingMessage {
        message_id: "wamid.Z".into(),
        received_at_ms: T0,
        payload: vec![0; 250_000],
        appended_at_ms: 0,
    };
    for filler in ["f1"] {
        store
            .append_pending(
                &k,
                Direction::Inbound,
                PendingMessage {
                    payload: vec![0; 200_000],
                    ..message(filler, T0)
                },
                now_due(),
                AppendClaim::None,
                TTL,
                T0,
            )
            .await
            .unwrap();
    }
    assert!(matches!(
        store
            .append_pending(
                &k,
                Direction::Inbound,
                huge,
                now_due(),
                AppendClaim::Complete(claim_ref(wa, "wamid.Z", &open)),
                TTL,
                T0 + 2
            )
            .await,
        Err(SessionError::LimitExceeded(_))
    ));
    assert!(matches!(
        store
            .claim(wa, "wamid.Z", TTL, FIVE_MIN, T0 + 3)
            .await
            .unwrap(),
        ClaimOutcome::InProgress { .. }
    ));
}

async fn concurrent_claims_are_exclusive(store: Arc<dyn SessionStore>) {
    let tasks: Vec<_> = (0..1_000)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = format!("wamid.concurrent.{}", i % 100);
                store
                    .claim(MessageOrigin::WhatsApp, &id, TTL, FIVE_MIN, T0)
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

/// Two replicas racing to flush one buffer: exactly one gets the batch.
async fn concurrent_takes_are_exclusive(store: Arc<dyn SessionStore>) {
    let k = key(300);
    append(&*store, &k, "only", now_due(), T0).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, k) = (store.clone(), k.clone());
            tokio::spawn(async move {
                store
                    .take_pending(&k, Direction::Inbound, LEASE, 0, 0, T0 + 1)
                    .await
            })
        })
        .collect();
    let mut batches = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(batch) if !batch.messages.is_empty() => batches += 1,
            Ok(_) => panic!("an empty batch while a message waits"),
            Err(SessionError::Busy { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(batches, 1);
}

async fn concurrent_appends_keep_order(store: Arc<dyn SessionStore>) {
    // Four customers, each with its own sender appending in order, all at
    // once; plus two senders racing on one more customer.
    let mut tasks = Vec::new();
    for customer in 0..4u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                append(
                    &*store,
                    &key(100 + customer),
                    &format!("c{customer}-{i:02}"),
                    now_due(),
                    T0 + i,
                )
                .await;
            }
        }));
    }
    for sender in 0..2 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                append(
                    &*store,
                    &key(200),
                    &format!("s{sender}-{i:02}"),
                    now_due(),
                    T0,
                )
                .await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for customer in 0..4u32 {
        let batch = store
            .take_pending(
                &key(100 + customer),
                Direction::Inbound,
                LEASE,
                0,
                0,
                T0 + 100,
            )
            .await
            .unwrap();
        let expected: Vec<String> = (0..25).map(|i| format!("c{customer}-{i:02}")).collect();
        assert_eq!(ids(&batch.messages), expected);
    }
    let batch = store
        .take_pending(&key(200), Direction::Inbound, LEASE, 0, 0, T0 + 100)
        .await
        .unwrap();
    assert_eq!(batch.messages.len(), 40, "nothing lost");
    for sender in 0..2 {
        let own: Vec<_> = ids(&batch.messages)
            .into_iter()
            .filter(|id| id.starts_with(&format!("s{sender}-")))
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
    ending_an_old_chat_leaves_the_new_one,
    crashed_lease_holder_keeps_the_client_token,
    chats_expire,
    customer_activity_only_moves_forward,
    claims,
    message_links,
    pending_two_phase_take,
    pending_due_times_and_directions,
    pending_size_cap,
    append_completes_the_claim_atomically,
    append_once_dedupes_in_one_transaction,
    concurrent_claims_are_exclusive,
    concurrent_takes_are_exclusive,
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
    let lease = granted(&store, &k, T0).await;
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
    let lease = granted(&*store, &k, T0).await;
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
