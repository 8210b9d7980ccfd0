//! The hot path's layer and queues against the in-process receiver: what tracing-opentelemetry
//! and the appender bridge put on the wire is what arrives, and a burst larger than the queue
//! is delivered or counted, never lost without a figure.

mod common;

use common::{config, log_files, set_log_file};
use otlp_sink::{OtlpSink, attr, hex_id};
use telemetry::Telemetry;

fn sink_vars(sink: &OtlpSink, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint()),
        ("INV_LOG_CONSOLE", "false".into()),
        ("INV_LOG_FILE", "off".into()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    vars
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_kinds_status_events_and_limits_arrive_as_the_stock_layers_sent_them() {
    let sink = OtlpSink::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for file in log_files(&dir) {
        sink.clear();
        let mut vars = sink_vars(&sink, &[("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "4")]);
        set_log_file(&mut vars, &file);
        let (dispatch, guard) = Telemetry::builder(config(&vars)).build().unwrap();
        tracing::dispatcher::with_default(&dispatch, || {
            let call = tracing::info_span!(
                "call",
                otel.name = %format_args!("POST {}", "/transactions"),
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                http.status = tracing::field::Empty,
                attempt = 1_u64,
                ratio = 0.5_f64,
                retried = false,
                extra = tracing::field::Empty,
            );
            let _c = call.enter();
            call.record("http.status", 503_i64);
            call.record("http.status", 500_i64); // a later value replaces the first
            call.record("otel.status_code", "ERROR");
            call.record("extra", "over the limit");
            tracing::error!(code = 7_i64, "the call failed");
        });
        assert!(guard.shutdown().is_clean());

        let received = sink.received();
        let [span] = &received.spans()[..] else {
            panic!("one span: {:#?}", received.spans())
        };
        let s = &span.span;
        assert_eq!(s.name, "POST /transactions");
        assert_eq!(s.kind, 3, "SPAN_KIND_CLIENT");
        assert_eq!(s.status.as_ref().map(|st| st.code), Some(2), "ERROR");
        assert_eq!(span.scope, common::SERVICE);
        let keys: Vec<&str> = s.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["attempt", "ratio", "retried", "http.status"]);
        assert_eq!(attr(&s.attributes, "http.status").as_deref(), Some("500"));
        assert_eq!(
            s.dropped_attributes_count, 1,
            "`extra` was over the limit of 4"
        );
        let [event] = &s.events[..] else {
            panic!("one span event: {:#?}", s.events)
        };
        assert_eq!(event.name, "the call failed");
        assert_eq!(attr(&event.attributes, "level").as_deref(), Some("ERROR"));
        assert_eq!(attr(&event.attributes, "code").as_deref(), Some("7"));
        assert!(attr(&event.attributes, "target").is_some());

        let [log] = &received.log_records()[..] else {
            panic!("one log record")
        };
        let r = &log.record;
        assert_eq!((r.severity_number, r.severity_text.as_str()), (17, "ERROR"));
        assert_eq!(hex_id(&r.trace_id), hex_id(&s.trace_id));
        assert_eq!(hex_id(&r.span_id), hex_id(&s.span_id));
        assert_eq!(r.flags & 1, 1, "sampled");
        assert!(r.observed_time_unix_nano > 0);
        assert_eq!(attr(&r.attributes, "code").as_deref(), Some("7"));
        let body = r.body.as_ref().and_then(|b| b.value.as_ref());
        assert_eq!(
            format!("{body:?}"),
            r#"Some(StringValue("the call failed"))"#
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_nest_close_and_cross_threads_as_tracing_says() {
    let sink = OtlpSink::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for file in log_files(&dir) {
        sink.clear();
        let mut vars = sink_vars(&sink, &[]);
        set_log_file(&mut vars, &file);
        let (dispatch, guard) = Telemetry::builder(config(&vars)).build().unwrap();
        tracing::dispatcher::with_default(&dispatch, || {
            let root = tracing::info_span!("root");
            let explicit = tracing::info_span!(parent: &root, "explicit");
            let a = tracing::info_span!("a").entered();
            let b = tracing::info_span!("b").entered();
            assert_eq!(
                tracing::Span::current().metadata().map(|m| m.name()),
                Some("b")
            );
            // Out of order: a exits while b is still entered, and b stays current.
            let a = a.exit();
            assert_eq!(
                tracing::Span::current().metadata().map(|m| m.name()),
                Some("b")
            );
            tracing::info!("in b");
            drop(b);
            assert!(tracing::Span::current().is_none());
            // A clone ends on another thread: the span ends when its last handle goes.
            let moved = explicit.clone();
            drop(explicit);
            let dispatch = dispatch.clone();
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    moved.in_scope(|| tracing::info!("in explicit, on another thread"));
                    // Inside: the registry closes the parent through the current dispatcher.
                    drop(moved);
                });
            })
            .join()
            .unwrap();
            drop((a, root));
        });
        assert!(guard.shutdown().is_clean());

        let received = sink.received();
        let spans = received.spans();
        let span = |name: &str| {
            let found: Vec<_> = spans.iter().filter(|s| s.span.name == name).collect();
            assert_eq!(found.len(), 1, "{name} once, {file}: {spans:#?}");
            found[0].span.clone()
        };
        let (root, explicit, a, b) = (span("root"), span("explicit"), span("a"), span("b"));
        assert_eq!(spans.len(), 4, "{file}");
        assert_eq!(explicit.parent_span_id, root.span_id, "{file}");
        assert_eq!(explicit.trace_id, root.trace_id, "{file}");
        assert!(a.parent_span_id.is_empty(), "a is a root, {file}");
        assert_eq!(b.parent_span_id, a.span_id, "{file}");
        let logs = received.log_records();
        let log_span = |body: &str| {
            let log = logs
                .iter()
                .find(|l| format!("{:?}", l.record.body).contains(body))
                .unwrap_or_else(|| panic!("{body}, {file}"));
            log.record.span_id.clone()
        };
        assert_eq!(log_span("in b"), b.span_id, "{file}");
        assert_eq!(log_span("on another thread"), explicit.span_id, "{file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_trace_exports_no_spans_but_its_logs_keep_the_trace_id() {
    let sink = OtlpSink::start().await.unwrap();
    let vars = sink_vars(&sink, &[("OTEL_TRACES_SAMPLER", "always_off")]);
    let (dispatch, guard) = Telemetry::builder(config(&vars)).build().unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        let root = tracing::info_span!("root");
        let _r = root.enter();
        let child = tracing::info_span!("child", sku = "SKU-1");
        let _c = child.enter();
        tracing::info!("inside");
        assert_eq!(telemetry::trace_id(&child), None, "not sampled");
    });
    assert!(guard.shutdown().is_clean());
    let received = sink.received();
    assert!(received.spans().is_empty());
    let [log] = &received.log_records()[..] else {
        panic!("one log record")
    };
    assert_eq!(log.record.trace_id.len(), 16);
    assert_eq!(log.record.flags & 1, 0, "not sampled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_queue_is_delivered_or_counted_and_said_once() {
    const SPANS: usize = 40_000;
    let sink = OtlpSink::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log_file = dir.path().join("svc.log");
    let mut vars = sink_vars(
        &sink,
        &[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "256"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "256"),
            ("OTEL_LOGS_EXPORTER", "none"),
        ],
    );
    set_log_file(&mut vars, &log_file.display().to_string());
    let (dispatch, guard) = Telemetry::builder(config(&vars)).build().unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..SPANS {
            let _s = tracing::info_span!("burst", i).entered();
        }
    });
    let report = guard.shutdown();
    let received = sink.received().spans().len();
    assert!(
        report.spans_dropped > 0,
        "the burst must overflow a queue of one batch (received {received})"
    );
    assert_eq!(
        received as u64 + report.spans_dropped,
        SPANS as u64,
        "{report}"
    );
    // The file rotates: its name carries the date.
    let lines: String = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
        .collect();
    let warnings = lines.matches("the export queue is full").count();
    assert_eq!(warnings, 1, "{lines}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_and_level_directives_filter_as_rust_log_says() {
    let sink = OtlpSink::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Static directives (a fast filter) and a span directive (the full one) must agree, and so
    // must the OTel layer alone (its filter is the subscriber's) and beside the JSON file (each
    // layer filters for itself).
    for filter in ["warn,app::db=debug", "warn,app::db=debug,[never]=trace"] {
        for file in log_files(&dir) {
            sink.clear();
            let mut vars = sink_vars(&sink, &[("RUST_LOG", filter)]);
            set_log_file(&mut vars, &file);
            let (dispatch, guard) = Telemetry::builder(config(&vars)).build().unwrap();
            tracing::dispatcher::with_default(&dispatch, || {
                tracing::info!(target: "app", "dropped: app is at warn");
                tracing::warn!(target: "app", "kept");
                tracing::debug!(target: "app::db", "kept: app::db is at debug");
                tracing::debug!(target: "app::dbx::y", "kept: a prefix of the target");
                tracing::trace!(target: "app::db", "dropped: below debug");
                tracing::warn!(target: "tonic::transport", "dropped: export traffic");
                tracing::warn!(target: telemetry::EXPORT_TARGET, "dropped: export trouble");
            });
            assert!(guard.shutdown().is_clean());
            let mut kept: Vec<String> = sink
                .received()
                .log_records()
                .iter()
                .filter_map(|l| l.record.body.as_ref().and_then(|b| b.value.clone()))
                .map(|v| format!("{v:?}"))
                .collect();
            kept.sort();
            assert_eq!(
                kept,
                [
                    r#"StringValue("kept")"#,
                    r#"StringValue("kept: a prefix of the target")"#,
                    r#"StringValue("kept: app::db is at debug")"#,
                ],
                "{filter}, file {file}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_restarts_gets_what_was_sent_while_it_was_down() {
    let first = OtlpSink::start().await.unwrap();
    let addr: std::net::SocketAddr = first.endpoint()["http://".len()..].parse().unwrap();
    let vars = sink_vars(
        &first,
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_LOGS_EXPORTER", "none"),
            ("INV_SHUTDOWN_TIMEOUT_MS", "15000"),
        ],
    );
    let (dispatch, guard) = Telemetry::builder(config(&vars)).build().unwrap();
    let span = |name: &'static str| {
        tracing::dispatcher::with_default(&dispatch, || {
            let _s = tracing::info_span!("work", step = name).entered();
        });
    };
    span("before");
    let arrived = first
        .wait_until(std::time::Duration::from_secs(10), |r| r.spans().len() == 1)
        .await;
    assert!(arrived, "the first span reaches the first receiver");
    drop(first);
    span("while down");
    // Long enough for the export to fail and be retried at least once.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let second = OtlpSink::start_with(otlp_sink::SinkOptions {
        addr: Some(addr),
        ..Default::default()
    })
    .await
    .unwrap();
    let report = tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .unwrap();
    assert_eq!(report.spans_dropped, 0, "{report}");
    assert!(
        report.exports_failed > 0,
        "the collector was down: {report}"
    );
    let received = second.received().spans();
    let steps: Vec<_> = received
        .iter()
        .filter_map(|s| attr(&s.span.attributes, "step"))
        .collect();
    assert_eq!(steps, ["while down"]);
}
