//! One trace per notification: the broker's `publish` span continues the caller's W3C `traceparent`, and the
//! edge's `deliver` span is its child, both exported over OTLP/gRPC to a collector running in the test.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use crier_proto::v1::PublishRequest;
use crier_store::telemetry::{self, OtlpConfig};
use crier_tests::{Servers, within};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;

/// The caller's trace and span, as a backend's own tracing would send them.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// An OTLP trace collector that forwards every received span.
struct Collector {
    spans: mpsc::UnboundedSender<Span>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request.into_inner().resource_spans.into_iter().flat_map(|r| r.scope_spans);
        for span in spans.flat_map(|s| s.spans) {
            let _ = self.spans.send(span);
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// Starts the collector on `127.0.0.1:0`; returns its URL and the received spans.
async fn start_collector(stop: CancellationToken) -> Result<(String, mpsc::UnboundedReceiver<Span>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = mpsc::unbounded_channel();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(Collector { spans: tx }))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            stop.cancelled_owned(),
        );
    tokio::spawn(server);
    Ok((url, rx))
}

/// One `Publish` with a `traceparent` yields a broker `publish` span (child of the caller) and an edge
/// `deliver` span (child of `publish`), in one trace, exported in parent → child order of start.
// current_thread (the default): the thread-local subscriber below sees every task of the servers.
#[tokio::test]
async fn publish_and_delivery_share_one_trace() -> Result<()> {
    let stop = CancellationToken::new();
    let (endpoint, mut received) = start_collector(stop.clone()).await?;
    let config = OtlpConfig { endpoint, service_name: "crier-test".into(), timeout: Duration::from_secs(5) };
    let provider = telemetry::otlp_tracer_provider(&config)?;
    let subscriber = tracing_subscriber::registry().with(telemetry::otel_layer(&provider));
    let _guard = tracing::subscriber::set_default(subscriber);

    let servers = Servers::dev(1).await?;
    let mut ws = servers.ws_client(0).await?;
    ws.auth_dev("u1").await?;
    ws.subscribe("traced").await?;
    let mut client = servers.publish_client().await?;
    let payload = json!({"type": "job-status", "conversationId": "traced"}).to_string();
    let request =
        PublishRequest { conversation_id: "traced".into(), payload: payload.into(), ..Default::default() };
    let mut request = tonic::Request::new(request);
    request.metadata_mut().insert("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01").parse()?);
    within("a traced publish", client.inner().publish(request)).await??;
    ws.recv_json().await?;

    // force_flush blocks: run it off this thread, which must keep driving the exporter's gRPC channel.
    let flusher = provider.clone();
    within("the span export", tokio::task::spawn_blocking(move || flusher.force_flush())).await???;
    let (publish, deliver) = within("publish and deliver spans", async {
        let (mut publish, mut deliver) = (None, None);
        while publish.is_none() || deliver.is_none() {
            let span = received.recv().await.context("collector stopped")?;
            match span.name.as_str() {
                "publish" => publish = Some(span),
                "deliver" => deliver = Some(span),
                _ => {}
            }
        }
        anyhow::Ok((publish.context("no publish")?, deliver.context("no deliver")?))
    })
    .await??;

    ensure!(hex(&publish.trace_id) == TRACE_ID, "publish is in trace {}", hex(&publish.trace_id));
    ensure!(hex(&publish.parent_span_id) == CALLER_SPAN_ID, "publish's parent is not the caller");
    ensure!(deliver.trace_id == publish.trace_id, "deliver is in another trace");
    ensure!(deliver.parent_span_id == publish.span_id, "deliver is not publish's child");
    ensure!(deliver.start_time_unix_nano >= publish.start_time_unix_nano, "child started before parent");

    servers.shutdown().await?;
    let closer = provider.clone();
    within("the provider to shut down", tokio::task::spawn_blocking(move || closer.shutdown())).await???;
    stop.cancel();
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
