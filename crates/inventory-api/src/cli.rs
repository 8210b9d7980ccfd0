//! The `inventory-api` command line, as a library module so that other binaries can run the
//! service as a subcommand (`invbot serve-api ...` re-executes itself this way).
//!
//! Telemetry is set up from the environment and the flags (a flag beats the environment). A
//! parent process talks to the service through two lines on its stdout: [`LISTENING_PREFIX`]
//! once it accepts connections, [`TELEMETRY_REPORT_PREFIX`] as it exits.

use std::ffi::OsString;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use clap::error::ErrorKind;
use telemetry::{Defaults, Telemetry, TelemetryArgs};

use crate::{AppState, Db, ErrorRate, FaultConfig};

/// sysexits' EX_USAGE: the command line or the environment is wrong.
const EX_USAGE: u8 = 64;
const DEFAULT_METRICS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9101);
/// How long open requests may run on after a shutdown signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
const MAX_FAULT_LATENCY_MS: u64 = 60_000;

/// Starts the line the service prints on stdout once it accepts connections; its URL follows.
pub const LISTENING_PREFIX: &str = "listening on ";
/// Starts the line the service prints on stdout as it exits; the JSON of its telemetry's
/// [`telemetry::ShutdownReport`] follows.
pub const TELEMETRY_REPORT_PREFIX: &str = "telemetry report: ";

/// The inventory HTTP service: items and idempotent stock transactions over SQLite.
#[derive(Debug, Parser)]
#[command(name = "inventory-api", version)]
struct Cli {
    /// Address to serve the API on.
    #[arg(long, env = "INV_API_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// SQLite database file; created on first start.
    #[arg(long, env = "INV_API_DB", default_value = "inventory.db")]
    db: PathBuf,
    /// Fill an empty catalog with WH-01..WH-50 x SKU-00001..SKU-00200, 1000 of each.
    #[arg(long, env = "INV_API_SEED_DEMO_CATALOG")]
    seed_demo_catalog: bool,
    /// Share of POST /transactions answered 503 injected_fault, from 0 to 1.
    #[arg(
        long,
        env = "INV_API_FAULT_ERROR_RATE",
        value_name = "RATE",
        default_value = "0"
    )]
    fault_error_rate: ErrorRate,
    /// Latency added to every POST /transactions, in milliseconds.
    #[arg(
        long,
        env = "INV_API_FAULT_LATENCY_MS",
        value_name = "MS",
        default_value_t = 0,
        value_parser = clap::value_parser!(u64).range(..=MAX_FAULT_LATENCY_MS)
    )]
    fault_latency_ms: u64,
    /// Also shut down when standard input closes, so a parent process that dies takes the
    /// service with it.
    #[arg(long)]
    exit_on_stdin_close: bool,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

/// Runs the service as the `inventory-api` binary does; `args` excludes the program name.
/// Blocks until shutdown and returns the process exit status: 0, 1 on failure, 64 for bad usage.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args =
        std::iter::once(OsString::from("inventory-api")).chain(args.into_iter().map(Into::into));
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(EX_USAGE),
            };
        }
    };
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inventory-api: {e:#}");
            if e.is::<telemetry::ConfigError>() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = telemetry::Config::from_env(Defaults {
        service_name: names::service::API.into(),
        service_version: env!("CARGO_PKG_VERSION").into(),
        metrics_addr: Some(DEFAULT_METRICS_ADDR),
        spool_dir: None,
    })?;
    cli.telemetry.apply(&mut config);

    // Bound before anything else starts, so a busy port fails fast.
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;

    // Not ready until the database is open and seeded.
    let ready_db = Arc::new(OnceLock::<Db>::new());
    let guard = Telemetry::builder(config)
        .readiness({
            let ready_db = Arc::clone(&ready_db);
            move || {
                let db = ready_db.get().cloned();
                async move {
                    match db {
                        Some(db) => db.ping().await.map_err(|e| names::error_chain(&e)),
                        None => Err("the database is not open yet".to_owned()),
                    }
                }
            }
        })
        .init()?;

    let result = serve_until_shutdown(cli, listener, &ready_db).await;
    if let Err(e) = &result {
        tracing::error!("{e:#}");
    }
    let report = guard.shutdown();
    // The library has warned on the console already; this line is for a parent process (invbot
    // folds it into its run's summary). A closed stdout is no reason to fail.
    if let Ok(json) = serde_json::to_string(&report) {
        let _ = writeln!(std::io::stdout(), "{TELEMETRY_REPORT_PREFIX}{json}");
    }
    result
}

async fn serve_until_shutdown(
    cli: Cli,
    listener: tokio::net::TcpListener,
    ready_db: &OnceLock<Db>,
) -> anyhow::Result<()> {
    // Installed before the slow steps, so a signal during them still ends in a clean shutdown.
    let shutdown = shutdown_requested(cli.exit_on_stdin_close)?;
    let db = Db::open(&cli.db)?;
    if cli.seed_demo_catalog {
        let inserted = db
            .seed_demo_catalog()
            .await
            .context("cannot seed the demo catalog")?;
        if inserted == 0 {
            tracing::info!("demo catalog not seeded: the catalog already has items");
        } else {
            tracing::info!(inserted, "demo catalog seeded");
        }
    }
    let _ = ready_db.set(db.clone());
    let faults = FaultConfig {
        error_rate: cli.fault_error_rate,
        latency: Duration::from_millis(cli.fault_latency_ms),
    };
    let server = crate::spawn(listener, AppState::new(db, faults))?;
    tracing::info!(
        addr = %server.addr(),
        db = %cli.db.display(),
        fault_error_rate = faults.error_rate.get(),
        fault_latency_ms = cli.fault_latency_ms,
        "inventory-api listening"
    );

    // On stdout for a parent process to read (invbot waits for this line).
    println!("{LISTENING_PREFIX}{}", server.url());
    shutdown.await;
    tracing::info!("shutdown requested: draining open requests");
    match tokio::time::timeout(DRAIN_DEADLINE, server.stop()).await {
        Ok(result) => result.context("serving HTTP failed"),
        Err(_) => {
            tracing::warn!(deadline = ?DRAIN_DEADLINE, "requests still open after the drain deadline; stopping anyway");
            Ok(())
        }
    }
}

/// Completes on the first SIGINT or SIGTERM, or when stdin closes if `stdin_too`.
fn shutdown_requested(stdin_too: bool) -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let stdin_closed = stdin_too.then(stdin_closed).transpose()?;
    Ok(async move {
        let stdin_closed = async {
            match stdin_closed {
                Some(closed) => {
                    let _ = closed.await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
            () = stdin_closed => {}
        }
    })
}

/// Reads stdin to its end on a thread of its own (a blocking read cannot be cancelled, and the
/// thread ends with the process), then completes the returned channel.
fn stdin_closed() -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    let (closed, on_close) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = closed.send(());
        })?;
    Ok(on_close)
}
