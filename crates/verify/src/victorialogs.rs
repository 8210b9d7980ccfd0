//! The logs pillar from VictoriaLogs' `/select/logsql/query`: for each service with spans in the
//! target's traces, one LogsQL query that counts that service's records of the traces by trace,
//! level and event, so the answer is a few rows however many records there are:
//!
//! `{service.name="invbot"} trace_id:in("<id>", …) | stats by (trace_id, severity_text, event) count() records`
//!
//! `service.name` is a stream field (the collector's `VL-Stream-Fields` header); `trace_id`,
//! `severity_text` and `event` are the records' own fields.

use std::collections::BTreeMap;

use opentelemetry_semantic_conventions::resource::SERVICE_INSTANCE_ID;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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

    async fn query<T: serde::de::DeserializeOwned>(
        &self,
        logsql: &str,
        window: Window,
    ) -> Result<Vec<T>, QueryError> {
        // Whole seconds, widened outwards so that the window never loses a record.
        let query = [
            ("query", logsql.to_owned()),
            ("start", window.start.as_secs().to_string()),
            ("end", (window.end.as_secs() + 1).to_string()),
        ];
        self.http.get_lines("/select/logsql/query", &query).await
    }
}

impl VictoriaLogs {
    /// Every record of the scope's traces, each service's in time order (what `invbot report`
    /// shows by span).
    pub async fn trace_records(&self, scope: &Scope) -> Result<Vec<LogRecord>, QueryError> {
        let mut out = Vec::new();
        for (svc, trace_ids) in scope.trace_ids_by_service() {
            for chunk in trace_ids.chunks(TRACE_IDS_PER_QUERY) {
                out.extend(
                    self.records(&records_logsql(svc, chunk), scope.window())
                        .await?,
                );
            }
        }
        Ok(out)
    }

    /// The records of `service` that `filter` (LogsQL, after the stream selector) selects in
    /// `window`, oldest first.
    pub async fn service_records(
        &self,
        service: &str,
        filter: &str,
        window: Window,
    ) -> Result<Vec<LogRecord>, QueryError> {
        let logsql = format!(
            "{{service.name={}}} {filter} | sort by (_time)",
            quoted(service)
        );
        self.records(&logsql, window).await
    }

    async fn records(&self, logsql: &str, window: Window) -> Result<Vec<LogRecord>, QueryError> {
        let rows: Vec<BTreeMap<String, String>> = self.query(logsql, window).await?;
        Ok(rows.into_iter().map(LogRecord::new).collect())
    }
}

/// One log record as VictoriaLogs keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct LogRecord {
    /// Microseconds since the Unix epoch (0 when VictoriaLogs gave no readable `_time`).
    pub time_us: u64,
    pub service: String,
    pub severity: String,
    pub event: String,
    pub message: String,
    pub trace_id: String,
    pub span_id: String,
    /// The record's other fields: its attributes, and `service.instance.id`.
    pub fields: BTreeMap<String, String>,
}

/// Fields that are the record's resource (but `service.instance.id`, which ties a record to its
/// process) or VictoriaLogs' own.
fn is_resource_field(key: &str) -> bool {
    const PREFIXES: [&str; 6] = [
        "_stream",
        "service.",
        "telemetry.",
        "deployment.",
        "host.",
        "process.",
    ];
    key != SERVICE_INSTANCE_ID && PREFIXES.iter().any(|p| key.starts_with(p))
}

impl LogRecord {
    fn new(mut fields: BTreeMap<String, String>) -> Self {
        let mut take = |key: &str| fields.remove(key).unwrap_or_default();
        let time_us = OffsetDateTime::parse(&take("_time"), &Rfc3339).map_or(0, |t| {
            u64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(0)
        });
        let (service, severity, event, message, trace_id, span_id) = (
            take("service.name"),
            take("severity_text"),
            take("event"),
            take("_msg"),
            take("trace_id"),
            take("span_id"),
        );
        fields.retain(|k, _| !is_resource_field(k));
        Self {
            time_us,
            service,
            severity,
            event,
            message,
            trace_id,
            span_id,
            fields,
        }
    }
}

/// The LogsQL that selects one service's records carrying any of `trace_ids`, oldest first.
fn records_logsql(service: &str, trace_ids: &[&str]) -> String {
    let ids: Vec<String> = trace_ids.iter().map(|id| quoted(id)).collect();
    format!(
        "{{service.name={}}} trace_id:in({}) | sort by (_time)",
        quoted(service),
        ids.join(", ")
    )
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
                let rows: Vec<Row> = self.query(&logsql, scope.window()).await?;
                for row in rows {
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
    use std::collections::BTreeMap;

    use super::{LogRecord, logsql};

    #[test]
    fn a_record_keeps_its_attributes_and_drops_its_resource() {
        let fields: BTreeMap<String, String> = [
            ("_time", "2026-12-01T23:00:01.5Z"),
            ("_stream", "{service.name=\"invbot\"}"),
            ("_msg", "inventory API call failed"),
            ("service.name", "invbot"),
            ("service.instance.id", "abc"),
            ("telemetry.sdk.name", "opentelemetry"),
            ("event", "api_error"),
            ("error.type", "unavailable"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let r = LogRecord::new(fields);
        assert_eq!(r.time_us, 1_796_166_001_500_000);
        assert_eq!(
            (r.service.as_str(), r.event.as_str()),
            ("invbot", "api_error")
        );
        assert_eq!(r.message, "inventory API call failed");
        assert_eq!(
            r.fields.keys().collect::<Vec<_>>(),
            ["error.type", "service.instance.id"]
        );
    }

    #[test]
    fn one_query_counts_a_services_records_of_several_traces() {
        assert_eq!(
            logsql("invbot", &["ab", "cd"]),
            r#"{service.name="invbot"} trace_id:in("ab", "cd") | stats by (trace_id, severity_text, event) count() records"#
        );
    }
}
