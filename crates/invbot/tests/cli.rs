//! The command line: help, bad flags, bad input files, and the generator's output.

use assert_cmd::Command;

fn invbot() -> Command {
    let mut cmd = Command::cargo_bin("invbot").expect("the invbot binary");
    cmd.env_remove("INV_INPUT")
        .env("INV_LOG_FILE", "off")
        .env("INV_METRICS_ADDR", "off");
    cmd
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_lists_the_commands() {
    let out = invbot().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("run") && text.contains("generate"), "{text}");
    assert!(
        !text.contains("serve-api"),
        "internal command stays hidden: {text}"
    );
    let out = invbot().args(["run", "--help"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--api-fault-error-rate"));
}

/// Runs invbot with `args`; it must exit with the bad-usage status and say `needle`.
fn assert_usage_error<S: AsRef<std::ffi::OsStr>>(args: &[S], needle: &str) {
    let out = invbot().args(args).output().expect("run invbot");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains(needle), "{err}");
}

#[test]
fn bad_flags_are_usage_errors() {
    assert_usage_error(&["run", "--bogus"], "--bogus");
    assert_usage_error(&["run", "--batch-size", "0"], "--batch-size");
    assert_usage_error(
        &["generate", "--malformed", "2"],
        "not a share between 0 and 1",
    );
    assert_usage_error(&["frobnicate"], "frobnicate");
    assert_usage_error(
        &["run", "--otlp-endpoint", "localhost:4317"],
        "needs a scheme",
    );
}

#[test]
fn missing_or_unreadable_input_is_a_clear_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.csv");
    fn run(input: &std::path::Path) -> [&std::ffi::OsStr; 3] {
        ["run".as_ref(), "--input".as_ref(), input.as_os_str()]
    }
    assert_usage_error(&run(&missing), "cannot read input file");
    assert_usage_error(&run(&missing), "nope.csv");
    // A directory opens but cannot be read as a file.
    assert_usage_error(&run(dir.path()), "cannot read input file");
}

#[test]
fn verify_needs_a_valid_target() {
    assert_usage_error(&["verify", "--trace-id", "xyz"], "is not a trace id");
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "verify".as_ref(),
        "--state-dir".as_ref(),
        dir.path().as_os_str(),
    ];
    assert_usage_error(&args, "no last run recorded");
}

#[test]
fn generate_is_reproducible_and_writes_the_header() {
    let run = |seed: &str| {
        let out = invbot()
            .args(["generate", "--rows", "20", "--seed", seed])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let a = run("3");
    assert_eq!(a.lines().count(), 21);
    assert_eq!(
        a.lines().next(),
        Some("txn_id,warehouse_id,sku,operation,quantity")
    );
    assert_eq!(a, run("3"));
    assert_ne!(a, run("4"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.jsonl");
    let out = invbot()
        .args(["generate", "--rows", "10", "--format", "jsonl", "--output"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 10);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["sku"].as_str().unwrap().starts_with("SKU-"));
    }
}

/// A first run on a fresh machine, with no collector: the log directory is created without a
/// complaint, and export trouble is one line of the summary, counted, saying what to do.
#[test]
fn without_a_collector_the_run_goes_on_and_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let out = invbot()
        .current_dir(dir.path())
        .env_remove("INV_LOG_FILE")
        .env_remove("INV_CONSOLE_FILTER")
        .env("INV_SHUTDOWN_TIMEOUT_MS", "2000")
        .args(["run", "--no-progress", "--otlp-endpoint", &endpoint])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the sample has rejected rows: {err}"
    );
    for alarming in [
        "Error reading the log directory",
        "telemetry",
        "OTLP",
        "Failed to shutdown",
    ] {
        assert!(!err.contains(alarming), "{alarming:?} on stderr:\n{err}");
    }
    assert!(dir.path().join("logs").is_dir());
    let summary = String::from_utf8_lossy(&out.stdout);
    let line: Vec<_> = summary
        .lines()
        .filter(|l| l.contains("telemetry"))
        .collect();
    assert_eq!(line.len(), 1, "{summary}");
    let line = line[0];
    assert!(
        line.contains(&format!("no collector answered at {endpoint}"))
            && line.contains("the run went on")
            && line.contains("cargo xtask stack up"),
        "{line}"
    );
    // Nothing is lost: what could not be sent is kept, counted, for the next run.
    let kept = line
        .split_once("kept for the next run in .invbot/telemetry-spool: ")
        .map(|(_, rest)| rest.split_whitespace().collect::<Vec<_>>());
    let count_of = |what: &str| {
        let words = kept.as_ref()?;
        let pair = words.windows(2).find(|pair| pair[1].starts_with(what))?;
        pair[0].parse::<u64>().ok()
    };
    assert!(
        line.contains("0 spans and 0 log records not delivered")
            && count_of("spans") > Some(0)
            && count_of("log") > Some(0)
            && line.contains("`invbot telemetry flush`"),
        "{line}"
    );
    assert!(dir.path().join(".invbot/telemetry-spool").is_dir());
}

/// `invbot <command> --trace-id <id> --timeout-secs 1 <args>` with every backend URL on a port
/// where nothing listens.
fn against_closed_ports(command: &str, args: &[&std::ffi::OsStr]) -> std::process::Output {
    let closed = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        format!("http://{}", l.local_addr().expect("its address"))
    };
    invbot()
        .args([
            command,
            "--trace-id",
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "--timeout-secs",
            "1",
        ])
        .args([
            "--jaeger-url",
            &closed(),
            "--logs-url",
            &closed(),
            "--prometheus-url",
            &closed(),
        ])
        .args(args)
        .output()
        .expect("run invbot")
}

#[test]
fn verify_names_every_missing_pillar_when_no_backend_answers() {
    // Every pillar is reported missing, and the exit status says so.
    let out = against_closed_ports("verify", &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("traces:") && report.contains("Jaeger"),
        "{report}"
    );
}

#[test]
fn report_is_written_even_when_no_backend_answers() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("nested/report.html");
    let out = against_closed_ports("report", &["-o".as_ref(), page.as_os_str()]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("0 batches") && said.contains("traces:"),
        "{said}"
    );
    let html = std::fs::read_to_string(&page).expect("the page is written");
    assert!(html.contains("invbot trace 4bf92f3577b34da6a3ce929d0e0e4736"));
    assert!(html.contains(r#"data-encoding="gzip-base64""#));
    assert!(!html.contains("{{"), "every placeholder is filled");
}

#[test]
fn report_needs_a_valid_target() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "report".as_ref(),
        "--state-dir".as_ref(),
        dir.path().as_os_str(),
    ];
    assert_usage_error(&args, "no last run recorded");
}
