//! An in-process span store: `parley-local` runs every component in one
//! process, so one exporter on its tracer provider sees every span of every
//! hop. The console reads a message's trace from here; the newest spans
//! are kept, the oldest dropped.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
    time::UNIX_EPOCH,
};

use opentelemetry::Value;
use opentelemetry_sdk::{
    error::OTelSdkResult,
    trace::{SpanData, SpanExporter},
};
use serde::Serialize;

/// Spans kept at most.
const CAPACITY: usize = 50_000;

/// One finished span, as the console shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StoredSpan {
    /// The trace (32 hex digits).
    pub trace_id: String,
    /// This span (16 hex digits).
    pub span_id: String,
    /// Its parent, empty for a root.
    pub parent_id: String,
    /// What it did.
    pub name: String,
    /// Which part of Parley it ran in (`gateway`, `session`, …).
    pub component: String,
    /// Start, microseconds since the epoch.
    pub start_us: u64,
    /// How long it took, microseconds.
    pub duration_us: u64,
    /// Its attributes (Parley puts no personal data in them).
    pub attributes: BTreeMap<String, String>,
}

/// The store; clone it to share.
#[derive(Debug, Clone, Default)]
pub struct SpanStore {
    spans: Arc<Mutex<VecDeque<StoredSpan>>>,
}

impl SpanStore {
    /// Every span of `trace_id`, by start time.
    pub fn trace(&self, trace_id: &str) -> Vec<StoredSpan> {
        let mut spans: Vec<StoredSpan> = self
            .spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect();
        spans.sort_by_key(|s| s.start_us);
        spans
    }

    /// How many spans are kept.
    pub fn len(&self) -> usize {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The part of Parley a span ran in: a server span names its service; any
/// other span, the crate its code is in.
fn component(
    kind: &opentelemetry::trace::SpanKind,
    attributes: &BTreeMap<String, String>,
) -> String {
    let from_service = |service: &str| {
        service
            .trim_start_matches("parley.")
            .split('.')
            .next()
            .map(|s| match s {
                "connect" => "connect-relay".to_owned(),
                "whatsapp" => "whatsapp-sender".to_owned(),
                other => other.to_owned(),
            })
    };
    if let Some(service) = attributes.get("rpc.service").and_then(|s| from_service(s)) {
        return if *kind == opentelemetry::trace::SpanKind::Client {
            format!("call → {service}")
        } else {
            service
        };
    }
    let namespace = attributes
        .get("code.namespace")
        .or_else(|| attributes.get("code.module.name"))
        .map(String::as_str)
        .unwrap_or_default();
    let krate = namespace.split("::").next().unwrap_or_default();
    match krate.strip_prefix("parley_") {
        Some("connect_relay") => "connect-relay".into(),
        Some("whatsapp_sender") => "whatsapp-sender".into(),
        Some(other) => other.into(),
        None if krate.starts_with("aws_") => "aws-sdk".into(),
        None if krate.is_empty() => "parley".into(),
        None => krate.into(),
    }
}

fn micros(time: std::time::SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl SpanExporter for SpanStore {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        for span in batch {
            let attributes: BTreeMap<String, String> = span
                .attributes
                .iter()
                .map(|kv| {
                    let value = match &kv.value {
                        Value::String(s) => s.to_string(),
                        other => other.to_string(),
                    };
                    (kv.key.to_string(), value)
                })
                .collect();
            let start = micros(span.start_time);
            let parent = span.parent_span_id;
            spans.push_back(StoredSpan {
                trace_id: span.span_context.trace_id().to_string(),
                span_id: span.span_context.span_id().to_string(),
                parent_id: if parent == opentelemetry::trace::SpanId::INVALID {
                    String::new()
                } else {
                    parent.to_string()
                },
                component: component(&span.span_kind, &attributes),
                name: span.name.to_string(),
                start_us: start,
                duration_us: micros(span.end_time).saturating_sub(start),
                attributes,
            });
            if spans.len() > CAPACITY {
                spans.pop_front();
            }
        }
        std::future::ready(Ok(()))
    }
}
