//! What the report page shows, built from what the backends answered: the run's figures, its
//! batches, each batch's spans with their log records, the charts. Serialised once into the
//! page (`page.html` documents the same shape); short keys for the per-span and per-record
//! fields, which a 10,000-row run has tens of thousands of.

use std::collections::{BTreeMap, HashMap};

use names::{attr, event, service, span};
use opentelemetry_semantic_conventions::resource::SERVICE_INSTANCE_ID;
use serde::Serialize;
use verify::jaeger::{SpanDetail, TraceDetail};
use verify::victorialogs::LogRecord;

use crate::summary::{Latency, grafana_link, jaeger_link, vmui_link};

/// Bumped when the shape below changes in a way the page must know.
const SCHEMA: u32 = 1;

/// Everything the page is drawn from.
#[derive(Debug, Serialize)]
pub struct ReportData {
    pub schema: u32,
    pub generated_at: String,
    pub run: RunInfo,
    /// Traces, logs, metrics, in that order.
    pub pillars: Vec<PillarStatus>,
    pub links: LinkBases,
    pub charts: Vec<Chart>,
    pub batches: Vec<Batch>,
    /// By trace id.
    pub traces: BTreeMap<String, TraceView>,
    /// One line per gap, each naming its pillar.
    pub missing: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct RunInfo {
    pub run_id: Option<String>,
    pub input: Option<String>,
    pub start_us: Option<u64>,
    pub end_us: Option<u64>,
    /// From the run's `run_end` record; `None` when the log store has none.
    pub counts: Option<Counts>,
    pub rejects_file: Option<String>,
    /// applied / (applied + failed).
    pub success_rate: Option<f64>,
    pub latency_ms: LatencyKpis,
    /// The bot's `api_error` records by `error.type` (every failed attempt, retried or not).
    pub errors_by_type: BTreeMap<String, usize>,
    pub alerts: Vec<AlertView>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub rows: u64,
    pub applied: u64,
    pub replayed: u64,
    pub failed: u64,
    pub rejected: u64,
    pub retries: u64,
}

/// Percentiles of span durations: the bot's `item` spans (a transaction, retries included) and
/// its `batch` spans.
#[derive(Debug, Default, Serialize)]
pub struct LatencyKpis {
    pub transaction: Option<Kpi>,
    pub batch: Option<Kpi>,
}

#[derive(Debug, Serialize)]
pub struct Kpi {
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Kpi {
    fn of(durations_us: Vec<u64>) -> Option<Self> {
        if durations_us.is_empty() {
            return None;
        }
        let n = durations_us.len();
        let l = Latency::from_seconds(durations_us.iter().map(|d| *d as f64 / 1e6).collect());
        Some(Self {
            n,
            p50: l.p50_ms,
            p95: l.p95_ms,
            p99: l.p99_ms,
            max: l.max_ms,
        })
    }
}

#[derive(Debug, Serialize)]
pub struct AlertView {
    pub time_us: u64,
    pub alertname: String,
    pub state: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct PillarStatus {
    pub pillar: &'static str,
    pub backend: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Base URLs for links out; `None` where none was given.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkBases {
    pub jaeger: Option<String>,
    pub grafana: Option<String>,
    pub vmui: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Chart {
    pub id: &'static str,
    pub title: &'static str,
    /// `tx/s`, `ratio`, `s` or `bytes`: how the page formats values.
    pub unit: &'static str,
    pub series: Vec<ChartSeries>,
}

#[derive(Debug, Serialize)]
pub struct ChartSeries {
    pub name: String,
    /// `(unix seconds, value)`.
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Serialize)]
pub struct Batch {
    pub batch_id: u64,
    pub warehouse_id: String,
    pub trace_id: String,
    pub start_us: u64,
    pub duration_us: u64,
    pub items: u64,
    pub failed: u64,
    pub span_count: usize,
    pub error_spans: usize,
    pub links: Links,
}

#[derive(Debug, Serialize)]
pub struct Links {
    pub jaeger: Option<String>,
    pub grafana: Option<String>,
    pub vmui: Option<String>,
}

/// One trace, its times as offsets from its first span.
#[derive(Debug, Default, Serialize)]
pub struct TraceView {
    /// What `SpanView::s` and `LogView::s` index.
    pub services: Vec<String>,
    /// By start time.
    pub spans: Vec<SpanView>,
    /// By time.
    pub logs: Vec<LogView>,
}

#[derive(Debug, Serialize)]
pub struct SpanView {
    pub id: String,
    /// Index of the parent in `spans`; -1 for a root, or a parent Jaeger does not have.
    pub p: i64,
    /// 1 when the span has a parent that is not in Jaeger.
    #[serde(skip_serializing_if = "is_zero")]
    pub o: u8,
    pub s: usize,
    pub n: String,
    /// Start offset and duration, µs.
    pub t: u64,
    pub d: u64,
    /// 1 for status Error.
    pub e: u8,
    pub k: String,
    pub a: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct LogView {
    /// Offset from the trace's first span, µs (a record can come a little before it).
    pub t: i64,
    /// Index of the record's span in `spans`, or -1.
    pub sp: i64,
    pub s: usize,
    pub l: String,
    pub ev: String,
    pub m: String,
    pub a: BTreeMap<String, String>,
}

fn is_zero(v: &u8) -> bool {
    *v == 0
}

/// What the backends gave, before it is shaped for the page.
#[derive(Debug, Default)]
pub struct Gathered {
    pub run_id: Option<String>,
    pub pillars: Vec<PillarStatus>,
    pub traces: Vec<TraceDetail>,
    /// Records carrying one of the traces' ids.
    pub trace_logs: Vec<LogRecord>,
    /// The run's `run_start` and `run_end` records.
    pub run_logs: Vec<LogRecord>,
    /// The bot's `alert` records of the run.
    pub alert_logs: Vec<LogRecord>,
    pub charts: Vec<Chart>,
    pub missing: Vec<String>,
}

impl ReportData {
    pub fn new(g: Gathered, links: LinkBases, generated_at: String) -> Self {
        let run_start = find_event(&g.run_logs, event::RUN_START);
        let run_end = find_event(&g.run_logs, event::RUN_END);
        let counts = run_end.map(counts_of);
        let (mut item_us, mut batch_us) = (Vec::new(), Vec::new());
        for s in g.traces.iter().flat_map(|t| &t.spans) {
            if s.service == service::BOT && s.name == span::ITEM {
                item_us.push(s.duration_us);
            } else if s.service == service::BOT && s.name == span::BATCH {
                batch_us.push(s.duration_us);
            }
        }
        let mut errors_by_type = BTreeMap::new();
        for r in g.trace_logs.iter().filter(|r| r.event == event::API_ERROR) {
            let kind = r.fields.get("error.type").cloned().unwrap_or_default();
            *errors_by_type.entry(kind).or_default() += 1;
        }
        let spans_start = g
            .traces
            .iter()
            .flat_map(|t| &t.spans)
            .map(|s| s.start_us)
            .min();
        let spans_end = g
            .traces
            .iter()
            .flat_map(|t| &t.spans)
            .map(SpanDetail::end_us)
            .max();
        let run = RunInfo {
            run_id: g.run_id,
            input: run_start.and_then(|r| r.fields.get("input").cloned()),
            start_us: run_start.map(|r| r.time_us).or(spans_start),
            end_us: run_end.map(|r| r.time_us).or(spans_end),
            counts,
            rejects_file: run_end
                .and_then(|r| r.fields.get("rejects_file"))
                .filter(|f| !f.is_empty())
                .cloned(),
            success_rate: counts
                .filter(|c| c.applied + c.failed > 0)
                .map(|c| c.applied as f64 / (c.applied + c.failed) as f64),
            latency_ms: LatencyKpis {
                transaction: Kpi::of(item_us),
                batch: Kpi::of(batch_us),
            },
            errors_by_type,
            alerts: g.alert_logs.iter().map(alert_of).collect(),
        };
        let mut logs_by_trace: HashMap<&str, Vec<&LogRecord>> = HashMap::new();
        for r in &g.trace_logs {
            logs_by_trace.entry(&r.trace_id).or_default().push(r);
        }
        let mut batches: Vec<Batch> = g
            .traces
            .iter()
            .filter_map(|t| batch_of(t, &links))
            .collect();
        batches.sort_by_key(|b| (b.batch_id, b.start_us));
        let traces = g
            .traces
            .iter()
            .map(|t| {
                let logs = logs_by_trace
                    .remove(t.trace_id.as_str())
                    .unwrap_or_default();
                (t.trace_id.clone(), trace_view(t, &logs))
            })
            .collect();
        Self {
            schema: SCHEMA,
            generated_at,
            run,
            pillars: g.pillars,
            links,
            charts: g.charts,
            batches,
            traces,
            missing: g.missing,
        }
    }
}

fn find_event<'a>(records: &'a [LogRecord], name: &str) -> Option<&'a LogRecord> {
    records.iter().find(|r| r.event == name)
}

fn counts_of(r: &LogRecord) -> Counts {
    let n = |key: &str| r.fields.get(key).and_then(|v| v.parse().ok()).unwrap_or(0);
    Counts {
        rows: n("rows"),
        applied: n("applied"),
        replayed: n("replayed"),
        failed: n("failed"),
        rejected: n("rejected"),
        retries: n("retries"),
    }
}

fn alert_of(r: &LogRecord) -> AlertView {
    let text = |key: &str| r.fields.get(key).cloned().unwrap_or_default();
    let number = |key: &str| r.fields.get(key).and_then(|v| v.parse().ok());
    AlertView {
        time_us: r.time_us,
        alertname: text(attr::ALERTNAME),
        state: text(attr::ALERTSTATE),
        value: number("value"),
        threshold: number("threshold"),
        message: r.message.clone(),
    }
}

/// The batch a trace is, from its root `batch` span; `None` for a trace without one.
fn batch_of(trace: &TraceDetail, links: &LinkBases) -> Option<Batch> {
    let root = trace
        .spans
        .iter()
        .find(|s| s.service == service::BOT && s.name == span::BATCH)?;
    let tag = |key: &str| {
        root.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let number = |key: &str| tag(key).and_then(|v| v.parse().ok()).unwrap_or(0);
    let id = trace.trace_id.as_str();
    Some(Batch {
        batch_id: number(attr::BATCH_ID),
        warehouse_id: tag(attr::WAREHOUSE_ID).unwrap_or_default().to_owned(),
        trace_id: trace.trace_id.clone(),
        start_us: trace
            .spans
            .iter()
            .map(|s| s.start_us)
            .min()
            .unwrap_or(root.start_us),
        duration_us: root.duration_us,
        items: number("batch_size"),
        failed: number("failed"),
        span_count: trace.spans.len(),
        error_spans: trace.spans.iter().filter(|s| s.error).count(),
        links: Links {
            jaeger: links.jaeger.as_deref().map(|b| jaeger_link(b, id)),
            grafana: links.grafana.as_deref().map(|b| grafana_link(b, id)),
            vmui: links.vmui.as_deref().map(|b| vmui_link(b, id)),
        },
    })
}

/// Fields every span or record has that say nothing the page does not show otherwise (the
/// service, the level) or nothing at all (the tracing bridge's call-site `event_name`).
const NOT_SHOWN: [&str; 5] = [
    "otel.scope.name",
    "scope.version",
    "event_name",
    "severity_number",
    SERVICE_INSTANCE_ID,
];

fn shown<'a>(fields: impl Iterator<Item = (&'a String, &'a String)>) -> BTreeMap<String, String> {
    fields
        .filter(|(k, _)| !NOT_SHOWN.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn trace_view(trace: &TraceDetail, logs: &[&LogRecord]) -> TraceView {
    let mut spans: Vec<&SpanDetail> = trace.spans.iter().collect();
    spans.sort_by_key(|s| (s.start_us, std::cmp::Reverse(s.duration_us)));
    let origin = spans.first().map_or(0, |s| s.start_us);
    let index: HashMap<&str, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id.as_str(), i))
        .collect();
    let mut view = TraceView::default();
    let service_index = |name: &str, view: &mut TraceView| {
        view.services
            .iter()
            .position(|s| s == name)
            .unwrap_or_else(|| {
                view.services.push(name.to_owned());
                view.services.len() - 1
            })
    };
    for s in &spans {
        let parent = s.parent_id.as_deref().map(|p| index.get(p).copied());
        let sv = service_index(&s.service, &mut view);
        view.spans.push(SpanView {
            id: s.span_id.clone(),
            p: parent.flatten().map_or(-1, |i| i as i64),
            o: u8::from(matches!(parent, Some(None))),
            s: sv,
            n: s.name.clone(),
            t: s.start_us - origin,
            d: s.duration_us,
            e: u8::from(s.error),
            k: s.kind.clone(),
            a: shown(s.attributes.iter().map(|(k, v)| (k, v))),
        });
    }
    let mut logs: Vec<&&LogRecord> = logs.iter().collect();
    logs.sort_by_key(|r| r.time_us);
    for r in logs {
        let sv = service_index(&r.service, &mut view);
        view.logs.push(LogView {
            t: r.time_us as i64 - origin as i64,
            sp: index.get(r.span_id.as_str()).map_or(-1, |i| *i as i64),
            s: sv,
            l: r.severity.clone(),
            ev: r.event.clone(),
            m: r.message.clone(),
            a: shown(r.fields.iter()),
        });
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, parent: Option<&str>, service: &str, name: &str, start: u64) -> SpanDetail {
        SpanDetail {
            span_id: id.into(),
            parent_id: parent.map(Into::into),
            service: service.into(),
            name: name.into(),
            kind: "internal".into(),
            start_us: start,
            duration_us: 1_000,
            error: name == "POST /transactions",
            attributes: vec![
                (attr::BATCH_ID.into(), "7".into()),
                (attr::WAREHOUSE_ID.into(), "WH-1".into()),
                ("batch_size".into(), "2".into()),
                ("failed".into(), "1".into()),
            ],
        }
    }

    fn record(event: &str, span_id: &str, fields: &[(&str, &str)]) -> LogRecord {
        LogRecord {
            time_us: 10_500,
            service: service::BOT.into(),
            severity: "WARN".into(),
            event: event.into(),
            message: "m".into(),
            trace_id: "t1".into(),
            span_id: span_id.into(),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn gathered() -> Gathered {
        let trace = TraceDetail {
            trace_id: "t1".into(),
            // Jaeger's order is not time order.
            spans: vec![
                span("c", Some("b"), service::BOT, "POST /transactions", 10_200),
                span("a", None, service::BOT, span::BATCH, 10_000),
                span("d", Some("c"), service::API, "POST /transactions", 10_300),
                span("b", Some("a"), service::BOT, span::ITEM, 10_100),
                span(
                    "e",
                    Some("gone"),
                    service::API,
                    "sqlite apply_transaction",
                    10_400,
                ),
            ],
            instances: BTreeMap::new(),
        };
        Gathered {
            run_id: Some("r1".into()),
            traces: vec![trace],
            trace_logs: vec![record(
                event::API_ERROR,
                "c",
                &[("error.type", "unavailable")],
            )],
            run_logs: vec![record(
                event::RUN_END,
                "",
                &[
                    ("rows", "3"),
                    ("applied", "1"),
                    ("failed", "1"),
                    ("rejected", "1"),
                ],
            )],
            ..Gathered::default()
        }
    }

    #[test]
    fn spans_point_at_their_parents_in_time_order_and_records_at_their_spans() {
        let links = LinkBases {
            jaeger: Some("http://j".into()),
            ..LinkBases::default()
        };
        let data = ReportData::new(gathered(), links, "now".into());
        let t = &data.traces["t1"];
        let ids: Vec<&str> = t.spans.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d", "e"]);
        let parents: Vec<i64> = t.spans.iter().map(|s| s.p).collect();
        assert_eq!(parents, [-1, 0, 1, 2, -1]);
        assert_eq!(t.spans[4].o, 1, "a parent Jaeger lacks makes an orphan");
        assert_eq!(t.spans[0].o, 0);
        assert_eq!(t.services, [service::BOT, service::API]);
        assert_eq!(t.spans[3].s, 1);
        assert_eq!((t.spans[2].t, t.spans[2].e), (200, 1));
        assert_eq!(t.logs.len(), 1);
        assert_eq!((t.logs[0].sp, t.logs[0].t), (2, 500));

        let b = &data.batches[0];
        assert_eq!((b.batch_id, b.items, b.failed), (7, 2, 1));
        assert_eq!((b.span_count, b.error_spans), (5, 2));
        assert_eq!(b.links.jaeger.as_deref(), Some("http://j/trace/t1"));
        assert_eq!(b.links.grafana, None);

        let run = &data.run;
        let counts = run.counts.expect("counts from run_end");
        assert_eq!((counts.rows, counts.applied, counts.failed), (3, 1, 1));
        assert_eq!(run.success_rate, Some(0.5));
        assert_eq!(run.errors_by_type["unavailable"], 1);
        assert_eq!(run.latency_ms.batch.as_ref().map(|k| k.n), Some(1));
        assert_eq!(
            run.latency_ms.transaction.as_ref().map(|k| k.p99),
            Some(1.0)
        );
    }

    #[test]
    fn without_run_records_the_run_is_placed_by_its_spans() {
        let mut g = gathered();
        g.run_logs.clear();
        let data = ReportData::new(g, LinkBases::default(), "now".into());
        assert!(data.run.counts.is_none());
        assert_eq!(data.run.success_rate, None);
        assert_eq!(
            (data.run.start_us, data.run.end_us),
            (Some(10_000), Some(11_400))
        );
    }
}
