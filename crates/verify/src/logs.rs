//! The logs pillar, whichever store holds it: the records carrying the target's trace ids,
//! tallied by trace, service, level and event. [`LogStore`] names the stores the verifier can
//! read: VictoriaLogs (the pipeline's own) and Loki (for users who run it instead).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::Pillar;
use crate::report::counts;

/// Which log store the logs pillar is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStore {
    VictoriaLogs,
    Loki,
}

impl LogStore {
    /// The store's query API on the native stack.
    pub fn default_url(self) -> &'static str {
        match self {
            Self::VictoriaLogs => "http://127.0.0.1:9428",
            Self::Loki => "http://127.0.0.1:3100",
        }
    }
}

impl fmt::Display for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::VictoriaLogs => "victorialogs",
            Self::Loki => "loki",
        })
    }
}

impl FromStr for LogStore {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "victorialogs" => Ok(Self::VictoriaLogs),
            "loki" => Ok(Self::Loki),
            other => Err(format!(
                "{other:?} is not a log store (victorialogs or loki)"
            )),
        }
    }
}

/// The logs pillar: the records carrying the target's trace ids.
#[derive(Debug, Clone, Serialize)]
pub struct LogsReport {
    /// The store that answered, as messages name it (`VictoriaLogs`, `Loki`).
    pub store: &'static str,
    pub records: usize,
    /// Records per level (lowercased).
    pub by_level: BTreeMap<String, usize>,
    /// Records per `event` attribute; `(none)` for records without one.
    pub by_event: BTreeMap<String, usize>,
    /// Records per service.
    pub services: BTreeMap<String, usize>,
    /// Records per trace and service, with a 0 for each service that has spans in the trace
    /// but no record with its trace_id.
    pub by_trace: BTreeMap<String, BTreeMap<String, usize>>,
    /// The queries asked, in the store's language.
    pub queries: Vec<String>,
}

/// `n` records of one service that share a trace id (if any), a level and an event.
pub(crate) struct Tally<'a> {
    pub(crate) service: &'a str,
    pub(crate) trace_id: Option<&'a str>,
    pub(crate) level: Option<&'a str>,
    pub(crate) event: Option<&'a str>,
    pub(crate) n: usize,
}

impl LogsReport {
    /// Expects records of each service with spans in each trace (a 0 until some are counted).
    pub(crate) fn new<'a>(
        store: &'static str,
        traces: impl IntoIterator<Item = (&'a String, impl IntoIterator<Item = &'a String>)>,
    ) -> Self {
        let by_trace = traces
            .into_iter()
            .map(|(trace_id, services)| {
                let zeros = services.into_iter().map(|svc| (svc.clone(), 0)).collect();
                (trace_id.clone(), zeros)
            })
            .collect();
        Self {
            store,
            records: 0,
            by_level: BTreeMap::new(),
            by_event: BTreeMap::new(),
            services: BTreeMap::new(),
            by_trace,
            queries: Vec::new(),
        }
    }

    pub(crate) fn tally(&mut self, t: &Tally<'_>) {
        let n = t.n;
        self.records += n;
        let level = t.level.unwrap_or("unknown").to_ascii_lowercase();
        *self.by_level.entry(level).or_default() += n;
        *self
            .by_event
            .entry(t.event.unwrap_or("(none)").to_owned())
            .or_default() += n;
        *self.services.entry(t.service.to_owned()).or_default() += n;
        if let Some(trace_id) = t.trace_id {
            *self
                .by_trace
                .entry(trace_id.to_owned())
                .or_default()
                .entry(t.service.to_owned())
                .or_default() += n;
        }
    }
}

impl Pillar for LogsReport {
    const NAME: &'static str = "logs";

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
                            "logs: {} has no records with trace_id {trace_id} for service {svc}",
                            self.store
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
