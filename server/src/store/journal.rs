//! The journal: an append-only, fsync'd log of records in numbered segments, with group
//! commit on one writer thread.
//!
//! Appenders never touch the disk: [`Journal::append`] encodes the record into a shared
//! buffer under a short mutex and returns its sequence number. The writer thread takes
//! the whole buffer, writes it as one frame (a `RecordGroup`, so a crash mid-write leaves
//! one bad frame, which recovery can tell from damage), `fdatasync`s, and only then
//! announces the new durable
//! sequence number (to async waiters and to the `on_durable` callback that releases
//! watch events). Many concurrent changes thus share one fsync.
//!
//! A failed write or fsync is final: the journal refuses every later append, and every
//! waiter hears that its change is not durable (the daemon answers UNAVAILABLE rather
//! than acknowledge what it could not keep, and then stops: see `Journal::failed`).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;

use tokio::sync::watch;

use super::error::StoreError;
use super::faults::Faults;
use super::format::{HEADER, SEGMENT_MAGIC, frame};
use super::record::{GROUP_RECORDS_TAG, LOG_EVENTS_TAG, LoggedEvent, Record, Snapshot};

/// What waiters see: the highest durable sequence number, and whether the journal failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Every record with a sequence number up to this is on disk.
    pub durable: u64,
    /// The journal failed; nothing more will become durable.
    pub failed: bool,
}

struct Pending {
    buf: Vec<u8>,
    /// With a remote sink: where each append ends in `buf`, and its sequence number, so
    /// a large group can be cut into pieces at record boundaries.
    ends: Vec<(usize, u64)>,
    /// The last sequence number handed out.
    seq: u64,
    rotate: bool,
    closing: bool,
    failed: bool,
    /// A remote journal's snapshot, written after the groups before it.
    snapshot: Option<Snapshot>,
}

/// The name of segment `n` in `dir`.
pub fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("journal-{n:016}.log"))
}

/// Makes a rename or a new file in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

/// Where a remote journal's groups go instead of segment files (replicated mode: etcd).
/// Called on the journal's writer thread, one group at a time, in order; blocking.
pub trait GroupSink: Send {
    /// Makes `group` durable: encoded `LogEntry` fields (records, and with them the
    /// events they publish), `ends` giving where each append ends and its sequence
    /// number. An error is final: the journal fails and refuses every later append;
    /// the sink says why.
    fn write(&mut self, group: &[u8], ends: &[(usize, u64)]) -> Result<(), String>;

    /// Whether enough was written since the last snapshot that one is due; once it
    /// says so, it counts afresh (one snapshot per threshold, not one per group).
    fn compaction_due(&mut self) -> bool;

    /// Stores `snapshot` and drops the log it covers (up to `snapshot.last_seq`). Every
    /// group appended before it was handed over is already written.
    fn snapshot(&mut self, snapshot: Snapshot) -> Result<(), String>;
}

/// Where the writer puts groups.
enum Target {
    /// Numbered segment files in the data directory.
    Segments {
        segment: u64,
        file: File,
        len: u64,
        segment_bytes: u64,
    },
    /// A remote store.
    Remote(Box<dyn GroupSink>),
}

/// The journal of one data directory.
pub struct Journal {
    dir: PathBuf,
    /// Injected by tests; `None` in production.
    faults: Option<Faults>,
    /// Why the journal failed (the file and the error), once it has.
    failure: Mutex<Option<String>>,
    pending: Mutex<Pending>,
    wake: Condvar,
    progress: watch::Sender<Progress>,
    on_durable: OnceLock<Box<dyn Fn(u64) + Send + Sync>>,
    /// Set by the writer when the current segment outgrew `segment_bytes`.
    compaction_due: AtomicBool,
    compaction: tokio::sync::Notify,
    /// The segment the writer appends to, and how many rotations completed.
    rotated: Mutex<u64>,
    rotated_cv: Condvar,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Whether each append's published events go with its record (remote sinks only:
    /// replicas replay them for their watchers).
    log_events: bool,
    /// How long each group took to become durable (write and fsync, or the remote
    /// sink's write), for `/metrics`.
    commit_latency: crate::latency::Histogram,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .field("progress", &*self.progress.borrow())
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Starts the writer on segment `segment` (opened for append, its contents already
    /// valid), continuing after sequence number `seq`.
    pub fn start(
        dir: &Path,
        segment: u64,
        file: File,
        segment_len: u64,
        seq: u64,
        segment_bytes: u64,
        faults: Option<Faults>,
    ) -> Arc<Journal> {
        let journal = Arc::new(Journal::new(dir.to_owned(), faults, seq, segment, false));
        journal.spawn_writer(Target::Segments {
            segment,
            file,
            len: segment_len,
            segment_bytes,
        });
        journal
    }

    /// Starts a journal whose groups go to `sink` (replicated mode), continuing after
    /// sequence number `seq`, with each append's events logged beside its record.
    /// `name` is what errors and logs call it.
    pub fn start_remote(name: &str, seq: u64, sink: Box<dyn GroupSink>) -> Arc<Journal> {
        let journal = Arc::new(Journal::new(PathBuf::from(name), None, seq, 0, true));
        journal.spawn_writer(Target::Remote(sink));
        journal
    }

    fn new(dir: PathBuf, faults: Option<Faults>, seq: u64, segment: u64, log_events: bool) -> Journal {
        Journal {
            dir,
            faults,
            failure: Mutex::new(None),
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                ends: Vec::new(),
                seq,
                rotate: false,
                closing: false,
                failed: false,
                snapshot: None,
            }),
            wake: Condvar::new(),
            progress: watch::channel(Progress {
                durable: seq,
                failed: false,
            })
            .0,
            on_durable: OnceLock::new(),
            compaction_due: AtomicBool::new(false),
            compaction: tokio::sync::Notify::new(),
            rotated: Mutex::new(segment),
            rotated_cv: Condvar::new(),
            writer: Mutex::new(None),
            log_events,
            commit_latency: crate::latency::Histogram::default(),
        }
    }

    fn spawn_writer(self: &Arc<Self>, target: Target) {
        let writer = Arc::clone(self);
        let handle = std::thread::Builder::new()
            .name("circuitd-journal".into())
            .spawn(move || writer.write_loop(target))
            .expect("spawn the journal writer thread");
        *lock(&self.writer) = Some(handle);
    }

    /// Whether appends should carry their events (see [`Journal::append_logged`]).
    pub fn logs_events(&self) -> bool {
        self.log_events
    }

    /// How long each group commit took (write and fsync).
    pub fn commit_latency(&self) -> &crate::latency::Histogram {
        &self.commit_latency
    }

    /// Registers what runs after each fsync with the new durable sequence number.
    pub fn set_on_durable(&self, f: Box<dyn Fn(u64) + Send + Sync>) {
        let _ = self.on_durable.set(f);
    }

    /// Frames the record built for the next sequence number into the buffer; returns
    /// that sequence number, or an error once the journal has failed or closed.
    pub fn append(&self, record: impl FnOnce(u64) -> Record) -> Result<u64, StoreError> {
        self.append_logged(record, Vec::new)
    }

    /// As [`Journal::append`]; a journal that [logs events](Journal::logs_events) also
    /// writes `events()` right after the record, in the same group.
    pub fn append_logged(
        &self,
        record: impl FnOnce(u64) -> Record,
        events: impl FnOnce() -> Vec<LoggedEvent>,
    ) -> Result<u64, StoreError> {
        let mut p = lock(&self.pending);
        if p.failed || p.closing {
            return Err(StoreError::Failed);
        }
        p.seq += 1;
        let seq = p.seq;
        prost::encoding::message::encode(GROUP_RECORDS_TAG, &record(seq), &mut p.buf);
        if self.log_events {
            for event in events() {
                prost::encoding::message::encode(LOG_EVENTS_TAG, &event, &mut p.buf);
            }
            let end = p.buf.len();
            p.ends.push((end, seq));
        }
        drop(p);
        self.wake.notify_one();
        Ok(seq)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last sequence number handed out.
    pub fn last_seq(&self) -> u64 {
        lock(&self.pending).seq
    }

    /// Whether `seq` is durable already.
    pub fn is_durable(&self, seq: u64) -> bool {
        self.progress.borrow().durable >= seq
    }

    /// Waits until `seq` is durable.
    pub async fn durable(&self, seq: u64) -> Result<(), StoreError> {
        // The common case on the hot path: already on disk, no subscription needed.
        if self.is_durable(seq) {
            return Ok(());
        }
        let mut rx = self.progress.subscribe();
        let p = *rx
            .wait_for(|p| p.durable >= seq || p.failed)
            .await
            .map_err(|_| StoreError::Failed)?;
        if p.durable >= seq {
            Ok(())
        } else {
            Err(StoreError::Failed)
        }
    }

    /// Why the journal failed (the file and the operating system's error), if it has.
    pub fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    /// Resolves once the journal has failed: nothing more can be made durable.
    pub async fn failed(&self) {
        let mut rx = self.progress.subscribe();
        let _ = rx.wait_for(|p| p.failed).await;
    }

    /// Resolves when the current segment has outgrown its size and a snapshot is due.
    pub async fn compaction_due(&self) {
        while !self.compaction_due.swap(false, Ordering::AcqRel) {
            self.compaction.notified().await;
        }
    }

    /// Makes the writer finish the current segment and start the next; returns the new
    /// segment's number once every record appended before the call is in an older one.
    /// Blocking: call it off the async runtime.
    pub fn rotate(&self) -> Result<u64, StoreError> {
        let before = *lock(&self.rotated);
        {
            let mut p = lock(&self.pending);
            if p.failed {
                return Err(StoreError::Failed);
            }
            p.rotate = true;
        }
        self.wake.notify_one();
        let mut current = lock(&self.rotated);
        while *current == before {
            if lock(&self.pending).failed {
                return Err(StoreError::Failed);
            }
            current = self
                .rotated_cv
                .wait_timeout(current, std::time::Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(*current)
    }

    /// Flushes what is buffered, stops the writer and waits for it. Blocking.
    pub fn close(&self) {
        lock(&self.pending).closing = true;
        self.wake.notify_one();
        if let Some(handle) = lock(&self.writer).take() {
            let _ = handle.join();
        }
    }

    fn fail(&self, file: &Path, e: &dyn std::fmt::Display) {
        tracing::error!(file = %file.display(), error = %e, "journal write failed: no further change can be made durable");
        *lock(&self.failure) = Some(format!("{}: {e}", file.display()));
        lock(&self.pending).failed = true;
        self.progress.send_modify(|p| p.failed = true);
    }

    /// Marks the journal failed from outside (a remote journal whose writer lost the
    /// right to write): every waiter hears its change is not durable.
    pub fn fail_with(&self, why: &str) {
        // Not an I/O failure, so not logged as one: the caller says why it stopped.
        *lock(&self.failure) = Some(why.to_owned());
        lock(&self.pending).failed = true;
        self.progress.send_modify(|p| p.failed = true);
        self.wake.notify_one();
    }

    fn write_loop(&self, target: Target) {
        match target {
            Target::Segments {
                segment,
                file,
                len,
                segment_bytes,
            } => self.write_segments(segment, file, len, segment_bytes),
            Target::Remote(sink) => self.write_remote(sink),
        }
    }

    /// Hands a remote journal's sink `snapshot`, to store after every group appended so
    /// far (see [`GroupSink::snapshot`]).
    pub fn hand_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let mut p = lock(&self.pending);
        if p.failed || p.closing {
            return Err(StoreError::Failed);
        }
        p.snapshot = Some(snapshot);
        drop(p);
        self.wake.notify_one();
        Ok(())
    }

    /// Whether groups go to a remote sink rather than segment files.
    pub fn is_remote(&self) -> bool {
        self.log_events
    }

    fn write_remote(&self, mut sink: Box<dyn GroupSink>) {
        loop {
            let (buf, ends, seq, closing, snapshot) = {
                let mut p = lock(&self.pending);
                while p.buf.is_empty() && !p.closing && !p.failed && p.snapshot.is_none() {
                    p = self.wake.wait(p).unwrap_or_else(|e| e.into_inner());
                }
                if p.failed {
                    return;
                }
                p.rotate = false;
                (
                    std::mem::take(&mut p.buf),
                    std::mem::take(&mut p.ends),
                    p.seq,
                    p.closing,
                    p.snapshot.take(),
                )
            };
            if !buf.is_empty() {
                let began = std::time::Instant::now();
                if let Err(e) = sink.write(&buf, &ends) {
                    self.fail(&self.dir, &e);
                    return;
                }
                self.commit_latency.observe(began.elapsed());
                if let Some(f) = self.on_durable.get() {
                    f(seq);
                }
                self.progress.send_modify(|p| p.durable = seq);
                if sink.compaction_due() {
                    self.compaction_due.store(true, Ordering::Release);
                    self.compaction.notify_one();
                }
            }
            if let Some(snapshot) = snapshot {
                // Not fatal: the log keeps growing until one succeeds, and a leader that
                // lost its right to write finds out on its next group.
                if let Err(e) = sink.snapshot(snapshot) {
                    tracing::warn!(error = %e, "snapshot to the replicated log failed");
                }
            }
            if closing && lock(&self.pending).buf.is_empty() {
                return;
            }
        }
    }

    fn write_segments(&self, mut segment: u64, mut file: File, mut len: u64, segment_bytes: u64) {
        loop {
            let (buf, seq, rotate, closing) = {
                let mut p = lock(&self.pending);
                while p.buf.is_empty() && !p.rotate && !p.closing {
                    p = self.wake.wait(p).unwrap_or_else(|e| e.into_inner());
                }
                let rotate = std::mem::take(&mut p.rotate);
                (std::mem::take(&mut p.buf), p.seq, rotate, p.closing)
            };
            if !buf.is_empty() {
                let mut group = Vec::with_capacity(buf.len() + HEADER);
                frame(&buf, &mut group);
                let began = std::time::Instant::now();
                if let Err(e) = self.write_and_sync(&mut file, &group) {
                    self.fail(&segment_path(&self.dir, segment), &e);
                    return;
                }
                self.commit_latency.observe(began.elapsed());
                len += group.len() as u64;
                // Watchers hear of a change before its writer is answered, so a client
                // that resumes a Watch from an answer's revision never finds it missing.
                if let Some(f) = self.on_durable.get() {
                    f(seq);
                }
                self.progress.send_modify(|p| p.durable = seq);
                if len > segment_bytes && !rotate {
                    self.compaction_due.store(true, Ordering::Release);
                    self.compaction.notify_one();
                }
            }
            if rotate {
                match self.open_segment(segment + 1) {
                    Ok(next) => {
                        segment += 1;
                        file = next;
                        len = SEGMENT_MAGIC.len() as u64;
                        *lock(&self.rotated) = segment;
                        self.rotated_cv.notify_all();
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start a new journal segment");
                        *lock(&self.failure) = Some(e.to_string());
                        lock(&self.pending).failed = true;
                        self.progress.send_modify(|p| p.failed = true);
                        self.rotated_cv.notify_all();
                        return;
                    }
                }
            }
            if closing && lock(&self.pending).buf.is_empty() {
                return;
            }
        }
    }

    fn write_and_sync(&self, file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
        match &self.faults {
            None => file.write_all(bytes).and_then(|()| file.sync_data()),
            Some(faults) => faults.write(file, bytes).and_then(|()| faults.sync(file)),
        }
    }

    fn open_segment(&self, n: u64) -> Result<File, StoreError> {
        create_segment(&self.dir, n)
    }
}

/// Creates segment `n` holding only its magic, durably.
pub fn create_segment(dir: &Path, n: u64) -> Result<File, StoreError> {
    let path = segment_path(dir, n);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    file.write_all(SEGMENT_MAGIC)
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io(&path, e))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Lists the segment numbers present in `dir`, ascending.
pub fn segments(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix("journal-")
            .and_then(|rest| rest.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            found.push(n);
        }
    }
    found.sort_unstable();
    Ok(found)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves the data consistent, poisoned or not.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
