//! Per-request telemetry: a server span continuing the caller's trace, the RED metrics, and the
//! one log line per error response.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use names::{metric, scope, span};
use opentelemetry::metrics::{Counter, Histogram};
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
    errors: Counter<u64>,
}

impl HttpMetrics {
    pub(crate) fn new() -> Self {
        let meter = opentelemetry::global::meter(scope::API);
        Self {
            duration: meter
                .f64_histogram(metric::HTTP_SERVER_DURATION.name)
                .with_unit(metric::HTTP_SERVER_DURATION.unit)
                .with_description("Duration of HTTP requests handled")
                .build(),
            errors: meter
                .u64_counter(metric::HTTP_SERVER_ERRORS.name)
                .with_unit(metric::HTTP_SERVER_ERRORS.unit)
                .with_description("HTTP responses with status 400 or above, by error.type")
                .build(),
        }
    }
}

pub(crate) async fn track(
    State(metrics): State<Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    // The route template, never the raw URI: ids in paths would explode metric cardinality.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let span = tracing::info_span!(
        span::HTTP_REQUEST,
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method.as_str(),
        http.route = route.as_str(),
        http.response.status_code = Empty,
        otel.status_code = Empty,
    );
    telemetry::set_parent_from_headers(&span, request.headers());

    let start = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let elapsed = start.elapsed().as_secs_f64();

    let status = response.status();
    span.record(HTTP_RESPONSE_STATUS_CODE, status.as_u16());
    let mut attributes = vec![
        KeyValue::new(HTTP_REQUEST_METHOD, method.to_string()),
        KeyValue::new(HTTP_ROUTE, route),
        KeyValue::new(HTTP_RESPONSE_STATUS_CODE, i64::from(status.as_u16())),
    ];
    metrics.duration.record(elapsed, &attributes);
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
