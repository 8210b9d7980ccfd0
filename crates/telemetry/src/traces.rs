//! Traces: the OTLP span exporter behind a batch processor, and the sampler.

use std::sync::Arc;

use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};

use crate::export::{Counted, ExportHealth, Signal, batch_config, watched_exporter};
use crate::{ExportConfig, InitError, SamplerConfig};

pub(crate) fn init_traces(
    c: &ExportConfig,
    resource: Resource,
    health: &Arc<ExportHealth>,
) -> Result<SdkTracerProvider, InitError> {
    let builder = SpanExporter::builder().with_tonic();
    let exporter = watched_exporter(Signal::Traces, builder, |b| b.build(), c, health)?;
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch_config!(BatchConfigBuilder, c.span_batch))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(Counted::new(processor, health))
        .with_sampler(sampler(c.sampler))
        .with_resource(resource)
        .build())
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
