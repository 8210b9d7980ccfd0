//! Alerting as code, checked offline: Prometheus config and rules (`promtool check`), the rules'
//! unit tests (`promtool test rules`), Alertmanager's config and routing (`amtool`), and the
//! compose twin of the Alertmanager config kept in step with the native one.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no YAML files in {}", dir.display());
    }
    Ok(files)
}

fn check(root: &Path, tool: &str, args: &[&str], files: &[PathBuf]) -> Result<()> {
    let shown = format!(
        "{tool} {} {}",
        args.join(" "),
        if files.is_empty() { "" } else { "…" }
    );
    eprintln!("xtask: {shown}");
    let out = Command::new(tool)
        .args(args)
        .args(files)
        .current_dir(root)
        .output()
        .with_context(|| format!("cannot run {tool}: it comes with Debian's prometheus / prometheus-alertmanager packages (`cargo xtask stack install`)"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

pub(crate) fn alerts_check(root: &Path) -> Result<()> {
    let prometheus = root.join("prometheus");
    for config in [
        "prometheus/prometheus.yml",
        "prometheus/prometheus.compose.yml",
    ] {
        check(root, "promtool", &["check", "config", config], &[])?;
    }
    check(
        root,
        "promtool",
        &["check", "rules"],
        &yaml_files(&prometheus.join("rules"))?,
    )?;
    check(
        root,
        "promtool",
        &["test", "rules"],
        &yaml_files(&prometheus.join("tests"))?,
    )?;
    check(
        root,
        "amtool",
        &[
            "check-config",
            "alertmanager/alertmanager.yml",
            "compose/alertmanager.compose.yml",
        ],
        &[],
    )?;
    let routes = "alertmanager/alertmanager.yml";
    for (receiver, severity) in [("webhook-critical", "critical"), ("webhook", "warning")] {
        check(
            root,
            "amtool",
            &[
                "config",
                "routes",
                "test",
                &format!("--config.file={routes}"),
                &format!("--verify.receivers={receiver}"),
                &format!("severity={severity}"),
                &format!("alertname={}", names::alert::ERROR_RATE_HIGH),
                &format!(
                    "{}={}",
                    names::prometheus::label::SERVICE_NAME,
                    names::service::BOT
                ),
            ],
            &[],
        )?;
    }
    compose_twin_in_step(root)?;
    eprintln!("xtask: alert rules, their tests and the Alertmanager routing pass");
    Ok(())
}

/// compose/alertmanager.compose.yml is the native config with the webhook pointed at the host.
fn compose_twin_in_step(root: &Path) -> Result<()> {
    let native = std::fs::read_to_string(root.join("alertmanager/alertmanager.yml"))?;
    let twin = std::fs::read_to_string(root.join("compose/alertmanager.compose.yml"))?;
    let body = twin
        .split_once("# ---- end of compose header\n")
        .map(|(_, body)| body)
        .context("compose/alertmanager.compose.yml lost its header marker")?;
    if body.replace("host.docker.internal:9095", "127.0.0.1:9095") != native {
        bail!(
            "compose/alertmanager.compose.yml is out of step with alertmanager/alertmanager.yml: regenerate it as its header says"
        );
    }
    Ok(())
}
