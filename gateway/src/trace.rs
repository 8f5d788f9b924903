//! Trace context across the gateway's hops: read from the event (a W3C
//! `traceparent` message attribute, or the `AWSTraceHeader` X-Ray set on
//! an SQS message), kept with each buffered message, and resumed when its
//! batch is delivered — so one customer message (or agent message) is one
//! trace from the queue to the far side, through every service.

use http::{HeaderMap, HeaderValue};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The W3C `traceparent` of an X-Ray trace header
/// (`Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`).
pub fn xray_to_traceparent(header: &str) -> Option<String> {
    let mut root = None;
    let mut parent = None;
    let mut sampled = "01";
    for part in header.split(';') {
        match part.trim().split_once('=') {
            Some(("Root", value)) => root = Some(value),
            Some(("Parent", value)) => parent = Some(value),
            Some(("Sampled", "0")) => sampled = "00",
            _ => {}
        }
    }
    let mut pieces = root?.split('-');
    let (Some("1"), Some(time), Some(random), None) =
        (pieces.next(), pieces.next(), pieces.next(), pieces.next())
    else {
        return None;
    };
    let trace_id = format!("{time}{random}").to_ascii_lowercase();
    let parent = parent?.to_ascii_lowercase();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(&trace_id, 32) && hex(&parent, 16) && trace_id != "0".repeat(32))
        .then(|| format!("00-{trace_id}-{parent}-{sampled}"))
}

/// Makes `span` continue the trace `traceparent` names (no-op when empty
/// or malformed).
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    let Ok(value) = HeaderValue::from_str(traceparent) else {
        return;
    };
    if traceparent.is_empty() {
        return;
    }
    let mut headers = HeaderMap::new();
    headers.insert("traceparent", value);
    let _ = span.set_parent(parley_runtime::propagation::extract_context(&headers));
}

/// Links `span` to the trace `traceparent` names (messages delivered in
/// one batch: the delivery continues the first one's trace and links the
/// others').
pub fn link(span: &tracing::Span, traceparent: &str) {
    use opentelemetry::trace::TraceContextExt as _;
    let Ok(value) = HeaderValue::from_str(traceparent) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert("traceparent", value);
    let context = parley_runtime::propagation::extract_context(&headers);
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.add_link(span_context);
    }
}

/// A span for delivering a batch whose messages carry these trace
/// contexts: in the first one's trace, linked to the rest.
pub fn delivery_span<'a>(
    name: &'static str,
    traceparents: impl IntoIterator<Item = &'a str>,
) -> tracing::Span {
    let span = tracing::info_span!("deliver", direction = name);
    let mut traceparents = traceparents.into_iter().filter(|t| !t.is_empty());
    if let Some(first) = traceparents.next() {
        continue_trace(&span, first);
    }
    for other in traceparents {
        link(&span, other);
    }
    span
}

/// The `traceparent` of `span`, to store with a buffered message.
pub fn traceparent_of(span: &tracing::Span) -> String {
    let mut headers = HeaderMap::new();
    parley_runtime::propagation::inject_context(span, &mut headers);
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xray_headers_become_traceparents() {
        assert_eq!(
            xray_to_traceparent(
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
            )
            .as_deref(),
            Some("00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01")
        );
        assert_eq!(
            xray_to_traceparent(
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
            )
            .as_deref(),
            Some("00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-00")
        );
        // Without a parent there is nothing to continue.
        assert_eq!(
            xray_to_traceparent("Root=1-5759e988-bd862e3fe1be46a994272793"),
            None
        );
        assert_eq!(xray_to_traceparent("garbage"), None);
        assert_eq!(
            xray_to_traceparent("Root=1-xyz-abc;Parent=53995c3f42cd8ad8"),
            None
        );
    }
}
