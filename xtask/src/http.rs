//! A tiny HTTP/1.1 GET over loopback: enough for health checks and the backends' query APIs,
//! without pulling an HTTP client stack into xtask.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// GET `url` (`http://host:port/path?query`); returns the status and the body.
pub(crate) fn get(url: &str) -> Result<(u16, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are supported"))?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let mut stream =
        TcpStream::connect(authority).with_context(|| format!("cannot connect to {authority}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer of {url}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("{url}: no HTTP header"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{url}: no status in {head:?}"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

/// GET `url`: the body of a 2xx answer, else an error with the start of the body.
fn get_ok(url: &str) -> Result<String> {
    let (status, body) = get(url)?;
    if !(200..300).contains(&status) {
        bail!(
            "{url} answered {status}: {}",
            body.chars().take(300).collect::<String>()
        );
    }
    Ok(body)
}

/// GET `url` and parse the JSON body of a 2xx answer.
pub(crate) fn get_json(url: &str) -> Result<serde_json::Value> {
    serde_json::from_str(&get_ok(url)?).with_context(|| format!("{url}: not JSON"))
}

/// Jaeger's answer for one trace id; `data` is null when it has no such trace (its 404 answer
/// carries that JSON too).
pub(crate) fn jaeger_trace(trace_id: &str) -> Result<serde_json::Value> {
    let url = format!("{}/api/traces/{trace_id}", crate::stack::url::JAEGER);
    let (status, body) = get(&url)?;
    if status != 404 && !(200..300).contains(&status) {
        bail!(
            "{url} answered {status}: {}",
            body.chars().take(300).collect::<String>()
        );
    }
    serde_json::from_str(&body).with_context(|| format!("{url}: not JSON"))
}

/// How many spans Jaeger has of one trace (0 when it has no such trace).
pub(crate) fn jaeger_span_count(trace_id: &str) -> Result<usize> {
    Ok(jaeger_trace(trace_id)?["data"][0]["spans"]
        .as_array()
        .map_or(0, Vec::len))
}

/// Jaeger's traces of one bot run (its `batch` spans' `run_id`) over the last hour, by trace id.
pub(crate) fn jaeger_run(
    run_id: &str,
) -> Result<std::collections::BTreeMap<String, serde_json::Value>> {
    let tags = encode(&serde_json::json!({ "run_id": run_id }).to_string());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // The API takes start and end in microseconds (`lookback` is only the UI's).
    let found = get_json(&format!(
        "{}/api/traces?service=invbot&tags={tags}&start={}&end={}&limit=2000",
        crate::stack::url::JAEGER,
        now.saturating_sub(Duration::from_secs(3600)).as_micros(),
        now.as_micros()
    ))?;
    Ok(found["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["traceID"].as_str()?.to_owned(), t.clone())))
        .collect())
}

/// The rows VictoriaLogs finds for a LogsQL `query` over the last `window` (its query API
/// answers JSON lines, one row each).
pub(crate) fn logsql(query: &str, window: Duration) -> Result<Vec<serde_json::Value>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let url = format!(
        "{}/select/logsql/query?query={}&start={}",
        crate::stack::url::VICTORIALOGS,
        encode(query),
        now.saturating_sub(window).as_secs()
    );
    get_ok(&url)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("{url}: not JSON lines")))
        .collect()
}

fn dechunk(mut body: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("bad chunked body")?;
        let size = usize::from_str_radix(size.trim(), 16).context("bad chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).context("short chunk")?);
        body = rest.get(size + 2..).unwrap_or_default();
    }
}

/// A collector's own counter `name` (e.g. `otelcol_receiver_accepted_spans`), summed over its
/// label sets, from its metrics endpoint on 127.0.0.1:`port`.
pub(crate) fn collector_counter(port: u16, name: &str) -> Result<f64> {
    let text = get_ok(&format!("http://127.0.0.1:{port}/metrics"))?;
    let prefix = format!("{name}{{");
    Ok(text
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Percent-encodes a query parameter value.
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `check` every 500 ms until it returns Some, or the deadline passes; the last error or
/// "not yet" reason is returned on timeout.
pub(crate) fn poll<T>(
    deadline: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        let last = match check() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => "not there yet".to_owned(),
            Err(e) => format!("{e:#}"),
        };
        if start.elapsed() >= deadline {
            bail!("gave up after {deadline:?}: {last}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
