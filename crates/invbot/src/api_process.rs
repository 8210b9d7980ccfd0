//! The embedded inventory API: `invbot run` without `--api-url` starts the API as a second
//! process (this same executable, `invbot serve-api`), so a run on a fresh machine still shows two
//! services in its traces. The API stops when its stdin closes, which also covers the bot dying.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use inventory_api::cli::{LISTENING_PREFIX, TELEMETRY_REPORT_PREFIX};
use telemetry::ShutdownReport;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// What the embedded API runs with, beyond its fixed flags.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// The bot's telemetry configuration, its flags applied.
    pub telemetry: telemetry::Config,
    /// Fault injection: the bot's `--api-fault-error-rate` and `--api-fault-latency-ms`.
    pub fault_error_rate: Option<f64>,
    pub fault_latency_ms: Option<u64>,
}

#[derive(Debug)]
pub struct ApiProcess {
    child: Child,
    pub url: String,
    /// Reads the rest of its stdout, up to the telemetry report it prints as it exits.
    report: JoinHandle<Option<ShutdownReport>>,
}

impl ApiProcess {
    /// Starts the API on a free loopback port with the demo catalog.
    pub async fn start(state_dir: &Path, settings: &ApiSettings) -> Result<Self> {
        std::fs::create_dir_all(state_dir).with_context(|| {
            format!("cannot create the state directory {}", state_dir.display())
        })?;
        let exe = std::env::current_exe().context("cannot find the invbot executable")?;
        let mut command = Command::new(exe);
        command
            .arg("serve-api")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--seed-demo-catalog",
                "--exit-on-stdin-close",
            ])
            .arg("--db")
            .arg(state_dir.join("inventory.db"));
        // The bot's settings reach the API as the variables it reads anyway, taken from the
        // bot's resolved configuration (never as its flags written out again): the OTLP
        // endpoints and shared resource, the console filter (the terminal is the bot's, and its
        // summary reports the API's export trouble too), the fault injection. Everything else
        // the API reads from the environment it inherits, as the bot did.
        let t = &settings.telemetry;
        command
            .envs(t.child_env())
            .env("INV_CONSOLE_FILTER", t.logs.console_directives());
        if let Some(rate) = settings.fault_error_rate {
            command.env("INV_API_FAULT_ERROR_RATE", rate.to_string());
        }
        if let Some(ms) = settings.fault_latency_ms {
            command.env("INV_API_FAULT_LATENCY_MS", ms.to_string());
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the embedded inventory API")?;
        let stdout = child
            .stdout
            .take()
            .context("no stdout from the inventory API")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix(LISTENING_PREFIX) {
                    return Ok(Some(url.trim().to_owned()));
                }
            }
            Ok::<_, std::io::Error>(None)
        })
        .await;
        let url = match url {
            Ok(Ok(Some(url))) => url,
            Ok(Ok(None)) => {
                bail!("the embedded inventory API exited before listening (see its errors above)")
            }
            Ok(Err(e)) => bail!("cannot read from the embedded inventory API: {e}"),
            Err(_) => bail!("the embedded inventory API did not start listening within 30 s"),
        };
        // Keep draining stdout so the API never blocks on a full pipe.
        let report = tokio::spawn(async move {
            let mut report = None;
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(json) = line.strip_prefix(TELEMETRY_REPORT_PREFIX) {
                    report = serde_json::from_str(json).ok();
                }
            }
            report
        });
        Ok(Self { child, url, report })
    }

    /// Asks the API to stop (closes its stdin), waits for it to flush its telemetry, and returns
    /// the report of that flush.
    pub async fn stop(mut self) -> Result<ShutdownReport> {
        drop(self.child.stdin.take());
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(status) => {
                let status = status.context("waiting for the inventory API")?;
                if !status.success() {
                    bail!("the embedded inventory API exited with {status}");
                }
            }
            Err(_) => {
                let _ = self.child.kill().await;
                bail!("the embedded inventory API did not stop within 15 s and was killed")
            }
        }
        // Its stdout has ended with it; a missing report is said, never taken for a clean one.
        Ok(self
            .report
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| ShutdownReport {
                errors: vec!["the embedded inventory API sent no telemetry report".into()],
                ..ShutdownReport::default()
            }))
    }
}
