//! [`StoreError`], every way the store can refuse to start or go on. Its own module so
//! that the journal and recovery both name it without importing each other.

use std::path::{Path, PathBuf};

/// Why the store cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Another process holds the directory.
    #[error("data directory {} is in use by another circuitd (its LOCK file is held)", .0.display())]
    Locked(PathBuf),
    /// A journal segment is damaged before its last record.
    #[error(
        "journal {} is damaged at byte {offset} ({detail}); the records after it cannot be trusted. \
         Restore the data directory from a backup, or start once with --repair to truncate the journal \
         at the damage (every change recorded after it is lost)",
        file.display()
    )]
    Damaged {
        /// The segment.
        file: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// The snapshot is damaged.
    #[error(
        "snapshot {} is damaged ({detail}); restore the data directory from a backup \
         (--repair cannot rebuild a snapshot)",
        file.display()
    )]
    SnapshotDamaged {
        /// The snapshot file.
        file: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The EPOCH file does not hold a number.
    #[error(
        "{} is damaged (not a number); delete it to start a new history of revisions \
         (watchers will resync)",
        .0.display()
    )]
    EpochDamaged(PathBuf),
    /// The journal failed earlier; nothing more can be made durable.
    #[error("the journal failed; no change can be made durable")]
    Failed,
}

impl StoreError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_owned(),
            source,
        }
    }
}
