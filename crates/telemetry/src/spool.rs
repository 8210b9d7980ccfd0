//! The spool: export requests a process could not deliver before its exit deadline (or at all,
//! with no collector listening), kept on disk for the next process that starts with the same
//! spool (the next `invbot run`, or `invbot telemetry flush`), which sends them before its own.
//!
//! One file per request, `<signal>-<unix ms>-<pid>-<seq>-<items>.pb`: the OTLP export request
//! as protobuf, the very bytes that would have been sent (resource and timestamps included).
//! It is written under a dot-name and renamed, so a reader never sees half a file; not synced:
//! a process's exit does not lose it, a power loss may. Bounded: a request that would take the
//! directory past `max_bytes` is not written (dropped and counted); a file older than
//! `max_age` is deleted unsent (counted as expired). One process at a time sends a signal's
//! files (a lock file per signal); a file is deleted once the collector has accepted it, so a
//! process killed while sending sends it again next time: delivery is at least once.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::export::Signal;
use crate::{SignalCounts, SpoolConfig};

const EXTENSION: &str = "pb";

/// One signal's part of a spool directory.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    signal: Signal,
    max_bytes: u64,
    max_age: Duration,
    /// The directory's size: as found at start, plus what this process wrote (shared by the
    /// signals), less what it sent.
    used: Arc<AtomicU64>,
    written: AtomicU64,
}

/// A spooled request an earlier process kept.
#[derive(Debug)]
pub(crate) struct Kept {
    pub(crate) path: PathBuf,
    pub(crate) items: u64,
    pub(crate) bytes: u64,
}

/// The files of one signal that this process may send, oldest first, while it holds the lock.
#[derive(Debug)]
pub(crate) struct Claim {
    _lock: File,
    pub(crate) files: Vec<Kept>,
    /// Items in the files deleted for their age.
    pub(crate) expired: u64,
}

/// What the spool at `c` holds now, by signal (nothing, when the directory does not exist).
pub fn pending(c: &SpoolConfig) -> io::Result<SignalCounts> {
    let mut counts = SignalCounts::default();
    let entries = match fs::read_dir(&c.dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(counts),
        entries => entries?,
    };
    for entry in entries {
        let path = entry?.path();
        let items = |signal| parse(signal, &path).map_or(0, |(_, items)| items);
        counts.spans += items(Signal::Traces);
        counts.logs += items(Signal::Logs);
        counts.metric_points += items(Signal::Metrics);
    }
    Ok(counts)
}

/// A file's write time and items, if it is one of `signal`'s.
fn parse(signal: Signal, path: &Path) -> Option<(u128, u64)> {
    let name = path.file_name()?.to_str()?;
    let rest = name
        .strip_prefix(signal.name())?
        .strip_prefix('-')?
        .strip_suffix(EXTENSION)?
        .strip_suffix('.')?;
    let parts: Vec<&str> = rest.split('-').collect();
    match parts[..] {
        [ms, _pid, _seq, items] => Some((ms.parse().ok()?, items.parse().ok()?)),
        _ => None,
    }
}

/// The spool directory's parts for the three signals, sharing one size count.
pub(crate) fn open(c: &SpoolConfig) -> io::Result<[Spool; 3]> {
    fs::create_dir_all(&c.dir)?;
    let mut used = 0;
    for entry in fs::read_dir(&c.dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(EXTENSION) {
            used += entry.metadata()?.len();
        }
    }
    let used = Arc::new(AtomicU64::new(used));
    Ok(
        [Signal::Traces, Signal::Logs, Signal::Metrics].map(|signal| Spool {
            dir: c.dir.clone(),
            signal,
            max_bytes: c.max_bytes,
            max_age: c.max_age,
            used: used.clone(),
            written: AtomicU64::new(0),
        }),
    )
}

impl Spool {
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `request` (of `items` items); false when the spool is full.
    pub(crate) fn keep(&self, request: &[u8], items: usize) -> io::Result<bool> {
        let size = request.len() as u64;
        if self.used.fetch_add(size, Relaxed) + size > self.max_bytes {
            self.used.fetch_sub(size, Relaxed);
            return Ok(false);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let name = format!(
            "{}-{now:013}-{}-{:06}-{items}.{EXTENSION}",
            self.signal.name(),
            std::process::id(),
            self.written.fetch_add(1, Relaxed),
        );
        let partial = self.dir.join(format!(".{name}"));
        let written = File::create(&partial)
            .and_then(|mut f| f.write_all(request))
            .and_then(|()| fs::rename(&partial, self.dir.join(&name)));
        if let Err(e) = written {
            self.used.fetch_sub(size, Relaxed);
            let _ = fs::remove_file(&partial);
            return Err(e);
        }
        Ok(true)
    }

    /// This signal's kept files, oldest first, unless another process is sending them; files
    /// past the age bound are deleted first.
    pub(crate) fn claim(&self) -> io::Result<Option<Claim>> {
        let lock = File::create(self.dir.join(format!(".{}.lock", self.signal.name())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        let oldest = SystemTime::now()
            .checked_sub(self.max_age)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis());
        let mut files = Vec::new();
        let mut expired = 0;
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let Some((written_ms, items)) = parse(self.signal, &path) else {
                continue;
            };
            if written_ms < oldest {
                expired += items;
                self.remove(&path, fs::metadata(&path).map_or(0, |m| m.len()));
                continue;
            }
            let bytes = fs::metadata(&path)?.len();
            files.push((written_ms, Kept { path, items, bytes }));
        }
        files.sort_by(|a, b| (a.0, &a.1.path).cmp(&(b.0, &b.1.path)));
        Ok(Some(Claim {
            _lock: lock,
            files: files.into_iter().map(|(_, k)| k).collect(),
            expired,
        }))
    }

    /// Deletes a kept file (sent, refused or expired).
    pub(crate) fn remove(&self, path: &Path, bytes: u64) {
        if fs::remove_file(path).is_ok() {
            let _ = self
                .used
                .fetch_update(Relaxed, Relaxed, |u| Some(u.saturating_sub(bytes)));
        }
    }
}
