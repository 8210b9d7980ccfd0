//! The tracing-subscriber side: which layers a process gets (spans, OTel logs, the JSON file, the
//! console) and what each one lets through.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

use crate::{EXPORT_TARGET, InitError, LogsConfig, jsonlog};

/// Export traffic and the SDK's own diagnostics must never feed back into the OTel pipeline
/// (nor the library's export warnings, [`EXPORT_TARGET`]).
const OTEL_LAYER_EXCLUSIONS: &str =
    "tonic=off,h2=off,hyper=off,tower=off,reqwest=off,opentelemetry=off";

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The subscriber, not installed, and the JSON file's guard. `scope` names the tracer.
pub(crate) fn build(
    c: &LogsConfig,
    tracer: Option<&SdkTracerProvider>,
    logger: Option<&SdkLoggerProvider>,
    scope: &str,
) -> Result<(tracing::Dispatch, Option<WorkerGuard>), InitError> {
    let log_filter = |extra: &str| filter(&c.filter, extra);
    let otel_exclusions = format!("{OTEL_LAYER_EXCLUSIONS},{EXPORT_TARGET}=off");
    let mut layers: Vec<BoxedLayer> = Vec::new();
    if let Some(tp) = tracer {
        // Events become OTel log records through the bridge below; only ERROR events are
        // also kept on the span, where they set its status. Location, thread and timing
        // attributes are off: they cost allocations on every span and Jaeger shows timing.
        let spans_and_errors = filter_fn(|m| m.is_span() || *m.level() == Level::ERROR);
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(tp.tracer(scope.to_owned()))
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_tracked_inactivity(false)
                .with_filter(log_filter(&otel_exclusions)?.and(spans_and_errors))
                .boxed(),
        );
    }
    if let Some(lp) = logger {
        layers.push(
            OpenTelemetryTracingBridge::new(lp)
                .with_filter(log_filter(&otel_exclusions)?)
                .boxed(),
        );
    }
    let file_guard = match &c.file {
        Some(file) => {
            let (layer, guard) = jsonlog::layer(file)?;
            layers.push(layer.with_filter(log_filter("")?).boxed());
            Some(guard)
        }
        None => None,
    };
    if c.console {
        layers.push(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(filter(c.console_directives(), "")?)
                .boxed(),
        );
    }
    Ok((
        tracing::Dispatch::new(Registry::default().with(layers)),
        file_guard,
    ))
}

/// The user's directives plus `extra`; INFO where they say nothing.
fn filter(user: &str, extra: &str) -> Result<EnvFilter, InitError> {
    let mut directives = user_directives(user);
    if !extra.is_empty() {
        directives = format!("{directives},{extra}");
    }
    EnvFilter::builder()
        .with_default_directive(Level::INFO.into())
        .parse(&directives)
        .map_err(|source| InitError::Filter {
            directives: user.to_owned(),
            source,
        })
}

/// The user's directives, plus silence for the SDK's internal logs (they repeat on every failed
/// export; the library reports export trouble once itself) unless the user asked for them.
fn user_directives(user: &str) -> String {
    if user.contains("opentelemetry") {
        user.to_owned()
    } else {
        format!("{user},opentelemetry=off")
    }
}
