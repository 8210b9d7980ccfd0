//! The hand-off between the instrumented threads and one signal's exporter: per-thread shards
//! that fill a batch under an uncontended lock, an encoding thread that takes whole batches,
//! and a sending thread (send.rs) that delivers the encoded requests.
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

use super::send::{self, Drain, GiveUp, Out, Transport};
use crate::BatchSettings;
use crate::export::{ExportHealth, Signal, lock};

/// What the encoding thread makes of a batch: the request the transport sends.
pub(crate) trait Encode<T>: Send + 'static {
    /// Cloned for each attempt at sending it (cheap for OTLP's bytes).
    type Request: Clone + Send + 'static;

    /// Encodes the items of `batch`, leaving it empty (its allocation goes back to the shards).
    fn encode(&mut self, batch: &mut Vec<T>) -> Self::Request;
}

enum Msg<T> {
    Batch(Vec<T>),
    /// Sweep every shard, deliver everything, answer; then stop if `stop`.
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
    /// When the sending thread stops retrying (dropped with the queue: at once).
    give_up: Option<GiveUp>,
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
        let queued = Arc::new(AtomicUsize::new(0));
        let sending = send::start(signal, transport, runtime, health, queued.clone());
        let (to_sender, give_up) = match sending {
            Ok((to_sender, give_up)) => (Some(to_sender), Some(give_up)),
            Err(e) => {
                health.warn_pipeline(signal, &format!("cannot start the export threads: {e}"));
                (None, None)
            }
        };
        let queue = Arc::new(Self {
            shards: (0..shards)
                .map(|_| Mutex::new(Vec::with_capacity(batch_size)))
                .collect(),
            spare: Mutex::new(Vec::new()),
            batch_size,
            max_queued: settings.max_queue_size.max(batch_size),
            queued,
            overflowed: AtomicBool::new(false),
            to_worker: Mutex::new(to_sender.is_some().then_some(tx)),
            give_up,
            signal,
            health: health.clone(),
        });
        if let Some(to_sender) = to_sender {
            let encoding = Encoding {
                queue: Arc::downgrade(&queue),
                encoder,
                to_sender,
                delay: settings.scheduled_delay,
            };
            let started = std::thread::Builder::new()
                .name(format!("telemetry-{}-encode", signal.name()))
                .spawn(move || encoding.run(&rx));
            if let Err(e) = started {
                health.warn_pipeline(signal, &format!("cannot start the export threads: {e}"));
            }
        }
        queue
    }

    /// Records one item: the hot path.
    #[inline]
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

    /// What makes the sending thread stop retrying and keep what is left.
    pub(crate) fn give_up(&self) -> Option<&GiveUp> {
        self.give_up.as_ref()
    }

    /// Delivers everything recorded so far and waits (at most `timeout`) for it; with `stop`,
    /// also shuts the exporter down and ends the export threads.
    pub(crate) fn drain(&self, stop: bool, timeout: Duration) -> OTelSdkResult {
        let (drain, answer) = Drain::new(stop, timeout);
        let msg = Msg::Drain(drain);
        let mut to_worker = lock(&self.to_worker);
        let sent = to_worker.as_ref().is_some_and(|tx| tx.send(msg).is_ok());
        if stop {
            *to_worker = None;
        }
        drop(to_worker);
        if !sent {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        answer.wait(timeout)
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
