//! Runs of the bot against the native stack, for the smoke, e2e and alerting steps: `invbot run`
//! exporting to the collector under a fresh environment name, and `invbot verify` pointed at the
//! stack's backends.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::stack::{Ctx, url};

/// Which cargo profile invbot is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Profile {
    /// Debug, as the tests use it.
    Dev,
    /// Optimised, for measuring what a run costs.
    Release,
}

impl Profile {
    /// Cargo's name for it, and the directory under the target directory that it builds into.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Self::Dev => ("dev", "debug"),
            Self::Release => ("release", "release"),
        }
    }
}

/// Where `cargo build -p invbot --profile <profile>` puts the binary.
fn invbot_path(root: &Path, profile: Profile) -> PathBuf {
    let target: PathBuf =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), Into::into);
    target.join(profile.names().1).join("invbot")
}

/// Builds invbot (debug, as the tests use it) and returns its path.
pub(crate) fn build(root: &Path) -> Result<PathBuf> {
    build_with(root, Profile::Dev)
}

/// Builds invbot with `profile` and returns its path.
pub(crate) fn build_with(root: &Path, profile: Profile) -> Result<PathBuf> {
    let (name, _) = profile.names();
    crate::cargo(&["build", "--locked", "-p", "invbot", "--profile", name])?;
    Ok(invbot_path(root, profile))
}

/// `invbot generate <args> --output <to>`.
pub(crate) fn generate(invbot: &Path, to: &Path, args: &[&str]) -> Result<()> {
    let status = Command::new(invbot)
        .arg("generate")
        .args(args)
        .arg("--output")
        .arg(to)
        .status()
        .context("cannot run invbot generate")?;
    if !status.success() {
        bail!("invbot generate failed ({status})");
    }
    Ok(())
}

/// A run of the bot exporting to the native collector, under a fresh environment name.
pub(crate) struct BotRun {
    pub(crate) invbot: PathBuf,
    pub(crate) environment: String,
    pub(crate) summary: Value,
    /// What the bot printed on stderr.
    pub(crate) stderr: String,
    /// Its exit status: 0, or 3 when some rows failed or were rejected.
    pub(crate) exit_code: Option<i32>,
}

/// Builds invbot and runs it (the built-in sample, its own API) with `extra` flags. The fresh
/// `deployment.environment.name` keeps the checks to this run's data even when the stack kept
/// data from earlier runs.
pub(crate) fn run(root: &Path, ctx: &Ctx, label: &str, extra: &[&str]) -> Result<BotRun> {
    start(root, ctx, label, extra, &[])?.finish()
}

/// A bot run going on, for checks that do something to the stack meanwhile.
pub(crate) struct Started {
    invbot: PathBuf,
    pub(crate) environment: String,
    child: std::process::Child,
}

/// [`run`] with `env` added to the bot's environment, without waiting for it.
pub(crate) fn start(
    root: &Path,
    ctx: &Ctx,
    label: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Result<Started> {
    let invbot = build(root)?;
    let dir = ctx.state.join(label);
    std::fs::create_dir_all(&dir)?;
    let environment = format!(
        "{label}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    eprintln!("xtask: {label}: one bot run exporting to the collector");
    let child = Command::new(&invbot)
        .args(["run", "--json", "--no-progress", "--otlp-endpoint"])
        .arg(url::COLLECTOR_OTLP)
        .args(["--environment", &environment])
        .args(extra)
        .env("INV_METRICS_ADDR", "off")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "1000")
        .envs(env.iter().copied())
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot run invbot")?;
    Ok(Started {
        invbot,
        environment,
        child,
    })
}

impl Started {
    /// Waits for the run; it must end with its JSON summary.
    pub(crate) fn finish(self) -> Result<BotRun> {
        let out = self
            .child
            .wait_with_output()
            .context("cannot wait for invbot")?;
        // 0: all applied; 3: some rows failed or were rejected (the built-in sample has a few).
        if !matches!(out.status.code(), Some(0 | 3)) {
            bail!(
                "invbot run failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let summary =
            serde_json::from_slice(&out.stdout).context("invbot printed no JSON summary")?;
        Ok(BotRun {
            invbot: self.invbot,
            environment: self.environment,
            summary,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            exit_code: out.status.code(),
        })
    }
}

/// `invbot verify <args>` against the native stack's backends, from `dir`.
pub(crate) fn verify(invbot: &Path, dir: &Path, args: &[&str]) -> Result<Output> {
    against_stack(invbot, "verify", dir, args)
}

/// `invbot <command> <args>` (`verify` or `report`) against the native stack's backends, from
/// `dir`; a backend URL in `args` comes last, so it wins.
pub(crate) fn against_stack(
    invbot: &Path,
    command: &str,
    dir: &Path,
    args: &[&str],
) -> Result<Output> {
    Command::new(invbot)
        .arg(command)
        .args(["--jaeger-url", url::JAEGER])
        .args([
            "--logs-backend",
            "victorialogs",
            "--logs-url",
            url::VICTORIALOGS,
        ])
        .args(["--prometheus-url", url::PROMETHEUS])
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("cannot run invbot {command}"))
}

/// [`verify`] that must find every pillar complete; returns the report's first line.
pub(crate) fn verify_complete(invbot: &Path, dir: &Path, args: &[&str]) -> Result<String> {
    let out = verify(invbot, dir, args)?;
    let report = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "invbot verify {} found pillars missing:\n{report}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(report.lines().next().unwrap_or_default().to_owned())
}
