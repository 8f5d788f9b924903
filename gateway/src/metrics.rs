//! The gateway's own instruments (the runtime serves them at `/metrics`
//! and exports them over OTLP with everything else): events by outcome,
//! queue lag, messages by kind, deliveries by outcome, batch latency,
//! retries, dead letters and work in flight. Labels carry kinds and
//! outcomes only — never a number or a text.

use std::sync::OnceLock;

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram, UpDownCounter},
};

/// Every instrument of the gateway.
pub struct Metrics {
    /// Events handled, by stream and outcome (`done`, `retry`, `rejected`).
    pub events: Counter<u64>,
    /// Seconds from publication to receipt, by stream (queue lag).
    pub lag: Histogram<f64>,
    /// Messages buffered, by direction and kind (`text`, `voice`, …).
    pub messages: Counter<u64>,
    /// Batches delivered, by direction and outcome (`delivered`, `retry`,
    /// `dead_letter`).
    pub deliveries: Counter<u64>,
    /// Seconds to deliver a batch, by direction and outcome.
    pub delivery_duration: Histogram<f64>,
    /// Batches taken again after a failed or interrupted delivery.
    pub retries: Counter<u64>,
    /// Letters sent to the dead letters, by source.
    pub dead_letters: Counter<u64>,
    /// Events and batches being worked on, by stage.
    pub in_flight: UpDownCounter<i64>,
}

/// The gateway's instruments, created once on the global meter provider.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let meter = parley_runtime::metrics::meter("parley-gateway");
        let seconds = vec![
            0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
        ];
        Metrics {
            events: meter
                .u64_counter("parley.gateway.events")
                .with_description("Events handled, by stream and outcome")
                .build(),
            lag: meter
                .f64_histogram("parley.gateway.queue.lag")
                .with_unit("s")
                .with_description("Age of an event when the gateway received it")
                .with_boundaries(seconds.clone())
                .build(),
            messages: meter
                .u64_counter("parley.gateway.messages")
                .with_description("Messages buffered, by direction and kind")
                .build(),
            deliveries: meter
                .u64_counter("parley.gateway.deliveries")
                .with_description("Batches delivered, by direction and outcome")
                .build(),
            delivery_duration: meter
                .f64_histogram("parley.gateway.delivery.duration")
                .with_unit("s")
                .with_description("Time to deliver a batch")
                .with_boundaries(seconds)
                .build(),
            retries: meter
                .u64_counter("parley.gateway.retries")
                .with_description("Batches taken again after a failed or interrupted delivery")
                .build(),
            dead_letters: meter
                .u64_counter("parley.gateway.dead_letters")
                .with_description("Letters sent to the dead letters, by source")
                .build(),
            in_flight: meter
                .i64_up_down_counter("parley.gateway.in_flight")
                .with_description("Events and batches being worked on, by stage")
                .build(),
        }
    })
}

/// A label.
pub fn label(key: &'static str, value: &'static str) -> KeyValue {
    KeyValue::new(key, value)
}

/// Counts work in flight for as long as it lives.
pub struct InFlight(&'static str);

impl InFlight {
    /// One more piece of work at `stage`.
    pub fn start(stage: &'static str) -> Self {
        metrics().in_flight.add(1, &[label("stage", stage)]);
        Self(stage)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics().in_flight.add(-1, &[label("stage", self.0)]);
    }
}
