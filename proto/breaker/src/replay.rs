//! What-if (proto/SEMANTICS.md section 2a): a bounded [`History`] of a protector's recent
//! outcomes, and [`replay`], which runs one through a candidate policy in a fresh
//! [`Protector`] and answers the transitions it makes and the calls it rejects.

use std::collections::VecDeque;
use std::time::Duration;

use crate::Time;
use crate::machine::{Change, Decision, Outcome, Protector, Transition};
use crate::policy::Policy;

/// One call of a history: when it was reported, how it went, how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryEntry {
    /// When its outcome was recorded.
    pub at: Time,
    /// How it went.
    pub outcome: Outcome,
    /// How long it took, if the client said.
    pub duration: Option<Duration>,
}

/// The last `capacity` entries, oldest dropped first: memory bounded by the capacity
/// (`history_size`), whatever the call rate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct History {
    entries: VecDeque<HistoryEntry>,
    capacity: usize,
}

impl History {
    /// An empty history of at most `capacity` entries (0 keeps nothing).
    pub fn new(capacity: u32) -> History {
        History {
            entries: VecDeque::new(),
            capacity: capacity as usize,
        }
    }

    /// Appends an entry, dropping the oldest when full.
    pub fn push(&mut self, entry: HistoryEntry) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    /// Appends `n` copies of `entry` (a batch's successes), dropping the oldest when
    /// full: O(min(n, capacity)), whatever `n` says.
    pub fn push_many(&mut self, entry: HistoryEntry, n: u64) {
        let n = usize::try_from(n).unwrap_or(usize::MAX).min(self.capacity);
        for _ in 0..n {
            self.push(entry);
        }
    }

    /// Changes the capacity to `capacity`, keeping the newest entries that fit.
    pub fn resize(&mut self, capacity: u32) {
        self.capacity = capacity as usize;
        let excess = self.entries.len().saturating_sub(self.capacity);
        self.entries.drain(..excess);
        self.entries.shrink_to(self.capacity);
    }

    /// The most entries it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The entries, oldest first.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &HistoryEntry> + '_ {
        self.entries.iter()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What a replay found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// Every transition, in order, with its instant.
    pub transitions: Vec<Transition>,
    /// Calls the candidate would have rejected (in shadow: would have rejected).
    pub rejected: u64,
    /// Calls it would have admitted and recorded.
    pub admitted: u64,
}

/// Replays `history` through a fresh protector on `policy`: each entry is one call,
/// acquired and reported at its instant (section 2a).
pub fn replay<'a>(policy: Policy, history: impl IntoIterator<Item = &'a HistoryEntry>) -> Replay {
    let mut p = Protector::new(policy);
    let mut out = Replay::default();
    let keep = |changes: Vec<Change>, out: &mut Replay| {
        out.transitions
            .extend(changes.into_iter().filter_map(|c| match c {
                Change::Transition(t) => Some(t),
                Change::OverrideExpired { .. } => None,
            }))
    };
    for entry in history {
        let acquired = p.acquire(entry.at);
        keep(acquired.changes, &mut out);
        match acquired.decision {
            Decision::Admitted { permit, .. } if acquired.would_reject.is_none() => {
                out.admitted += 1;
                let reported = p.report_timed(permit, entry.outcome, entry.duration, entry.at);
                keep(reported.changes, &mut out);
            }
            _ => out.rejected += 1,
        }
    }
    out
}
