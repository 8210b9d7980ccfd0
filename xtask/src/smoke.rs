//! The smoke step: stack up, a batch run of the bot against the API exporting to the real
//! collector, then `invbot verify` on its first batch trace, which proves over the backends'
//! HTTP APIs that the trace is in Jaeger with spans of both services linked across the HTTP hop,
//! that its logs are in VictoriaLogs carrying its trace_id, and that the run's series and the
//! spanmetrics series are in Prometheus; stack down whatever happened. Twice: with the default
//! outputs (the JSON file and the console beside OTel: tracing-subscriber's registry keeps the
//! spans) and with OTel alone (the telemetry library's own subscriber keeps them).

use std::path::Path;

use anyhow::{Context, Result};

use crate::bot::{self, BotRun};
use crate::stack::{self, Ctx};

pub(crate) fn smoke(root: &Path, ctx: &Ctx) -> Result<()> {
    stack::with_stack(ctx, "smoke", || checks(root, ctx))
}

/// Each run's label and what it adds to the bot's environment (its API process inherits it).
const RUNS: [(&str, &[(&str, &str)]); 2] = [
    ("smoke", &[]),
    (
        "smoke-otel-only",
        &[("INV_LOG_FILE", "off"), ("INV_LOG_CONSOLE", "false")],
    ),
];

fn checks(root: &Path, ctx: &Ctx) -> Result<()> {
    for (label, env) in RUNS {
        let BotRun {
            invbot, summary, ..
        } = bot::start(root, ctx, label, &["--api-fault-error-rate", "0.1"], env)?.finish()?;
        let trace_id = summary["batches"][0]["trace_id"]
            .as_str()
            .context("the summary names no batch trace")?;
        eprintln!(
            "xtask: {label}: run {} batch trace {trace_id}",
            summary["run_id"]
        );
        let verdict = bot::verify_complete(
            &invbot,
            &ctx.state.join(label),
            &["--trace-id", trace_id, "--timeout-secs", "60"],
        )?;
        eprintln!("xtask: {label}: invbot verify: {verdict}");
    }
    eprintln!("xtask: smoke passed");
    Ok(())
}
