//! Traces, logs and metrics of a served instance, through the real telemetry library into an
//! in-process OTLP receiver. Telemetry is installed process-wide, so this binary has one test.

use std::collections::HashMap;
use std::time::Duration;

use inventory_api::{AppState, Db, ErrorRate, FaultConfig, Kind, Server};
use otlp_sink::{OtlpSink, ReceivedSpan, attr, hex_id, metric};
use telemetry::{Config, Defaults, Telemetry};
use tokio::net::TcpListener;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";
const SPAN_KIND_SERVER: i32 = 2;
const SPAN_KIND_CLIENT: i32 = 3;
const STATUS_CODE_ERROR: i32 = 2;

fn config(sink: &OtlpSink) -> Config {
    let vars = HashMap::from([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint()),
        ("INV_LOG_CONSOLE", "false".into()),
        ("INV_LOG_FILE", "off".into()),
        ("INV_METRICS_ADDR", "off".into()),
    ]);
    Config::from_lookup(
        Defaults {
            service_name: names::service::API.into(),
            service_version: "0.0.0-test".into(),
            metrics_addr: None,
            spool_dir: None,
        },
        |k| vars.get(k).cloned(),
    )
    .expect("a valid configuration")
}

async fn spawn(db: Db, error_rate: f64) -> Server {
    let faults = FaultConfig {
        error_rate: ErrorRate::new(error_rate).expect("a valid rate"),
        latency: Duration::ZERO,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    inventory_api::spawn(listener, AppState::new(db, faults)).expect("the server starts")
}

/// Posts a transaction as a traced caller would: with a W3C traceparent header.
async fn post_traced(client: &reqwest::Client, server: &Server, key: &str, sku: &str) -> u16 {
    client
        .post(format!("{}/transactions", server.url()))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01"))
        .header("Idempotency-Key", key)
        .json(&inventory_api::TransactionRequest {
            warehouse_id: "WH-01".into(),
            sku: sku.into(),
            kind: Kind::Receive,
            quantity: 2,
        })
        .send()
        .await
        .expect("the request is answered")
        .status()
        .as_u16()
}

fn has_attrs(attrs: &[otlp_sink::KeyValue], wanted: &[(&str, &str)]) -> bool {
    wanted
        .iter()
        .all(|(k, v)| attr(attrs, k).as_deref() == Some(*v))
}

fn assert_attrs(attrs: &[otlp_sink::KeyValue], wanted: &[(&str, &str)]) {
    assert!(has_attrs(attrs, wanted), "wanted {wanted:?} in {attrs:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_continue_the_callers_trace_down_to_the_database() {
    let sink = OtlpSink::start().await.expect("the receiver starts");
    let guard = Telemetry::builder(config(&sink))
        .init()
        .expect("telemetry starts");
    // Opened after init: instruments come from the global meter provider.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = Db::open(&dir.path().join("inventory.db")).expect("the database opens");
    let server = spawn(db.clone(), 0.0).await;
    let faulty = spawn(db, 1.0).await;
    let client = reqwest::Client::new();

    let created = client
        .post(format!("{}/items", server.url()))
        .json(&inventory_api::Item {
            warehouse_id: "WH-01".into(),
            sku: "SKU-00001".into(),
            name: "Widget".into(),
            quantity: 1,
            unit_price: 1.0,
        })
        .send()
        .await
        .expect("the request is answered");
    assert_eq!(created.status(), 201);
    assert_eq!(post_traced(&client, &server, "k-1", "SKU-00001").await, 201);
    assert_eq!(post_traced(&client, &server, "k-2", "SKU-00404").await, 404);
    assert_eq!(post_traced(&client, &faulty, "k-3", "SKU-00001").await, 503);
    let health = reqwest::get(format!("{}/healthz", server.url()))
        .await
        .expect("the request is answered");
    assert_eq!(health.status(), 200);
    server.stop().await.expect("a clean stop");
    faulty.stop().await.expect("a clean stop");
    let report = guard.shutdown();
    assert!(report.is_clean(), "{report}");

    let received = sink.received();
    let spans = received.spans();
    let names: Vec<&str> = spans.iter().map(|s| s.span.name.as_str()).collect();
    assert!(!names.iter().any(|n| n.contains("healthz")), "{names:?}");
    let server_spans: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.span.name == "POST /transactions")
        .collect();
    assert_eq!(server_spans.len(), 3, "{names:?}");
    let status_of = |s: &ReceivedSpan| attr(&s.span.attributes, "http.response.status_code");
    let by_status = |code: &str| {
        *server_spans
            .iter()
            .find(|s| status_of(s).as_deref() == Some(code))
            .unwrap_or_else(|| panic!("no {code} span in {server_spans:#?}"))
    };

    for s in &server_spans {
        assert_eq!(hex_id(&s.span.trace_id), TRACE_ID);
        assert_eq!(hex_id(&s.span.parent_span_id), CALLER_SPAN_ID);
        assert_eq!(s.span.kind, SPAN_KIND_SERVER);
        assert_attrs(
            &s.span.attributes,
            &[
                ("http.route", "/transactions"),
                ("http.request.method", "POST"),
            ],
        );
        assert_attrs(
            &s.resource.attributes,
            &[("service.name", names::service::API)],
        );
    }
    let applied = by_status("201");
    let db_span = spans
        .iter()
        .find(|s| s.span.parent_span_id == applied.span.span_id)
        .expect("a database span under the request span");
    assert_eq!(db_span.span.name, "sqlite apply_transaction");
    assert_eq!(db_span.span.kind, SPAN_KIND_CLIENT);
    assert_eq!(db_span.span.trace_id, applied.span.trace_id);
    assert_attrs(
        &db_span.span.attributes,
        &[
            ("db.system.name", "sqlite"),
            ("db.operation.name", "apply_transaction"),
        ],
    );
    let failed = by_status("503");
    assert_eq!(
        failed.span.status.as_ref().map(|s| s.code),
        Some(STATUS_CODE_ERROR)
    );
    // The fault fired before the database: no database span under that request.
    assert!(
        !spans
            .iter()
            .any(|s| s.span.parent_span_id == failed.span.span_id)
    );
    let root = spans
        .iter()
        .find(|s| s.span.name == "POST /items")
        .expect("the untraced caller's request span");
    assert!(root.span.parent_span_id.is_empty());

    let logs = received.log_records();
    let log_with = |key: &str, value: &str| {
        logs.iter()
            .find(|l| attr(&l.record.attributes, key).as_deref() == Some(value))
            .unwrap_or_else(|| panic!("no log with {key}={value} in {logs:#?}"))
    };
    let event = log_with("event", names::event::TRANSACTION_APPLIED);
    assert_eq!(event.record.span_id, applied.span.span_id);
    assert_eq!(event.record.trace_id, applied.span.trace_id);
    assert_attrs(
        &event.record.attributes,
        &[
            ("warehouse_id", "WH-01"),
            ("sku", "SKU-00001"),
            ("kind", "receive"),
            ("quantity", "2"),
            ("quantity_after", "3"),
            ("replayed", "false"),
        ],
    );
    let unknown = log_with("error.type", "unknown_item");
    assert_eq!(unknown.record.span_id, by_status("404").span.span_id);
    assert_eq!(unknown.record.severity_text, "WARN");
    let fault = log_with("error.type", "injected_fault");
    assert_eq!(fault.record.span_id, failed.span.span_id);
    assert_eq!(fault.record.severity_text, "ERROR");

    let metrics = received.metrics();
    let points = |name: &str| -> Vec<Vec<otlp_sink::KeyValue>> {
        metrics
            .iter()
            .filter(|(_, m)| m.name == name)
            .flat_map(|(_, m)| -> Vec<Vec<otlp_sink::KeyValue>> {
                match &m.data {
                    Some(metric::Data::Histogram(h)) => {
                        h.data_points.iter().map(|p| p.attributes.clone()).collect()
                    }
                    Some(metric::Data::Sum(s)) => {
                        s.data_points.iter().map(|p| p.attributes.clone()).collect()
                    }
                    other => panic!("{name}: unexpected data {other:?}"),
                }
            })
            .collect()
    };
    let has = |name: &str, wanted: &[(&str, &str)]| {
        points(name).iter().any(|attrs| has_attrs(attrs, wanted))
    };
    let route = ("http.route", "/transactions");
    assert!(has(
        names::metric::HTTP_SERVER_DURATION.name,
        &[
            route,
            ("http.request.method", "POST"),
            ("http.response.status_code", "201")
        ]
    ));
    assert!(has(
        names::metric::HTTP_SERVER_ERRORS.name,
        &[
            route,
            ("http.response.status_code", "404"),
            ("error.type", "unknown_item")
        ]
    ));
    assert!(has(
        names::metric::HTTP_SERVER_ERRORS.name,
        &[
            route,
            ("http.response.status_code", "503"),
            ("error.type", "injected_fault")
        ]
    ));
    assert!(!has(
        names::metric::HTTP_SERVER_ERRORS.name,
        &[("http.response.status_code", "201")]
    ));
    assert!(has(
        names::metric::DB_DURATION.name,
        &[
            ("db.system.name", "sqlite"),
            ("db.operation.name", "apply_transaction")
        ]
    ));
}
