//! One instrumented batch run: rows grouped into batches per warehouse, each batch a root span
//! (its own trace) with a child span per item, items applied through the API with bounded
//! concurrency; events, metrics and threshold alerts along the way.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use inventory_api::Kind;
use names::{attr, event, metric, span};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundCounter, BoundHistogram, Counter, Gauge, Histogram, Meter};
use telemetry::LatestSample;
use tokio::task::JoinSet;
use tracing::Instrument;
use tracing::field::Empty;

use crate::alerts::{Alerts, Thresholds};
use crate::client::ApiClient;
use crate::input::{Parsed, Rejected, Transaction};
use crate::summary::{BatchTrace, Latency, Summary, grafana_link, jaeger_link};
use crate::untrusted::escape;

/// Characters of the input's name shown in the summary.
const MAX_LABEL_CHARS: usize = 1024;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub run_id: String,
    pub input_label: String,
    pub batch_size: usize,
    pub concurrency: usize,
    pub thresholds: Thresholds,
    pub jaeger_url: Option<String>,
    pub grafana_url: Option<String>,
    pub rejects_path: PathBuf,
    pub progress: bool,
}

#[derive(Debug, Clone)]
struct BotMetrics {
    batch_duration: Histogram<f64>,
    batches: Counter<u64>,
    batch_success: Gauge<f64>,
    /// Per transaction, so bound to each attribute set up front: the SDK's lookup of an
    /// attribute set costs several times the measurement. By outcome ([`OUTCOMES`]) and
    /// operation ([`Kind::ALL`]).
    transactions: [[BoundCounter<u64>; Kind::ALL.len()]; OUTCOMES.len()],
    transaction_duration: [BoundHistogram<f64>; OUTCOMES.len()],
    rejected: Counter<u64>,
}

/// A transaction's outcomes, as its metrics label them.
const OUTCOMES: [&str; 2] = ["applied", "failed"];

impl BotMetrics {
    fn new(meter: &Meter) -> Self {
        let transactions = meter
            .u64_counter(metric::TRANSACTIONS.name)
            .with_unit(metric::TRANSACTIONS.unit)
            .with_description("Transactions by outcome (applied, failed) and operation")
            .build();
        let duration = meter
            .f64_histogram(metric::TRANSACTION_DURATION.name)
            .with_unit(metric::TRANSACTION_DURATION.unit)
            .with_description("Time to apply one transaction, retries included")
            .build();
        Self {
            batch_duration: meter
                .f64_histogram(metric::BATCH_DURATION.name)
                .with_unit(metric::BATCH_DURATION.unit)
                .with_description("Duration of one batch, first item to last")
                .build(),
            batches: meter
                .u64_counter(metric::BATCHES.name)
                .with_unit(metric::BATCHES.unit)
                .with_description("Batches finished, by result (success: every item applied)")
                .build(),
            batch_success: meter
                .f64_gauge(metric::BATCH_SUCCESS_RATIO.name)
                .with_unit(metric::BATCH_SUCCESS_RATIO.unit)
                .with_description("Share of the last batch's items that were applied")
                .build(),
            transactions: std::array::from_fn(|o| {
                Kind::ALL.map(|kind| {
                    transactions.bind(&[
                        KeyValue::new(attr::OUTCOME, OUTCOMES[o]),
                        KeyValue::new(attr::OPERATION, kind.as_str()),
                    ])
                })
            }),
            transaction_duration: OUTCOMES
                .map(|outcome| duration.bind(&[KeyValue::new(attr::OUTCOME, outcome)])),
            rejected: meter
                .u64_counter(metric::ROWS_REJECTED.name)
                .with_unit(metric::ROWS_REJECTED.unit)
                .with_description("Input rows set aside as malformed")
                .build(),
        }
    }
}

/// What one item came to.
#[derive(Debug)]
struct ItemResult {
    seconds: f64,
    attempts: u32,
    failure: Option<String>,
    replayed: bool,
}

type SharedAlerts = Arc<Mutex<Alerts>>;

fn lock(alerts: &SharedAlerts) -> MutexGuard<'_, Alerts> {
    alerts.lock().unwrap_or_else(|e| e.into_inner())
}

/// Groups transactions per warehouse (in order of first appearance), then cuts batches.
pub fn batches(transactions: Vec<Transaction>, batch_size: usize) -> Vec<Vec<Transaction>> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<Transaction>> = HashMap::new();
    for t in transactions {
        let group = groups.entry(t.warehouse_id.clone()).or_insert_with(|| {
            order.push(t.warehouse_id.clone());
            Vec::new()
        });
        group.push(t);
    }
    let mut out = Vec::new();
    for warehouse in order {
        let mut group = groups.remove(&warehouse).unwrap_or_default();
        while !group.is_empty() {
            let rest = group.split_off(batch_size.min(group.len()));
            out.push(std::mem::replace(&mut group, rest));
        }
    }
    out
}

pub async fn run(
    opts: &RunOptions,
    parsed: Parsed,
    client: &ApiClient,
    meter: &Meter,
    cpu: Option<LatestSample>,
) -> std::io::Result<Summary> {
    let metrics = BotMetrics::new(meter);
    let alerts: SharedAlerts = Arc::new(Mutex::new(Alerts::new(
        opts.thresholds,
        meter
            .u64_counter(metric::ALERTS.name)
            .with_unit(metric::ALERTS.unit)
            .with_description("Threshold alerts fired, by alert name")
            .build(),
    )));
    let rows_read = parsed.rows();
    let rejected = parsed.rejected.len();
    // A file name is text from outside too.
    let input = escape(opts.input_label.as_bytes(), MAX_LABEL_CHARS);
    tracing::info!(event = event::RUN_START, run_id = %opts.run_id, input = %input,
        rows = rows_read, rejected = parsed.rejected.len(), "run started");

    let rejects_file = report_rejects(opts, &parsed.rejected, &metrics)?;
    let cpu_watch = cpu.map(|latest| tokio::spawn(watch_cpu(latest, alerts.clone())));
    let progress = progress_bar(opts.progress, parsed.transactions.len());

    let started = Instant::now();
    let mut batch_traces = Vec::new();
    let mut latencies = Vec::with_capacity(parsed.transactions.len());
    let (mut applied, mut replayed, mut retries) = (0, 0, 0_u64);
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for (i, batch) in batches(parsed.transactions, opts.batch_size)
        .into_iter()
        .enumerate()
    {
        let batch_id = i + 1;
        let warehouse_id = batch[0].warehouse_id.clone();
        let batch_span = tracing::info_span!(
            parent: None,
            span::BATCH,
            run_id = %opts.run_id,
            batch_id,
            warehouse_id = %warehouse_id,
            batch_size = batch.len(),
            applied = Empty,
            failed = Empty,
        );
        let trace_id = telemetry::trace_id(&batch_span);
        let items = batch.len();
        let ctx = BatchContext {
            opts,
            client,
            metrics: &metrics,
            alerts: &alerts,
            progress: &progress,
        };
        let (results, seconds) = ctx
            .run_batch(batch_id, &warehouse_id, batch, batch_span.clone())
            .instrument(batch_span)
            .await;
        let mut failed = 0;
        for r in results {
            latencies.push(r.seconds);
            retries += u64::from(r.attempts.saturating_sub(1));
            match r.failure {
                Some(reason) => {
                    failed += 1;
                    *failures.entry(reason).or_default() += 1;
                }
                None => {
                    applied += 1;
                    replayed += usize::from(r.replayed);
                }
            }
        }
        batch_traces.push(BatchTrace {
            batch_id,
            warehouse_id,
            items,
            failed,
            duration_s: seconds,
            jaeger_url: trace_id
                .as_ref()
                .zip(opts.jaeger_url.as_ref())
                .map(|(t, base)| jaeger_link(base, t)),
            grafana_url: trace_id
                .as_ref()
                .zip(opts.grafana_url.as_ref())
                .map(|(t, base)| grafana_link(base, t)),
            trace_id,
        });
    }
    progress.finish_and_clear();
    if let Some(task) = cpu_watch {
        task.abort();
    }

    let duration = started.elapsed().as_secs_f64();
    let failed: usize = failures.values().sum();
    let summary = Summary {
        run_id: opts.run_id.clone(),
        input,
        rows_read,
        applied,
        replayed,
        failed,
        rejected,
        retries,
        failures_by_reason: failures,
        rejects_file,
        duration_s: duration,
        throughput_per_s: if duration > 0.0 {
            (applied + failed) as f64 / duration
        } else {
            0.0
        },
        latency: Latency::from_seconds(latencies),
        batches: batch_traces,
        alerts: lock(&alerts).fired.clone(),
        telemetry: None,
    };
    tracing::info!(event = event::RUN_END, run_id = %opts.run_id, rows = summary.rows_read,
        applied = summary.applied, replayed = summary.replayed, failed = summary.failed,
        rejected = summary.rejected, retries = summary.retries,
        rejects_file = summary.rejects_file.as_deref().unwrap_or_default(),
        duration_s = duration, "run finished");
    Ok(summary)
}

/// Writes the rejects file (line, reason, raw row) and reports each rejected row once.
fn report_rejects(
    opts: &RunOptions,
    rejected: &[Rejected],
    metrics: &BotMetrics,
) -> std::io::Result<Option<String>> {
    if rejected.is_empty() {
        return Ok(None);
    }
    if let Some(dir) = opts
        .rejects_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(&opts.rejects_path)?);
    writeln!(out, "line,reason,raw")?;
    for r in rejected {
        writeln!(
            out,
            "{},{},{}",
            r.line,
            csv_quote(&r.reason),
            csv_quote(&r.raw)
        )?;
        tracing::warn!(event = event::ITEM_REJECTED, run_id = %opts.run_id, line = r.line,
            reason = %r.reason, "input row rejected");
    }
    out.flush()?;
    metrics.rejected.add(rejected.len() as u64, &[]);
    Ok(Some(opts.rejects_path.display().to_string()))
}

fn csv_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

async fn watch_cpu(latest: LatestSample, alerts: SharedAlerts) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let cpu = latest
            .lock()
            .map(|s| s.process_cpu_utilization)
            .unwrap_or(0.0);
        lock(&alerts).cpu_sample(cpu, Instant::now());
    }
}

fn progress_bar(enabled: bool, total: usize) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} items  {per_sec:.0}  {msg}  eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

struct BatchContext<'a> {
    opts: &'a RunOptions,
    client: &'a ApiClient,
    metrics: &'a BotMetrics,
    alerts: &'a SharedAlerts,
    progress: &'a indicatif::ProgressBar,
}

impl BatchContext<'_> {
    /// Runs inside the batch span; returns the item results and the batch's duration.
    async fn run_batch(
        &self,
        batch_id: usize,
        warehouse_id: &str,
        items: Vec<Transaction>,
        batch_span: tracing::Span,
    ) -> (Vec<ItemResult>, f64) {
        let run_id = &self.opts.run_id;
        let size = items.len();
        tracing::info!(event = event::BATCH_START, %run_id, batch_id, warehouse_id,
            batch_size = size, "batch started");
        let started = Instant::now();
        let mut pending = items.into_iter();
        let mut running = JoinSet::new();
        let mut results = Vec::with_capacity(size);
        loop {
            while running.len() < self.opts.concurrency {
                let Some(txn) = pending.next() else { break };
                let item_span = tracing::info_span!(
                    parent: &batch_span,
                    span::ITEM,
                    warehouse_id = txn.warehouse_id.as_str(),
                    sku = txn.sku.as_str(),
                    operation = txn.operation.as_str(),
                    quantity = txn.quantity,
                    line = txn.line,
                );
                let key = txn
                    .txn_id
                    .clone()
                    .unwrap_or_else(|| format!("{run_id}:{}", txn.line));
                let (client, metrics, alerts) = (
                    self.client.clone(),
                    self.metrics.clone(),
                    self.alerts.clone(),
                );
                running.spawn(
                    async move { process_item(&client, &metrics, &alerts, &txn, &key).await }
                        .instrument(item_span),
                );
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            // A panicking item task is a bug; count it as failed rather than losing it.
            let result = joined.unwrap_or_else(|e| ItemResult {
                seconds: 0.0,
                attempts: 1,
                failure: Some(format!("internal: {e}")),
                replayed: false,
            });
            self.progress.inc(1);
            results.push(result);
        }
        let seconds = started.elapsed().as_secs_f64();
        let failed = results.iter().filter(|r| r.failure.is_some()).count();
        let applied = size - failed;
        batch_span.record("applied", applied);
        batch_span.record("failed", failed);
        let result = match (applied, failed) {
            (_, 0) => "success",
            (0, _) => "failed",
            _ => "partial",
        };
        if failed > 0 {
            self.progress
                .set_message(format!("batch {batch_id}: {failed} failed"));
        }
        tracing::info!(event = event::BATCH_END, %run_id, batch_id, warehouse_id,
            batch_size = size, applied, failed, result, duration_s = seconds, "batch finished");
        let m = self.metrics;
        m.batch_duration
            .record(seconds, &[KeyValue::new(attr::BATCH_RESULT, result)]);
        m.batches
            .add(1, &[KeyValue::new(attr::BATCH_RESULT, result)]);
        m.batch_success
            .record(applied as f64 / size.max(1) as f64, &[]);
        lock(self.alerts).batch_finished(batch_id, seconds);
        (results, seconds)
    }
}

/// Runs inside the item span.
async fn process_item(
    client: &ApiClient,
    metrics: &BotMetrics,
    alerts: &SharedAlerts,
    txn: &Transaction,
    key: &str,
) -> ItemResult {
    let started = Instant::now();
    let outcome = client.apply(txn, key).await;
    let seconds = started.elapsed().as_secs_f64();
    let duration_ms = seconds * 1000.0;
    let operation = txn.operation.as_str();
    let (failure, replayed) = match &outcome.result {
        Ok(applied) => {
            tracing::info!(
                event = event::ITEM_PROCESSED,
                warehouse_id = txn.warehouse_id.as_str(),
                sku = txn.sku.as_str(),
                operation,
                quantity = txn.quantity,
                outcome = "applied",
                replayed = applied.replayed,
                quantity_after = applied.quantity_after,
                attempts = outcome.attempts,
                duration_ms,
                "transaction applied"
            );
            (None, applied.replayed)
        }
        Err(e) => {
            // ERROR marks the item span failed as well.
            tracing::error!(event = event::ITEM_PROCESSED, warehouse_id = txn.warehouse_id.as_str(),
                sku = txn.sku.as_str(), operation, quantity = txn.quantity, outcome = "failed",
                error.type = %e.kind(), error = %e, attempts = outcome.attempts, duration_ms,
                "transaction failed");
            (Some(e.kind()), false)
        }
    };
    let o = usize::from(failure.is_some());
    metrics.transactions[o][txn.operation as usize].add(1);
    metrics.transaction_duration[o].record(seconds);
    lock(alerts).transaction_finished(failure.is_some());
    ItemResult {
        seconds,
        attempts: outcome.attempts,
        failure,
        replayed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inventory_api::Kind;

    fn txn(line: usize, warehouse: &str) -> Transaction {
        Transaction {
            line,
            txn_id: None,
            warehouse_id: warehouse.into(),
            sku: "SKU-00001".into(),
            operation: Kind::Receive,
            quantity: 1,
        }
    }

    #[test]
    fn batches_group_by_warehouse_then_cut_by_size() {
        let rows = vec![
            txn(2, "A"),
            txn(3, "B"),
            txn(4, "A"),
            txn(5, "A"),
            txn(6, "B"),
        ];
        let b = batches(rows, 2);
        let lines: Vec<Vec<usize>> = b
            .iter()
            .map(|b| b.iter().map(|t| t.line).collect())
            .collect();
        assert_eq!(lines, vec![vec![2, 4], vec![5], vec![3, 6]]);
    }
}
