//! Logs: the OTLP log exporter behind a batch processor; `tracing` events reach it through the
//! appender bridge (see layers.rs).

use std::sync::Arc;

use opentelemetry_otlp::LogExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{BatchConfigBuilder, BatchLogProcessor, SdkLoggerProvider};

use crate::export::{Counted, ExportHealth, Signal, batch_config, watched_exporter};
use crate::{ExportConfig, InitError};

pub(crate) fn init_logs(
    c: &ExportConfig,
    resource: Resource,
    health: &Arc<ExportHealth>,
) -> Result<SdkLoggerProvider, InitError> {
    let builder = LogExporter::builder().with_tonic();
    let exporter = watched_exporter(Signal::Logs, builder, |b| b.build(), c, health)?;
    let processor = BatchLogProcessor::builder(exporter)
        .with_batch_config(batch_config!(BatchConfigBuilder, c.log_batch))
        .build();
    Ok(SdkLoggerProvider::builder()
        .with_log_processor(Counted::new(processor, health))
        .with_resource(resource)
        .build())
}
