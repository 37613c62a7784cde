//! Traces and metrics plumbing shared by broker, edge and the CLI: the process's Prometheus recorder, the
//! OTLP trace pipeline, and W3C trace-context propagation through stream entries (the broker reads the
//! caller's from gRPC metadata: `crier_broker::trace_parent`).
//!
//! Tracing is off unless an OTLP endpoint is configured (the CLI reads `OTEL_EXPORTER_OTLP_ENDPOINT`); the
//! exporter itself honours the other standard `OTEL_*` variables (headers, timeout) and the SDK the sampler
//! ones (`OTEL_TRACES_SAMPLER`, default `parentbased_always_on`). When off, no span carries an OpenTelemetry
//! context, nothing is injected into stream entries, and the edge creates no delivery spans.
//!
//! Metrics use the `metrics` facade, whose recorder is process-global by design: [`prometheus`] installs one
//! recorder per process, on first use, and every server of the process (several in tests) renders it. Metric
//! handles must be registered after it is installed, so servers call it before building theirs.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

/// Set once an OTLP layer has been built in this process ([`otel_layer`]). Until then no span can carry an
/// OpenTelemetry context, so the publish path skips its per-call span and context injection altogether.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans of this process can reach an OTLP exporter (an [`otel_layer`] was built).
#[must_use]
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Latency buckets, in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Queue-size buckets, in bytes: 256 B to 4 MiB.
const BYTES_BUCKETS: &[f64] = &[256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262_144.0, 1_048_576.0, 4_194_304.0];

/// Why the trace pipeline could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter rejected its configuration (e.g. a malformed endpoint).
    #[error("building the OTLP exporter for {endpoint}: {source}")]
    Exporter {
        /// The configured endpoint.
        endpoint: String,
        /// What the exporter said.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// How often the recorder's histograms are folded into their buckets, scraped or not.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The process's Prometheus recorder, installed as the global `metrics` recorder on first call.
///
/// Bound: histogram samples are kept raw until upkeep folds them into fixed buckets, so upkeep runs every
/// [`UPKEEP_INTERVAL`] on a thread of its own. Left to scrapes, a process nobody scraped kept every sample
/// (~1 GB an hour at 19,000 deliveries/s).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(bytes_metrics(), BYTES_BUCKETS));
        let recorder = match builder {
            Ok(builder) => builder.build_recorder(),
            // Bucket lists are constants and non-empty, so this arm is unreachable in practice.
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will stay empty");
        }
        spawn_upkeep(handle.clone());
        handle
    })
}

/// Runs the recorder's upkeep every [`UPKEEP_INTERVAL`] for the life of the process: a plain thread, so it
/// needs no runtime and no slow task can delay it.
fn spawn_upkeep(handle: PrometheusHandle) {
    let started = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
        loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            handle.run_upkeep();
        }
    });
    if let Err(err) = started {
        tracing::error!(%err, "cannot start the metrics upkeep thread; histograms grow until scraped");
    }
}

fn bytes_metrics() -> metrics_exporter_prometheus::Matcher {
    metrics_exporter_prometheus::Matcher::Suffix("_bytes".to_owned())
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
#[must_use]
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Where and as whom to export spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The collector's OTLP/gRPC endpoint, e.g. `http://otel-collector:4317`.
    pub endpoint: String,
    /// `service.name` of the spans, unless `OTEL_SERVICE_NAME` says otherwise.
    pub service_name: String,
    /// Bound on one export call.
    pub timeout: Duration,
}

/// A batching OTLP/gRPC tracer provider. Must be called inside a Tokio runtime (tonic's channel needs one).
/// The caller keeps it and calls `shutdown` on exit so the last spans are flushed.
pub fn otlp_tracer_provider(config: &OtlpConfig) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.endpoint.clone())
        .with_timeout(config.timeout)
        .build()
        .map_err(|source| TelemetryError::Exporter { endpoint: config.endpoint.clone(), source })?;
    // `Resource::builder` applies OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES over this default.
    let resource = Resource::builder().with_service_name(config.service_name.clone()).build();
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

/// A `tracing` layer exporting the `publish` and `deliver` spans of crier's crates through `provider`.
/// Filtered on its own, so `RUST_LOG` shapes the logs without silently dropping traces.
pub fn otel_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    let targets = Targets::new()
        .with_target("crier_broker", tracing::Level::INFO)
        .with_target("crier_edge", tracing::Level::INFO);
    EXPORTING.store(true, Ordering::Relaxed);
    tracing_opentelemetry::layer().with_tracer(provider.tracer("crier")).with_filter(targets)
}

/// The W3C trace context (`traceparent`, `tracestate`) of `span`, or an empty map when the span is not
/// sampled (tracing off, or not sampled), so unsampled entries carry nothing.
#[must_use]
pub fn inject(span: &tracing::Span) -> HashMap<String, String> {
    let mut map = HashMap::new();
    if !exporting() {
        return map;
    }
    let cx = span.context();
    if cx.span().span_context().is_sampled() {
        TraceContextPropagator::new().inject_context(&cx, &mut MapCarrier(&mut map));
    }
    map
}

/// Makes the context carried in `map` (a stream entry's `trace_context`) the parent of `span`.
pub fn set_parent_from_map(span: &tracing::Span, map: &HashMap<String, String>) {
    let cx = TraceContextPropagator::new().extract(&MapReader(map));
    let _ = span.set_parent(cx);
}

struct MapCarrier<'a>(&'a mut HashMap<String, String>);

impl Injector for MapCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct MapReader<'a>(&'a HashMap<String, String>);

impl Extractor for MapReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without an OpenTelemetry layer no span is sampled, so nothing is injected into stream entries.
    #[test]
    fn nothing_is_injected_when_tracing_is_off() {
        let span = tracing::info_span!("publish");
        assert!(inject(&span).is_empty());
    }

    /// Installing the recorder starts its upkeep thread, so histograms are folded whether or not anyone
    /// scrapes (Linux: threads are listed in /proc).
    #[test]
    fn installing_the_recorder_starts_upkeep() {
        let _ = prometheus();
        // The thread names itself once it runs: wait for that, up to 5 s.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !thread_names().iter().any(|n| n == "metrics-upkeep") {
            assert!(std::time::Instant::now() < deadline, "no upkeep thread: {:?}", thread_names());
            std::thread::yield_now();
        }
    }

    fn thread_names() -> Vec<String> {
        let threads = std::fs::read_dir("/proc/self/task").unwrap();
        threads
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .collect()
    }

    /// A `traceparent` in a map round-trips through the extractor.
    #[test]
    fn map_reader_reads_traceparent() {
        let map = HashMap::from([("traceparent".to_owned(), "00-aa-bb-01".to_owned())]);
        assert_eq!(MapReader(&map).get("traceparent"), Some("00-aa-bb-01"));
    }
}
