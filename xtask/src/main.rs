//! The project's developer entry point: `cargo xtask <task>`, run from anywhere in the workspace.

mod alerts;
mod alerts_e2e;
mod e2e;
mod http;
mod smoke;
mod stack;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  ci              what CI runs: cargo fmt --check, clippy -D warnings, the workspace tests
                  (--locked), then compose-check, alerts-check, smoke, e2e and alerts-e2e
  stack install   build or install the backends once, into ~/.cache/inventory-pipeline
                  ($INV_STACK_CACHE), keyed by version (compose/.env)
  stack up        start them on 127.0.0.1, data under .stack/ ($INV_STACK_STATE); returns when
                  every health endpoint answers
  stack status    each backend, up or not, with its URL
  stack logs      where each backend's log is
  stack down      stop the processes `stack up` started
  smoke           stack up, one bot run exporting to the collector, check Jaeger, Loki and
                  Prometheus over their APIs, stack down
  alerts-check    promtool check/test the alert rules, amtool check the Alertmanager config
                  and its routing
  e2e             stack up, a generated batch with fault injection, invbot verify on the run,
                  then every Grafana dashboard, variable and datasource-link query against
                  the live backends must return data; stack down
  alerts-e2e      stack up, a bot run with half its calls failing: the error-rate alert must
                  fire in Prometheus, reach Alertmanager and the webhook, and the bot's own
                  alert events must be in Loki in failing traces; stack down
  compose-check   validate compose/docker-compose.yml with Docker Compose's `config` (built
                  by stack install; needs no Docker engine)";

fn main() {
    if let Err(e) = run() {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let task = std::env::args().nth(1);
    let args: Vec<String> = std::env::args().skip(2).collect();
    match task.as_deref() {
        Some("ci") => ci(),
        Some("stack") => stack_task(args.first().map(String::as_str)),
        Some("smoke") => smoke::smoke(&root(), &stack::Ctx::new(&root())?),
        Some("alerts-check") => alerts::alerts_check(&root()),
        Some("e2e") => e2e::e2e(&root(), &stack::Ctx::new(&root())?),
        Some("alerts-e2e") => alerts_e2e::alerts_e2e(&root(), &stack::Ctx::new(&root())?),
        Some("compose-check") => {
            let ctx = stack::Ctx::new(&root())?;
            stack::install(&ctx)?;
            stack::compose_check(&ctx)
        }
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => {
            eprintln!("{USAGE}");
            bail!("unknown task {other:?}")
        }
        None => {
            eprintln!("{USAGE}");
            bail!("no task given")
        }
    }
}

/// The workspace root: xtask lives one level below it.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn stack_task(sub: Option<&str>) -> Result<()> {
    let ctx = stack::Ctx::new(&root())?;
    match sub {
        Some("install") => stack::install(&ctx),
        Some("up") => stack::up(&ctx),
        Some("down") => stack::down(&ctx),
        Some("logs") => stack::logs(&ctx),
        Some("status") => {
            if stack::status(&ctx)? {
                Ok(())
            } else {
                bail!("not every backend is up")
            }
        }
        _ => {
            eprintln!("{USAGE}");
            bail!("usage: cargo xtask stack install|up|status|logs|down")
        }
    }
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn ci() -> Result<()> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo(&["test", "--workspace", "--locked"])?;
    let ctx = stack::Ctx::new(&root())?;
    stack::install(&ctx)?;
    stack::compose_check(&ctx)?;
    alerts::alerts_check(&root())?;
    smoke::smoke(&root(), &ctx)?;
    e2e::e2e(&root(), &ctx)?;
    alerts_e2e::alerts_e2e(&root(), &ctx)?;
    eprintln!("xtask: ci passed");
    Ok(())
}
