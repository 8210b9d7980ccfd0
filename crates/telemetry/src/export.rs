//! The export path's bookkeeping: what was handed to the SDK, what reached the collector, and the
//! one warning an operator gets when the collector cannot be reached.
//!
//! The SDK's own error logs repeat on every failed export (and are filtered off, see lib.rs); these
//! wrappers replace them with a single warning that names the endpoint, and with the counts that
//! shutdown turns into "N spans were not delivered".

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{LogBatch, LogExporter, LogProcessor, SdkLogRecord};
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};

/// The target of the library's own export warnings; the OTel layers never see it.
pub(crate) const EXPORT_TARGET: &str = "telemetry::export";

/// After a failed export, further exports to that endpoint fail at once for this long. The
/// exporter retries each batch with backoff (about 0.9 s); without this, a missing collector
/// would cost that much per batch and per signal, also at exit.
const FAIL_FAST_FOR: Duration = Duration::from_secs(2);

/// Delivery counts shared by the processors (items in) and the exporters (items out).
#[derive(Debug, Default)]
pub(crate) struct ExportHealth {
    warned: AtomicBool,
    failed_at: Mutex<HashMap<String, Instant>>,
    pub(crate) spans_ended: AtomicU64,
    pub(crate) spans_exported: AtomicU64,
    pub(crate) logs_emitted: AtomicU64,
    pub(crate) logs_exported: AtomicU64,
}

impl ExportHealth {
    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.failed_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `endpoint` failed so recently that trying again now would only add latency.
    fn failing_fast(&self, endpoint: &str) -> bool {
        self.failures()
            .get(endpoint)
            .is_some_and(|at| at.elapsed() < FAIL_FAST_FOR)
    }

    fn record(&self, signal: &str, endpoint: &str, result: &OTelSdkResult) {
        let Err(error) = result else {
            self.failures().remove(endpoint);
            return;
        };
        self.failures().insert(endpoint.to_owned(), Instant::now());
        if !self.warned.swap(true, Relaxed) {
            tracing::warn!(
                target: EXPORT_TARGET,
                signal,
                endpoint,
                %error,
                "cannot export telemetry to the OTLP endpoint; the program goes on and \
                 telemetry that cannot be delivered is dropped (this warning is shown once)"
            );
        }
    }
}

/// An exporter that reports its outcome to [`ExportHealth`].
#[derive(Debug)]
pub(crate) struct Watched<E> {
    inner: E,
    endpoint: String,
    health: Arc<ExportHealth>,
}

impl<E> Watched<E> {
    pub(crate) fn new(inner: E, endpoint: &str, health: &Arc<ExportHealth>) -> Self {
        Self {
            inner,
            endpoint: endpoint.to_owned(),
            health: health.clone(),
        }
    }
}

impl<E> Watched<E> {
    /// Runs one export unless the endpoint is failing fast; never retries by itself.
    async fn attempt(&self, export: impl Future<Output = OTelSdkResult>) -> OTelSdkResult {
        if self.health.failing_fast(&self.endpoint) {
            return Err(OTelSdkError::InternalFailure(format!(
                "{} failed less than {FAIL_FAST_FOR:?} ago; batch dropped",
                self.endpoint
            )));
        }
        export.await
    }
}

impl<E: SpanExporter> SpanExporter for Watched<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.attempt(self.inner.export(batch)).await;
        if result.is_ok() {
            self.health.spans_exported.fetch_add(n, Relaxed);
        }
        self.health.record("traces", &self.endpoint, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: LogExporter> LogExporter for Watched<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let n = batch.iter().count() as u64;
        let result = self.attempt(self.inner.export(batch)).await;
        if result.is_ok() {
            self.health.logs_exported.fetch_add(n, Relaxed);
        }
        self.health.record("logs", &self.endpoint, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for Watched<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.attempt(self.inner.export(metrics)).await;
        self.health.record("metrics", &self.endpoint, &result);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

/// A processor that counts what enters the pipeline before handing it on.
#[derive(Debug)]
pub(crate) struct Counted<P> {
    inner: P,
    health: Arc<ExportHealth>,
}

impl<P> Counted<P> {
    pub(crate) fn new(inner: P, health: &Arc<ExportHealth>) -> Self {
        Self {
            inner,
            health: health.clone(),
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for Counted<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.health.spans_ended.fetch_add(1, Relaxed);
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<P: LogProcessor> LogProcessor for Counted<P> {
    fn emit(&self, data: &mut SdkLogRecord, instrumentation: &InstrumentationScope) {
        self.health.logs_emitted.fetch_add(1, Relaxed);
        self.inner.emit(data, instrumentation);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
