//! `invbot run | generate`: the command-line front of the inventory bot.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use invbot::alerts::Thresholds;
use invbot::api_process::{ApiProcess, ApiSettings};
use invbot::client::{ApiClient, RetryPolicy};
use invbot::generate::{GenerateOptions, generate};
use invbot::input::{self, Format};
use invbot::runner::{RunOptions, run};
use names::service;
use telemetry::{ShutdownReport, TelemetryArgs};

/// Exit status when the run finished but some rows failed or were rejected.
const EXIT_INCOMPLETE: u8 = 3;
/// Exit status of `verify` when a pillar lacks what it should have.
const EXIT_MISSING: u8 = 4;
/// Exit status for bad usage: bad flags, a missing or unreadable input (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;
/// Where `run` leaves the id of the last run, for `verify` without arguments.
const LAST_RUN_FILE: &str = "last-run";
/// Where a run keeps the telemetry it could not deliver, under the state directory.
const TELEMETRY_SPOOL_DIR: &str = "telemetry-spool";
/// Where `run` leaves "<run id> <batches>" once it has finished, so `verify` knows how many batch
/// traces to wait for.
const LAST_RUN_BATCHES_FILE: &str = "last-run-batches";

#[derive(Debug, Parser)]
// A flag given twice takes its last value, so a wrapper's defaults can be overridden after them.
#[command(
    name = "invbot",
    version,
    about = "The instrumented inventory bot",
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply a file of inventory transactions through the inventory API, batch by batch.
    Run(Box<RunArgs>),
    /// Write synthetic input (CSV, or JSON lines with --format jsonl).
    Generate(GenerateArgs),
    /// Check that a run's traces, logs and metrics reached Jaeger, the log store and Prometheus, and
    /// name what is missing.
    Verify(VerifyArgs),
    /// Write one self-contained HTML page of a run from the three backends: its figures, charts,
    /// batches, and each batch's trace with its log records.
    Report(Box<ReportArgs>),
    /// The run's own telemetry: `flush` sends what earlier runs kept in the spool.
    #[command(subcommand)]
    Telemetry(TelemetryCommand),
    /// Run the inventory API in this process (what `run` starts as its second service).
    #[command(hide = true)]
    ServeApi {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

#[derive(Debug, Subcommand)]
enum TelemetryCommand {
    /// Send the telemetry that earlier runs could not deliver (kept in <state-dir>/telemetry-spool)
    /// to the collector, and say what is left; exit status 3 while some is left.
    Flush(FlushArgs),
}

#[derive(Debug, Args)]
struct FlushArgs {
    /// The state directory of the runs whose spool to send.
    #[arg(long, env = "INV_STATE_DIR", default_value = ".invbot")]
    state_dir: PathBuf,
    /// How long to keep sending, in seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Transactions to apply: CSV with header txn_id,warehouse_id,sku,operation,quantity, or
    /// JSON lines (.jsonl). Without it, a built-in sample of 500 rows.
    #[arg(long, env = "INV_INPUT")]
    input: Option<PathBuf>,
    /// Inventory API to call. Without it, the bot starts its own API process.
    #[arg(long, env = "INV_API_URL")]
    api_url: Option<String>,
    /// Transactions per batch (batches never mix warehouses).
    #[arg(long, env = "INV_BATCH_SIZE", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch_size: u64,
    /// API calls in flight at once.
    #[arg(long, env = "INV_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    concurrency: u64,
    /// Attempts per transaction, the first included (retries on 5xx, timeouts, connection errors).
    #[arg(long, env = "INV_MAX_ATTEMPTS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    max_attempts: u32,
    /// First retry delay in ms; doubles per retry, with jitter.
    #[arg(long, env = "INV_RETRY_BASE_MS", default_value_t = 50)]
    retry_base_ms: u64,
    /// Longest retry delay in ms.
    #[arg(long, env = "INV_RETRY_MAX_MS", default_value_t = 2_000)]
    retry_max_ms: u64,
    /// Timeout per API call in ms.
    #[arg(long, env = "INV_TIMEOUT_MS", default_value_t = 5_000)]
    timeout_ms: u64,
    /// Where the embedded API keeps its database, and the default place for rejects files.
    #[arg(long, env = "INV_STATE_DIR", default_value = ".invbot")]
    state_dir: PathBuf,
    /// Rejected rows with line number and reason (default: <state-dir>/rejects-<run id>.csv).
    #[arg(long, env = "INV_REJECTS")]
    rejects: Option<PathBuf>,
    /// Share of the embedded API's transaction calls answered 503 (fault injection).
    #[arg(long, env = "INV_API_FAULT_ERROR_RATE")]
    api_fault_error_rate: Option<f64>,
    /// Latency added to each of the embedded API's transaction calls, in ms.
    #[arg(long, env = "INV_API_FAULT_LATENCY_MS")]
    api_fault_latency_ms: Option<u64>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    no_progress: bool,
    /// Jaeger UI base URL, for links in the summary (e.g. http://localhost:16686).
    #[arg(long, env = "INV_JAEGER_URL")]
    jaeger_url: Option<String>,
    /// Grafana base URL, for Explore links in the summary (e.g. http://localhost:3000).
    #[arg(long, env = "INV_GRAFANA_URL")]
    grafana_url: Option<String>,
    /// Alert when a batch takes longer than this many seconds.
    #[arg(long, env = "INV_ALERT_BATCH_SECONDS", default_value_t = 2.0)]
    alert_batch_seconds: f64,
    /// Alert when more than this share of the last --alert-error-window transactions failed.
    #[arg(long, env = "INV_ALERT_ERROR_RATE", default_value_t = 0.05)]
    alert_error_rate: f64,
    #[arg(long, env = "INV_ALERT_ERROR_WINDOW", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    alert_error_window: u64,
    /// Alert when process CPU (share of all CPUs) stays above this for --alert-cpu-for-secs.
    #[arg(long, env = "INV_ALERT_CPU", default_value_t = 0.85)]
    alert_cpu: f64,
    #[arg(long, env = "INV_ALERT_CPU_FOR_SECS", default_value_t = 300)]
    alert_cpu_for_secs: u64,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// Data rows to write.
    #[arg(long, default_value_t = 10_000)]
    rows: usize,
    /// Seed: the same seed gives the same file.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Share of rows written malformed, 0..=1.
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    malformed: f64,
    /// Share of rows naming a SKU the catalog does not have, 0..=1.
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    unknown_sku: f64,
    /// csv or jsonl.
    #[arg(long, default_value = "csv", value_parser = ["csv", "jsonl"])]
    format: String,
    /// Output file (default: standard output).
    #[arg(long, short)]
    output: Option<PathBuf>,
}

/// Which run or trace, and where the backends' query APIs are: what `verify` and `report` share.
#[derive(Debug, Args)]
struct TargetArgs {
    /// One batch's trace id (32 hex digits, from the run summary).
    #[arg(long, conflicts_with = "run_id", value_parser = parse_trace_id)]
    trace_id: Option<verify::TraceId>,
    /// A run id (from the run summary): every batch trace of that run. Default: the last run
    /// started from --state-dir.
    #[arg(long)]
    run_id: Option<String>,
    /// Where `invbot run` recorded the last run id.
    #[arg(long, env = "INV_STATE_DIR", default_value = ".invbot")]
    state_dir: PathBuf,
    /// How long to keep polling the backends (they store asynchronously), in seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Jaeger query API (and UI, for links).
    #[arg(long, env = "INV_JAEGER_URL", default_value = verify::DEFAULT_JAEGER_URL)]
    jaeger_url: String,
    /// The log store the pipeline writes to: victorialogs, or loki for a Loki-based setup.
    #[arg(long, env = "INV_LOGS_BACKEND", default_value_t = verify::LogStore::VictoriaLogs)]
    logs_backend: verify::LogStore,
    /// The log store's HTTP API (default: VictoriaLogs http://127.0.0.1:9428, Loki
    /// http://127.0.0.1:3100).
    #[arg(long, env = "INV_LOGS_URL")]
    logs_url: Option<String>,
    /// Prometheus HTTP API.
    #[arg(
        long,
        env = "INV_PROMETHEUS_URL",
        default_value = verify::DEFAULT_PROMETHEUS_URL
    )]
    prometheus_url: String,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ReportArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The page to write (default: reports/run-<run id>.html, or reports/trace-<trace id>.html).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Grafana base URL, for Explore links (e.g. http://localhost:3000).
    #[arg(long, env = "INV_GRAFANA_URL")]
    grafana_url: Option<String>,
    /// vmui, VictoriaLogs' UI, for links to a batch's records (default: the log store's
    /// /select/vmui/ when it is VictoriaLogs).
    #[arg(long, env = "INV_VMUI_URL")]
    vmui_url: Option<String>,
}

fn parse_trace_id(s: &str) -> Result<verify::TraceId, String> {
    s.parse()
        .map_err(|e: verify::ParseTargetError| e.to_string())
}

fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a share between 0 and 1")),
    }
}

/// An error that is the user's to fix (exit 64) rather than a failure of the run (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    let result = match cli.command {
        Command::ServeApi { args } => return inventory_api::cli::main_from(args),
        Command::Generate(args) => run_generate(&args).map(|()| ExitCode::SUCCESS),
        Command::Run(args) => runtime().and_then(|rt| rt.block_on(run_command(*args))),
        Command::Verify(args) => runtime().and_then(|rt| rt.block_on(verify_command(args))),
        Command::Report(args) => runtime().and_then(|rt| rt.block_on(report_command(*args))),
        Command::Telemetry(TelemetryCommand::Flush(args)) => {
            runtime().and_then(|rt| rt.block_on(flush_command(args)))
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("invbot: {e:#}");
        if e.downcast_ref::<UsageError>().is_some() {
            ExitCode::from(EXIT_USAGE)
        } else {
            ExitCode::FAILURE
        }
    })
}

/// Writes a report to stdout; a reader that went away (`| head`) is not an error.
fn stdout(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The target's pillars judged by the verifier, with where the backends are.
async fn judge(args: TargetArgs) -> Result<(verify::Target, verify::Endpoints, verify::Report)> {
    let target = match (args.trace_id, args.run_id) {
        (Some(trace), _) => verify::Target::Trace(trace),
        (None, Some(run)) => run
            .parse()
            .map_err(|e: verify::ParseTargetError| UsageError(e.to_string()))?,
        (None, None) => {
            let file = args.state_dir.join(LAST_RUN_FILE);
            let run = std::fs::read_to_string(&file).map_err(|e| {
                UsageError(format!(
                    "no --trace-id or --run-id, and no last run recorded in {}: {e}",
                    file.display()
                ))
            })?;
            verify::Target::Run(run.trim().to_owned())
        }
    };
    // A run recorded here also tells how many batch traces it made.
    let expected = match &target {
        verify::Target::Run(id) => {
            std::fs::read_to_string(args.state_dir.join(LAST_RUN_BATCHES_FILE))
                .ok()
                .and_then(|text| {
                    let (run, batches) = text.trim().split_once(' ')?;
                    (run == id).then(|| batches.parse::<usize>().ok()).flatten()
                })
        }
        verify::Target::Trace(_) => None,
    };
    let endpoints = verify::Endpoints {
        jaeger: args.jaeger_url,
        logs: args
            .logs_url
            .unwrap_or_else(|| args.logs_backend.default_url().to_owned()),
        log_store: args.logs_backend,
        prometheus: args.prometheus_url,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut report = verify::verify(&target, &endpoints, deadline).await;
    if let Some(expected) = expected {
        while report.traces_found() < expected && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
            report = verify::verify(&target, &endpoints, deadline).await;
        }
        report.expect_traces(expected);
    }
    Ok((target, endpoints, report))
}

async fn verify_command(args: VerifyArgs) -> Result<ExitCode> {
    let (_, _, report) = judge(args.target).await?;
    if args.json {
        stdout(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        stdout(&report.to_string())?;
    }
    Ok(verdict(report.is_complete()))
}

fn verdict(complete: bool) -> ExitCode {
    if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_MISSING)
    }
}

async fn report_command(args: ReportArgs) -> Result<ExitCode> {
    let (target, endpoints, verdict_report) = judge(args.target).await?;
    let gathered = invbot::report::gather(&target, verdict_report, &endpoints).await;
    let (name, title) = match &target {
        verify::Target::Run(id) => (format!("run-{id}"), format!("invbot run {id}")),
        verify::Target::Trace(id) => (format!("trace-{id}"), format!("invbot trace {id}")),
    };
    let vmui = args.vmui_url.or_else(|| {
        (endpoints.log_store == verify::LogStore::VictoriaLogs)
            .then(|| format!("{}/select/vmui/", endpoints.logs.trim_end_matches('/')))
    });
    let links = invbot::report::LinkBases {
        jaeger: Some(endpoints.jaeger.clone()),
        grafana: args.grafana_url,
        vmui,
    };
    let data = invbot::report::ReportData::new(gathered, links, now_rfc3339());
    let html = invbot::report::render(&data, &title)?;
    let path = args
        .output
        .unwrap_or_else(|| PathBuf::from("reports").join(format!("{name}.html")));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    }
    std::fs::write(&path, &html).with_context(|| format!("cannot write {}", path.display()))?;
    let spans: usize = data.traces.values().map(|t| t.spans.len()).sum();
    let records: usize = data.traces.values().map(|t| t.logs.len()).sum();
    let mut text = format!(
        "wrote {} ({} KiB): {} batches, {spans} spans, {records} log records, {} charts\n",
        path.display(),
        html.len() / 1024,
        data.batches.len(),
        data.charts.len()
    );
    if !data.missing.is_empty() {
        text.push_str("missing:\n");
        for m in &data.missing {
            text.push_str(&format!("  - {m}\n"));
        }
    }
    stdout(&text)?;
    Ok(verdict(data.missing.is_empty()))
}

/// Now, as RFC 3339 in UTC, to the second.
fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn run_generate(args: &GenerateArgs) -> Result<()> {
    let opts = GenerateOptions {
        rows: args.rows,
        seed: args.seed,
        malformed: args.malformed,
        unknown_sku: args.unknown_sku,
        json_lines: args.format == "jsonl",
    };
    let malformed = match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| UsageError(format!("cannot create {}: {e}", path.display())))?;
            let mut out = std::io::BufWriter::new(file);
            let n = generate(&opts, &mut out)?;
            std::io::Write::flush(&mut out)?;
            n
        }
        None => generate(&opts, &mut std::io::stdout().lock())?,
    };
    if let Some(path) = &args.output {
        eprintln!(
            "wrote {} rows ({malformed} malformed) to {}",
            args.rows,
            path.display()
        );
    }
    Ok(())
}

fn read_input(path: Option<&PathBuf>) -> Result<(input::Parsed, String)> {
    let Some(path) = path else {
        let mut sample = Vec::new();
        let opts = GenerateOptions {
            rows: 500,
            seed: 1,
            malformed: 0.01,
            unknown_sku: 0.005,
            json_lines: false,
        };
        generate(&opts, &mut sample)?;
        let mut parsed = input::read(sample.as_slice(), Format::Csv)?;
        // Fresh idempotency keys per run (run id + line), so every run of the sample does work.
        for t in &mut parsed.transactions {
            t.txn_id = None;
        }
        return Ok((parsed, "built-in sample".into()));
    };
    // The path is the user's, but printed to the terminal like any text from outside.
    let shown = invbot::untrusted::escape(path.as_os_str().as_encoded_bytes(), 1024);
    let file = std::fs::File::open(path)
        .map_err(|e| UsageError(format!("cannot read input file {shown}: {e}")))?;
    let parsed = input::read(std::io::BufReader::new(file), Format::from_path(path))
        .map_err(|e| UsageError(format!("cannot read input file {shown}: {e}")))?;
    Ok((parsed, path.display().to_string()))
}

/// The bot's telemetry configuration: the environment, then the flags; the spool under
/// `state_dir`.
fn telemetry_config(state_dir: &Path, flags: &TelemetryArgs) -> Result<telemetry::Config> {
    let mut config = telemetry::Config::from_env(telemetry::Defaults {
        service_name: service::BOT.into(),
        service_version: env!("CARGO_PKG_VERSION").into(),
        metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 9100))),
        spool_dir: Some(state_dir.join(TELEMETRY_SPOOL_DIR)),
    })
    .map_err(|e| UsageError(e.to_string()))?;
    flags.apply(&mut config);
    Ok(config)
}

/// `invbot telemetry flush`: telemetry set up with the spool, which its sending threads send
/// first, then shut down with the given deadline.
async fn flush_command(args: FlushArgs) -> Result<ExitCode> {
    let mut config = telemetry_config(&args.state_dir, &args.telemetry)?;
    let Some(spool) = config.export.spool.clone() else {
        return Err(
            UsageError("INV_TELEMETRY_SPOOL is off: there is no spool to flush".into()).into(),
        );
    };
    if config.export.sdk_disabled {
        return Err(UsageError("OTEL_SDK_DISABLED is set: nothing would be sent".into()).into());
    }
    config.export.shutdown_timeout = Duration::from_secs(args.timeout_secs);
    config.metrics_addr = None;
    config.logs.console_filter = Some(format!("warn,{}=off", telemetry::EXPORT_TARGET));
    let endpoint = config.export.traces.url();
    let before = telemetry::spool_pending(&spool)
        .with_context(|| format!("cannot read the spool {}", spool.dir.display()))?;
    let report = telemetry::Telemetry::builder(config).init()?.shutdown();
    let left = telemetry::spool_pending(&spool)
        .with_context(|| format!("cannot read the spool {}", spool.dir.display()))?;
    println!(
        "telemetry flush to {endpoint}: the spool {} held {before}; sent {}; deleted unsent (too old, or refused) {}; left {left}",
        spool.dir.display(),
        report.resent,
        report.spool_lost,
    );
    Ok(if left.is_zero() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    })
}

async fn run_command(args: RunArgs) -> Result<ExitCode> {
    let (parsed, input_label) = read_input(args.input.as_ref())?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();

    let mut config = telemetry_config(&args.state_dir, &args.telemetry)?;
    // The terminal shows progress, the summary, alerts and final failures; every event is in
    // the JSON log file and in the log store. Export trouble, the bot's and its API's, is one
    // line of the summary rather than warnings on the way.
    config.logs.console_filter.get_or_insert_with(|| {
        format!("warn,invbot::client=error,{}=off", telemetry::EXPORT_TARGET)
    });
    let exported_to = if config.export.sdk_disabled {
        None
    } else {
        Some(config.export.traces.url())
    };
    let api_telemetry = config.clone();
    let api_url_for_readyz: Arc<OnceLock<String>> = Arc::default();
    let readyz_url = api_url_for_readyz.clone();
    let guard = telemetry::Telemetry::builder(config)
        .readiness(move || {
            let url = readyz_url.get().map(|u| format!("{u}/readyz"));
            async move {
                let url = url.ok_or("the inventory API is not started yet")?;
                match reqwest::get(&url).await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("{url} answered {}", r.status())),
                    Err(e) => Err(format!("{url}: {e}")),
                }
            }
        })
        .init()?;

    // Best effort: `invbot verify` without arguments checks this run.
    let _ = std::fs::create_dir_all(&args.state_dir)
        .and_then(|()| std::fs::write(args.state_dir.join(LAST_RUN_FILE), &run_id));
    let outcome = run_with_api(
        &args,
        parsed,
        input_label,
        run_id,
        &guard,
        &api_url_for_readyz,
        api_telemetry,
    )
    .await;
    let mut report = guard.shutdown();
    let (mut summary, api_report) = outcome?;
    if let Some(api_report) = api_report {
        report.merge(api_report);
    }
    let _ = std::fs::write(
        args.state_dir.join(LAST_RUN_BATCHES_FILE),
        format!("{} {}", summary.run_id, summary.batches.len()),
    );
    summary.telemetry = Some(match exported_to {
        Some(endpoint) => invbot::summary::telemetry_line(&endpoint, &report),
        None => "off (OTEL_SDK_DISABLED)".to_owned(),
    });
    if args.json {
        stdout(&format!("{}\n", serde_json::to_string_pretty(&summary)?))?;
    } else {
        stdout(&summary.render())?;
    }
    if !summary.counts_add_up() {
        anyhow::bail!(
            "internal error: rows read ({}) != applied + failed + rejected",
            summary.rows_read
        );
    }
    Ok(if summary.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    })
}

/// The run, with the embedded API around it unless `--api-url` names one; the API's telemetry
/// report comes back with the summary.
async fn run_with_api(
    args: &RunArgs,
    parsed: input::Parsed,
    input_label: String,
    run_id: String,
    guard: &telemetry::TelemetryGuard,
    api_url: &OnceLock<String>,
    api_telemetry: telemetry::Config,
) -> Result<(invbot::summary::Summary, Option<ShutdownReport>)> {
    let api = match &args.api_url {
        Some(_) => None,
        None => {
            let settings = ApiSettings {
                telemetry: api_telemetry,
                fault_error_rate: args.api_fault_error_rate,
                fault_latency_ms: args.api_fault_latency_ms,
            };
            Some(ApiProcess::start(&args.state_dir, &settings).await?)
        }
    };
    let url = args
        .api_url
        .clone()
        .or_else(|| api.as_ref().map(|a| a.url.clone()))
        .unwrap_or_default();
    let _ = api_url.set(url.clone());
    let policy = RetryPolicy {
        max_attempts: args.max_attempts,
        base_delay: Duration::from_millis(args.retry_base_ms),
        max_delay: Duration::from_millis(args.retry_max_ms),
        timeout: Duration::from_millis(args.timeout_ms),
    };
    let meter = guard.meter(names::scope::BOT);
    let client = ApiClient::new(&url, policy, &meter).context("cannot build the HTTP client")?;
    let opts = RunOptions {
        rejects_path: args
            .rejects
            .clone()
            .unwrap_or_else(|| args.state_dir.join(format!("rejects-{run_id}.csv"))),
        run_id,
        input_label,
        batch_size: usize::try_from(args.batch_size).unwrap_or(usize::MAX),
        concurrency: usize::try_from(args.concurrency).unwrap_or(usize::MAX),
        thresholds: Thresholds {
            batch_seconds: args.alert_batch_seconds,
            error_rate: args.alert_error_rate,
            error_window: usize::try_from(args.alert_error_window).unwrap_or(usize::MAX),
            cpu_utilization: args.alert_cpu,
            cpu_for: Duration::from_secs(args.alert_cpu_for_secs),
        },
        jaeger_url: args.jaeger_url.clone(),
        grafana_url: args.grafana_url.clone(),
        progress: std::io::stderr().is_terminal() && !args.no_progress,
    };
    let summary = run(&opts, parsed, &client, &meter, guard.resources()).await;
    let api_report = match api {
        Some(api) => Some(api.stop().await?),
        None => None,
    };
    let summary = summary.with_context(|| {
        format!(
            "cannot write the rejects file {}",
            opts.rejects_path.display()
        )
    })?;
    Ok((summary, api_report))
}
