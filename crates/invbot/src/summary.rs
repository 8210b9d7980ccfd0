//! The end-of-run summary: counts by outcome (rows read = applied + failed + rejected), latency
//! percentiles, retries, the run id, the batches' trace ids and links to them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use telemetry::ShutdownReport;

use crate::alerts::AlertRecord;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// Nearest-rank percentiles of `samples` (seconds); all zero when there are none.
    pub fn from_seconds(mut samples: Vec<f64>) -> Self {
        samples.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            if samples.is_empty() {
                return 0.0;
            }
            let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i] * 1000.0
        };
        Self {
            p50_ms: rank(0.50),
            p95_ms: rank(0.95),
            p99_ms: rank(0.99),
            max_ms: samples.last().map_or(0.0, |s| s * 1000.0),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchTrace {
    pub batch_id: usize,
    pub warehouse_id: String,
    pub items: usize,
    pub failed: usize,
    pub duration_s: f64,
    /// None when tracing is off (OTEL_SDK_DISABLED) or the batch was not sampled.
    pub trace_id: Option<String>,
    pub jaeger_url: Option<String>,
    pub grafana_url: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub run_id: String,
    pub input: String,
    pub rows_read: usize,
    pub applied: usize,
    /// Of `applied`: requests the API had already applied under the same idempotency key.
    pub replayed: usize,
    pub failed: usize,
    pub rejected: usize,
    pub retries: u64,
    pub failures_by_reason: BTreeMap<String, usize>,
    pub rejects_file: Option<String>,
    pub duration_s: f64,
    pub throughput_per_s: f64,
    pub latency: Latency,
    pub batches: Vec<BatchTrace>,
    pub alerts: Vec<AlertRecord>,
    pub telemetry: Option<String>,
}

impl Summary {
    pub fn counts_add_up(&self) -> bool {
        self.rows_read == self.applied + self.failed + self.rejected
    }

    pub fn is_clean(&self) -> bool {
        self.failed == 0 && self.rejected == 0
    }

    /// The human-readable form printed at the end of a run.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "run {}  ({})", self.run_id, self.input);
        let _ = writeln!(
            s,
            "  rows {}  = applied {} (replayed {})  + failed {}  + rejected {}",
            self.rows_read, self.applied, self.replayed, self.failed, self.rejected
        );
        if !self.failures_by_reason.is_empty() {
            let reasons: Vec<String> = self
                .failures_by_reason
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(s, "  failures: {}", reasons.join(", "));
        }
        if let Some(path) = &self.rejects_file {
            let _ = writeln!(s, "  rejected rows and reasons: {path}");
        }
        let l = &self.latency;
        let _ = writeln!(
            s,
            "  latency p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms  max {:.1} ms;  retries {}",
            l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms, self.retries
        );
        let _ = writeln!(
            s,
            "  {} batches in {:.2} s, {:.0} items/s",
            self.batches.len(),
            self.duration_s,
            self.throughput_per_s
        );
        let firing: Vec<_> = self.alerts.iter().filter(|a| a.state == "firing").collect();
        if !firing.is_empty() {
            let names: Vec<_> = firing.iter().map(|a| a.alertname).collect();
            let _ = writeln!(s, "  alerts fired: {}", names.join(", "));
        }
        const SHOWN: usize = 10;
        let traced: Vec<_> = self
            .batches
            .iter()
            .filter(|b| b.trace_id.is_some())
            .collect();
        if !traced.is_empty() {
            let _ = writeln!(
                s,
                "  batch traces ({} of {}; --json lists all):",
                traced.len().min(SHOWN),
                traced.len()
            );
        }
        for b in traced.iter().take(SHOWN) {
            let trace_id = b.trace_id.as_deref().unwrap_or_default();
            let _ = write!(
                s,
                "    batch {:>4} {} {} items {:>3} failed {:>3}",
                b.batch_id, b.warehouse_id, trace_id, b.items, b.failed
            );
            if let Some(url) = &b.jaeger_url {
                let _ = write!(s, "  {url}");
            }
            if let Some(url) = &b.grafana_url {
                let _ = write!(s, "  {url}");
            }
            s.push('\n');
        }
        if let Some(t) = &self.telemetry {
            let _ = writeln!(s, "  telemetry: {t}");
        }
        s
    }
}

/// The summary's telemetry line: what the bot and its API did not deliver to `endpoint`; when
/// the collector refused their credentials, that (the report names the endpoints); when no
/// collector answered at all, that the run went on without one and how to start it; when some
/// was kept in the spool, how it gets sent.
pub fn telemetry_line(endpoint: &str, report: &ShutdownReport) -> String {
    let line = outcome_line(endpoint, report);
    if report.spooled.is_zero() {
        line
    } else {
        format!("{line}. The next run or `invbot telemetry flush` sends what was kept")
    }
}

fn outcome_line(endpoint: &str, report: &ShutdownReport) -> String {
    if !report.auth_refused.is_empty() {
        format!(
            "the collector refused the credentials sent (check OTEL_EXPORTER_OTLP_HEADERS), \
             the run went on: {report}"
        )
    } else if report.collector_unreachable() {
        format!(
            "no collector answered at {endpoint}, the run went on without it: {report}. \
             Start the pipeline with `cargo xtask stack up`"
        )
    } else {
        format!("exported to {endpoint}: {report}")
    }
}

/// Link to a trace in Jaeger's UI.
pub fn jaeger_link(base: &str, trace_id: &str) -> String {
    format!("{}/trace/{trace_id}", base.trim_end_matches('/'))
}

/// Link to a trace in Grafana Explore, through the provisioned Jaeger datasource (uid `jaeger`).
pub fn grafana_link(base: &str, trace_id: &str) -> String {
    let left = format!(
        r#"{{"datasource":"jaeger","queries":[{{"refId":"A","datasource":{{"type":"jaeger","uid":"jaeger"}},"queryType":"traceql","query":"{trace_id}"}}],"range":{{"from":"now-6h","to":"now"}}}}"#
    );
    format!(
        "{}/explore?schemaVersion=1&orgId=1&left={}",
        base.trim_end_matches('/'),
        percent_encode(&left)
    )
}

/// Link to a trace's log records in vmui, VictoriaLogs' own UI (`<base>/select/vmui/`).
pub fn vmui_link(base: &str, trace_id: &str) -> String {
    format!(
        "{}/#/?query={}",
        base.trim_end_matches('/'),
        percent_encode(&format!("trace_id:=\"{trace_id}\""))
    )
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(|ms| f64::from(ms) / 1000.0).collect();
        let l = Latency::from_seconds(samples);
        assert_eq!(
            (l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms),
            (50.0, 95.0, 99.0, 100.0)
        );
        assert_eq!(Latency::from_seconds(vec![]).p99_ms, 0.0);
        assert_eq!(Latency::from_seconds(vec![0.004]).p50_ms, 4.0);
    }

    #[test]
    fn the_telemetry_line_says_what_was_lost_and_why() {
        let endpoint = "http://127.0.0.1:14999";
        let mut report = ShutdownReport {
            spans_dropped: 5,
            logs_dropped: 3,
            metric_points_dropped: 40,
            exports_failed: 4,
            ..ShutdownReport::default()
        };
        let mut api = report.clone();
        api.spans_dropped = 2;
        report.merge(api);
        let line = telemetry_line(endpoint, &report);
        assert!(
            line.starts_with("no collector answered at http://127.0.0.1:14999"),
            "{line}"
        );
        assert!(
            line.contains(
                "7 spans and 6 log records not delivered; 80 metric points not delivered"
            ),
            "{line}"
        );
        assert!(
            line.contains("cargo xtask stack up") && !line.contains('\n'),
            "{line}"
        );

        report.exports_ok = 1;
        assert_eq!(
            telemetry_line(endpoint, &report),
            format!("exported to {endpoint}: {report}")
        );
        assert_eq!(
            telemetry_line(endpoint, &ShutdownReport::default()),
            format!("exported to {endpoint}: 0 spans and 0 log records not delivered")
        );
        let kept = ShutdownReport {
            spooled: telemetry::SignalCounts {
                spans: 12,
                logs: 0,
                metric_points: 3,
            },
            spool_dir: Some("state/telemetry-spool".into()),
            ..ShutdownReport::default()
        };
        assert_eq!(
            telemetry_line(endpoint, &kept),
            format!(
                "exported to {endpoint}: 0 spans and 0 log records not delivered; kept for the \
                 next run in state/telemetry-spool: 12 spans, 0 log records and 3 metric points. \
                 The next run or `invbot telemetry flush` sends what was kept"
            )
        );

        report.exports_ok = 0;
        report.auth_refused = vec![endpoint.to_owned()];
        let line = telemetry_line(endpoint, &report);
        assert!(
            line.starts_with("the collector refused the credentials sent")
                && line.ends_with(&format!("; authentication refused by {endpoint}")),
            "{line}"
        );
    }

    #[test]
    fn links_point_at_the_trace() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            jaeger_link("http://localhost:16686/", id),
            format!("http://localhost:16686/trace/{id}")
        );
        let g = grafana_link("http://localhost:3000", id);
        assert!(g.starts_with("http://localhost:3000/explore?"));
        assert!(g.contains(id) && !g.contains('"') && !g.contains('{'));
    }
}
