//! Shared test plumbing: the backends under test, and a moto server for the
//! DynamoDB backend (started on a free loopback port, stopped on drop).
#![allow(dead_code)]

use std::sync::Arc;

use parley_session::{
    dynamo::DynamoStore, embedded::EmbeddedStore, model::ActiveChat, model::ConversationKey,
};

pub use parley_sandbox::moto::{Moto, start as start_moto};

/// A DynamoDB store on a fresh table in `moto`, through the real SDK client.
pub async fn dynamo_store(moto: &Moto, table: &str) -> DynamoStore {
    let config = parley_sandbox::moto::aws_config(&moto.endpoint).await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), table);
    store.create_table().await.expect("table created");
    store
}

/// A fresh in-memory embedded store.
pub fn embedded_store() -> Arc<EmbeddedStore> {
    Arc::new(EmbeddedStore::in_memory().unwrap())
}

/// A conversation for customer number `n`.
pub fn key(n: u32) -> ConversationKey {
    ConversationKey::parse(
        "phone-number-id-0123456789abcdef0123456789abcdef",
        &format!("1415555{n:04}"),
    )
    .unwrap()
}

/// A chat as the gateway would store it after StartChatContact.
pub fn chat(key: &ConversationKey, contact: &str, expires_at_s: i64) -> ActiveChat {
    ActiveChat {
        key: key.clone(),
        contact_id: contact.into(),
        initial_contact_id: contact.into(),
        participant_id: "participant-1".into(),
        participant_token: "participant-token".into(),
        connection_token: "connection-token".into(),
        connection_expires_at_ms: 1_000,
        customer_display_name: "Kike".into(),
        channel: "WhatsApp".into(),
        created_at_ms: 0,
        updated_at_ms: 0,
        expires_at_s,
        version: 0,
        last_customer_message_id: String::new(),
        last_customer_message_at_ms: 0,
        ended_at_ms: 0,
        customer_phone: key.customer().phone().unwrap_or_default().into(),
        client_token: String::new(),
    }
}
