//! The three pillars together: what `invbot verify` prints, as text or JSON.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::jaeger::TracesReport;
use crate::logs::LogsReport;
use crate::prometheus::MetricsReport;
use crate::{Outcome, Pillar, Target};

/// The verdict on one target.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: Target,
    pub traces: Outcome<TracesReport>,
    pub logs: Outcome<LogsReport>,
    pub metrics: Outcome<MetricsReport>,
    /// Kept with the report so that the JSON form carries the verdict too.
    missing: Vec<String>,
}

impl Report {
    pub(crate) fn new(
        target: Target,
        traces: Outcome<TracesReport>,
        logs: Outcome<LogsReport>,
        metrics: Outcome<MetricsReport>,
    ) -> Self {
        let missing = [traces.missing(), logs.missing(), metrics.missing()].concat();
        Self {
            target,
            traces,
            logs,
            metrics,
            missing,
        }
    }

    /// One message per gap, each naming its pillar and what it lacks; empty when the target is
    /// correlated across all three pillars.
    pub fn missing(&self) -> &[String] {
        &self.missing
    }

    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }

    /// How many traces Jaeger returned for the target.
    pub fn traces_found(&self) -> usize {
        self.traces.report.as_ref().map_or(0, |r| r.traces.len())
    }

    /// Holds a run to the number of batches its summary reported: Jaeger answers a run search
    /// with whatever it has stored so far, which can be a part of the run.
    pub fn expect_traces(&mut self, expected: usize) {
        let found = self.traces_found();
        if found < expected {
            self.missing.push(format!(
                "traces: Jaeger has {found} of the {expected} batch traces of {}",
                self.target
            ));
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.missing.len() {
            0 => writeln!(f, "{}: complete in traces, logs and metrics", self.target)?,
            n => writeln!(f, "{}: {n} missing", self.target)?,
        }
        pillar(f, &self.traces)?;
        pillar(f, &self.logs)?;
        pillar(f, &self.metrics)?;
        if !self.missing.is_empty() {
            writeln!(f, "missing:")?;
        }
        for m in &self.missing {
            writeln!(f, "  - {m}")?;
        }
        Ok(())
    }
}

/// A pillar's lines, the first one labelled with the pillar and its backend.
fn pillar<R: Pillar + fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    outcome: &Outcome<R>,
) -> fmt::Result {
    let mut text = outcome
        .report
        .as_ref()
        .map_or_else(|| "no answer".to_owned(), R::to_string);
    if let Some(e) = &outcome.error {
        text.push_str("\nlast try failed: ");
        text.push_str(e);
    }
    let head = format!("{} ({})", R::NAME, outcome.backend);
    for (i, line) in text.lines().enumerate() {
        let label = if i == 0 { head.as_str() } else { "" };
        writeln!(f, "  {label:<22}{line}")?;
    }
    Ok(())
}

/// `a 3, b 1`, or `none`.
pub(crate) fn counts(map: &BTreeMap<String, usize>) -> String {
    if map.is_empty() {
        return "none".to_owned();
    }
    let each: Vec<String> = map.iter().map(|(k, n)| format!("{k} {n}")).collect();
    each.join(", ")
}

pub(crate) fn add_counts(into: &mut BTreeMap<String, usize>, from: &BTreeMap<String, usize>) {
    for (k, n) in from {
        *into.entry(k.clone()).or_default() += n;
    }
}
