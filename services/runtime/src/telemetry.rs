//! Logs and traces for every Parley process, from one call.
//!
//! Logs go to stderr, pretty for people or JSON for collectors
//! (`PARLEY_LOG_FORMAT`), filtered by `RUST_LOG` (default `info`). Spans are
//! filtered separately by `PARLEY_TRACE_FILTER` (default `info`), so quiet
//! logs do not silence traces. Spans are
//! exported over OTLP/gRPC when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set, under `OTEL_SERVICE_NAME` (default: the binary's name). The W3C
//! trace-context propagator is installed either way, so `traceparent` headers
//! flow through a service even when it exports nothing itself.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    runtime,
    trace::{SdkTracerProvider, span_processor_with_async_runtime::BatchSpanProcessor},
};
use tracing_subscriber::{
    EnvFilter, Layer as _, filter::FilterExt as _, layer::SubscriberExt, util::SubscriberInitExt,
};

use crate::config::Settings;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured when stderr is a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pretty" | "text" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            other => Err(format!("expected pretty or json, got {other:?}")),
        }
    }
}

/// Telemetry settings, read once at start.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `service.name` on exported spans.
    pub service_name: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// `RUST_LOG`-style filter for log lines.
    pub log_filter: String,
    /// Filter for exported spans (`PARLEY_TRACE_FILTER`, default `info`),
    /// separate from the log filter so quiet logs keep full traces.
    pub trace_filter: String,
    /// OTLP/gRPC collector address; spans and metrics are only exported
    /// when set.
    pub otlp_endpoint: Option<String>,
    /// Where `/metrics` is served (`PARLEY_METRICS_LISTEN`; `None`: off).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl TelemetryConfig {
    /// Reads `PARLEY_LOG_FORMAT`, `RUST_LOG`, `OTEL_SERVICE_NAME` and
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn from_settings(settings: &mut Settings<'_>, default_service_name: &str) -> Self {
        Self {
            service_name: settings
                .external("OTEL_SERVICE_NAME")
                .unwrap_or_else(|| default_service_name.to_owned()),
            log_format: settings.parse("log_format", LogFormat::Pretty),
            log_filter: settings
                .external("RUST_LOG")
                .unwrap_or_else(|| "info".to_owned()),
            trace_filter: settings
                .raw("trace_filter")
                .unwrap_or_else(|| "info".to_owned()),
            otlp_endpoint: settings.external("OTEL_EXPORTER_OTLP_ENDPOINT"),
            metrics_listen: match crate::metrics::listen_from(settings.raw("metrics_listen")) {
                Ok(listen) => listen,
                Err(problem) => {
                    settings.problem("metrics_listen", problem);
                    None
                }
            },
        }
    }
}

/// Keeps the exporters alive; flushes pending spans and metrics when
/// dropped.
#[must_use = "dropping the guard stops export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    meters: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
    /// What `/metrics` serves.
    pub registry: prometheus::Registry,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("telemetry: span exporter did not shut down cleanly: {e}");
        }
        if let Some(meters) = self.meters.take()
            && let Err(e) = meters.shutdown()
        {
            eprintln!("telemetry: metric exporter did not shut down cleanly: {e}");
        }
    }
}

/// Dependencies whose TRACE output is wire-level: whole messages and
/// headers (the AWS SDK's event-stream receiver logs every transcript,
/// signing logs canonical requests with tokens). Privacy is not a log
/// level, so these are dropped whatever `RUST_LOG` asks for.
const WIRE_LEVEL_TARGETS: [&str; 6] = [
    "aws_smithy",
    "aws_sigv4",
    "aws_runtime",
    "h2",
    "hyper",
    "reqwest",
];

/// The AWS SDKs' operation spans (`SQS.ReceiveMessage`, …: a debug span
/// per call, with the service and operation and nothing of the payload),
/// exported whatever the trace filter says, so every trace shows its AWS
/// calls under the gRPC hop that made them.
fn sdk_operations<S>() -> impl tracing_subscriber::layer::Filter<S> {
    tracing_subscriber::filter::filter_fn(|metadata| {
        metadata.is_span()
            && metadata.target().starts_with("aws_sdk_")
            && *metadata.level() <= tracing::Level::DEBUG
    })
}

/// Whether an event or span would write message payloads.
fn writes_payloads(target: &str, level: &tracing::Level) -> bool {
    *level == tracing::Level::TRACE
        && WIRE_LEVEL_TARGETS.iter().any(|prefix| {
            target.strip_prefix(prefix).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with("::") || rest.starts_with('_')
            })
        })
}

/// Installs the global subscriber and propagator. Call once, from inside the
/// tokio runtime, before serving.
pub fn init(config: &TelemetryConfig) -> Result<TelemetryGuard, Box<dyn std::error::Error>> {
    init_with(config, |builder| builder)
}

/// [`init`], with a last say on the tracer provider — e.g. an in-process
/// span exporter (`parley-local`'s console keeps recent spans to show each
/// message's trace).
pub fn init_with(
    config: &TelemetryConfig,
    customize: impl FnOnce(
        opentelemetry_sdk::trace::TracerProviderBuilder,
    ) -> opentelemetry_sdk::trace::TracerProviderBuilder,
) -> Result<TelemetryGuard, Box<dyn std::error::Error>> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let log_filter = EnvFilter::try_new(&config.log_filter)
        .map_err(|e| format!("RUST_LOG = {:?}: {e}", config.log_filter))?;
    let trace_filter = EnvFilter::try_new(&config.trace_filter)
        .map_err(|e| format!("PARLEY_TRACE_FILTER = {:?}: {e}", config.trace_filter))?;

    // A provider is installed even without an exporter: spans then still get
    // real trace and span ids, so incoming `traceparent`s are continued and
    // passed on to the next hop.
    let mut builder = SdkTracerProvider::builder().with_resource(
        Resource::builder()
            .with_service_name(config.service_name.clone())
            .build(),
    );
    if config.otlp_endpoint.is_some() {
        // The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT (and the other
        // standard OTEL_EXPORTER_OTLP_* variables) itself.
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()?;
        builder = builder
            .with_span_processor(BatchSpanProcessor::builder(exporter, runtime::Tokio).build());
    }
    let provider = customize(builder).build();
    let otel_layer =
        tracing_opentelemetry::layer().with_tracer(provider.tracer(config.service_name.clone()));

    let fmt_layer = match config.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(tracing_subscriber::filter::filter_fn(|metadata| {
            !writes_payloads(metadata.target(), metadata.level())
        }))
        .with(otel_layer.with_filter(trace_filter.or(sdk_operations())))
        .with(fmt_layer.with_filter(log_filter))
        .try_init()?;
    let (meters, registry) =
        crate::metrics::init(&config.service_name, config.otlp_endpoint.is_some())?;
    Ok(TelemetryGuard {
        provider: Some(provider),
        meters: Some(meters),
        registry,
    })
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::writes_payloads;

    #[test]
    fn wire_level_trace_is_dropped_and_nothing_else() {
        for target in [
            "aws_smithy_http::event_stream::receiver",
            "aws_smithy_runtime::client::orchestrator",
            "aws_sigv4::http_request::sign",
            "h2::codec::framed_read",
            "hyper_util::client::legacy::pool",
        ] {
            assert!(writes_payloads(target, &Level::TRACE), "{target}");
            assert!(!writes_payloads(target, &Level::DEBUG), "{target} at debug");
        }
        for target in [
            "parley_transcriber::grpc",
            "h2o",
            "hyperloglog",
            "tonic::transport",
        ] {
            assert!(!writes_payloads(target, &Level::TRACE), "{target}");
        }
    }
}
