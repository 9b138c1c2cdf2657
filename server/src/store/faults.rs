//! Faults injected into the journal's writes and fsyncs, so tests can show what the
//! daemon does when the disk says no: a full disk, an I/O error, a write cut short, an
//! fsync that fails once, or an fsync that takes as long as the test wants.
//!
//! Design note. The journal's writer thread asks [`Faults`] before each write and each
//! fsync of a group commit; production code passes none and pays one `Option` check per
//! group. A slow disk is a gate the test holds closed ([`Faults::hold_syncs`]) and opens
//! when it has seen what it wanted, never a sleep, so tests do not depend on timing.

use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// What the next write fails with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFault {
    /// Every write fails with "No space left on device" until cleared.
    DiskFull,
    /// Every write fails with an I/O error until cleared.
    Io,
    /// The next write stores only the first half of its bytes, then fails (a short
    /// write, as a full disk leaves mid-write); later writes then fail as `DiskFull`.
    Short,
}

#[derive(Debug, Default)]
struct State {
    write: Option<WriteFault>,
    fail_next_sync: bool,
    hold_syncs: bool,
    /// fsyncs waiting at the gate now.
    held: usize,
}

/// Shared between a test and the journal it is given to; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    inner: Arc<(Mutex<State>, Condvar)>,
}

impl PartialEq for Faults {
    fn eq(&self, other: &Faults) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Faults {}

impl Faults {
    /// No fault yet.
    pub fn new() -> Faults {
        Faults::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes writes fail as `fault` says.
    pub fn fail_writes(&self, fault: WriteFault) {
        self.state().write = Some(fault);
    }

    /// Makes the next fsync fail once.
    pub fn fail_next_sync(&self) {
        self.state().fail_next_sync = true;
    }

    /// Holds every fsync at a gate until [`Faults::release_syncs`]: a disk as slow as
    /// the test needs.
    pub fn hold_syncs(&self) {
        self.state().hold_syncs = true;
    }

    /// Opens the gate of [`Faults::hold_syncs`].
    pub fn release_syncs(&self) {
        self.state().hold_syncs = false;
        self.inner.1.notify_all();
    }

    /// How many fsyncs wait at the gate now.
    pub fn held_syncs(&self) -> usize {
        self.state().held
    }

    /// Blocks until at least `n` fsyncs wait at the gate, or `deadline` passes; whether
    /// they do. Blocking: from async code, call it through `spawn_blocking`.
    pub fn wait_until_held(&self, n: usize, deadline: std::time::Duration) -> bool {
        let state = self.state();
        let (state, _) = self
            .inner
            .1
            .wait_timeout_while(state, deadline, |s| s.held < n)
            .unwrap_or_else(|e| e.into_inner());
        state.held >= n
    }

    /// Removes every fault; held fsyncs go on.
    pub fn clear(&self) {
        *self.state() = State::default();
        self.inner.1.notify_all();
    }

    /// Writes `bytes` to `file` unless a fault says otherwise.
    pub(crate) fn write(&self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        let fault = {
            let mut state = self.state();
            let fault = state.write;
            if fault == Some(WriteFault::Short) {
                state.write = Some(WriteFault::DiskFull);
            }
            fault
        };
        match fault {
            None => file.write_all(bytes),
            Some(WriteFault::DiskFull) => Err(disk_full()),
            Some(WriteFault::Io) => Err(io::Error::other("input/output error (injected)")),
            Some(WriteFault::Short) => {
                file.write_all(&bytes[..bytes.len() / 2])?;
                Err(disk_full())
            }
        }
    }

    /// Syncs `file`'s data unless a fault says otherwise; waits at the gate while
    /// fsyncs are held.
    pub(crate) fn sync(&self, file: &File) -> io::Result<()> {
        let mut state = self.state();
        if state.hold_syncs {
            state.held += 1;
            self.inner.1.notify_all();
            while state.hold_syncs {
                state = self.inner.1.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            state.held -= 1;
        }
        if std::mem::take(&mut state.fail_next_sync) {
            return Err(io::Error::other("fsync failed (injected)"));
        }
        drop(state);
        file.sync_data()
    }
}

fn disk_full() -> io::Error {
    io::Error::new(io::ErrorKind::StorageFull, "no space left on device (injected)")
}
