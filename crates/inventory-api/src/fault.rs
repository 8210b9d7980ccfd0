//! Fault injection for `POST /transactions`, off by default: added latency and a share of
//! requests failed on purpose, so the telemetry has slow calls, errors and retries to show.

use std::str::FromStr;
use std::time::Duration;

use crate::error::AppError;

/// A probability in `0.0..=1.0`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ErrorRate(f64);

#[derive(Debug, thiserror::Error)]
pub enum ErrorRateError {
    #[error("{0:?} is not a number")]
    NotANumber(String),
    #[error("{0} is outside 0..=1 (a share of requests, e.g. 0.05 for 5 %)")]
    OutOfRange(f64),
}

impl ErrorRate {
    pub fn new(rate: f64) -> Result<Self, ErrorRateError> {
        if (0.0..=1.0).contains(&rate) {
            Ok(Self(rate))
        } else {
            Err(ErrorRateError::OutOfRange(rate))
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl FromStr for ErrorRate {
    type Err = ErrorRateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rate = s
            .trim()
            .parse()
            .map_err(|_| ErrorRateError::NotANumber(s.to_owned()))?;
        Self::new(rate)
    }
}

/// What to inject into each `POST /transactions`; the default injects nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultConfig {
    /// The share of requests answered 503 `injected_fault` before they reach the database.
    pub error_rate: ErrorRate,
    /// Added to every request, failed ones included.
    pub latency: Duration,
}

impl FaultConfig {
    /// Sleeps the configured latency, then fails the request with the configured probability.
    pub(crate) async fn inject(&self) -> Result<(), AppError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        // fastrand::f64() is in [0, 1): a rate of 0 never fires and a rate of 1 always does.
        if fastrand::f64() < self.error_rate.get() {
            return Err(AppError::InjectedFault);
        }
        Ok(())
    }
}
