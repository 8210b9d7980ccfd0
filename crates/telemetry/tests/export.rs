//! The export settings end to end, into the in-process receiver: TLS with a CA made here,
//! mutual TLS, a bearer token, gzip, OTLP/HTTP against gRPC, a refused token, OTEL_*_EXPORTER.

mod common;

use std::path::Path;

use common::{SERVICE, config};
use opentelemetry::KeyValue;
use otlp_sink::{OtlpSink, Received, SinkOptions, TestCa, attr};
use telemetry::{ShutdownReport, Telemetry};

const TOKEN: &str = "tok-5f2c9a71e4-secret";
const ITEMS: usize = 3;

/// The bot's shape in small: a batch span with item spans, an event in each, a counter.
fn workload(vars: &[(&str, String)]) -> ShutdownReport {
    let (dispatch, guard) = Telemetry::builder(config(vars)).build().expect("telemetry");
    let counter = guard.meter("test").u64_counter("test.items").build();
    tracing::dispatcher::with_default(&dispatch, || {
        let batch = tracing::info_span!("batch", note = "a value longer than the limit");
        let _b = batch.enter();
        for i in 0..ITEMS {
            let item = tracing::info_span!("item", sku = %format!("SKU-{i}"));
            let _i = item.enter();
            tracing::info!(event = "item_processed", "item done");
            counter.add(1, &[KeyValue::new("outcome", "applied")]);
        }
    });
    guard.shutdown()
}

fn base_vars(endpoint: String, dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("INV_LOG_CONSOLE", "false".into()),
        ("INV_LOG_FILE", dir.join("svc.log").display().to_string()),
        ("INV_SHUTDOWN_TIMEOUT_MS", "8000".into()),
    ]
}

/// A receiver over TLS behind [`TOKEN`] (with `mtls`, also requiring a client certificate),
/// and the CA file that a client must trust.
async fn secured_sink(ca: &TestCa, dir: &Path, mtls: bool) -> (OtlpSink, String) {
    let sink = OtlpSink::start_with(SinkOptions {
        tls: Some(ca.server()),
        client_ca: mtls.then(|| ca.cert_pem()),
        bearer_token: Some(TOKEN.into()),
        ..SinkOptions::default()
    })
    .await
    .expect("a receiver");
    (sink, write(dir, "ca.pem", &ca.cert_pem()))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("a test file");
    path.display().to_string()
}

/// What arrived, in a form that does not depend on the transport.
fn contents(r: &Received) -> (Vec<String>, Vec<String>, bool) {
    let mut spans: Vec<String> = r.spans().iter().map(|s| s.span.name.clone()).collect();
    spans.sort();
    let mut logs: Vec<String> = r
        .log_records()
        .iter()
        .map(|l| attr(&l.record.attributes, "event").unwrap_or_default())
        .collect();
    logs.sort();
    let counted = r.metrics().iter().any(|(_, m)| m.name == "test.items");
    (spans, logs, counted)
}

/// Everything the process wrote that an operator could read: the log file and the report.
fn all_output(dir: &Path, report: &ShutdownReport) -> String {
    let mut out = format!(
        "{report}\n{report:?}\n{}\n",
        serde_json::to_string(report).expect("JSON")
    );
    for entry in std::fs::read_dir(dir).expect("the log directory") {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|e| e == "log") {
            out.push_str(&std::fs::read_to_string(path).expect("a log file"));
        }
    }
    out
}

fn expected() -> (Vec<String>, Vec<String>, bool) {
    let mut spans = vec!["item".to_owned(); ITEMS];
    spans.push("batch".into());
    spans.sort();
    (spans, vec!["item_processed".to_owned(); ITEMS], true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_token_and_gzip_deliver_everything_over_grpc_and_http_alike() {
    let ca = TestCa::new("test CA");
    for protocol in ["grpc", "http/protobuf"] {
        let dir = tempfile::tempdir().unwrap();
        let (sink, ca_file) = secured_sink(&ca, dir.path(), false).await;
        let mut vars = base_vars(sink.endpoint(), dir.path());
        vars.extend([
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.into()),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca_file),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                format!("authorization=Bearer%20{TOKEN},x-tenant=inventory"),
            ),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".into()),
            ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "7".into()),
        ]);
        let report = tokio::task::spawn_blocking(move || workload(&vars))
            .await
            .unwrap();
        assert!(report.is_clean(), "{protocol}: {report}");
        assert!(
            report.exports_ok >= 3 && report.exports_failed == 0,
            "{protocol}: {report:?}"
        );

        let r = sink.received();
        assert_eq!(contents(&r), expected(), "{protocol}");
        let batch = r
            .spans()
            .into_iter()
            .find(|s| s.span.name == "batch")
            .unwrap();
        assert_eq!(
            attr(&batch.span.attributes, "note").as_deref(),
            Some("a value")
        );
        assert_eq!(
            attr(&batch.resource.attributes, "service.name").as_deref(),
            Some(SERVICE)
        );
        // Every request carried the token and the extra header, and was compressed.
        assert!(r.requests.len() >= 3, "{protocol}: {:?}", r.requests);
        for request in &r.requests {
            assert_eq!(request.is_grpc(), protocol == "grpc", "{request:?}");
            assert_eq!(
                request.header("authorization"),
                Some(format!("Bearer {TOKEN}").as_str())
            );
            assert_eq!(request.header("x-tenant"), Some("inventory"));
            let encoding = if request.is_grpc() {
                "grpc-encoding"
            } else {
                "content-encoding"
            };
            assert_eq!(request.header(encoding), Some("gzip"), "{request:?}");
        }
        if protocol == "http/protobuf" {
            let mut paths: Vec<&str> = r.requests.iter().map(|q| q.path.as_str()).collect();
            paths.dedup();
            paths.sort();
            paths.dedup();
            assert_eq!(paths, ["/v1/logs", "/v1/metrics", "/v1/traces"]);
        }
        assert!(!all_output(dir.path(), &report).contains(TOKEN));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_said_once_naming_the_endpoint_never_the_token() {
    let ca = TestCa::new("test CA");
    for protocol in ["grpc", "http/protobuf"] {
        let dir = tempfile::tempdir().unwrap();
        let (sink, ca_file) = secured_sink(&ca, dir.path(), false).await;
        let wrong = "wrong-7d41c0-secret";
        let mut vars = base_vars(sink.endpoint(), dir.path());
        vars.extend([
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.into()),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca_file),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                format!("Authorization=Bearer%20{wrong}"),
            ),
        ]);
        let report = tokio::task::spawn_blocking(move || workload(&vars))
            .await
            .unwrap();

        let r = sink.received();
        assert!(
            !r.requests.is_empty(),
            "{protocol}: the exporter reached the receiver"
        );
        assert_eq!(
            contents(&r),
            (vec![], vec![], false),
            "{protocol}: nothing accepted"
        );
        assert_eq!(report.exports_ok, 0, "{protocol}: {report:?}");
        assert_eq!(
            (report.spans_dropped, report.logs_dropped),
            (ITEMS as u64 + 1, ITEMS as u64)
        );
        // The endpoint that refused: the gRPC one, or each signal's OTLP/HTTP URL.
        let refused: Vec<String> = match protocol {
            "grpc" => vec![sink.endpoint()],
            _ => ["/v1/logs", "/v1/metrics", "/v1/traces"]
                .map(|p| format!("{}{p}", sink.endpoint()))
                .into(),
        };
        let mut got = report.auth_refused.clone();
        got.sort();
        assert_eq!(got, refused, "{protocol}: {report}");
        assert!(
            report.to_string().contains("authentication refused by"),
            "{report}"
        );

        let output = all_output(dir.path(), &report);
        assert!(
            !output.contains(wrong),
            "{protocol}: the token leaked:\n{output}"
        );
        let warnings = output.matches("refused our credentials").count();
        assert_eq!(
            warnings,
            refused.len(),
            "{protocol}: once per endpoint:\n{output}"
        );
        assert!(output.contains(&refused[0]), "{output}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_the_client_certificate() {
    let ca = TestCa::new("test CA");
    let dir = tempfile::tempdir().unwrap();
    let (sink, ca_file) = secured_sink(&ca, dir.path(), true).await;
    let client = ca.client("invbot");
    let mut vars = base_vars(sink.endpoint(), dir.path());
    vars.extend([
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca_file),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("authorization=Bearer%20{TOKEN}"),
        ),
        ("INV_SHUTDOWN_TIMEOUT_MS", "3000".into()),
    ]);
    let without = vars.clone();
    vars.extend([
        (
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            write(dir.path(), "client.pem", &client.cert_pem),
        ),
        (
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            write(dir.path(), "client.key", &client.key_pem),
        ),
    ]);
    let report = tokio::task::spawn_blocking(move || workload(&vars))
        .await
        .unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(contents(&sink.received()), expected());

    sink.clear();
    let report = tokio::task::spawn_blocking(move || workload(&without))
        .await
        .unwrap();
    assert!(report.collector_unreachable(), "{report:?}");
    assert!(sink.received().requests.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_set_to_none_exports_nothing_and_logs_keep_their_trace_ids() {
    let sink = OtlpSink::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut vars = base_vars(sink.endpoint(), dir.path());
    vars.push(("OTEL_TRACES_EXPORTER", "none".into()));
    vars.push(("OTEL_METRICS_EXPORTER", "none".into()));
    let report = tokio::task::spawn_blocking(move || workload(&vars))
        .await
        .unwrap();
    assert!(report.is_clean(), "{report}");
    let r = sink.received();
    assert!(r.traces.is_empty() && r.metrics.is_empty());
    let logs = r.log_records();
    assert_eq!(logs.len(), ITEMS);
    assert!(
        logs.iter()
            .all(|l| l.record.trace_id.iter().any(|b| *b != 0))
    );
}
