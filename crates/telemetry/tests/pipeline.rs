//! The library over the real OTLP exporter and real gRPC, into an in-process receiver.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{SERVICE, config, http_get, log_files, set_log_file};
use opentelemetry::KeyValue;
use otlp_sink::{OtlpSink, attr, hex_id, metric};
use telemetry::{DURATION_BUCKETS_SECONDS, Telemetry};

fn sink_vars(sink: &OtlpSink) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=test,team=inventory".into(),
        ),
        ("INV_LOG_CONSOLE", "false".into()),
        ("INV_LOG_FILE", "off".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_logs_and_file_lines_share_trace_and_span_ids() {
    let sink = OtlpSink::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut vars = sink_vars(&sink);
    vars.retain(|(k, _)| *k != "INV_LOG_FILE");
    vars.push((
        "INV_LOG_FILE",
        dir.path().join("svc.log").display().to_string(),
    ));
    let (dispatch, guard) = Telemetry::builder(config(&vars)).build().unwrap();

    tracing::dispatcher::with_default(&dispatch, || {
        let batch = tracing::info_span!("batch", warehouse_id = "WH-7", batch_size = 3_i64);
        let _b = batch.enter();
        tracing::info!(
            event = "batch_start",
            warehouse_id = "WH-7",
            "batch started"
        );
        for i in 0..3 {
            let item = tracing::info_span!("item", sku = %format!("SKU-{i}"));
            let _i = item.enter();
            tracing::info!(event = "item_processed", sku = %format!("SKU-{i}"), "item done");
        }
        // Outside any span: no ids.
        drop(_b);
        tracing::info!(event = "outside", "no span here");
    });
    let report = guard.shutdown();
    assert!(report.is_clean(), "{report}");

    let received = sink.received();
    let spans = received.spans();
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let root = spans
        .iter()
        .find(|s| s.span.name == "batch")
        .expect("the batch span");
    assert!(root.span.parent_span_id.is_empty());
    assert_eq!(
        attr(&root.span.attributes, "warehouse_id").as_deref(),
        Some("WH-7")
    );
    assert_eq!(
        attr(&root.span.attributes, "batch_size").as_deref(),
        Some("3")
    );
    let items: Vec<_> = spans.iter().filter(|s| s.span.name == "item").collect();
    assert_eq!(items.len(), 3);
    for item in &items {
        assert_eq!(item.span.trace_id, root.span.trace_id);
        assert_eq!(item.span.parent_span_id, root.span.span_id);
        assert!(
            attr(&item.span.attributes, "sku")
                .unwrap()
                .starts_with("SKU-")
        );
        // The span layer adds no location/thread/timing attributes on the hot path.
        assert_eq!(item.span.attributes.len(), 1, "{:?}", item.span.attributes);
    }
    let res = &root.resource.attributes;
    assert_eq!(attr(res, "service.name").as_deref(), Some(SERVICE));
    assert_eq!(attr(res, "service.namespace").as_deref(), Some("inventory"));
    assert_eq!(attr(res, "service.version").as_deref(), Some("9.9.9"));
    assert_eq!(
        attr(res, "deployment.environment.name").as_deref(),
        Some("test")
    );
    assert_eq!(attr(res, "team").as_deref(), Some("inventory"));
    assert!(attr(res, "service.instance.id").is_some_and(|id| id.len() == 36));

    let logs = received.log_records();
    assert_eq!(logs.len(), 5, "{logs:#?}");
    for log in &logs {
        assert_eq!(log.resource.attributes, root.resource.attributes);
        let event = attr(&log.record.attributes, "event").unwrap();
        if event == "outside" {
            assert!(log.record.trace_id.is_empty() || log.record.trace_id.iter().all(|b| *b == 0));
            continue;
        }
        let expected_span = if event == "batch_start" {
            &root.span
        } else {
            let sku = attr(&log.record.attributes, "sku").unwrap();
            &items
                .iter()
                .find(|s| attr(&s.span.attributes, "sku").as_deref() == Some(&sku))
                .unwrap()
                .span
        };
        assert_eq!(log.record.trace_id, expected_span.trace_id, "{event}");
        assert_eq!(log.record.span_id, expected_span.span_id, "{event}");
    }

    // The JSON file line of each event carries the same ids as its OTLP record.
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("svc."))
        .expect("a rotated svc.<date>.log file");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect();
    assert_eq!(lines.len(), 5);
    for (line, log) in lines.iter().zip(&logs) {
        assert_eq!(line["level"], "INFO");
        assert!(line["timestamp"].as_str().unwrap().contains('T'));
        assert_eq!(
            line["fields"]["event"].as_str(),
            attr(&log.record.attributes, "event").as_deref()
        );
        if line["fields"]["event"] == "outside" {
            assert!(line.get("trace_id").is_none());
            continue;
        }
        assert_eq!(
            line["trace_id"].as_str().unwrap(),
            hex_id(&log.record.trace_id)
        );
        assert_eq!(
            line["span_id"].as_str().unwrap(),
            hex_id(&log.record.span_id)
        );
        assert!(
            line["message"].as_str().unwrap().ends_with("started")
                || line["message"] == "item done"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_events_mark_their_span_as_failed() {
    let sink = OtlpSink::start().await.unwrap();
    let (dispatch, guard) = Telemetry::builder(config(&sink_vars(&sink)))
        .build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        let span = tracing::info_span!("api_call");
        let _e = span.enter();
        tracing::error!(
            event = "api_error",
            status = 503_i64,
            "inventory API failed"
        );
    });
    assert!(guard.shutdown().is_clean());
    let spans = sink.received().spans();
    let status = spans[0].span.status.clone().expect("a status");
    assert_eq!(status.code, 2, "STATUS_CODE_ERROR");
    assert_eq!(sink.received().log_records().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_arrive_with_names_units_and_duration_buckets() {
    let sink = OtlpSink::start().await.unwrap();
    let mut vars = sink_vars(&sink);
    vars.push(("INV_RESOURCE_INTERVAL_MS", "50".into()));
    let (_dispatch, guard) = Telemetry::builder(config(&vars)).build().unwrap();
    let meter = guard.meter("test");
    let counter = meter
        .u64_counter("test.transactions")
        .with_unit("{transaction}")
        .build();
    let histogram = meter
        .f64_histogram("test.batch.duration")
        .with_unit("s")
        .build();
    counter.add(3, &[KeyValue::new("outcome", "applied")]);
    // Bound and never used: exported all the same, at 0 (the bot's series rely on it).
    let failed = counter.bind(&[KeyValue::new("outcome", "failed")]);
    histogram.record(0.042, &[]);
    histogram.record(2.5, &[]);
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(guard.shutdown().is_clean());

    let metrics = sink.received().metrics();
    let find = |name: &str| {
        metrics
            .iter()
            .rev()
            .find(|(_, m)| m.name == name)
            .unwrap_or_else(|| {
                panic!(
                    "{name} not received; got {:?}",
                    metrics.iter().map(|(_, m)| &m.name).collect::<Vec<_>>()
                )
            })
    };
    let (resource, transactions) = find("test.transactions");
    assert_eq!(
        attr(&resource.attributes, "service.name").as_deref(),
        Some(SERVICE)
    );
    assert_eq!(transactions.unit, "{transaction}");
    let Some(metric::Data::Sum(sum)) = &transactions.data else {
        panic!("a sum")
    };
    assert!(sum.is_monotonic);
    let mut points: Vec<(Option<String>, Option<otlp_sink::metric_value::Value>)> = sum
        .data_points
        .iter()
        .map(|p| (attr(&p.attributes, "outcome"), p.value))
        .collect();
    points.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        points,
        [
            (
                Some("applied".into()),
                Some(otlp_sink::metric_value::Value::AsInt(3))
            ),
            (
                Some("failed".into()),
                Some(otlp_sink::metric_value::Value::AsInt(0))
            ),
        ]
    );
    drop(failed);

    let (_, duration) = find("test.batch.duration");
    assert_eq!(duration.unit, "s");
    let Some(metric::Data::Histogram(h)) = &duration.data else {
        panic!("a histogram")
    };
    let point = &h.data_points[0];
    assert_eq!(point.explicit_bounds, DURATION_BUCKETS_SECONDS);
    assert_eq!(point.count, 2);
    // 0.042 s falls in (0.025, 0.05], 2.5 s in (2, 2.5]: both ends of the range are resolved.
    let bucket = |upper: f64| {
        let i = DURATION_BUCKETS_SECONDS
            .iter()
            .position(|b| *b == upper)
            .unwrap();
        point.bucket_counts[i]
    };
    assert_eq!((bucket(0.05), bucket(2.5)), (1, 1));

    for (name, unit) in [
        ("process.cpu.utilization", "1"),
        ("process.memory.usage", "By"),
        ("process.disk.io", "By"),
        ("system.cpu.utilization", "1"),
        ("system.memory.usage", "By"),
    ] {
        assert_eq!(find(name).1.unit, unit, "{name}");
    }
    let Some(metric::Data::Gauge(rss)) = &find("process.memory.usage").1.data else {
        panic!("a gauge")
    };
    let Some(otlp_sink::metric_value::Value::AsInt(bytes)) = rss.data_points[0].value else {
        panic!("an int gauge")
    };
    assert!(
        bytes > 1_000_000,
        "resident memory of a test process: {bytes}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_serves_metrics_health_and_readiness() {
    let sink = OtlpSink::start().await.unwrap();
    let mut vars = sink_vars(&sink);
    vars.push(("INV_METRICS_ADDR", "127.0.0.1:0".into()));
    let ready = Arc::new(AtomicBool::new(false));
    let flag = ready.clone();
    let (_dispatch, guard) = Telemetry::builder(config(&vars))
        .readiness(move || {
            let ok = flag.load(Ordering::SeqCst);
            async move {
                if ok {
                    Ok(())
                } else {
                    Err("database unreachable".into())
                }
            }
        })
        .build()
        .unwrap();
    let addr = guard.metrics_addr().expect("the endpoint is served");
    assert!(addr.ip().is_loopback());
    let meter = guard.meter("test");
    meter
        .u64_counter("test.requests")
        .build()
        .add(2, &[KeyValue::new("route", "/items")]);
    meter
        .f64_histogram("test.request.duration")
        .with_unit("s")
        .build()
        .record(1.7, &[]);

    let get = move |path: &'static str| tokio::task::spawn_blocking(move || http_get(addr, path));
    let (status, body) = get("/healthz").await.unwrap();
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = get("/readyz").await.unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("database unreachable"), "{body}");
    ready.store(true, Ordering::SeqCst);
    assert_eq!(get("/readyz").await.unwrap().0, 200);

    let (status, body) = get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    let line = |prefix: &str, label: &str| {
        body.lines()
            .find(|l| l.starts_with(prefix) && l.contains(label))
            .unwrap_or_else(|| panic!("no {prefix} with {label} in {body}"))
            .to_owned()
    };
    assert!(line("test_requests_total{", r#"route="/items""#).ends_with(" 2"));
    assert!(line("test_request_duration_seconds_bucket{", r#"le="2""#).ends_with(" 1"));
    assert!(line("test_request_duration_seconds_bucket{", r#"le="1.5""#).ends_with(" 0"));
    assert!(body.contains("process_memory_usage_bytes"), "{body}");
    assert_eq!(get("/nope").await.unwrap().0, 404);
    assert!(guard.shutdown().is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_sdk_exports_nothing_and_still_serves_health() {
    let sink = OtlpSink::start().await.unwrap();
    let mut vars = sink_vars(&sink);
    vars.push(("OTEL_SDK_DISABLED", "true".into()));
    vars.push(("INV_METRICS_ADDR", "127.0.0.1:0".into()));
    let (dispatch, guard) = Telemetry::builder(config(&vars)).build().unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        let span = tracing::info_span!("batch");
        let _e = span.enter();
        tracing::info!("nothing leaves the process");
    });
    guard
        .meter("test")
        .u64_counter("test.requests")
        .build()
        .add(1, &[]);
    let addr = guard.metrics_addr().unwrap();
    let (status, _) = tokio::task::spawn_blocking(move || http_get(addr, "/healthz"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(guard.shutdown().is_clean());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = sink.received();
    assert!(r.traces.is_empty() && r.logs.is_empty() && r.metrics.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_round_trips_through_http_headers() {
    // What init() installs from OTEL_PROPAGATORS; build() installs nothing global.
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let sink = OtlpSink::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for file in log_files(&dir) {
        sink.clear();
        let mut vars = sink_vars(&sink);
        set_log_file(&mut vars, &file);
        let (dispatch, guard) = Telemetry::builder(config(&vars)).build().unwrap();
        tracing::dispatcher::with_default(&dispatch, || {
            let client = tracing::info_span!("client_call");
            let mut headers = http::HeaderMap::new();
            telemetry::inject_context(&client, &mut headers);
            let traceparent = headers["traceparent"].to_str().unwrap().to_owned();
            assert!(
                traceparent.starts_with("00-") && traceparent.ends_with("-01"),
                "{traceparent}"
            );
            let server = tracing::info_span!("server_handle");
            telemetry::set_parent_from_headers(&server, &headers);
            drop(server);
            drop(client);
            // A caller that did not sample its trace: the default sampler (parent-based) follows.
            let unsampled = traceparent.replace("-01", "-00");
            headers.insert("traceparent", unsampled.parse().unwrap());
            let server = tracing::info_span!("server_of_unsampled");
            telemetry::set_parent_from_headers(&server, &headers);
            assert_eq!(telemetry::trace_id(&server), None, "not sampled");
        });
        assert!(guard.shutdown().is_clean());
        let spans = sink.received().spans();
        assert!(!spans.iter().any(|s| s.span.name == "server_of_unsampled"));
        let client = spans.iter().find(|s| s.span.name == "client_call").unwrap();
        let server = spans
            .iter()
            .find(|s| s.span.name == "server_handle")
            .unwrap();
        assert_eq!(server.span.trace_id, client.span.trace_id);
        assert_eq!(server.span.parent_span_id, client.span.span_id);
    }
}
