//! Per-request telemetry: a server span continuing the caller's trace, the RED metrics, and the
//! one log line per error response.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use names::{metric, scope, span};
use opentelemetry::metrics::{BoundHistogram, Counter, Histogram};
use opentelemetry::{KeyValue, StringValue};
use opentelemetry_semantic_conventions::attribute::{
    ERROR_TYPE, HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE,
};
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::error::AppError;

/// The HTTP instruments, created once.
#[derive(Debug)]
pub(crate) struct HttpMetrics {
    duration: Histogram<f64>,
    /// `duration` bound to each (method, route, status) seen, so a request looks its series up
    /// instead of the SDK hashing a new attribute set; past [`MAX_BOUND`] series (methods are
    /// the client's to choose), the rest are recorded unbound.
    bound: RwLock<Vec<BoundSeries>>,
    errors: Counter<u64>,
}

#[derive(Debug)]
struct BoundSeries {
    method: Method,
    route: Box<str>,
    status: StatusCode,
    duration: BoundHistogram<f64>,
}

/// The (method, route, status) series bound at most: a few routes, methods and statuses.
const MAX_BOUND: usize = 64;

impl HttpMetrics {
    pub(crate) fn new() -> Self {
        let meter = opentelemetry::global::meter(scope::API);
        Self {
            duration: meter
                .f64_histogram(metric::HTTP_SERVER_DURATION.name)
                .with_unit(metric::HTTP_SERVER_DURATION.unit)
                .with_description("Duration of HTTP requests handled")
                .build(),
            bound: RwLock::new(Vec::new()),
            errors: meter
                .u64_counter(metric::HTTP_SERVER_ERRORS.name)
                .with_unit(metric::HTTP_SERVER_ERRORS.unit)
                .with_description("HTTP responses with status 400 or above, by error.type")
                .build(),
        }
    }

    /// Records one request's duration in its (method, route, status) series.
    fn record(&self, seconds: f64, method: &Method, route: &str, status: StatusCode) {
        let find = |all: &[BoundSeries]| {
            all.iter()
                .find(|s| s.status == status && s.method == method && *s.route == *route)
                .map(|s| s.duration.record(seconds))
                .is_some()
        };
        if find(&self.bound.read().unwrap_or_else(PoisonError::into_inner)) {
            return;
        }
        let mut all = self.bound.write().unwrap_or_else(PoisonError::into_inner);
        if find(&all) {
            return;
        }
        let attributes = attributes(method, route, status);
        if all.len() < MAX_BOUND {
            let duration = self.duration.bind(&attributes);
            duration.record(seconds);
            all.push(BoundSeries {
                method: method.clone(),
                route: route.into(),
                status,
                duration,
            });
        } else {
            self.duration.record(seconds, &attributes);
        }
    }
}

fn attributes(method: &Method, route: &str, status: StatusCode) -> Vec<KeyValue> {
    vec![
        KeyValue::new(HTTP_REQUEST_METHOD, method.to_string()),
        KeyValue::new(HTTP_ROUTE, route.to_owned()),
        KeyValue::new(HTTP_RESPONSE_STATUS_CODE, i64::from(status.as_u16())),
    ]
}

pub(crate) async fn track(
    State(metrics): State<Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    // The route template, never the raw URI: ids in paths would explode metric cardinality.
    // (MatchedPath is an Arc: cloning it keeps the route past the request without a copy.)
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let span = tracing::info_span!(
        span::HTTP_REQUEST,
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method.as_str(),
        http.route = route,
        http.response.status_code = Empty,
        otel.status_code = Empty,
    );
    telemetry::set_parent_from_headers(&span, request.headers());

    let start = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let elapsed = start.elapsed().as_secs_f64();

    let status = response.status();
    span.record(HTTP_RESPONSE_STATUS_CODE, status.as_u16());
    metrics.record(elapsed, &method, route, status);
    if status.is_client_error() || status.is_server_error() {
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
        let error = response.extensions().get::<Arc<AppError>>();
        span.in_scope(|| log_error(status, error.map(|e| &**e)));
        let error_type: StringValue = match error {
            Some(e) => e.code().into(),
            None => status.as_str().to_owned().into(),
        };
        let mut attributes = attributes(&method, route, status);
        attributes.push(KeyValue::new(ERROR_TYPE, error_type));
        metrics.errors.add(1, &attributes);
    }
    response
}

fn log_error(status: StatusCode, error: Option<&AppError>) {
    let status_code = status.as_u16();
    // Responses axum makes itself (e.g. an undecodable path) carry no AppError.
    let Some(error) = error else {
        tracing::warn!(http.response.status_code = status_code, "request failed");
        return;
    };
    let message = names::error_chain(error);
    let code = error.code();
    if status.is_server_error() {
        tracing::error!(error.type = code, http.response.status_code = status_code, "{message}");
    } else {
        tracing::warn!(error.type = code, http.response.status_code = status_code, "{message}");
    }
}
