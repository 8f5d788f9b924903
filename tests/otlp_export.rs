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
        .env("PARLEY_METRICS_LISTEN", "127.0.0.1:0")
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

/// The collector's spans with the service each came from.
fn spans_by_service(
    collector: &Collector,
) -> Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)> {
    let exports = collector.0.lock().unwrap().clone();
    let mut out = Vec::new();
    for resource_spans in exports.iter().flat_map(|e| &e.resource_spans) {
        let service = resource_spans
            .resource
            .as_ref()
            .into_iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .and_then(|a| a.value.as_ref())
            .and_then(|v| match &v.value {
                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => {
                    Some(s.clone())
                }
                _ => None,
            })
            .unwrap_or_default();
        for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
            out.push((service.clone(), span.clone()));
        }
    }
    out
}

/// One voice note through the whole bridge (every component a process
/// exporting to one collector) is one trace: spans from the gateway and
/// all five services, each parented on a span of the same trace, none
/// carrying the customer's number or words; and every process serves its
/// metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_voice_note_is_one_trace_across_every_component() {
    use parley_local::{
        Stack,
        conversation::{customer_texts, eventually},
    };

    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let stack = Stack::builder()
        .bridge()
        .processes()
        .process_env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            &format!("http://{collector_address}"),
        )
        .process_env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .process_env("OTEL_METRIC_EXPORT_INTERVAL", "60000")
        .start()
        .await
        .unwrap();
    let phone = "14155550777";
    let customer = stack.customer(phone, "Traced");
    let mut samples = vec![0i16; 4_800];
    samples.extend(parley_sandbox::recognizer::dtmf("95", 48_000));
    customer
        .voice_note(parley_transcoder::synth::encode_pcm(&samples, 48_000).unwrap())
        .await
        .unwrap();
    eventually(Duration::from_secs(30), || {
        let chat = stack.chats_of(phone).into_iter().next()?;
        customer_texts(&chat)
            .iter()
            .any(|t| t.contains("nine five"))
            .then_some(())
    })
    .await
    .expect("the transcript reaches the agent");

    const COMPONENTS: [&str; 6] = [
        "parley-gateway",
        "parley-session",
        "parley-whatsapp-sender",
        "parley-transcoder",
        "parley-transcriber",
        "parley-connect-relay",
    ];
    // The gateway's delivery continues the trace its ingest started.
    let trace = eventually(Duration::from_secs(15), || {
        let spans = spans_by_service(&collector);
        let deliver = spans
            .iter()
            .find(|(service, span)| service == "parley-gateway" && span.name == "deliver")?;
        let trace_id = deliver.1.trace_id.clone();
        let in_trace: Vec<_> = spans
            .into_iter()
            .filter(|(_, s)| s.trace_id == trace_id)
            .collect();
        let services: std::collections::BTreeSet<&str> = in_trace
            .iter()
            .map(|(service, _)| service.as_str())
            .collect();
        COMPONENTS
            .iter()
            .all(|c| services.contains(c))
            .then_some(in_trace)
    })
    .await
    .unwrap_or_else(|| {
        let spans = spans_by_service(&collector);
        panic!(
            "no trace spans all six components: {:#?}",
            spans
                .iter()
                .map(|(service, s)| (service.clone(), s.name.clone(), hex(&s.trace_id)))
                .collect::<Vec<_>>()
        )
    });
    let ids: std::collections::HashSet<Vec<u8>> =
        trace.iter().map(|(_, s)| s.span_id.clone()).collect();
    let roots: Vec<_> = trace
        .iter()
        .filter(|(_, s)| s.parent_span_id.is_empty())
        .map(|(service, s)| format!("{service}: {}", s.name))
        .collect();
    assert_eq!(
        roots,
        ["parley-gateway: ingest"],
        "one root: the gateway's ingest"
    );
    for (service, span) in &trace {
        assert!(
            span.parent_span_id.is_empty() || ids.contains(&span.parent_span_id),
            "{service}: {} has a parent outside the trace",
            span.name
        );
        // No personal data in any attribute.
        for attribute in &span.attributes {
            let value = format!("{:?}", attribute.value);
            assert!(
                !value.contains(phone),
                "{service}: {} carries the number",
                span.name
            );
            assert!(
                !value.contains("nine five"),
                "{service}: {} carries the words",
                span.name
            );
        }
    }
    // Server spans carry their gRPC status.
    assert!(
        trace
            .iter()
            .any(|(_, s)| s.attributes.iter().any(|a| a.key == "rpc.grpc.status_code")),
        "gRPC status recorded"
    );

    // Every process serves its metrics.
    let http = reqwest::Client::new();
    let scrape = async |name: &str| {
        let address = stack.metrics_address(name).unwrap();
        http.get(format!("http://{address}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let gateway = scrape("parley-gateway-0").await;
    for metric in [
        "parley_gateway_events_total",
        "parley_gateway_messages_total",
        "parley_gateway_deliveries_total",
        "parley_gateway_delivery_duration_seconds_bucket",
        "rpc_client_duration_seconds_bucket",
    ] {
        assert!(
            gateway.contains(metric),
            "gateway lacks {metric}:\n{gateway}"
        );
    }
    for service in &COMPONENTS[1..] {
        let text = scrape(service).await;
        assert!(
            text.contains("rpc_server_duration_seconds_bucket"),
            "{service}:\n{text}"
        );
    }
    assert!(
        scrape("parley-transcoder")
            .await
            .contains("parley_transcoder_realtime_factor")
    );
    assert!(!gateway.contains(phone), "metrics carry no numbers");
}
