//! The logs pillar from Loki's `/loki/api/v1/query_range`, for users who run Loki instead of
//! VictoriaLogs: for each service with spans in the target's traces,
//! `{service_name="<service>"} | trace_id="<id>"` (trace_id is structured metadata; a run's trace
//! ids go in as one regex).

use std::collections::HashMap;

use serde::Deserialize;

use crate::http::Http;
use crate::logs::{LogsReport, Tally};
use crate::target::Window;
use crate::{Backend, QueryError, Scope, quoted};

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
    const NAME: &'static str = "Loki";
    type Report = LogsReport;

    async fn check(&self, scope: &Scope) -> Result<LogsReport, QueryError> {
        let mut report = LogsReport::new(Self::NAME, scope.traces());
        for (svc, trace_ids) in scope.trace_ids_by_service() {
            for chunk in trace_ids.chunks(TRACE_IDS_PER_QUERY) {
                let logql = logql(svc, chunk);
                for stream in self.query_range(&logql, scope.window()).await? {
                    let label = |name: &str| stream.stream.get(name).map(String::as_str);
                    report.tally(&Tally {
                        service: svc,
                        trace_id: label("trace_id"),
                        level: label("severity_text").or_else(|| label("detected_level")),
                        event: label("event"),
                        n: stream.values.len(),
                    });
                }
                report.queries.push(logql);
            }
        }
        Ok(report)
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
