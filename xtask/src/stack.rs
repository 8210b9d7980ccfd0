//! The native stack: the real backends (OpenTelemetry Collector, Jaeger, VictoriaLogs,
//! Prometheus, Alertmanager) as local processes on 127.0.0.1, with the same config files compose mounts.
//!
//! - install: builds or installs each backend once into a cache outside the repo, keyed by version
//!   (`$INV_STACK_CACHE`, default `~/.cache/inventory-pipeline/<name>-<version>/`);
//! - up: starts them with their data under one state directory (`$INV_STACK_STATE`, default
//!   `<repo>/.stack`), and reports up only when every health endpoint answers;
//! - status / logs / down: by the pids `up` recorded; down stops only those.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::http;

/// Where things are, and the pinned versions (compose/.env, the one place they are set).
pub(crate) struct Ctx {
    pub(crate) root: PathBuf,
    pub(crate) cache: PathBuf,
    pub(crate) state: PathBuf,
    versions: HashMap<String, String>,
    /// Which collectors run: what `stack up` was asked for, remembered in the state directory
    /// so that status, logs and down see the same.
    pub(crate) topology: Topology,
}

/// The collectors in front of the backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Topology {
    /// One collector (otel-collector/config.yaml): the default for one machine.
    Single,
    /// An agent (agent.yaml) in front of two gateways (config.yaml + gateway.yaml).
    Gateway,
}

impl Topology {
    fn name(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Gateway => "gateway",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "single" => Ok(Self::Single),
            "gateway" => Ok(Self::Gateway),
            other => bail!("unknown topology {other:?}: single or gateway"),
        }
    }
}

impl Ctx {
    pub(crate) fn new(root: &Path) -> Result<Self> {
        let env_file = root.join("compose/.env");
        let text = fs::read_to_string(&env_file).with_context(|| {
            format!("cannot read the pinned versions in {}", env_file.display())
        })?;
        let versions = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let cache = match std::env::var_os("INV_STACK_CACHE") {
            Some(dir) => PathBuf::from(dir),
            None => home()?.join(".cache/inventory-pipeline"),
        };
        let state =
            std::env::var_os("INV_STACK_STATE").map_or_else(|| root.join(".stack"), PathBuf::from);
        let topology = match fs::read_to_string(state.join(TOPOLOGY_FILE)) {
            Ok(name) => Topology::parse(name.trim())?,
            Err(_) => Topology::Single,
        };
        Ok(Self {
            root: root.to_owned(),
            cache,
            state,
            versions,
            topology,
        })
    }

    pub(crate) fn version(&self, key: &str) -> Result<&str> {
        self.versions
            .get(key)
            .map(String::as_str)
            .with_context(|| format!("compose/.env does not pin {key}"))
    }

    fn pid_file(&self, name: &str) -> PathBuf {
        self.state.join("pids").join(format!("{name}.pid"))
    }

    pub(crate) fn log_file(&self, name: &str) -> PathBuf {
        self.state.join("logs").join(format!("{name}.log"))
    }
}

/// Where `up` records the topology it started (removed by `down`).
const TOPOLOGY_FILE: &str = "topology";

fn home() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .context("HOME is not set; set INV_STACK_CACHE to choose the build cache")
}

/// Where the native backends answer: the one place their addresses are written for the stack
/// and the checks that query them (the config files say the same ports; compose uses service
/// names).
pub(crate) mod url {
    pub(crate) const JAEGER: &str = "http://127.0.0.1:16686";
    pub(crate) const VICTORIALOGS: &str = "http://127.0.0.1:9428";
    pub(crate) const PROMETHEUS: &str = "http://127.0.0.1:9090";
    pub(crate) const ALERTMANAGER: &str = "http://127.0.0.1:9093";
    /// The single collector's OTLP gRPC receiver, or the agent's in the gateway topology.
    pub(crate) const COLLECTOR_OTLP: &str = "http://127.0.0.1:4317";
    /// Where Alertmanager posts its notifications (alertmanager/alertmanager.yml).
    pub(crate) const WEBHOOK_ADDR: &str = "127.0.0.1:9095";
}

/// `host:port` of a URL, for a backend's listen flag.
fn listen(url: &str) -> &str {
    url.trim_start_matches("http://")
}

/// Go modules that nothing here may require, build or download: they are under the AGPL (the
/// machines' Go module list marks them not to be used). Loki runs only as a compose option, from
/// its image, which the user pulls.
pub(crate) const FORBIDDEN_GO_MODULES: [&str; 3] = [
    "github.com/grafana/loki",
    "github.com/grafana/grafana",
    "github.com/grafana/tempo",
];

/// The forbidden modules `text` names as a module path (`<module>` alone or followed by `/`,
/// `@`, a space or a line end; so `github.com/grafana/regexp` is not one of them).
pub(crate) fn forbidden_modules_in(text: &str) -> Vec<&'static str> {
    FORBIDDEN_GO_MODULES
        .into_iter()
        .filter(|m| {
            text.match_indices(m).any(|(i, _)| {
                text[i + m.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| matches!(c, '/' | '@' | ' ' | '\t' | '\n'))
            })
        })
        .collect()
}

/// Fails if a Go binary we built links a forbidden module (its build info lists every module).
pub(crate) fn check_licences(binary: &Path) -> Result<()> {
    let out = Command::new("go")
        .args(["version", "-m"])
        .arg(binary)
        .output()
        .with_context(|| format!("cannot run go version -m {}", binary.display()))?;
    let found = forbidden_modules_in(&String::from_utf8_lossy(&out.stdout));
    if !found.is_empty() {
        bail!(
            "{} links {} (AGPL; not to be used): remove the component that pulls it in",
            binary.display(),
            found.join(", ")
        );
    }
    Ok(())
}

/// One backend: how to get it and how to run it.
struct Backend {
    name: &'static str,
    binary: PathBuf,
    args: Vec<String>,
    /// Its own environment, over the stack's (`INV_BIND_HOST`, `INV_STATE_DIR`).
    env: Vec<(&'static str, String)>,
    /// The URL that answers 200 once the backend is ready.
    health: String,
    /// Where users reach it, as `stack status` shows it.
    shown: String,
    install: Install,
}

enum Install {
    /// Built with the Collector Builder from otel-collector/builder-config.yaml.
    Collector { version: String },
    /// Built from a wrapper Go module kept in the repo (`<dir>/build/go.mod` with a go.sum that
    /// carries the upstream checksums, which the checksum database does not all serve).
    GoModule {
        dir: &'static str,
        package: &'static str,
        tags: &'static str,
        ldflags: String,
    },
    /// `go install <package>@<version>` of a module that builds as it is (no wrapper needed).
    GoGet {
        package: &'static str,
        version: String,
        ldflags: String,
    },
    /// A Debian package.
    Apt { package: &'static str },
}

fn backends(ctx: &Ctx) -> Result<Vec<Backend>> {
    let root = ctx.root.display().to_string();
    let data = ctx.state.join("data");
    let data = data.display();
    let otel = ctx.version("OTELCOL_VERSION")?.to_owned();
    let jaeger = ctx.version("JAEGER_MODULE_VERSION")?;
    let vlogs = ctx.version("VICTORIALOGS_VERSION")?;
    Ok(vec![
        Backend {
            name: "jaeger",
            binary: ctx
                .cache
                .join(format!("jaeger-{}", jaeger.trim_start_matches('v')))
                .join("jaeger"),
            args: vec![format!("--config={root}/jaeger/config.yaml")],
            env: Vec::new(),
            health: "http://127.0.0.1:13134/status".into(),
            shown: url::JAEGER.into(),
            install: Install::GoModule {
                dir: "jaeger",
                package: "github.com/jaegertracing/jaeger/cmd/jaeger",
                tags: "",
                ldflags: format!(
                    "-X github.com/jaegertracing/jaeger/internal/version.latestVersion=v{}",
                    ctx.version("JAEGER_VERSION")?
                ),
            },
        },
        Backend {
            name: "victorialogs",
            binary: ctx
                .cache
                .join(format!("victorialogs-{}", vlogs.trim_start_matches('v')))
                .join("victoria-logs"),
            args: vec![
                format!("-httpListenAddr={}", listen(url::VICTORIALOGS)),
                format!("-storageDataPath={data}/victorialogs"),
                "-retentionPeriod=7d".into(),
            ],
            env: Vec::new(),
            health: format!("{}/health", url::VICTORIALOGS),
            shown: format!("{} (vmui: /select/vmui/)", url::VICTORIALOGS),
            install: Install::GoGet {
                package: "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs",
                version: vlogs.to_owned(),
                ldflags: format!(
                    "-X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=victoria-logs-{vlogs}"
                ),
            },
        },
        Backend {
            name: "prometheus",
            binary: PathBuf::from("/usr/bin/prometheus"),
            args: vec![
                format!("--config.file={root}/prometheus/prometheus.yml"),
                format!("--storage.tsdb.path={data}/prometheus"),
                format!("--web.listen-address={}", listen(url::PROMETHEUS)),
                "--enable-feature=exemplar-storage".into(),
                // The collector writes metrics in (otel-collector/config.yaml).
                "--web.enable-remote-write-receiver".into(),
                "--web.enable-lifecycle".into(),
            ],
            env: Vec::new(),
            health: format!("{}/-/ready", url::PROMETHEUS),
            shown: url::PROMETHEUS.into(),
            install: Install::Apt {
                package: "prometheus",
            },
        },
        Backend {
            name: "alertmanager",
            binary: PathBuf::from("/usr/bin/prometheus-alertmanager"),
            args: vec![
                format!("--config.file={root}/alertmanager/alertmanager.yml"),
                format!("--storage.path={data}/alertmanager"),
                format!("--web.listen-address={}", listen(url::ALERTMANAGER)),
                "--cluster.listen-address=".into(),
            ],
            env: Vec::new(),
            health: format!("{}/-/ready", url::ALERTMANAGER),
            shown: url::ALERTMANAGER.into(),
            install: Install::Apt {
                package: "prometheus-alertmanager",
            },
        },
    ]
    .into_iter()
    .chain(collectors(ctx, &root, &data.to_string(), &otel)?)
    .collect())
}

/// A gateway of the gateway topology and its ports (its OTLP HTTP port is the gRPC one + 1).
pub(crate) struct Gateway {
    pub(crate) name: &'static str,
    grpc: u16,
    health: u16,
    /// The collector's own metrics.
    pub(crate) telemetry: u16,
}

pub(crate) const GATEWAYS: [Gateway; 2] = [
    Gateway {
        name: "otel-gateway-1",
        grpc: 4327,
        health: 13143,
        telemetry: 8898,
    },
    Gateway {
        name: "otel-gateway-2",
        grpc: 4337,
        health: 13153,
        telemetry: 8908,
    },
];

/// The collectors of `ctx.topology`, gateways before the agent that sends to them.
fn collectors(ctx: &Ctx, root: &str, data: &str, version: &str) -> Result<Vec<Backend>> {
    let binary = collector_binary(ctx, version)?;
    let install = || Install::Collector {
        version: version.to_owned(),
    };
    let config = |files: &[&str]| {
        files
            .iter()
            .map(|f| format!("--config={root}/otel-collector/{f}"))
            .collect::<Vec<_>>()
    };
    if ctx.topology == Topology::Single {
        return Ok(vec![Backend {
            name: "otel-collector",
            binary,
            args: config(&["config.yaml"]),
            env: Vec::new(),
            health: "http://127.0.0.1:13133/".into(),
            shown: format!("{} (OTLP gRPC), :4318 (HTTP)", url::COLLECTOR_OTLP),
            install: install(),
        }]);
    }
    let mut out: Vec<Backend> = GATEWAYS
        .iter()
        .map(|g| Backend {
            name: g.name,
            binary: binary.clone(),
            args: config(&["config.yaml", "gateway.yaml"]),
            env: vec![
                ("INV_OTLP_GRPC_PORT", g.grpc.to_string()),
                ("INV_OTLP_HTTP_PORT", (g.grpc + 1).to_string()),
                ("INV_HEALTH_PORT", g.health.to_string()),
                // The metrics' queue hop: the gRPC port + 2.
                ("INV_METRICS_QUEUE_PORT", (g.grpc + 2).to_string()),
                ("INV_TELEMETRY_PORT", g.telemetry.to_string()),
                // Each gateway its own export queue.
                ("INV_STATE_DIR", format!("{data}/{}", g.name)),
            ],
            health: format!("http://127.0.0.1:{}/", g.health),
            shown: format!("127.0.0.1:{} (OTLP gRPC)", g.grpc),
            install: install(),
        })
        .collect();
    let gateways: Vec<String> = GATEWAYS
        .iter()
        .map(|g| format!("127.0.0.1:{}", g.grpc))
        .collect();
    out.push(Backend {
        name: "otel-agent",
        binary,
        args: config(&["agent.yaml"]),
        env: vec![("INV_GATEWAYS", format!("[{}]", gateways.join(", ")))],
        health: "http://127.0.0.1:13133/".into(),
        shown: format!(
            "{} (OTLP gRPC), :4318 (HTTP), to the gateways {}",
            url::COLLECTOR_OTLP,
            gateways.join(", ")
        ),
        install: install(),
    });
    Ok(out)
}

/// The collector built from the builder manifest: cached by version and by the manifest's
/// content, so adding a component builds a new binary rather than reusing one without it.
pub(crate) fn collector_binary(ctx: &Ctx, version: &str) -> Result<PathBuf> {
    let manifest = ctx.root.join("otel-collector/builder-config.yaml");
    let text =
        fs::read(&manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
    Ok(ctx
        .cache
        .join(format!("otelcol-{version}-{:08x}", fnv1a(&text) as u32))
        .join("otelcol-inv"))
}

/// FNV-1a, 64 bits: a stable content hash (std's hasher may change between Rust releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<()> {
    eprintln!("xtask: {what}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run: {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Free space in GiB on the file system holding `dir` (or its nearest existing parent).
fn free_gib(dir: &Path) -> Option<u64> {
    let existing = dir.ancestors().find(|d| d.exists())?;
    let out = Command::new("df").arg("-Pk").arg(existing).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib / 1024 / 1024)
}

/// Debian's Chromium, for the e2e step's browser test of `invbot report`'s page.
fn chromium() -> Backend {
    Backend {
        name: "chromium",
        binary: PathBuf::from(crate::browser::CHROMIUM),
        args: Vec::new(),
        env: Vec::new(),
        health: String::new(),
        shown: String::new(),
        install: Install::Apt {
            package: "chromium",
        },
    }
}

/// Docker Compose, built to validate compose/docker-compose.yml (`config` needs no engine).
fn compose_tool(ctx: &Ctx) -> Result<Backend> {
    let version = ctx.version("COMPOSE_VERSION")?;
    Ok(Backend {
        name: "docker-compose",
        binary: ctx
            .cache
            .join(format!("docker-compose-{version}"))
            .join("docker-compose"),
        args: Vec::new(),
        env: Vec::new(),
        health: String::new(),
        shown: String::new(),
        install: Install::GoModule {
            dir: "compose",
            package: "github.com/docker/compose/v5/cmd",
            tags: "",
            ldflags: format!("-X github.com/docker/compose/v5/internal.Version={version}"),
        },
    })
}

/// What compose refuses to run without (no default credentials), with the value the check
/// gives each: Grafana's admin password, the collector's token and the directory of its
/// certificate (only interpolated by `config`, never read).
const COMPOSE_REQUIRED: [(&str, &str); 3] = [
    ("GF_SECURITY_ADMIN_PASSWORD", "compose-check"),
    ("INV_OTLP_TOKEN", "compose-check"),
    ("INV_TLS_DIR", "/compose-check/certs"),
];

/// Validates the compose file, alone and with the Loki option, with a real compose
/// implementation, and checks that it refuses to run without each of [`COMPOSE_REQUIRED`] and
/// the Loki override without its profile.
pub(crate) fn compose_check(ctx: &Ctx) -> Result<()> {
    let tool = compose_tool(ctx)?;
    let compose = ctx.root.join("compose");
    // `config` of `files`, with every required variable set but `unset`.
    let config = |files: &[&str], profile: Option<&str>, unset: Option<&str>| {
        let mut cmd = Command::new(&tool.binary);
        for file in files {
            cmd.arg("-f").arg(compose.join(file));
        }
        if let Some(profile) = profile {
            cmd.args(["--profile", profile]);
        }
        cmd.args(["config", "--quiet"]);
        for (var, value) in COMPOSE_REQUIRED {
            if Some(var) == unset {
                cmd.env_remove(var);
            } else {
                cmd.env(var, value);
            }
        }
        cmd.env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROFILES");
        cmd.output()
            .with_context(|| format!("cannot run {}", tool.binary.display()))
    };
    const DEFAULT: &[&str] = &["docker-compose.yml"];
    const LOKI: &[&str] = &["docker-compose.yml", "loki.yml"];
    for (files, profile) in [(DEFAULT, None), (LOKI, Some("loki"))] {
        let out = config(files, profile, None)?;
        if !out.status.success() {
            bail!(
                "compose/{} is not a valid compose setup:\n{}",
                files.join(" + compose/"),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for (var, _) in COMPOSE_REQUIRED {
            let out = config(files, profile, Some(var))?;
            let err = String::from_utf8_lossy(&out.stderr);
            if out.status.success() || !err.contains(var) {
                bail!(
                    "compose/{} must refuse to run without {var} (no default credentials); it said: {err}",
                    files.join(" + compose/")
                );
            }
        }
    }
    // The Loki override without its profile would point the collector at a Loki that never runs.
    if config(LOKI, None, None)?.status.success() {
        bail!("compose/loki.yml without --profile loki must be refused");
    }
    let required: Vec<&str> = COMPOSE_REQUIRED.iter().map(|(var, _)| *var).collect();
    eprintln!(
        "xtask: compose files valid (docker-compose config: default and the loki option), refused without any of {}, and the loki override refused without its profile",
        required.join(", ")
    );
    Ok(())
}

pub(crate) fn install(ctx: &Ctx) -> Result<()> {
    let mut all = backends(ctx)?;
    all.push(compose_tool(ctx)?);
    all.push(chromium());
    for b in all {
        install_one(ctx, &b)?;
    }
    Ok(())
}

/// The collector binary of [`collector_binary`], built first if the cache lacks it: for the
/// checks that validate configs with it.
pub(crate) fn installed_collector(ctx: &Ctx) -> Result<PathBuf> {
    let version = ctx.version("OTELCOL_VERSION")?;
    let collector = Backend {
        name: "otel-collector",
        binary: collector_binary(ctx, version)?,
        args: Vec::new(),
        env: Vec::new(),
        health: String::new(),
        shown: String::new(),
        install: Install::Collector {
            version: version.to_owned(),
        },
    };
    install_one(ctx, &collector)?;
    Ok(collector.binary)
}

fn install_one(ctx: &Ctx, b: &Backend) -> Result<()> {
    if b.binary.exists() {
        eprintln!("xtask: {} is installed: {}", b.name, b.binary.display());
        return Ok(());
    }
    let started = Instant::now();
    match &b.install {
        Install::Apt { package } => install_apt(package, &b.binary)?,
        Install::Collector { version } => build_collector(ctx, b, version)?,
        Install::GoModule {
            dir,
            package,
            tags,
            ldflags,
        } => build_go_module(ctx, b, dir, package, tags, ldflags)?,
        Install::GoGet {
            package,
            version,
            ldflags,
        } => go_install(ctx, b, package, version, ldflags)?,
    }
    if !b.binary.exists() {
        bail!(
            "installing {} did not produce {}",
            b.name,
            b.binary.display()
        );
    }
    if !matches!(b.install, Install::Apt { .. }) {
        check_licences(&b.binary)?;
    }
    eprintln!("xtask: {} installed in {:.0?}", b.name, started.elapsed());
    Ok(())
}

pub(crate) fn need_go(ctx: &Ctx, what: &str) -> Result<()> {
    if !have("go") {
        bail!(
            "building {what} needs Go (1.24 or newer): install it from https://go.dev/dl/ or your package manager (Debian: golang), then run `cargo xtask stack install` again"
        );
    }
    if let Some(gib) = free_gib(&ctx.cache).filter(|gib| *gib < 10) {
        bail!(
            "building {what} needs about 10 GiB of free disk for Go's module and build caches; {} has {gib} GiB",
            ctx.cache.display()
        );
    }
    Ok(())
}

fn build_collector(ctx: &Ctx, b: &Backend, version: &str) -> Result<()> {
    need_go(ctx, "the OpenTelemetry Collector")?;
    let manifest = ctx.root.join("otel-collector/builder-config.yaml");
    let text = fs::read_to_string(&manifest)?;
    if !text.contains(&format!("version: {version}")) {
        bail!(
            "{} does not build version {version} (compose/.env): keep them in step",
            manifest.display()
        );
    }
    let dir = b.binary.parent().context("collector dir")?;
    fs::create_dir_all(dir)?;
    run(
        Command::new("go")
            .args(["install", "-trimpath", "-ldflags=-s -w"])
            .arg(format!(
                "go.opentelemetry.io/collector/cmd/builder@v{version}"
            ))
            .env("GOBIN", dir.join("bin"))
            .env("CGO_ENABLED", "0"),
        &format!("go install the Collector Builder v{version}"),
    )?;
    run(
        Command::new(dir.join("bin/builder"))
            .arg(format!("--config={}", manifest.display()))
            .arg("--ldflags=-s -w")
            .current_dir(dir)
            .env("CGO_ENABLED", "0")
            .env("GOFLAGS", "-trimpath"),
        "build the collector with the Collector Builder (several minutes on a cold cache)",
    )?;
    fs::copy(dir.join("build/otelcol-inv"), &b.binary)?;
    Ok(())
}

fn build_go_module(
    ctx: &Ctx,
    b: &Backend,
    dir: &str,
    package: &str,
    tags: &str,
    ldflags: &str,
) -> Result<()> {
    need_go(ctx, b.name)?;
    let out = b.binary.parent().context("backend dir")?;
    let src = out.join("src");
    fs::create_dir_all(&src)?;
    for file in ["go.mod", "go.sum"] {
        fs::copy(ctx.root.join(dir).join("build").join(file), src.join(file))?;
    }
    let mut cmd = Command::new("go");
    cmd.args(["build", "-mod=mod", "-trimpath"])
        .arg(format!("-ldflags=-s -w {ldflags}"));
    if !tags.is_empty() {
        cmd.args(["-tags", tags]);
    }
    cmd.arg("-o")
        .arg(&b.binary)
        .arg(package)
        .current_dir(&src)
        .env("CGO_ENABLED", "0");
    run(
        &mut cmd,
        &format!("go build {package} (several minutes on a cold cache)"),
    )
}

fn go_install(ctx: &Ctx, b: &Backend, package: &str, version: &str, ldflags: &str) -> Result<()> {
    need_go(ctx, b.name)?;
    let dir = b.binary.parent().context("backend dir")?;
    fs::create_dir_all(dir)?;
    run(
        Command::new("go")
            .args(["install", "-trimpath"])
            .arg(format!("-ldflags=-s -w {ldflags}"))
            .arg(format!("{package}@{version}"))
            .env("GOBIN", dir)
            .env("CGO_ENABLED", "0"),
        &format!("go install {package}@{version}"),
    )
}

fn install_apt(package: &str, binary: &Path) -> Result<()> {
    if !have("apt-get") {
        bail!(
            "{package} comes from Debian's packages, and apt-get is not available here: install it (Prometheus 2.42+, Alertmanager 0.25+, any recent Chromium) so that {} exists",
            binary.display()
        );
    }
    run(
        Command::new("apt-get").arg("update").arg("-q"),
        "apt-get update",
    )?;
    run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        &format!("apt-get install {package} (needs root)"),
    )?;
    // The package may start its own service on the same port; the stack runs its own process.
    let _ = Command::new("service")
        .args([package, "stop"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    Ok(())
}

fn read_pid(ctx: &Ctx, b: &Backend) -> Option<u32> {
    let pid: u32 = fs::read_to_string(ctx.pid_file(b.name))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // Only a live process running this backend's program counts (pids are reused); by name, so
    // a collector started before its binary was rebuilt under a new cache key still counts.
    let exe = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    (exe.file_name() == b.binary.file_name()).then_some(pid)
}

fn healthy(b: &Backend) -> bool {
    http::get(&b.health).is_ok_and(|(status, _)| status == 200)
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub(crate) fn up(ctx: &Ctx) -> Result<()> {
    install(ctx)?;
    for sub in ["pids", "logs", "data"] {
        fs::create_dir_all(ctx.state.join(sub))?;
    }
    fs::write(ctx.state.join(TOPOLOGY_FILE), ctx.topology.name())?;
    let mut started = Vec::new();
    let mut children = Vec::new();
    let result = (|| -> Result<()> {
        for b in backends(ctx)? {
            if read_pid(ctx, &b).is_some() {
                eprintln!("xtask: {} is already running", b.name);
                continue;
            }
            if healthy(&b) {
                bail!(
                    "{} answers at {} but was not started by this stack: stop it first",
                    b.name,
                    b.health
                );
            }
            let log = fs::File::create(ctx.log_file(b.name))?;
            let child = Command::new(&b.binary)
                .args(&b.args)
                .current_dir(&ctx.root)
                .env("INV_BIND_HOST", "127.0.0.1")
                .env("INV_STATE_DIR", ctx.state.join("data"))
                .env("GOMEMLIMIT", "410MiB")
                .envs(b.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot start {}", b.binary.display()))?;
            fs::write(ctx.pid_file(b.name), child.id().to_string())?;
            started.push(b.name);
            children.push((b.name, child));
        }
        // Jaeger and the collector can take a while on a cold, busy machine.
        let deadline = Duration::from_secs(90);
        for b in backends(ctx)? {
            let start = Instant::now();
            while !healthy(&b) {
                // Our own children are watched through their handles, not /proc.
                let exited = match children.iter_mut().find(|(name, _)| *name == b.name) {
                    Some((_, child)) => child.try_wait()?.is_some(),
                    None => read_pid(ctx, &b).is_none(),
                };
                if exited {
                    bail!(
                        "{} exited while starting; the end of {}:\n{}",
                        b.name,
                        ctx.log_file(b.name).display(),
                        tail(&ctx.log_file(b.name), 20)
                    );
                }
                if start.elapsed() > deadline {
                    bail!(
                        "{} did not become ready at {} within {deadline:?}; the end of {}:\n{}",
                        b.name,
                        b.health,
                        ctx.log_file(b.name).display(),
                        tail(&ctx.log_file(b.name), 20)
                    );
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            eprintln!("xtask: {:<15} up  {}", b.name, b.shown);
        }
        Ok(())
    })();
    if result.is_err() && !started.is_empty() {
        eprintln!(
            "xtask: stopping what this attempt started: {}",
            started.join(", ")
        );
        let _ = down(ctx);
    }
    result
}

/// Runs `checks` against a stack brought up for them, and stops it whatever they found.
pub(crate) fn with_stack(ctx: &Ctx, step: &str, checks: impl FnOnce() -> Result<()>) -> Result<()> {
    up(ctx)?;
    let result = checks();
    if result.is_err() {
        eprintln!(
            "xtask: {step} failed; backend logs: {}",
            ctx.state.join("logs").display()
        );
    }
    down(ctx)?;
    result
}

pub(crate) fn down(ctx: &Ctx) -> Result<()> {
    for b in backends(ctx)?.iter().rev() {
        stop(ctx, b);
    }
    let _ = fs::remove_file(ctx.state.join(TOPOLOGY_FILE));
    Ok(())
}

/// Stops one backend that `up` started (the e2e step stops the log store to show a missing pillar).
pub(crate) fn stop_one(ctx: &Ctx, name: &str) -> Result<()> {
    stop(ctx, &backend(ctx, name)?);
    Ok(())
}

fn backend(ctx: &Ctx, name: &str) -> Result<Backend> {
    backends(ctx)?
        .into_iter()
        .find(|b| b.name == name)
        .with_context(|| format!("no backend {name}"))
}

/// What /proc/<pid>/stat says of a process: its state and its CPU time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProcStat {
    /// `R`, `S`, ..., `Z` for one that has exited and is not reaped yet.
    pub(crate) state: char,
    /// Its own CPU seconds, user + system.
    pub(crate) cpu_s: f64,
    /// The CPU seconds, user + system, of the children it has waited for (and theirs).
    pub(crate) children_cpu_s: f64,
}

impl ProcStat {
    pub(crate) fn of(pid: u32) -> Result<Self> {
        let path = format!("/proc/{pid}/stat");
        let text = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        Self::parse(&text).with_context(|| format!("{path} is not as expected: {text}"))
    }

    fn parse(text: &str) -> Option<Self> {
        // The fields after the command (which may hold spaces), from the 3rd: the state, ...,
        // utime (the 14th), stime, cutime, cstime.
        let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
        // Linux reports CPU time in USER_HZ, 100 per second.
        let seconds = |i: usize| Some(fields.get(i)?.parse::<f64>().ok()? / 100.0);
        Some(Self {
            state: fields.first()?.chars().next()?,
            cpu_s: seconds(11)? + seconds(12)?,
            children_cpu_s: seconds(13)? + seconds(14)?,
        })
    }
}

/// CPU seconds (user + system) and peak resident memory in bytes of a running backend.
pub(crate) fn usage(ctx: &Ctx, name: &str) -> Result<(f64, u64)> {
    let b = backend(ctx, name)?;
    let pid = read_pid(ctx, &b).with_context(|| format!("{name} is not running"))?;
    let cpu = ProcStat::of(pid)?.cpu_s;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let peak_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    Ok((cpu, peak_kib * 1024))
}

/// Kills one backend that `up` started, at once (SIGKILL): a crash, for the fault checks.
pub(crate) fn kill_one(ctx: &Ctx, name: &str) -> Result<()> {
    let b = backend(ctx, name)?;
    let pid = read_pid(ctx, &b).with_context(|| format!("{name} is not running"))?;
    run(
        Command::new("kill").args(["-9", &pid.to_string()]),
        &format!("kill -9 {name} (pid {pid})"),
    )?;
    let start = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists()
        && !zombie(pid)
        && start.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = fs::remove_file(ctx.pid_file(b.name));
    Ok(())
}

/// Whether `pid` has exited and waits to be reaped: a stopped child of ours stays a zombie until
/// then, which counts as stopped.
fn zombie(pid: u32) -> bool {
    ProcStat::of(pid).is_ok_and(|s| s.state == 'Z')
}

fn stop(ctx: &Ctx, b: &Backend) {
    let Some(pid) = read_pid(ctx, b) else {
        let _ = fs::remove_file(ctx.pid_file(b.name));
        return;
    };
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let start = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists()
        && !zombie(pid)
        && start.elapsed() < Duration::from_secs(15)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    if read_pid(ctx, b).is_some_and(|p| p == pid) && !zombie(pid) {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    let _ = fs::remove_file(ctx.pid_file(b.name));
    eprintln!("xtask: {} stopped (pid {pid})", b.name);
}

pub(crate) fn status(ctx: &Ctx) -> Result<bool> {
    let mut all_up = true;
    for b in backends(ctx)? {
        let state = match (read_pid(ctx, &b), healthy(&b)) {
            (Some(pid), true) => format!("up (pid {pid})"),
            (Some(pid), false) => format!("starting or unhealthy (pid {pid})"),
            (None, true) => "up, but not started by this stack".into(),
            (None, false) => "down".into(),
        };
        all_up &= state.starts_with("up");
        println!("{:<15} {:<34} {}", b.name, state, b.shown);
    }
    Ok(all_up)
}

pub(crate) fn logs(ctx: &Ctx) -> Result<()> {
    for b in backends(ctx)? {
        println!("{:<15} {}", b.name, ctx.log_file(b.name).display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every go.mod and go.sum below `dir`, outside build output.
    fn go_module_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).expect("a readable directory").flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if !matches!(name.to_str(), Some("target" | ".git" | ".stack")) {
                    go_module_files(&path, out);
                }
            } else if matches!(name.to_str(), Some("go.mod" | "go.sum")) {
                out.push(path);
            }
        }
    }

    /// VictoriaLogs takes no config file: its flags are its config, so the native stack and
    /// compose must pass the same ones, but for where it listens and stores.
    #[test]
    fn victorialogs_runs_with_the_same_flags_natively_and_in_compose() {
        let root = crate::root();
        let ctx = Ctx::new(&root).expect("compose/.env");
        let all = backends(&ctx).expect("the backends");
        let native = &all
            .iter()
            .find(|b| b.name == "victorialogs")
            .expect("a victorialogs backend")
            .args;
        let text = fs::read_to_string(root.join("compose/docker-compose.yml")).expect("compose");
        let compose: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("YAML");
        let compose: Vec<String> = compose["services"]["victorialogs"]["command"]
            .as_sequence()
            .expect("the victorialogs service's command")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let settings = |flags: &[String]| -> Vec<String> {
            let mut kept: Vec<String> = flags
                .iter()
                .filter(|f| {
                    !f.starts_with("-httpListenAddr=") && !f.starts_with("-storageDataPath=")
                })
                .cloned()
                .collect();
            kept.sort();
            kept
        };
        assert!(native.iter().any(|f| f.starts_with("-retentionPeriod=")));
        assert_eq!(settings(native), settings(&compose));
    }

    #[test]
    fn proc_stat_reads_state_and_cpu_after_a_command_with_spaces() {
        let text = "4242 (inv bot) Z 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 120 30 20 0 1 0";
        let stat = ProcStat::parse(text).expect("a stat line");
        assert_eq!(
            stat,
            ProcStat {
                state: 'Z',
                cpu_s: 3.0,
                children_cpu_s: 1.5
            }
        );
        assert_eq!(ProcStat::parse("4242 (short) S 1 2"), None);
    }

    #[test]
    fn module_paths_are_matched_whole() {
        assert_eq!(
            forbidden_modules_in("require github.com/grafana/loki/v3 v3.7.8\n"),
            ["github.com/grafana/loki"]
        );
        assert_eq!(
            forbidden_modules_in("dep\tgithub.com/grafana/tempo\tv2"),
            ["github.com/grafana/tempo"]
        );
        assert!(forbidden_modules_in("dep github.com/grafana/regexp v0.0.0").is_empty());
        assert!(forbidden_modules_in("github.com/grafana/grafana-foundation-sdk/go").is_empty());
    }

    /// Nothing the stack installs requires, builds or downloads an AGPL module: not the packages
    /// it builds, not a wrapper module's go.mod or go.sum, not the collector's manifest.
    #[test]
    fn no_install_step_names_a_forbidden_go_module() {
        let root = crate::root();
        let ctx = Ctx::new(&root).expect("compose/.env");
        let mut all = backends(&ctx).expect("the backends");
        all.push(compose_tool(&ctx).expect("the compose tool"));
        let mut texts = Vec::new();
        for b in &all {
            match &b.install {
                Install::GoModule { package, .. } | Install::GoGet { package, .. } => {
                    texts.push((b.name.to_owned(), (*package).to_owned()));
                }
                Install::Collector { .. } => {
                    let manifest = root.join("otel-collector/builder-config.yaml");
                    let text = fs::read_to_string(&manifest).expect("the builder manifest");
                    texts.push((manifest.display().to_string(), text));
                }
                Install::Apt { .. } => {}
            }
        }
        let mut files = Vec::new();
        go_module_files(&root, &mut files);
        assert!(
            files.iter().any(|f| f.ends_with("jaeger/build/go.mod")),
            "{files:?}"
        );
        for file in files {
            let text = fs::read_to_string(&file).expect("a readable go.mod/go.sum");
            texts.push((file.display().to_string(), text));
        }
        let offenders: Vec<String> = texts
            .iter()
            .filter_map(|(what, text)| {
                let found = forbidden_modules_in(text);
                (!found.is_empty()).then(|| format!("{what}: {}", found.join(", ")))
            })
            .collect();
        assert!(offenders.is_empty(), "AGPL modules named: {offenders:?}");
    }
}
