//! Shared test plumbing: the backends under test, and a moto server for the
//! DynamoDB backend (started on a free loopback port, stopped on drop).
#![allow(dead_code)]

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use parley_session::{
    dynamo::DynamoStore, embedded::EmbeddedStore, model::ActiveChat, model::ConversationKey,
};

/// A running moto server.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PARLEY_MOTO_SERVER") {
        return Some(PathBuf::from(path));
    }
    let venv = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/parley-venv/bin/moto_server");
    if venv.exists() {
        return Some(venv);
    }
    Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .map(|_| PathBuf::from("moto_server"))
}

/// Starts moto, or returns `None` (panicking when `PARLEY_REQUIRE_MOTO=1`).
pub fn start_moto() -> Option<Moto> {
    let Some(binary) = moto_binary() else {
        assert!(
            std::env::var("PARLEY_REQUIRE_MOTO").as_deref() != Ok("1"),
            "moto_server is required (PARLEY_REQUIRE_MOTO=1) but not found"
        );
        eprintln!("skipping DynamoDB backend: moto_server not found (set PARLEY_MOTO_SERVER)");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "moto did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(moto)
}

/// A DynamoDB store on a fresh table in `moto`, through the real SDK client.
pub async fn dynamo_store(moto: &Moto, table: &str) -> DynamoStore {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&moto.endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
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
    ConversationKey::new(
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
    }
}
