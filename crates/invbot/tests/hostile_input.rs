//! `invbot run` on files that are not what it expects, and on an API that answers with hostile
//! error bodies: each bad row is rejected with its line and reason while the others are applied,
//! a file with no readable row is refused with one clear message, memory stays bounded, and
//! nothing printed carries a control character from the input or the API.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use assert_cmd::Command;

/// `invbot` with no telemetry to export and no files or ports beside its own output.
fn invbot_process() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_invbot"));
    cmd.env_remove("INV_INPUT")
        .env_remove("INV_CONSOLE_FILTER")
        .env("INV_LOG_FILE", "off")
        .env("INV_METRICS_ADDR", "off")
        .env("OTEL_SDK_DISABLED", "true");
    cmd
}

fn invbot() -> Command {
    let mut cmd = Command::from_std(invbot_process());
    cmd.timeout(Duration::from_secs(120));
    cmd
}

/// `invbot run` on `input` in `dir`, rejects to `dir/rejects.csv`, a JSON summary on stdout.
fn run(dir: &Path, input: &[u8], name: &str, extra: &[&str]) -> Output {
    std::fs::write(dir.join(name), input).expect("write the input");
    invbot()
        .current_dir(dir)
        .args(["run", "--no-progress", "--json", "--input", name])
        .args(["--rejects", "rejects.csv", "--state-dir", "state"])
        .args(extra)
        .output()
        .expect("run invbot")
}

fn summary(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON summary ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Nothing on either stream that a terminal would act on: no C0 control but tab and line end, no
/// DEL, no C1 control (UTF-8 encoded or raw), no bidi override.
fn assert_terminal_safe(out: &Output) {
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        let bad = text.char_indices().find(|&(_, c)| {
            (c.is_control() && c != '\n' && c != '\t') || ('\u{202a}'..='\u{202e}').contains(&c)
        });
        assert!(bad.is_none(), "{name} holds {bad:?}: {text}");
        assert!(!bytes.contains(&0x9b), "{name} holds a raw C1 CSI byte");
    }
}

fn count(s: &serde_json::Value, key: &str) -> u64 {
    s[key].as_u64().unwrap_or_else(|| panic!("{key} in {s}"))
}

/// Runs `invbot run` on `input`; it must refuse the file (exit 64), saying `needle`.
fn assert_refused(input: &[u8], name: &str, needle: &str) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = run(dir.path(), input, name, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains(&format!("invbot: cannot read input file {name}: {needle}")),
        "{err}"
    );
    assert_terminal_safe(&out);
}

#[test]
fn each_hostile_row_is_rejected_alone_and_the_others_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    let huge = "S".repeat(100_000);
    let rows: Vec<Vec<u8>> = vec![
        b"h1,WH-01,SKU-00001,receive,5".to_vec(),
        b"h2,WH-01,SKU-00002,receive,\xff\xfe".to_vec(),
        b"h3,WH-01,\x1b[31mSKU-00003,receive,5".to_vec(),
        format!("h4,WH-01,{huge},receive,5").into_bytes(),
        b"h5,WH-01,SKU-00005,receive,9223372036854775808".to_vec(),
        b"h6,WH-01,SKU-00006,receive".to_vec(),
        b"h7,WH-01,SKU-00007,receive,5,extra".to_vec(),
        b"h8,WH-01,SKU-00008,adjust,-9223372036854775808".to_vec(),
        b"h9,WH-01,SKU-00009,ship,2".to_vec(),
    ];
    // A BOM and CRLF line ends, as a spreadsheet writes them.
    let mut input = "\u{feff}txn_id,warehouse_id,sku,operation,quantity\r\n"
        .as_bytes()
        .to_vec();
    for row in &rows {
        input.extend(row);
        input.extend(b"\r\n");
    }
    let out = run(dir.path(), &input, "rows.csv", &[]);
    let s = summary(&out);
    assert_eq!(out.status.code(), Some(3), "{s}");
    assert_eq!(
        [
            count(&s, "rows_read"),
            count(&s, "applied"),
            count(&s, "failed"),
            count(&s, "rejected")
        ],
        [9, 2, 1, 6],
        "{s}"
    );
    // The parser takes i64::MIN; the API refuses it cleanly instead of overflowing.
    assert_eq!(s["failures_by_reason"]["insufficient_stock"], 1, "{s}");

    let rejects = std::fs::read_to_string(dir.path().join("rejects.csv")).unwrap();
    let lines: Vec<&str> = rejects.lines().collect();
    assert_eq!(lines.len(), 7, "{rejects}");
    for (line, reason) in [
        (
            3,
            "not valid UTF-8: byte 0xff at column 28 (the file must be UTF-8)",
        ),
        (
            4,
            r"sku holds the non-printable character '\u{1b}' at position 1",
        ),
        (5, "the row is 100019 bytes long, the limit is 4096"),
        (
            6,
            "quantity is out of range: it must lie between -9223372036854775808 and \
             9223372036854775807",
        ),
        (
            7,
            "expected 5 fields (txn_id,warehouse_id,sku,operation,quantity), found 4",
        ),
        (
            8,
            "expected 5 fields (txn_id,warehouse_id,sku,operation,quantity), found 6",
        ),
    ] {
        let prefix = format!("{line},\"{reason}\",");
        assert!(
            lines.iter().any(|l| l.starts_with(&prefix)),
            "no {prefix} in {rejects}"
        );
    }
    assert!(
        rejects.contains(r#","h2,WH-01,SKU-00002,receive,\xff\xfe""#),
        "{rejects}"
    );
    // The console names each rejected row, escaped.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(r"'\u{1b}' at position 1"), "{err}");
    assert_terminal_safe(&out);
}

#[test]
fn files_with_no_readable_row_are_refused_with_one_clear_message() {
    assert_refused(
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x01\0",
        "image.csv",
        r"not a text file: line 3 has a NUL byte at column 1 (`\0\0\0\rIHDR\0\0\u{1}\0`)",
    );
    let utf16: Vec<u8> = "\u{feff}txn_id,warehouse_id\n"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    assert_refused(&utf16, "utf16.csv", "the file is UTF-16");
    assert_refused(b"", "empty.csv", "the file is empty");
    assert_refused(b"\n\n", "blank.jsonl", "the file is empty");
    assert_refused(
        b"t1,WH-01,SKU-00001,receive,5\n",
        "no-header.csv",
        "line 1: the header `t1,WH-01,SKU-00001,receive,5` names an unknown column \"t1\" \
         (is the header missing?); the header must name the columns \
         txn_id,warehouse_id,sku,operation,quantity (in any order; txn_id may be left out)",
    );
    assert_refused(
        b"txn_id,warehouse_id,sku,quantity\n",
        "short-header.csv",
        "line 1: the header `txn_id,warehouse_id,sku,quantity` lacks \"operation\"",
    );
}

/// An API stand-in that answers every request with `status` and `body`, and keeps the request
/// bodies it got.
struct HostileApi {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl HostileApi {
    fn start(status: &'static str, body: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut reader = BufReader::new(stream);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut request = vec![0; length];
                if reader.read_exact(&mut request).is_err() {
                    continue;
                }
                seen.lock()
                    .expect("no test thread panicked holding it")
                    .push(String::from_utf8_lossy(&request).into_owned());
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = reader.get_mut().write_all(response.as_bytes());
            }
        });
        Self { url, requests }
    }
}

#[test]
fn api_error_bodies_are_escaped_wherever_they_are_printed() {
    let api = HostileApi::start(
        "422 Unprocessable Entity",
        r#"{"error":"\u001b[2Jwipe","message":"\u001b]0;owned\u0007 \u009b31m red \u202e"}"#,
    );
    let dir = tempfile::tempdir().unwrap();
    // Columns in another order than the generator writes them: they are read by name.
    let input = b"sku,quantity,operation,warehouse_id\nSKU-00001,5,receive,WH-01\n";
    std::fs::write(dir.path().join("rows.csv"), input).unwrap();
    let out = invbot()
        .current_dir(dir.path())
        .args([
            "run",
            "--no-progress",
            "--input",
            "rows.csv",
            "--state-dir",
            "state",
        ])
        .args(["--api-url", &api.url, "--max-attempts", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert_eq!(
        api.requests.lock().unwrap().as_slice(),
        [r#"{"warehouse_id":"WH-01","sku":"SKU-00001","kind":"receive","quantity":5}"#]
    );
    // The summary's failure reasons and the console's failure line show the escapes.
    assert!(stdout.contains(r"failures: \u{1b}[2Jwipe 1"), "{stdout}");
    assert!(
        stderr.contains(r"HTTP 422 \u{1b}[2Jwipe: \u{1b}]0;owned\u{7} \u{9b}31m red \u{202e}"),
        "{stderr}"
    );
    assert_terminal_safe(&out);
}

/// Peak resident memory of a live process, from /proc.
#[cfg(target_os = "linux")]
fn peak_rss(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process is alive");
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .expect("VmHWM in /proc/<pid>/status");
    let kb: u64 = kb
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("VmHWM in kB");
    kb * 1024
}

/// Starts `invbot run` on a named pipe `name` in `dir`, and opens the pipe to write the input:
/// the test decides when the input ends, and measures the bot while it reads.
#[cfg(target_os = "linux")]
fn run_on_pipe(dir: &Path, name: &str, extra: &[&str]) -> (std::process::Child, std::fs::File) {
    let path = dir.join(name);
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
    let child = invbot_process()
        .current_dir(dir)
        .args(["run", "--no-progress", "--json", "--input", name])
        .args(["--state-dir", "state"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start invbot");
    let pipe = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open the pipe");
    (child, pipe)
}

#[cfg(target_os = "linux")]
#[test]
fn one_endless_line_costs_bounded_memory_and_says_what_it_is() {
    const STREAMED: usize = 256 << 20;
    const CHUNK: usize = 1 << 20;
    let api = HostileApi::start(
        "404 Not Found",
        r#"{"error":"unknown_item","message":"no"}"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let (child, mut pipe) = run_on_pipe(dir.path(), "endless.jsonl", &["--api-url", &api.url]);
    pipe.write_all(br#"{"warehouse_id":"WH-01","sku":""#)
        .unwrap();
    let chunk = vec![b'S'; CHUNK];
    for _ in 0..STREAMED / CHUNK {
        pipe.write_all(&chunk).unwrap();
    }
    // The bot has read the whole line by now but for the pipe's buffer; it holds 64 KiB of it.
    let rss = peak_rss(child.id());
    assert!(rss < 64 << 20, "peak RSS {} MB", rss >> 20);
    pipe.write_all(b"\"}\n{\"warehouse_id\":\"WH-01\",\"sku\":\"SKU-00001\",\"operation\":\"ship\",\"quantity\":1}\n")
        .unwrap();
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    let s = summary(&out);
    assert_eq!(out.status.code(), Some(3), "{s}");
    assert_eq!(
        [
            count(&s, "rows_read"),
            count(&s, "failed"),
            count(&s, "rejected")
        ],
        [2, 1, 1]
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let line = STREAMED + 33;
    assert!(
        err.contains(&format!("the row is {line} bytes long, the limit is 4096")),
        "{err}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn an_endless_csv_header_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (child, mut pipe) = run_on_pipe(dir.path(), "endless.csv", &[]);
    // The bot stops reading after the limit: writing fails once it has exited.
    let chunk = vec![b'x'; 1 << 16];
    let mut written = 0;
    while pipe.write_all(&chunk).is_ok() {
        written += chunk.len();
        assert!(
            written < 1 << 30,
            "the bot went on reading an endless header"
        );
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("line 1: cannot read the header: it is longer than 4096 bytes"),
        "{err}"
    );
}
