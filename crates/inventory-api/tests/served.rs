//! A served instance on 127.0.0.1:0 under concurrent requests.

mod common;

use std::collections::HashMap;

use inventory_api::{AppState, FaultConfig, Item, Kind, Server, TransactionResponse};
use reqwest::StatusCode;
use tokio::net::TcpListener;

async fn spawn_app() -> (tempfile::TempDir, Server) {
    let (dir, db) = common::db();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let server = inventory_api::spawn(listener, AppState::new(db, FaultConfig::default()))
        .expect("the server starts");
    (dir, server)
}

async fn post_transaction(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    kind: Kind,
    quantity: i64,
) -> (StatusCode, String) {
    let response = client
        .post(format!("{base}/transactions"))
        .header("Idempotency-Key", key)
        .json(&common::transaction("WH-01", "SKU-00001", kind, quantity))
        .send()
        .await
        .expect("the request is answered");
    let status = response.status();
    (status, response.text().await.expect("a body"))
}

async fn stock(client: &reqwest::Client, server: &Server) -> i64 {
    client
        .get(format!("{}/items/WH-01/SKU-00001", server.url()))
        .send()
        .await
        .expect("the request is answered")
        .json::<Item>()
        .await
        .expect("an item")
        .quantity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_of_one_request_apply_it_once() {
    let (_dir, server) = spawn_app().await;
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{}/items", server.url()))
        .json(&common::item("WH-01", "SKU-00001", 100))
        .send()
        .await
        .expect("the request is answered");
    assert_eq!(created.status(), StatusCode::CREATED);

    let attempts = (0..16).map(|_| {
        let (client, base) = (client.clone(), server.url());
        async move { post_transaction(&client, &base, "same-key", Kind::Ship, 5).await }
    });
    let replies = join_all(attempts).await;

    let mut by_status: HashMap<StatusCode, Vec<TransactionResponse>> = HashMap::new();
    for (status, body) in replies {
        let parsed = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        by_status.entry(status).or_default().push(parsed);
    }
    let applied = &by_status[&StatusCode::CREATED];
    let replayed = &by_status[&StatusCode::OK];
    assert_eq!((applied.len(), replayed.len()), (1, 15), "{by_status:?}");
    let expected = TransactionResponse {
        replayed: true,
        ..applied[0].clone()
    };
    assert!(replayed.iter().all(|r| *r == expected), "{replayed:?}");
    assert_eq!(applied[0].quantity_after, 95);
    assert_eq!(stock(&client, &server).await, 95);
    server.stop().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_shipments_never_take_the_stock_below_zero() {
    let (_dir, server) = spawn_app().await;
    let client = reqwest::Client::new();
    client
        .post(format!("{}/items", server.url()))
        .json(&common::item("WH-01", "SKU-00001", 20))
        .send()
        .await
        .expect("the request is answered");

    let attempts = (0..32).map(|i| {
        let (client, base) = (client.clone(), server.url());
        async move { post_transaction(&client, &base, &format!("k-{i}"), Kind::Ship, 1).await }
    });
    let statuses: Vec<StatusCode> = join_all(attempts)
        .await
        .into_iter()
        .map(|(status, _)| status)
        .collect();
    let count = |s| statuses.iter().filter(|&&x| x == s).count();
    assert_eq!(
        (count(StatusCode::CREATED), count(StatusCode::CONFLICT)),
        (20, 12),
        "{statuses:?}"
    );
    assert_eq!(stock(&client, &server).await, 0);
    server.stop().await.expect("a clean stop");
}

/// Runs the futures concurrently on the runtime's workers and collects their outputs in order.
async fn join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.expect("the task finishes"));
    }
    outputs
}
