//! A deployed service exports its spans over OTLP/gRPC, continuing the
//! caller's trace: a request carrying a `traceparent` produces a server span
//! in that trace, parented on the caller's span, under `OTEL_SERVICE_NAME`.

use std::{
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use parley_local::process::{binary, free_port};
use parley_proto::transcoder::{ProbeRequest, transcoder_client::TranscoderClient};

/// A minimal OTLP collector that keeps what it receives.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tokio::test]
async fn spans_reach_the_collector_in_the_callers_trace() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let port = free_port();
    let mut child = Command::new(binary("parley-transcoder"))
        .arg("serve")
        .env("PARLEY_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{collector_address}"),
        )
        .env("OTEL_SERVICE_NAME", "transcoder-under-test")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        // Quiet logs must not silence traces.
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let endpoint = format!("http://127.0.0.1:{port}");
    let mut client = None;
    for _ in 0..100 {
        if let Ok(c) = TranscoderClient::connect(endpoint.clone()).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = client.expect("the service starts");

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let mut request = tonic::Request::new(ProbeRequest {
        audio: parley_transcoder::synth::voice_note(1.0, 16_000)
            .unwrap()
            .into(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01").parse().unwrap(),
    );
    client.probe(request).await.unwrap();

    // SIGTERM: the service drains and flushes its exporter on the way out.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "process did not stop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    let exports = collector.0.lock().unwrap().clone();
    let resource_spans: Vec<_> = exports.iter().flat_map(|e| &e.resource_spans).collect();
    assert!(
        !resource_spans.is_empty(),
        "no spans were exported; service log:\n{log}"
    );
    let service_names: Vec<String> = resource_spans
        .iter()
        .filter_map(|r| r.resource.as_ref())
        .flat_map(|r| &r.attributes)
        .filter(|a| a.key == "service.name")
        .filter_map(|a| a.value.as_ref().and_then(|v| v.value.as_ref()))
        .map(|v| format!("{v:?}"))
        .collect();
    assert!(
        service_names
            .iter()
            .any(|n| n.contains("transcoder-under-test")),
        "{service_names:?}"
    );
    let spans: Vec<_> = resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    let server = spans
        .iter()
        .find(|s| s.name == "parley.transcoder.v1.Transcoder/Probe")
        .unwrap_or_else(|| {
            panic!(
                "no server span among {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(
        hex(&server.trace_id),
        trace_id,
        "the caller's trace continues"
    );
    assert_eq!(
        hex(&server.parent_span_id),
        caller_span,
        "parented on the caller's span"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
