//! One trace across a hop: the client span and the server span it causes
//! share a trace id, and the server span is the client span's child.
//!
//! Alone in its test binary: tracing's callsite interest is global, and a
//! parallel test without a subscriber can make it skip spans.

use std::time::Duration;

use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::{
    propagation::TraceContextPropagator,
    trace::{InMemorySpanExporter, SdkTracerProvider},
};
use parley_runtime::{
    client::{ClientConfig, connect_lazy},
    server::{GrpcServer, ServerConfig},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tracing::Instrument as _;
use tracing_subscriber::layer::SubscriberExt as _;

#[tokio::test(flavor = "current_thread")]
async fn client_and_server_spans_share_one_trace() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // INFO keeps hyper's and h2's internal trace spans out, as RUST_LOG does.
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(GrpcServer::new(ServerConfig::local(address)).serve(
        listener,
        async {
            let _ = stopped.await;
        },
    ));

    let channel = connect_lazy(&ClientConfig::new(format!("http://{address}"))).unwrap();
    let mut client = HealthClient::new(channel);
    async {
        client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
    }
    .instrument(tracing::info_span!("inbound message"))
    .await;

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server drains promptly")
        .unwrap()
        .unwrap();
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let root = spans
        .iter()
        .find(|s| s.name == "inbound message")
        .expect("root span");
    let client_span = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Client)
        .expect("client span");
    let server_span = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .expect("server span");
    assert_eq!(client_span.name, "grpc.health.v1.Health/Check");
    assert_eq!(server_span.name, "grpc.health.v1.Health/Check");
    let trace = root.span_context.trace_id();
    assert_eq!(client_span.span_context.trace_id(), trace);
    assert_eq!(
        server_span.span_context.trace_id(),
        trace,
        "the server continued the caller's trace"
    );
    assert_eq!(client_span.parent_span_id, root.span_context.span_id());
    assert_eq!(
        server_span.parent_span_id,
        client_span.span_context.span_id()
    );
}
