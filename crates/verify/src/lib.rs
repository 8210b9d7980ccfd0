//! The correlation verifier: given one batch trace or one run of the bot, checks over the
//! backends' HTTP query APIs that the trace is in Jaeger with spans of both services linked across
//! the HTTP hop, that the log store (VictoriaLogs, or Loki) has each service's log records
//! carrying its trace_id, and that
//! Prometheus has the run's series, the spanmetrics series of the trace's services and, when the
//! collector sampled one, an exemplar pointing back at the trace.
//!
//! Backends store asynchronously, so [`verify`] polls each pillar until it is complete or a
//! deadline passes, then reports what it has: a [`Report`] whose [`Report::missing`] names the
//! pillar and what it lacks. Jaeger goes first because the other two pillars are selected by what
//! it knows (trace ids, services, `service.instance.id`, the time window): see [`Scope`].

use std::future::Future;
use std::time::Instant;

use serde::Serialize;

mod http;
pub mod jaeger;
pub mod logs;
pub mod loki;
mod poll;
pub mod prometheus;
mod report;
mod target;
pub mod victorialogs;

pub use http::QueryError;
pub use jaeger::Jaeger;
pub use logs::{LogStore, LogsReport};
pub use loki::Loki;
pub use poll::Outcome;
pub use prometheus::Prometheus;
pub use report::Report;
pub use target::{ParseTargetError, Scope, Target, TraceId, Window};
pub use victorialogs::VictoriaLogs;

/// Jaeger's and Prometheus' query APIs on the native stack (the log store's:
/// [`LogStore::default_url`]).
pub const DEFAULT_JAEGER_URL: &str = "http://127.0.0.1:16686";
pub const DEFAULT_PROMETHEUS_URL: &str = "http://127.0.0.1:9090";

/// Where the backends' query APIs listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub jaeger: String,
    /// The log store's query API, and which store it is.
    pub logs: String,
    pub log_store: LogStore,
    pub prometheus: String,
}

/// One backend's check of its pillar for a scope.
pub trait Backend {
    /// The backend, as messages name it: `Jaeger`, `VictoriaLogs`, `Loki`, `Prometheus`.
    const NAME: &'static str;
    type Report: Pillar + Serialize;

    /// One round of queries; polling (and so waiting for the backend to catch up) is the
    /// caller's business.
    fn check(&self, scope: &Scope)
    -> impl Future<Output = Result<Self::Report, QueryError>> + Send;
}

/// What one pillar found, judged.
pub trait Pillar {
    /// The pillar, as messages name it: `traces`, `logs`, `metrics`.
    const NAME: &'static str;

    /// One precise message per thing the pillar lacks, each starting with the pillar's name;
    /// empty when the pillar is complete.
    fn missing(&self) -> Vec<String>;
}

/// Verifies `target` in the three backends, polling each pillar until it is complete or
/// `deadline` passes. Never fails: unreachable backends and missing data are in the report.
pub async fn verify(target: &Target, endpoints: &Endpoints, deadline: Instant) -> Report {
    let scope = Scope::new(target.clone());
    let traces = poll::poll(&Jaeger::new(&endpoints.jaeger), &scope, deadline).await;
    let scope = match &traces.report {
        Some(found) => scope.with_traces(found),
        None => scope,
    };
    let logs = async {
        match endpoints.log_store {
            LogStore::VictoriaLogs => {
                poll::poll(&VictoriaLogs::new(&endpoints.logs), &scope, deadline).await
            }
            LogStore::Loki => poll::poll(&Loki::new(&endpoints.logs), &scope, deadline).await,
        }
    };
    let prometheus = Prometheus::new(&endpoints.prometheus);
    let (logs, metrics) = tokio::join!(logs, poll::poll(&prometheus, &scope, deadline));
    Report::new(target.clone(), traces, logs, metrics)
}

/// A value as a double-quoted LogQL/PromQL/LogsQL string literal (all three use Go's syntax).
pub fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str(r#"\""#),
            '\n' => out.push_str(r"\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::quoted;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(quoted("invbot"), r#""invbot""#);
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
