//! Per-item cost of telemetry: one span with 5 attributes, two log events, one counter add and
//! one histogram record, (a) exporting over OTLP/gRPC to an in-process receiver, (b) with
//! OTEL_SDK_DISABLED. Criterion measures both; a final timed loop prints the cost per item of
//! each, their ratio, and how much of the telemetry was delivered.
//!
//! `cargo bench -p telemetry --bench item_cost`

use std::time::{Duration, Instant};

use criterion::Criterion;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use otlp_sink::OtlpSink;
use telemetry::{Config, Defaults, ShutdownReport, Telemetry, TelemetryGuard};

const SUMMARY_ITEMS: u64 = 200_000;

struct Instruments {
    transactions: Counter<u64>,
    latency: Histogram<f64>,
    outcome: [KeyValue; 1],
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
    m.transactions.add(1, &m.outcome);
    m.latency.record(0.012, &[]);
}

fn setup(endpoint: &str, disabled: bool) -> (tracing::Dispatch, TelemetryGuard, Instruments) {
    let vars = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
        ("OTEL_SDK_DISABLED", disabled.to_string()),
        // Large queues and short delays so the receiver keeps up and little is dropped.
        ("OTEL_BSP_MAX_QUEUE_SIZE", "65536".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "131072".to_owned()),
        ("OTEL_BLRP_SCHEDULE_DELAY", "100".to_owned()),
        ("INV_LOG_CONSOLE", "false".to_owned()),
        ("INV_LOG_FILE", "off".to_owned()),
    ];
    let config = Config::from_lookup(
        Defaults {
            service_name: "bench".into(),
            service_version: "0".into(),
            metrics_addr: None,
        },
        |k| vars.iter().find(|(v, _)| *v == k).map(|(_, x)| x.clone()),
    )
    .expect("config");
    let (dispatch, guard) = Telemetry::builder(config).build().expect("telemetry");
    let meter = guard.meter("bench");
    let instruments = Instruments {
        transactions: meter.u64_counter("bench.transactions").build(),
        latency: meter.f64_histogram("bench.latency").with_unit("s").build(),
        outcome: [KeyValue::new("outcome", "applied")],
    };
    (dispatch, guard, instruments)
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

/// Per-item figures of one fixed run, in ns.
struct Figures {
    wall: f64,
    /// CPU of the instrumented thread alone.
    thread_cpu: f64,
    /// CPU of the whole process until the exporters drained: the instrumented thread, the batch
    /// processors, gRPC encoding, and the in-process receiver's decoding (an upper bound).
    process_cpu: f64,
}

fn measured(
    dispatch: &tracing::Dispatch,
    m: &Instruments,
    guard: TelemetryGuard,
) -> (Figures, ShutdownReport) {
    let process = cpu_time::ProcessTime::now();
    let thread = cpu_time::ThreadTime::now();
    let wall = timed(dispatch, m, item, SUMMARY_ITEMS);
    let thread_cpu = thread.elapsed().as_nanos() as f64 / SUMMARY_ITEMS as f64;
    let report = guard.shutdown();
    let process_cpu = process.elapsed().as_nanos() as f64 / SUMMARY_ITEMS as f64;
    let figures = Figures {
        wall,
        thread_cpu,
        process_cpu,
    };
    (figures, report)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let _rt = runtime.enter();
    let sink = runtime.block_on(OtlpSink::start()).expect("receiver");
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();

    let mut figures = Vec::new();
    for (label, disabled) in [
        ("telemetry on, exporting", false),
        ("OTEL_SDK_DISABLED", true),
    ] {
        let (dispatch, guard, m) = setup(&sink.endpoint(), disabled);
        let parts: &[(&str, Work)] = if disabled {
            &[("item", item)]
        } else {
            &[
                ("span", span_only),
                ("2 events", events),
                ("metrics", metrics),
                ("item", item),
            ]
        };
        for (part, work) in parts {
            c.bench_function(&format!("{part}/{label}"), |b| {
                b.iter_custom(|iters| {
                    let ns = timed(&dispatch, &m, *work, iters);
                    sink.clear(); // bound the receiver's memory
                    Duration::from_nanos((ns * iters as f64) as u64)
                })
            });
        }
        // Let the exporter drain what criterion produced, then time a fixed run for the summary.
        std::thread::sleep(Duration::from_millis(500));
        sink.clear();
        let (ns, report) = measured(&dispatch, &m, guard);
        let received = sink.received();
        let spans = received.spans().len();
        drop(received);
        sink.clear();
        figures.push((label, ns, report, spans));
    }
    c.final_summary();

    println!(
        "\nper-item cost over {SUMMARY_ITEMS} items (1 span + 5 attributes, 2 log events, \
         1 counter add, 1 histogram record), ns:"
    );
    println!(
        "  {:<26} {:>9} {:>11} {:>12}",
        "", "wall", "thread CPU", "process CPU"
    );
    for (label, f, report, spans) in &figures {
        println!(
            "  {label:<26} {:>9.1} {:>11.1} {:>12.1}   spans received {spans}/{SUMMARY_ITEMS}; {report}",
            f.wall, f.thread_cpu, f.process_cpu
        );
    }
    let (on, off) = (&figures[0].1, &figures[1].1);
    println!(
        "  ratio on/disabled: wall {:.0}x, thread CPU {:.0}x",
        on.wall / off.wall,
        on.thread_cpu / off.thread_cpu
    );
}
