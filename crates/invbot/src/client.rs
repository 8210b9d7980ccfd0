//! The inventory API client: one client span per call with W3C traceparent injected, timeouts,
//! and retries with exponential backoff and jitter on 5xx, timeouts and connection errors.

use std::time::{Duration, Instant};

use inventory_api::{ErrorBody, TransactionRequest, TransactionResponse};
use names::{event, metric, span};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundHistogram, Counter, Histogram, Meter};
use opentelemetry_semantic_conventions::attribute::{
    ERROR_TYPE, HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE,
};
use tracing::Instrument;
use tracing::field::Empty;

use crate::input::Transaction;
use crate::untrusted::escape;

/// Characters kept of the API's error code and message: they are shown on the terminal, and
/// the code is also a metric label.
const CODE_CHARS: usize = 64;
const MESSAGE_CHARS: usize = 512;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub timeout: Duration,
}

impl RetryPolicy {
    /// Exponential backoff with "equal jitter": half the step fixed, half random, so retries of
    /// many items spread out instead of hitting a recovering API together.
    fn backoff(&self, retry: u32) -> Duration {
        let step = self
            .base_delay
            .saturating_mul(1 << retry.saturating_sub(1).min(16))
            .min(self.max_delay);
        let half = step / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// Why a call failed; `kind()` is the low-cardinality `error.type` used in metrics. Text from
/// the API or the transport is escaped when the error is made, so it prints safely anywhere.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("HTTP {status} {code}: {message}")]
    Status {
        status: u16,
        code: String,
        message: String,
    },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the API: {0}")]
    Connect(String),
}

impl CallError {
    pub fn kind(&self) -> String {
        match self {
            Self::Status { code, .. } => code.clone(),
            Self::Timeout(_) => "timeout".into(),
            Self::Connect(_) => "connect".into(),
        }
    }

    fn retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status >= 500,
            Self::Timeout(_) | Self::Connect(_) => true,
        }
    }

    fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What applying one transaction came to, after retries.
#[derive(Debug)]
pub struct CallOutcome {
    pub result: Result<TransactionResponse, CallError>,
    pub attempts: u32,
}

#[derive(Debug, Clone)]
struct ClientMetrics {
    duration: Histogram<f64>,
    /// `duration` for the calls that succeeded (every call, nearly), bound up front: the SDK's
    /// lookup of an attribute set costs several times the measurement.
    succeeded: BoundHistogram<f64>,
    retries: Counter<u64>,
    errors: Counter<u64>,
}

/// The status code label of a call that succeeded.
const SUCCEEDED: &str = "2xx";

/// A call's duration attributes, `error.type` aside.
fn call_attributes(status: String) -> Vec<KeyValue> {
    vec![
        KeyValue::new(HTTP_REQUEST_METHOD, "POST"),
        KeyValue::new(HTTP_ROUTE, span::TRANSACTIONS_ROUTE),
        KeyValue::new(HTTP_RESPONSE_STATUS_CODE, status),
    ]
}

#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    transactions_url: String,
    server_address: String,
    policy: RetryPolicy,
    metrics: ClientMetrics,
}

impl ApiClient {
    pub fn new(base_url: &str, policy: RetryPolicy, meter: &Meter) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder().timeout(policy.timeout).build()?;
        let base = base_url.trim_end_matches('/');
        let duration = meter
            .f64_histogram(metric::HTTP_CLIENT_DURATION.name)
            .with_unit(metric::HTTP_CLIENT_DURATION.unit)
            .with_description("Duration of calls to the inventory API, per attempt")
            .build();
        Ok(Self {
            http,
            transactions_url: format!("{base}{}", span::TRANSACTIONS_ROUTE),
            server_address: base.split("://").nth(1).unwrap_or(base).to_owned(),
            policy,
            metrics: ClientMetrics {
                succeeded: duration.bind(&call_attributes(SUCCEEDED.to_owned())),
                duration,
                retries: meter
                    .u64_counter(metric::RETRIES.name)
                    .with_unit(metric::RETRIES.unit)
                    .with_description("Retried API calls")
                    .build(),
                errors: meter
                    .u64_counter(metric::ERRORS.name)
                    .with_unit(metric::ERRORS.unit)
                    .with_description("Failed API call attempts, by error type")
                    .build(),
            },
        })
    }

    /// Applies `txn` under `idempotency_key`, retrying what may succeed on a later attempt.
    /// Runs inside the caller's item span.
    pub async fn apply(&self, txn: &Transaction, idempotency_key: &str) -> CallOutcome {
        let body = TransactionRequest {
            warehouse_id: txn.warehouse_id.clone(),
            sku: txn.sku.clone(),
            kind: txn.operation,
            quantity: txn.quantity,
        };
        let mut attempt = 1;
        loop {
            let result = if attempt == 1 {
                self.call(&body, idempotency_key, attempt).await
            } else {
                let backoff = self.policy.backoff(attempt - 1);
                self.metrics.retries.add(1, &[]);
                let retry = tracing::info_span!(
                    span::RETRY,
                    attempt,
                    backoff_ms = backoff.as_millis() as u64
                );
                async {
                    tokio::time::sleep(backoff).await;
                    self.call(&body, idempotency_key, attempt).await
                }
                .instrument(retry)
                .await
            };
            match result {
                Ok(applied) => {
                    if attempt > 1 {
                        tracing::info!(
                            event = event::RETRY_SUCCESS,
                            warehouse_id = txn.warehouse_id.as_str(),
                            sku = txn.sku.as_str(),
                            attempt,
                            "succeeded after retrying"
                        );
                    }
                    return CallOutcome {
                        result: Ok(applied),
                        attempts: attempt,
                    };
                }
                Err(e) if e.retryable() && attempt < self.policy.max_attempts => attempt += 1,
                Err(e) => {
                    return CallOutcome {
                        result: Err(e),
                        attempts: attempt,
                    };
                }
            }
        }
    }

    async fn call(
        &self,
        body: &TransactionRequest,
        key: &str,
        attempt: u32,
    ) -> Result<TransactionResponse, CallError> {
        let call = tracing::info_span!(
            span::API_CALL,
            otel.name = span::POST_TRANSACTIONS,
            otel.kind = "client",
            otel.status_code = Empty,
            http.request.method = "POST",
            url.full = self.transactions_url.as_str(),
            server.address = self.server_address.as_str(),
            http.response.status_code = Empty,
            attempt,
        );
        let started = Instant::now();
        let result = async {
            let mut request = self
                .http
                .post(&self.transactions_url)
                .header("idempotency-key", key)
                .json(body)
                .build()
                .map_err(|e| self.transport_error(&e))?;
            // Into the request's own headers: no map of its own to merge.
            telemetry::inject_context(&call, request.headers_mut());
            let response = self
                .http
                .execute(request)
                .await
                .map_err(|e| self.transport_error(&e))?;
            let status = response.status().as_u16();
            call.record("http.response.status_code", status);
            if response.status().is_success() {
                return response
                    .json::<TransactionResponse>()
                    .await
                    .map_err(|e| self.transport_error(&e));
            }
            let (code, message) = match response.json::<ErrorBody>().await {
                Ok(b) => (
                    escape(b.error.as_bytes(), CODE_CHARS),
                    escape(b.message.as_bytes(), MESSAGE_CHARS),
                ),
                Err(_) => (format!("http_{status}"), "no error body".to_owned()),
            };
            Err(CallError::Status {
                status,
                code,
                message,
            })
        }
        .instrument(call.clone())
        .await;

        let seconds = started.elapsed().as_secs_f64();
        let Err(e) = &result else {
            self.metrics.succeeded.record(seconds);
            return result;
        };
        let error_type = e.kind();
        call.record("otel.status_code", "ERROR");
        call.in_scope(|| {
            tracing::warn!(
                event = event::API_ERROR,
                warehouse_id = body.warehouse_id,
                sku = body.sku,
                attempt,
                error.type = %error_type,
                error = %e,
                "inventory API call failed"
            );
        });
        self.metrics
            .errors
            .add(1, &[KeyValue::new(ERROR_TYPE, error_type.clone())]);
        let status = e
            .status()
            .map_or_else(|| "none".to_owned(), |s| s.to_string());
        let mut attrs = call_attributes(status);
        attrs.push(KeyValue::new(ERROR_TYPE, error_type));
        self.metrics.duration.record(seconds, &attrs);
        result
    }

    fn transport_error(&self, e: &reqwest::Error) -> CallError {
        if e.is_timeout() {
            CallError::Timeout(self.policy.timeout)
        } else {
            CallError::Connect(escape(names::error_chain(e).as_bytes(), MESSAGE_CHARS))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_jitter_and_cap() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            timeout: Duration::from_secs(1),
        };
        for _ in 0..100 {
            let first = p.backoff(1);
            assert!((50..=100).contains(&first.as_millis()), "{first:?}");
            let second = p.backoff(2);
            assert!((100..=200).contains(&second.as_millis()), "{second:?}");
            let capped = p.backoff(10);
            assert!((175..=350).contains(&capped.as_millis()), "{capped:?}");
        }
    }

    #[test]
    fn only_server_errors_and_transport_failures_are_retried() {
        let status = |s: u16| CallError::Status {
            status: s,
            code: "x".into(),
            message: String::new(),
        };
        assert!(status(503).retryable());
        assert!(!status(404).retryable());
        assert!(!status(409).retryable());
        assert!(CallError::Timeout(Duration::from_secs(1)).retryable());
        assert!(CallError::Connect("refused".into()).retryable());
    }
}
