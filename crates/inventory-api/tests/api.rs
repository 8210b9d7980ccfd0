//! The HTTP contract, through the router with `oneshot`.

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{Method, StatusCode};
use common::{Reply, app, create, item, post_json, send, stock, transaction};
use inventory_api::{
    AppState, DEMO_QUANTITY, DEMO_SKUS, DEMO_WAREHOUSES, Db, ErrorBody, ErrorRate, FaultConfig,
    Item, Kind, TransactionResponse, demo_sku, demo_warehouse,
};
use tempfile::TempDir;

fn assert_error(reply: &Reply, status: StatusCode, code: &str, mentions: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    let body: ErrorBody = reply.json();
    assert_eq!(body.error, code, "{body:?}");
    assert!(
        body.message.contains(mentions),
        "the message should mention {mentions:?}: {body:?}"
    );
}

#[tokio::test]
async fn items_are_created_once_and_read_back() {
    let (_dir, _db, app) = app();
    let widget = item("WH-01", "SKU-00001", 10);

    let reply = post_json(&app, "/items", None, &widget).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    assert_eq!(reply.json::<Item>(), widget);

    let again = post_json(&app, "/items", None, &widget).await;
    assert_error(&again, StatusCode::CONFLICT, "item_exists", "SKU-00001");

    let read = send(&app, Method::GET, "/items/WH-01/SKU-00001", None, None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.json::<Item>(), widget);

    let missing = send(&app, Method::GET, "/items/WH-01/SKU-99999", None, None).await;
    assert_error(&missing, StatusCode::NOT_FOUND, "unknown_item", "SKU-99999");
}

#[tokio::test]
async fn invalid_items_are_refused_naming_the_field() {
    let (_dir, _db, app) = app();
    let long = "W".repeat(65);
    let cases = [
        (item("", "SKU-1", 1), "warehouse_id"),
        (item(&long, "SKU-1", 1), "warehouse_id"),
        (item("WH-01", "", 1), "sku"),
        (item("WH-01", "SKU-1", -1), "quantity"),
        (
            Item {
                name: " ".into(),
                ..item("WH-01", "SKU-1", 1)
            },
            "name",
        ),
        (
            Item {
                unit_price: -0.5,
                ..item("WH-01", "SKU-1", 1)
            },
            "unit_price",
        ),
    ];
    for (bad, field) in cases {
        let reply = post_json(&app, "/items", None, &bad).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request", field);
    }
    let missing_field = r#"{"warehouse_id":"WH-01","sku":"SKU-1","quantity":1,"unit_price":1}"#;
    let reply = send(
        &app,
        Method::POST,
        "/items",
        None,
        Some(missing_field.into()),
    )
    .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request", "name");
    let long_id = send(
        &app,
        Method::GET,
        &format!("/items/WH-01/{long}"),
        None,
        None,
    )
    .await;
    assert_error(&long_id, StatusCode::BAD_REQUEST, "invalid_request", "sku");
}

/// Posts a transaction on the test item WH-01/SKU-00001.
async fn post_tx(app: &Router, key: &str, kind: Kind, quantity: i64) -> Reply {
    let tx = transaction("WH-01", "SKU-00001", kind, quantity);
    post_json(app, "/transactions", Some(key), &tx).await
}

/// A second router over the same database, with fault injection.
fn with_faults(db: Db, error_rate: f64, latency: Duration) -> Router {
    let faults = FaultConfig {
        error_rate: ErrorRate::new(error_rate).expect("a valid rate"),
        latency,
    };
    inventory_api::router(AppState::new(db, faults))
}

async fn app_with_stock(quantity: i64) -> (TempDir, Db, Router) {
    let (dir, db, app) = app();
    create(&app, &item("WH-01", "SKU-00001", quantity)).await;
    (dir, db, app)
}

#[tokio::test]
async fn a_transaction_applies_once_and_replays_with_the_same_body() {
    let (_dir, _db, app) = app_with_stock(10).await;

    let first = post_tx(&app, "key-1", Kind::Receive, 5).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text());
    let applied: TransactionResponse = first.json();
    assert_eq!(
        (applied.quantity, applied.quantity_after, applied.replayed),
        (5, 15, false)
    );
    assert_eq!(applied.kind, Kind::Receive);
    assert!(applied.transaction_id > 0);

    let retry = post_tx(&app, "key-1", Kind::Receive, 5).await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.text());
    assert_eq!(
        retry.json::<TransactionResponse>(),
        TransactionResponse {
            replayed: true,
            ..applied.clone()
        }
    );
    assert_eq!(stock(&app, "WH-01", "SKU-00001").await, 15);

    // Ship and adjust move the stock the other way and by a signed delta.
    let shipped: TransactionResponse = post_tx(&app, "key-2", Kind::Ship, 4).await.json();
    assert_eq!(shipped.quantity_after, 11);
    let adjusted: TransactionResponse = post_tx(&app, "key-3", Kind::Adjust, -3).await.json();
    assert_eq!((adjusted.quantity, adjusted.quantity_after), (-3, 8));
    assert!(adjusted.transaction_id > shipped.transaction_id);
    assert_eq!(stock(&app, "WH-01", "SKU-00001").await, 8);
}

#[tokio::test]
async fn a_key_reused_for_another_payload_is_refused() {
    let (_dir, _db, app) = app_with_stock(10).await;
    let first = post_tx(&app, "key-1", Kind::Ship, 2).await;
    assert_eq!(first.status, StatusCode::CREATED);

    let reply = post_tx(&app, "key-1", Kind::Ship, 3).await;
    let reused = StatusCode::UNPROCESSABLE_ENTITY;
    assert_error(&reply, reused, "idempotency_key_reused", "Idempotency-Key");
    assert_eq!(stock(&app, "WH-01", "SKU-00001").await, 8);
}

#[tokio::test]
async fn unknown_items_and_short_stock_are_refused_and_stock_never_goes_negative() {
    let (_dir, _db, app) = app_with_stock(10).await;

    let unknown = transaction("WH-01", "SKU-00002", Kind::Receive, 1);
    let reply = post_json(&app, "/transactions", Some("k-unknown"), &unknown).await;
    assert_error(&reply, StatusCode::NOT_FOUND, "unknown_item", "SKU-00002");

    let short = [("k-ship", Kind::Ship, 11), ("k-adjust", Kind::Adjust, -11)];
    for (key, kind, quantity) in short {
        let reply = post_tx(&app, key, kind, quantity).await;
        let conflict = StatusCode::CONFLICT;
        assert_error(&reply, conflict, "insufficient_stock", "only 10 in stock");
        assert_eq!(stock(&app, "WH-01", "SKU-00001").await, 10);
    }

    // Down to exactly zero is fine; one more is not.
    let all: TransactionResponse = post_tx(&app, "k-all", Kind::Ship, 10).await.json();
    assert_eq!(all.quantity_after, 0);
    let reply = post_tx(&app, "k-one", Kind::Ship, 1).await;
    assert_error(
        &reply,
        StatusCode::CONFLICT,
        "insufficient_stock",
        "quantity",
    );
    assert_eq!(stock(&app, "WH-01", "SKU-00001").await, 0);

    // A refused transaction stores nothing: its key stays free.
    let reply = post_tx(&app, "k-one", Kind::Receive, 1).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
}

#[tokio::test]
async fn invalid_transactions_are_refused_naming_the_field() {
    let (_dir, _db, app) = app_with_stock(10).await;
    let valid = r#"{"warehouse_id":"WH-01","sku":"SKU-00001","kind":"receive","quantity":1}"#;
    let long_sku = "S".repeat(65);
    let with = |field: &str, value: &str| valid.replace(field, value);
    let cases: Vec<(String, &str)> = vec![
        (with(r#""kind":"receive""#, r#""kind":"teleport""#), "kind"),
        (with(r#""quantity":1"#, r#""quantity":0"#), "quantity"),
        (with(r#""quantity":1"#, r#""quantity":1.5"#), "quantity"),
        (
            with(
                r#""kind":"receive","quantity":1"#,
                r#""kind":"ship","quantity":-1"#,
            ),
            "quantity",
        ),
        (
            with(
                r#""kind":"receive","quantity":1"#,
                r#""kind":"adjust","quantity":0"#,
            ),
            "quantity",
        ),
        (with(r#""sku":"SKU-00001""#, r#""sku":"""#), "sku"),
        (with("SKU-00001", &long_sku), "sku"),
        (with(r#""warehouse_id":"WH-01","#, ""), "warehouse_id"),
        ("{not json".into(), "JSON"),
    ];
    for (body, field) in cases {
        let reply = send(
            &app,
            Method::POST,
            "/transactions",
            Some("k"),
            Some(body.clone()),
        )
        .await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request", field);
    }

    let long_key = "k".repeat(129);
    for key in [None, Some(""), Some(long_key.as_str())] {
        let reply = send(&app, Method::POST, "/transactions", key, Some(valid.into())).await;
        assert_error(
            &reply,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Idempotency-Key",
        );
    }
    let max_key = "k".repeat(128);
    let reply = send(
        &app,
        Method::POST,
        "/transactions",
        Some(&max_key),
        Some(valid.into()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    assert_eq!(stock(&app, "WH-01", "SKU-00001").await, 11);
}

#[tokio::test]
async fn injected_faults_fail_before_the_database() {
    let (_dir, db, healthy) = app_with_stock(10).await;
    let faulty = with_faults(db, 1.0, Duration::ZERO);
    for _ in 0..5 {
        let reply = post_tx(&faulty, "k-fault", Kind::Ship, 3).await;
        assert_error(
            &reply,
            StatusCode::SERVICE_UNAVAILABLE,
            "injected_fault",
            "on purpose",
        );
    }
    assert_eq!(stock(&healthy, "WH-01", "SKU-00001").await, 10);
    // Nothing was stored under the key either: the first real attempt applies.
    let reply = post_tx(&healthy, "k-fault", Kind::Ship, 3).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
}

#[tokio::test]
async fn an_error_rate_of_zero_never_fires_and_latency_is_added() {
    let (_dir, db, healthy) = app_with_stock(0).await;
    let latency = Duration::from_millis(30);
    let slow = with_faults(db, 0.0, latency);
    let start = Instant::now();
    for i in 0..20 {
        let reply = post_tx(&slow, &format!("k-{i}"), Kind::Receive, 1).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    }
    assert!(start.elapsed() >= latency * 20, "{:?}", start.elapsed());
    assert_eq!(stock(&healthy, "WH-01", "SKU-00001").await, 20);
}

#[tokio::test]
async fn probes_and_unknown_routes() {
    let (_dir, _db, app) = app();
    let health = send(&app, Method::GET, "/healthz", None, None).await;
    assert_eq!(
        (health.status, health.text().as_str()),
        (StatusCode::OK, "ok")
    );
    let ready = send(&app, Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);

    let nowhere = send(&app, Method::GET, "/nowhere", None, None).await;
    assert_error(&nowhere, StatusCode::NOT_FOUND, "not_found", "route");
    let wrong_method = send(&app, Method::DELETE, "/transactions", None, None).await;
    assert_error(
        &wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method",
    );
}

#[tokio::test]
async fn the_demo_catalog_is_seeded_once_with_the_published_ids() {
    let (_dir, db, app) = app();
    assert_eq!(
        db.seed_demo_catalog().await.expect("seeding works"),
        DEMO_WAREHOUSES * DEMO_SKUS
    );
    assert_eq!(db.seed_demo_catalog().await.expect("seeding works"), 0);
    assert_eq!(
        (demo_warehouse(1), demo_sku(1)),
        ("WH-01".into(), "SKU-00001".into())
    );
    let last = send(
        &app,
        Method::GET,
        &format!(
            "/items/{}/{}",
            demo_warehouse(DEMO_WAREHOUSES),
            demo_sku(DEMO_SKUS)
        ),
        None,
        None,
    )
    .await;
    let item: Item = last.json();
    assert_eq!(
        (
            item.warehouse_id.as_str(),
            item.sku.as_str(),
            item.name.as_str()
        ),
        ("WH-50", "SKU-00200", "Item 00200")
    );
    assert_eq!(item.quantity, DEMO_QUANTITY);
    assert!(item.unit_price > 0.0 && item.unit_price < 100.0);
    let beyond = send(&app, Method::GET, "/items/WH-51/SKU-00001", None, None).await;
    assert_eq!(beyond.status, StatusCode::NOT_FOUND);
}
