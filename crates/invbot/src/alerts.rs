//! Threshold alerts as structured log events (seed 001), named like the Prometheus rules so an
//! operator sees one vocabulary in the log store and in Alertmanager:
//! a batch over 2 s; an error rate over 5 % in the last 100 transactions; process CPU over 85 %
//! sustained for 5 minutes. Each fires once when crossed and resolves when it clears.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use names::{alert, attr, event};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use serde::Serialize;

#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub batch_seconds: f64,
    pub error_rate: f64,
    pub error_window: usize,
    pub cpu_utilization: f64,
    pub cpu_for: Duration,
}

/// One alert event as the summary lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertRecord {
    pub alertname: &'static str,
    pub state: &'static str,
    pub value: f64,
    pub threshold: f64,
}

/// Emits alert events and counts them; the caller's current span (a batch or an item) gives the
/// event its trace_id.
#[derive(Debug)]
pub struct Alerts {
    thresholds: Thresholds,
    counter: Counter<u64>,
    window: VecDeque<bool>,
    window_errors: usize,
    error_rate_firing: bool,
    cpu_high_since: Option<Instant>,
    cpu_firing: bool,
    pub fired: Vec<AlertRecord>,
}

impl Alerts {
    pub fn new(thresholds: Thresholds, counter: Counter<u64>) -> Self {
        Self {
            thresholds,
            counter,
            window: VecDeque::with_capacity(thresholds.error_window),
            window_errors: 0,
            error_rate_firing: false,
            cpu_high_since: None,
            cpu_firing: false,
            fired: Vec::new(),
        }
    }

    pub fn batch_finished(&mut self, batch_id: usize, seconds: f64) {
        if seconds > self.thresholds.batch_seconds {
            self.emit(
                alert::BATCH_SLOW,
                "firing",
                seconds,
                self.thresholds.batch_seconds,
                &format!("batch {batch_id} took {seconds:.2} s"),
            );
        }
    }

    /// Records one transaction outcome in the sliding window (only once it is full does a rate
    /// mean something).
    pub fn transaction_finished(&mut self, failed: bool) {
        self.window.push_back(failed);
        self.window_errors += usize::from(failed);
        if self.window.len() > self.thresholds.error_window {
            let old = self.window.pop_front().unwrap_or(false);
            self.window_errors -= usize::from(old);
        }
        if self.window.len() < self.thresholds.error_window {
            return;
        }
        let rate = self.window_errors as f64 / self.window.len() as f64;
        let over = rate > self.thresholds.error_rate;
        if over != self.error_rate_firing {
            self.error_rate_firing = over;
            let state = if over { "firing" } else { "resolved" };
            let message = format!(
                "{} of the last {} transactions failed",
                self.window_errors,
                self.window.len()
            );
            self.emit(
                alert::ERROR_RATE_HIGH,
                state,
                rate,
                self.thresholds.error_rate,
                &message,
            );
        }
    }

    /// Feeds one CPU sample (share of all CPUs, 0..=1).
    pub fn cpu_sample(&mut self, utilization: f64, now: Instant) {
        if utilization <= self.thresholds.cpu_utilization {
            self.cpu_high_since = None;
            if std::mem::take(&mut self.cpu_firing) {
                self.emit(
                    alert::CPU_HIGH,
                    "resolved",
                    utilization,
                    self.thresholds.cpu_utilization,
                    "process CPU back under the threshold",
                );
            }
            return;
        }
        let since = *self.cpu_high_since.get_or_insert(now);
        if !self.cpu_firing && now.duration_since(since) >= self.thresholds.cpu_for {
            self.cpu_firing = true;
            let message = format!(
                "process CPU over the threshold for {:?}",
                self.thresholds.cpu_for
            );
            self.emit(
                alert::CPU_HIGH,
                "firing",
                utilization,
                self.thresholds.cpu_utilization,
                &message,
            );
        }
    }

    fn emit(
        &mut self,
        alertname: &'static str,
        state: &'static str,
        value: f64,
        threshold: f64,
        message: &str,
    ) {
        let severity = "warning";
        tracing::warn!(
            event = event::ALERT,
            alertname,
            alertstate = state,
            severity,
            value,
            threshold,
            "{message}"
        );
        if state == "firing" {
            self.counter.add(
                1,
                &[
                    KeyValue::new(attr::ALERTNAME, alertname),
                    KeyValue::new("severity", severity),
                ],
            );
        }
        self.fired.push(AlertRecord {
            alertname,
            state,
            value,
            threshold,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alerts() -> Alerts {
        let meter = opentelemetry::metrics::MeterProvider::meter(
            &opentelemetry::metrics::noop::NoopMeterProvider::new(),
            "test",
        );
        Alerts::new(
            Thresholds {
                batch_seconds: 2.0,
                error_rate: 0.05,
                error_window: 100,
                cpu_utilization: 0.85,
                cpu_for: Duration::from_secs(300),
            },
            meter.u64_counter("alerts").build(),
        )
    }

    #[test]
    fn slow_batches_fire() {
        let mut a = alerts();
        a.batch_finished(1, 1.9);
        assert!(a.fired.is_empty());
        a.batch_finished(2, 2.1);
        assert_eq!(a.fired[0].alertname, alert::BATCH_SLOW);
    }

    #[test]
    fn error_rate_fires_once_over_a_full_window_and_resolves() {
        let mut a = alerts();
        for i in 0..100 {
            a.transaction_finished(i % 10 == 0); // 10 %, but only judged once the window is full
        }
        assert_eq!(a.fired.len(), 1);
        assert_eq!(
            (a.fired[0].alertname, a.fired[0].state),
            (alert::ERROR_RATE_HIGH, "firing")
        );
        for _ in 0..50 {
            a.transaction_finished(true);
        }
        assert_eq!(a.fired.len(), 1, "no repeat while firing");
        for _ in 0..100 {
            a.transaction_finished(false);
        }
        assert_eq!(a.fired.last().map(|f| f.state), Some("resolved"));
        assert_eq!(a.fired.len(), 2);
    }

    #[test]
    fn error_rate_at_the_threshold_does_not_fire() {
        let mut a = alerts();
        for i in 0..200 {
            a.transaction_finished(i % 20 == 0); // exactly 5 %
        }
        assert!(a.fired.is_empty());
    }

    #[test]
    fn cpu_must_stay_high_for_the_whole_period() {
        let mut a = alerts();
        let t0 = Instant::now();
        a.cpu_sample(0.9, t0);
        a.cpu_sample(0.9, t0 + Duration::from_secs(200));
        a.cpu_sample(0.5, t0 + Duration::from_secs(250)); // dip resets the clock
        a.cpu_sample(0.9, t0 + Duration::from_secs(260));
        a.cpu_sample(0.9, t0 + Duration::from_secs(500));
        assert!(a.fired.is_empty());
        a.cpu_sample(0.95, t0 + Duration::from_secs(560));
        assert_eq!(
            (a.fired[0].alertname, a.fired[0].state),
            (alert::CPU_HIGH, "firing")
        );
        a.cpu_sample(0.2, t0 + Duration::from_secs(600));
        assert_eq!(a.fired[1].state, "resolved");
    }
}
