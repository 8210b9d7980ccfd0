//! The three signals' pipelines over one Resource: built together, shut down in order.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::resource::TelemetryResourceDetector;

use crate::export::{ExportHealth, Signal};
use crate::hotpath::layer::{FinishedSpan, LogItem};
use crate::hotpath::queue::Queue;
use crate::hotpath::send::GiveUp;
use crate::logs::init_logs;
use crate::metrics::init_metrics;
use crate::spool;
use crate::traces::init_traces;
use crate::{Config, InitError, ResourceConfig};

/// None of them when the SDK is disabled.
#[derive(Debug, Default)]
pub(crate) struct Providers {
    pub(crate) spans: Option<Arc<Queue<FinishedSpan>>>,
    pub(crate) logs: Option<Arc<Queue<LogItem>>>,
    pub(crate) meter: Option<SdkMeterProvider>,
    /// What makes the metrics' OTLP push stop retrying.
    metrics_give_up: Option<GiveUp>,
    /// What `/metrics` serves, from the meter provider's second reader.
    pub(crate) registry: Option<prometheus::Registry>,
}

/// At most this much of the shutdown deadline is left for keeping what is undelivered in the
/// spool (a fifth of it when it is shorter): writing files takes milliseconds, but the caller
/// returns at the deadline, whatever the threads are doing.
const KEEP_TIME: Duration = Duration::from_secs(1);

/// The flush did not finish within the deadline.
#[derive(Debug)]
pub(crate) struct TimedOut;

impl Providers {
    pub(crate) fn build(
        c: &Config,
        health: &Arc<ExportHealth>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Self, InitError> {
        let resource = resource(&c.resource);
        let [traces, logs, metrics] = match &c.export.spool {
            None => [None, None, None],
            Some(s) => match spool::open(s) {
                Ok(spools) => spools.map(Some),
                Err(e) => {
                    let problem = format!(
                        "cannot open the telemetry spool: {e}; undelivered telemetry is dropped"
                    );
                    health.spool_trouble(Signal::Traces, &s.dir, &problem);
                    [None, None, None]
                }
            },
        };
        let m = init_metrics(&c.export, resource.clone(), health, runtime, metrics)?;
        let scope = &c.resource.service_name;
        Ok(Self {
            spans: init_traces(&c.export, &resource, scope, health, runtime, traces)?,
            logs: init_logs(&c.export, &resource, health, runtime, logs)?,
            meter: Some(m.provider),
            metrics_give_up: m.give_up,
            registry: Some(m.registry),
        })
    }

    /// Shuts down metrics, then traces, then logs, on a thread of its own so that a collector
    /// that hangs cannot hold the caller past `deadline`; returns the providers' errors. The
    /// three sending threads retry until shortly before the deadline, then keep what is left in
    /// the spool. Metrics go first: their final export is one small request, and behind a
    /// burst of spans and records it would reach the give-up time unsent (each signal has a
    /// sending thread of its own, so the order costs the others nothing).
    pub(crate) fn shutdown(self, deadline: Duration) -> Result<Vec<String>, TimedOut> {
        let give_up = Instant::now() + deadline - (deadline / 5).min(KEEP_TIME);
        let queues = [
            self.spans.as_deref().map(|q| q.give_up()),
            self.logs.as_deref().map(|q| q.give_up()),
        ];
        for g in queues
            .into_iter()
            .flatten()
            .flatten()
            .chain(self.metrics_give_up.as_ref())
        {
            g.at(give_up);
        }
        let (tx, rx) = mpsc::channel();
        let flush = std::thread::Builder::new()
            .name("telemetry-shutdown".into())
            .spawn(move || {
                let start = Instant::now();
                let left = || deadline.saturating_sub(start.elapsed());
                let mut errors = Vec::new();
                if let Some(p) = self.meter {
                    p.shutdown_with_timeout(left())
                        .unwrap_or_else(|e| errors.push(format!("metrics: {e}")));
                }
                if let Some(q) = self.spans {
                    q.drain(true, left())
                        .unwrap_or_else(|e| errors.push(format!("traces: {e}")));
                }
                if let Some(q) = self.logs {
                    q.drain(true, left())
                        .unwrap_or_else(|e| errors.push(format!("logs: {e}")));
                }
                let _ = tx.send(errors);
            });
        let wait = || rx.recv_timeout(deadline).map_err(|_| TimedOut);
        match flush {
            Err(e) => Ok(vec![format!("cannot start the flush thread: {e}")]),
            // Export I/O runs on the tokio runtime: give this worker back to it while waiting.
            Ok(_) if in_multi_thread_runtime() => tokio::task::block_in_place(wait),
            Ok(_) => wait(),
        }
    }
}

fn in_multi_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// One Resource for all three signals: the further attributes, the configured fields over them,
/// and last the SDK's own `telemetry.sdk.*` from its detector, which nothing overrides.
fn resource(c: &ResourceConfig) -> Resource {
    let mut attrs: Vec<KeyValue> = c
        .attributes
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    if !c.attributes.iter().any(|(k, _)| k == "service.instance.id") {
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
    ]);
    // Not Resource::builder(): its other detectors read OTEL_SERVICE_NAME and
    // OTEL_RESOURCE_ATTRIBUTES from the process, bypassing the Config they were read into.
    Resource::builder_empty()
        .with_attributes(attrs)
        .with_detector(Box::new(TelemetryResourceDetector))
        .build()
}
