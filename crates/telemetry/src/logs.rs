//! Logs: the configured log exporter behind the hot path's queue (OTLP over gRPC or HTTP, encoded
//! straight from the queue's items; the console through the SDK's log records; or none);
//! `tracing` events reach it through the hot path's layer.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _};
use opentelemetry::{InstrumentationScope, Key};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, SdkLogRecord, SdkLogger, SdkLoggerProvider};

use crate::export::{ExportHealth, Signal, watched};
use crate::hotpath::layer::{LogItem, Plain, severity};
use crate::hotpath::otlp::{Encoder, Otlp};
use crate::hotpath::queue::{Encode, Queue};
use crate::hotpath::send::Transport;
use crate::spool::Spool;
use crate::{ExportConfig, ExporterKind, InitError};

/// The log records' queue; None for `OTEL_LOGS_EXPORTER=none`.
pub(crate) fn init_logs(
    c: &ExportConfig,
    resource: &Resource,
    health: &Arc<ExportHealth>,
    runtime: &tokio::runtime::Handle,
    spool: Option<Spool>,
) -> Result<Option<Arc<Queue<LogItem>>>, InitError> {
    let s = &c.logs;
    Ok(match s.exporter {
        ExporterKind::Otlp => {
            let sender = Otlp::new(Signal::Logs, s, spool, health)?;
            // Scopes are the records' targets, as the SDK's exporter names them.
            let encoder = Encoder::new(resource, "", None);
            let queue = Queue::start(
                Signal::Logs,
                c.log_batch,
                encoder,
                sender,
                runtime.clone(),
                health,
            );
            Some(queue)
        }
        ExporterKind::Console => {
            let console = Ok(opentelemetry_stdout::LogExporter::default());
            let exporter = watched(Signal::Logs, console, s, health)?;
            Some(queue(exporter, c, resource, health, runtime))
        }
        ExporterKind::None => None,
    })
}

fn queue(
    mut exporter: impl LogExporter + 'static,
    c: &ExportConfig,
    resource: &Resource,
    health: &Arc<ExportHealth>,
    runtime: &tokio::runtime::Handle,
) -> Arc<Queue<LogItem>> {
    exporter.set_resource(resource);
    // The appender bridge's scope: no name.
    let scope = InstrumentationScope::builder("").build();
    let encoder = Logs {
        // Only for its records: the SDK makes them through a logger alone.
        logger: SdkLoggerProvider::builder()
            .build()
            .logger_with_scope(scope.clone()),
    };
    let transport = Exporter { exporter, scope };
    Queue::start(
        Signal::Logs,
        c.log_batch,
        encoder,
        transport,
        runtime.clone(),
        health,
    )
}

/// The SDK's log records for an exporter that takes them (the console).
struct Logs {
    logger: SdkLogger,
}

impl Encode<LogItem> for Logs {
    type Request = Vec<SdkLogRecord>;

    fn encode(&mut self, batch: &mut Vec<LogItem>) -> Vec<SdkLogRecord> {
        batch.drain(..).map(|i| self.record(i)).collect()
    }
}

/// An SDK log exporter as the queue's transport.
struct Exporter<E> {
    exporter: E,
    scope: InstrumentationScope,
}

impl<E: LogExporter + 'static> Transport<Vec<SdkLogRecord>> for Exporter<E> {
    async fn send(&self, records: Vec<SdkLogRecord>, _: usize) -> OTelSdkResult {
        let pairs: Vec<_> = records.iter().map(|r| (r, &self.scope)).collect();
        self.exporter.export(LogBatch::new(&pairs)).await
    }

    fn shutdown(&mut self, timeout: Duration) -> OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }
}

impl Logs {
    fn record(&self, item: LogItem) -> SdkLogRecord {
        let mut r = self.logger.create_log_record();
        r.set_observed_timestamp(item.observed);
        r.set_target(item.target);
        r.set_event_name(item.name);
        r.set_severity_number(severity(item.level));
        r.set_severity_text(item.level.as_str());
        if let Some(body) = &item.body {
            r.set_body(AnyValue::from(body.to_string()));
        }
        r.add_attributes(item.attrs.iter().map(|(key, value)| {
            let value = match value {
                Plain::Str(s) => AnyValue::from(s.to_owned()),
                Plain::I64(v) => AnyValue::Int(v),
                Plain::F64(v) => AnyValue::Double(v),
                Plain::Bool(v) => AnyValue::Boolean(v),
            };
            (Key::from(key.to_owned()), value)
        }));
        if let Some((trace_id, span_id, flags)) = item.trace {
            r.set_trace_context(trace_id, span_id, Some(flags));
        }
        r
    }
}
