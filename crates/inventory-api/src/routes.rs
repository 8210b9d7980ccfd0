//! The handlers and their validation.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};

use crate::AppState;
use crate::error::AppError;
use crate::model::{Item, Kind, TransactionRequest, TransactionResponse};

const MAX_ID_CHARS: usize = 64;
const MAX_NAME_CHARS: usize = 256;
const MAX_KEY_CHARS: usize = 128;
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// How error messages name the header.
const KEY_FIELD: &str = "Idempotency-Key header";

pub(crate) async fn create_item(
    State(state): State<AppState>,
    body: Result<Json<Item>, JsonRejection>,
) -> Result<(StatusCode, Json<Item>), AppError> {
    let Json(item) = body?;
    check_id("warehouse_id", &item.warehouse_id)?;
    check_id("sku", &item.sku)?;
    let name_chars = item.name.chars().count();
    if item.name.trim().is_empty() || name_chars > MAX_NAME_CHARS {
        return Err(invalid(format!(
            "name: must be 1 to {MAX_NAME_CHARS} characters and not blank, got {name_chars}"
        )));
    }
    if item.quantity < 0 {
        return Err(invalid(format!(
            "quantity: must not be negative, got {}",
            item.quantity
        )));
    }
    if item.unit_price < 0.0 {
        return Err(invalid(format!(
            "unit_price: must not be negative, got {}",
            item.unit_price
        )));
    }
    state
        .db
        .insert_item(item.clone())
        .await
        .map_err(|e| AppError::from_insert(e, &item.warehouse_id, &item.sku))?;
    Ok((StatusCode::CREATED, Json(item)))
}

pub(crate) async fn get_item(
    State(state): State<AppState>,
    Path((warehouse_id, sku)): Path<(String, String)>,
) -> Result<Json<Item>, AppError> {
    check_id("warehouse_id", &warehouse_id)?;
    check_id("sku", &sku)?;
    state
        .db
        .get_item(warehouse_id.clone(), sku.clone())
        .await?
        .map(Json)
        .ok_or_else(|| AppError::unknown_item(&warehouse_id, &sku))
}

pub(crate) async fn create_transaction(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<TransactionRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<TransactionResponse>), AppError> {
    state.faults.inject().await?;
    let key = idempotency_key(&headers)?;
    let Json(request) = body?;
    check_id("warehouse_id", &request.warehouse_id)?;
    check_id("sku", &request.sku)?;
    let delta = delta(request.kind, request.quantity)?;

    let applied = state
        .db
        .apply(key, request.clone(), delta)
        .await
        .map_err(|e| AppError::from_apply(e, &request.warehouse_id, &request.sku, delta))?;
    tracing::info!(
        event = names::event::TRANSACTION_APPLIED,
        warehouse_id = applied.warehouse_id.as_str(),
        sku = applied.sku.as_str(),
        kind = applied.kind.as_str(),
        quantity = applied.quantity,
        quantity_after = applied.quantity_after,
        replayed = applied.replayed,
        "transaction applied"
    );
    let status = if applied.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(applied)))
}

pub(crate) async fn readyz(State(state): State<AppState>) -> Result<&'static str, AppError> {
    state
        .db
        .ping()
        .await
        .map_err(|e| AppError::NotReady(names::error_chain(&e)))?;
    Ok("ready")
}

fn invalid(message: String) -> AppError {
    AppError::InvalidRequest(message)
}

fn check_id(field: &str, value: &str) -> Result<(), AppError> {
    check_chars(field, value, MAX_ID_CHARS)
}

fn check_chars(what: &str, value: &str, max: usize) -> Result<(), AppError> {
    let chars = value.chars().count();
    if chars == 0 || chars > max {
        return Err(invalid(format!(
            "{what}: must be 1 to {max} characters, got {chars}"
        )));
    }
    Ok(())
}

fn idempotency_key(headers: &HeaderMap) -> Result<String, AppError> {
    let value = headers
        .get(IDEMPOTENCY_KEY)
        .ok_or_else(|| invalid(format!("{KEY_FIELD}: required")))?;
    let key = value
        .to_str()
        .map_err(|_| invalid(format!("{KEY_FIELD}: must be printable ASCII")))?;
    check_chars(KEY_FIELD, key, MAX_KEY_CHARS)?;
    Ok(key.to_owned())
}

/// The signed change a transaction makes to the stock.
fn delta(kind: Kind, quantity: i64) -> Result<i64, AppError> {
    match kind {
        Kind::Receive if quantity > 0 => Ok(quantity),
        Kind::Ship if quantity > 0 => Ok(-quantity),
        Kind::Adjust if quantity != 0 => Ok(quantity),
        Kind::Receive | Kind::Ship => Err(invalid(format!(
            "quantity: must be greater than 0 for kind {}, got {quantity}",
            kind.as_str()
        ))),
        Kind::Adjust => Err(invalid(
            "quantity: must not be 0 for kind adjust".to_owned(),
        )),
    }
}
