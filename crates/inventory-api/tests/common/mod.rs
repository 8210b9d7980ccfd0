//! Helpers shared by the integration tests.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses its own subset"
)]

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use inventory_api::{AppState, Db, FaultConfig, Item, TransactionRequest};
use serde::de::DeserializeOwned;
use tempfile::TempDir;
use tower::ServiceExt as _;

/// A database in its own temporary directory (removed when the TempDir drops).
pub fn db() -> (TempDir, Db) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = Db::open(&dir.path().join("inventory.db")).expect("the database opens");
    (dir, db)
}

/// The API over a fresh database, without faults.
pub fn app() -> (TempDir, Db, Router) {
    let (dir, db) = db();
    let router = inventory_api::router(AppState::new(db.clone(), FaultConfig::default()));
    (dir, db, router)
}

pub fn item(warehouse_id: &str, sku: &str, quantity: i64) -> Item {
    Item {
        warehouse_id: warehouse_id.into(),
        sku: sku.into(),
        name: format!("Widget {sku}"),
        quantity,
        unit_price: 2.5,
    }
}

pub fn transaction(
    warehouse_id: &str,
    sku: &str,
    kind: inventory_api::Kind,
    quantity: i64,
) -> TransactionRequest {
    TransactionRequest {
        warehouse_id: warehouse_id.into(),
        sku: sku.into(),
        kind,
        quantity,
    }
}

/// A response's status and raw body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as `T`; panics with the body text when it is not.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{e}: {} (status {})",
                String::from_utf8_lossy(&self.body),
                self.status
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request through the router. `body` is sent as is, with a JSON content type.
pub async fn send(
    router: &Router,
    method: Method,
    uri: &str,
    idempotency_key: Option<&str>,
    body: Option<String>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(key) = idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(Body::from(body)),
        None => request.body(Body::empty()),
    }
    .expect("a valid request");
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("the body is readable")
        .to_vec();
    Reply { status, body }
}

pub async fn post_json(
    router: &Router,
    uri: &str,
    key: Option<&str>,
    body: &impl serde::Serialize,
) -> Reply {
    let body = serde_json::to_string(body).expect("serializable");
    send(router, Method::POST, uri, key, Some(body)).await
}

/// Creates an item and checks that it was created.
pub async fn create(router: &Router, item: &Item) {
    let reply = post_json(router, "/items", None, item).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
}

/// The current stock of an item.
pub async fn stock(router: &Router, warehouse_id: &str, sku: &str) -> i64 {
    let reply = send(
        router,
        Method::GET,
        &format!("/items/{warehouse_id}/{sku}"),
        None,
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json::<Item>().quantity
}
