//! A wire-level emulator of the AWS APIs Parley uses that nothing public
//! emulates, speaking their real REST-JSON protocols so the **real SDK
//! clients** reach it by endpoint override (`AWS_ENDPOINT_URL_CONNECT`,
//! `AWS_ENDPOINT_URL_CONNECTPARTICIPANT`, `AWS_ENDPOINT_URL_SOCIALMESSAGING`). For tests and local runs only —
//! never part of a production deployment.
//!
//! It keeps state (contacts, participants, connection tokens with expiry,
//! messages, events, attachments with upload/download URLs it serves
//! itself), enforces the real limits and errors (1,024-character messages,
//! expired or unknown tokens → `AccessDeniedException`, unknown contacts,
//! oversized or disallowed attachments, throttling on demand), plays the
//! agent (its messages, attachments and events are streamed to the contact's
//! SNS topic in Connect's format), and has a control API under `/_sandbox/`.
//!
//! # Layout
//! - [`state`]: the emulated world and its rules.
//! - [`connect`]: Amazon Connect (`StartChatContact`, `StartContactStreaming`).
//! - [`participant`]: Connect Participant (connections, messages, events,
//!   attachments, disconnect) and the attachment upload/download URLs.
//! - [`social`]: Social Messaging (WhatsApp send, media in and out via S3).
//! - [`transcribe`]: Transcribe Streaming over event-stream framing, with
//!   [`recognizer`] (DTMF, never invents words) as its "speech" engine.
//! - [`streaming`]: Connect chat streaming to SNS in Connect's format.
//! - [`customer`]: the sandbox playing the WhatsApp customer (media,
//!   webhooks wrapped as EUM publishes them).
//! - [`sns`]: SNS for HTTP subscribers, with real SNS signatures.
//! - [`s3`]: a small S3 for runs without moto.
//! - [`control`]: the test control API.
//! - [`aws`]: AWS wire conventions (errors, request ids, timestamps).
//! - [`moto`]: starting moto server (DynamoDB/S3/SQS/SNS) for tests.

pub mod aws;
pub mod connect;
pub mod control;
pub mod customer;
pub mod moto;
pub mod participant;
pub mod recognizer;
pub mod s3;
pub mod sns;
pub mod social;
pub mod state;
pub mod streaming;
pub mod transcribe;

use std::{net::SocketAddr, sync::Arc};

use axum::Router;

pub use state::{Sandbox, SandboxConfig};

/// The sandbox's HTTP routes over shared state. Paths no API claims go
/// to the S3 emulation (path-style buckets), which answers anything else
/// with an AWS error; every response carries a request id.
pub fn router(sandbox: Arc<Sandbox>) -> Router {
    Router::new()
        .merge(connect::routes())
        .merge(participant::routes())
        .merge(social::routes())
        .merge(transcribe::routes())
        .merge(control::routes())
        .merge(customer::routes())
        .merge(sns::routes())
        .fallback(s3::fallback)
        .layer(axum::middleware::from_fn(aws::request_id))
        .with_state(sandbox)
}

/// A running sandbox (tests start one per test on a free loopback port).
pub struct RunningSandbox {
    /// `http://127.0.0.1:<port>`: the endpoint to give the SDKs.
    pub endpoint: String,
    /// The state, for direct assertions.
    pub sandbox: Arc<Sandbox>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for RunningSandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a sandbox on `address` (port 0 picks a free one).
pub async fn start(
    address: SocketAddr,
    mut config: SandboxConfig,
) -> std::io::Result<RunningSandbox> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    if config.public_url.is_empty() {
        config.public_url = endpoint.clone();
    }
    let sandbox = Arc::new(Sandbox::new(config));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = router(sandbox.clone());
    tokio::spawn(async move {
        // Small frames (event-stream results) go out at once, as from AWS.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(RunningSandbox {
        endpoint,
        sandbox,
        stop: Some(stop),
    })
}
