//! The HTTP source, for users without SQS and for `parley-local`:
//!
//! - `POST /sns/inbound`, `POST /sns/outbound`: SNS HTTP(S) subscriptions
//!   to the EUM Social and Connect streaming topics. Every message's
//!   signature is verified ([`super::sns`]) before anything else; a
//!   subscription is confirmed by following its (verified) SubscribeURL.
//! - `GET /webhooks/meta` (the verification handshake) and
//!   `POST /webhooks/meta`: Meta's Cloud API webhook, signed with the app
//!   secret ([`super::meta`]).
//! - `GET /health`.
//!
//! A bad signature gets 403 and changes nothing. An event that must wait
//! gets 503, so SNS (or Meta) delivers it again.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};

use super::{Settled, meta, settle, sns::SnsVerifier};
use crate::{
    config::HttpSourceConfig,
    dead_letter::DeadLetters,
    flush::now_ms,
    ingest::{Event, Ingest, Stream},
};

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpSource {
    ingest: Arc<Ingest>,
    dead_letters: Arc<dyn DeadLetters>,
    verifier: SnsVerifier,
    config: HttpSourceConfig,
    http: reqwest::Client,
}

impl HttpSource {
    /// A source feeding `ingest`.
    pub fn new(
        ingest: Arc<Ingest>,
        dead_letters: Arc<dyn DeadLetters>,
        config: HttpSourceConfig,
    ) -> Self {
        Self {
            ingest,
            dead_letters,
            verifier: SnsVerifier::new(
                config.sns_trusted_cert_origin.as_deref(),
                config.sns_topics.clone(),
            ),
            config,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a static client configuration"),
        }
    }

    /// The routes.
    pub fn router(self) -> Router {
        Router::new()
            .route("/sns/{stream}", post(sns))
            .route("/webhooks/meta", get(meta_handshake).post(meta_webhook))
            .route("/health", get(|| async { "ok" }))
            .with_state(self)
    }
}

fn stream_named(name: &str) -> Option<Stream> {
    match name {
        "inbound" => Some(Stream::Inbound),
        "outbound" => Some(Stream::Outbound),
        _ => None,
    }
}

fn answer(settled: Settled) -> Response {
    match settled {
        Settled::Ack => StatusCode::OK.into_response(),
        Settled::Again(after) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", after.as_secs().max(1).to_string())],
            "not yet: deliver again",
        )
            .into_response(),
    }
}

fn trace_header(headers: &HeaderMap) -> String {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn sns(
    State(source): State<HttpSource>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(stream) = stream_named(&stream) else {
        return (StatusCode::NOT_FOUND, "unknown stream").into_response();
    };
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return (StatusCode::BAD_REQUEST, "the body is not UTF-8").into_response();
    };
    let verified = match source.verifier.verify(&body).await {
        Ok(verified) => verified,
        Err(error @ super::sns::SnsError::Certificate(_)) => {
            tracing::warn!(%error, "SNS certificate unavailable");
            return (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response();
        }
        Err(error) => {
            tracing::warn!(%error, "SNS message refused");
            return (StatusCode::FORBIDDEN, error.to_string()).into_response();
        }
    };
    match verified.kind.as_str() {
        "SubscriptionConfirmation" => confirm(&source, &verified.subscribe_url).await,
        "Notification" => {
            let event = Event {
                body,
                attributes: Default::default(),
                traceparent: trace_header(&headers),
                received_at_ms: now_ms(),
                sent_at_ms: verified.timestamp_ms,
            };
            answer(settle(&source.ingest, &source.dead_letters, stream, &event).await)
        }
        _ => StatusCode::OK.into_response(),
    }
}

/// Confirms a subscription by following its SubscribeURL (already checked
/// to be SNS's, or the trusted local origin's).
async fn confirm(source: &HttpSource, url: &str) -> Response {
    if !source.verifier.url_trusted(url) {
        return (StatusCode::FORBIDDEN, "SubscribeURL is not an SNS URL").into_response();
    }
    match source
        .http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
    {
        Ok(_) => {
            tracing::info!("SNS subscription confirmed");
            StatusCode::OK.into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "SNS subscription not confirmed");
            (StatusCode::BAD_GATEWAY, "confirmation failed").into_response()
        }
    }
}

async fn meta_handshake(
    State(source): State<HttpSource>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    match meta::challenge(
        source.config.meta_verify_token.as_deref(),
        query.get("hub.mode").map(String::as_str),
        query.get("hub.verify_token").map(String::as_str),
        query.get("hub.challenge").map(String::as_str),
    ) {
        Some(challenge) => challenge.to_owned().into_response(),
        None => (StatusCode::FORBIDDEN, "verification refused").into_response(),
    }
}

async fn meta_webhook(
    State(source): State<HttpSource>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(secret) = source.config.meta_app_secret.as_deref() else {
        return (
            StatusCode::FORBIDDEN,
            "Meta webhooks are off: set PARLEY_META_APP_SECRET",
        )
            .into_response();
    };
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !meta::signature_valid(secret, &body, signature) {
        tracing::warn!("Meta webhook refused: bad X-Hub-Signature-256");
        return (StatusCode::FORBIDDEN, "bad signature").into_response();
    }
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return (StatusCode::BAD_REQUEST, "the body is not UTF-8").into_response();
    };
    let event = Event {
        body,
        attributes: Default::default(),
        traceparent: trace_header(&headers),
        received_at_ms: now_ms(),
        sent_at_ms: 0,
    };
    answer(
        settle(
            &source.ingest,
            &source.dead_letters,
            Stream::Inbound,
            &event,
        )
        .await,
    )
}
