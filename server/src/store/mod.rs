//! Durable state: a restart forgets nothing.
//!
//! Design note. Why a journal of our own rather than an embedded database: the promises
//! are exactly a log's — a change is acknowledged once its record is fsync'd, a crash can
//! only tear the last append, and damage anywhere else must stop the daemon with a
//! message rather than be papered over. A framed, checksummed, append-only file gives
//! each of those directly and testably (truncate it at any byte, flip any bit), costs one
//! small crate (crc32fast), and group commit on one writer thread keeps the hot path free
//! of I/O.
//!
//! Layout of the data directory:
//! - `LOCK`: held (OS file lock) by the running daemon, so two never share a directory.
//! - `journal-NNNNNNNNNNNNNNNN.log`: segments of records, replayed in order; each record is
//!   the whole state of one protector (or its deletion) with a version, or a trial permit
//!   handed out or taken back on top of the state before it (`record`, `replay`).
//! - `snapshot.bin`: every protector at one moment, and the first segment to replay on top
//!   of it. When the current segment passes `segment_bytes`, the daemon rotates to a new
//!   segment, writes a snapshot, and deletes the older segments.
//!
//! What is durable before it is acknowledged: every create, delete, policy change,
//! override and status transition (and the revision with it), every HALF_OPEN trial
//! permit handed out or reported. What is written in batches: outcomes recorded in CLOSED
//! that cause no transition, rejections and stale reports (counters), written every
//! `flush_interval` (default 100 ms). A crash can lose at most those from the last
//! interval — window entries and counters, never a transition.
//!
//! `EPOCH` names the directory's history of revisions (see `Synced.epoch`). `--repair`
//! replaces it, since revisions after the damage will be handed out again; after
//! restoring a directory from a backup, delete `EPOCH` for the same reason.
//!
//! Recovery: the snapshot (a damaged one refuses to start), then every segment from its
//! `first_segment`. In the last segment, bad bytes with no valid frame after them are the
//! unacknowledged tail of a crash (see `format`): dropped with one warning and the file
//! truncated before them. Damage followed by a valid frame, or in an earlier segment,
//! refuses to start, naming the file and the byte, and suggesting `--repair` (truncate at
//! the damage, losing what follows) or a restore.

mod error;
pub mod faults;
pub mod format;
pub mod journal;
pub mod record;
mod replay;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;

pub use error::StoreError;
pub use journal::{GroupSink, Journal, Progress};
use record::{Record, RecordGroup, Snapshot, StoredProtector};
pub use replay::Replay;

/// How the store is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The data directory (created if absent).
    pub dir: PathBuf,
    /// Truncate a damaged journal at the damage instead of refusing to start.
    pub repair: bool,
    /// How large a segment grows before a snapshot replaces it.
    pub segment_bytes: u64,
    /// Faults to inject into the journal's writes and fsyncs (tests only).
    pub faults: Option<faults::Faults>,
}

/// A new epoch: an identity for a history of revisions that is, for all practical
/// purposes, never reused (the time in nanoseconds and the process id, mixed).
pub fn new_epoch() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // splitmix64's finaliser: spreads nearby inputs far apart.
    let mut z = nanos ^ (u64::from(std::process::id()) << 32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).max(1)
}

/// The directory's epoch, created on first use: it stays while the directory's history
/// of revisions does.
fn epoch(dir: &Path) -> Result<u64, StoreError> {
    let path = dir.join("EPOCH");
    match fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| StoreError::EpochDamaged(path.clone())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let epoch = new_epoch();
            write_epoch(dir, epoch)?;
            Ok(epoch)
        }
        Err(e) => Err(StoreError::io(&path, e)),
    }
}

/// Replaces the directory's epoch, durably.
fn write_epoch(dir: &Path, epoch: u64) -> Result<(), StoreError> {
    let path = dir.join("EPOCH");
    let tmp = dir.join("EPOCH.tmp");
    let mut file = File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
    writeln!(file, "{epoch}")
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, e))?;
    journal::sync_dir(dir)
}

/// What recovery found.
#[derive(Debug)]
pub struct Recovered {
    /// The directory's epoch.
    pub epoch: u64,
    /// Every protector, in no particular order.
    pub protectors: Vec<StoredProtector>,
    /// The daemon-wide revision to continue from.
    pub revision: u64,
    /// The journal, open for appends.
    pub journal: Arc<Journal>,
    /// The lock on the directory, held while this lives.
    pub lock: File,
}

fn snapshot_path(dir: &Path) -> PathBuf {
    dir.join("snapshot.bin")
}

/// Opens (or creates) the data directory, recovers its state and starts the journal.
/// Blocking: call it before serving, or off the async runtime.
pub fn open(config: &StoreConfig) -> Result<Recovered, StoreError> {
    let dir = &config.dir;
    fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let lock_path = dir.join("LOCK");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::io(&lock_path, e))?;
    lock.try_lock().map_err(|_| StoreError::Locked(dir.clone()))?;
    let _ = fs::remove_file(dir.join("snapshot.bin.tmp"));
    let mut epoch = epoch(dir)?;
    let mut repaired = false;

    let mut state = replay::Replay::default();
    let mut revision = 0;
    let mut first_segment = 1;
    let mut snapshot_seq = 0;
    let snapshot = snapshot_path(dir);
    if snapshot.exists() {
        let snap = read_snapshot(&snapshot)?;
        revision = snap.revision;
        first_segment = snap.first_segment;
        snapshot_seq = snap.last_seq;
        for p in snap.protectors {
            state.insert(p);
        }
    }

    let mut seq = 0;
    let present = journal::segments(dir)?;
    for &n in present.iter().filter(|&&n| n < first_segment) {
        let path = journal::segment_path(dir, n);
        fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
    }
    let mut live: Vec<u64> = present.into_iter().filter(|&n| n >= first_segment).collect();
    let mut legacy_last = false;
    let mut i = 0;
    while i < live.len() {
        let n = live[i];
        let last = i + 1 == live.len();
        let path = journal::segment_path(dir, n);
        let bytes = fs::read(&path).map_err(|e| StoreError::io(&path, e))?;
        let (records, end) = read_segment(&bytes, last);
        legacy_last = last && bytes.starts_with(format::LEGACY_SEGMENT_MAGIC);
        replay_records(&mut state, &mut seq, &mut revision, records).map_err(|(offset, detail)| {
            StoreError::Damaged {
                file: path.clone(),
                offset,
                detail,
            }
        })?;
        match end {
            format::End::Clean => {}
            // Nothing valid after the bad bytes: the group commit a crash interrupted,
            // which nobody was told of (see `format`).
            format::End::Torn { offset, detail } | format::End::Damaged { offset, detail }
                if last && format::valid_frame_from(&bytes, offset as usize).is_none() =>
            {
                tracing::warn!(file = %path.display(), offset, %detail, "dropping a torn journal tail (a crash during its write; none of it was acknowledged)");
                truncate(&path, offset.max(format::SEGMENT_MAGIC.len() as u64), offset == 0)?;
            }
            format::End::Torn { offset, detail } | format::End::Damaged { offset, detail } => {
                damaged(&path, offset, &detail, config, &live[i..])?;
                live.truncate(i + 1);
                repaired = true;
            }
        }
        i += 1;
    }

    if repaired {
        // Revisions after the damage were durable, so watchers may have seen them; the
        // numbers will now be handed out again for other changes. A new epoch makes
        // every watcher that resumes from the old history resync instead.
        epoch = new_epoch();
        write_epoch(dir, epoch)?;
        tracing::warn!(
            epoch,
            "--repair: a new epoch; watchers resuming from before the repair will resync"
        );
    }
    let (segment, file, len) = match live.last() {
        // Frames of the older layout are read, never appended to: continue in a new one.
        Some(&n) if legacy_last => {
            let file = journal::create_segment(dir, n + 1)?;
            (n + 1, file, format::SEGMENT_MAGIC.len() as u64)
        }
        Some(&n) => {
            let path = journal::segment_path(dir, n);
            let file = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|e| StoreError::io(&path, e))?;
            let len = file.metadata().map_err(|e| StoreError::io(&path, e))?.len();
            (n, file, len)
        }
        None => {
            let file = journal::create_segment(dir, first_segment)?;
            (first_segment, file, format::SEGMENT_MAGIC.len() as u64)
        }
    };
    // New records must outrank every version the snapshot holds, even when the journal
    // after it is empty.
    let journal = Journal::start(
        dir,
        segment,
        file,
        len,
        seq.max(snapshot_seq),
        config.segment_bytes,
        config.faults.clone(),
    );
    Ok(Recovered {
        epoch,
        protectors: state.finish(),
        revision,
        journal,
        lock,
    })
}

/// Applies one segment's `records` to `state` in order, raising `seq` (the last sequence
/// number applied, which must only go up) and `revision`; the error is the offset of the
/// record's frame and what is wrong with it.
pub(crate) fn replay_records(
    state: &mut Replay,
    seq: &mut u64,
    revision: &mut u64,
    records: Vec<(u64, Record)>,
) -> Result<(), (u64, String)> {
    for (offset, record) in records {
        if record.seq <= *seq {
            return Err((offset, "sequence numbers go backwards".into()));
        }
        *seq = record.seq;
        *revision = (*revision).max(record.revision);
        state.apply(record).map_err(|detail| (offset, detail))?;
    }
    Ok(())
}

/// The records of one segment's bytes with their frames' offsets, and how it ends;
/// `last` when no segment follows (only there can a crash leave a short header).
pub(crate) fn read_segment(bytes: &[u8], last: bool) -> (Vec<(u64, Record)>, format::End) {
    let magic = format::SEGMENT_MAGIC.len();
    if bytes.len() < magic && last {
        // A crash while the segment was being created.
        let end = format::End::Torn {
            offset: 0,
            detail: "incomplete segment header".into(),
        };
        return (Vec::new(), end);
    }
    if bytes.starts_with(format::SEGMENT_MAGIC) {
        let (groups, end) = format::read_frames::<RecordGroup>(bytes, magic);
        let records = groups
            .into_iter()
            .flat_map(|(offset, g)| g.records.into_iter().map(move |r| (offset, r)))
            .collect();
        (records, end)
    } else if bytes.starts_with(format::LEGACY_SEGMENT_MAGIC) {
        format::read_frames::<Record>(bytes, magic)
    } else {
        let end = format::End::Damaged {
            offset: 0,
            detail: "not a journal segment".into(),
        };
        (Vec::new(), end)
    }
}

/// Damage at `offset` of `path`: with `--repair`, truncates there, deletes the later
/// segments and returns Ok (the caller stops replaying); otherwise the refusal.
fn damaged(
    path: &Path,
    offset: u64,
    detail: &str,
    config: &StoreConfig,
    rest: &[u64],
) -> Result<(), StoreError> {
    if !config.repair {
        return Err(StoreError::Damaged {
            file: path.to_owned(),
            offset,
            detail: detail.to_owned(),
        });
    }
    tracing::warn!(file = %path.display(), offset, %detail, "--repair: truncating the journal at the damage; every change after it is lost");
    truncate(path, offset.max(format::SEGMENT_MAGIC.len() as u64), offset == 0)?;
    for &later in rest.iter().skip(1) {
        let p = journal::segment_path(&config.dir, later);
        tracing::warn!(file = %p.display(), "--repair: deleting a journal segment after the damage");
        fs::remove_file(&p).map_err(|e| StoreError::io(&p, e))?;
    }
    Ok(())
}

/// Cuts `path` to `len` bytes durably; `rewrite_magic` when even its header was bad.
fn truncate(path: &Path, len: u64, rewrite_magic: bool) -> Result<(), StoreError> {
    let mut file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    file.set_len(if rewrite_magic { 0 } else { len })
        .map_err(|e| StoreError::io(path, e))?;
    if rewrite_magic {
        file.write_all(format::SEGMENT_MAGIC)
            .map_err(|e| StoreError::io(path, e))?;
    }
    file.sync_all().map_err(|e| StoreError::io(path, e))
}

fn read_snapshot(path: &Path) -> Result<Snapshot, StoreError> {
    let bytes = fs::read(path).map_err(|e| StoreError::io(path, e))?;
    decode_snapshot(&bytes).map_err(|detail| StoreError::SnapshotDamaged {
        file: path.to_owned(),
        detail,
    })
}

/// The snapshot a snapshot file's `bytes` hold, or what is wrong with them.
pub(crate) fn decode_snapshot(bytes: &[u8]) -> Result<Snapshot, String> {
    if !bytes.starts_with(format::SNAPSHOT_MAGIC) {
        return Err("not a snapshot file".into());
    }
    let (mut frames, end) = format::read_frames::<Snapshot>(bytes, format::SNAPSHOT_MAGIC.len());
    match (end, frames.len()) {
        (format::End::Clean, 1) => Ok(frames.remove(0).1),
        (format::End::Clean, n) => Err(format!("{n} frames instead of one")),
        (format::End::Torn { detail, .. } | format::End::Damaged { detail, .. }, _) => Err(detail),
    }
}

/// Writes `snapshot` durably as the directory's snapshot, then deletes the segments it
/// makes unnecessary. Blocking.
pub fn write_snapshot(dir: &Path, snapshot: &Snapshot) -> Result<(), StoreError> {
    let tmp = dir.join("snapshot.bin.tmp");
    let mut bytes = format::SNAPSHOT_MAGIC.to_vec();
    format::frame(&snapshot.encode_to_vec(), &mut bytes);
    let mut file = File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io(&tmp, e))?;
    let path = snapshot_path(dir);
    fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, e))?;
    journal::sync_dir(dir)?;
    for n in journal::segments(dir)? {
        if n < snapshot.first_segment {
            let p = journal::segment_path(dir, n);
            fs::remove_file(&p).map_err(|e| StoreError::io(&p, e))?;
        }
    }
    Ok(())
}
