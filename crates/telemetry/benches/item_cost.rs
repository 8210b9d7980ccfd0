//! What telemetry costs per item, three setups side by side in one run. An item is one span with
//! 5 attributes, two log events inside it, one counter add and one histogram record (instruments
//! bound to their attribute sets, as the bot's per-transaction instruments are).
//!
//! - **ours**: this crate, `Telemetry::builder(config).build()` with its default settings (only
//!   the endpoint set, the console and the JSON file off), exporting over OTLP/gRPC;
//! - **stock**: the wiring the upstream examples show, built here and not through this crate:
//!   `Registry` + tracing-opentelemetry's layer (no location, threads or inactivity tracking) +
//!   `OpenTelemetryTracingBridge` (behind the examples' `info,hyper=off,tonic=off,...` filter),
//!   over an `SdkTracerProvider` with a `BatchSpanProcessor`, an `SdkLoggerProvider` with a
//!   `BatchLogProcessor` and an `SdkMeterProvider` with a `PeriodicReader`, all with
//!   opentelemetry-otlp's tonic exporters and the SDK's default batch settings; the counter and
//!   the histogram come from that meter provider;
//! - **disabled**: this crate with `OTEL_SDK_DISABLED=true`.
//!
//! Both exporting setups send to the same kind of in-process OTLP receiver (`otlp_sink`).
//!
//! Each setup runs a fixed burst of 200,000 items on one thread, in a process of its own (this
//! binary again, so that no setup inherits another's heap, threads or callsite cache), and reports
//! per item: the CPU of the instrumented thread (`cpu_time::ThreadTime`); the CPU of the whole
//! process from the first item until the providers' shutdown has returned, export and the
//! receiver's decoding included, and the same without the receiver's threads (it has a runtime
//! of its own; its work is a collector's, in another process in production); the wall
//! time of the burst; the heap allocations and bytes that the instrumented thread made in the
//! burst (a counting global allocator, per thread); the peak RSS above the RSS before the burst
//! (VmHWM, reset through /proc/self/clear_refs); and how many spans and log records the receiver
//! got of those emitted. The setups take turns, `ITEM_COST_ROUNDS` rounds (3), and the table gives
//! each figure's median, so that a machine whose speed drifts moves every setup alike. Then it
//! prints the ratios ours/stock and ours/disabled.
//!
//! Criterion measures `item/<setup>` as well (a steady state, where a full queue drops);
//! `ITEM_COST_PARTS=1` adds the parts of an item alone (span, 2 events, metrics) for ours and stock.
//!
//! `cargo bench -p telemetry --bench item_cost`

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundCounter, BoundHistogram, Meter, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_otlp::{LogExporter, MetricExporter, SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{BatchLogProcessor, SdkLoggerProvider};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use otlp_sink::OtlpSink;
use telemetry::{Config, Defaults, Telemetry, TelemetryGuard};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry};

#[global_allocator]
static ALLOCATOR: densa_alloc::CountingAllocator = densa_alloc::CountingAllocator::system();

/// Items in the fixed burst of each setup.
const ITEMS: u64 = 200_000;
/// Log events per item.
const EVENTS_PER_ITEM: u64 = 2;
/// Set in a child process to the setup it measures.
const CHILD_ENV: &str = "ITEM_COST_SETUP";
/// The line a child prints its figures on.
const CHILD_PREFIX: &str = "item_cost figures: ";

/// Bound to their attribute sets, as the bot's per-transaction instruments are, in every setup.
struct Instruments {
    transactions: BoundCounter<u64>,
    latency: BoundHistogram<f64>,
}

impl Instruments {
    fn new(meter: &Meter) -> Self {
        Self {
            transactions: meter
                .u64_counter("bench.transactions")
                .build()
                .bind(&[KeyValue::new("outcome", "applied")]),
            latency: meter
                .f64_histogram("bench.latency")
                .with_unit("s")
                .build()
                .bind(&[]),
        }
    }
}

type Work = fn(&Instruments, u64);

fn item_span(i: u64) -> tracing::Span {
    tracing::info_span!(
        "item",
        sku = "SKU-00042",
        warehouse_id = "WH-07",
        operation = "ship",
        quantity = 5_i64,
        attempt = i as i64,
    )
}

#[inline(never)]
fn item(m: &Instruments, i: u64) {
    let span = item_span(i);
    let _entered = span.enter();
    events(m, i);
    metrics(m, i);
}

// The item's parts, measured alone to show where the cost is.
#[inline(never)]
fn span_only(_: &Instruments, i: u64) {
    let _entered = item_span(i).entered();
}

#[inline(never)]
fn events(_: &Instruments, _: u64) {
    tracing::info!(
        event = "item_processed",
        outcome = "applied",
        "item processed"
    );
    tracing::info!(
        event = "api_call",
        status = 200_i64,
        "inventory API answered"
    );
}

#[inline(never)]
fn metrics(m: &Instruments, _: u64) {
    m.transactions.add(1);
    m.latency.record(0.012);
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Setup {
    Ours,
    Stock,
    Disabled,
}

const SETUPS: [Setup; 3] = [Setup::Ours, Setup::Stock, Setup::Disabled];

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::Stock => "stock",
            Self::Disabled => "disabled",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Ours => "ours (defaults)",
            Self::Stock => "stock wiring",
            Self::Disabled => "OTEL_SDK_DISABLED",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        SETUPS.into_iter().find(|s| s.name() == name)
    }

    fn exports(self) -> bool {
        self != Self::Disabled
    }

    fn build(self, endpoint: &str) -> Wired {
        match self {
            Self::Ours => ours(endpoint, false),
            Self::Stock => stock(endpoint),
            Self::Disabled => ours(endpoint, true),
        }
    }
}

/// A setup, built: the subscriber to record with, the instruments, and what flushes.
struct Wired {
    dispatch: tracing::Dispatch,
    instruments: Instruments,
    providers: Providers,
}

enum Providers {
    Ours(Box<TelemetryGuard>),
    Stock {
        tracer: SdkTracerProvider,
        logger: SdkLoggerProvider,
        meter: SdkMeterProvider,
    },
}

impl Wired {
    /// Flushes and stops the providers (traces, logs, metrics); says what went wrong, if anything.
    fn shutdown(self) -> String {
        drop(self.dispatch);
        match self.providers {
            Providers::Ours(guard) => guard.shutdown().to_string(),
            Providers::Stock {
                tracer,
                logger,
                meter,
            } => {
                let outcomes = [
                    ("traces", tracer.shutdown()),
                    ("logs", logger.shutdown()),
                    ("metrics", meter.shutdown()),
                ];
                let errors: Vec<String> = outcomes
                    .into_iter()
                    .filter_map(|(signal, r)| r.err().map(|e| format!("{signal}: {e}")))
                    .collect();
                if errors.is_empty() {
                    "shutdown ok".to_owned()
                } else {
                    errors.join("; ")
                }
            }
        }
    }
}

/// This crate with its default settings: only the endpoint, no console, no JSON file.
fn ours(endpoint: &str, disabled: bool) -> Wired {
    let vars = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
        ("OTEL_SDK_DISABLED", disabled.to_string()),
        ("INV_LOG_CONSOLE", "false".to_owned()),
        ("INV_LOG_FILE", "off".to_owned()),
    ];
    let config = Config::from_lookup(
        Defaults {
            service_name: "bench".into(),
            service_version: "0".into(),
            metrics_addr: None,
            spool_dir: None,
        },
        |k| vars.iter().find(|(v, _)| *v == k).map(|(_, x)| x.clone()),
    )
    .expect("config");
    let (dispatch, guard) = Telemetry::builder(config).build().expect("telemetry");
    Wired {
        dispatch,
        instruments: Instruments::new(&guard.meter("bench")),
        providers: Providers::Ours(Box::new(guard)),
    }
}

/// The upstream examples' wiring, with the SDK's default batch settings: one small function per
/// signal, as in opentelemetry-otlp's basic example.
fn stock(endpoint: &str) -> Wired {
    let resource = Resource::builder().with_service_name("bench-stock").build();
    let tracer = stock_traces(endpoint, resource.clone());
    let logger = stock_logs(endpoint, resource.clone());
    let meter = stock_metrics(endpoint, resource);
    // As the examples do: the exporters' own crates never become log records.
    let bridge_filter = ["hyper", "tonic", "h2", "reqwest"]
        .iter()
        .fold(EnvFilter::new("info"), |f, target| {
            f.add_directive(format!("{target}=off").parse().expect("a directive"))
        });
    let subscriber = Registry::default()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer.tracer("bench"))
                .with_location(false)
                .with_threads(false)
                .with_tracked_inactivity(false),
        )
        .with(OpenTelemetryTracingBridge::new(&logger).with_filter(bridge_filter));
    Wired {
        dispatch: tracing::Dispatch::new(subscriber),
        instruments: Instruments::new(&meter.meter("bench")),
        providers: Providers::Stock {
            tracer,
            logger,
            meter,
        },
    }
}

fn stock_traces(endpoint: &str, resource: Resource) -> SdkTracerProvider {
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .expect("span exporter");
    SdkTracerProvider::builder()
        .with_resource(resource)
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .build()
}

fn stock_logs(endpoint: &str, resource: Resource) -> SdkLoggerProvider {
    let exporter = LogExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .expect("log exporter");
    SdkLoggerProvider::builder()
        .with_resource(resource)
        .with_log_processor(BatchLogProcessor::builder(exporter).build())
        .build()
}

fn stock_metrics(endpoint: &str, resource: Resource) -> SdkMeterProvider {
    let exporter = MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .expect("metric exporter");
    SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(PeriodicReader::builder(exporter).build())
        .build()
}

/// Times `n` items on this thread; returns wall ns per item.
fn timed(dispatch: &tracing::Dispatch, m: &Instruments, work: Work, n: u64) -> f64 {
    tracing::dispatcher::with_default(dispatch, || {
        let start = Instant::now();
        for i in 0..n {
            work(m, i);
        }
        start.elapsed().as_nanos() as f64 / n as f64
    })
}

/// Per-item figures of one setup's fixed burst.
#[derive(Debug, Default)]
struct Figures {
    /// CPU of the instrumented thread, ns.
    thread_cpu: f64,
    /// CPU of the whole process until the providers' shutdown returned, ns.
    process_cpu: f64,
    /// Of that, the in-process receiver's threads (decoding what arrives; a collector's work), ns.
    receiver_cpu: f64,
    /// Wall time of the burst, ns.
    wall: f64,
    /// Heap allocations (alloc and realloc calls) of the instrumented thread.
    allocs: f64,
    /// Bytes those allocations asked for.
    alloc_bytes: f64,
    /// Peak RSS above the RSS before the burst, MiB (NaN where Linux does not say).
    peak_rss_mib: f64,
    /// From the end of the burst until shutdown returned, ms.
    shutdown_ms: f64,
    /// What the receiver got in all (not per item).
    spans: u64,
    logs: u64,
    /// The shutdown's own word.
    note: String,
}

impl Figures {
    /// One line for the parent process: the numbers, a tab, the note.
    fn to_line(&self) -> String {
        format!(
            "{} {} {} {} {} {} {} {} {} {}\t{}",
            self.thread_cpu,
            self.process_cpu,
            self.receiver_cpu,
            self.wall,
            self.allocs,
            self.alloc_bytes,
            self.peak_rss_mib,
            self.shutdown_ms,
            self.spans,
            self.logs,
            self.note
        )
    }

    /// Each figure's median over `rounds` (the fewest delivered, every distinct note).
    fn median(rounds: &[Self]) -> Self {
        let of = |figure: fn(&Self) -> f64| {
            let mut values: Vec<f64> = rounds.iter().map(figure).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        let mut notes: Vec<&str> = rounds.iter().map(|f| f.note.as_str()).collect();
        notes.sort_unstable();
        notes.dedup();
        Self {
            thread_cpu: of(|f| f.thread_cpu),
            process_cpu: of(|f| f.process_cpu),
            // So that the table's "without the receiver" is the median of that difference.
            receiver_cpu: of(|f| f.process_cpu) - of(|f| f.process_cpu - f.receiver_cpu),
            wall: of(|f| f.wall),
            allocs: of(|f| f.allocs),
            alloc_bytes: of(|f| f.alloc_bytes),
            peak_rss_mib: of(|f| f.peak_rss_mib),
            shutdown_ms: of(|f| f.shutdown_ms),
            spans: rounds.iter().map(|f| f.spans).min().unwrap_or(0),
            logs: rounds.iter().map(|f| f.logs).min().unwrap_or(0),
            note: notes.join(" | "),
        }
    }

    fn parse(line: &str) -> Option<Self> {
        let (numbers, note) = line.split_once('\t')?;
        let n: Vec<f64> = numbers
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let [
            thread_cpu,
            process_cpu,
            receiver_cpu,
            wall,
            allocs,
            alloc_bytes,
            peak,
            shutdown_ms,
            spans,
            logs,
        ] = n[..]
        else {
            return None;
        };
        Some(Self {
            thread_cpu,
            process_cpu,
            receiver_cpu,
            wall,
            allocs,
            alloc_bytes,
            peak_rss_mib: peak,
            shutdown_ms,
            spans: spans as u64,
            logs: logs as u64,
            note: note.to_owned(),
        })
    }
}

/// Spans and log records the receiver holds, counted and then forgotten, so that its memory
/// stays small during a burst.
fn take_delivered(sink: &OtlpSink) -> (u64, u64) {
    let got = std::mem::take(&mut *sink.received());
    let spans = got
        .traces
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum();
    let logs = got
        .logs
        .iter()
        .flat_map(|r| &r.resource_logs)
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len() as u64)
        .sum();
    (spans, logs)
}

/// A figure of this process from /proc/self/status, in KiB (`VmRSS`, `VmHWM`).
fn status_kib(key: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// One setup's fixed burst, from building it to its shutdown, in this process.
fn fixed_run(setup: Setup, sink: &OtlpSink) -> Figures {
    assert!(
        densa_alloc::is_active(),
        "the counting allocator is not installed"
    );
    let wired = setup.build(&sink.endpoint());
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let tally = std::thread::Builder::new()
            .name(format!("{RECEIVER}-tally"))
            .spawn_scoped(s, || {
                let (mut spans, mut logs) = (0, 0);
                while !stop.load(Ordering::Relaxed) {
                    let (sp, lg) = take_delivered(sink);
                    (spans, logs) = (spans + sp, logs + lg);
                    std::thread::sleep(Duration::from_millis(20));
                }
                (spans, logs)
            })
            .expect("the tally thread");
        let rss_before = status_kib("VmRSS");
        // "5" resets the peak RSS to the current RSS (Linux 4.0 and later).
        let peak_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        let process = cpu_time::ProcessTime::now();
        let receiver = receiver_ticks();
        let start = Instant::now();
        let (thread_cpu, allocs) = tracing::dispatcher::with_default(&wired.dispatch, || {
            let thread = cpu_time::ThreadTime::now();
            let ((), allocs) = densa_alloc::measure(|| {
                for i in 0..ITEMS {
                    item(&wired.instruments, i);
                }
            });
            (thread.elapsed(), allocs)
        });
        let wall = start.elapsed();
        let note = wired.shutdown();
        let process_cpu = process.elapsed();
        let receiver_cpu = ticks_to_duration(receiver_ticks().saturating_sub(receiver));
        let shutdown = start.elapsed() - wall;
        let peak_rss_mib = match (peak_reset, rss_before, status_kib("VmHWM")) {
            (true, Some(before), Some(peak)) => peak.saturating_sub(before) as f64 / 1024.0,
            _ => f64::NAN,
        };
        stop.store(true, Ordering::Relaxed);
        let (spans, logs) = tally.join().expect("the tally thread");
        let (last_spans, last_logs) = take_delivered(sink);
        let per_item = |d: Duration| d.as_nanos() as f64 / ITEMS as f64;
        Figures {
            thread_cpu: per_item(thread_cpu),
            process_cpu: per_item(process_cpu),
            receiver_cpu: per_item(receiver_cpu),
            wall: per_item(wall),
            allocs: (allocs.allocs + allocs.reallocs) as f64 / ITEMS as f64,
            alloc_bytes: allocs.bytes_allocated as f64 / ITEMS as f64,
            peak_rss_mib,
            shutdown_ms: shutdown.as_secs_f64() * 1000.0,
            spans: spans + last_spans,
            logs: logs + last_logs,
            note,
        }
    })
}

/// The name the receiver's threads start with, so that their CPU can be told apart.
const RECEIVER: &str = "receiver";

/// CPU ticks (user + system) of this process's receiver threads so far.
fn receiver_ticks() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|stat| {
            // "tid (comm) state ppid ...": utime and stime are the 11th and 12th after state.
            let (head, rest) = stat.rsplit_once(") ")?;
            head.split_once(" (")?
                .1
                .starts_with(RECEIVER)
                .then_some(())?;
            let f: Vec<i64> = rest
                .split(' ')
                .skip(1)
                .map_while(|x| x.parse().ok())
                .collect();
            u64::try_from(f.get(10)? + f.get(11)?).ok()
        })
        .sum()
}

/// Linux counts thread CPU in ticks of 1/100 s (USER_HZ).
fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_millis(ticks * 10)
}

/// A tokio runtime of one worker; the instrumented thread is not one of its workers.
fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

/// In a child process: measure one setup and print its figures for the parent. The receiver
/// has a runtime of its own, so that its CPU (a collector's, elsewhere) can be subtracted.
fn child(setup: Setup) {
    let receiver = runtime(RECEIVER);
    let exporter = runtime("exporter");
    let _rt = exporter.enter();
    let sink = receiver.block_on(OtlpSink::start()).expect("receiver");
    let figures = fixed_run(setup, &sink);
    println!("{CHILD_PREFIX}{}", figures.to_line());
}

/// Runs this binary again to measure `setup` alone.
fn in_child(setup: Setup) -> Figures {
    let exe = std::env::current_exe().expect("this benchmark's path");
    eprintln!("item_cost: {ITEMS} items, {}", setup.label());
    let out = Command::new(exe)
        .env(CHILD_ENV, setup.name())
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("cannot run the benchmark's child process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| Figures::parse(l.strip_prefix(CHILD_PREFIX)?))
        .unwrap_or_else(|| {
            panic!(
                "{} measured nothing ({}): {stdout}",
                setup.name(),
                out.status
            )
        })
}

/// Criterion's steady-state measurements, each setup built afresh in this process.
fn criterion_runs(sink: &OtlpSink) {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let with_parts = std::env::var_os("ITEM_COST_PARTS").is_some_and(|v| v == "1");
    for setup in SETUPS {
        let wired = setup.build(&sink.endpoint());
        let parts: &[(&str, Work)] = if with_parts && setup.exports() {
            &[
                ("span", span_only),
                ("2 events", events),
                ("metrics", metrics),
                ("item", item),
            ]
        } else {
            &[("item", item)]
        };
        for (part, work) in parts {
            c.bench_function(&format!("{part}/{}", setup.name()), |b| {
                b.iter_custom(|iters| {
                    let ns = timed(&wired.dispatch, &wired.instruments, *work, iters);
                    sink.clear(); // bound the receiver's memory
                    Duration::from_nanos((ns * iters as f64) as u64)
                })
            });
        }
        let _ = wired.shutdown();
        sink.clear();
    }
    c.final_summary();
}

fn delivered(got: u64, emitted: u64) -> String {
    format!(
        "{got}/{emitted} ({:.1}%)",
        100.0 * got as f64 / emitted as f64
    )
}

fn print_table(figures: &[(Setup, Figures)]) {
    println!(
        "\nper item over a burst of {ITEMS} items (1 span + 5 attributes, 2 log events, \
         1 counter add, 1 histogram record), each setup in its own process; each figure the \
         median of the rounds (the fewest received):"
    );
    println!(
        "  {:<18} {:>10} {:>11} {:>13} {:>9} {:>7} {:>7} {:>9} {:>9}  {:<24} log records received",
        "",
        "thread CPU",
        "process CPU",
        "w/o receiver",
        "wall",
        "allocs",
        "bytes",
        "peak RSS",
        "shutdown",
        "spans received"
    );
    println!(
        "  {:<18} {:>10} {:>11} {:>13} {:>9} {:>7} {:>7} {:>9} {:>9}",
        "", "ns", "ns", "ns", "ns", "", "", "+MiB", "ms"
    );
    for (setup, f) in figures {
        let (spans, logs) = if setup.exports() {
            (
                delivered(f.spans, ITEMS),
                delivered(f.logs, ITEMS * EVENTS_PER_ITEM),
            )
        } else {
            ("-".to_owned(), "-".to_owned())
        };
        println!(
            "  {:<18} {:>10.0} {:>11.0} {:>13.0} {:>9.0} {:>7.1} {:>7.0} {:>9.1} {:>9.0}  {spans:<24} {logs}",
            setup.label(),
            f.thread_cpu,
            f.process_cpu,
            f.process_cpu - f.receiver_cpu,
            f.wall,
            f.allocs,
            f.alloc_bytes,
            f.peak_rss_mib,
            f.shutdown_ms,
        );
    }
    let of = |s: Setup| {
        figures
            .iter()
            .find(|(x, _)| *x == s)
            .map(|(_, f)| f)
            .expect("every setup measured")
    };
    let (ours, stock, off) = (of(Setup::Ours), of(Setup::Stock), of(Setup::Disabled));
    for (name, other) in [("ours/stock", stock), ("ours/disabled", off)] {
        println!(
            "  {name:<14} thread CPU {:.2}x, process CPU {:.2}x, without the receiver {:.2}x",
            ours.thread_cpu / other.thread_cpu,
            ours.process_cpu / other.process_cpu,
            (ours.process_cpu - ours.receiver_cpu) / (other.process_cpu - other.receiver_cpu)
        );
    }
    for (setup, f) in figures {
        println!("  shutdown, {}: {}", setup.label(), f.note);
    }
}

fn main() {
    if let Some(setup) = std::env::var(CHILD_ENV)
        .ok()
        .as_deref()
        .and_then(Setup::parse)
    {
        return child(setup);
    }
    // The setups in turn, round after round: a machine whose speed drifts (a shared VM) moves
    // every setup's median alike.
    let rounds = std::env::var("ITEM_COST_ROUNDS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3);
    let mut measured: Vec<(Setup, Vec<Figures>)> =
        SETUPS.into_iter().map(|s| (s, Vec::new())).collect();
    for round in 1..=rounds {
        for (setup, figures) in &mut measured {
            eprintln!("item_cost: round {round} of {rounds}");
            figures.push(in_child(*setup));
        }
    }
    let figures: Vec<(Setup, Figures)> = measured
        .into_iter()
        .map(|(setup, rounds)| (setup, Figures::median(&rounds)))
        .collect();
    let runtime = runtime("exporter");
    let _rt = runtime.enter();
    let sink = runtime.block_on(OtlpSink::start()).expect("receiver");
    criterion_runs(&sink);
    print_table(&figures);
}
