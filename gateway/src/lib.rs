//! Parley's gateway: the bridge itself. It consumes End User Messaging
//! Social (WhatsApp) and Amazon Connect streaming events and drives the
//! services — session, transcoder, transcriber, connect-relay,
//! whatsapp-sender — through the client crate. It keeps no state of its
//! own, so it scales by replicas.
//!
//! Read it as a pipeline, one module per stage, plain types between them:
//!
//! ```text
//! source ─► parse ─► dedupe + buffer ─► (flusher) deliver ─► ack
//! SQS/HTTP  EUM/Meta   claim, append     take batch, route,   ack batch,
//!           /Connect   (one transaction)  render, send each    link ids
//!                                         part once
//! ```
//!
//! - [`source`]: SQS consumers and the HTTP source (SNS signatures, Meta
//!   webhooks); each settles an event only once its effects are durable.
//! - [`parse`]: every webhook and streaming form → [`model`] types.
//! - [`ingest`]: dedupe by message id and append to the conversation's
//!   pending buffer (one session transaction); statuses → receipts.
//! - [`flush`]: on every replica, take due batches under a lease and
//!   deliver them; ack, release with backoff, or dead-letter.
//! - [`deliver`]: to the agent ([`deliver::to_agent`]) and to the customer
//!   ([`deliver::to_customer`]), every part under an idempotency key
//!   ([`keys`]).
//! - [`render`]: what each side sees of the other's messages (pure).
//! - [`routing`]: per business number, which Connect instance and flow,
//!   and what the customer sees; hot-reloaded.
//! - [`dead_letter`]: where what cannot be handled goes, with the reason.

pub mod config;
pub mod dead_letter;
pub mod deliver;
pub mod flush;
pub mod ingest;
pub mod keys;
pub mod metrics;
pub mod model;
pub mod parse;
pub mod receipts;
pub mod render;
pub mod routing;
pub mod services;
pub mod source;
pub mod test_hooks;
pub mod trace;

use std::{sync::Arc, time::Duration};

use parley_runtime::server::ServerConfig;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{DeadLetterTarget, GatewayConfig},
    dead_letter::{DeadLetters, FileDeadLetters, NoDeadLetters, SqsDeadLetters},
    deliver::{to_agent::ToAgent, to_customer::ToCustomer},
    flush::{Flusher, Wakeups},
    ingest::{AgentItemBuffer, Ingest, Stream},
    routing::{LiveRouting, Routing},
    services::Services,
    source::{http::HttpSource, sqs::SqsSource},
};

/// The routing in effect: the file's, or the defaults from the
/// environment; every problem reported at once.
pub fn load_routing(config: &GatewayConfig) -> anyhow::Result<Routing> {
    let env = parley_runtime::config::ProcessEnv;
    let routing = match &config.routing_file {
        Some(path) => Routing::load(path, &env),
        None => Routing::parse("", &env),
    };
    routing.map_err(|problems| anyhow::anyhow!("invalid routing: {}", problems.join("; ")))
}

/// Runs the gateway — the HTTP source on `listener`, an SQS consumer per
/// configured queue, and a flusher per direction — until `shutdown`; then
/// stops taking events and lets work under way finish within the server's
/// shutdown grace.
pub async fn run(
    listener: tokio::net::TcpListener,
    server: ServerConfig,
    config: GatewayConfig,
    services: Services,
    routing: Routing,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let live = LiveRouting::fixed(routing);
    let reloader = config
        .routing_file
        .clone()
        .map(|path| live.clone().watch(path, config.routing_reload));
    let aws = match &config.aws {
        Some(aws) => aws.clone(),
        None => aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await,
    };
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let dead_letters: Arc<dyn DeadLetters> = match &config.dead_letters {
        Some(DeadLetterTarget::Queue(url)) => {
            Arc::new(SqsDeadLetters::new(sqs.clone(), url.clone()))
        }
        Some(DeadLetterTarget::File(path)) => Arc::new(FileDeadLetters::new(path.clone())),
        None => {
            tracing::warn!(
                "no dead-letter target (PARLEY_DEAD_LETTER_QUEUE_URL or PARLEY_DEAD_LETTER_FILE): events that cannot be handled stay with their transport"
            );
            Arc::new(NoDeadLetters)
        }
    };
    let inbound_wakeups = Wakeups::default();
    let outbound_wakeups = Wakeups::default();
    let agent_items =
        AgentItemBuffer::new(services.clone(), config.clone(), outbound_wakeups.clone());
    let ingest = Arc::new(Ingest::new(
        services.clone(),
        live.clone(),
        config.clone(),
        inbound_wakeups.clone(),
        agent_items.clone(),
    ));

    let stop = CancellationToken::new();
    let drain = server.shutdown_grace;
    let mut tasks = tokio::task::JoinSet::new();
    for (deliver, wakeups) in [
        (
            Arc::new(ToAgent::new(
                services.clone(),
                live.clone(),
                config.clone(),
                agent_items,
            )) as Arc<dyn deliver::Deliver>,
            inbound_wakeups,
        ),
        (
            Arc::new(ToCustomer::new(
                services.clone(),
                live.clone(),
                config.clone(),
            )),
            outbound_wakeups,
        ),
    ] {
        let flusher = Flusher::new(
            services.session.clone(),
            deliver,
            dead_letters.clone(),
            config.flush.clone(),
            wakeups,
        );
        tasks.spawn(flusher.run(stop.clone(), drain));
    }
    for (queue, stream) in [
        (&config.inbound_queue, Stream::Inbound),
        (&config.outbound_queue, Stream::Outbound),
    ] {
        if let Some(queue) = queue {
            tracing::info!(stream = stream.as_str(), queue = %queue.url, "consuming");
            let source = SqsSource::new(
                sqs.clone(),
                queue.clone(),
                stream,
                ingest.clone(),
                dead_letters.clone(),
            );
            tasks.spawn(source.run(stop.clone(), drain));
        }
    }
    let http = HttpSource::new(ingest, dead_letters, config.http.clone()).router();
    let http_stop = stop.clone();
    tracing::info!(address = %listener.local_addr()?, "gateway listening (HTTP source, /health)");
    let serving = tokio::spawn(async move {
        axum::serve(listener, http)
            .with_graceful_shutdown(async move { http_stop.cancelled().await })
            .await
    });
    shutdown.await;
    tracing::info!("shutting down: no new events; finishing work under way");
    stop.cancel();
    let finished = tokio::time::timeout(drain + Duration::from_secs(1), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tasks.abort_all();
    }
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), serving).await;
    Ok(())
}
