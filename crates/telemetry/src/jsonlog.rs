//! The local JSON log file (seeds 000/001): one object a line with timestamp, level, target,
//! message, the event's fields, the enclosing span's name, and trace_id/span_id; rotated daily,
//! written off the logging thread.
//!
//! The ids come from the active OpenTelemetry context, the same place the OTLP log bridge takes
//! them from, so a file line and its OTLP record always carry the same ids.

use std::fmt;
use std::path::Path;

use crate::hotpath::layer::SpanState;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::{InitError, LogFileConfig};

/// The file layer, and the guard that flushes its writer thread when dropped.
pub(crate) fn layer<S>(
    file: &LogFileConfig,
) -> Result<(impl Layer<S> + Send + Sync, WorkerGuard), InitError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let (writer, guard) = tracing_appender::non_blocking(rolling_file(file)?);
    let layer = tracing_subscriber::fmt::layer()
        .event_format(JsonLines)
        .with_writer(writer)
        .with_ansi(false);
    Ok((layer, guard))
}

fn rolling_file(file: &LogFileConfig) -> Result<RollingFileAppender, InitError> {
    fn part<'a>(s: Option<&'a std::ffi::OsStr>, default: &'a str) -> &'a str {
        s.and_then(|s| s.to_str()).unwrap_or(default)
    }
    let path = &file.path;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Before the appender: it prunes old files first, and says so on stderr if it cannot read
    // the directory.
    std::fs::create_dir_all(dir).map_err(|source| InitError::LogDir {
        path: dir.display().to_string(),
        source,
    })?;
    RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .max_log_files(file.max_files)
        .filename_prefix(part(path.file_stem(), "telemetry"))
        .filename_suffix(part(path.extension(), "log"))
        .build(dir)
        .map_err(|source| InitError::LogFile {
            path: path.display().to_string(),
            source,
        })
}

/// A [`FormatEvent`] writing one JSON object per event.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::with_capacity(32);
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let meta = event.metadata();

        let mut fields = FieldMap(Map::new());
        event.record(&mut fields);
        let mut line = Map::new();
        line.insert("timestamp".into(), timestamp.into());
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        line.insert(
            "message".into(),
            fields.0.remove("message").unwrap_or(Value::Null),
        );
        if let Some(span) = ctx.lookup_current() {
            line.insert("span".into(), span.name().into());
            if let Some(state) = span.extensions().get::<SpanState>() {
                line.insert("trace_id".into(), state.cx.trace_id().to_string().into());
                line.insert("span_id".into(), state.cx.span_id().to_string().into());
            }
        }
        line.insert("fields".into(), Value::Object(fields.0));

        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

struct FieldMap(Map<String, Value>);

impl Visit for FieldMap {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}
