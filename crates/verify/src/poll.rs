//! Polling one pillar until it is complete or the deadline passes: backends store what the
//! collector sends them asynchronously (batching, flush intervals, scrapes), so a first "not
//! there" is often just "not yet".

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::{Backend, Pillar, Scope};

const FIRST_INTERVAL: Duration = Duration::from_millis(500);
const MAX_INTERVAL: Duration = Duration::from_secs(1);
/// The least time a pillar's first try gets, even past the deadline: the logs and metrics
/// pillars are polled after the traces pillar and must not be starved by a slow Jaeger.
const FIRST_TRY: Duration = Duration::from_secs(5);

/// How polling one pillar ended.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome<R> {
    /// The backend asked.
    pub backend: &'static str,
    /// The backend's last answer; `None` when it never answered.
    pub report: Option<R>,
    /// Why the last try failed, when it did (an earlier answer may still be in `report`).
    pub error: Option<String>,
    pub attempts: u32,
}

impl<R: Pillar> Outcome<R> {
    /// What the pillar lacks; a backend that never answered lacks everything.
    pub fn missing(&self) -> Vec<String> {
        match &self.report {
            Some(report) => report.missing(),
            None => vec![format!(
                "{}: {} did not answer: {}",
                R::NAME,
                self.backend,
                self.error.as_deref().unwrap_or("not asked")
            )],
        }
    }
}

pub(crate) async fn poll<B: Backend>(
    backend: &B,
    scope: &Scope,
    deadline: Instant,
) -> Outcome<B::Report> {
    let mut outcome = Outcome {
        backend: B::NAME,
        report: None,
        error: None,
        attempts: 0,
    };
    let mut interval = FIRST_INTERVAL;
    loop {
        let limit = if outcome.attempts == 0 {
            deadline.max(Instant::now() + FIRST_TRY)
        } else {
            deadline
        };
        outcome.attempts += 1;
        match tokio::time::timeout_at(limit.into(), backend.check(scope)).await {
            Ok(Ok(report)) => {
                let complete = report.missing().is_empty();
                outcome.report = Some(report);
                outcome.error = None;
                if complete {
                    return outcome;
                }
            }
            Ok(Err(e)) => outcome.error = Some(names::error_chain(&e)),
            Err(_) => outcome.error = Some("no answer before the deadline".to_owned()),
        }
        if Instant::now() + interval >= deadline {
            return outcome;
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(MAX_INTERVAL);
    }
}
