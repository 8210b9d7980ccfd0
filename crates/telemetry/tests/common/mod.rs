//! Helpers shared by the telemetry library's integration tests.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses its own subset"
)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use telemetry::{Config, Defaults};

pub const SERVICE: &str = "test-svc";

/// A configuration read from `vars` only, as a binary would read it from its environment.
pub fn config(vars: &[(&str, String)]) -> Config {
    let map: HashMap<&str, String> = vars.iter().cloned().collect();
    Config::from_lookup(
        Defaults {
            service_name: SERVICE.into(),
            service_version: "9.9.9".into(),
            metrics_addr: None,
            spool_dir: None,
        },
        |k| map.get(k).cloned(),
    )
    .expect("a valid test configuration")
}

/// Sets INV_LOG_FILE in `vars`.
pub fn set_log_file(vars: &mut Vec<(&'static str, String)>, file: &str) {
    vars.retain(|(k, _)| *k != "INV_LOG_FILE");
    vars.push(("INV_LOG_FILE", file.to_owned()));
}

/// "off", then a file in `dir`: the OTel layer alone runs on a subscriber of its own, beside
/// the JSON file on tracing's registry; both must send the same.
pub fn log_files(dir: &tempfile::TempDir) -> [String; 2] {
    [
        "off".to_owned(),
        dir.path().join("app.log").display().to_string(),
    ]
}

/// A minimal HTTP/1.1 GET, enough for the library's own endpoint: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
