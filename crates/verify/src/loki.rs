//! The logs pillar, from Loki's `/loki/api/v1/query_range`: for each service with spans in the
//! target's traces, `{service_name="<service>"} | trace_id="<id>"` (trace_id is structured
//! metadata; a run's trace ids go in as one regex), tallied by trace, level and event.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::http::Http;
use crate::report::counts;
use crate::target::Window;
use crate::{Backend, Pillar, QueryError, Scope, quoted};

/// Trace ids per query: keeps a long run's LogQL (and so the URL) short, and the records of one
/// query (a few dozen per batch trace) well under `LIMIT`, so no trace is cut off.
const TRACE_IDS_PER_QUERY: usize = 20;
/// Loki's default `max_entries_limit_per_query`; a batch trace has a few dozen records.
const LIMIT: usize = 5000;

/// Client of Loki's query HTTP API.
#[derive(Debug, Clone)]
pub struct Loki {
    http: Http,
}

impl Loki {
    pub fn new(base: &str) -> Self {
        Self {
            http: Http::new(base),
        }
    }

    async fn query_range(&self, logql: &str, window: Window) -> Result<Vec<Stream>, QueryError> {
        let query = [
            ("query", logql.to_owned()),
            ("start", window.start.as_nanos().to_string()),
            ("end", window.end.as_nanos().to_string()),
            ("limit", LIMIT.to_string()),
        ];
        let answer: Response = self.http.get("/loki/api/v1/query_range", &query).await?;
        Ok(answer.data.result)
    }
}

/// The LogQL for one service's records carrying any of `trace_ids`.
fn logql(service: &str, trace_ids: &[&str]) -> String {
    let selector = format!("{{service_name={}}}", quoted(service));
    match trace_ids {
        [one] => format!("{selector} | trace_id={}", quoted(one)),
        many => format!("{selector} | trace_id=~{}", quoted(&many.join("|"))),
    }
}

impl Backend for Loki {
    type Report = LogsReport;

    async fn check(&self, scope: &Scope) -> Result<LogsReport, QueryError> {
        let mut report = LogsReport::default();
        let mut wanted: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (trace_id, services) in scope.traces() {
            for svc in services {
                wanted.entry(svc).or_default().push(trace_id);
                report
                    .by_trace
                    .entry(trace_id.clone())
                    .or_default()
                    .insert(svc.clone(), 0);
            }
        }
        for (svc, trace_ids) in wanted {
            for chunk in trace_ids.chunks(TRACE_IDS_PER_QUERY) {
                let logql = logql(svc, chunk);
                for stream in self.query_range(&logql, scope.window()).await? {
                    report.tally(svc, &stream);
                }
                report.queries.push(logql);
            }
        }
        Ok(report)
    }
}

/// The logs pillar: the records carrying the target's trace ids.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogsReport {
    pub records: usize,
    /// Records per level: `severity_text` (lowercased), else Loki's `detected_level`.
    pub by_level: BTreeMap<String, usize>,
    /// Records per `event` attribute; `(none)` for records without one.
    pub by_event: BTreeMap<String, usize>,
    /// Records per service.
    pub services: BTreeMap<String, usize>,
    /// Records per trace and service, with a 0 for each service that has spans in the trace
    /// but no record with its trace_id.
    pub by_trace: BTreeMap<String, BTreeMap<String, usize>>,
    /// The LogQL queries asked.
    pub queries: Vec<String>,
}

impl LogsReport {
    fn tally(&mut self, svc: &str, stream: &Stream) {
        let n = stream.values.len();
        let label = |name: &str| stream.stream.get(name).map(String::as_str);
        let level = label("severity_text")
            .or_else(|| label("detected_level"))
            .unwrap_or("unknown")
            .to_ascii_lowercase();
        self.records += n;
        *self.by_level.entry(level).or_default() += n;
        *self
            .by_event
            .entry(label("event").unwrap_or("(none)").to_owned())
            .or_default() += n;
        *self.services.entry(svc.to_owned()).or_default() += n;
        if let Some(trace_id) = label("trace_id") {
            *self
                .by_trace
                .entry(trace_id.to_owned())
                .or_default()
                .entry(svc.to_owned())
                .or_default() += n;
        }
    }
}

impl Pillar for LogsReport {
    const NAME: &'static str = "logs";
    const BACKEND: &'static str = "Loki";

    fn missing(&self) -> Vec<String> {
        if self.by_trace.is_empty() {
            return vec!["logs: no trace id to look for, as Jaeger found no trace".to_owned()];
        }
        self.by_trace
            .iter()
            .flat_map(|(trace_id, services)| {
                services
                    .iter()
                    .filter(|(_, n)| **n == 0)
                    .map(move |(svc, _)| {
                        format!(
                            "logs: Loki has no records with trace_id {trace_id} for service {svc}"
                        )
                    })
            })
            .collect()
    }
}

impl fmt::Display for LogsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} records; services {}; levels {}",
            self.records,
            counts(&self.services),
            counts(&self.by_level)
        )?;
        write!(f, "events: {}", counts(&self.by_event))
    }
}

// Loki's answer: only the fields the checks read.

#[derive(Debug, Deserialize)]
struct Response {
    data: Data,
}

#[derive(Debug, Deserialize)]
struct Data {
    /// A log query's result type is `streams`.
    result: Vec<Stream>,
}

#[derive(Debug, Deserialize)]
struct Stream {
    /// Index labels and structured metadata together (Loki merges them unless asked not to).
    stream: HashMap<String, String>,
    /// `[timestamp in ns, line]` per record.
    values: Vec<(String, String)>,
}
