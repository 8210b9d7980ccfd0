//! The binary: usage errors, a busy port, and a real start, request and SIGTERM.

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use assert_cmd::cargo::cargo_bin_cmd;
use inventory_api::Item;
use inventory_api::cli::{LISTENING_PREFIX, TELEMETRY_REPORT_PREFIX};
use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::ChildStdout;

/// The binary with telemetry kept local: no exports, no log file, no metrics port.
fn command() -> assert_cmd::Command {
    let mut cmd = cargo_bin_cmd!("inventory-api");
    cmd.env("OTEL_SDK_DISABLED", "true")
        .env("INV_LOG_FILE", "off")
        .env("INV_METRICS_ADDR", "off")
        .timeout(Duration::from_secs(30));
    cmd
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_exits_zero_and_lists_the_flags() {
    let output = command().arg("--help").output().expect("it runs");
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--db",
        "--seed-demo-catalog",
        "--fault-error-rate",
        "--fault-latency-ms",
        "--otlp-endpoint",
        "--metrics-addr",
        "INV_API_FAULT_ERROR_RATE",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn usage_errors_exit_64_and_name_the_flag() {
    let cases: [(&[&str], &str); 5] = [
        (&["--no-such-flag"], "--no-such-flag"),
        (&["--fault-error-rate", "2"], "--fault-error-rate"),
        (&["--fault-error-rate", "lots"], "--fault-error-rate"),
        (&["--fault-latency-ms", "60001"], "--fault-latency-ms"),
        (&["--otlp-endpoint", "localhost:4317"], "--otlp-endpoint"),
    ];
    for (args, named) in cases {
        let output = command().args(args).output().expect("it runs");
        assert_eq!(
            output.status.code(),
            Some(64),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(named),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let output = command()
        .env("INV_API_FAULT_ERROR_RATE", "-0.1")
        .output()
        .expect("it runs");
    assert_eq!(output.status.code(), Some(64), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("-0.1 is outside 0..=1"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_busy_port_is_a_clear_error_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = taken.local_addr().expect("an address");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let output = command()
        .args(["--listen", &addr.to_string(), "--db"])
        .arg(dir.path().join("inventory.db"))
        .output()
        .expect("it runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!("cannot listen on {addr}")),
        "{}",
        stderr(&output)
    );
}

/// Starts the binary on a free port with the demo catalog; returns it, its base URL, read from
/// the `listening on <url>` line it prints on stdout, and the rest of its stdout.
async fn start(
    db_dir: &Path,
    extra: &[&str],
) -> (tokio::process::Child, String, Lines<BufReader<ChildStdout>>) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_inventory-api"))
        .args(["--listen", "127.0.0.1:0", "--seed-demo-catalog", "--db"])
        .arg(db_dir.join("inventory.db"))
        .args(extra)
        .env("OTEL_SDK_DISABLED", "true")
        .env("INV_LOG_FILE", "off")
        .env("INV_METRICS_ADDR", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("it starts");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("readable stdout") {
            if let Some(url) = line.strip_prefix(LISTENING_PREFIX) {
                return Some(url.to_owned());
            }
        }
        None
    })
    .await
    .expect("it starts within 30 s")
    .expect("a listening line");
    (child, url, lines)
}

async fn exit_code(mut child: tokio::process::Child) -> Option<i32> {
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("it stops within 30 s")
        .expect("an exit status")
        .code()
}

#[tokio::test]
async fn it_seeds_serves_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (child, url, _) = start(dir.path(), &[]).await;

    let item: Item = reqwest::get(format!("{url}/items/WH-50/SKU-00200"))
        .await
        .expect("it answers")
        .json()
        .await
        .expect("an item");
    assert_eq!((item.name.as_str(), item.quantity), ("Item 00200", 1000));

    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    assert_eq!(exit_code(child).await, Some(0));
}

#[tokio::test]
async fn it_stops_cleanly_when_stdin_closes_if_asked_to() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (mut child, url, mut stdout) = start(dir.path(), &["--exit-on-stdin-close"]).await;
    let ready = reqwest::get(format!("{url}/readyz"))
        .await
        .expect("it answers");
    assert_eq!(ready.status(), 200);
    drop(child.stdin.take());
    assert_eq!(exit_code(child).await, Some(0));

    // Its last line on stdout is its telemetry report, for a parent to fold into its own.
    let mut last = String::new();
    while let Some(line) = stdout.next_line().await.expect("readable stdout") {
        last = line;
    }
    let report: telemetry::ShutdownReport = last
        .strip_prefix(TELEMETRY_REPORT_PREFIX)
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_else(|| panic!("no telemetry report in {last:?}"));
    assert!(report.is_clean(), "{report}");
}
