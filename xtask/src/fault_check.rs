//! `cargo xtask fault-e2e` (in CI): the same clean input run once as it is and then once under
//! each fault: the collector killed (SIGKILL) mid-run and started again; the collector killed
//! as the run ends, its last metrics just acknowledged; the collector absent for
//! the whole run and started afterwards; Jaeger restarted mid-run; the log store restarted
//! mid-run. After each faulty run, `invbot telemetry flush` sends what the run kept in its
//! spool. Then the backends must hold everything the fault-free run delivered (spans in Jaeger,
//! records in VictoriaLogs, the transactions counter in Prometheus), the run's report must say
//! nothing was dropped, and the run's own results and exit status must not change.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bot::{self, BotRun};
use crate::http::{encode, get_json, jaeger_span_count, logsql, poll};
use crate::stack::{self, Ctx, url};

const ROWS: &str = "3000";

/// One fault: what is done to the stack before the run, during it, and as it ends.
struct Fault {
    label: &'static str,
    about: &'static str,
    before: fn(&Ctx) -> Result<()>,
    during: fn(&Ctx) -> Result<()>,
    after: fn(&Ctx) -> Result<()>,
}

const FAULTS: [Fault; 5] = [
    Fault {
        label: "fault-collector-killed",
        about: "the collector killed mid-run and started again",
        before: nothing,
        during: |ctx| mid_run(ctx, |ctx| stack::kill_one(ctx, "otel-collector")),
        after: nothing,
    },
    Fault {
        label: "fault-collector-killed-after",
        about: "the collector killed as the run ends and started again",
        before: nothing,
        during: nothing,
        // The run's last metrics were just acknowledged: a collector that kept them in memory
        // for Prometheus to scrape would lose them here.
        after: |ctx| stack::kill_one(ctx, "otel-collector"),
    },
    Fault {
        label: "fault-collector-absent",
        about: "the collector absent for the whole run and started afterwards",
        before: |ctx| stack::stop_one(ctx, "otel-collector"),
        during: nothing,
        after: nothing,
    },
    Fault {
        label: "fault-jaeger-restarted",
        about: "Jaeger restarted mid-run",
        before: nothing,
        during: |ctx| mid_run(ctx, |ctx| stack::stop_one(ctx, "jaeger")),
        after: nothing,
    },
    Fault {
        label: "fault-logstore-restarted",
        about: "VictoriaLogs restarted mid-run",
        before: nothing,
        during: |ctx| mid_run(ctx, |ctx| stack::stop_one(ctx, "victorialogs")),
        after: nothing,
    },
];

fn nothing(_: &Ctx) -> Result<()> {
    Ok(())
}

/// Two seconds into the run, `stop` a backend; three seconds later, start it again.
fn mid_run(ctx: &Ctx, stop: fn(&Ctx) -> Result<()>) -> Result<()> {
    std::thread::sleep(Duration::from_secs(2));
    stop(ctx)?;
    std::thread::sleep(Duration::from_secs(3));
    stack::up(ctx)
}

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
    // Latency stretches the run to several seconds, so a fault lands in its middle.
    let args = ["--input", input.as_str(), "--api-fault-latency-ms", "10"];
    let reference = fresh_start(root, ctx, "fault-reference", &args)?.finish()?;
    let want = settled(&reference)?;
    eprintln!("xtask: fault-e2e: without a fault, the backends hold {want}");
    for fault in &FAULTS {
        (fault.before)(ctx)?;
        let started = fresh_start(root, ctx, fault.label, &args)?;
        (fault.during)(ctx)?;
        let faulty = started.finish()?;
        (fault.after)(ctx)?;
        stack::up(ctx)?;
        same_results(fault, &faulty, &reference)?;
        let dropped = dropped(&faulty.summary)?;
        if dropped != (0, 0) {
            bail!(
                "{}: the run dropped {} spans and {} log records: {}",
                fault.about,
                dropped.0,
                dropped.1,
                faulty.summary["telemetry"]
            );
        }
        let flushed = flush(&faulty.invbot, &ctx.state.join(fault.label))?;
        let got = poll(Duration::from_secs(90), || {
            let got = Counts::of(&faulty)?;
            Ok((got == want).then_some(got))
        })
        .with_context(|| {
            format!(
                "{}: the backends should hold what the fault-free run delivered ({want}); \
                 they hold {}",
                fault.about,
                Counts::of(&faulty).map_or_else(|e| format!("{e:#}"), |c| c.to_string())
            )
        })?;
        eprintln!(
            "xtask: fault-e2e: {}: the backends hold {got}, as without the fault; nothing \
             dropped; `invbot telemetry flush` {flushed}",
            fault.about
        );
    }
    Ok(())
}

/// What the backends hold of the fault-free `run` once it has all arrived: every transaction
/// counted, and the same counts for three seconds (the backends store asynchronously).
fn settled(run: &BotRun) -> Result<Counts> {
    let transactions = ["applied", "failed"]
        .iter()
        .map(|k| run.summary[k].as_u64().context("the run's counts"))
        .sum::<Result<u64>>()?;
    let mut last = None;
    let mut same = 0;
    poll(Duration::from_secs(90), || {
        let now = Counts::of(run)?;
        same = if last.as_ref() == Some(&now) {
            same + 1
        } else {
            0
        };
        let done = same >= 6 && now.transactions == transactions;
        last = Some(now);
        Ok(done.then(|| last.take()).flatten())
    })
    .with_context(|| {
        format!("the fault-free run's telemetry should settle, {transactions} transactions counted")
    })
}

/// A run from an empty state directory, so its API applies every row anew, as the others did.
fn fresh_start(root: &Path, ctx: &Ctx, label: &str, args: &[&str]) -> Result<bot::Started> {
    let _ = std::fs::remove_dir_all(ctx.state.join(label));
    bot::start(root, ctx, label, args, &[])
}

/// The run's own results and exit status are those of the fault-free run.
fn same_results(fault: &Fault, faulty: &BotRun, reference: &BotRun) -> Result<()> {
    if faulty.exit_code != reference.exit_code {
        bail!(
            "with {}, the run exited with {:?} (without: {:?})",
            fault.about,
            faulty.exit_code,
            reference.exit_code
        );
    }
    for key in ["rows_read", "applied", "failed", "rejected"] {
        if faulty.summary[key] != reference.summary[key] {
            bail!(
                "with {}, the run's {key} is {} (without: {})",
                fault.about,
                faulty.summary[key],
                reference.summary[key]
            );
        }
    }
    Ok(())
}

/// The spans and log records the run's telemetry line says were dropped (neither delivered
/// nor kept in the spool).
fn dropped(summary: &Value) -> Result<(u64, u64)> {
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

/// `invbot telemetry flush` from the run's directory: it must leave the spool empty; returns
/// what it said it sent.
fn flush(invbot: &Path, dir: &Path) -> Result<String> {
    let out = Command::new(invbot)
        .args(["telemetry", "flush", "--otlp-endpoint", url::COLLECTOR_OTLP])
        .current_dir(dir)
        .output()
        .context("cannot run invbot telemetry flush")?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() {
        bail!(
            "invbot telemetry flush left telemetry in the spool ({}): {said}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(said
        .split_once("; sent ")
        .and_then(|(_, rest)| rest.split_once(';'))
        .map_or(said.clone(), |(sent, _)| format!("sent {sent}")))
}

/// What the backends hold of one run.
#[derive(Debug, PartialEq, Eq)]
struct Counts {
    spans: u64,
    records: u64,
    /// The run's transactions counter (the bot's), summed over its outcomes.
    transactions: u64,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} spans in Jaeger, {} records in VictoriaLogs, {} transactions counted in Prometheus",
            self.spans, self.records, self.transactions
        )
    }
}

impl Counts {
    fn of(run: &BotRun) -> Result<Self> {
        Ok(Self {
            spans: spans(run)?,
            records: records(run)?,
            transactions: transactions(run)?,
        })
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

/// VictoriaLogs' records of the run's environment, each counted once: a collector killed after
/// sending a request from its file queue and before marking it done sends it again when it is
/// back (at least once), and VictoriaLogs keeps both copies. A record is its time, span and
/// message. (Jaeger keeps a span once, by its id.)
fn records(run: &BotRun) -> Result<u64> {
    let query = format!(
        "{{deployment.environment.name={}}} | stats count_uniq(_time, span_id, _msg) n",
        serde_json::to_string(&run.environment)?
    );
    let rows = logsql(&query, Duration::from_secs(1800))?;
    Ok(rows
        .first()
        .and_then(|r| r["n"].as_str()?.parse().ok())
        .unwrap_or(0))
}

/// Prometheus' latest value of the run's transactions counter, summed over its outcomes.
fn transactions(run: &BotRun) -> Result<u64> {
    let query = format!(
        "sum(max_over_time({}{{deployment_environment_name={}}}[30m]))",
        names::metric::TRANSACTIONS.prometheus,
        serde_json::to_string(&run.environment)?
    );
    let answer = get_json(&format!(
        "{}/api/v1/query?query={}",
        url::PROMETHEUS,
        encode(&query)
    ))?;
    Ok(answer["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64)
}
