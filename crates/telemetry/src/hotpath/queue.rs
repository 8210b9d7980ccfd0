//! The hand-off between the instrumented threads and one signal's exporter: per-thread shards
//! that fill a batch under an uncontended lock, an encoding thread that takes whole batches,
//! and a sending thread that delivers the encoded requests one after the other.
//!
//! Per item the caller pays a lock, a push and an unlock on its own shard; once per
//! `max_export_batch_size` items it swaps the full batch out and sends it to the encoding
//! thread, which also sweeps the shards every `scheduled_delay`, so a quiet thread's half-full
//! batch does not wait for more items. Encoding as soon as a batch arrives keeps what waits for
//! a slow collector compact (the OTLP bytes, a third of the items' size). The bound
//! (`max_queue_size`) covers the items handed over and not yet delivered; a batch that does not
//! fit is dropped whole and counted.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};

use crate::BatchSettings;
use crate::export::{ExportHealth, Signal, lock};

/// What the encoding thread makes of a batch: the request the transport sends.
pub(crate) trait Encode<T>: Send + 'static {
    /// Cloned for each attempt at sending it (cheap for OTLP's bytes).
    type Request: Clone + Send + 'static;

    /// Encodes the items of `batch`, leaving it empty (its allocation goes back to the shards).
    fn encode(&mut self, batch: &mut Vec<T>) -> Self::Request;
}

/// Where the sending thread delivers requests: one signal's exporter.
pub(crate) trait Transport<R>: Send + 'static {
    /// Sends one request of `items` items; the outcome is counted by the exporter's wrapper.
    fn send(&self, request: R, items: usize) -> impl Future<Output = OTelSdkResult>;
    fn shutdown(&mut self, timeout: Duration) -> OTelSdkResult;

    /// Whether `error` is transient (the collector restarting, overloaded, a timeout): the
    /// request is sent again; otherwise (refused, invalid) it is dropped.
    fn transient(&self, error: &OTelSdkError) -> bool {
        let _ = error;
        false
    }
}

/// Requests one signal has on the wire at once: one at a time, a collector's round trip, not its
/// throughput, would bound the rate (a burst would outlast the exit deadline).
const IN_FLIGHT: usize = 4;

/// Backoff between attempts at one request: doubling from the first, at most the last (short
/// beside the 5 s a process has at exit, so a collector back in time still gets it all).
const RETRY_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));

enum Msg<T> {
    Batch(Vec<T>),
    /// Sweep every shard, deliver everything, answer; then stop if `stop`.
    Drain(Drain),
}

struct Drain {
    stop: bool,
    timeout: Duration,
    done: mpsc::Sender<OTelSdkResult>,
}

enum Out<R> {
    Request(R, usize),
    Drain(Drain),
}

/// One signal's queue, shared by every thread that records into it.
pub(crate) struct Queue<T> {
    shards: Box<[Mutex<Vec<T>>]>,
    /// Encoded batches' allocations, for the shards to fill again: a batch is large enough for
    /// the allocator to map fresh pages for each one, which the caller would pay for.
    spare: Mutex<Vec<Vec<T>>>,
    batch_size: usize,
    max_queued: usize,
    /// Items handed to the encoding thread and not delivered yet.
    queued: Arc<AtomicUsize>,
    /// A batch was dropped for want of room since the encoding thread last looked; it says so
    /// (the caller's thread is inside its subscriber and cannot log).
    overflowed: AtomicBool,
    to_worker: Mutex<Option<mpsc::Sender<Msg<T>>>>,
    /// Set once shutdown has given up waiting, or the queue is gone: a request being retried is
    /// then dropped (it stays counted as not delivered).
    closed: Arc<AtomicBool>,
    signal: Signal,
    health: Arc<ExportHealth>,
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        self.closed.store(true, Relaxed);
    }
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
    /// Starts the encoding and sending threads; `runtime` runs the transport's futures (tonic
    /// and hyper need tokio's reactor).
    pub(crate) fn start<E: Encode<T>>(
        signal: Signal,
        settings: BatchSettings,
        encoder: E,
        transport: impl Transport<E::Request>,
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
            closed: Arc::new(AtomicBool::new(false)),
            signal,
            health: health.clone(),
        });
        let (to_sender, from_encoder) = mpsc::channel();
        let encoding = Encoding {
            queue: Arc::downgrade(&queue),
            encoder,
            to_sender,
            delay: settings.scheduled_delay,
        };
        let sending = Sending {
            transport,
            queued: queue.queued.clone(),
            closed: queue.closed.clone(),
            signal,
            health: health.clone(),
            runtime,
        };
        let spawn = |role: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(format!("telemetry-{}-{role}", signal.name()))
                .spawn(f)
                .map(drop)
        };
        let started = spawn("encode", Box::new(move || encoding.run(&rx)))
            .and_then(|()| spawn("send", Box::new(move || sending.run(&from_encoder))));
        if let Err(e) = started {
            health.warn_pipeline(signal, &format!("cannot start the export threads: {e}"));
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

    /// Counts `batch` in and sends it to the encoding thread, or drops it (counted) when the
    /// queue is full or the export threads are gone.
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

    /// Every shard's items, for the encoding thread's sweep.
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

    /// Delivers everything recorded so far and waits (at most `timeout`) for it; with `stop`,
    /// also shuts the exporter down and ends the export threads.
    pub(crate) fn drain(&self, stop: bool, timeout: Duration) -> OTelSdkResult {
        let (done, answer) = mpsc::channel();
        let msg = Msg::Drain(Drain {
            stop,
            timeout,
            done,
        });
        let mut to_worker = lock(&self.to_worker);
        let sent = to_worker.as_ref().is_some_and(|tx| tx.send(msg).is_ok());
        if stop {
            *to_worker = None;
        }
        drop(to_worker);
        if !sent {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let result = answer
            .recv_timeout(timeout)
            .unwrap_or(Err(OTelSdkError::Timeout(timeout)));
        if stop {
            self.closed.store(true, Relaxed);
        }
        result
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

/// The encoding thread: batches in, requests out.
struct Encoding<T, E: Encode<T>> {
    /// Weak: the queue lives as long as the layer that records into it.
    queue: Weak<Queue<T>>,
    encoder: E,
    to_sender: mpsc::Sender<Out<E::Request>>,
    delay: Duration,
}

impl<T: Send + 'static, E: Encode<T>> Encoding<T, E> {
    fn run(mut self, rx: &mpsc::Receiver<Msg<T>>) {
        let mut next_sweep = Instant::now() + self.delay;
        loop {
            if let Some(queue) = self.queue.upgrade()
                && queue.overflowed.swap(false, Relaxed)
            {
                queue.health.queue_full(queue.signal, queue.max_queued);
            }
            match rx.recv_timeout(next_sweep.saturating_duration_since(Instant::now())) {
                Ok(Msg::Batch(batch)) => self.encode(batch),
                Ok(Msg::Drain(drain)) => {
                    self.sweep();
                    let stop = drain.stop;
                    let _ = self.to_sender.send(Out::Drain(drain));
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

    /// Encodes the items still in the shards, a batch per shard.
    fn sweep(&mut self) {
        let Some(queue) = self.queue.upgrade() else {
            return;
        };
        let pending = queue.sweep();
        drop(queue);
        // A shard never holds more than a batch: it hands a full one over at once.
        for items in pending {
            self.encode(items);
        }
    }

    fn encode(&mut self, mut batch: Vec<T>) {
        let n = batch.len();
        let request = self.encoder.encode(&mut batch);
        if let Some(queue) = self.queue.upgrade() {
            queue.recycle(batch);
        }
        let _ = self.to_sender.send(Out::Request(request, n));
    }
}

/// The sending thread: up to [`IN_FLIGHT`] requests at a time, each counted out of the queue
/// once sent. A
/// transient failure is retried with backoff and jitter, within the queue's bound (meanwhile
/// what comes after waits, and what does not fit is dropped and counted), until the request is
/// delivered or shutdown gives up; but only once the collector has accepted an export: with no
/// collector at all, retrying would only hold the program at exit.
struct Sending<P> {
    transport: P,
    queued: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
    signal: Signal,
    health: Arc<ExportHealth>,
    runtime: tokio::runtime::Handle,
}

impl<P> Sending<P> {
    fn run<R: Clone>(mut self, rx: &mpsc::Receiver<Out<R>>)
    where
        P: Transport<R>,
    {
        while let Ok(first) = rx.recv() {
            // The requests waiting, up to IN_FLIGHT, go out together; a drain waits for them.
            let mut requests = Vec::new();
            let mut drain = None;
            let mut next = Some(first);
            while let Some(out) = next.take() {
                match out {
                    Out::Request(request, n) => requests.push((request, n)),
                    Out::Drain(d) => {
                        drain = Some(d);
                        break;
                    }
                }
                if requests.len() < IN_FLIGHT {
                    next = rx.try_recv().ok();
                }
            }
            let sends = requests.into_iter().map(|(r, n)| self.deliver(r, n));
            self.runtime.block_on(futures_util::future::join_all(sends));
            if let Some(drain) = drain {
                let result = if drain.stop {
                    self.transport.shutdown(drain.timeout)
                } else {
                    Ok(())
                };
                let _ = drain.done.send(result);
                if drain.stop {
                    return;
                }
            }
        }
    }

    async fn deliver<R: Clone>(&self, request: R, n: usize)
    where
        P: Transport<R>,
    {
        let mut backoff = RETRY_BACKOFF.0;
        loop {
            let result = self.transport.send(request.clone(), n).await;
            let retry = match &result {
                Ok(()) => false,
                Err(e) => self.transport.transient(e) && self.health.has_delivered(self.signal),
            };
            if !retry || self.closed.load(Relaxed) {
                break;
            }
            tokio::time::sleep(jittered(backoff)).await;
            if self.closed.load(Relaxed) {
                break;
            }
            backoff = (backoff * 2).min(RETRY_BACKOFF.1);
        }
        self.queued.fetch_sub(n, Relaxed);
    }
}

/// `d` give or take a quarter, so that many processes do not retry in step.
fn jittered(d: Duration) -> Duration {
    use std::hash::{BuildHasher, RandomState};
    let noise = RandomState::new().hash_one(Instant::now()) % 1000;
    d.mul_f64(0.75 + noise as f64 / 2000.0)
}
