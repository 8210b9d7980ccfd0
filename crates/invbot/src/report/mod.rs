//! `invbot report`: one self-contained HTML page per run, from the three backends. The verifier
//! judges the pillars first (the page and the exit status say what it found missing); then the
//! report reads what the page shows: every span of the run's traces from Jaeger, their log
//! records and the run's own records from VictoriaLogs, and the charts' series from Prometheus.
//! A backend that does not answer leaves its part of the page marked missing, never the page
//! unwritten.

use std::io::Write as _;
use std::time::Duration;

use base64::Engine as _;
use names::prometheus::label;
use names::{Metric, event, metric, service};
use opentelemetry_semantic_conventions::resource::SERVICE_INSTANCE_ID;
use verify::{Backend, LogStore, Pillar, Prometheus, Scope, Target, VictoriaLogs, Window};

mod model;

use model::{Chart, ChartSeries, Gathered, PillarStatus};
pub use model::{LinkBases, ReportData};

/// The page, with `{{TITLE}}` and `{{RUN_DATA}}` to fill.
const PAGE: &str = include_str!("page.html");
/// Points per chart: enough to see a run's shape, few enough to keep the page small.
const CHART_POINTS: f64 = 150.0;
/// Shortest chart step: the collector's exporter is scraped every 5 s.
const MIN_STEP: Duration = Duration::from_secs(5);
/// Metrics arrive up to an export interval and a scrape after the run's last span.
const CHART_AFTER: Duration = Duration::from_secs(30);

/// Reads what the page shows for `target`, whose pillars `verdict` has judged; the traces are
/// the verifier's own last answer from Jaeger.
pub async fn gather(
    target: &Target,
    verdict: verify::Report,
    endpoints: &verify::Endpoints,
) -> Gathered {
    let mut g = Gathered {
        pillars: pillars(&verdict),
        missing: verdict.missing().to_vec(),
        ..Gathered::default()
    };
    let mut scope = Scope::new(target.clone());
    if let Some(found) = verdict.traces.report {
        scope = scope.with_traces(&found);
        g.traces = found.details;
    }
    g.run_id = match target {
        Target::Run(id) => Some(id.clone()),
        Target::Trace(_) => g
            .traces
            .iter()
            .flat_map(|t| &t.spans)
            .flat_map(|s| &s.attributes)
            .find(|(k, _)| k == names::attr::RUN_ID)
            .map(|(_, v)| v.clone()),
    };
    match endpoints.log_store {
        LogStore::VictoriaLogs => logs(&mut g, &VictoriaLogs::new(&endpoints.logs), &scope).await,
        LogStore::Loki => g.missing.push(
            "logs: the report reads log records from VictoriaLogs only; with Loki its spans \
             show no records"
                .to_owned(),
        ),
    }
    charts(&mut g, &Prometheus::new(&endpoints.prometheus), &scope).await;
    g
}

/// The verifier's verdict, one line per pillar.
fn pillars(verdict: &verify::Report) -> Vec<PillarStatus> {
    fn status<R: Pillar + std::fmt::Display>(o: &verify::Outcome<R>) -> PillarStatus {
        let missing = o.missing();
        PillarStatus {
            pillar: R::NAME,
            backend: o.backend,
            ok: missing.is_empty(),
            detail: match (&o.report, missing.first()) {
                (_, Some(first)) => first.clone(),
                (Some(r), None) => r.to_string().lines().next().unwrap_or_default().to_owned(),
                (None, None) => String::new(),
            },
        }
    }
    vec![
        status(&verdict.traces),
        status(&verdict.logs),
        status(&verdict.metrics),
    ]
}

/// A part of the page its backend could not give: said on the page, and the pillar marked.
fn note(g: &mut Gathered, pillar: &str, backend: &str, e: &verify::QueryError) {
    g.missing
        .push(format!("{pillar}: {backend}: {}", names::error_chain(e)));
    if let Some(p) = g.pillars.iter_mut().find(|p| p.pillar == pillar) {
        p.ok = false;
    }
}

async fn logs(g: &mut Gathered, store: &VictoriaLogs, scope: &Scope) {
    let window = scope.window();
    let result = async {
        let trace_logs = store.trace_records(scope).await?;
        let run_logs = match &g.run_id {
            Some(id) => {
                let filter = format!(
                    "{}:={} event:in({}, {})",
                    names::attr::RUN_ID,
                    verify::quoted(id),
                    event::RUN_START,
                    event::RUN_END
                );
                store.service_records(service::BOT, &filter, window).await?
            }
            None => Vec::new(),
        };
        // Alerts of the bot's processes: a CPU alert belongs to no batch, so to no trace.
        let instances = bot_instances(scope, &run_logs);
        let alert_logs = if instances.is_empty() {
            Vec::new()
        } else {
            let ids: Vec<String> = instances.iter().map(|i| verify::quoted(i)).collect();
            let filter = format!(
                "event:={} service.instance.id:in({})",
                event::ALERT,
                ids.join(", ")
            );
            store.service_records(service::BOT, &filter, window).await?
        };
        Ok::<_, verify::QueryError>((trace_logs, run_logs, alert_logs))
    };
    match result.await {
        Ok((trace_logs, run_logs, alert_logs)) => {
            g.trace_logs = trace_logs;
            g.run_logs = run_logs;
            g.alert_logs = alert_logs;
        }
        Err(e) => note(g, "logs", VictoriaLogs::NAME, &e),
    }
}

/// The bot's `service.instance.id`s: from Jaeger, or from the run's own records.
fn bot_instances(scope: &Scope, run_logs: &[verify::victorialogs::LogRecord]) -> Vec<String> {
    let mut ids: Vec<String> = scope
        .instances()
        .get(service::BOT)
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    if ids.is_empty() {
        ids = run_logs
            .iter()
            .filter_map(|r| r.fields.get(SERVICE_INSTANCE_ID).cloned())
            .collect();
        ids.sort();
        ids.dedup();
    }
    ids
}

/// One query of a chart: its series are named by `label`'s value, or `name` when it gives one.
struct Query {
    name: &'static str,
    label: Option<&'static str>,
    promql: String,
}

impl Query {
    fn one(name: &'static str, promql: String) -> Self {
        Self {
            name,
            label: None,
            promql,
        }
    }

    fn by(label: &'static str, promql: String) -> Self {
        Self {
            name: "",
            label: Some(label),
            promql,
        }
    }
}

/// The charts, over the run's processes: `bot` selects the bot's series, `both` the bot's and
/// its API's, `r` is the rate window.
fn chart_queries(bot: &str, both: &str, r: &str) -> Vec<ChartSpec> {
    let outcome = names::attr::OUTCOME;
    let rate = |m: &Metric, extra: &str| format!("rate({}{{{bot}{extra}}}[{r}])", m.prometheus);
    // A run is one process, so its counters and histograms start at zero with it: their raw
    // values are the run so far, with no rate window to outlast (a short run's windowed rates
    // are mostly empty, and a finished run's are 0/0).
    let quantile = |q: f64| {
        format!(
            "histogram_quantile({q}, sum by (le) ({}_bucket{{{bot}}}))",
            metric::BATCH_DURATION.prometheus
        )
    };
    let total = |extra: &str| format!("sum({}{{{bot}{extra}}})", metric::TRANSACTIONS.prometheus);
    let by_service = |m: &Metric| {
        Query::by(
            label::SERVICE_NAME,
            format!(
                "max by ({}) ({}{{{both}}})",
                label::SERVICE_NAME,
                m.prometheus
            ),
        )
    };
    vec![
        (
            "throughput",
            "Throughput by outcome",
            "tx/s",
            vec![Query::by(
                outcome,
                format!("sum by ({outcome}) ({})", rate(&metric::TRANSACTIONS, "")),
            )],
        ),
        (
            "error_rate",
            "Failed transactions (share so far)",
            "ratio",
            vec![Query::one(
                "failed",
                format!(
                    "({} or vector(0)) / {}",
                    total(&format!(",{outcome}=\"failed\"")),
                    total("")
                ),
            )],
        ),
        (
            "batch_duration",
            "Batch duration (percentiles so far)",
            "s",
            vec![
                Query::one("p50", quantile(0.5)),
                Query::one("p95", quantile(0.95)),
                Query::one("p99", quantile(0.99)),
            ],
        ),
        (
            "cpu",
            "Process CPU (share of all CPUs)",
            "ratio",
            vec![by_service(&metric::PROCESS_CPU_UTILIZATION)],
        ),
        (
            "memory",
            "Process memory (resident)",
            "bytes",
            vec![by_service(&metric::PROCESS_MEMORY_USAGE)],
        ),
    ]
    .into_iter()
    .map(|(id, title, unit, queries)| ChartSpec {
        id,
        title,
        unit,
        queries,
    })
    .collect()
}

struct ChartSpec {
    id: &'static str,
    title: &'static str,
    unit: &'static str,
    queries: Vec<Query>,
}

/// The run's charts over its time window, for its processes. A chart whose queries fail is left
/// out and said missing; one with no data is drawn empty.
async fn charts(g: &mut Gathered, prometheus: &Prometheus, scope: &Scope) {
    let Some(window) = chart_window(g) else {
        g.missing
            .push("metrics: no time window for the charts (no span and no run record)".to_owned());
        return;
    };
    let bot = bot_instances(scope, &g.run_logs);
    if bot.is_empty() {
        g.missing.push(format!(
            "metrics: no {} of {} known, so its series cannot be selected for the charts",
            label::SERVICE_INSTANCE_ID,
            service::BOT
        ));
        return;
    }
    let mut all: Vec<String> = scope.instances().values().flatten().cloned().collect();
    all.extend(bot.iter().cloned());
    all.sort();
    all.dedup();
    let selector = |ids: &[String]| {
        format!(
            "{}=~{}",
            label::SERVICE_INSTANCE_ID,
            verify::quoted(&ids.join("|"))
        )
    };
    let span = window.end.saturating_sub(window.start);
    let step = span.div_f64(CHART_POINTS).max(MIN_STEP);
    // At least two scrapes of the collector's exporter in every rate window.
    let r = format!("{}s", (step * 4).max(Duration::from_secs(20)).as_secs());
    for spec in chart_queries(&selector(&bot), &selector(&all), &r) {
        let mut series = Vec::new();
        for q in &spec.queries {
            match prometheus.query_range(&q.promql, window, step).await {
                Ok(found) => series.extend(found.into_iter().map(|s| {
                    ChartSeries {
                        name: q
                            .label
                            .and_then(|l| s.labels.get(l).cloned())
                            .unwrap_or_else(|| q.name.to_owned()),
                        points: s.points,
                    }
                })),
                Err(e) => {
                    note(g, "metrics", Prometheus::NAME, &e);
                    return;
                }
            }
        }
        g.charts.push(Chart {
            id: spec.id,
            title: spec.title,
            unit: spec.unit,
            series,
        });
    }
}

/// From the first span (or the run's start record) to the last span (or its end record), with
/// room for the metrics that arrive after it.
fn chart_window(g: &Gathered) -> Option<Window> {
    let spans = g.traces.iter().flat_map(|t| &t.spans);
    let run_times = g.run_logs.iter().map(|r| r.time_us);
    let start = spans
        .clone()
        .map(|s| s.start_us)
        .chain(run_times.clone())
        .min()?;
    let end = spans
        .map(|s| s.start_us + s.duration_us)
        .chain(run_times)
        .max()?;
    Some(Window {
        start: Duration::from_micros(start).saturating_sub(MIN_STEP * 2),
        end: Duration::from_micros(end) + CHART_AFTER,
    })
}

/// The page for `data`: the data embedded once, gzip-compressed and base64-encoded (a
/// 10,000-row run's spans and records compress about tenfold).
pub fn render(data: &ReportData, title: &str) -> std::io::Result<String> {
    let json = serde_json::to_vec(data)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json)?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(gz.finish()?);
    // The title last: the data (base64) cannot hold a placeholder, a title could.
    Ok(PAGE
        .replacen("{{RUN_DATA}}", &encoded, 1)
        .replace("{{TITLE}}", &html_escape(title)))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('{', "&#123;")
}
