//! The smoke step: stack up, one batch run of the bot against the API exporting to the real
//! collector, then proof over the backends' HTTP APIs that the run's trace is in Jaeger with
//! spans of both services, its logs are in VictoriaLogs carrying its trace_id, and the bot's series and
//! the spanmetrics series are in Prometheus; stack down whatever happened.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::http::{encode, get_json, logsql, poll};
use crate::stack::{self, Ctx};

const DEADLINE: Duration = Duration::from_secs(60);

pub(crate) fn smoke(root: &Path, ctx: &Ctx) -> Result<()> {
    stack::with_stack(ctx, "smoke", || checks(root, ctx))
}

/// Where `cargo build -p invbot` puts the binary.
pub(crate) fn invbot_path(root: &Path) -> PathBuf {
    let target: PathBuf =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), Into::into);
    target.join("debug/invbot")
}

/// A run of the bot exporting to the native collector, under a fresh environment name.
pub(crate) struct BotRun {
    pub(crate) invbot: PathBuf,
    pub(crate) environment: String,
    pub(crate) summary: Value,
}

/// Builds invbot and runs it (the built-in sample, its own API) with `extra` flags. The fresh
/// `deployment.environment.name` keeps the checks to this run's data even when the stack kept
/// data from earlier runs.
pub(crate) fn run_bot(root: &Path, ctx: &Ctx, label: &str, extra: &[&str]) -> Result<BotRun> {
    crate::cargo(&["build", "--locked", "-p", "invbot"])?;
    let invbot = invbot_path(root);
    let dir = ctx.state.join(label);
    std::fs::create_dir_all(&dir)?;
    let environment = format!(
        "{label}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    eprintln!("xtask: {label}: one bot run exporting to the collector");
    let out = Command::new(&invbot)
        .args([
            "run",
            "--json",
            "--no-progress",
            "--otlp-endpoint",
            "http://127.0.0.1:4317",
        ])
        .args(["--environment", &environment])
        .args(extra)
        .env("INV_METRICS_ADDR", "off")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "1000")
        .current_dir(&dir)
        .output()
        .context("cannot run invbot")?;
    // 0: all applied; 3: some rows failed or were rejected (the built-in sample has a few).
    if !matches!(out.status.code(), Some(0 | 3)) {
        bail!(
            "invbot run failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let summary = serde_json::from_slice(&out.stdout).context("invbot printed no JSON summary")?;
    Ok(BotRun {
        invbot,
        environment,
        summary,
    })
}

fn checks(root: &Path, ctx: &Ctx) -> Result<()> {
    let BotRun {
        invbot,
        environment,
        summary,
    } = run_bot(root, ctx, "smoke", &["--api-fault-error-rate", "0.1"])?;
    let trace_id = summary["batches"][0]["trace_id"]
        .as_str()
        .context("the summary names no batch trace")?
        .to_owned();
    eprintln!(
        "xtask: smoke: run {} batch trace {trace_id}",
        summary["run_id"]
    );

    let services = poll(DEADLINE, || {
        let trace = get_json(&format!("http://127.0.0.1:16686/api/traces/{trace_id}"))?;
        let mut names: Vec<String> = trace["data"][0]["processes"]
            .as_object()
            .map(|p| {
                p.values()
                    .filter_map(|v| v["serviceName"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.dedup();
        Ok((names.len() >= 2).then_some(names))
    })
    .context("Jaeger: the batch trace with spans of both services")?;
    eprintln!("xtask: smoke: Jaeger has the trace, services {services:?}");

    for service in ["invbot", "inventory-api"] {
        let query = format!(
            r#"{{service.name="{service}"}} trace_id:="{trace_id}" | stats count() records"#
        );
        let records = poll(DEADLINE, || {
            let rows = logsql(&query, Duration::from_secs(3600))?;
            let n: usize = rows
                .first()
                .and_then(|r| r["records"].as_str()?.parse().ok())
                .unwrap_or(0);
            Ok((n > 0).then_some(n))
        })
        .with_context(|| format!("VictoriaLogs: logs of {service} with the batch's trace_id"))?;
        eprintln!(
            "xtask: smoke: VictoriaLogs has {records} {service} log records with trace_id {trace_id}"
        );
    }

    for query in [
        format!(r#"invbot_transactions_total{{deployment_environment_name="{environment}"}}"#),
        format!(
            r#"traces_span_metrics_calls_total{{service_name="inventory-api",deployment_environment_name="{environment}"}}"#
        ),
        format!(
            r#"traces_span_metrics_duration_seconds_bucket{{service_name="invbot",deployment_environment_name="{environment}"}}"#
        ),
    ] {
        let series = poll(DEADLINE, || {
            let v = get_json(&format!(
                "http://127.0.0.1:9090/api/v1/query?query={}",
                encode(&query)
            ))?;
            let n = v["data"]["result"].as_array().map_or(0, Vec::len);
            Ok((n > 0).then_some(n))
        })
        .with_context(|| format!("Prometheus: {query}"))?;
        eprintln!("xtask: smoke: Prometheus has {series} series for {query}");
    }
    // The same proof through the user's tool.
    let out = Command::new(&invbot)
        .args(["verify", "--trace-id", &trace_id, "--timeout-secs", "60"])
        .output()
        .context("cannot run invbot verify")?;
    if !out.status.success() {
        bail!(
            "invbot verify --trace-id {trace_id} found pillars missing:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!(
        "xtask: smoke: invbot verify: {}",
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
    );
    eprintln!("xtask: smoke passed");
    Ok(())
}
