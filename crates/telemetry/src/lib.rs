//! One-call telemetry for the workspace's binaries: traces, logs and metrics over OTLP/gRPC,
//! a rotated JSON log file, console output, and `/metrics`, `/healthz`, `/readyz`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = telemetry::Config::from_env(telemetry::Defaults {
//!     service_name: "invbot".into(),
//!     service_version: env!("CARGO_PKG_VERSION").into(),
//!     metrics_addr: Some(([127, 0, 0, 1], 9100).into()),
//! })?;
//! let guard = telemetry::Telemetry::builder(config).init()?;
//! tracing::info!("working");
//! let report = guard.shutdown(); // traces, then logs, then metrics, within the deadline
//! # Ok(()) }
//! ```
//!
//! Only this crate touches the OTel SDK and tracing-subscriber; everything else uses `tracing`
//! and the `opentelemetry` metrics API.

mod config;
mod export;
mod jsonlog;
pub mod names;
mod propagation;
mod resources;
mod server;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{BatchLogProcessor, SdkLoggerProvider};
use opentelemetry_sdk::metrics::{
    Aggregation, Instrument, InstrumentKind, PeriodicReader, SdkMeterProvider, Stream,
};
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider};
use tracing::Level;
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

pub use config::{
    BatchSettings, Config, ConfigError, DEFAULT_ENDPOINT, Defaults, LogFileConfig, MetricsAddr,
    SamplerConfig,
};
pub use jsonlog::JsonLines;
pub use propagation::{inject_context, set_parent_from_headers, trace_id};
pub use resources::{LatestSample, ResourceSample};
pub use server::ReadinessCheck;

/// Histogram boundaries for durations in seconds: tens of milliseconds up to the seeds' 2 s
/// threshold and beyond, so P95/P99 and "batch over 2 s" can be read off the buckets.
pub const DURATION_BUCKETS_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 5.0, 7.5, 10.0,
];

/// Export traffic and the SDK's own diagnostics must never feed back into the OTel pipeline.
const OTEL_LAYER_EXCLUSIONS: &str =
    "tonic=off,h2=off,hyper=off,tower=off,reqwest=off,opentelemetry=off,telemetry::export=off";

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("telemetry needs a tokio runtime: call init() inside a multi-thread tokio runtime")]
    NoRuntime,
    #[error("{directives:?} is not a valid log filter (RUST_LOG / INV_CONSOLE_FILTER syntax)")]
    Filter {
        directives: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot build the OTLP {signal} exporter for {endpoint}")]
    Exporter {
        signal: &'static str,
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("cannot build the Prometheus exporter behind /metrics")]
    Prometheus(#[source] opentelemetry_sdk::error::OTelSdkError),
    #[error("cannot open the JSON log file {path}")]
    LogFile {
        path: String,
        #[source]
        source: tracing_appender::rolling::InitError,
    },
    #[error("cannot create the log directory {path}")]
    LogDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled(#[source] tracing::subscriber::SetGlobalDefaultError),
}

/// Sets up telemetry from a [`Config`]: `build()` for a scoped subscriber (tests, benchmarks),
/// `init()` to install it process-wide.
#[must_use]
pub struct Telemetry {
    config: Config,
    readiness: Option<ReadinessCheck>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    pub fn builder(config: Config) -> Self {
        Self {
            config,
            readiness: None,
        }
    }

    /// What `/readyz` checks: the service's dependencies, e.g. its database.
    pub fn readiness<F, Fut>(mut self, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.readiness = Some(Arc::new(move || Box::pin(check())));
        self
    }

    /// Installs the subscriber globally, plus the global meter and tracer providers.
    pub fn init(self) -> Result<TelemetryGuard, InitError> {
        let (dispatch, guard) = self.build()?;
        tracing::dispatcher::set_global_default(dispatch).map_err(InitError::AlreadyInstalled)?;
        if let Some(p) = &guard.providers.meter {
            opentelemetry::global::set_meter_provider(p.clone());
        }
        if let Some(p) = &guard.providers.tracer {
            opentelemetry::global::set_tracer_provider(p.clone());
        }
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        Ok(guard)
    }

    /// Builds everything without installing it: use the dispatch with
    /// `tracing::dispatcher::with_default` and meters from [`TelemetryGuard::meter`].
    pub fn build(self) -> Result<(tracing::Dispatch, TelemetryGuard), InitError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| InitError::NoRuntime)?;
        let c = &self.config;
        let health = Arc::new(export::ExportHealth::default());
        let providers = if c.sdk_disabled {
            Providers::default()
        } else {
            Providers::build(c, &health)?
        };

        let filter_from = |user: &str, extra: &str| {
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
        };
        let filter = |extra: &str| filter_from(&c.log_filter, extra);

        let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
        if let Some(tp) = &providers.tracer {
            // Events become OTel log records through the bridge below; only ERROR events are
            // also kept on the span, where they set its status. Location, thread and timing
            // attributes are off: they cost allocations on every span and Jaeger shows timing.
            let spans_and_errors = filter_fn(|m| m.is_span() || *m.level() == Level::ERROR);
            layers.push(
                tracing_opentelemetry::layer()
                    .with_tracer(tp.tracer(c.service_name.clone()))
                    .with_location(false)
                    .with_threads(false)
                    .with_target(false)
                    .with_tracked_inactivity(false)
                    .with_filter(filter(OTEL_LAYER_EXCLUSIONS)?.and(spans_and_errors))
                    .boxed(),
            );
        }
        if let Some(lp) = &providers.logger {
            layers.push(
                OpenTelemetryTracingBridge::new(lp)
                    .with_filter(filter(OTEL_LAYER_EXCLUSIONS)?)
                    .boxed(),
            );
        }
        let mut file_guard = None;
        if let Some(file) = &c.log_file {
            let (writer, guard) = tracing_appender::non_blocking(rolling_file(file)?);
            file_guard = Some(guard);
            layers.push(
                tracing_subscriber::fmt::layer()
                    .event_format(JsonLines)
                    .with_writer(writer)
                    .with_ansi(false)
                    .with_filter(filter("")?)
                    .boxed(),
            );
        }
        if c.console {
            layers.push(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_filter(filter_from(
                        c.console_filter.as_deref().unwrap_or(&c.log_filter),
                        "",
                    )?)
                    .boxed(),
            );
        }
        let dispatch = tracing::Dispatch::new(Registry::default().with(layers));

        let meter_provider = providers.meter.clone();
        let sampler = meter_provider.as_ref().and_then(|mp| {
            let sampler = resources::ResourceSampler::start(c.resource_sample_interval)?;
            resources::register(&mp.meter("telemetry.resources"), &sampler.latest());
            Some(sampler)
        });

        let server = c.metrics_addr.and_then(|addr| {
            let _enter = runtime.enter();
            match server::MetricsServer::start(addr, providers.registry.clone(), self.readiness) {
                Ok(server) => Some(server),
                Err(error) => {
                    // A busy port (9100 is node_exporter's too) must not stop the program.
                    tracing::dispatcher::with_default(&dispatch, || {
                        tracing::warn!(target: export::EXPORT_TARGET, %addr, %error,
                            "cannot serve /metrics, /healthz and /readyz; going on without them");
                    });
                    None
                }
            }
        });

        let guard = TelemetryGuard {
            providers,
            health,
            sampler,
            server,
            file_guard,
            endpoint: c.traces_endpoint.clone(),
            shutdown_timeout: c.shutdown_timeout,
            dispatch: dispatch.clone(),
            done: false,
        };
        Ok((dispatch, guard))
    }
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

fn rolling_file(
    file: &LogFileConfig,
) -> Result<tracing_appender::rolling::RollingFileAppender, InitError> {
    let dir = file
        .path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let stem = file
        .path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("telemetry");
    let ext = file
        .path
        .extension()
        .and_then(|s| s.to_str())
        .unwrap_or("log");
    tracing_appender::rolling::RollingFileAppender::builder()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .max_log_files(file.max_files)
        .filename_prefix(stem)
        .filename_suffix(ext)
        .build(dir)
        .map_err(|source| InitError::LogFile {
            path: file.path.display().to_string(),
            source,
        })
}

#[derive(Debug, Default)]
struct Providers {
    tracer: Option<SdkTracerProvider>,
    logger: Option<SdkLoggerProvider>,
    meter: Option<SdkMeterProvider>,
    registry: Option<prometheus::Registry>,
}

impl Providers {
    fn build(c: &Config, health: &Arc<export::ExportHealth>) -> Result<Self, InitError> {
        let resource = resource(c);
        let exporter_err = |signal, endpoint: &str| {
            let endpoint = endpoint.to_owned();
            move |source| InitError::Exporter {
                signal,
                endpoint,
                source,
            }
        };

        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&c.traces_endpoint)
            .with_timeout(c.export_timeout)
            .build()
            .map_err(exporter_err("traces", &c.traces_endpoint))?;
        let b = c.span_batch;
        let span_processor =
            BatchSpanProcessor::builder(export::Watched::new(spans, &c.traces_endpoint, health))
                .with_batch_config(
                    opentelemetry_sdk::trace::BatchConfigBuilder::default()
                        .with_max_queue_size(b.max_queue_size)
                        .with_max_export_batch_size(b.max_export_batch_size)
                        .with_scheduled_delay(b.scheduled_delay)
                        .build(),
                )
                .build();
        let tracer = SdkTracerProvider::builder()
            .with_span_processor(export::Counted::new(span_processor, health))
            .with_sampler(sampler(c.sampler))
            .with_resource(resource.clone())
            .build();

        let logs = opentelemetry_otlp::LogExporter::builder()
            .with_tonic()
            .with_endpoint(&c.logs_endpoint)
            .with_timeout(c.export_timeout)
            .build()
            .map_err(exporter_err("logs", &c.logs_endpoint))?;
        let b = c.log_batch;
        let log_processor =
            BatchLogProcessor::builder(export::Watched::new(logs, &c.logs_endpoint, health))
                .with_batch_config(
                    opentelemetry_sdk::logs::BatchConfigBuilder::default()
                        .with_max_queue_size(b.max_queue_size)
                        .with_max_export_batch_size(b.max_export_batch_size)
                        .with_scheduled_delay(b.scheduled_delay)
                        .build(),
                )
                .build();
        let logger = SdkLoggerProvider::builder()
            .with_log_processor(export::Counted::new(log_processor, health))
            .with_resource(resource.clone())
            .build();

        let metrics = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(&c.metrics_endpoint)
            .with_timeout(c.export_timeout)
            .build()
            .map_err(exporter_err("metrics", &c.metrics_endpoint))?;
        let registry = prometheus::Registry::new();
        let prometheus_reader = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .map_err(InitError::Prometheus)?;
        let meter = SdkMeterProvider::builder()
            .with_reader(
                PeriodicReader::builder(export::Watched::new(metrics, &c.metrics_endpoint, health))
                    .with_interval(c.metric_export_interval)
                    .build(),
            )
            .with_reader(prometheus_reader)
            .with_view(seconds_histograms)
            .with_resource(resource)
            .build();

        Ok(Self {
            tracer: Some(tracer),
            logger: Some(logger),
            meter: Some(meter),
            registry: Some(registry),
        })
    }
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

/// One Resource for all three signals.
fn resource(c: &Config) -> Resource {
    let mut attrs: Vec<KeyValue> = c
        .resource_attributes
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    if !c
        .resource_attributes
        .iter()
        .any(|(k, _)| k == "service.instance.id")
    {
        attrs.push(KeyValue::new(
            "service.instance.id",
            uuid::Uuid::new_v4().to_string(),
        ));
    }
    attrs.extend([
        KeyValue::new("service.name", c.service_name.clone()),
        KeyValue::new("service.namespace", c.service_namespace.clone()),
        KeyValue::new("service.version", c.service_version.clone()),
        KeyValue::new(
            "deployment.environment.name",
            c.deployment_environment.clone(),
        ),
        KeyValue::new("process.pid", i64::from(std::process::id())),
        KeyValue::new("telemetry.sdk.language", "rust"),
        KeyValue::new("telemetry.sdk.name", "opentelemetry"),
    ]);
    Resource::builder_empty().with_attributes(attrs).build()
}

/// What shutdown achieved: undelivered counts and any errors, in a readable form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    pub spans_dropped: u64,
    pub logs_dropped: u64,
    pub timed_out: bool,
    pub errors: Vec<String>,
}

impl ShutdownReport {
    pub fn is_clean(&self) -> bool {
        self.spans_dropped == 0
            && self.logs_dropped == 0
            && !self.timed_out
            && self.errors.is_empty()
    }
}

impl std::fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} spans and {} log records not delivered",
            self.spans_dropped, self.logs_dropped
        )?;
        if self.timed_out {
            write!(f, "; flush did not finish within the deadline")?;
        }
        for e in &self.errors {
            write!(f, "; {e}")?;
        }
        Ok(())
    }
}

/// Owns the providers, the file writer and the endpoint; flushes everything on shutdown or drop.
#[must_use = "telemetry stops when the guard is dropped"]
#[derive(Debug)]
pub struct TelemetryGuard {
    providers: Providers,
    health: Arc<export::ExportHealth>,
    sampler: Option<resources::ResourceSampler>,
    server: Option<server::MetricsServer>,
    file_guard: Option<tracing_appender::non_blocking::WorkerGuard>,
    endpoint: String,
    shutdown_timeout: Duration,
    dispatch: tracing::Dispatch,
    done: bool,
}

impl TelemetryGuard {
    /// A meter from the telemetry's meter provider (a no-op meter when the SDK is disabled).
    pub fn meter(&self, name: &'static str) -> Meter {
        match &self.providers.meter {
            Some(p) => p.meter(name),
            None => opentelemetry::metrics::noop::NoopMeterProvider::new().meter(name),
        }
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served, if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(|s| s.addr)
    }

    /// The latest resource sample (None when the SDK is disabled or sampling is unavailable).
    pub fn resources(&self) -> Option<LatestSample> {
        self.sampler
            .as_ref()
            .map(resources::ResourceSampler::latest)
    }

    /// Flushes traces, then logs, then metrics, within the configured deadline.
    pub fn shutdown(mut self) -> ShutdownReport {
        self.shutdown_inner()
    }

    fn shutdown_inner(&mut self) -> ShutdownReport {
        if std::mem::replace(&mut self.done, true) {
            return ShutdownReport::default();
        }
        drop(self.sampler.take());
        let deadline = self.shutdown_timeout;
        let (tracer, logger, meter) = (
            self.providers.tracer.clone(),
            self.providers.logger.clone(),
            self.providers.meter.clone(),
        );
        let (tx, rx) = mpsc::channel();
        // On its own thread, so a collector that hangs cannot hold the program past the deadline.
        let flush = std::thread::Builder::new()
            .name("telemetry-shutdown".into())
            .spawn(move || {
                let start = Instant::now();
                let left = || deadline.saturating_sub(start.elapsed());
                let mut errors = Vec::new();
                if let Some(p) = tracer {
                    p.shutdown_with_timeout(left())
                        .unwrap_or_else(|e| errors.push(format!("traces: {e}")));
                }
                if let Some(p) = logger {
                    p.shutdown_with_timeout(left())
                        .unwrap_or_else(|e| errors.push(format!("logs: {e}")));
                }
                if let Some(p) = meter {
                    p.shutdown_with_timeout(left())
                        .unwrap_or_else(|e| errors.push(format!("metrics: {e}")));
                }
                let _ = tx.send(errors);
            });
        let wait = || rx.recv_timeout(deadline);
        let outcome = match flush {
            Err(e) => Ok(vec![format!("cannot start the flush thread: {e}")]),
            // Export I/O runs on the tokio runtime: give this worker back to it while waiting.
            Ok(_) if in_multi_thread_runtime() => tokio::task::block_in_place(wait),
            Ok(_) => wait(),
        };
        let h = &self.health;
        let mut report = ShutdownReport {
            spans_dropped: h
                .spans_ended
                .load(Relaxed)
                .saturating_sub(h.spans_exported.load(Relaxed)),
            logs_dropped: h
                .logs_emitted
                .load(Relaxed)
                .saturating_sub(h.logs_exported.load(Relaxed)),
            ..ShutdownReport::default()
        };
        match outcome {
            Ok(errors) => report.errors = errors,
            Err(_) => report.timed_out = true,
        }
        if !report.is_clean() {
            tracing::dispatcher::with_default(&self.dispatch, || {
                tracing::warn!(target: export::EXPORT_TARGET, endpoint = %self.endpoint,
                    "telemetry shutdown: {report}");
            });
        }
        if let Some(server) = self.server.take() {
            server.stop();
        }
        drop(self.file_guard.take());
        report
    }
}

fn in_multi_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.shutdown_inner();
    }
}
