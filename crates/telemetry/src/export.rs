//! The export path's bookkeeping: what each signal's pipeline took in, what reached the
//! collector, and the one warning an operator gets when the collector cannot be reached.
//!
//! The SDK's own error logs repeat on every failed export (and are filtered off, see layers.rs);
//! these wrappers replace them with a single warning that names the endpoint, and with the
//! counts that shutdown turns into "N spans were not delivered".

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tracing::dispatcher::WeakDispatch;

use crate::{ExporterKind, InitError, ShutdownReport, SignalCounts, SignalExport};

/// The target of the library's own export warnings; the OTel layers never see it, and a console
/// filter with `telemetry::export=off` leaves reporting export trouble to the program.
pub const EXPORT_TARGET: &str = "telemetry::export";

/// The three signals, for counts and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Traces,
    Logs,
    Metrics,
}

impl Signal {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Traces => "traces",
            Self::Logs => "logs",
            Self::Metrics => "metrics",
        }
    }
}

/// `exporter` for `signal`, watched; `result` is the OTLP builder's (or the console exporter,
/// always Ok), and `c` names where it goes.
pub(crate) fn watched<E>(
    signal: Signal,
    result: Result<E, opentelemetry_otlp::ExporterBuildError>,
    c: &SignalExport,
    health: &Arc<ExportHealth>,
) -> Result<Watched<E>, InitError> {
    let endpoint = match c.exporter {
        ExporterKind::Console => "stdout".to_owned(),
        ExporterKind::Otlp | ExporterKind::None => c.url(),
    };
    let exporter = result.map_err(|source| InitError::Exporter {
        signal: signal.name(),
        endpoint: endpoint.clone(),
        source,
    })?;
    Ok(Watched::new(exporter, signal, endpoint, health))
}

/// One signal's counts: items its pipeline took in, items the collector accepted, items kept
/// in the spool, export calls that succeeded or failed; and of what earlier processes kept,
/// items sent and items lost (too old, or refused).
#[derive(Debug, Default)]
struct Tally {
    taken: AtomicU64,
    delivered: AtomicU64,
    spooled: AtomicU64,
    exports_ok: AtomicU64,
    exports_failed: AtomicU64,
    resent: AtomicU64,
    spool_lost: AtomicU64,
}

impl Tally {
    /// Taken, and neither delivered nor kept.
    fn dropped(&self) -> u64 {
        self.taken
            .load(Relaxed)
            .saturating_sub(self.delivered.load(Relaxed) + self.spooled.load(Relaxed))
    }
}

/// Delivery counts shared by the processors (items in) and the exporters (items out).
#[derive(Debug, Default)]
pub(crate) struct ExportHealth {
    warned: AtomicBool,
    queue_full_warned: AtomicBool,
    spool_warned: AtomicBool,
    /// Where undelivered requests are kept, once one has been.
    spool_dir: OnceLock<String>,
    /// Endpoints that refused our credentials, each said once.
    auth_refused: Mutex<BTreeSet<String>>,
    /// The subscriber the warnings go to: the exporters run on threads of their own, where a
    /// scoped subscriber ([`crate::Telemetry::build`]) is not the default. Weak: the subscriber
    /// holds the providers, which hold this.
    subscriber: OnceLock<WeakDispatch>,
    traces: Tally,
    logs: Tally,
    metrics: Tally,
}

impl ExportHealth {
    fn tally(&self, signal: Signal) -> &Tally {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Logs => &self.logs,
            Signal::Metrics => &self.metrics,
        }
    }

    /// Sends the export warnings to `dispatch` (the library's own subscriber).
    pub(crate) fn warn_to(&self, dispatch: &tracing::Dispatch) {
        let _ = self.subscriber.set(dispatch.downgrade());
    }

    fn warn(&self, warning: impl FnOnce()) {
        match self.subscriber.get().and_then(WeakDispatch::upgrade) {
            Some(dispatch) => tracing::dispatcher::with_default(&dispatch, warning),
            None => warning(),
        }
    }

    /// `n` items entered `signal`'s queue (or were refused by it, see [`Self::queue_full`]).
    pub(crate) fn taken(&self, signal: Signal, n: u64) {
        self.tally(signal).taken.fetch_add(n, Relaxed);
    }

    /// A batch did not fit into `signal`'s queue and was dropped (counted as taken, never
    /// delivered); the first time, says so.
    pub(crate) fn queue_full(&self, signal: Signal, max: usize) {
        if !self.queue_full_warned.swap(true, Relaxed) {
            self.warn_pipeline(
                signal,
                &format!(
                    "the export queue is full ({max} items): telemetry is produced faster than \
                     it is exported, and what does not fit is dropped and counted"
                ),
            );
        }
    }

    /// A warning about `signal`'s pipeline that is not an export's outcome.
    pub(crate) fn warn_pipeline(&self, signal: Signal, problem: &str) {
        self.warn(|| {
            tracing::warn!(target: EXPORT_TARGET, signal = signal.name(), "{problem}");
        });
    }

    /// `n` items of `signal` were kept in the spool under `dir`.
    pub(crate) fn spooled(&self, signal: Signal, n: u64, dir: &std::path::Path) {
        let _ = self.spool_dir.set(dir.display().to_string());
        self.tally(signal).spooled.fetch_add(n, Relaxed);
    }

    /// `n` items an earlier process kept were delivered.
    pub(crate) fn resent(&self, signal: Signal, n: u64) {
        self.tally(signal).resent.fetch_add(n, Relaxed);
    }

    /// `n` items an earlier process kept were deleted unsent: too old, or refused.
    pub(crate) fn spool_lost(&self, signal: Signal, n: u64) {
        self.tally(signal).spool_lost.fetch_add(n, Relaxed);
    }

    /// The spool at `dir` is full or cannot be used; said once.
    pub(crate) fn spool_trouble(&self, signal: Signal, dir: &std::path::Path, problem: &str) {
        if !self.spool_warned.swap(true, Relaxed) {
            self.warn(|| {
                tracing::warn!(target: EXPORT_TARGET, signal = signal.name(),
                    spool = %dir.display(), "{problem}");
            });
        }
    }

    /// Whether `signal` has had an export accepted: the collector was there, so a failure now
    /// is worth retrying (see hotpath/queue.rs).
    pub(crate) fn has_delivered(&self, signal: Signal) -> bool {
        self.tally(signal).exports_ok.load(Relaxed) > 0
    }

    /// The counts so far, as a report without errors.
    pub(crate) fn report(&self) -> ShutdownReport {
        let all = [&self.traces, &self.logs, &self.metrics];
        let sum =
            |count: fn(&Tally) -> &AtomicU64| all.iter().map(|t| count(t).load(Relaxed)).sum();
        let counts = |count: fn(&Tally) -> &AtomicU64| SignalCounts {
            spans: count(&self.traces).load(Relaxed),
            logs: count(&self.logs).load(Relaxed),
            metric_points: count(&self.metrics).load(Relaxed),
        };
        ShutdownReport {
            spans_dropped: self.traces.dropped(),
            logs_dropped: self.logs.dropped(),
            metric_points_dropped: self.metrics.dropped(),
            spooled: counts(|t| &t.spooled),
            spool_dir: self.spool_dir.get().cloned(),
            resent: counts(|t| &t.resent),
            spool_lost: counts(|t| &t.spool_lost),
            exports_ok: sum(|t| &t.exports_ok),
            exports_failed: sum(|t| &t.exports_failed),
            auth_refused: lock(&self.auth_refused).iter().cloned().collect(),
            ..ShutdownReport::default()
        }
    }

    /// The outcome of an export.
    fn record(&self, signal: Signal, endpoint: &str, items: u64, result: &OTelSdkResult) {
        let tally = self.tally(signal);
        let Err(error) = result else {
            tally.delivered.fetch_add(items, Relaxed);
            tally.exports_ok.fetch_add(1, Relaxed);
            return;
        };
        tally.exports_failed.fetch_add(1, Relaxed);
        if is_auth_refusal(error) {
            if lock(&self.auth_refused).insert(endpoint.to_owned()) {
                self.warned.store(true, Relaxed);
                self.warn(|| {
                    tracing::warn!(
                        target: EXPORT_TARGET,
                        signal = signal.name(),
                        endpoint,
                        "the OTLP endpoint refused our credentials (authentication); check the \
                         token in OTEL_EXPORTER_OTLP_HEADERS. The program goes on and its \
                         telemetry is dropped (this warning is shown once per endpoint)"
                    );
                });
            }
        } else if !self.warned.swap(true, Relaxed) {
            self.warn(|| {
                tracing::warn!(
                    target: EXPORT_TARGET,
                    signal = signal.name(),
                    endpoint,
                    %error,
                    "cannot export telemetry to the OTLP endpoint; the program goes on, and \
                     what cannot be delivered is retried, then kept in the spool if there is one, \
                     else dropped, and counted (this warning is shown once)"
                );
            });
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How the exporter words a refusal of our credentials: the gRPC codes Unauthenticated and
/// PermissionDenied, the HTTP statuses 401 and 403. Its errors are strings; a test against the
/// in-process receiver pins these for both transports.
const AUTH_REFUSALS: [&str; 4] = [
    "gRPC code: Unauthenticated",
    "gRPC code: PermissionDenied",
    "status code: 401",
    "status code: 403",
];

fn is_auth_refusal(error: &OTelSdkError) -> bool {
    let text = error.to_string();
    AUTH_REFUSALS.iter().any(|r| text.contains(r))
}

/// An exporter of any signal that reports its outcome to [`ExportHealth`].
#[derive(Debug)]
pub(crate) struct Watched<E> {
    inner: E,
    signal: Signal,
    endpoint: String,
    health: Arc<ExportHealth>,
}

impl<E> Watched<E> {
    fn new(inner: E, signal: Signal, endpoint: String, health: &Arc<ExportHealth>) -> Self {
        Self {
            inner,
            signal,
            endpoint,
            health: health.clone(),
        }
    }

    pub(crate) fn inner(&self) -> &E {
        &self.inner
    }

    /// Runs one export of `items` and records the outcome; never retries by itself (the
    /// sending thread does, hotpath/send.rs).
    pub(crate) async fn watch(
        &self,
        items: u64,
        export: impl Future<Output = OTelSdkResult>,
    ) -> OTelSdkResult {
        let result = export.await;
        self.health
            .record(self.signal, &self.endpoint, items, &result);
        result
    }
}

/// Trait methods a wrapper hands straight to the `inner` it wraps.
macro_rules! delegate {
    (force_flush) => {
        fn force_flush(&self) -> OTelSdkResult {
            self.inner.force_flush()
        }
    };
    (shutdown_with_timeout) => {
        fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
            self.inner.shutdown_with_timeout(timeout)
        }
    };
    (set_resource) => {
        fn set_resource(&mut self, resource: &Resource) {
            self.inner.set_resource(resource);
        }
    };
    (temporality) => {
        fn temporality(&self) -> Temporality {
            self.inner.temporality()
        }
    };
    ($($method:ident),+) => {
        $(delegate!($method);)+
    };
}

impl<E: SpanExporter> SpanExporter for Watched<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let items = batch.len() as u64;
        self.watch(items, self.inner.export(batch)).await
    }

    delegate!(shutdown_with_timeout, force_flush, set_resource);
}

impl<E: LogExporter> LogExporter for Watched<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let items = batch.iter().count() as u64;
        self.watch(items, self.inner.export(batch)).await
    }

    delegate!(shutdown_with_timeout, set_resource);
}

impl<E: PushMetricExporter> PushMetricExporter for Watched<E> {
    /// Counted as export calls only: a metric export carries current values, not items that
    /// are lost for good.
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        self.watch(0, self.inner.export(metrics)).await
    }

    delegate!(force_flush, shutdown_with_timeout, temporality);
}
