//! The smoke step: stack up, one batch run of the bot against the API exporting to the real
//! collector, then `invbot verify` on its first batch trace, which proves over the backends'
//! HTTP APIs that the trace is in Jaeger with spans of both services linked across the HTTP hop,
//! that its logs are in VictoriaLogs carrying its trace_id, and that the run's series and the
//! spanmetrics series are in Prometheus; stack down whatever happened.

use std::path::Path;

use anyhow::{Context, Result};

use crate::bot::{self, BotRun};
use crate::stack::{self, Ctx};

pub(crate) fn smoke(root: &Path, ctx: &Ctx) -> Result<()> {
    stack::with_stack(ctx, "smoke", || checks(root, ctx))
}

fn checks(root: &Path, ctx: &Ctx) -> Result<()> {
    let BotRun {
        invbot, summary, ..
    } = bot::run(root, ctx, "smoke", &["--api-fault-error-rate", "0.1"])?;
    let trace_id = summary["batches"][0]["trace_id"]
        .as_str()
        .context("the summary names no batch trace")?;
    eprintln!(
        "xtask: smoke: run {} batch trace {trace_id}",
        summary["run_id"]
    );
    let verdict = bot::verify_complete(
        &invbot,
        &ctx.state.join("smoke"),
        &["--trace-id", trace_id, "--timeout-secs", "60"],
    )?;
    eprintln!("xtask: smoke: invbot verify: {verdict}");
    eprintln!("xtask: smoke passed");
    Ok(())
}
