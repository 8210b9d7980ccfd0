//! The embedded inventory API: `invbot run` without `--api-url` starts the API as a second
//! process (this same executable, `invbot serve-api`), so a run on a fresh machine still shows two
//! services in its traces. The API stops when its stdin closes, which also covers the bot dying.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The line the API prints on stdout once it accepts connections.
pub const LISTENING_PREFIX: &str = "listening on ";

#[derive(Debug)]
pub struct ApiProcess {
    child: Child,
    pub url: String,
}

impl ApiProcess {
    /// Starts the API on a free loopback port with the demo catalog, passing `extra` flags on.
    pub async fn start(state_dir: &Path, extra: &[String]) -> Result<Self> {
        std::fs::create_dir_all(state_dir).with_context(|| {
            format!("cannot create the state directory {}", state_dir.display())
        })?;
        let exe = std::env::current_exe().context("cannot find the invbot executable")?;
        let mut child = Command::new(exe)
            .arg("serve-api")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--seed-demo-catalog",
                "--exit-on-stdin-close",
            ])
            .arg("--db")
            .arg(state_dir.join("inventory.db"))
            .args(extra)
            // The bot's terminal belongs to its progress bar and summary.
            .env(
                "INV_CONSOLE_FILTER",
                std::env::var("INV_CONSOLE_FILTER").unwrap_or_else(|_| "warn".into()),
            )
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
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, url })
    }

    /// Asks the API to stop (closes its stdin) and waits for it to flush its telemetry.
    pub async fn stop(mut self) -> Result<()> {
        drop(self.child.stdin.take());
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(status) => {
                let status = status.context("waiting for the inventory API")?;
                if !status.success() {
                    bail!("the embedded inventory API exited with {status}");
                }
                Ok(())
            }
            Err(_) => {
                let _ = self.child.kill().await;
                bail!("the embedded inventory API did not stop within 15 s and was killed")
            }
        }
    }
}
