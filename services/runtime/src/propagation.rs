//! W3C trace-context propagation as tower layers, so no service writes
//! tracing plumbing of its own.
//!
//! [`ServerTraceLayer`] opens a `grpc.server` span for every incoming request,
//! parented on the caller's `traceparent` header. [`ClientTraceLayer`] opens a
//! `grpc.client` span for every outgoing request and writes its context into
//! the request's `traceparent`. With both in place one customer message keeps
//! one trace id across every hop.

use std::{
    future::Future,
    pin::Pin,
    sync::OnceLock,
    task::{Context, Poll},
    time::Instant,
};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::{KeyValue, metrics::Histogram};
use tower::{Layer, Service};
use tracing::{Instrument, instrument::Instrumented};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The trace context a request carries, per the global propagator.
pub fn extract_context(headers: &HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
}

/// Writes `span`'s trace context into `headers`.
pub fn inject_context(span: &tracing::Span, headers: &mut HeaderMap) {
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut HeaderInjector(headers))
    });
}

/// Splits a gRPC path `/pkg.Service/Method` into service and method.
fn rpc_names(path: &str) -> (&str, &str) {
    let trimmed = path.trim_start_matches('/');
    trimmed.split_once('/').unwrap_or((trimmed, ""))
}

/// Opens a server span per request, continuing the caller's trace.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerTraceLayer;

impl<S> Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTrace { inner }
    }
}

/// The service [`ServerTraceLayer`] produces.
#[derive(Debug, Clone)]
pub struct ServerTrace<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for ServerTrace<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
{
    type Response = http::Response<TracedBody<RB>>;
    type Error = S::Error;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let (service, method) = rpc_names(&path);
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let _ = span.set_parent(extract_context(request.headers()));
        Observed::new(Hop::Server, service, method, span, self.inner.call(request))
    }
}

/// Opens a client span per request and propagates it in `traceparent`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientTraceLayer;

impl<S> Layer<S> for ClientTraceLayer {
    type Service = ClientTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientTrace { inner }
    }
}

/// The service [`ClientTraceLayer`] produces.
#[derive(Debug, Clone)]
pub struct ClientTrace<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for ClientTrace<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
{
    type Response = http::Response<TracedBody<RB>>;
    type Error = S::Error;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let (service, method) = rpc_names(&path);
        let span = tracing::info_span!(
            "grpc.client",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        inject_context(&span, request.headers_mut());
        Observed::new(Hop::Client, service, method, span, self.inner.call(request))
    }
}

/// Which side of a hop a call is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    Server,
    Client,
}

/// Per-hop latency, by service, method and gRPC status (seconds until the
/// response headers: the whole call for unary methods).
fn latency(hop: Hop) -> &'static Histogram<f64> {
    static SERVER: OnceLock<Histogram<f64>> = OnceLock::new();
    static CLIENT: OnceLock<Histogram<f64>> = OnceLock::new();
    let (cell, name) = match hop {
        Hop::Server => (&SERVER, "rpc.server.duration"),
        Hop::Client => (&CLIENT, "rpc.client.duration"),
    };
    cell.get_or_init(|| {
        crate::metrics::meter("parley-runtime")
            .f64_histogram(name)
            .with_unit("s")
            .with_description("gRPC call latency per hop")
            .with_boundaries(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
            .build()
    })
}

pin_project_lite::pin_project! {
    /// A call in its span, until its response starts; the response body
    /// then carries the span ([`TracedBody`]), so a streaming call's span
    /// and latency end when its stream does.
    pub struct Observed<F> {
        #[pin]
        inner: Instrumented<F>,
        outcome: Option<Outcome>,
    }
}

/// What a finished call records, once.
struct Outcome {
    hop: Hop,
    service: String,
    method: String,
    span: tracing::Span,
    start: Instant,
}

impl Outcome {
    /// Records the call's gRPC status on its span and its latency, and lets
    /// the span end.
    fn finish(self, status: i64) {
        self.span.record("rpc.grpc.status_code", status);
        latency(self.hop).record(
            self.start.elapsed().as_secs_f64(),
            &[
                KeyValue::new("rpc.service", self.service),
                KeyValue::new("rpc.method", self.method),
                KeyValue::new("rpc.grpc.status_code", status),
            ],
        );
    }
}

/// The `grpc-status` in a header map, if any.
fn grpc_status(headers: &HeaderMap) -> Option<i64> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
}

impl<F> Observed<F> {
    fn new(hop: Hop, service: &str, method: &str, span: tracing::Span, inner: F) -> Self {
        Self {
            inner: inner.instrument(span.clone()),
            outcome: Some(Outcome {
                hop,
                service: service.to_owned(),
                method: method.to_owned(),
                span,
                start: Instant::now(),
            }),
        }
    }
}

impl<F, RB, E> Future for Observed<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
{
    type Output = Result<http::Response<TracedBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let outcome = this.outcome.take();
        Poll::Ready(match result {
            Ok(response) => {
                // A status in the headers is a trailers-only answer; else
                // it comes in the trailers, at the end of the body.
                let early = grpc_status(response.headers());
                Ok(response.map(|body| TracedBody {
                    inner: body,
                    early,
                    outcome,
                }))
            }
            Err(error) => {
                // The transport failed: UNAVAILABLE.
                if let Some(outcome) = outcome {
                    outcome.finish(14);
                }
                Err(error)
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds its call's span open until the last
    /// frame, then records the call's gRPC status (from the trailers) and
    /// latency. Dropped early — the caller went away — it records
    /// CANCELLED.
    pub struct TracedBody<B> {
        #[pin]
        inner: B,
        early: Option<i64>,
        outcome: Option<Outcome>,
    }

    impl<B> PinnedDrop for TracedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(outcome) = this.outcome.take() {
                outcome.finish(this.early.unwrap_or(1));
            }
        }
    }
}

impl<B: http_body::Body> http_body::Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        let status = match &frame {
            Some(Ok(frame)) => frame.trailers_ref().map(|t| grpc_status(t).unwrap_or(0)),
            Some(Err(_)) => Some(14),
            None => Some(this.early.unwrap_or(0)),
        };
        if let Some(status) = status
            && let Some(outcome) = this.outcome.take()
        {
            outcome.finish(status);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_grpc_paths() {
        assert_eq!(
            rpc_names("/parley.transcoder.v1.Transcoder/Convert"),
            ("parley.transcoder.v1.Transcoder", "Convert")
        );
        assert_eq!(rpc_names("/odd"), ("odd", ""));
    }
}
