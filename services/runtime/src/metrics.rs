//! Metrics for every Parley process, owned here once: one OpenTelemetry
//! meter provider (the global one every crate records into), read by a
//! Prometheus registry that `/metrics` serves on its own port
//! (`PARLEY_METRICS_LISTEN`, default `0.0.0.0:9464`; `off` disables it),
//! and exported over OTLP too when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! What is recorded everywhere: per-hop gRPC latency (server and client,
//! by service, method and status, from the tower layers in
//! [`crate::propagation`]). Services add their own instruments through
//! [`meter`].

use std::net::SocketAddr;

use opentelemetry::metrics::Meter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};

/// The meter a crate records with (`name` is its crate name).
pub fn meter(name: &'static str) -> Meter {
    opentelemetry::global::meter(name)
}

/// Where `/metrics` is served: `PARLEY_METRICS_LISTEN`, default
/// `0.0.0.0:9464`; `off` (or empty) for nowhere.
pub fn listen_from(raw: Option<String>) -> Result<Option<SocketAddr>, String> {
    match raw.as_deref().map(str::trim) {
        None => Ok(Some(SocketAddr::from(([0, 0, 0, 0], 9464)))),
        Some("" | "off" | "none") => Ok(None),
        Some(address) => address
            .parse()
            .map(Some)
            .map_err(|e| format!("{address:?}: {e}")),
    }
}

/// Installs the global meter provider: Prometheus always, OTLP when
/// `otlp` (the exporter reads the standard `OTEL_EXPORTER_OTLP_*`
/// variables). Returns the provider (to shut down) and the registry
/// `/metrics` encodes.
pub fn init(
    service_name: &str,
    otlp: bool,
) -> Result<(SdkMeterProvider, prometheus::Registry), Box<dyn std::error::Error>> {
    let registry = prometheus::Registry::new();
    let prometheus = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .build()?;
    let mut builder = SdkMeterProvider::builder()
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .with_reader(prometheus);
    if otlp {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()?;
        builder = builder.with_reader(PeriodicReader::builder(exporter).build());
    }
    let provider = builder.build();
    opentelemetry::global::set_meter_provider(provider.clone());
    Ok((provider, registry))
}

/// The Prometheus text exposition of `registry`.
pub fn render(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder as _;
    let mut out = Vec::new();
    if let Err(e) = prometheus::TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::warn!(error = %e, "metrics could not be encoded");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Serves `GET /metrics` (and `/health`) on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: prometheus::Registry,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let registry = registry.clone();
                async move {
                    (
                        [("content-type", "text/plain; version=0.0.4")],
                        render(&registry),
                    )
                }
            }),
        )
        .route("/health", axum::routing::get(|| async { "ok" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use opentelemetry::{KeyValue, metrics::MeterProvider as _};

    use super::*;

    #[test]
    fn the_listen_setting_reads_off_and_addresses() {
        assert_eq!(
            listen_from(None).unwrap(),
            Some(SocketAddr::from(([0, 0, 0, 0], 9464)))
        );
        assert_eq!(listen_from(Some("off".into())).unwrap(), None);
        assert_eq!(
            listen_from(Some("127.0.0.1:0".into())).unwrap(),
            Some(SocketAddr::from(([127, 0, 0, 1], 0)))
        );
        assert!(listen_from(Some("nine".into())).is_err());
    }

    #[test]
    fn instruments_show_up_in_the_exposition() {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .unwrap();
        let provider = SdkMeterProvider::builder().with_reader(exporter).build();
        let meter = provider.meter("test");
        let counter = meter.u64_counter("parley.test.events").build();
        counter.add(3, &[KeyValue::new("outcome", "done")]);
        let text = render(&registry);
        assert!(
            text.contains("parley_test_events_total{outcome=\"done\""),
            "{text}"
        );
        assert!(text.contains("} 3"), "{text}");
    }
}
