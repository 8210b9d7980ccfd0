//! The hand-off between the instrumented threads and one signal's exporter: per-thread shards
//! that fill a batch under an uncontended lock, and one export thread that takes whole batches.
//!
//! Per item the caller pays a lock, a push and an unlock on its own shard; once per
//! `max_export_batch_size` items it swaps the full batch out and sends it to the export thread.
//! The export thread also sweeps the shards every `scheduled_delay`, so a quiet thread's
//! half-full batch does not wait for more items. The bound (`max_queue_size`) covers the batches
//! handed over and not yet exported; a batch that does not fit is dropped whole and counted.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_sdk::error::OTelSdkResult;

use crate::BatchSettings;
use crate::export::{ExportHealth, Signal, lock};

/// Where the export thread sends a batch: one signal's exporter, with the conversion from the
/// items the hot path recorded to what the exporter takes.
pub(crate) trait Sink<T>: Send + 'static {
    /// Exports the items of `batch`, leaving it empty (its allocation goes back to the shards).
    fn export(&mut self, batch: &mut Vec<T>) -> impl Future<Output = OTelSdkResult>;
    fn shutdown(&mut self, timeout: Duration) -> OTelSdkResult;
}

enum Msg<T> {
    Batch(Vec<T>),
    /// Sweep every shard, export everything, answer; then stop if `stop`.
    Drain {
        stop: bool,
        timeout: Duration,
        done: mpsc::Sender<OTelSdkResult>,
    },
}

/// One signal's queue, shared by every thread that records into it.
pub(crate) struct Queue<T> {
    shards: Box<[Mutex<Vec<T>>]>,
    /// Exported batches' allocations, for the shards to fill again: a batch is large enough for
    /// the allocator to map fresh pages for each one, which the caller would pay for.
    spare: Mutex<Vec<Vec<T>>>,
    batch_size: usize,
    max_queued: usize,
    /// Items handed to the export thread and not exported yet.
    queued: Arc<AtomicUsize>,
    /// A batch was dropped for want of room since the export thread last looked; it says so
    /// (the caller's thread is inside its subscriber and cannot log).
    overflowed: AtomicBool,
    to_worker: Mutex<Option<mpsc::Sender<Msg<T>>>>,
    signal: Signal,
    health: Arc<ExportHealth>,
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("signal", &self.signal)
            .field("queued", &self.queued.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Queue<T> {
    /// Starts the export thread; `runtime` runs the exporter's futures (tonic and hyper need
    /// tokio's reactor).
    pub(crate) fn start(
        signal: Signal,
        settings: BatchSettings,
        sink: impl Sink<T>,
        runtime: tokio::runtime::Handle,
        health: &Arc<ExportHealth>,
    ) -> Arc<Self> {
        let shards = std::thread::available_parallelism().map_or(4, |n| n.get().clamp(2, 32) * 2);
        let batch_size = settings.max_export_batch_size.max(1);
        let (tx, rx) = mpsc::channel();
        let queue = Arc::new(Self {
            shards: (0..shards)
                .map(|_| Mutex::new(Vec::with_capacity(batch_size)))
                .collect(),
            spare: Mutex::new(Vec::new()),
            batch_size,
            max_queued: settings.max_queue_size.max(batch_size),
            queued: Arc::new(AtomicUsize::new(0)),
            overflowed: AtomicBool::new(false),
            to_worker: Mutex::new(Some(tx)),
            signal,
            health: health.clone(),
        });
        let worker = Worker {
            queue: Arc::downgrade(&queue),
            queued: queue.queued.clone(),
            sink,
            runtime,
            batch_size,
            delay: settings.scheduled_delay,
        };
        let name = format!("telemetry-{}", signal.name());
        if let Err(e) = std::thread::Builder::new()
            .name(name)
            .spawn(move || worker.run(&rx))
        {
            health.warn_once(signal, &format!("cannot start the export thread: {e}"));
        }
        queue
    }

    /// Records one item: the hot path.
    pub(crate) fn push(&self, item: T) {
        let full = {
            let mut shard = lock(&self.shards[shard_index() % self.shards.len()]);
            shard.push(item);
            (shard.len() >= self.batch_size)
                .then(|| std::mem::replace(&mut *shard, self.empty_batch()))
        };
        if let Some(batch) = full {
            self.hand_off(batch);
        }
    }

    /// Counts `batch` in and sends it to the export thread, or drops it (counted) when the
    /// queue is full or the export thread is gone.
    fn hand_off(&self, batch: Vec<T>) {
        let n = batch.len();
        self.health.taken(self.signal, n as u64);
        if self.queued.fetch_add(n, Relaxed) + n > self.max_queued {
            self.queued.fetch_sub(n, Relaxed);
            self.overflowed.store(true, Relaxed);
            self.recycle(batch);
            return;
        }
        let sent = lock(&self.to_worker)
            .as_ref()
            .is_some_and(|tx| tx.send(Msg::Batch(batch)).is_ok());
        if !sent {
            self.queued.fetch_sub(n, Relaxed);
        }
    }

    /// Keeps `batch`'s allocation for a shard to fill again (a few of them: a burst's worth is
    /// freed).
    fn recycle(&self, mut batch: Vec<T>) {
        batch.clear();
        let mut spare = lock(&self.spare);
        if batch.capacity() == self.batch_size && spare.len() < self.shards.len() {
            spare.push(batch);
        }
    }

    fn empty_batch(&self) -> Vec<T> {
        lock(&self.spare)
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.batch_size))
    }

    /// Every shard's items, in batches, for the export thread's sweep.
    fn sweep(&self) -> Vec<Vec<T>> {
        let mut batches = Vec::new();
        for shard in &self.shards {
            let mut shard = lock(shard);
            if shard.is_empty() {
                continue;
            }
            let items = std::mem::replace(&mut *shard, self.empty_batch());
            drop(shard);
            self.health.taken(self.signal, items.len() as u64);
            self.queued.fetch_add(items.len(), Relaxed);
            batches.push(items);
        }
        batches
    }

    /// Exports everything recorded so far and waits (at most `timeout`) for it; with `stop`,
    /// also shuts the exporter down and ends the export thread.
    pub(crate) fn drain(&self, stop: bool, timeout: Duration) -> OTelSdkResult {
        use opentelemetry_sdk::error::OTelSdkError;
        let (done, answer) = mpsc::channel();
        let msg = Msg::Drain {
            stop,
            timeout,
            done,
        };
        let mut to_worker = lock(&self.to_worker);
        let sent = to_worker.as_ref().is_some_and(|tx| tx.send(msg).is_ok());
        if stop {
            *to_worker = None;
        }
        drop(to_worker);
        if !sent {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        answer
            .recv_timeout(timeout)
            .unwrap_or(Err(OTelSdkError::Timeout(timeout)))
    }
}

/// The shard of this thread: threads take shards in turn, so up to `shards` threads never share.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Relaxed);
    }
    SHARD.with(|s| *s)
}

struct Worker<T, S> {
    /// Weak: the queue lives as long as the layer that records into it.
    queue: std::sync::Weak<Queue<T>>,
    queued: Arc<AtomicUsize>,
    sink: S,
    runtime: tokio::runtime::Handle,
    batch_size: usize,
    delay: Duration,
}

impl<T: Send + 'static, S: Sink<T>> Worker<T, S> {
    fn run(mut self, rx: &mpsc::Receiver<Msg<T>>) {
        let mut next_sweep = Instant::now() + self.delay;
        loop {
            if let Some(queue) = self.queue.upgrade()
                && queue.overflowed.swap(false, Relaxed)
            {
                queue.health.queue_full(queue.signal, queue.max_queued);
            }
            match rx.recv_timeout(next_sweep.saturating_duration_since(Instant::now())) {
                Ok(Msg::Batch(batch)) => self.export(batch),
                Ok(Msg::Drain {
                    stop,
                    timeout,
                    done,
                }) => {
                    self.sweep();
                    let result = if stop {
                        self.sink.shutdown(timeout)
                    } else {
                        Ok(())
                    };
                    let _ = done.send(result);
                    if stop {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.sweep();
                    next_sweep = Instant::now() + self.delay;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Exports the items still in the shards, in batches of at most `batch_size`.
    fn sweep(&mut self) {
        let Some(queue) = self.queue.upgrade() else {
            return;
        };
        let mut pending = queue.sweep();
        drop(queue);
        for mut items in pending.drain(..) {
            while items.len() > self.batch_size {
                let rest = items.split_off(self.batch_size);
                self.export(std::mem::replace(&mut items, rest));
            }
            self.export(items);
        }
    }

    fn export(&mut self, mut batch: Vec<T>) {
        let n = batch.len();
        // The outcome is counted by the exporter (see export.rs' Watched).
        let _ = self.runtime.block_on(self.sink.export(&mut batch));
        self.queued.fetch_sub(n, Relaxed);
        if let Some(queue) = self.queue.upgrade() {
            queue.recycle(batch);
        }
    }
}
