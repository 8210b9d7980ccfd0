//! The logs pillar from VictoriaLogs' `/select/logsql/query`: for each service with spans in the
//! target's traces, one LogsQL query that counts that service's records of the traces by trace,
//! level and event, so the answer is a few rows however many records there are:
//!
//! `{service.name="invbot"} trace_id:in("<id>", …) | stats by (trace_id, severity_text, event) count() records`
//!
//! `service.name` is a stream field (the collector's `VL-Stream-Fields` header); `trace_id`,
//! `severity_text` and `event` are the records' own fields.

use serde::Deserialize;

use crate::http::Http;
use crate::logs::{LogsReport, Tally};
use crate::target::Window;
use crate::{Backend, QueryError, Scope, quoted};

/// Trace ids per query: keeps a long run's LogsQL (and so the URL) short.
const TRACE_IDS_PER_QUERY: usize = 20;

/// Client of VictoriaLogs' query HTTP API.
#[derive(Debug, Clone)]
pub struct VictoriaLogs {
    http: Http,
}

impl VictoriaLogs {
    pub fn new(base: &str) -> Self {
        Self {
            http: Http::new(base),
        }
    }

    async fn query(&self, logsql: &str, window: Window) -> Result<Vec<Row>, QueryError> {
        // Whole seconds, widened outwards so that the window never loses a record.
        let query = [
            ("query", logsql.to_owned()),
            ("start", window.start.as_secs().to_string()),
            ("end", (window.end.as_secs() + 1).to_string()),
        ];
        self.http.get_lines("/select/logsql/query", &query).await
    }
}

/// The LogsQL that counts one service's records carrying any of `trace_ids`.
pub(crate) fn logsql(service: &str, trace_ids: &[&str]) -> String {
    let ids: Vec<String> = trace_ids.iter().map(|id| quoted(id)).collect();
    format!(
        "{{service.name={}}} trace_id:in({}) | stats by (trace_id, severity_text, event) count() records",
        quoted(service),
        ids.join(", ")
    )
}

impl Backend for VictoriaLogs {
    const NAME: &'static str = "VictoriaLogs";
    type Report = LogsReport;

    async fn check(&self, scope: &Scope) -> Result<LogsReport, QueryError> {
        let mut report = LogsReport::new(Self::NAME, scope.traces());
        for (svc, trace_ids) in scope.trace_ids_by_service() {
            for chunk in trace_ids.chunks(TRACE_IDS_PER_QUERY) {
                let logsql = logsql(svc, chunk);
                for row in self.query(&logsql, scope.window()).await? {
                    report.tally(&Tally {
                        service: svc,
                        trace_id: non_empty(&row.trace_id),
                        level: non_empty(&row.severity_text),
                        event: non_empty(&row.event),
                        n: row.records,
                    });
                }
                report.queries.push(logsql);
            }
        }
        Ok(report)
    }
}

/// VictoriaLogs answers a missing field as an empty string.
fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// One line of the answer: a group of the `stats` pipe.
#[derive(Debug, Deserialize)]
struct Row {
    #[serde(default)]
    trace_id: String,
    #[serde(default)]
    severity_text: String,
    #[serde(default)]
    event: String,
    /// `count()` comes as a decimal string.
    #[serde(deserialize_with = "decimal")]
    records: usize,
}

fn decimal<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::logsql;

    #[test]
    fn one_query_counts_a_services_records_of_several_traces() {
        assert_eq!(
            logsql("invbot", &["ab", "cd"]),
            r#"{service.name="invbot"} trace_id:in("ab", "cd") | stats by (trace_id, severity_text, event) count() records"#
        );
    }
}
