//! Every way a request can fail, and how each becomes a JSON error response.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::db::{ApplyError, DbError, InsertError};
use crate::model::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub(crate) enum AppError {
    /// A malformed or invalid request; the message names the field.
    #[error("{0}")]
    InvalidRequest(String),
    #[error("warehouse_id/sku: no item {sku} in warehouse {warehouse_id}")]
    UnknownItem { warehouse_id: String, sku: String },
    #[error("warehouse_id/sku: item {sku} already exists in warehouse {warehouse_id}")]
    ItemExists { warehouse_id: String, sku: String },
    #[error(
        "quantity: cannot take {wanted} from {sku} in {warehouse_id}, only {available} in stock"
    )]
    InsufficientStock {
        warehouse_id: String,
        sku: String,
        available: i64,
        wanted: u64,
    },
    #[error("Idempotency-Key: already used for a transaction with a different payload")]
    IdempotencyKeyReused,
    #[error("injected fault: this request was failed on purpose (--fault-error-rate)")]
    InjectedFault,
    #[error("no route for this path")]
    NoRoute,
    #[error("this path does not take this method")]
    MethodNotAllowed,
    /// The reason goes to the prober, which is an operator rather than a client.
    #[error("database: not ready: {0}")]
    NotReady(String),
    /// Details stay in the log; the client gets a generic message.
    #[error("internal error")]
    Internal(#[source] DbError),
}

impl AppError {
    /// The stable code clients match on (the `error` field), also the `error.type` attribute.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::UnknownItem { .. } => "unknown_item",
            Self::ItemExists { .. } => "item_exists",
            Self::InsufficientStock { .. } => "insufficient_stock",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::InjectedFault => "injected_fault",
            Self::NoRoute => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::NotReady(_) => "not_ready",
            Self::Internal(_) => "internal",
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnknownItem { .. } | Self::NoRoute => StatusCode::NOT_FOUND,
            Self::ItemExists { .. } | Self::InsufficientStock { .. } => StatusCode::CONFLICT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InjectedFault | Self::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn unknown_item(warehouse_id: &str, sku: &str) -> Self {
        Self::UnknownItem {
            warehouse_id: warehouse_id.to_owned(),
            sku: sku.to_owned(),
        }
    }

    pub(crate) fn from_insert(e: InsertError, warehouse_id: &str, sku: &str) -> Self {
        match e {
            InsertError::Exists => Self::ItemExists {
                warehouse_id: warehouse_id.to_owned(),
                sku: sku.to_owned(),
            },
            InsertError::Db(e) => Self::Internal(e),
        }
    }

    pub(crate) fn from_apply(e: ApplyError, warehouse_id: &str, sku: &str, delta: i64) -> Self {
        match e {
            ApplyError::KeyReused => Self::IdempotencyKeyReused,
            ApplyError::UnknownItem => Self::unknown_item(warehouse_id, sku),
            ApplyError::InsufficientStock { available } => Self::InsufficientStock {
                warehouse_id: warehouse_id.to_owned(),
                sku: sku.to_owned(),
                available,
                // Not `-delta`: an adjust by i64::MIN has no negation.
                wanted: delta.unsigned_abs(),
            },
            ApplyError::Overflow => Self::InvalidRequest(format!(
                "quantity: adding {delta} would overflow the stock of {sku} in {warehouse_id}"
            )),
            ApplyError::Db(e) => Self::Internal(e),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code().to_owned(),
            message: self.to_string(),
        };
        let mut response = (self.status(), Json(body)).into_response();
        // The telemetry middleware logs and counts the error from here: once per response.
        response.extensions_mut().insert(Arc::new(self));
        response
    }
}

/// Malformed JSON, a missing or mistyped field, an unknown `kind`: axum's message names the
/// field and the position.
impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        Self::InvalidRequest(rejection.body_text())
    }
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        Self::Internal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adjust_by_the_least_i64_is_refused_without_overflow() {
        let e = AppError::from_apply(
            ApplyError::InsufficientStock { available: 10 },
            "WH-01",
            "SKU-1",
            i64::MIN,
        );
        assert_eq!(
            e.to_string(),
            "quantity: cannot take 9223372036854775808 from SKU-1 in WH-01, only 10 in stock"
        );
    }
}
