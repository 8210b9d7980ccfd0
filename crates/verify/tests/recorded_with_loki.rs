//! The verifier against responses recorded from the live backends for run f90cfe020813, when the
//! pipeline's log store was Loki (see tests/fixtures/f90cfe020813/README.md), served over HTTP so
//! that each backend's client and parsing run: the Jaeger and Prometheus clients in depth, and the
//! Loki client that `--logs-backend loki` uses.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use support::{Fake, Server};
use verify::prometheus::Exemplars;
use verify::{LogStore, Report, Target, verify};

const RUN: &str = "f90cfe020813";
/// Batch 6 of the run: retries, error spans, and one exemplar in Prometheus.
const T1: &str = "29d149cdaad50f586e83ef5b13d1457c";
/// Batch 50 of the run: no exemplar in Prometheus.
const T2: &str = "ab825150e6d2dd25701d03520eb6852c";
const BOT_INSTANCE: &str = "f43871ae-6048-4938-b723-395d53035b9f";
const API_INSTANCE: &str = "c10cfd79-9bf4-45bb-8f9f-a7e5269b9f24";
const UNKNOWN: &str = "00000000000000000000000000000001";

const LOKI: &str = "/loki/api/v1/query_range";
/// Without the bot's spans in Jaeger there is nothing to tie Prometheus series to the run.
const NO_BOT_INSTANCE: &str =
    "metrics: Jaeger has no service.instance.id of invbot, so the run's series cannot be selected";

fn logql(service: &str, trace_id: &str) -> String {
    format!(r#"{{service_name="{service}"}} | trace_id="{trace_id}""#)
}

/// Every recorded answer, keyed by path and by what identifies the query.
fn recorded() -> Fake {
    let mut fake = Fake::default()
        .answer("/api/v1/series", "", "f90cfe020813/prometheus/series.json")
        .answer(
            "/api/v1/query_exemplars",
            "",
            "f90cfe020813/prometheus/exemplars.json",
        )
        .answer(
            "/api/traces",
            &format!(r#""run_id":"{RUN}""#),
            &format!("f90cfe020813/jaeger/search-run-{RUN}.json"),
        );
    for svc in ["invbot", "inventory-api"] {
        fake = fake.answer(
            LOKI,
            &format!(r#"{{service_name="{svc}"}} | trace_id=~"#),
            &format!("f90cfe020813/loki/run-{svc}.json"),
        );
        for trace_id in [T1, T2] {
            fake = fake.answer(
                LOKI,
                &logql(svc, trace_id),
                &format!("f90cfe020813/loki/{trace_id}-{svc}.json"),
            );
        }
    }
    for trace_id in [T1, T2] {
        fake = fake.answer(
            &format!("/api/traces/{trace_id}"),
            "",
            &format!("f90cfe020813/jaeger/trace-{trace_id}.json"),
        );
    }
    fake
}

async fn check(server: &Server, target: &str, within: Duration) -> Report {
    let target: Target = target.parse().expect("a trace id or run id");
    verify(
        &target,
        &server.endpoints(LogStore::Loki),
        Instant::now() + within,
    )
    .await
}

/// The recorded answers for `target`, which must make it complete.
async fn complete(target: &str) -> (Server, Report) {
    let server = recorded().serve().await;
    let report = check(&server, target, Duration::from_secs(10)).await;
    assert!(report.is_complete(), "{report}");
    (server, report)
}

/// `fake`'s answers for `target`, which leave it incomplete: polled until a short deadline.
async fn incomplete(fake: Fake, target: &str) -> (Server, Report) {
    let server = fake.serve().await;
    let report = check(&server, target, Duration::from_millis(1500)).await;
    assert!(!report.is_complete(), "{report}");
    (server, report)
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

#[tokio::test]
async fn a_recorded_trace_is_complete_in_all_three_pillars() {
    let (server, report) = complete(T1).await;

    let traces = report.traces.report.as_ref().unwrap();
    let [trace] = traces.traces.as_slice() else {
        panic!("one trace expected: {traces:?}")
    };
    assert_eq!(trace.span_count, 59);
    assert_eq!(
        trace.services,
        counts(&[("invbot", 33), ("inventory-api", 26)])
    );
    assert_eq!(
        trace.span_names,
        counts(&[
            ("POST /transactions", 32),
            ("batch", 1),
            ("item", 11),
            ("retry", 5),
            ("sqlite apply_transaction", 10),
        ])
    );
    assert_eq!(trace.roots, ["batch"]);
    assert_eq!(
        (trace.orphans, trace.cross_service_links, trace.error_spans),
        (0, 16, 13)
    );
    assert!(trace.instances["invbot"].contains(BOT_INSTANCE));
    assert!(trace.instances["inventory-api"].contains(API_INSTANCE));

    let logs = report.logs.report.as_ref().unwrap();
    assert_eq!(
        logs.to_string().lines().next(),
        Some("37 records; services invbot 21, inventory-api 16; levels error 7, info 24, warn 6")
    );
    assert_eq!(logs.by_event["item_processed"], 11);
    assert_eq!(logs.by_event["transaction_applied"], 10);
    // The API's injected-fault errors are logged without an `event` attribute.
    assert_eq!(logs.by_event["(none)"], 6);
    // The exact LogQL, over the trace's time span with 1 min before and 5 min after.
    assert_eq!(
        server.params(LOKI, "query"),
        [logql("invbot", T1), logql("inventory-api", T1)]
    );
    assert_eq!(server.params(LOKI, "start"), ["1795331612758976000"]);
    assert_eq!(server.params(LOKI, "end"), ["1795331973119101000"]);

    let metrics = report.metrics.report.as_ref().unwrap();
    assert_eq!(metrics.run_series.len(), 4);
    assert!(
        metrics.run_series.contains(
            &r#"invbot_transactions_total{operation="ship",outcome="applied"}"#.to_owned()
        ),
        "{:?}",
        metrics.run_series
    );
    assert_eq!(metrics.spanmetrics_series["invbot"].len(), 6);
    assert_eq!(metrics.spanmetrics_series["inventory-api"].len(), 4);
    let Exemplars::Found { exemplars } = &metrics.exemplars else {
        panic!("an exemplar of {T1} expected: {:?}", metrics.exemplars)
    };
    let [e] = exemplars.as_slice() else {
        panic!("one exemplar expected: {exemplars:?}")
    };
    assert_eq!(
        (
            e.trace_id.as_str(),
            e.service.as_str(),
            e.span_name.as_str(),
            e.le.as_str()
        ),
        (T1, "invbot", "item", "0.5")
    );
    assert_eq!(
        server.params("/api/v1/series", "match[]"),
        [
            format!(r#"invbot_transactions_total{{service_instance_id="{BOT_INSTANCE}"}}"#),
            format!(
                r#"traces_span_metrics_calls_total{{service_name="invbot",service_instance_id="{BOT_INSTANCE}"}}"#
            ),
            format!(
                r#"traces_span_metrics_calls_total{{service_name="inventory-api",service_instance_id="{API_INSTANCE}"}}"#
            ),
        ]
    );
    assert_eq!(
        server.params("/api/v1/query_exemplars", "query"),
        [format!(
            r#"traces_span_metrics_duration_seconds_bucket{{service_name="invbot",service_instance_id="{BOT_INSTANCE}"}} or traces_span_metrics_duration_seconds_bucket{{service_name="inventory-api",service_instance_id="{API_INSTANCE}"}}"#
        )]
    );
    assert_eq!(server.params("/api/v1/series", "start"), ["1795331612.759"]);

    // Complete at the first try: nothing to wait for.
    let attempts = [
        report.traces.attempts,
        report.logs.attempts,
        report.metrics.attempts,
    ];
    assert_eq!(attempts, [1, 1, 1]);

    let text = report.to_string();
    assert!(
        text.starts_with(&format!(
            "trace {T1}: complete in traces, logs and metrics\n"
        )),
        "{text}"
    );
    assert!(text.contains("16 parent links cross services"), "{text}");
    assert!(
        text.contains("1 exemplars of the target: invbot item le=0.5"),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["target"]["trace"], T1);
    assert_eq!(json["missing"], serde_json::json!([]));
    assert_eq!(json["metrics"]["report"]["exemplars"]["status"], "found");
}

#[tokio::test]
async fn loki_without_the_api_records_is_named_in_missing() {
    let (_, report) = incomplete(
        recorded().answer(
            LOKI,
            &logql("inventory-api", T1),
            "f90cfe020813/loki/empty.json",
        ),
        T1,
    )
    .await;
    assert_eq!(
        report.missing(),
        [format!(
            "logs: Loki has no records with trace_id {T1} for service inventory-api"
        )]
    );
    // Polled until the deadline, in case Loki was still ingesting.
    assert!(report.logs.attempts > 1, "{}", report.logs.attempts);
    let logs = report.logs.report.as_ref().unwrap();
    assert_eq!(logs.services, counts(&[("invbot", 21)]));
    let text = report.to_string();
    assert!(
        text.starts_with(&format!("trace {T1}: 1 missing\n")),
        "{text}"
    );
    assert!(
        text.ends_with(&format!(
            "missing:\n  - logs: Loki has no records with trace_id {T1} for service inventory-api\n"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn a_trace_without_an_exemplar_is_complete_and_says_so() {
    let (_, report) = complete(T2).await;
    let metrics = report.metrics.report.as_ref().unwrap();
    // The run's other traces have 16 exemplars; the collector kept none of this one.
    assert!(
        matches!(
            metrics.exemplars,
            Exemplars::NoneForTarget {
                of_other_traces: 16
            }
        ),
        "{:?}",
        metrics.exemplars
    );
    assert!(
        report
            .to_string()
            .contains("no exemplar for the target's traces (16 of other traces"),
        "{report}"
    );
}

#[tokio::test]
async fn a_run_id_resolves_to_its_traces_through_jaeger() {
    let (server, report) = complete(RUN).await;
    assert_eq!(report.target, Target::Run(RUN.into()));

    assert_eq!(server.params("/api/traces", "service"), ["invbot"]);
    assert_eq!(
        server.params("/api/traces", "tags"),
        [format!(r#"{{"run_id":"{RUN}"}}"#)]
    );
    assert_eq!(server.params("/api/traces", "limit"), ["1000"]);
    let traces = report.traces.report.as_ref().unwrap();
    let mut ids: Vec<&str> = traces.traces.iter().map(|t| t.trace_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, [T1, T2]);

    // One LogQL per service for all the run's traces.
    assert_eq!(
        server.params(LOKI, "query"),
        [
            format!(r#"{{service_name="invbot"}} | trace_id=~"{T1}|{T2}""#),
            format!(r#"{{service_name="inventory-api"}} | trace_id=~"{T1}|{T2}""#),
        ]
    );
    let logs = report.logs.report.as_ref().unwrap();
    assert_eq!(logs.records, 51);
    assert_eq!(
        logs.by_trace[T2],
        counts(&[("invbot", 8), ("inventory-api", 6)])
    );

    let metrics = report.metrics.report.as_ref().unwrap();
    let Exemplars::Found { exemplars } = &metrics.exemplars else {
        panic!("{:?}", metrics.exemplars)
    };
    assert!(exemplars.iter().all(|e| e.trace_id == T1), "{exemplars:?}");
}

#[tokio::test]
async fn a_trace_with_only_api_spans_fails_the_traces_pillar() {
    // What Jaeger shows while the bot's spans are still on their way: the API's spans, orphans.
    let (server, report) = incomplete(
        recorded().answer(
            &format!("/api/traces/{T2}"),
            "",
            &format!("f90cfe020813/jaeger/trace-{T2}-api-only.json"),
        ),
        T2,
    )
    .await;
    assert_eq!(
        report.missing(),
        [
            format!("traces: trace {T2} has no spans of invbot"),
            format!(
                "traces: trace {T2} has no parent link across services (no span is the child \
                 of another service's span)"
            ),
            format!("traces: trace {T2} has root spans [], expected one `batch`"),
            format!("traces: trace {T2} has 6 spans whose parent is not in Jaeger"),
            NO_BOT_INSTANCE.to_owned(),
        ]
    );
    assert!(report.traces.attempts > 1);
    // Logs are looked for only where Jaeger saw spans.
    assert_eq!(server.params(LOKI, "query"), [logql("inventory-api", T2)]);
}

#[tokio::test]
async fn an_unknown_trace_is_missing_in_every_pillar() {
    let (server, report) = incomplete(
        recorded()
            .answer_with(
                StatusCode::NOT_FOUND,
                &format!("/api/traces/{UNKNOWN}"),
                "",
                "f90cfe020813/jaeger/trace-not-found.json",
            )
            .answer(LOKI, UNKNOWN, "f90cfe020813/loki/empty.json"),
        UNKNOWN,
    )
    .await;
    assert_eq!(
        report.missing(),
        [
            format!("traces: Jaeger has no trace {UNKNOWN}"),
            format!("logs: Loki has no records with trace_id {UNKNOWN} for service invbot"),
            format!("logs: Loki has no records with trace_id {UNKNOWN} for service inventory-api"),
            NO_BOT_INSTANCE.to_owned(),
        ]
    );
    // Without a trace there is no window from Jaeger: Loki is asked over the last 24 hours.
    let start: u128 = server.params(LOKI, "start")[0].parse().unwrap();
    let end: u128 = server.params(LOKI, "end")[0].parse().unwrap();
    assert_eq!(end - start, 24 * 3600 * 1_000_000_000);
}

#[tokio::test]
async fn an_unreachable_backend_did_not_answer() {
    let server = recorded().serve().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let endpoints = verify::Endpoints {
        prometheus: closed.clone(),
        ..server.endpoints(LogStore::Loki)
    };
    let target: Target = T2.parse().expect("a trace id");
    let report = verify(
        &target,
        &endpoints,
        Instant::now() + Duration::from_millis(1500),
    )
    .await;
    let [message] = report.missing() else {
        panic!("one message expected: {report}")
    };
    assert!(
        message.starts_with(&format!(
            "metrics: Prometheus did not answer: GET {closed}/api/v1/series?match%5B%5D="
        )),
        "{message}"
    );
    assert!(report.metrics.report.is_none());
    assert!(
        report
            .to_string()
            .contains("metrics (Prometheus)  no answer\n"),
        "{report}"
    );
}
