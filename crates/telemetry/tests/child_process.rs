//! A short-lived process and its exit, run as a real child process of this test binary:
//! - collector up: every span and log record the child emitted has arrived when it exits;
//! - nothing listening: init and shutdown finish within the deadline, no panic, one warning;
//! - a collector that accepts connections and never answers: shutdown still keeps its deadline.
//!
//! `harness = false`: the same binary is the parent (the test) and, with
//! TELEMETRY_TEST_CHILD=emit, the child.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use otlp_sink::OtlpSink;
use telemetry::{Config, Defaults, Telemetry};

const N: usize = 500;
const SHUTDOWN_DEADLINE_MS: u64 = 2_000;
const WARNING: &str = "cannot export telemetry to the OTLP endpoint";

fn main() {
    if std::env::var("TELEMETRY_TEST_CHILD").as_deref() == Ok("emit") {
        emit();
        return;
    }
    otlp_sink::block_on(collector_up_loses_nothing_at_exit());
    nothing_listening_gives_one_warning_and_keeps_the_deadline();
    hanging_collector_keeps_the_deadline();
    println!("child_process: 3 tests passed");
}

/// The child: N spans with a log record each, then shutdown; prints how long shutdown took.
fn emit() {
    otlp_sink::block_on(async {
        let config = Config::from_env(Defaults {
            service_name: "child".into(),
            service_version: "0.0.0".into(),
            metrics_addr: None,
            spool_dir: None,
        })
        .expect("configuration");
        let guard = Telemetry::builder(config).init().expect("init");
        for i in 0..N {
            let span = tracing::info_span!("work", i);
            let _e = span.enter();
            tracing::info!(event = "item_processed", i, "item done");
        }
        let started = Instant::now();
        let report = guard.shutdown();
        println!(
            "shutdown_ms={} report={report}",
            started.elapsed().as_millis()
        );
    });
}

fn run_child(endpoint: &str) -> (Output, u128) {
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .env_clear()
        .env("TELEMETRY_TEST_CHILD", "emit")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("INV_LOG_FILE", "off")
        .env("INV_SHUTDOWN_TIMEOUT_MS", SHUTDOWN_DEADLINE_MS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the child did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("child output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed: {stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let shutdown_ms = stdout
        .split_once("shutdown_ms=")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no shutdown time in {stdout}"));
    (output, shutdown_ms)
}

async fn collector_up_loses_nothing_at_exit() {
    let sink = OtlpSink::start().await.expect("receiver");
    let endpoint = sink.endpoint();
    let (output, _) = tokio::task::spawn_blocking(move || run_child(&endpoint))
        .await
        .expect("child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("0 spans and 0 log records not delivered"),
        "{stdout}"
    );
    // No waiting: when the child has exited, everything must already be here.
    let received = sink.received();
    assert_eq!(received.spans().len(), N);
    let logs = received.log_records();
    assert_eq!(logs.len(), N);
    assert!(logs.iter().all(|l| l.record.trace_id.len() == 16));
    println!("collector up: {N} spans and {N} log records arrived before the child exited");
}

fn nothing_listening_gives_one_warning_and_keeps_the_deadline() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let (output, shutdown_ms) = run_child(&endpoint);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.matches(WARNING).count(), 1, "{stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.contains(WARNING))
        .unwrap_or_default();
    assert!(
        warning.contains(&endpoint),
        "the warning names the endpoint: {warning}"
    );
    assert!(
        shutdown_ms <= u128::from(SHUTDOWN_DEADLINE_MS) + 300,
        "{shutdown_ms} ms"
    );
    assert!(
        stderr.contains(&format!("{N} spans and {N} log records not delivered")),
        "shutdown reports the loss: {stderr}"
    );
    println!("nothing listening: one warning, shutdown in {shutdown_ms} ms");
}

fn hanging_collector_keeps_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    // Accepts and holds connections without ever speaking HTTP/2.
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().collect();
        drop(held);
    });
    let (output, shutdown_ms) = run_child(&endpoint);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        shutdown_ms <= u128::from(SHUTDOWN_DEADLINE_MS) + 300,
        "{shutdown_ms} ms"
    );
    // The sending threads stop retrying shortly before the deadline: everything is counted.
    assert!(
        stdout.contains(&format!("{N} spans and {N} log records not delivered")),
        "{stdout}"
    );
    println!("hanging collector: shutdown gave up after {shutdown_ms} ms");
}
