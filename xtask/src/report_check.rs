//! The report part of the e2e step: `invbot report` on the e2e run, opened in headless
//! Chromium. The page must load without an error, draw a batch's waterfall with as many spans
//! as Jaeger has for that trace, show an error span's `api_error` record (which points back to
//! its span), and have points in every chart; a screenshot is kept. Then the same report with
//! Prometheus unreachable must still be written, exit 4 and mark only the metrics pillar.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bot;
use crate::browser::Browser;
use crate::http::jaeger_span_count;

/// The page's own signal that it has drawn itself.
const READY: &str = "document.body?.dataset.ready === 'true'";
/// Where nothing listens: a Prometheus that is down.
const NOWHERE: &str = "http://127.0.0.1:9";

pub(crate) fn check(invbot: &Path, dir: &Path, run_id: &str, summary: &Value) -> Result<()> {
    let page = dir.join("report.html");
    let out = report(
        invbot,
        dir,
        &["--run-id", run_id, "-o", &page.display().to_string()],
    )?;
    if !out.status.success() {
        bail!(
            "invbot report exited {}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!(
        "xtask: e2e: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );

    let mut browser = Browser::start(1400, 2700)?;
    let took = browser.open(&page, READY)?;
    let pillars = browser.eval(
        "[...document.querySelectorAll('#pillars .pillar')].map(p => p.dataset.pillar + '=' + p.dataset.ok).join(' ')",
    )?;
    if pillars != "traces=true logs=true metrics=true" {
        bail!("the report marks pillars missing for a complete run: {pillars}");
    }

    // A batch with failures has error spans, and their api_error records.
    let batch = summary["batches"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["failed"].as_u64().unwrap_or(0) > 0)
        .context("the e2e run has no batch with failures to look at")?;
    let trace_id = batch["trace_id"]
        .as_str()
        .context("batch without trace id")?;
    let in_jaeger = jaeger_span_count(trace_id)?;
    let drawn = browser.eval(&format!(
        "document.querySelector('#batches tbody tr[data-trace-id=\"{trace_id}\"]').click(); \
         document.querySelectorAll('#waterfall .span').length"
    ))?;
    if drawn.as_u64() != Some(in_jaeger as u64) || in_jaeger == 0 {
        bail!("the waterfall of trace {trace_id} draws {drawn} spans; Jaeger has {in_jaeger}");
    }
    // Select each error span until one shows an api_error record, then follow that record's
    // link back: it must select the same span.
    let found = browser.eval(
        "(() => { for (const el of document.querySelectorAll('#waterfall .span.error')) { \
           el.click(); \
           const r = document.querySelector('#span-detail .log-record[data-event=\"api_error\"]'); \
           if (!r) continue; \
           r.querySelector('.to-span').click(); \
           const sel = document.querySelector('#waterfall .span.selected'); \
           return { span: el.dataset.spanId, back: sel && sel.dataset.spanId }; } \
         return null; })()",
    )?;
    let span = found["span"].as_str().unwrap_or_default();
    if span.is_empty() || found["back"] != found["span"] {
        bail!(
            "no error span of trace {trace_id} shows an api_error record that points back to it: {found}"
        );
    }
    let points = browser.eval(
        "Object.fromEntries([...document.querySelectorAll('svg.chart')].map(s => [s.dataset.chart, s.querySelectorAll('circle.pt').length]))",
    )?;
    let charts = points.as_object().context("no charts on the page")?;
    let empty: Vec<&String> = charts
        .iter()
        .filter(|(_, n)| n.as_u64().unwrap_or(0) == 0)
        .map(|(id, _)| id)
        .collect();
    if charts.len() < 5 || !empty.is_empty() {
        bail!("every chart must have data points: {points}");
    }
    // From the top, with the error span and its record still selected below.
    browser.eval("window.scrollTo(0, 0)")?;
    let shot = dir.join("report.png");
    browser.screenshot(&shot)?;
    if !browser.errors().is_empty() {
        bail!("the report page logged errors: {:?}", browser.errors());
    }
    eprintln!(
        "xtask: e2e: report page ready in {took:.1?} in Chromium, no errors; batch {}: {in_jaeger} spans drawn as in Jaeger, error span {span} shows its api_error record; chart points {points}; screenshot {}",
        batch["batch_id"],
        shot.display()
    );

    // Prometheus gone: the page is still written, says so, and the exit status is verify's.
    let degraded = dir.join("report-no-metrics.html");
    let out = report(
        invbot,
        dir,
        &[
            "--run-id",
            run_id,
            "--timeout-secs",
            "5",
            "--prometheus-url",
            NOWHERE,
            "-o",
            &degraded.display().to_string(),
        ],
    )?;
    if out.status.code() != Some(4) {
        bail!(
            "with Prometheus unreachable, invbot report should exit 4; it exited {}",
            out.status
        );
    }
    browser.open(&degraded, READY)?;
    let pillars = browser.eval(
        "[...document.querySelectorAll('#pillars .pillar')].map(p => p.dataset.pillar + '=' + p.dataset.ok).join(' ')",
    )?;
    if pillars != "traces=true logs=true metrics=false" {
        bail!("with Prometheus unreachable the report should mark only metrics missing: {pillars}");
    }
    if !browser.errors().is_empty() {
        bail!(
            "the degraded report page logged errors: {:?}",
            browser.errors()
        );
    }
    eprintln!(
        "xtask: e2e: with Prometheus unreachable, invbot report exits 4 and the page marks only the metrics pillar"
    );
    Ok(())
}

fn report(invbot: &Path, dir: &Path, args: &[&str]) -> Result<std::process::Output> {
    bot::against_stack(invbot, "report", dir, args)
}
