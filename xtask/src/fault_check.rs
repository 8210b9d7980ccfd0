//! `cargo xtask fault-e2e` (in CI): the same clean input run twice, once as it is and once with
//! the collector killed (SIGKILL) two seconds into the run and started again three seconds
//! later. The collector keeps what it acknowledged in its file queue, so what the backends miss
//! of the second run, against the first, must be at most what the bot's report says it could
//! not deliver: no loss goes uncounted. The run's own results do not change.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bot::{self, BotRun};
use crate::http::{jaeger_span_count, logsql, poll};
use crate::stack::{self, Ctx};

const ROWS: &str = "3000";

pub(crate) fn fault_e2e(root: &Path) -> Result<()> {
    let ctx = Ctx::new(root)?;
    stack::with_stack(&ctx, "fault-e2e", || check(root, &ctx))
}

fn check(root: &Path, ctx: &Ctx) -> Result<()> {
    let input = ctx.state.join("fault-rows.csv");
    bot::generate(
        &bot::build(root)?,
        &input,
        &["--rows", ROWS, "--seed", "31"],
    )?;
    let input = input.display().to_string();
    // Latency stretches the run to several seconds, so the kill lands in its middle.
    let args = ["--input", input.as_str(), "--api-fault-latency-ms", "10"];
    let reference = fresh_run(root, ctx, "fault-reference", &args)?;
    let started = fresh_start(root, ctx, "fault-collector-killed", &args)?;
    std::thread::sleep(Duration::from_secs(2));
    stack::kill_one(ctx, "otel-collector")?;
    std::thread::sleep(Duration::from_secs(3));
    stack::up(ctx)?;
    let faulty = started.finish()?;
    for key in ["rows_read", "applied", "failed", "rejected"] {
        if faulty.summary[key] != reference.summary[key] {
            bail!(
                "with the collector killed, the run's {key} is {} (without: {})",
                faulty.summary[key],
                reference.summary[key]
            );
        }
    }
    let (lost_spans, lost_records) = not_delivered(&faulty.summary)?;
    let (want_spans, want_records) = (spans(&reference)?, records(&reference)?);
    let spans = arrived("Jaeger", "spans", lost_spans, want_spans, || spans(&faulty))?;
    let records = arrived(
        "VictoriaLogs",
        "records",
        lost_records,
        want_records,
        || records(&faulty),
    )?;
    if spans > want_spans || records > want_records {
        bail!(
            "more than the fault-free run: {spans} spans of {want_spans}, {records} records of {want_records}"
        );
    }
    eprintln!(
        "xtask: fault-e2e: collector killed mid-run and started again: Jaeger has {spans} of {want_spans} spans ({lost_spans} reported not delivered), VictoriaLogs {records} of {want_records} records ({lost_records} reported); the run's counts as without the fault"
    );
    Ok(())
}

/// How many of the run's `what` `backend` has (`count`), once it has all but the `lost` the
/// run reported, of the fault-free run's `want`; an error naming them if that takes 90 s.
fn arrived(
    backend: &str,
    what: &str,
    lost: u64,
    want: u64,
    count: impl Fn() -> Result<u64>,
) -> Result<u64> {
    poll(Duration::from_secs(90), || {
        let n = count()?;
        Ok((n + lost >= want).then_some(n))
    })
    .with_context(|| {
        format!("{backend} should have the run's {what} but the {lost} reported lost, of {want}")
    })
}

/// A run from an empty state directory, so its API applies every row anew, as the other did.
fn fresh_start(root: &Path, ctx: &Ctx, label: &str, args: &[&str]) -> Result<bot::Started> {
    let _ = std::fs::remove_dir_all(ctx.state.join(label));
    bot::start(root, ctx, label, args, &[])
}

fn fresh_run(root: &Path, ctx: &Ctx, label: &str, args: &[&str]) -> Result<BotRun> {
    fresh_start(root, ctx, label, args)?.finish()
}

/// The spans and log records the run's telemetry line says were not delivered.
fn not_delivered(summary: &Value) -> Result<(u64, u64)> {
    let line = summary["telemetry"].as_str().context("no telemetry line")?;
    let number_before = |what: &str| -> Option<u64> {
        let at = line.find(what)?;
        line[..at].split_whitespace().last()?.parse().ok()
    };
    match (
        number_before(" spans and "),
        number_before(" log records not delivered"),
    ) {
        (Some(s), Some(r)) => Ok((s, r)),
        _ => bail!("no counts in the telemetry line {line:?}"),
    }
}

/// Jaeger's spans of the run's batch traces, each asked by its id: a trace whose root span was
/// lost is not found by a search on the root's run_id, but its other spans still count.
fn spans(run: &BotRun) -> Result<u64> {
    let mut total = 0;
    for batch in run.summary["batches"].as_array().into_iter().flatten() {
        let id = batch["trace_id"]
            .as_str()
            .context("a batch without trace id")?;
        total += jaeger_span_count(id)? as u64;
    }
    Ok(total)
}

/// VictoriaLogs' records of the run's environment.
fn records(run: &BotRun) -> Result<u64> {
    let query = format!(
        "{{deployment.environment.name={}}} | stats count() n",
        serde_json::to_string(&run.environment)?
    );
    let rows = logsql(&query, Duration::from_secs(1800))?;
    Ok(rows
        .first()
        .and_then(|r| r["n"].as_str()?.parse().ok())
        .unwrap_or(0))
}
