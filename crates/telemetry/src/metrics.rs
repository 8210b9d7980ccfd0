//! Metrics: one meter provider with two readers, a periodic OTLP push and the Prometheus
//! registry behind `/metrics`, and second-scale buckets for every histogram in seconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{
    Aggregation, Instrument, InstrumentKind, PeriodicReader, SdkMeterProvider, Stream, Temporality,
};

use crate::export::{ExportHealth, Signal, watched};
use crate::hotpath::otlp::Otlp;
use crate::hotpath::send::{self, GiveUp, Out};
use crate::spool::Spool;
use crate::{ExportConfig, ExporterKind, InitError};

/// The meter provider, what `/metrics` serves, and what makes the OTLP push give up retrying.
pub(crate) struct Metrics {
    pub(crate) provider: SdkMeterProvider,
    pub(crate) registry: prometheus::Registry,
    pub(crate) give_up: Option<GiveUp>,
}

/// Histogram boundaries for durations in seconds: tens of milliseconds up to the seeds' 2 s
/// threshold and beyond, so P95/P99 and "batch over 2 s" can be read off the buckets.
pub const DURATION_BUCKETS_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 5.0, 7.5, 10.0,
];

pub(crate) fn init_metrics(
    c: &ExportConfig,
    resource: Resource,
    health: &Arc<ExportHealth>,
    runtime: &tokio::runtime::Handle,
    spool: Option<Spool>,
) -> Result<Metrics, InitError> {
    let registry = prometheus::Registry::new();
    let prometheus_reader = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .build()
        .map_err(InitError::Prometheus)?;
    let builder = SdkMeterProvider::builder()
        .with_reader(prometheus_reader)
        .with_view(seconds_histograms)
        .with_resource(resource);
    let s = &c.metrics;
    // `/metrics` serves whatever the exporter: `none` only stops the push.
    let mut give_up = None;
    let builder = match s.exporter {
        ExporterKind::Otlp => {
            let transport = Otlp::new(Signal::Metrics, s, spool, health)?;
            let queued = Arc::new(AtomicUsize::new(0));
            let (to_sender, until) = send::start(
                Signal::Metrics,
                transport,
                runtime.clone(),
                health,
                queued.clone(),
            )
            .map_err(InitError::Thread)?;
            give_up = Some(until);
            let exporter = OtlpMetrics {
                to_sender,
                queued,
                health: health.clone(),
            };
            builder.with_reader(
                PeriodicReader::builder(exporter)
                    .with_interval(c.metric_interval)
                    .build(),
            )
        }
        ExporterKind::Console => {
            let console = Ok(opentelemetry_stdout::MetricExporter::default());
            let exporter = watched(Signal::Metrics, console, s, health)?;
            builder.with_reader(
                PeriodicReader::builder(exporter)
                    .with_interval(c.metric_interval)
                    .build(),
            )
        }
        ExporterKind::None => builder,
    };
    Ok(Metrics {
        provider: builder.build(),
        registry,
        give_up,
    })
}

/// Every histogram measured in seconds gets [`DURATION_BUCKETS_SECONDS`].
fn seconds_histograms(i: &Instrument) -> Option<Stream> {
    (i.kind() == InstrumentKind::Histogram && i.unit() == "s")
        .then(|| {
            Stream::builder()
                .with_aggregation(Aggregation::ExplicitBucketHistogram {
                    boundaries: DURATION_BUCKETS_SECONDS.to_vec(),
                    record_min_max: true,
                })
                .build()
                .ok()
        })
        .flatten()
}

/// The OTLP metric exporter: each export's points encoded as protobuf and handed to the metrics'
/// sending thread (send.rs), which delivers them with retries, and keeps what it cannot deliver
/// in the spool, like the spans and log records. An export returns once the request is handed
/// over; shutdown waits for the sending thread, within its deadline.
#[derive(Debug)]
struct OtlpMetrics {
    to_sender: mpsc::Sender<Out<Bytes>>,
    queued: Arc<AtomicUsize>,
    health: Arc<ExportHealth>,
}

impl PushMetricExporter for OtlpMetrics {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let request = ExportMetricsServiceRequest::from(metrics);
        let points = data_points(&request);
        if points == 0 {
            return Ok(());
        }
        self.health.taken(Signal::Metrics, points as u64);
        self.queued.fetch_add(points, Relaxed);
        let body = Bytes::from(prost::Message::encode_to_vec(&request));
        self.to_sender
            .send(Out::Request(body, points))
            .map_err(|_| OTelSdkError::AlreadyShutdown)
    }

    fn force_flush(&self) -> OTelSdkResult {
        send::drain(&self.to_sender, false, FORCE_FLUSH_TIMEOUT)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        send::drain(&self.to_sender, true, timeout)
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

/// How long a force flush waits for the metrics' sending thread.
const FORCE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The data points of a request: what the metric counts are in.
fn data_points(request: &ExportMetricsServiceRequest) -> usize {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let metrics = request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics);
    metrics
        .map(|m| match &m.data {
            Some(Data::Gauge(d)) => d.data_points.len(),
            Some(Data::Sum(d)) => d.data_points.len(),
            Some(Data::Histogram(d)) => d.data_points.len(),
            Some(Data::ExponentialHistogram(d)) => d.data_points.len(),
            Some(Data::Summary(d)) => d.data_points.len(),
            None => 0,
        })
        .sum()
}
