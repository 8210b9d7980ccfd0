//! Traces: the configured span exporter (OTLP over gRPC or HTTP, the console, or none) behind a
//! batch processor, the sampler and the span limits.

use std::sync::Arc;

use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, TracerProviderBuilder,
};

use crate::export::{Counted, ExportHealth, Signal, batch_config, watched};
use crate::transport::otlp_exporter;
use crate::{ExportConfig, ExporterKind, InitError, SamplerConfig};

pub(crate) fn init_traces(
    c: &ExportConfig,
    resource: Resource,
    health: &Arc<ExportHealth>,
) -> Result<SdkTracerProvider, InitError> {
    let l = c.span_limits;
    let builder = SdkTracerProvider::builder()
        .with_sampler(sampler(c.sampler))
        .with_max_attributes_per_span(l.attributes_per_span)
        .with_max_events_per_span(l.events_per_span)
        .with_max_links_per_span(l.links_per_span)
        .with_max_attributes_per_event(l.attributes_per_event)
        .with_max_attributes_per_link(l.attributes_per_link)
        .with_resource(resource);
    let s = &c.traces;
    Ok(match s.exporter {
        ExporterKind::Otlp => {
            let exporter = watched(Signal::Traces, otlp_exporter!(SpanExporter, s), s, health)?;
            with_exporter(builder, exporter, c, health)
        }
        ExporterKind::Console => {
            let console = Ok(opentelemetry_stdout::SpanExporter::default());
            with_exporter(
                builder,
                watched(Signal::Traces, console, s, health)?,
                c,
                health,
            )
        }
        ExporterKind::None => builder,
    }
    .build())
}

fn with_exporter(
    builder: TracerProviderBuilder,
    exporter: impl opentelemetry_sdk::trace::SpanExporter + 'static,
    c: &ExportConfig,
    health: &Arc<ExportHealth>,
) -> TracerProviderBuilder {
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch_config!(BatchConfigBuilder, c.span_batch))
        .build();
    builder.with_span_processor(
        Counted::new(processor, health)
            .with_value_length_limit(c.span_limits.attribute_value_length),
    )
}

fn sampler(c: SamplerConfig) -> Sampler {
    let parent_based = |root| Sampler::ParentBased(Box::new(root));
    match c {
        SamplerConfig::AlwaysOn => Sampler::AlwaysOn,
        SamplerConfig::AlwaysOff => Sampler::AlwaysOff,
        SamplerConfig::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
        SamplerConfig::ParentBasedAlwaysOn => parent_based(Sampler::AlwaysOn),
        SamplerConfig::ParentBasedAlwaysOff => parent_based(Sampler::AlwaysOff),
        SamplerConfig::ParentBasedTraceIdRatio(r) => parent_based(Sampler::TraceIdRatioBased(r)),
    }
}
