//! The alerting end to end: with fault injection raised, the error-rate alert fires in
//! Prometheus, reaches Alertmanager and the webhook, and the bot's own alert events with the same
//! name are in VictoriaLogs, carrying the trace ids of failing transactions.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bot::{self, BotRun};
use crate::http::{encode, get_json, jaeger_trace, logsql, poll};
use crate::stack::{self, Ctx, url};

const ALERT: &str = names::alert::ERROR_RATE_HIGH;
/// The environment label of the bot's series and alerts.
const ENVIRONMENT: &str = names::prometheus::label::DEPLOYMENT_ENVIRONMENT_NAME;
/// The rule's `for: 2m`, one evaluation interval, and Alertmanager's grouping wait.
const FIRING_DEADLINE: Duration = Duration::from_secs(240);

/// A webhook receiver on the address Alertmanager posts to; keeps every body it gets.
struct WebhookSink {
    bodies: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl WebhookSink {
    fn start(addr: &str) -> Result<Self> {
        let listener = TcpListener::bind(addr)
            .with_context(|| format!("cannot listen on {addr} for Alertmanager's webhook"))?;
        listener.set_nonblocking(true)?;
        let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (Arc::clone(&bodies), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Ok(body) = read_post(stream) {
                            b.lock().unwrap_or_else(|e| e.into_inner()).push(body);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        Ok(Self { bodies, stop })
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads one HTTP request with a Content-Length body and answers 200.
fn read_post(mut stream: TcpStream) -> Result<String> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut raw = Vec::new();
    let mut buf = [0_u8; 8192];
    let body_start = loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            bail!("connection closed before the headers ended");
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..body_start]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while raw.len() < body_start + length {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    Ok(String::from_utf8_lossy(&raw[body_start..]).into_owned())
}

pub(crate) fn alerts_e2e(root: &std::path::Path, ctx: &Ctx) -> Result<()> {
    stack::with_stack(ctx, "alerts-e2e", || {
        WebhookSink::start(url::WEBHOOK_ADDR).and_then(|sink| checks(root, ctx, &sink))
    })
}

fn checks(root: &std::path::Path, ctx: &Ctx, sink: &WebhookSink) -> Result<()> {
    // Half the calls fail and none is retried: far over both thresholds (5 %, and 25 % critical).
    let BotRun {
        environment,
        summary,
        ..
    } = bot::run(
        root,
        ctx,
        "alerts",
        &["--api-fault-error-rate", "0.5", "--max-attempts", "1"],
    )?;
    eprintln!(
        "xtask: alerts-e2e: run {} failed {} of {} transactions; waiting for {ALERT} (the rule holds for 2m)",
        summary["run_id"], summary["failed"], summary["rows_read"]
    );

    let severities = poll(FIRING_DEADLINE, || {
        let v = get_json(&format!("{}/api/v1/alerts", url::PROMETHEUS))?;
        let firing: Vec<String> = v["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| {
                a["labels"]["alertname"] == ALERT
                    && a["labels"][ENVIRONMENT] == environment.as_str()
                    && a["state"] == "firing"
            })
            .filter_map(|a| a["labels"]["severity"].as_str().map(str::to_owned))
            .collect();
        Ok((!firing.is_empty()).then_some(firing))
    })
    .context("Prometheus: the error-rate alert firing for this run")?;
    eprintln!(
        "xtask: alerts-e2e: Prometheus fires {ALERT} ({})",
        severities.join(", ")
    );

    let delivered = poll(Duration::from_secs(60), || {
        let alerts = get_json(&format!(
            "{}/api/v2/alerts?filter={}",
            url::ALERTMANAGER,
            encode(&format!("alertname=\"{ALERT}\""))
        ))?;
        let in_alertmanager = alerts.as_array().is_some_and(|a| {
            a.iter()
                .any(|a| a["labels"][ENVIRONMENT] == environment.as_str())
        });
        let posted = sink.bodies().into_iter().find(|body| {
            serde_json::from_str::<Value>(body).is_ok_and(|v| {
                v["status"] == "firing"
                    && v["alerts"].as_array().is_some_and(|a| {
                        a.iter().any(|a| {
                            a["labels"]["alertname"] == ALERT
                                && a["labels"][ENVIRONMENT] == environment.as_str()
                        })
                    })
            })
        });
        Ok(posted.filter(|_| in_alertmanager))
    })
    .context("Alertmanager and its webhook: the firing alert delivered")?;
    let receiver = serde_json::from_str::<Value>(&delivered)?["receiver"].clone();
    eprintln!(
        "xtask: alerts-e2e: Alertmanager delivered {ALERT} to the webhook (receiver {receiver})"
    );

    // The bot's own threshold event, same name, in the log store, inside a failing transaction's
    // trace.
    let query = format!(
        r#"{{service.name="{bot}", deployment.environment.name="{environment}"}} event:={alert_event} alertname:={ALERT} alertstate:=firing | fields trace_id"#,
        bot = names::service::BOT,
        alert_event = names::event::ALERT,
    );
    let trace_ids = poll(Duration::from_secs(60), || {
        let ids: Vec<String> = logsql(&query, Duration::from_secs(3600))?
            .iter()
            .filter_map(|r| r["trace_id"].as_str().filter(|id| !id.is_empty()))
            .map(str::to_owned)
            .collect();
        Ok((!ids.is_empty()).then_some(ids))
    })
    .context("VictoriaLogs: the bot's alert events with trace ids")?;
    for trace_id in &trace_ids {
        let trace = jaeger_trace(trace_id)?;
        let failing = trace["data"][0]["spans"].as_array().is_some_and(|spans| {
            spans.iter().any(|s| {
                s["operationName"] == names::span::ITEM
                    && s["tags"].as_array().is_some_and(|tags| {
                        tags.iter()
                            .any(|t| t["key"] == "error" && t["value"] == true)
                    })
            })
        });
        if !failing {
            bail!("the alert event's trace {trace_id} has no failing transaction in Jaeger");
        }
    }
    eprintln!(
        "xtask: alerts-e2e: VictoriaLogs has the bot's {ALERT} event(s), in traces with failing transactions: {}",
        trace_ids.join(", ")
    );
    eprintln!("xtask: alerts-e2e passed");
    Ok(())
}
