//! `invbot run` as a user runs it: the bot and its embedded API as two processes, fault
//! injection on, malformed rows in the input, exporting over OTLP/gRPC to an in-process
//! receiver. Asserts the correlation contract: one trace crosses both services with the right
//! parent/child links, every event log carries its span's ids, retries and errors show in the
//! metrics, and the counts add up.

use std::collections::HashMap;
use std::path::Path;

use otlp_sink::{OtlpSink, ReceivedSpan, attr, hex_id, metric};

const ROWS: usize = 400;

struct Run {
    summary: serde_json::Value,
    exit_code: Option<i32>,
}

fn run_bot(dir: &Path, endpoint: &str, extra: &[&str]) -> Run {
    let input = dir.join("input.csv");
    let out = assert_cmd::Command::cargo_bin("invbot")
        .expect("the invbot binary")
        .args([
            "generate",
            "--rows",
            &ROWS.to_string(),
            "--seed",
            "11",
            "--malformed",
            "0.05",
            "--unknown-sku",
            "0.02",
            "--output",
        ])
        .arg(&input)
        .output()
        .expect("invbot generate");
    assert!(out.status.success());

    let out = assert_cmd::Command::cargo_bin("invbot")
        .expect("the invbot binary")
        .current_dir(dir)
        .env("INV_METRICS_ADDR", "off")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "500")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .args([
            "run",
            "--json",
            "--no-progress",
            "--input",
            "input.csv",
            "--otlp-endpoint",
            endpoint,
        ])
        .args([
            "--batch-size",
            "40",
            "--retry-base-ms",
            "1",
            "--retry-max-ms",
            "5",
        ])
        .args(extra)
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .expect("invbot run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON summary ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Run {
        summary,
        exit_code: out.status.code(),
    }
}

fn service(s: &ReceivedSpan) -> String {
    attr(&s.resource.attributes, "service.name").unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_crosses_both_services_and_every_pillar_correlates() {
    let sink = OtlpSink::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = sink.endpoint();
    let path = dir.path().to_owned();
    let run = tokio::task::spawn_blocking(move || {
        run_bot(&path, &endpoint, &["--api-fault-error-rate", "0.2"])
    })
    .await
    .unwrap();
    let s = &run.summary;

    // Counts add up; malformed rows are rejected and written aside; the exit status says so.
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k} in {s}")) as usize;
    assert_eq!(n("rows_read"), ROWS);
    assert_eq!(n("applied") + n("failed") + n("rejected"), ROWS);
    assert!(
        n("rejected") > 0 && n("failed") > 0 && n("retries") > 0,
        "{s}"
    );
    assert_eq!(run.exit_code, Some(3));
    let rejects = std::fs::read_to_string(
        s["rejects_file"]
            .as_str()
            .map(|p| dir.path().join(p))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        rejects.lines().count(),
        n("rejected") + 1,
        "header + one line per rejected row"
    );
    assert!(
        s["failures_by_reason"]["unknown_item"].as_u64().unwrap() > 0,
        "{s}"
    );

    let received = sink.received();
    let spans = received.spans();
    let by_id: HashMap<Vec<u8>, &ReceivedSpan> =
        spans.iter().map(|s| (s.span.span_id.clone(), s)).collect();
    let parent = |s: &ReceivedSpan| by_id.get(&s.span.parent_span_id).copied();

    // Every batch of the summary is one trace, rooted in its batch span.
    let batches = s["batches"].as_array().unwrap();
    assert!(batches.len() >= 5);
    for b in batches {
        let trace_id = b["trace_id"].as_str().expect("sampled batch");
        let root: Vec<_> = spans
            .iter()
            .filter(|s| hex_id(&s.span.trace_id) == trace_id && s.span.parent_span_id.is_empty())
            .collect();
        assert_eq!(root.len(), 1, "one root in {trace_id}");
        assert_eq!(
            (root[0].span.name.as_str(), service(root[0]).as_str()),
            ("batch", "invbot")
        );
        let items = spans
            .iter()
            .filter(|s| {
                s.span.name == "item"
                    && parent(s).is_some_and(|p| p.span.span_id == root[0].span.span_id)
            })
            .count();
        assert_eq!(items, b["items"].as_u64().unwrap() as usize);
    }

    // Across the HTTP hop: each API server span is the child of a bot client span in the same
    // trace, and the API's database spans are children of its server spans.
    let server: Vec<_> = spans
        .iter()
        .filter(|s| service(s) == "inventory-api" && s.span.kind == 2)
        .collect();
    assert!(
        server.len() > n("applied"),
        "at least one server span per applied item"
    );
    for s in &server {
        let p = parent(s)
            .unwrap_or_else(|| panic!("server span without a received parent: {:?}", s.span.name));
        assert_eq!(
            (service(p).as_str(), p.span.name.as_str(), p.span.kind),
            ("invbot", "POST /transactions", 3)
        );
        assert_eq!(p.span.trace_id, s.span.trace_id);
        assert_eq!(
            attr(&s.span.attributes, "http.route").as_deref(),
            Some("/transactions")
        );
    }
    let batch_traces: std::collections::HashSet<&str> = batches
        .iter()
        .filter_map(|b| b["trace_id"].as_str())
        .collect();
    let db: Vec<_> = spans
        .iter()
        .filter(|s| service(s) == "inventory-api" && s.span.kind == 3)
        .filter(|s| batch_traces.contains(hex_id(&s.span.trace_id).as_str()))
        .collect();
    assert!(!db.is_empty());
    for d in &db {
        assert_eq!(
            parent(d).map(|p| p.span.kind),
            Some(2),
            "db span under a server span"
        );
    }
    // Retries are spans of their own, with the retried call inside.
    let retries: Vec<_> = spans.iter().filter(|s| s.span.name == "retry").collect();
    assert_eq!(retries.len() as u64, s["retries"].as_u64().unwrap());
    assert!(
        retries
            .iter()
            .all(|r| parent(r).is_some_and(|p| p.span.name == "item"))
    );
    // Injected faults are error spans on both sides.
    assert!(
        server
            .iter()
            .any(|s| s.span.status.as_ref().is_some_and(|st| st.code == 2))
    );

    // Every log record written in a span carries that span's ids, in both services.
    let logs = received.log_records();
    let mut events: HashMap<String, usize> = HashMap::new();
    for log in &logs {
        let event = attr(&log.record.attributes, "event").unwrap_or_default();
        *events.entry(event.clone()).or_default() += 1;
        let in_span = !event.is_empty()
            && !matches!(event.as_str(), "run_start" | "run_end" | "item_rejected");
        if !in_span && log.record.span_id.is_empty() {
            continue; // written outside any span, e.g. start-up messages
        }
        let span = by_id
            .get(&log.record.span_id)
            .unwrap_or_else(|| panic!("{event:?} log without its span: {:?}", log.record.body));
        assert_eq!(span.span.trace_id, log.record.trace_id, "{event}");
        let expected = match event.as_str() {
            "batch_start" | "batch_end" => "batch",
            "item_processed" | "retry_success" => "item",
            "api_error" => "POST /transactions", // the api_call span, named per HTTP semconv
            _ => continue,
        };
        assert_eq!(span.span.name, expected, "{event}");
        if expected == "item" {
            assert_eq!(
                attr(&span.span.attributes, "sku"),
                attr(&log.record.attributes, "sku")
            );
        }
    }
    for e in [
        "batch_start",
        "batch_end",
        "item_processed",
        "api_error",
        "retry_success",
        "item_rejected",
        "transaction_applied",
    ] {
        assert!(
            events.get(e).copied().unwrap_or(0) > 0,
            "no {e} events: {events:?}"
        );
    }
    assert_eq!(events["item_processed"], n("applied") + n("failed"));
    assert_eq!(events["item_rejected"], n("rejected"));

    // Metrics: retries, errors by type, transactions by outcome, the API's per-route durations.
    let metrics = received.metrics();
    let sum_of = |name: &str, filter: &dyn Fn(&[otlp_sink::KeyValue]) -> bool| -> u64 {
        let (_, m) = metrics
            .iter()
            .rev()
            .find(|(_, m)| m.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        let Some(metric::Data::Sum(sum)) = &m.data else {
            panic!("{name} is a sum")
        };
        sum.data_points
            .iter()
            .filter(|p| filter(&p.attributes))
            .map(|p| match p.value {
                Some(otlp_sink::metric_value::Value::AsInt(i)) => i as u64,
                _ => 0,
            })
            .sum()
    };
    assert_eq!(
        sum_of("invbot.retries", &|_| true),
        s["retries"].as_u64().unwrap()
    );
    assert!(
        sum_of("invbot.errors", &|a| attr(a, "error.type").as_deref()
            == Some("injected_fault"))
            > 0
    );
    assert_eq!(
        sum_of("invbot.transactions", &|a| attr(a, "outcome").as_deref()
            == Some("failed")) as usize,
        n("failed")
    );
    assert_eq!(
        sum_of("invbot.rows.rejected", &|_| true) as usize,
        n("rejected")
    );
    let api_duration = metrics
        .iter()
        .find(|(r, m)| {
            m.name == "http.server.request.duration"
                && attr(&r.attributes, "service.name").as_deref() == Some("inventory-api")
        })
        .expect("the API's request duration histogram");
    let Some(metric::Data::Histogram(h)) = &api_duration.1.data else {
        panic!("a histogram")
    };
    assert!(
        h.data_points
            .iter()
            .any(|p| attr(&p.attributes, "http.route").as_deref() == Some("/transactions"))
    );
    drop(received);

    // Both services wrote local JSON logs carrying the same trace ids.
    for service in ["invbot", "inventory-api"] {
        let log = std::fs::read_dir(dir.path().join("logs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{service}."))
            })
            .unwrap_or_else(|| panic!("no JSON log file for {service}"));
        let text = std::fs::read_to_string(log).unwrap();
        let traced = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["trace_id"].is_string())
            .count();
        assert!(traced > 100, "{service}: {traced} traced lines");
    }
}

/// "N spans, M log records and P metric points" after `after` in `line`.
fn counts_after(line: &str, after: &str) -> Option<[u64; 3]> {
    let (_, rest) = line.split_once(after)?;
    let words: Vec<&str> = rest.split_whitespace().collect();
    let [spans, _, logs, _, _, _, points, ..] = words[..] else {
        return None;
    };
    Some([
        spans.parse().ok()?,
        logs.parse().ok()?,
        points.parse().ok()?,
    ])
}

/// A run with no collector keeps its telemetry, the bot's and its API's, and `invbot telemetry
/// flush` delivers all of it once a collector listens; then the spool is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_a_collector_is_delivered_by_telemetry_flush() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let endpoint = format!("http://{addr}");
    let dir = tempfile::tempdir().unwrap();
    let (path, url) = (dir.path().to_owned(), endpoint.clone());
    let run = tokio::task::spawn_blocking(move || run_bot(&path, &url, &[]))
        .await
        .unwrap();
    let line = run.summary["telemetry"].as_str().unwrap().to_owned();
    assert!(
        line.contains("0 spans and 0 log records not delivered"),
        "{line}"
    );
    let [spans, logs, points] =
        counts_after(&line, "kept for the next run in .invbot/telemetry-spool: ")
            .unwrap_or_else(|| panic!("nothing kept: {line}"));
    assert!(spans > 0 && logs > 0 && points > 0, "{line}");

    let sink = OtlpSink::start_with(otlp_sink::SinkOptions {
        addr: Some(addr),
        ..Default::default()
    })
    .await
    .unwrap();
    let (path, url) = (dir.path().to_owned(), endpoint.clone());
    let out = tokio::task::spawn_blocking(move || {
        assert_cmd::Command::cargo_bin("invbot")
            .expect("the invbot binary")
            .current_dir(path)
            .args(["telemetry", "flush", "--otlp-endpoint", &url])
            .timeout(std::time::Duration::from_secs(120))
            .output()
            .expect("invbot telemetry flush")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(
        counts_after(&stdout, "; sent "),
        Some([spans, logs, points]),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("left 0 spans, 0 log records and 0 metric points\n"),
        "{stdout}"
    );
    let received = sink.received();
    let arrived = received.spans();
    assert_eq!(arrived.len() as u64, spans);
    assert_eq!(received.log_records().len() as u64, logs);
    for name in ["invbot", "inventory-api"] {
        assert!(arrived.iter().any(|s| service(s) == name), "{name}'s spans");
    }
}
