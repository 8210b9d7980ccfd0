//! The e2e step's secured collector: a second collector with `otel-collector/auth.yaml` (TLS and
//! a bearer token on both OTLP receivers), with the certificates `cargo xtask dev-certs` makes
//! (from a CA made now), in front of the same backends. The bot with the CA and the token
//! delivers everything, over gRPC (gzip) and over OTLP/HTTP; with no token or a wrong one the
//! collector accepts nothing, the bot says once that the credentials were refused and goes on;
//! and no token appears in anything the bot or the collector wrote.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::bot::{self, BotRun};
use crate::http::poll;
use crate::stack::{self, Ctx};

/// The secured collector's ports, beside the stack's (gRPC; OTLP/HTTP is the next one).
const GRPC: u16 = 4347;
const HEALTH: u16 = 13163;
const METRICS_QUEUE: u16 = 4349;
const TELEMETRY: u16 = 8918;

pub(crate) fn check(root: &Path, ctx: &Ctx) -> Result<()> {
    let dir = ctx.state.join("auth-e2e");
    std::fs::create_dir_all(&dir)?;
    let token = secret("token");
    let wrong = secret("wrong");
    let certs = crate::certs::write(&dir, "inventory-otel e2e CA")?;
    let collector = Secured::start(ctx, &token, &certs.cert, &certs.key)?;

    let ca_path = certs.ca.display().to_string();
    let grpc = format!("https://127.0.0.1:{GRPC}");
    let http = format!("https://127.0.0.1:{}", GRPC + 1);
    let bearer = |t: &str| format!("Authorization=Bearer%20{t}");
    let (right, bad) = (bearer(&token), bearer(&wrong));
    let with_token: [(&str, &str); 3] = [
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", &ca_path),
        ("OTEL_EXPORTER_OTLP_HEADERS", &right),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
    ];
    let mut said = String::new();
    for (label, endpoint, protocol) in [
        ("auth-e2e-grpc", &grpc, "grpc"),
        ("auth-e2e-http", &http, "http/protobuf"),
    ] {
        let run = run(root, ctx, label, endpoint, protocol, &with_token)?;
        let line = telemetry(&run)?;
        if !line.contains(" 0 spans and 0 log records not delivered") || line.contains("refused") {
            bail!(
                "with the CA and the token over {protocol}, everything should be delivered: {line}"
            );
        }
        said.push_str(&run.stderr);
        said.push_str(&line);
        eprintln!("xtask: e2e: secured collector, {protocol} with TLS and the token: {line}");
    }
    let accepted = collector.accepted_spans()?;
    if accepted == 0.0 {
        bail!("the secured collector accepted no span from the runs with the token");
    }

    for (label, headers) in [
        ("auth-e2e-no-token", None),
        ("auth-e2e-wrong-token", Some(&bad)),
    ] {
        let mut env = vec![("OTEL_EXPORTER_OTLP_CERTIFICATE", ca_path.as_str())];
        if let Some(h) = headers {
            env.push(("OTEL_EXPORTER_OTLP_HEADERS", h.as_str()));
        }
        let run = run(root, ctx, label, &grpc, "grpc", &env)?;
        let line = telemetry(&run)?;
        let refused = format!("authentication refused by {grpc}");
        if !line.contains(&refused) || line.matches(&grpc).count() != 1 {
            bail!("{label}: the run should say once that {grpc} refused its credentials: {line}");
        }
        said.push_str(&run.stderr);
        said.push_str(&line);
        eprintln!("xtask: e2e: secured collector, {label}: {line}");
    }
    let after = collector.accepted_spans()?;
    if after != accepted {
        bail!(
            "the secured collector accepted spans without the token: {accepted} before, {after} after"
        );
    }
    drop(collector);

    // Nothing anyone wrote holds a token: the runs' output and log files, the collector's log.
    let mut files = Vec::new();
    files_under(&dir, &mut files)?;
    files.push(ctx.log_file(Secured::NAME));
    for label in [
        "auth-e2e-grpc",
        "auth-e2e-http",
        "auth-e2e-no-token",
        "auth-e2e-wrong-token",
    ] {
        files_under(&ctx.state.join(label), &mut files)?;
    }
    for t in [&token, &wrong] {
        if said.contains(t.as_str()) {
            bail!("the bot printed a token");
        }
        for f in &files {
            if std::fs::read(f).is_ok_and(|b| contains(&b, t.as_bytes())) {
                bail!("{} holds a token", f.display());
            }
        }
    }
    eprintln!(
        "xtask: e2e: the secured collector took {accepted:.0} spans with the token and none without it or with a wrong one; no token in the bot's output or in {} files written",
        files.len()
    );
    Ok(())
}

/// A random-enough secret for one run: the time and the process id, hashed.
fn secret(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{what}-{:x}-{:x}", nanos, std::process::id())
}

fn run(
    root: &Path,
    ctx: &Ctx,
    label: &str,
    endpoint: &str,
    protocol: &str,
    env: &[(&str, &str)],
) -> Result<BotRun> {
    bot::start(
        root,
        ctx,
        label,
        &["--otlp-endpoint", endpoint, "--otlp-protocol", protocol],
        env,
    )?
    .finish()
}

fn telemetry(run: &BotRun) -> Result<String> {
    Ok(run.summary["telemetry"]
        .as_str()
        .context("no telemetry line in the summary")?
        .to_owned())
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The secured collector: config.yaml + auth.yaml on its own ports, stopped when dropped.
struct Secured {
    child: Child,
}

impl Secured {
    const NAME: &'static str = "otel-secured";

    fn start(ctx: &Ctx, token: &str, cert: &Path, key: &Path) -> Result<Self> {
        let binary = stack::collector_binary(ctx, ctx.version("OTELCOL_VERSION")?)?;
        let root = ctx.root.display();
        let log = std::fs::File::create(ctx.log_file(Self::NAME))?;
        let child = Command::new(&binary)
            .arg(format!("--config={root}/otel-collector/config.yaml"))
            .arg(format!("--config={root}/otel-collector/auth.yaml"))
            .env("INV_BIND_HOST", "127.0.0.1")
            .env("INV_STATE_DIR", ctx.state.join("data").join(Self::NAME))
            .env("INV_OTLP_GRPC_PORT", GRPC.to_string())
            .env("INV_OTLP_HTTP_PORT", (GRPC + 1).to_string())
            .env("INV_HEALTH_PORT", HEALTH.to_string())
            .env("INV_METRICS_QUEUE_PORT", METRICS_QUEUE.to_string())
            .env("INV_TELEMETRY_PORT", TELEMETRY.to_string())
            .env("INV_OTLP_TOKEN", token)
            .env("INV_TLS_CERT_FILE", cert)
            .env("INV_TLS_KEY_FILE", key)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut secured = Self { child };
        let health = format!("http://127.0.0.1:{HEALTH}/");
        poll(Duration::from_secs(60), || {
            if let Some(status) = secured.child.try_wait()? {
                bail!(
                    "the secured collector exited ({status}); see {}",
                    ctx.log_file(Self::NAME).display()
                );
            }
            Ok(crate::http::get(&health)
                .is_ok_and(|(s, _)| s == 200)
                .then_some(()))
        })?;
        Ok(secured)
    }

    /// Its `otelcol_receiver_accepted_spans`, over both protocols.
    fn accepted_spans(&self) -> Result<f64> {
        crate::http::collector_counter(TELEMETRY, "otelcol_receiver_accepted_spans")
    }
}

impl Drop for Secured {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
