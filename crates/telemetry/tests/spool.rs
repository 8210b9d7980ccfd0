//! The spool: what a process could not deliver is kept on disk, counted, and sent by the next
//! process with the same spool, as it was (its resource and timestamps); the spool's bounds
//! drop or delete what is past them, counted too.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::config;
use otlp_sink::{OtlpSink, SinkOptions, attr};
use telemetry::{ShutdownReport, SignalCounts, Telemetry};

/// An address nothing listens on (yet).
fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("its address")
}

fn vars(
    addr: SocketAddr,
    spool: &Path,
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
        ("INV_TELEMETRY_SPOOL", spool.display().to_string()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "600000".into()),
        ("INV_SHUTDOWN_TIMEOUT_MS", "3000".into()),
        ("INV_LOG_CONSOLE", "false".into()),
        ("INV_LOG_FILE", "off".into()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    vars
}

/// Telemetry set up from `vars` and shut down at once: what a flush does.
async fn flush(vars: &[(&'static str, String)]) -> ShutdownReport {
    let (_dispatch, guard) = Telemetry::builder(config(vars)).build().expect("telemetry");
    tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .expect("shutdown")
}

fn spool_config(dir: &Path) -> telemetry::SpoolConfig {
    config(&vars(free_addr(), dir, &[]))
        .export
        .spool
        .expect("a spool")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_a_collector_keeps_its_telemetry_and_the_next_process_sends_it() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let (dispatch, guard) = Telemetry::builder(config(&vars(addr, dir.path(), &[])))
        .build()
        .unwrap();
    let items = guard.meter("test").u64_counter("test.items").build();
    tracing::dispatcher::with_default(&dispatch, || {
        for step in 0..3_i64 {
            let _s = tracing::info_span!("work", step).entered();
            if step < 2 {
                tracing::info!(step, "done");
            }
            items.add(1, &[]);
        }
    });
    let first = tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .unwrap();
    assert_eq!(
        (
            first.spans_dropped,
            first.logs_dropped,
            first.metric_points_dropped
        ),
        (0, 0, 0),
        "nothing is lost: {first}"
    );
    assert_eq!((first.spooled.spans, first.spooled.logs), (3, 2), "{first}");
    assert!(first.spooled.metric_points >= 1, "{first}");
    assert_eq!(
        first.spool_dir.as_deref(),
        Some(&*dir.path().display().to_string())
    );
    let spool = spool_config(dir.path());
    assert_eq!(telemetry::spool_pending(&spool).unwrap(), first.spooled);

    let sink = OtlpSink::start_with(SinkOptions {
        addr: Some(addr),
        ..Default::default()
    })
    .await
    .unwrap();
    let second = flush(&vars(addr, dir.path(), &[])).await;
    assert_eq!(second.resent, first.spooled, "{second}");
    assert!(
        second.spool_lost.is_zero() && second.spooled.is_zero(),
        "{second}"
    );
    assert_eq!(
        telemetry::spool_pending(&spool).unwrap(),
        SignalCounts::default()
    );

    let received = sink.received();
    let spans = received.spans();
    let mut steps: Vec<_> = spans
        .iter()
        .filter_map(|s| attr(&s.span.attributes, "step"))
        .collect();
    steps.sort();
    assert_eq!(steps, ["0", "1", "2"]);
    assert_eq!(received.log_records().len(), 2);
    let counted: Vec<_> = received
        .metrics()
        .into_iter()
        .filter(|(_, m)| m.name == "test.items")
        .collect();
    assert_eq!(counted.len(), 1, "the first process's counter, once");
    // Kept as it was: the first process's resource, not the sender's.
    let instance = |r: &otlp_sink::Resource| attr(&r.attributes, "service.instance.id");
    let first_instance = instance(&spans[0].resource);
    assert!(first_instance.is_some());
    assert_eq!(instance(&counted[0].0), first_instance);
    assert!(
        received
            .metrics()
            .iter()
            .any(|(r, _)| instance(r) != first_instance),
        "the second process's own metrics carry its own instance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_drops_what_does_not_fit_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let extra = [
        ("INV_TELEMETRY_SPOOL_MAX_MB", "1"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "64"),
        ("OTEL_LOGS_EXPORTER", "none"),
        ("OTEL_METRICS_EXPORTER", "none"),
    ];
    let (dispatch, guard) = Telemetry::builder(config(&vars(free_addr(), dir.path(), &extra)))
        .build()
        .unwrap();
    let filler = "x".repeat(1000);
    let emitted = 3000;
    tracing::dispatcher::with_default(&dispatch, || {
        for _ in 0..emitted {
            let _s = tracing::info_span!("work", filler = filler.as_str()).entered();
        }
    });
    let report = tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .unwrap();
    assert!(
        report.spooled.spans > 0 && report.spans_dropped > 0,
        "{report}"
    );
    assert_eq!(
        report.spooled.spans + report.spans_dropped,
        emitted,
        "{report}"
    );
    let pending = telemetry::spool_pending(&spool_config(dir.path())).unwrap();
    assert_eq!(pending.spans, report.spooled.spans);
    let size: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(size <= 1024 * 1024, "the spool holds {size} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_requests_past_the_age_bound_are_deleted_unsent_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    // Written in 1970 by process 1: 7 spans.
    std::fs::write(
        dir.path().join("traces-0000000000001-1-000000-7.pb"),
        b"old",
    )
    .unwrap();
    let sink = OtlpSink::start().await.unwrap();
    let addr = sink.endpoint()["http://".len()..].parse().unwrap();
    let report = flush(&vars(addr, dir.path(), &[])).await;
    assert_eq!(report.spool_lost.spans, 7, "{report}");
    assert!(report.resent.is_zero(), "{report}");
    assert!(sink.received().traces.is_empty(), "nothing old is sent");
    assert!(
        !dir.path()
            .join("traces-0000000000001-1-000000-7.pb")
            .exists()
    );
    assert!(
        report.to_string().contains("deleted from the spool unsent"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_goes_away_for_good_leaves_the_rest_in_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let sink = OtlpSink::start().await.unwrap();
    let addr: SocketAddr = sink.endpoint()["http://".len()..].parse().unwrap();
    let extra = [
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("OTEL_LOGS_EXPORTER", "none"),
        ("OTEL_METRICS_EXPORTER", "none"),
        ("INV_SHUTDOWN_TIMEOUT_MS", "1500"),
    ];
    let (dispatch, guard) = Telemetry::builder(config(&vars(addr, dir.path(), &extra)))
        .build()
        .unwrap();
    let span = |step: &'static str| {
        tracing::dispatcher::with_default(&dispatch, || {
            let _s = tracing::info_span!("work", step).entered();
        });
    };
    span("delivered");
    assert!(
        sink.wait_until(Duration::from_secs(10), |r| r.spans().len() == 1)
            .await
    );
    drop(sink);
    span("kept");
    let started = std::time::Instant::now();
    let report = tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .unwrap();
    // Retried until shortly before the deadline, then kept: shutdown keeps to its deadline.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    // "kept" at least; "delivered" too when the receiver stopped before its answer left
    // (delivery is at least once).
    assert!(
        report.spooled.spans >= 1 && report.spans_dropped == 0,
        "{report}"
    );
    assert!(!report.timed_out, "{report}");
    let again = OtlpSink::start_with(SinkOptions {
        addr: Some(addr),
        ..Default::default()
    })
    .await
    .unwrap();
    let sent = flush(&vars(addr, dir.path(), &extra)).await;
    assert_eq!(sent.resent.spans, report.spooled.spans, "{sent}");
    let steps: Vec<_> = again
        .received()
        .spans()
        .iter()
        .filter_map(|s| attr(&s.span.attributes, "step"))
        .collect();
    assert!(steps.iter().any(|s| s == "kept"), "{steps:?}");
}
