//! The project's developer entry point: `cargo xtask <task>`, run from anywhere in the workspace.

mod alerts;
mod alerts_e2e;
mod auth_check;
mod bot;
mod browser;
mod certs;
mod e2e;
mod fault_check;
mod gateway_e2e;
mod http;
mod kubernetes;
mod report_check;
mod run_cost;
mod smoke;
mod stack;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// One command: its name, what it does (as usage shows it), and what runs it.
struct Task {
    name: &'static str,
    about: &'static str,
    action: Action,
}

enum Action {
    /// Runs the task (it takes no arguments).
    Run(fn(&Path) -> Result<()>),
    /// Runs the task with its arguments.
    RunWith(fn(&Path, &[String]) -> Result<()>),
    /// A group of subcommands (`stack`), dispatched and described the same way.
    Tasks(&'static [Task]),
}

/// Every task, declared once: dispatch and every usage text come from here.
const TASKS: &[Task] = &[
    Task {
        name: "ci",
        about: "what CI runs: cargo fmt --check, clippy -D warnings, the workspace tests \
                (--locked), then compose-check, k8s-check, alerts-check, smoke, e2e, gateway-e2e, \
                fault-e2e and alerts-e2e",
        action: Action::Run(ci),
    },
    Task {
        name: "stack",
        about: "the native backends on 127.0.0.1: stack <install|up|status|logs|down> \
                (`cargo xtask stack --help`)",
        action: Action::Tasks(STACK),
    },
    Task {
        name: "smoke",
        about: "stack up, one bot run exporting to the collector, invbot verify on its trace \
                (Jaeger, VictoriaLogs, Prometheus), stack down",
        action: Action::Run(|root| smoke::smoke(root, &stack::Ctx::new(root)?)),
    },
    Task {
        name: "alerts-check",
        about: "promtool check/test the alert rules, amtool check the Alertmanager config and \
                its routing",
        action: Action::Run(alerts::alerts_check),
    },
    Task {
        name: "e2e",
        about: "stack up, a generated batch with fault injection, invbot verify on the run, then \
                every Grafana dashboard, variable and datasource-link query against the live \
                backends must return data; with VictoriaLogs stopped verify must name only the \
                logs pillar; stack down",
        action: Action::Run(|root| e2e::e2e(root, &stack::Ctx::new(root)?)),
    },
    Task {
        name: "gateway-e2e",
        about: "stack up --topology gateway (an agent, two gateways), a faulty run with PII \
                canaries and a run of slow batches: Jaeger holds whole traces, every one with an \
                error or slower than 2 s and the sampling share of the rest; spanmetrics count \
                every span; no canary in any backend; stack down",
        action: Action::Run(gateway_e2e::gateway_e2e),
    },
    Task {
        name: "fault-e2e",
        about: "stack up, a clean run, then the same run under each fault (the collector killed \
                mid-run, the collector killed as the run ends, the collector absent for the whole \
                run, Jaeger restarted mid-run, the log store restarted mid-run), each followed by \
                invbot telemetry flush: the \
                backends hold everything the clean run delivered, nothing is dropped, and the \
                run's counts are unchanged; stack down",
        action: Action::Run(fault_check::fault_e2e),
    },
    Task {
        name: "alerts-e2e",
        about: "stack up, a bot run with half its calls failing: the error-rate alert must fire \
                in Prometheus, reach Alertmanager and the webhook, and the bot's own alert events \
                must be in VictoriaLogs in failing traces; stack down",
        action: Action::Run(|root| alerts_e2e::alerts_e2e(root, &stack::Ctx::new(root)?)),
    },
    Task {
        name: "run-cost",
        about: "what telemetry costs a whole run: stack up, a release invbot on generated input \
                (--rows N, default 20000) K times exporting and K times with OTEL_SDK_DISABLED, \
                alternating (--pairs K, default 3; --together: each pair at once); each run's CPU \
                (bot + its API) and wall time, the medians, their ratio and the extra CPU per \
                transaction; --instructions: one run each way under callgrind (2000 rows), the \
                instructions per transaction instead; stack down",
        action: Action::RunWith(run_cost::run_cost),
    },
    Task {
        name: "k8s-check",
        about: "render deploy/kubernetes's overlays (single-node, fleet) with kustomize and \
                validate every object against the Kubernetes schemas, strictly \
                (kubernetes-validate), and each collector's configs with otelcol validate; tools \
                installed once into the stack's cache",
        action: Action::Run(|root| kubernetes::check(&stack::Ctx::new(root)?)),
    },
    Task {
        name: "dev-certs",
        about: "dev-certs [DIR]: a CA (ca.crt) and a server certificate and key (tls.crt, \
                tls.key) for localhost, compose's otel-collector and the Kubernetes collectors' \
                Services, into DIR (default .stack/certs), for compose's and Kubernetes' \
                collectors (otel-collector/auth.yaml)",
        action: Action::RunWith(certs::dev_certs),
    },
    Task {
        name: "compose-check",
        about: "validate compose/docker-compose.yml, alone and with the loki option, with Docker \
                Compose's `config` (built by stack install; needs no Docker engine)",
        action: Action::Run(|root| {
            let ctx = stack::Ctx::new(root)?;
            stack::install(&ctx)?;
            stack::compose_check(&ctx)
        }),
    },
];

/// `stack`'s subcommands, declared once in the same way.
const STACK: &[Task] = &[
    Task {
        name: "install",
        about: "build or install the backends once, into ~/.cache/inventory-pipeline \
                ($INV_STACK_CACHE), keyed by version (compose/.env)",
        action: Action::Run(|root| stack::install(&stack::Ctx::new(root)?)),
    },
    Task {
        name: "up",
        about: "start them on 127.0.0.1, data under .stack/ ($INV_STACK_STATE); returns when \
                every health endpoint answers. --topology gateway: an agent collector in front \
                of two gateways (tail sampling, redaction) instead of the single collector",
        action: Action::RunWith(|root, args| {
            let mut ctx = stack::Ctx::new(root)?;
            match args {
                [] => {}
                [flag, name] if flag == "--topology" => {
                    ctx.topology = stack::Topology::parse(name)?
                }
                other => bail!("stack up takes --topology single|gateway, not {other:?}"),
            }
            stack::up(&ctx)
        }),
    },
    Task {
        name: "status",
        about: "each backend, up or not, with its URL (fails unless all are up)",
        action: Action::Run(|root| {
            if stack::status(&stack::Ctx::new(root)?)? {
                Ok(())
            } else {
                bail!("not every backend is up")
            }
        }),
    },
    Task {
        name: "logs",
        about: "where each backend's log is",
        action: Action::Run(|root| stack::logs(&stack::Ctx::new(root)?)),
    },
    Task {
        name: "down",
        about: "stop the processes `stack up` started",
        action: Action::Run(|root| stack::down(&stack::Ctx::new(root)?)),
    },
];

/// The usage of a list of commands under `prefix`, each described once.
fn usage(prefix: &str, tasks: &[Task]) -> String {
    let mut out = format!("usage: cargo xtask {prefix}<task>\n\ntasks:\n");
    for t in tasks {
        out.push_str(&format!("  {:<15}", t.name));
        // Wrapped to 96 columns, continued under the text.
        let mut width = 17;
        for word in t.about.split_whitespace() {
            if width + 1 + word.len() > 96 {
                out.push_str(&format!("\n{:17}", ""));
                width = 17;
            }
            out.push(' ');
            out.push_str(word);
            width += 1 + word.len();
        }
        out.push('\n');
    }
    out
}

fn is_help(arg: Option<&str>) -> bool {
    matches!(arg, Some("-h" | "--help" | "help"))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    dispatch(&root(), "", TASKS, &args)
}

/// Runs the task `args[0]` of `tasks` with the rest of `args`; `--help` prints the list's usage,
/// `<task> --help` that task's (a task with subcommands, such as `stack`, answers for itself).
fn dispatch(root: &Path, prefix: &str, tasks: &[Task], args: &[String]) -> Result<()> {
    let name = args.first().map(String::as_str);
    if is_help(name) {
        print!("{}", usage(prefix, tasks));
        return Ok(());
    }
    let Some(task) = tasks.iter().find(|t| Some(t.name) == name) else {
        eprint!("{}", usage(prefix, tasks));
        match name {
            Some(other) => bail!("unknown task {prefix}{other:?}"),
            None => bail!("no task given"),
        }
    };
    let rest = &args[1..];
    match task.action {
        Action::Tasks(subtasks) => {
            dispatch(root, &format!("{prefix}{} ", task.name), subtasks, rest)
        }
        Action::Run(_) | Action::RunWith(_) if is_help(rest.first().map(String::as_str)) => {
            println!("usage: cargo xtask {prefix}{}\n\n{}", task.name, task.about);
            Ok(())
        }
        Action::Run(_) if !rest.is_empty() => {
            bail!("{prefix}{} takes no arguments, not {rest:?}", task.name)
        }
        Action::Run(run) => run(root),
        Action::RunWith(run) => run(root, rest),
    }
}

/// The workspace root: xtask lives one level below it.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
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

fn ci(root: &Path) -> Result<()> {
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
    let ctx = stack::Ctx::new(root)?;
    stack::install(&ctx)?;
    stack::compose_check(&ctx)?;
    kubernetes::check(&ctx)?;
    alerts::alerts_check(root)?;
    smoke::smoke(root, &ctx)?;
    e2e::e2e(root, &ctx)?;
    gateway_e2e::gateway_e2e(root)?;
    fault_check::fault_e2e(root)?;
    alerts_e2e::alerts_e2e(root, &ctx)?;
    eprintln!("xtask: ci passed");
    Ok(())
}
