//! The gateway topology end to end: an agent collector in front of two gateways
//! (`stack up --topology gateway`), a generated run with fault injection whose rows carry PII
//! canaries, and a short run of slow batches. Asserted over the backends' APIs:
//! - every trace in Jaeger is whole (all its items, no orphan, spans of both services): the
//!   agent routed all of a trace to one gateway;
//! - every trace with an error (an `api_error` record in VictoriaLogs, which is not sampled) and
//!   every batch slower than 2 s is in Jaeger; of the others, the share kept is the sampling
//!   setting within a stated tolerance;
//! - spanmetrics count every item span, sampled or not, and both gateways made some;
//! - no canary is in Jaeger, VictoriaLogs or Prometheus, its fields are masked there, and the
//!   allow-list dropped nothing the bot and its API send.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bot::{self, BotRun};
use crate::http::{encode, get_json, jaeger_run, jaeger_trace, logsql, poll};
use crate::stack::{self, Ctx, GATEWAYS, Gateway, Topology, url};

/// Rows of the main run, in batches of `BATCH_SIZE`: about 400 batch traces, some 360 of them
/// without an error, which the probabilistic policy samples.
const ROWS: &str = "4000";
const BATCH_SIZE: &str = "10";
/// The gateway's default (`INV_TAIL_SAMPLE_PERCENT`), and how far the kept share may be from it:
/// over about 360 traces one binomial standard deviation is 1.6 points, so 5 points is over
/// three (a pass falls outside about once in 700 runs).
const SAMPLE_PERCENT: f64 = 10.0;
const TOLERANCE_POINTS: f64 = 5.0;
/// The canaries, in the fields the bot records on spans and log records.
const EMAIL: &str = "ops.alice@example.com";
const CARD: &str = "4111-1111-1111-1111";
const CANARY_ROWS: usize = 6;

pub(crate) fn gateway_e2e(root: &Path) -> Result<()> {
    let mut ctx = Ctx::new(root)?;
    ctx.topology = Topology::Gateway;
    stack::with_stack(&ctx, "gateway-e2e", || checks(root, &ctx))
}

fn checks(root: &Path, ctx: &Ctx) -> Result<()> {
    let dir = ctx.state.join("gateway-e2e");
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("rows.csv");
    let invbot = bot::build(root)?;
    bot::generate(&invbot, &input, &["--rows", ROWS, "--seed", "23"])?;
    // The restart step runs the rows without canaries.
    let clean = dir.join("clean.csv");
    std::fs::copy(&input, &clean)?;
    // One batch of its own (batches never mix warehouses): an e-mail as the warehouse, half of
    // its rows with a card number as the SKU, which the API does not know, so the batch fails
    // and its trace is kept.
    let mut rows = std::fs::read_to_string(&input)?;
    for i in 0..CANARY_ROWS {
        let sku = if i % 2 == 0 { CARD } else { "SKU-00001" };
        rows.push_str(&format!("canary-{i},{EMAIL},{sku},receive,1\n"));
    }
    std::fs::write(&input, rows)?;
    let input = input.display().to_string();

    let before: Vec<Load> = GATEWAYS
        .iter()
        .map(|g| Load::of(ctx, g))
        .collect::<Result<_>>()?;
    let BotRun {
        environment,
        summary,
        ..
    } = bot::run(
        root,
        ctx,
        "gateway-e2e",
        &[
            "--input",
            &input,
            "--batch-size",
            BATCH_SIZE,
            "--api-fault-error-rate",
            "0.01",
            "--api-fault-latency-ms",
            "2",
            "--max-attempts",
            "2",
        ],
    )?;
    // Batches of two calls of 1.1 s each, one at a time: every one slower than 2 s.
    let slow_run = bot::run(
        root,
        ctx,
        "gateway-e2e-slow",
        &[
            "--batch-size",
            "2",
            "--concurrency",
            "1",
            "--api-fault-latency-ms",
            "1100",
            "--input",
            &slow_input(&dir)?,
        ],
    )?;
    let batches = batches_of(&summary)?;
    let run_id = summary["run_id"].as_str().context("no run id")?;
    eprintln!(
        "xtask: gateway-e2e: run {run_id}: {} rows in {} batches, {} failed",
        summary["rows_read"],
        batches.len(),
        summary["failed"]
    );

    // Logs are not sampled: the traces with an error are those with an api_error record.
    let errors = traces_with(&environment, "api_error")?;
    let slow_ids: BTreeSet<String> = batches
        .iter()
        .filter(|b| b.seconds > 2.0)
        .map(|b| b.trace_id.clone())
        .collect();
    // Decisions come 15 s after a trace's first span; wait until Jaeger holds every error trace.
    poll(Duration::from_secs(90), || {
        let kept = jaeger_run(run_id)?;
        Ok(errors.iter().all(|t| kept.contains_key(t)).then_some(()))
    })
    .with_context(|| {
        format!(
            "Jaeger should hold all {} traces with an error",
            errors.len()
        )
    })?;
    // Late traces of the run (the last decisions) have had time to arrive too.
    std::thread::sleep(Duration::from_secs(5));
    let kept = jaeger_run(run_id)?;

    for (id, trace) in &kept {
        let Some(batch) = batches.iter().find(|b| &b.trace_id == id) else {
            bail!("Jaeger has trace {id} of run {run_id}, which is no batch of the summary");
        };
        whole(trace, batch.items).with_context(|| format!("trace {id} is not whole"))?;
    }
    let missing_slow: Vec<&String> = slow_ids.iter().filter(|t| !kept.contains_key(*t)).collect();
    if !missing_slow.is_empty() {
        bail!("batches slower than 2 s missing from Jaeger: {missing_slow:?}");
    }
    let slow_batches = batches_of(&slow_run.summary)?;
    for b in &slow_batches {
        if b.seconds <= 2.0 {
            bail!("a batch of the slow run took only {} s", b.seconds);
        }
        let trace = poll(Duration::from_secs(60), || {
            let trace = jaeger_trace(&b.trace_id)?["data"][0].clone();
            Ok((!trace.is_null()).then_some(trace))
        })
        .with_context(|| format!("the slow batch {} should be in Jaeger", b.trace_id))?;
        whole(&trace, b.items)
            .with_context(|| format!("the slow batch {} is not whole", b.trace_id))?;
    }
    let rest: Vec<&Batch> = batches
        .iter()
        .filter(|b| !errors.contains(&b.trace_id) && !slow_ids.contains(&b.trace_id))
        .collect();
    let rest_kept = rest
        .iter()
        .filter(|b| kept.contains_key(&b.trace_id))
        .count();
    let share = 100.0 * rest_kept as f64 / rest.len().max(1) as f64;
    if rest.len() < 100 || (share - SAMPLE_PERCENT).abs() > TOLERANCE_POINTS {
        bail!(
            "of {} traces without error or slowness, {rest_kept} kept ({share:.1} %); expected {SAMPLE_PERCENT} % ± {TOLERANCE_POINTS}",
            rest.len()
        );
    }
    eprintln!(
        "xtask: gateway-e2e: Jaeger holds {} whole traces: all {} with an error, all {} slower than 2 s, and {rest_kept} of the {} others ({share:.1} %, setting {SAMPLE_PERCENT} % ± {TOLERANCE_POINTS})",
        kept.len() + slow_batches.len(),
        errors.len(),
        slow_ids.len() + slow_batches.len(),
        rest.len()
    );

    let items: u64 = batches.iter().map(|b| b.items).sum();
    spanmetrics(&environment, items)?;
    canaries(&environment, &kept)?;
    for (g, before) in GATEWAYS.iter().zip(&before) {
        let used = Load::of(ctx, g)?.since(before);
        eprintln!(
            "xtask: gateway-e2e: {} took {:.0} spans and {:.0} log records for {:.1} CPU-seconds ({:.0} spans and records per CPU-second), peak resident memory {} MiB",
            g.name,
            used.spans,
            used.records,
            used.cpu_s,
            (used.spans + used.records) / used.cpu_s.max(0.01),
            used.peak_bytes / (1024 * 1024)
        );
    }
    restart(root, ctx, &clean.display().to_string())?;
    eprintln!("xtask: gateway-e2e passed");
    Ok(())
}

/// What a gateway has taken in (its own counters) and the CPU its process has used.
struct Load {
    spans: f64,
    records: f64,
    cpu_s: f64,
    peak_bytes: u64,
}

impl Load {
    fn of(ctx: &Ctx, g: &Gateway) -> Result<Self> {
        let (cpu_s, peak_bytes) = stack::usage(ctx, g.name)?;
        Ok(Self {
            spans: accepted(g, "spans")?,
            records: accepted(g, "log_records")?,
            cpu_s,
            peak_bytes,
        })
    }

    fn since(&self, before: &Self) -> Self {
        Self {
            spans: self.spans - before.spans,
            records: self.records - before.records,
            cpu_s: self.cpu_s - before.cpu_s,
            peak_bytes: self.peak_bytes,
        }
    }
}

/// A gateway's `otelcol_receiver_accepted_<what>`, summed over its receivers.
fn accepted(g: &Gateway, what: &str) -> Result<f64> {
    crate::http::collector_counter(g.telemetry, &format!("otelcol_receiver_accepted_{what}"))
}

/// A gateway stopped in the middle of a run and started again: the other one goes on taking
/// its share, the agent holds the stopped one's share in its queue and delivers it once it is
/// back, and the run itself is as without the fault. Log records are not sampled, so every one
/// of them must arrive; traces the stopped gateway held undecided are lost with it (tail
/// sampling keeps them in memory), and the step counts them.
fn restart(root: &Path, ctx: &Ctx, input: &str) -> Result<()> {
    let [serving, stopped] = &GATEWAYS;
    let run = bot::start(
        root,
        ctx,
        "gateway-e2e-restart",
        &[
            "--input",
            input,
            "--batch-size",
            BATCH_SIZE,
            "--api-fault-latency-ms",
            "20",
        ],
        &[],
    )?;
    std::thread::sleep(Duration::from_secs(2));
    stack::stop_one(ctx, stopped.name)?;
    let before = accepted(serving, "spans")?;
    std::thread::sleep(Duration::from_secs(4));
    let during = accepted(serving, "spans")?;
    if during <= before {
        bail!(
            "with {} stopped, {} took no spans",
            stopped.name,
            serving.name
        );
    }
    stack::up(ctx)?;
    let BotRun {
        environment,
        summary,
        ..
    } = run.finish()?;
    let batches = batches_of(&summary)?;
    let items: u64 = batches.iter().map(|b| b.items).sum();
    if summary["failed"] != 0 || summary["applied"].as_u64() != Some(items) {
        bail!(
            "the run should apply every row as without the fault: {} applied, {} failed of {items}",
            summary["applied"],
            summary["failed"]
        );
    }
    let query = format!(
        "{{deployment.environment.name={}}} event:=item_processed | stats count() n",
        serde_json::to_string(&environment)?
    );
    let delivered = poll(Duration::from_secs(120), || {
        let rows = logsql(&query, Duration::from_secs(1800))?;
        let n: u64 = rows
            .first()
            .and_then(|r| r["n"].as_str()?.parse().ok())
            .unwrap_or(0);
        Ok((n == items).then_some(n))
    })
    .with_context(|| {
        format!("every item_processed record of the run should reach VictoriaLogs ({items})")
    })?;
    let again = accepted(stopped, "spans")?;
    if again == 0.0 {
        bail!("{} took nothing once it was back", stopped.name);
    }
    // Sampled traces of the run: whole, or cut by the restart.
    std::thread::sleep(Duration::from_secs(20));
    let run_id = summary["run_id"].as_str().context("no run id")?;
    let kept = jaeger_run(run_id)?;
    let cut = kept
        .iter()
        .filter(|(id, t)| {
            let items = batches
                .iter()
                .find(|b| &b.trace_id == *id)
                .map_or(0, |b| b.items);
            whole(t, items).is_err()
        })
        .count();
    eprintln!(
        "xtask: gateway-e2e: {} stopped mid-run and started again: {} took {:.0} spans meanwhile, all {delivered} item records arrived, {} took {again:.0} spans once back; of the {} traces Jaeger kept, {cut} lost spans with the stopped gateway's undecided traces",
        stopped.name,
        serving.name,
        during - before,
        stopped.name,
        kept.len()
    );
    Ok(())
}

/// Six valid rows, one warehouse: three batches of two.
fn slow_input(dir: &Path) -> Result<String> {
    let path = dir.join("slow.csv");
    let mut rows = "txn_id,warehouse_id,sku,operation,quantity\n".to_owned();
    for i in 0..6 {
        rows.push_str(&format!("slow-{i},WH-01,SKU-0000{},receive,1\n", i + 1));
    }
    std::fs::write(&path, rows)?;
    Ok(path.display().to_string())
}

/// What the run's summary says of one batch.
struct Batch {
    trace_id: String,
    items: u64,
    seconds: f64,
}

fn batches_of(summary: &Value) -> Result<Vec<Batch>> {
    summary["batches"]
        .as_array()
        .context("no batches in the summary")?
        .iter()
        .map(|b| {
            Ok(Batch {
                trace_id: b["trace_id"]
                    .as_str()
                    .context("a batch without trace id")?
                    .to_owned(),
                items: b["items"].as_u64().context("a batch without items")?,
                seconds: b["duration_s"].as_f64().unwrap_or(0.0),
            })
        })
        .collect()
}

/// The trace ids of `environment`'s bot records with `event`.
fn traces_with(environment: &str, event: &str) -> Result<BTreeSet<String>> {
    let query = format!(
        "{{deployment.environment.name={}}} event:={event} | stats by (trace_id) count() n",
        serde_json::to_string(environment)?
    );
    let rows = poll(Duration::from_secs(60), || {
        let rows = logsql(&query, Duration::from_secs(1800))?;
        Ok((!rows.is_empty()).then_some(rows))
    })?;
    Ok(rows
        .iter()
        .filter_map(|r| r["trace_id"].as_str().map(str::to_owned))
        .collect())
}

/// A batch trace with all of its `items`, no orphan and spans of both services.
fn whole(trace: &Value, items: u64) -> Result<()> {
    let spans = trace["spans"].as_array().context("no spans")?;
    let ids: BTreeSet<&str> = spans.iter().filter_map(|s| s["spanID"].as_str()).collect();
    let mut services = BTreeSet::new();
    let (mut item_spans, mut orphans, mut roots) = (0, 0, 0);
    for s in spans {
        let process = s["processID"].as_str().unwrap_or_default();
        services.insert(
            trace["processes"][process]["serviceName"]
                .as_str()
                .unwrap_or_default(),
        );
        item_spans += u64::from(s["operationName"] == "item");
        match s["references"].as_array().and_then(|r| r.first()) {
            Some(parent) if !ids.contains(parent["spanID"].as_str().unwrap_or_default()) => {
                orphans += 1;
            }
            Some(_) => {}
            None => roots += 1,
        }
    }
    if item_spans != items || orphans > 0 || roots != 1 || services.len() != 2 {
        bail!(
            "{item_spans} item spans of {items}, {orphans} orphans, {roots} roots, services {services:?}"
        );
    }
    Ok(())
}

/// spanmetrics counted every item span of the run, before sampling, on both gateways.
fn spanmetrics(environment: &str, items: u64) -> Result<()> {
    let query = format!(
        "sum by (collector_instance_id) (traces_span_metrics_calls_total{{deployment_environment_name={},service_name=\"invbot\",span_name=\"item\"}})",
        serde_json::to_string(environment)?
    );
    let url = format!("{}/api/v1/query?query={}", url::PROMETHEUS, encode(&query));
    let per_gateway = poll(Duration::from_secs(60), || {
        let answer = get_json(&url)?;
        let counts: Vec<f64> = answer["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["value"][1].as_str()?.parse().ok())
            .collect();
        Ok((counts.iter().sum::<f64>() as u64 == items).then_some(counts))
    })
    .with_context(|| format!("spanmetrics should count all {items} item spans"))?;
    if per_gateway.len() != 2 {
        bail!(
            "item spans counted by {} gateways, not 2: {per_gateway:?}",
            per_gateway.len()
        );
    }
    eprintln!(
        "xtask: gateway-e2e: spanmetrics count all {items} item spans, unsampled ({per_gateway:?} per gateway)"
    );
    Ok(())
}

/// No canary anywhere; its fields masked where they are kept; nothing else removed.
fn canaries(environment: &str, kept: &std::collections::BTreeMap<String, Value>) -> Result<()> {
    let canaries = [EMAIL, CARD];
    let jaeger = serde_json::to_string(kept)?;
    let (mut masked_spans, mut redacted_spans) = (0, 0);
    for trace in kept.values() {
        for s in trace["spans"].as_array().into_iter().flatten() {
            for t in s["tags"].as_array().into_iter().flatten() {
                masked_spans += usize::from(t["key"] == "redaction.masked.count");
                redacted_spans += usize::from(t["key"] == "redaction.redacted.count");
            }
        }
    }
    let env = serde_json::to_string(environment)?;
    let records = logsql(
        &format!("{{deployment.environment.name={env}}} redaction.masked.count:* | limit 1000"),
        Duration::from_secs(1800),
    )?;
    let dropped = logsql(
        &format!("{{deployment.environment.name={env}}} redaction.redacted.count:* | limit 10"),
        Duration::from_secs(1800),
    )?;
    let logs = serde_json::to_string(&records)?;
    let prometheus = label_values()?;
    for c in canaries {
        for (store, text) in [
            ("Jaeger", &jaeger),
            ("VictoriaLogs", &logs),
            ("Prometheus", &prometheus),
        ] {
            if text.contains(c) {
                bail!("{store} holds the canary {c:?}");
            }
        }
    }
    if masked_spans == 0 || records.is_empty() {
        bail!(
            "the canaries should have been masked: {masked_spans} spans and {} records say so",
            records.len()
        );
    }
    if redacted_spans > 0 || !dropped.is_empty() {
        bail!(
            "the allow-list dropped attributes the bot or its API send: {redacted_spans} spans and {} records (e.g. {:?})",
            dropped.len(),
            dropped.first()
        );
    }
    eprintln!(
        "xtask: gateway-e2e: no canary in Jaeger, VictoriaLogs or Prometheus; {masked_spans} spans and {} records masked; the allow-list removed nothing else",
        records.len()
    );
    Ok(())
}

/// Every label value Prometheus has, as one text.
fn label_values() -> Result<String> {
    let names = get_json(&format!("{}/api/v1/labels", url::PROMETHEUS))?;
    let mut out = String::new();
    for name in names["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let values = get_json(&format!(
            "{}/api/v1/label/{}/values",
            url::PROMETHEUS,
            encode(name)
        ))?;
        out.push_str(&values["data"].to_string());
    }
    Ok(out)
}
