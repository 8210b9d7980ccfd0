//! The metrics pillar, from Prometheus' `/api/v1/series` and `/api/v1/query_exemplars`: the
//! run's own series and the spanmetrics series of the target's services, selected by the
//! `service.instance.id`s Jaeger knows (unique per process, so they name the run), and the
//! spanmetrics exemplars whose trace_id is one of the target's traces.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use names::prometheus::{label, spanmetrics};
use names::{metric, service};
use serde::{Deserialize, Serialize};

use crate::http::Http;
use crate::report::counts;
use crate::target::Window;
use crate::{Backend, Pillar, QueryError, Scope, quoted};

/// Labels all series of one process share (resource, scrape, exporter): they say nothing about
/// which series it is, so a series' description leaves them out.
const RESOURCE_LABELS: [&str; 13] = [
    "__name__",
    "deployment_environment_name",
    "instance",
    "job",
    "otel_scope_name",
    "process_pid",
    label::SERVICE_INSTANCE_ID,
    label::SERVICE_NAME,
    "service_namespace",
    "service_version",
    "telemetry_sdk_language",
    "telemetry_sdk_name",
    "telemetry_sdk_version",
];

/// Client of Prometheus' HTTP API.
#[derive(Debug, Clone)]
pub struct Prometheus {
    http: Http,
}

impl Prometheus {
    pub fn new(base: &str) -> Self {
        Self {
            http: Http::new(base),
        }
    }

    /// The series any of `matchers` selects that have samples in `window`, stale or not: a run
    /// that ended minutes ago has no current value but still has its series.
    async fn series(&self, matchers: &[String], window: Window) -> Result<Vec<Labels>, QueryError> {
        let mut query: Vec<(&str, String)> =
            matchers.iter().map(|m| ("match[]", m.clone())).collect();
        query.extend(range(window));
        let answer: Response<Vec<Labels>> = self.http.get("/api/v1/series", &query).await?;
        Ok(answer.data)
    }

    async fn exemplars(
        &self,
        promql: &str,
        window: Window,
    ) -> Result<Vec<ExemplarSeries>, QueryError> {
        let mut query = vec![("query", promql.to_owned())];
        query.extend(range(window));
        let answer: Response<Vec<ExemplarSeries>> =
            self.http.get("/api/v1/query_exemplars", &query).await?;
        Ok(answer.data)
    }
}

impl Prometheus {
    /// `promql` evaluated every `step` over `window` (`/api/v1/query_range`): one series per
    /// label set, each point `(unix seconds, value)`; `NaN` and infinite values are left out.
    pub async fn query_range(
        &self,
        promql: &str,
        window: Window,
        step: std::time::Duration,
    ) -> Result<Vec<RangeSeries>, QueryError> {
        let mut query = vec![("query", promql.to_owned())];
        query.extend(range(window));
        query.push(("step", format!("{:.3}", step.as_secs_f64())));
        let answer: Response<Matrix> = self.http.get("/api/v1/query_range", &query).await?;
        Ok(answer
            .data
            .result
            .into_iter()
            .map(|s| RangeSeries {
                labels: s.metric,
                points: s
                    .values
                    .into_iter()
                    .filter_map(|(t, v)| {
                        Some((t, v.parse::<f64>().ok().filter(|v| v.is_finite())?))
                    })
                    .collect(),
            })
            .collect())
    }
}

/// One series of a range query.
#[derive(Debug, Clone, Serialize)]
pub struct RangeSeries {
    pub labels: BTreeMap<String, String>,
    /// `(unix seconds, value)`, oldest first.
    pub points: Vec<(f64, f64)>,
}

fn range(window: Window) -> [(&'static str, String); 2] {
    [
        ("start", format!("{:.3}", window.start.as_secs_f64())),
        ("end", format!("{:.3}", window.end.as_secs_f64())),
    ]
}

/// `name{label="value",...}` without the labels every series of the process has.
fn describe(labels: &Labels) -> String {
    let own: Vec<String> = labels
        .iter()
        .filter(|(k, _)| !RESOURCE_LABELS.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={}", quoted(v)))
        .collect();
    let name = labels.get("__name__").map_or("", String::as_str);
    format!("{name}{{{}}}", own.join(","))
}

impl Backend for Prometheus {
    const NAME: &'static str = "Prometheus";
    type Report = MetricsReport;

    async fn check(&self, scope: &Scope) -> Result<MetricsReport, QueryError> {
        let run_metric = metric::TRANSACTIONS.prometheus;
        let (calls, buckets_of) = (
            spanmetrics::CALLS,
            format!("{}_bucket", spanmetrics::DURATION),
        );
        let mut report = MetricsReport {
            instances: scope.instances().clone(),
            ..MetricsReport::default()
        };
        let mut matchers: Vec<String> = scope
            .instances()
            .get(service::BOT)
            .into_iter()
            .flatten()
            .map(|id| {
                format!(
                    "{run_metric}{{{}={}}}",
                    label::SERVICE_INSTANCE_ID,
                    quoted(id)
                )
            })
            .collect();
        let mut buckets = Vec::new();
        for (svc, ids) in scope.instances() {
            report.spanmetrics_series.insert(svc.clone(), Vec::new());
            for id in ids {
                let labels = format!(
                    "{{{}={},{}={}}}",
                    label::SERVICE_NAME,
                    quoted(svc),
                    label::SERVICE_INSTANCE_ID,
                    quoted(id)
                );
                matchers.push(format!("{calls}{labels}"));
                buckets.push(format!("{buckets_of}{labels}"));
            }
        }
        if matchers.is_empty() {
            return Ok(report);
        }
        for labels in self.series(&matchers, scope.window()).await? {
            let name = labels.get("__name__").map(String::as_str);
            let svc = labels.get(label::SERVICE_NAME).map_or("", String::as_str);
            if name == Some(run_metric) {
                report.run_series.push(describe(&labels));
            } else if let Some(list) = report.spanmetrics_series.get_mut(svc) {
                list.push(describe(&labels));
            }
        }
        report.run_series.sort();
        report
            .spanmetrics_series
            .values_mut()
            .for_each(|l| l.sort());
        // One query for all of them: Prometheus takes every selector of an `or`.
        let exemplar_query = buckets.join(" or ");
        let found = self.exemplars(&exemplar_query, scope.window()).await?;
        report.exemplars = report.judge_exemplars(found, scope);
        report.queries = matchers;
        report.queries.push(exemplar_query);
        Ok(report)
    }
}

/// The metrics pillar: the run's series, the spanmetrics series, the exemplars.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MetricsReport {
    /// Each service's `service.instance.id`s, as Jaeger gave them: how the series were selected.
    pub instances: BTreeMap<String, BTreeSet<String>>,
    /// The bot's `invbot_transactions_total` series of the run, described by their own labels.
    pub run_series: Vec<String>,
    /// `traces_span_metrics_calls_total` series per service of the target's traces.
    pub spanmetrics_series: BTreeMap<String, Vec<String>>,
    pub exemplars: Exemplars,
    /// The PromQL selectors asked: the series' `match[]`s, then the exemplar query.
    pub queries: Vec<String>,
}

impl MetricsReport {
    fn judge_exemplars(&self, found: Vec<ExemplarSeries>, scope: &Scope) -> Exemplars {
        if self.spanmetrics_series.values().all(Vec::is_empty) {
            return Exemplars::NoSeries;
        }
        let mut ours = Vec::new();
        let mut of_other_traces = 0;
        for series in found {
            for e in series.exemplars {
                let trace_id = e.labels.get(label::TRACE_ID).cloned().unwrap_or_default();
                if !scope.traces().contains_key(&trace_id) {
                    of_other_traces += 1;
                    continue;
                }
                let of_series =
                    |name: &str| series.series_labels.get(name).cloned().unwrap_or_default();
                ours.push(Exemplar {
                    trace_id,
                    span_id: e.labels.get(label::SPAN_ID).cloned().unwrap_or_default(),
                    service: of_series(label::SERVICE_NAME),
                    span_name: of_series(label::SPAN_NAME),
                    le: of_series("le"),
                    value: e.value,
                    timestamp: e.timestamp,
                });
            }
        }
        if ours.is_empty() {
            Exemplars::NoneForTarget { of_other_traces }
        } else {
            Exemplars::Found { exemplars: ours }
        }
    }
}

/// What the spanmetrics histogram says about the target's traces. Not having an exemplar is
/// not a gap: the connector keeps at most 5 exemplars per series per 10 s flush.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Exemplars {
    /// Exemplars whose trace_id is one of the target's traces.
    Found { exemplars: Vec<Exemplar> },
    /// The series exist, but their exemplars (if any) are of other traces.
    NoneForTarget { of_other_traces: usize },
    /// No spanmetrics series, so nothing to carry an exemplar.
    #[default]
    NoSeries,
}

/// One exemplar of the target: the bucket it sits on and the span it points at.
#[derive(Debug, Clone, Serialize)]
pub struct Exemplar {
    pub trace_id: String,
    pub span_id: String,
    pub service: String,
    pub span_name: String,
    /// The histogram bucket's upper bound.
    pub le: String,
    /// The span's duration in seconds, as Prometheus wrote it.
    pub value: String,
    /// Seconds since the Unix epoch.
    pub timestamp: f64,
}

impl Pillar for MetricsReport {
    const NAME: &'static str = "metrics";

    fn missing(&self) -> Vec<String> {
        let ids = |svc: &str| {
            let ids: Vec<&str> = self
                .instances
                .get(svc)
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect();
            ids.join(", ")
        };
        let mut out = Vec::new();
        if !self.instances.contains_key(service::BOT) {
            out.push(format!(
                "metrics: Jaeger has no service.instance.id of {}, so the run's series cannot be selected",
                service::BOT
            ));
        } else if self.run_series.is_empty() {
            out.push(format!(
                "metrics: Prometheus has no {} series with service_instance_id {}",
                metric::TRANSACTIONS.prometheus,
                ids(service::BOT)
            ));
        }
        for (svc, series) in &self.spanmetrics_series {
            if series.is_empty() {
                out.push(format!(
                    "metrics: Prometheus has no {} series for service {svc} (service_instance_id {})",
                    spanmetrics::CALLS,
                    ids(svc)
                ));
            }
        }
        out
    }
}

impl fmt::Display for MetricsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let spanmetrics: BTreeMap<String, usize> = self
            .spanmetrics_series
            .iter()
            .map(|(svc, series)| (svc.clone(), series.len()))
            .collect();
        writeln!(
            f,
            "{} {} series of the run; spanmetrics series {}",
            self.run_series.len(),
            metric::TRANSACTIONS.prometheus,
            counts(&spanmetrics)
        )?;
        match &self.exemplars {
            Exemplars::Found { exemplars } => {
                // A run can have dozens: a few name their spans, the count says the rest.
                let shown: Vec<String> = exemplars
                    .iter()
                    .take(3)
                    .map(|e| {
                        format!(
                            "{} {} le={} trace {}",
                            e.service, e.span_name, e.le, e.trace_id
                        )
                    })
                    .collect();
                let more = exemplars.len().saturating_sub(shown.len());
                write!(
                    f,
                    "{} exemplars of the target: {}",
                    exemplars.len(),
                    shown.join("; ")
                )?;
                if more > 0 {
                    write!(f, "; {more} more")?;
                }
                Ok(())
            }
            Exemplars::NoneForTarget { of_other_traces } => write!(
                f,
                "no exemplar for the target's traces ({of_other_traces} of other traces on the \
                 same series; spanmetrics keeps at most 5 per series per flush)"
            ),
            Exemplars::NoSeries => f.write_str("no exemplar: no spanmetrics series to carry one"),
        }
    }
}

// Prometheus' answers: only the fields the checks read.

type Labels = BTreeMap<String, String>;

#[derive(Debug, Deserialize)]
struct Response<T> {
    data: T,
}

/// A range query's `data`: values come as `[unix seconds, "decimal"]`.
#[derive(Debug, Deserialize)]
struct Matrix {
    result: Vec<MatrixSeries>,
}

#[derive(Debug, Deserialize)]
struct MatrixSeries {
    metric: Labels,
    values: Vec<(f64, String)>,
}

#[derive(Debug, Deserialize)]
struct ExemplarSeries {
    #[serde(rename = "seriesLabels")]
    series_labels: Labels,
    exemplars: Vec<RawExemplar>,
}

#[derive(Debug, Deserialize)]
struct RawExemplar {
    /// trace_id and span_id, from the spanmetrics connector.
    labels: Labels,
    value: String,
    timestamp: f64,
}
