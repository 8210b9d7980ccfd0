//! One-call telemetry for the workspace's binaries: traces, logs and metrics over OTLP/gRPC,
//! a rotated JSON log file, console output, and `/metrics`, `/healthz`, `/readyz`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = telemetry::Config::from_env(telemetry::Defaults {
//!     service_name: "invbot".into(),
//!     service_version: env!("CARGO_PKG_VERSION").into(),
//!     metrics_addr: Some(([127, 0, 0, 1], 9100).into()),
//!     spool_dir: None,
//! })?; // then, with the `cli` feature, `TelemetryArgs::apply`: a flag beats the environment
//! let guard = telemetry::Telemetry::builder(config).init()?;
//! tracing::info!("working");
//! let report = guard.shutdown(); // metrics, then traces, then logs, within the deadline
//! # Ok(()) }
//! ```
//!
//! This module holds the public front; the SDK wiring is one module per signal (`traces`,
//! `logs`, `metrics`, over one Resource in `providers`), the subscriber's layers are in `layers`
//! and the JSON file in `jsonlog`. Only this crate touches the OTel SDK and tracing-subscriber;
//! everything else uses `tracing` and the `opentelemetry` metrics API.

#[cfg(feature = "cli")]
mod cli;
mod config;
mod export;
mod hotpath;
mod jsonlog;
mod layers;
mod logs;
mod metrics;
mod propagation;
mod providers;
mod resources;
mod server;
mod spool;
mod traces;
mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::{Meter, MeterProvider as _};
use serde::{Deserialize, Serialize};

#[cfg(feature = "cli")]
pub use cli::TelemetryArgs;
pub use config::{
    BatchSettings, Compression, Config, ConfigError, DEFAULT_ENDPOINT, DEFAULT_HTTP_ENDPOINT,
    Defaults, EndpointSource, ExportConfig, ExporterKind, Headers, LogFileConfig, LogsConfig,
    MetricsAddr, OtlpEndpoint, PemFile, Propagator, Protocol, ResourceConfig, SamplerConfig,
    Secret, SignalExport, SpanLimitsConfig, SpoolConfig, TlsFiles,
};
pub use export::EXPORT_TARGET;
pub use jsonlog::JsonLines;
pub use metrics::DURATION_BUCKETS_SECONDS;
pub use propagation::{inject_context, set_parent_from_headers, trace_id};
pub use resources::{LatestSample, ResourceSample};
pub use server::ReadinessCheck;
pub use spool::pending as spool_pending;

use export::ExportHealth;
use providers::{Providers, TimedOut};

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
    #[error("cannot start a telemetry thread")]
    Thread(#[source] std::io::Error),
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

    /// Installs the subscriber globally, plus the global meter provider and the
    /// propagators of OTEL_PROPAGATORS as the global propagator, for code that propagates
    /// through it ([`inject_context`] and [`set_parent_from_headers`] use the same propagators
    /// from the configuration, whether the subscriber is installed or built).
    pub fn init(self) -> Result<TelemetryGuard, InitError> {
        let propagator = propagation::propagator(&self.config.export.propagators);
        let (dispatch, guard) = self.build()?;
        tracing::dispatcher::set_global_default(dispatch).map_err(InitError::AlreadyInstalled)?;
        if let Some(p) = &guard.providers.meter {
            opentelemetry::global::set_meter_provider(p.clone());
        }
        opentelemetry::global::set_text_map_propagator(propagator);
        Ok(guard)
    }

    /// Builds everything without installing it: use the dispatch with
    /// `tracing::dispatcher::with_default` and meters from [`TelemetryGuard::meter`].
    pub fn build(self) -> Result<(tracing::Dispatch, TelemetryGuard), InitError> {
        // The exporters and the endpoint run on the caller's runtime.
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| InitError::NoRuntime)?;
        let c = &self.config;
        let health = Arc::new(ExportHealth::default());
        let providers = if c.export.sdk_disabled {
            Providers::default()
        } else {
            Providers::build(c, &health, &runtime)?
        };
        let (dispatch, file_guard) = layers::build(
            &c.logs,
            (!c.export.sdk_disabled).then(|| {
                hotpath::layer::HotLayer::new(
                    providers.spans.clone(),
                    providers.logs.clone(),
                    traces::sampler(c.export.sampler),
                    c.export.span_limits,
                    propagation::Propagation::new(&c.export.propagators),
                )
            }),
        )?;
        health.warn_to(&dispatch);
        let sampler = providers.meter.as_ref().and_then(|mp| {
            let sampler = resources::ResourceSampler::start(c.export.resource_sample_interval)?;
            resources::register(&mp.meter(names::scope::RESOURCES), &sampler.latest());
            Some(sampler)
        });
        let server = c.metrics_addr.and_then(|addr| {
            server::MetricsServer::start_or_warn(
                addr,
                providers.registry.clone(),
                self.readiness,
                &dispatch,
            )
        });
        let guard = TelemetryGuard {
            providers,
            health,
            sampler,
            server,
            file_guard,
            endpoint: c.export.traces.url(),
            shutdown_timeout: c.export.shutdown_timeout,
            dispatch: dispatch.clone(),
            done: false,
        };
        Ok((dispatch, guard))
    }
}

/// Items of each signal: spans, log records, metric data points.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalCounts {
    pub spans: u64,
    pub logs: u64,
    pub metric_points: u64,
}

impl SignalCounts {
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    fn add(&mut self, other: Self) {
        self.spans += other.spans;
        self.logs += other.logs;
        self.metric_points += other.metric_points;
    }
}

impl std::fmt::Display for SignalCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} spans, {} log records and {} metric points",
            self.spans, self.logs, self.metric_points
        )
    }
}

/// What shutdown achieved: undelivered counts and any errors, in a readable form. Serializable,
/// so a child process can hand its report to its parent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownReport {
    /// Items neither delivered nor kept in the spool: lost, each one counted.
    pub spans_dropped: u64,
    pub logs_dropped: u64,
    #[serde(default)]
    pub metric_points_dropped: u64,
    /// Items not delivered but kept in the spool (`spool_dir`), for the next process.
    #[serde(default)]
    pub spooled: SignalCounts,
    #[serde(default)]
    pub spool_dir: Option<String>,
    /// Items earlier processes kept that this one delivered, and that it deleted unsent (older
    /// than the spool's age bound, or refused by the collector).
    #[serde(default)]
    pub resent: SignalCounts,
    #[serde(default)]
    pub spool_lost: SignalCounts,
    /// Export calls of all signals that the collector accepted, and that failed.
    pub exports_ok: u64,
    pub exports_failed: u64,
    /// Endpoints that refused the credentials sent (gRPC Unauthenticated or PermissionDenied,
    /// HTTP 401 or 403).
    #[serde(default)]
    pub auth_refused: Vec<String>,
    pub timed_out: bool,
    pub errors: Vec<String>,
}

impl ShutdownReport {
    pub fn is_clean(&self) -> bool {
        self.spans_dropped == 0
            && self.logs_dropped == 0
            && self.metric_points_dropped == 0
            && self.spooled.is_zero()
            && self.spool_lost.is_zero()
            && !self.timed_out
            && self.errors.is_empty()
    }

    /// Exports were tried and not one of them reached a collector.
    pub fn collector_unreachable(&self) -> bool {
        self.exports_failed > 0 && self.exports_ok == 0
    }

    /// Adds `other`'s counts and errors to these: one report for the processes of one run.
    pub fn merge(&mut self, other: Self) {
        self.spans_dropped += other.spans_dropped;
        self.logs_dropped += other.logs_dropped;
        self.metric_points_dropped += other.metric_points_dropped;
        self.spooled.add(other.spooled);
        self.spool_dir = self.spool_dir.take().or(other.spool_dir);
        self.resent.add(other.resent);
        self.spool_lost.add(other.spool_lost);
        self.exports_ok += other.exports_ok;
        self.exports_failed += other.exports_failed;
        self.timed_out |= other.timed_out;
        for endpoint in other.auth_refused {
            if !self.auth_refused.contains(&endpoint) {
                self.auth_refused.push(endpoint);
            }
        }
        self.errors.extend(other.errors);
    }
}

impl std::fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} spans and {} log records not delivered",
            self.spans_dropped, self.logs_dropped
        )?;
        if self.metric_points_dropped > 0 {
            write!(
                f,
                "; {} metric points not delivered",
                self.metric_points_dropped
            )?;
        }
        if !self.spooled.is_zero() {
            let dir = self.spool_dir.as_deref().unwrap_or("the spool");
            write!(f, "; kept for the next run in {dir}: {}", self.spooled)?;
        }
        if !self.resent.is_zero() {
            write!(f, "; sent from the spool: {}", self.resent)?;
        }
        if !self.spool_lost.is_zero() {
            write!(
                f,
                "; deleted from the spool unsent (too old, or refused): {}",
                self.spool_lost
            )?;
        }
        if !self.auth_refused.is_empty() {
            write!(
                f,
                "; authentication refused by {}",
                self.auth_refused.join(", ")
            )?;
        }
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
    health: Arc<ExportHealth>,
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

    /// Flushes metrics, then traces, then logs, within the configured deadline.
    pub fn shutdown(mut self) -> ShutdownReport {
        self.shutdown_inner()
    }

    fn shutdown_inner(&mut self) -> ShutdownReport {
        if std::mem::replace(&mut self.done, true) {
            return ShutdownReport::default();
        }
        drop(self.sampler.take());
        let outcome = std::mem::take(&mut self.providers).shutdown(self.shutdown_timeout);
        let mut report = self.health.report();
        match outcome {
            Ok(errors) => report.errors = errors,
            Err(TimedOut) => report.timed_out = true,
        }
        if !report.is_clean() {
            tracing::dispatcher::with_default(&self.dispatch, || {
                tracing::warn!(target: EXPORT_TARGET, endpoint = %self.endpoint,
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

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.shutdown_inner();
    }
}
