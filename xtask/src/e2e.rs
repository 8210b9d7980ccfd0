//! The e2e step: stack up; a generated batch of a few thousand rows with fault injection on;
//! `invbot verify` on the run's traces; then every query of every dashboard panel, every
//! dashboard variable and every datasource-link query, read from the Grafana provisioning files
//! themselves, runs against the live backend and must return data; stack down.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bot::{self, BotRun};
use crate::http::{encode, get_json, jaeger_span_count, jaeger_trace, logsql, poll};
use crate::stack::{self, Ctx, url};

const ROWS: &str = "3000";
/// How a panel's description marks counters that exist only once something failed.
const FAILURE_ONLY: &str = "Empty while nothing fails";
/// The window dashboard queries are run over, as Grafana's `$__range`.
const RANGE: &str = "15m";

pub(crate) fn e2e(root: &Path, ctx: &Ctx) -> Result<()> {
    stack::with_stack(ctx, "e2e", || checks(root, ctx))
}

fn checks(root: &Path, ctx: &Ctx) -> Result<()> {
    let dir = ctx.state.join("e2e");
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("rows.csv");
    bot::generate(
        &bot::build(root)?,
        &input,
        &[
            "--rows",
            ROWS,
            "--seed",
            "17",
            "--malformed",
            "0.01",
            "--unknown-sku",
            "0.01",
        ],
    )?;
    let input = input.display().to_string();
    let BotRun {
        invbot,
        environment,
        summary,
        ..
    } = bot::run(
        root,
        ctx,
        "e2e",
        // Retries, and enough failures after them (about 10 %) for the error-rate alert in the
        // bot and in Prometheus, so the alert panels have something to show.
        &[
            "--input",
            &input,
            "--api-fault-error-rate",
            "0.3",
            "--max-attempts",
            "2",
        ],
    )?;
    let run_id = summary["run_id"]
        .as_str()
        .context("no run id in the summary")?;
    eprintln!(
        "xtask: e2e: run {run_id}: {} rows, {} batches",
        summary["rows_read"],
        summary["batches"].as_array().map_or(0, Vec::len)
    );
    let verdict = bot::verify_complete(
        &invbot,
        &dir,
        &["--run-id", run_id, "--timeout-secs", "120"],
    )?;
    eprintln!("xtask: e2e: invbot verify: {verdict}");
    crate::report_check::check(&invbot, &dir, run_id, &summary)?;
    jaeger_keeps_its_traces(ctx, &summary)?;
    crate::auth_check::check(root, ctx)?;

    let trace_id = summary["batches"][0]["trace_id"]
        .as_str()
        .context("no batch trace id")?;
    let vars = Vars {
        environment: environment.clone(),
        trace_id: trace_id.to_owned(),
    };
    // Queries are polled until 3 minutes from now (the last scrape or log push may still be on
    // its way, and an alert rule holds for 2 minutes before it fires), then each gets one more
    // short look.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut checked = 0;
    for file in dashboards(root)? {
        checked += check_dashboard(&file, &vars, deadline)?;
    }
    checked += check_datasource_links(root, &vars, deadline)?;
    eprintln!("xtask: e2e: {checked} dashboard, variable and link queries returned data");

    // With the log store gone, verify must say precisely that the logs pillar is what is missing.
    stack::stop_one(ctx, "victorialogs")?;
    let out = bot::verify(
        &invbot,
        &dir,
        &["--json", "--trace-id", trace_id, "--timeout-secs", "5"],
    )?;
    let report: Value = serde_json::from_slice(&out.stdout).context("invbot verify --json")?;
    let missing: Vec<&str> = report["missing"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if out.status.code() != Some(4)
        || missing.is_empty()
        || !missing
            .iter()
            .all(|m| m.starts_with("logs:") && m.contains("VictoriaLogs"))
    {
        bail!(
            "with VictoriaLogs stopped, invbot verify should exit 4 naming only the logs pillar; it exited {} with {missing:?}",
            out.status
        );
    }
    eprintln!(
        "xtask: e2e: with VictoriaLogs stopped, invbot verify says: {}",
        missing.join("; ")
    );
    eprintln!("xtask: e2e passed");
    Ok(())
}

/// Jaeger stores on disk (Badger): stopped and started again, it has every span of the run's
/// batch traces it had before.
fn jaeger_keeps_its_traces(ctx: &Ctx, summary: &Value) -> Result<()> {
    let ids: Vec<&str> = summary["batches"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["trace_id"].as_str())
        .collect();
    let before: Vec<usize> = ids
        .iter()
        .map(|id| jaeger_span_count(id))
        .collect::<Result<_>>()?;
    stack::stop_one(ctx, "jaeger")?;
    stack::up(ctx)?;
    let after: Vec<usize> = ids
        .iter()
        .map(|id| jaeger_span_count(id))
        .collect::<Result<_>>()?;
    let total: usize = before.iter().sum();
    if before != after || total == 0 {
        bail!(
            "Jaeger restarted should have every span it had: {total} spans before, {} after",
            after.iter().sum::<usize>()
        );
    }
    eprintln!(
        "xtask: e2e: Jaeger stopped and started again still has all {total} spans of the run's {} traces",
        ids.len()
    );
    Ok(())
}

fn dashboards(root: &Path) -> Result<Vec<std::path::PathBuf>> {
    let dir = root.join("grafana/dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no dashboards in {}", dir.display());
    }
    Ok(files)
}

/// What Grafana would substitute into a query for this run.
struct Vars {
    environment: String,
    trace_id: String,
}

impl Vars {
    /// The query as Grafana would send it; `$service` takes `service`.
    fn apply(&self, query: &str, service: &str) -> String {
        let mut q = query.to_owned();
        for (name, value) in [
            ("environment", self.environment.as_str()),
            ("service", service),
            ("__range", RANGE),
            ("__rate_interval", "1m"),
            ("__interval", "15s"),
            ("__trace.traceId", self.trace_id.as_str()),
            ("__value.raw", self.trace_id.as_str()),
        ] {
            q = q
                .replace(&format!("${{{name}}}"), value)
                .replace(&format!("${name}"), value);
        }
        q
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether the backend behind `uid` returns data for `query` over the last 15 minutes.
fn has_data(uid: &str, query: &str) -> Result<bool> {
    let (end, start) = (now_secs(), now_secs() - 15 * 60);
    let v = match uid {
        "prometheus" => get_json(&format!(
            "{}/api/v1/query_range?query={}&start={start}&end={end}&step=15",
            url::PROMETHEUS,
            encode(query)
        ))?,
        "victorialogs" => {
            // Log rows, or the groups of a `stats` pipe: either way, rows are data.
            let rows = logsql(&format!("{query} | limit 10"), Duration::from_secs(15 * 60))?;
            return Ok(!rows.is_empty());
        }
        other => bail!("no query runner for datasource {other:?}"),
    };
    Ok(v["data"]["result"]
        .as_array()
        .is_some_and(|r| !r.is_empty()))
}

/// A dashboard may end a query with `or vector(0)` (or a labelled zero) so that a panel shows 0
/// instead of "No data"; the check removes that trailing display fallback, so that it proves the
/// real series exist.
fn without_display_fallback(query: &str) -> &str {
    let trimmed = query.trim_end();
    for marker in [" or on() label_replace(vector(0)", " or vector(0)"] {
        if let Some(i) = trimmed.rfind(marker) {
            let tail = &trimmed[i + marker.len()..];
            // Only when the fallback ends the query (not inside a parenthesised numerator).
            if !tail.contains(')') || tail.trim_end().ends_with("\"\")") {
                return trimmed[..i].trim_end();
            }
        }
    }
    trimmed
}

/// Polls `queries` until one returns data or `deadline` passes (then one more short look).
fn require_data(what: &str, uid: &str, queries: &[String], deadline: Instant) -> Result<()> {
    let within = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(5));
    poll(within, || {
        for q in queries {
            if has_data(uid, q)? {
                return Ok(Some(()));
            }
        }
        Ok(None)
    })
    .with_context(|| format!("{what}: no data from {uid} for {}", queries.join("  |  ")))
}

pub(crate) fn panels(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in v["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(panels(p)); // rows nest their panels
    }
    out
}

fn uid_of(v: &Value) -> Option<&str> {
    v["datasource"]["uid"].as_str()
}

fn check_dashboard(file: &Path, vars: &Vars, deadline: Instant) -> Result<usize> {
    let text = std::fs::read_to_string(file)?;
    let dash: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let title = dash["title"].as_str().unwrap_or("untitled").to_owned();
    let services = [names::service::BOT, names::service::API];
    let mut checked = 0;
    let mut failures = Vec::new();
    for var in dash["templating"]["list"].as_array().into_iter().flatten() {
        let (Some(uid), Some(query)) = (
            uid_of(var),
            var["query"].as_str().or(var["query"]["query"].as_str()),
        ) else {
            continue;
        };
        if uid != "prometheus" || !query.starts_with("label_values(") {
            continue;
        }
        // label_values(metric, label): the run's value must be among the choices.
        let inner = query
            .trim_start_matches("label_values(")
            .trim_end_matches(')');
        let (metric, label) = inner
            .rsplit_once(',')
            .map_or(("", inner), |(m, l)| (m.trim(), l.trim()));
        let mut url = format!("{}/api/v1/label/{label}/values", url::PROMETHEUS);
        if !metric.is_empty() {
            url.push_str(&format!("?match[]={}", encode(metric)));
        }
        let values = get_json(&url)?;
        let name = var["name"].as_str().unwrap_or_default();
        let wanted = if name == "environment" {
            vars.environment.as_str()
        } else {
            ""
        };
        let found = values["data"]
            .as_array()
            .is_some_and(|a| !a.is_empty() && (wanted.is_empty() || a.iter().any(|v| v == wanted)));
        if !found {
            bail!("dashboard {title:?}, variable {name:?}: {query} does not offer {wanted:?}");
        }
        checked += 1;
    }
    for panel in panels(&dash) {
        let panel_title = panel["title"].as_str().unwrap_or("untitled");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let Some(expr) = target["expr"].as_str().filter(|e| !e.trim().is_empty()) else {
                continue;
            };
            let uid = uid_of(target).or_else(|| uid_of(panel)).unwrap_or_default();
            // A panel of failure-only counters says so in its description; no data is its
            // healthy state, and its display fallback stays.
            let failure_only = panel["description"]
                .as_str()
                .is_some_and(|d| d.starts_with(FAILURE_ONLY));
            let queries: Vec<String> = services
                .iter()
                .map(|s| vars.apply(expr, s))
                .map(|q| {
                    if failure_only {
                        q
                    } else {
                        without_display_fallback(&q).to_owned()
                    }
                })
                .collect();
            match require_data(
                &format!("dashboard {title:?}, panel {panel_title:?}"),
                uid,
                &queries,
                deadline,
            ) {
                Ok(()) => checked += 1,
                Err(e) => failures.push(format!("{e:#}")),
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} queries returned no data:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    eprintln!("xtask: e2e: dashboard {title:?}: every query returned data");
    Ok(checked)
}

/// The datasources' correlation links: traces → logs and metrics, logs → traces, exemplars →
/// traces; each must lead somewhere for this run's trace.
fn check_datasource_links(root: &Path, vars: &Vars, deadline: Instant) -> Result<usize> {
    let file = root.join("grafana/provisioning/datasources/datasources.yaml");
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    // Provisioning files escape `$` as `$$`.
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text.replace("$$", "$"))?;
    let v = serde_json::to_value(yaml)?;
    let mut checked = 0;
    for ds in v["datasources"].as_array().into_iter().flatten() {
        let name = ds["name"].as_str().unwrap_or_default();
        let data = &ds["jsonData"];
        if let Some(query) = data["tracesToLogsV2"]["query"].as_str() {
            let uid = data["tracesToLogsV2"]["datasourceUid"]
                .as_str()
                .unwrap_or_default();
            require_data(
                &format!("datasource {name:?}, traces to logs"),
                uid,
                &[vars.apply(query, names::service::BOT)],
                deadline,
            )?;
            checked += 1;
        }
        for q in data["tracesToMetrics"]["queries"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(query) = q["query"].as_str() else {
                continue;
            };
            let uid = data["tracesToMetrics"]["datasourceUid"]
                .as_str()
                .unwrap_or_default();
            // Span variables are filled from the run's bot spans.
            let query = vars
                .apply(query, names::service::BOT)
                .replace("${__span.name}", names::span::BATCH)
                .replace("${__span.tags}", "");
            require_data(
                &format!("datasource {name:?}, traces to metrics {:?}", q["name"]),
                uid,
                &[query],
                deadline,
            )?;
            checked += 1;
        }
        for field in data["derivedFields"].as_array().into_iter().flatten() {
            // A trace_id found in a log line opens that trace in Jaeger.
            let trace = jaeger_trace(&vars.apply(field["url"].as_str().unwrap_or_default(), ""))?;
            if trace["data"].as_array().is_none_or(Vec::is_empty) {
                bail!(
                    "datasource {name:?}, derived field {:?}: Jaeger has no trace {}",
                    field["name"],
                    vars.trace_id
                );
            }
            checked += 1;
        }
        if data["exemplarTraceIdDestinations"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
        {
            // Some exemplar of the run's services must name a trace Jaeger has.
            let query = format!(
                r#"{}_bucket{{{}="{}"}}"#,
                names::prometheus::spanmetrics::DURATION,
                names::prometheus::label::DEPLOYMENT_ENVIRONMENT_NAME,
                vars.environment
            );
            let found = poll(Duration::from_secs(60), || {
                let (end, start) = (now_secs(), now_secs() - 15 * 60);
                let v = get_json(&format!(
                    "{}/api/v1/query_exemplars?query={}&start={start}&end={end}",
                    url::PROMETHEUS,
                    encode(&query)
                ))?;
                let ids: Vec<String> = v["data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|s| s["exemplars"].as_array().into_iter().flatten())
                    .filter_map(|e| e["labels"]["trace_id"].as_str().map(str::to_owned))
                    .collect();
                for id in ids {
                    let t = jaeger_trace(&id);
                    if t.is_ok_and(|t| t["data"].as_array().is_some_and(|d| !d.is_empty())) {
                        return Ok(Some(id));
                    }
                }
                Ok(None)
            })
            .with_context(|| {
                format!("datasource {name:?}: no exemplar of this run leads to a trace in Jaeger")
            })?;
            eprintln!("xtask: e2e: exemplar -> Jaeger trace {found}");
            checked += 1;
        }
    }
    Ok(checked)
}
