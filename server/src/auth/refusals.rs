//! The refusal log's rate limit: at most one line per second per reason, each line
//! counting the refusals of its reason that were not logged since the one before. A
//! client hammering the daemon with a bad token thus costs a line a second, not one per
//! call, and the count still shows how hard it tried. The state is four slots, whatever
//! the number of clients.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How often each reason may be logged.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No `authorization` header (UNAUTHENTICATED).
    Missing,
    /// An `authorization` header that is not `Bearer <token>` (UNAUTHENTICATED).
    Malformed,
    /// A token that matches none of the file (UNAUTHENTICATED).
    Unknown,
    /// A known token whose role is too weak (PERMISSION_DENIED).
    Forbidden,
}

impl Reason {
    /// Its name in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Malformed => "malformed",
            Reason::Unknown => "unknown",
            Reason::Forbidden => "forbidden",
        }
    }

    fn slot(self) -> usize {
        match self {
            Reason::Missing => 0,
            Reason::Malformed => 1,
            Reason::Unknown => 2,
            Reason::Forbidden => 3,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    logged: Option<Instant>,
    suppressed: u64,
}

/// When each reason was last logged, and what was suppressed since.
#[derive(Debug, Default)]
pub struct Refusals {
    slots: Mutex<[Slot; 4]>,
}

impl Refusals {
    /// Notes a refusal for `reason` at `now`: `Some(suppressed)` when it is to be logged
    /// (with the count of those left unlogged since the last line), `None` otherwise.
    pub fn admit(&self, reason: Reason, now: Instant) -> Option<u64> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut slots[reason.slot()];
        match slot.logged {
            Some(at) if now.saturating_duration_since(at) < INTERVAL => {
                slot.suppressed += 1;
                None
            }
            _ => {
                slot.logged = Some(now);
                Some(std::mem::take(&mut slot.suppressed))
            }
        }
    }
}
