//! Metrics: one meter provider with two readers, a periodic OTLP push and the Prometheus
//! registry behind `/metrics`, and second-scale buckets for every histogram in seconds.

use std::sync::Arc;

use opentelemetry_otlp::MetricExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{
    Aggregation, Instrument, InstrumentKind, PeriodicReader, SdkMeterProvider, Stream,
};

use crate::export::{ExportHealth, Signal, watched};
use crate::transport::otlp_exporter;
use crate::{ExportConfig, ExporterKind, InitError};

/// Histogram boundaries for durations in seconds: tens of milliseconds up to the seeds' 2 s
/// threshold and beyond, so P95/P99 and "batch over 2 s" can be read off the buckets.
pub const DURATION_BUCKETS_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 5.0, 7.5, 10.0,
];

pub(crate) fn init_metrics(
    c: &ExportConfig,
    resource: Resource,
    health: &Arc<ExportHealth>,
) -> Result<(SdkMeterProvider, prometheus::Registry), InitError> {
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
    let builder = match s.exporter {
        ExporterKind::Otlp => {
            let exporter = watched(
                Signal::Metrics,
                otlp_exporter!(MetricExporter, s),
                s,
                health,
            )?;
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
    Ok((builder.build(), registry))
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
