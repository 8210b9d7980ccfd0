//! What to verify ([`Target`]) and what the traces pillar learns about it for the other two
//! ([`Scope`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use names::service;
use serde::Serialize;

use crate::jaeger::TracesReport;

/// How far back a target is looked for before Jaeger has placed it in time.
const LOOKBACK: Duration = Duration::from_secs(24 * 3600);
/// Slack before the first span: clocks of the bot and the API may differ a little.
const BEFORE: Duration = Duration::from_secs(60);
/// Slack after the last span: metrics are exported every 10 s and scraped some seconds later.
const AFTER: Duration = Duration::from_secs(300);

/// A W3C trace id: 32 hex digits, not all zero, kept in lowercase (how Jaeger, Loki's structured
/// metadata and Prometheus' exemplar labels spell it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TraceId(String);

impl TraceId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TraceId {
    type Err = ParseTargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex || s.bytes().all(|b| b == b'0') {
            return Err(ParseTargetError::TraceId(s.to_owned()));
        }
        Ok(Self(s.to_ascii_lowercase()))
    }
}

/// What to verify: one batch trace, or every batch trace of one run (found in Jaeger by the
/// `run_id` attribute of the `batch` spans).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Trace(TraceId),
    Run(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Trace(id) => write!(f, "trace {id}"),
            Self::Run(id) => write!(f, "run {id}"),
        }
    }
}

/// 32 hex digits are a trace id, anything else a run id (the bot's are 12 hex digits).
impl FromStr for Target {
    type Err = ParseTargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return s.parse().map(Self::Trace);
        }
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ParseTargetError::RunId(s.to_owned()));
        }
        Ok(Self::Run(s.to_owned()))
    }
}

/// Why a string is not a [`Target`] or a [`TraceId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseTargetError {
    #[error("{0:?} is not a trace id (32 hex digits, not all zero)")]
    TraceId(String),
    #[error("{0:?} is not a run id (non-empty, no spaces)")]
    RunId(String),
}

/// A time range, as durations since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Duration,
    pub end: Duration,
}

/// What the pillars are checked against: the target, its trace ids with the services that have
/// spans in each, the services' `service.instance.id`s (how Prometheus series are tied to a run)
/// and a time window. Built from the target alone, then from what Jaeger found.
#[derive(Debug, Clone)]
pub struct Scope {
    target: Target,
    traces: BTreeMap<String, BTreeSet<String>>,
    instances: BTreeMap<String, BTreeSet<String>>,
    window: Window,
}

impl Scope {
    /// Before Jaeger has answered: a trace target is expected to have spans of both services, a
    /// run's traces are not known yet, and the window is the last 24 hours.
    pub fn new(target: Target) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let traces = match &target {
            Target::Trace(id) => BTreeMap::from([(
                id.to_string(),
                BTreeSet::from([service::BOT.to_owned(), service::API.to_owned()]),
            )]),
            Target::Run(_) => BTreeMap::new(),
        };
        Self {
            target,
            traces,
            instances: BTreeMap::new(),
            window: Window {
                start: now.saturating_sub(LOOKBACK),
                end: now,
            },
        }
    }

    /// Narrowed to what Jaeger found: its traces, their services and instances, and their time
    /// span with some slack. Unchanged when Jaeger found nothing.
    pub fn with_traces(mut self, found: &TracesReport) -> Self {
        let (Some(start), Some(end)) = (
            found.traces.iter().map(|t| t.start_us).min(),
            found.traces.iter().map(|t| t.end_us).max(),
        ) else {
            return self;
        };
        self.traces = found
            .traces
            .iter()
            .map(|t| (t.trace_id.clone(), t.services.keys().cloned().collect()))
            .collect();
        self.instances.clear();
        for (svc, ids) in found.traces.iter().flat_map(|t| &t.instances) {
            self.instances
                .entry(svc.clone())
                .or_default()
                .extend(ids.iter().cloned());
        }
        self.window = Window {
            start: Duration::from_micros(start).saturating_sub(BEFORE),
            end: Duration::from_micros(end) + AFTER,
        };
        self
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Trace id → services with spans in it.
    pub(crate) fn traces(&self) -> &BTreeMap<String, BTreeSet<String>> {
        &self.traces
    }

    /// Service → the trace ids with spans of that service: what a log store is asked, per service.
    pub(crate) fn trace_ids_by_service(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (trace_id, services) in &self.traces {
            for svc in services {
                out.entry(svc).or_default().push(trace_id);
            }
        }
        out
    }

    /// Service → its `service.instance.id`s.
    pub fn instances(&self) -> &BTreeMap<String, BTreeSet<String>> {
        &self.instances
    }

    pub fn window(&self) -> Window {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_two_hex_digits_are_a_trace_id_anything_else_a_run_id() {
        let t: Target = "29D149CDAAD50F586E83EF5B13D1457C".parse().unwrap();
        assert_eq!(t.to_string(), "trace 29d149cdaad50f586e83ef5b13d1457c");
        assert_eq!(
            "f90cfe020813".parse::<Target>(),
            Ok(Target::Run("f90cfe020813".into()))
        );
        assert!(matches!(
            "0".repeat(32).parse::<Target>(),
            Err(ParseTargetError::TraceId(_))
        ));
        assert!(matches!(
            "".parse::<Target>(),
            Err(ParseTargetError::RunId(_))
        ));
        assert!(
            "not hex at all but 32 chars long"
                .parse::<TraceId>()
                .is_err()
        );
    }
}
