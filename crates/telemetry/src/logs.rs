//! Logs: the configured log exporter (OTLP over gRPC or HTTP, the console, or none) behind a
//! batch processor; `tracing` events reach it through the appender bridge (see layers.rs).

use std::sync::Arc;

use opentelemetry_otlp::LogExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{
    BatchConfigBuilder, BatchLogProcessor, LoggerProviderBuilder, SdkLoggerProvider,
};

use crate::export::{Counted, ExportHealth, Signal, batch_config, watched};
use crate::transport::otlp_exporter;
use crate::{ExportConfig, ExporterKind, InitError};

/// None for `OTEL_LOGS_EXPORTER=none`: no appender bridge at all.
pub(crate) fn init_logs(
    c: &ExportConfig,
    resource: Resource,
    health: &Arc<ExportHealth>,
) -> Result<Option<SdkLoggerProvider>, InitError> {
    let builder = SdkLoggerProvider::builder().with_resource(resource);
    let s = &c.logs;
    let builder = match s.exporter {
        ExporterKind::Otlp => {
            let exporter = watched(Signal::Logs, otlp_exporter!(LogExporter, s), s, health)?;
            with_exporter(builder, exporter, c, health)
        }
        ExporterKind::Console => {
            let console = Ok(opentelemetry_stdout::LogExporter::default());
            with_exporter(
                builder,
                watched(Signal::Logs, console, s, health)?,
                c,
                health,
            )
        }
        ExporterKind::None => return Ok(None),
    };
    Ok(Some(builder.build()))
}

fn with_exporter(
    builder: LoggerProviderBuilder,
    exporter: impl opentelemetry_sdk::logs::LogExporter + 'static,
    c: &ExportConfig,
    health: &Arc<ExportHealth>,
) -> LoggerProviderBuilder {
    let processor = BatchLogProcessor::builder(exporter)
        .with_batch_config(batch_config!(BatchConfigBuilder, c.log_batch))
        .build();
    builder.with_log_processor(Counted::new(processor, health))
}
