//! Resource metrics sampled with sysinfo on an interval, named after the OTel semantic
//! conventions: process.cpu.utilization, process.memory.usage, process.memory.virtual,
//! process.disk.io, system.cpu.utilization, system.memory.usage, system.memory.utilization.
//!
//! Sampling runs on its own thread (a refresh reads /proc and takes a few hundred µs); the
//! observable instruments only read the latest sample, so a scrape or export never waits on it.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use names::metric;
use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use opentelemetry_semantic_conventions::attribute::{DISK_IO_DIRECTION, SYSTEM_MEMORY_STATE};
use sysinfo::{
    CpuRefreshKind, MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, System,
};

/// One sample of the process and the host.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResourceSample {
    /// Share of all the host's CPUs this process used since the previous sample, 0..=1.
    pub process_cpu_utilization: f64,
    pub process_memory_bytes: u64,
    pub process_virtual_memory_bytes: u64,
    pub process_disk_read_bytes: u64,
    pub process_disk_written_bytes: u64,
    /// Share of all the host's CPUs in use, 0..=1.
    pub system_cpu_utilization: f64,
    pub system_memory_used_bytes: u64,
    pub system_memory_total_bytes: u64,
}

/// The latest sample, shared with the instruments and with whoever wants it (the bot's CPU alert).
pub type LatestSample = Arc<Mutex<ResourceSample>>;

struct Sampler {
    system: System,
    pid: Pid,
    cpus: f64,
}

impl Sampler {
    fn new() -> Option<Self> {
        let mut system = System::new().ok()?;
        let pid = sysinfo::get_current_pid().ok()?;
        system.refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
        let cpus = system.cpus().len().max(1) as f64;
        Some(Self { system, pid, cpus })
    }

    fn sample(&mut self) -> ResourceSample {
        let s = &mut self.system;
        s.refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
        s.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        s.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            false,
            ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory()
                .with_disk_usage(),
        );
        let mut sample = ResourceSample {
            system_cpu_utilization: f64::from(s.global_cpu_usage()) / 100.0,
            system_memory_used_bytes: s.used_memory(),
            system_memory_total_bytes: s.total_memory(),
            ..ResourceSample::default()
        };
        if let Some(p) = s.process(self.pid) {
            let disk = p.disk_usage();
            sample.process_cpu_utilization = f64::from(p.cpu_usage()) / 100.0 / self.cpus;
            sample.process_memory_bytes = p.memory();
            sample.process_virtual_memory_bytes = p.virtual_memory();
            sample.process_disk_read_bytes = disk.total_read_bytes;
            sample.process_disk_written_bytes = disk.total_written_bytes;
        }
        sample
    }
}

/// The sampling thread; stops when dropped.
#[derive(Debug)]
pub(crate) struct ResourceSampler {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    latest: LatestSample,
}

impl ResourceSampler {
    /// Starts sampling every `interval`; None when this platform gives no process information.
    pub(crate) fn start(interval: Duration) -> Option<Self> {
        let mut sampler = Sampler::new()?;
        let latest = LatestSample::default();
        *lock(&latest) = sampler.sample();
        let (stop, stopped) = mpsc::channel::<()>();
        let shared = latest.clone();
        let thread = std::thread::Builder::new()
            .name("telemetry-resources".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let sample = sampler.sample();
                    *lock(&shared) = sample;
                }
            })
            .ok()?;
        Some(Self {
            stop: Some(stop),
            thread: Some(thread),
            latest,
        })
    }

    pub(crate) fn latest(&self) -> LatestSample {
        self.latest.clone()
    }
}

impl Drop for ResourceSampler {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(latest: &LatestSample) -> std::sync::MutexGuard<'_, ResourceSample> {
    latest.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers the observable instruments that report `latest` at every collection.
pub(crate) fn register(meter: &Meter, latest: &LatestSample) {
    let l = latest.clone();
    meter
        .f64_observable_gauge(metric::PROCESS_CPU_UTILIZATION.name)
        .with_unit(metric::PROCESS_CPU_UTILIZATION.unit)
        .with_description("Share of the host's CPUs used by this process since the last sample")
        .with_callback(move |o| o.observe(lock(&l).process_cpu_utilization, &[]))
        .build();
    let l = latest.clone();
    meter
        .u64_observable_gauge(metric::PROCESS_MEMORY_USAGE.name)
        .with_unit(metric::PROCESS_MEMORY_USAGE.unit)
        .with_description("Resident memory of this process")
        .with_callback(move |o| o.observe(lock(&l).process_memory_bytes, &[]))
        .build();
    let l = latest.clone();
    meter
        .u64_observable_gauge(metric::PROCESS_MEMORY_VIRTUAL.name)
        .with_unit(metric::PROCESS_MEMORY_VIRTUAL.unit)
        .with_description("Virtual memory of this process")
        .with_callback(move |o| o.observe(lock(&l).process_virtual_memory_bytes, &[]))
        .build();
    let l = latest.clone();
    meter
        .u64_observable_counter(metric::PROCESS_DISK_IO.name)
        .with_unit(metric::PROCESS_DISK_IO.unit)
        .with_description("Bytes this process read from and wrote to disk")
        .with_callback(move |o| {
            let s = *lock(&l);
            o.observe(
                s.process_disk_read_bytes,
                &[KeyValue::new(DISK_IO_DIRECTION, "read")],
            );
            o.observe(
                s.process_disk_written_bytes,
                &[KeyValue::new(DISK_IO_DIRECTION, "write")],
            );
        })
        .build();
    let l = latest.clone();
    meter
        .f64_observable_gauge(metric::SYSTEM_CPU_UTILIZATION.name)
        .with_unit(metric::SYSTEM_CPU_UTILIZATION.unit)
        .with_description("Share of the host's CPUs in use")
        .with_callback(move |o| o.observe(lock(&l).system_cpu_utilization, &[]))
        .build();
    let l = latest.clone();
    meter
        .u64_observable_gauge(metric::SYSTEM_MEMORY_USAGE.name)
        .with_unit(metric::SYSTEM_MEMORY_USAGE.unit)
        .with_description("Host memory in use and free")
        .with_callback(move |o| {
            let s = *lock(&l);
            let free = s
                .system_memory_total_bytes
                .saturating_sub(s.system_memory_used_bytes);
            o.observe(
                s.system_memory_used_bytes,
                &[KeyValue::new(SYSTEM_MEMORY_STATE, "used")],
            );
            o.observe(free, &[KeyValue::new(SYSTEM_MEMORY_STATE, "free")]);
        })
        .build();
    let l = latest.clone();
    meter
        .f64_observable_gauge(metric::SYSTEM_MEMORY_UTILIZATION.name)
        .with_unit(metric::SYSTEM_MEMORY_UTILIZATION.unit)
        .with_description("Share of host memory in use")
        .with_callback(move |o| {
            let s = *lock(&l);
            let total = s.system_memory_total_bytes.max(1) as f64;
            o.observe(s.system_memory_used_bytes as f64 / total, &[]);
        })
        .build();
}
