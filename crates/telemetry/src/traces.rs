//! Traces: the configured span exporter behind the hot path's queue (OTLP over gRPC or HTTP,
//! encoded straight from the queue's items; the console through the SDK's `SpanData`; or none),
//! the sampler and the span limits.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SpanData, SpanEvents, SpanExporter, SpanLinks};

use crate::export::{ExportHealth, Signal, watched};
use crate::hotpath::layer::{FinishedSpan, Plain};
use crate::hotpath::otlp::Otlp;
use crate::hotpath::otlp::{Encoder, cut};
use crate::hotpath::queue::{Encode, Queue};
use crate::hotpath::send::Transport;
use crate::spool::Spool;
use crate::{ExportConfig, ExporterKind, InitError, SamplerConfig};

/// The spans' queue; None for `OTEL_TRACES_EXPORTER=none` (spans still get their ids, which the
/// log records carry). `scope` names the tracer.
pub(crate) fn init_traces(
    c: &ExportConfig,
    resource: &Resource,
    scope: &str,
    health: &Arc<ExportHealth>,
    runtime: &tokio::runtime::Handle,
    spool: Option<Spool>,
) -> Result<Option<Arc<Queue<FinishedSpan>>>, InitError> {
    let s = &c.traces;
    Ok(match s.exporter {
        ExporterKind::Otlp => {
            let sender = Otlp::new(Signal::Traces, s, spool, health)?;
            let encoder = Encoder::new(resource, scope, c.span_limits.attribute_value_length);
            let q = Queue::start(
                Signal::Traces,
                c.span_batch,
                encoder,
                sender,
                runtime.clone(),
                health,
            );
            Some(q)
        }
        ExporterKind::Console => {
            let console = Ok(opentelemetry_stdout::SpanExporter::default());
            let exporter = watched(Signal::Traces, console, s, health)?;
            Some(queue(exporter, c, resource, scope, health, runtime))
        }
        ExporterKind::None => None,
    })
}

fn queue(
    mut exporter: impl SpanExporter + 'static,
    c: &ExportConfig,
    resource: &Resource,
    scope: &str,
    health: &Arc<ExportHealth>,
    runtime: &tokio::runtime::Handle,
) -> Arc<Queue<FinishedSpan>> {
    exporter.set_resource(resource);
    let encoder = Spans {
        scope: InstrumentationScope::builder(scope.to_owned()).build(),
        value_length_limit: c.span_limits.attribute_value_length,
    };
    let transport = Exporter(exporter);
    Queue::start(
        Signal::Traces,
        c.span_batch,
        encoder,
        transport,
        runtime.clone(),
        health,
    )
}

/// The SDK's `SpanData` for an exporter that takes it (the console).
struct Spans {
    scope: InstrumentationScope,
    value_length_limit: Option<usize>,
}

impl Encode<FinishedSpan> for Spans {
    type Request = Vec<SpanData>;

    fn encode(&mut self, batch: &mut Vec<FinishedSpan>) -> Vec<SpanData> {
        batch.drain(..).map(|s| self.span_data(s)).collect()
    }
}

/// An SDK span exporter as the queue's transport.
struct Exporter<E>(E);

impl<E: SpanExporter + 'static> Transport<Vec<SpanData>> for Exporter<E> {
    fn send(&self, spans: Vec<SpanData>, _: usize) -> impl Future<Output = OTelSdkResult> {
        self.0.export(spans)
    }

    fn shutdown(&mut self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
}

impl Spans {
    fn span_data(&self, span: FinishedSpan) -> SpanData {
        let limit = self.value_length_limit;
        let name = Cow::Owned(span.recording.name().to_owned());
        let attributes = span
            .recording
            .attrs
            .iter()
            .map(|(key, value)| {
                // Cut to the limit already, when recorded.
                let value = match value {
                    Plain::Str(s) => Value::String(s.to_owned().into()),
                    Plain::I64(v) => Value::I64(v),
                    Plain::F64(v) => Value::F64(v),
                    Plain::Bool(v) => Value::Bool(v),
                };
                KeyValue::new(key.to_owned(), value)
            })
            .collect();
        let r = span.recording;
        let mut events = SpanEvents::default();
        events.events = r.events;
        events.dropped_count = r.dropped_events;
        if let Some(limit) = limit {
            for kv in events.events.iter_mut().flat_map(|e| &mut e.attributes) {
                if let Value::String(s) = &kv.value {
                    kv.value = Value::String(cut(s.as_str(), Some(limit)).to_owned().into());
                }
            }
        }
        SpanData {
            span_context: span.cx,
            parent_span_id: span.parent,
            parent_span_is_remote: span.parent_remote,
            span_kind: r.kind,
            name,
            start_time: r.start,
            end_time: span.end,
            attributes,
            dropped_attributes_count: r.attrs.dropped,
            events,
            links: SpanLinks::default(),
            status: r.status,
            instrumentation_scope: self.scope.clone(),
        }
    }
}

pub(crate) fn sampler(c: SamplerConfig) -> Sampler {
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
