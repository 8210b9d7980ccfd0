//! One signal's sending thread: encoded requests in, delivered to the collector. A transient
//! failure is retried with backoff and jitter until the request is delivered or shutdown gives
//! up; then, and when no collector has answered at all, the request is kept in the spool for a
//! later process (when there is one), or dropped and counted. What earlier processes kept is
//! sent first.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use tokio::sync::watch;

use crate::export::{ExportHealth, Signal};

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

    /// Keeps an undelivered `request` for a later process (the spool) if it can, and counts it
    /// as kept; otherwise it is dropped (counted as not delivered).
    fn keep(&self, request: &R, items: usize) {
        let _ = (request, items);
    }

    /// Sends what earlier processes kept, before this process's own requests, until `give_up`.
    fn send_kept(&self, give_up: GiveUpWatch) -> impl Future<Output = ()> {
        let _ = give_up;
        std::future::ready(())
    }
}

/// Requests one signal has on the wire at once: one at a time, a collector's round trip, not its
/// throughput, would bound the rate (a burst would outlast the exit deadline).
const IN_FLIGHT: usize = 4;

/// Backoff between attempts at one request: doubling from the first, at most the last (short
/// beside the 5 s a process has at exit, so a collector back in time still gets it all).
const RETRY_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));

pub(crate) enum Out<R> {
    Request(R, usize),
    Drain(Drain),
}

/// Deliver everything sent before, answer; then stop if `stop`.
pub(crate) struct Drain {
    pub(crate) stop: bool,
    pub(crate) timeout: Duration,
    done: mpsc::Sender<OTelSdkResult>,
}

impl Drain {
    /// The message, and where its answer comes.
    pub(crate) fn new(stop: bool, timeout: Duration) -> (Self, Answer) {
        let (done, answer) = mpsc::channel();
        let drain = Self {
            stop,
            timeout,
            done,
        };
        (drain, Answer(answer))
    }
}

/// The answer to a [`Drain`].
pub(crate) struct Answer(mpsc::Receiver<OTelSdkResult>);

impl Answer {
    /// Waits at most `timeout` for it.
    pub(crate) fn wait(self, timeout: Duration) -> OTelSdkResult {
        self.0
            .recv_timeout(timeout)
            .unwrap_or(Err(OTelSdkError::Timeout(timeout)))
    }
}

/// Has the sending thread behind `tx` deliver everything sent before, and waits (at most
/// `timeout`) for it; with `stop`, the thread ends.
pub(crate) fn drain<R>(tx: &mpsc::Sender<Out<R>>, stop: bool, timeout: Duration) -> OTelSdkResult {
    let (drain, answer) = Drain::new(stop, timeout);
    if tx.send(Out::Drain(drain)).is_err() {
        return Err(OTelSdkError::AlreadyShutdown);
    }
    answer.wait(timeout)
}

/// When the sending thread stops retrying and keeps (or drops) what is left: set by shutdown a
/// little before its deadline, so that keeping it fits in; now, when the queue is gone.
#[derive(Debug)]
pub(crate) struct GiveUp(watch::Sender<Option<Instant>>);

impl GiveUp {
    pub(crate) fn at(&self, when: Instant) {
        self.0.send_replace(Some(when));
    }
}

/// The sending side's view of [`GiveUp`].
#[derive(Debug, Clone)]
pub(crate) struct GiveUpWatch(watch::Receiver<Option<Instant>>);

impl GiveUpWatch {
    /// Whether the time has come (or the queue is gone).
    pub(crate) fn reached(&self) -> bool {
        self.0.has_changed().is_err() || self.0.borrow().is_some_and(|at| Instant::now() >= at)
    }

    /// Returns once the time has come.
    pub(crate) async fn wait(mut self) {
        loop {
            let at = *self.0.borrow_and_update();
            let changed = self.0.changed();
            let result = match at {
                Some(at) => tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => return,
                    r = changed => r,
                },
                None => changed.await,
            };
            if result.is_err() {
                return;
            }
        }
    }
}

/// Starts `signal`'s sending thread; `queued` counts the items sent to it and not yet
/// delivered, kept or dropped (it takes them off). `runtime` runs the transport's futures
/// (tonic and hyper need tokio's reactor).
pub(crate) fn start<R: Clone + Send + 'static>(
    signal: Signal,
    transport: impl Transport<R>,
    runtime: tokio::runtime::Handle,
    health: &Arc<ExportHealth>,
    queued: Arc<AtomicUsize>,
) -> std::io::Result<(mpsc::Sender<Out<R>>, GiveUp)> {
    let (tx, rx) = mpsc::channel();
    let (give_up, watching) = watch::channel(None);
    let sending = Sending {
        transport,
        queued,
        give_up: GiveUpWatch(watching),
        signal,
        health: health.clone(),
        runtime,
    };
    std::thread::Builder::new()
        .name(format!("telemetry-{}-send", signal.name()))
        .spawn(move || sending.run(&rx))?;
    Ok((tx, GiveUp(give_up)))
}

/// The sending thread: up to [`IN_FLIGHT`] requests at a time, each counted out of the queue
/// once delivered, kept or dropped.
struct Sending<P> {
    transport: P,
    queued: Arc<AtomicUsize>,
    give_up: GiveUpWatch,
    signal: Signal,
    health: Arc<ExportHealth>,
    runtime: tokio::runtime::Handle,
}

/// How the attempts at a request ended.
enum Outcome {
    Delivered,
    /// Refused for good (invalid, unauthorised): dropped.
    Refused,
    /// Not delivered yet: kept if it can be.
    Pending,
}

impl<P> Sending<P> {
    fn run<R: Clone>(mut self, rx: &mpsc::Receiver<Out<R>>)
    where
        P: Transport<R>,
    {
        self.runtime
            .block_on(self.transport.send_kept(self.give_up.clone()));
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
        if let Outcome::Pending = self.attempts(&request, n).await {
            self.transport.keep(&request, n);
        }
        self.queued.fetch_sub(n, Relaxed);
    }

    /// Sends `request` until it is delivered or refused, or shutdown gives up; retries only
    /// once the collector has accepted an export: with no collector at all, retrying would only
    /// hold the program at exit.
    async fn attempts<R: Clone>(&self, request: &R, n: usize) -> Outcome
    where
        P: Transport<R>,
    {
        let mut backoff = RETRY_BACKOFF.0;
        loop {
            if self.give_up.reached() {
                return Outcome::Pending;
            }
            let result = tokio::select! {
                r = self.transport.send(request.clone(), n) => r,
                () = self.give_up.clone().wait() => return Outcome::Pending,
            };
            match result {
                Ok(()) => return Outcome::Delivered,
                Err(e) if !self.transport.transient(&e) => return Outcome::Refused,
                Err(_) if !self.health.has_delivered(self.signal) => return Outcome::Pending,
                Err(_) => {}
            }
            tokio::select! {
                () = tokio::time::sleep(jittered(backoff)) => {}
                () = self.give_up.clone().wait() => return Outcome::Pending,
            }
            backoff = (backoff * 2).min(RETRY_BACKOFF.1);
        }
    }
}

/// `d` give or take a quarter, so that many processes do not retry in step.
fn jittered(d: Duration) -> Duration {
    use std::hash::{BuildHasher, RandomState};
    let noise = RandomState::new().hash_one(Instant::now()) % 1000;
    d.mul_f64(0.75 + noise as f64 / 2000.0)
}
