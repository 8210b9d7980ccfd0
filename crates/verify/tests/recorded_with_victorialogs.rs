//! The verifier against responses recorded from the native stack with VictoriaLogs as the log
//! store, for run c98c31104350 (see tests/fixtures/c98c31104350/README.md), served over HTTP so
//! that the VictoriaLogs client's queries and parsing run against its real answers.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use support::{Fake, Server};
use verify::{LogStore, Report, Target, verify};

const RUN: &str = "c98c31104350";
/// Batch 2 of the run: retries, error spans, exemplars.
const T1: &str = "711d87ccbafd636ff1d469767dca7ed1";
/// Batch 6 of the run: no failure.
const T2: &str = "91da4a3efdfa3d93e438cc878833bc0a";

const QUERY: &str = "/select/logsql/query";

fn logsql(service: &str, trace_ids: &[&str]) -> String {
    let ids: Vec<String> = trace_ids.iter().map(|id| format!("\"{id}\"")).collect();
    format!(
        r#"{{service.name="{service}"}} trace_id:in({}) | stats by (trace_id, severity_text, event) count() records"#,
        ids.join(", ")
    )
}

fn fixture(path: &str) -> String {
    format!("{RUN}/{path}")
}

/// Every recorded answer, keyed by path and by what identifies the query.
fn recorded() -> Fake {
    let mut fake = Fake::default()
        .answer("/api/v1/series", "", &fixture("prometheus/series.json"))
        .answer(
            "/api/v1/query_exemplars",
            "",
            &fixture("prometheus/exemplars.json"),
        )
        .answer(
            "/api/traces",
            &format!(r#""run_id":"{RUN}""#),
            &fixture(&format!("jaeger/search-run-{RUN}.json")),
        );
    for svc in ["invbot", "inventory-api"] {
        fake = fake.answer(
            QUERY,
            &logsql(svc, &[T1, T2]),
            &fixture(&format!("victorialogs/run-{svc}.json")),
        );
        for trace_id in [T1, T2] {
            fake = fake.answer(
                QUERY,
                &logsql(svc, &[trace_id]),
                &fixture(&format!("victorialogs/{trace_id}-{svc}.json")),
            );
        }
    }
    for trace_id in [T1, T2] {
        fake = fake.answer(
            &format!("/api/traces/{trace_id}"),
            "",
            &fixture(&format!("jaeger/trace-{trace_id}.json")),
        );
    }
    fake
}

async fn check(fake: Fake, target: &str, within: Duration) -> (Server, Report) {
    let server = fake.serve().await;
    let target: Target = target.parse().expect("a trace id or run id");
    let report = verify(
        &target,
        &server.endpoints(LogStore::VictoriaLogs),
        Instant::now() + within,
    )
    .await;
    (server, report)
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

#[tokio::test]
async fn a_recorded_trace_is_complete_with_its_logs_in_victorialogs() {
    let (server, report) = check(recorded(), T1, Duration::from_secs(10)).await;
    assert!(report.is_complete(), "{report}");

    let logs = report.logs.report.as_ref().unwrap();
    assert_eq!(report.logs.backend, "VictoriaLogs");
    assert_eq!(
        logs.to_string(),
        "38 records; services invbot 21, inventory-api 17; levels error 2, info 34, warn 2\n\
         events: (none) 2, api_error 2, batch_end 1, batch_start 1, item_processed 15, \
         retry_success 2, transaction_applied 15"
    );
    assert_eq!(
        logs.by_trace[T1],
        counts(&[("invbot", 21), ("inventory-api", 17)])
    );
    // One counting query per service, over the trace's time span with 1 min before and 5 min
    // after, in whole seconds widened outwards.
    assert_eq!(
        server.params(QUERY, "query"),
        [logsql("invbot", &[T1]), logsql("inventory-api", &[T1])]
    );
    assert_eq!(server.params(QUERY, "start"), ["1796158938"]);
    assert_eq!(server.params(QUERY, "end"), ["1796159300"]);
    assert_eq!(report.logs.attempts, 1);
    assert!(
        report
            .to_string()
            .contains("\n  logs (VictoriaLogs)   38 records"),
        "{report}"
    );
}

#[tokio::test]
async fn a_run_asks_victorialogs_once_per_service_for_all_its_traces() {
    let (server, report) = check(recorded(), RUN, Duration::from_secs(10)).await;
    assert!(report.is_complete(), "{report}");
    assert_eq!(
        server.params(QUERY, "query"),
        [
            logsql("invbot", &[T1, T2]),
            logsql("inventory-api", &[T1, T2])
        ]
    );
    let logs = report.logs.report.as_ref().unwrap();
    assert_eq!(logs.records, 62);
    assert_eq!(
        logs.by_trace[T2],
        counts(&[("invbot", 13), ("inventory-api", 11)])
    );
}

#[tokio::test]
async fn victorialogs_without_the_api_records_is_named_in_missing() {
    let fake = recorded().answer(
        QUERY,
        &logsql("inventory-api", &[T1]),
        &fixture("victorialogs/empty.json"),
    );
    let (_, report) = check(fake, T1, Duration::from_millis(1500)).await;
    assert_eq!(
        report.missing(),
        [format!(
            "logs: VictoriaLogs has no records with trace_id {T1} for service inventory-api"
        )]
    );
    // Polled until the deadline, in case VictoriaLogs was still ingesting.
    assert!(report.logs.attempts > 1, "{}", report.logs.attempts);
}

#[tokio::test]
async fn a_query_victorialogs_refuses_is_reported_with_its_reason() {
    let fake = recorded().answer_with(
        StatusCode::BAD_REQUEST,
        QUERY,
        "",
        &fixture("victorialogs/bad-query.txt"),
    );
    let (_, report) = check(fake, T1, Duration::from_millis(1500)).await;
    let [message] = report.missing() else {
        panic!("one message expected: {report}")
    };
    assert!(
        message.starts_with("logs: VictoriaLogs did not answer: GET http://127.0.0.1:"),
        "{message}"
    );
    assert!(
        message.contains("answered 400 Bad Request: cannot parse `query` arg"),
        "{message}"
    );
}
