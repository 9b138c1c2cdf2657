//! What-if history (proto/SEMANTICS.md section 2a): a protector whose policy has
//! `history_size` > 0 keeps its last accepted outcomes, each with its instant and
//! duration, in its registry entry, for SimulatePolicy.
//!
//! Memory. An entry costs `size_of::<HistoryEntry>()` bytes (40 on 64-bit targets: the
//! instant, the optional duration, the outcome), allocated as it fills. The capacities
//! of every protector's history together are bounded by `max_history_entries`
//! (`--max-history-entries`): a policy whose `history_size` would take the total past it
//! is refused with RESOURCE_EXHAUSTED (EnsureProtector, UpdatePolicy) rather than
//! silently capped, so a SimulatePolicy never judges on fewer outcomes than the policy
//! asked for without anyone having been told. States brought back by a restart or a
//! change of leader are counted without being refused: their policies were accepted
//! once, and refusing them would refuse the start.
//!
//! Histories are memory only: not journaled, not replicated, empty after a restart
//! (journaling every outcome would cost the hot path a write per report). A follower
//! keeps none; SimulatePolicy is answered by the leader.

use std::sync::atomic::Ordering;

use resilient_circuit_breaker::{History, HistoryEntry, Outcome, Policy, Time};

use super::{Entry, Registry};
use crate::error::Error;

/// Bytes one history entry costs, for the documentation and the limit's error.
pub const ENTRY_BYTES: usize = std::mem::size_of::<HistoryEntry>();
// README, --help and SEMANTICS 2a say "about 40 bytes" an entry.
const _: () = assert!(ENTRY_BYTES <= 40);

impl Registry {
    /// Bounds the histories of every protector together at `max` entries.
    pub fn with_max_history(mut self, max: usize) -> Registry {
        self.max_history_entries = max;
        self
    }

    /// History entries reserved by every protector's policy together.
    pub fn history_entries(&self) -> usize {
        self.history_entries.load(Ordering::Relaxed)
    }

    /// Reserves room for a history of `new` entries in place of one of `old`;
    /// RESOURCE_EXHAUSTED when the total would pass `max_history_entries`.
    pub(super) fn reserve_history(&self, old: u32, new: u32) -> Result<(), Error> {
        let (old, new) = (old as usize, new as usize);
        if new <= old {
            self.history_entries.fetch_sub(old - new, Ordering::AcqRel);
            return Ok(());
        }
        let max = self.max_history_entries;
        let more = new - old;
        self.history_entries
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                n.checked_add(more).filter(|&total| total <= max)
            })
            .map(|_| ())
            .map_err(|_| {
                Error::exhausted(
                    "max_history_entries",
                    format!(
                        "history_size {new} would take the daemon's history entries past {max} \
                         (--max-history-entries; {ENTRY_BYTES} bytes each)"
                    ),
                )
            })
    }

    /// Counts a history of `size` entries without refusing it (a state brought back).
    pub(super) fn count_history(&self, size: u32) {
        self.history_entries.fetch_add(size as usize, Ordering::AcqRel);
    }

    /// The outcomes `name` keeps for a what-if, oldest first, with the policy in force:
    /// copied out under the entry's guard, which is released before this returns.
    pub fn history(&self, name: &str) -> Result<(Policy, Vec<HistoryEntry>), Error> {
        let entry = self.map.get(name).ok_or_else(|| Error::not_found(name))?;
        let entries = entry
            .history
            .as_ref()
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default();
        Ok((*entry.protector.policy(), entries))
    }
}

impl Entry {
    /// An empty history for `policy`, if it keeps one.
    pub(super) fn history_for(policy: &Policy) -> Option<Box<History>> {
        let size = policy.rules().history_size;
        (size > 0).then(|| Box::new(History::new(size)))
    }

    /// The history after the policy became `policy`: kept (its newest entries) and
    /// resized, created, or dropped.
    pub(super) fn resize_history(&mut self, policy: &Policy) {
        match (&mut self.history, policy.rules().history_size) {
            (_, 0) => self.history = None,
            (Some(h), size) => h.resize(size),
            (None, _) => self.history = Entry::history_for(policy),
        }
    }

    /// Notes one accepted outcome in the history, if it keeps one.
    pub(super) fn note(&mut self, at: Time, outcome: Outcome, duration: Option<std::time::Duration>) {
        if let Some(h) = &mut self.history {
            h.push(HistoryEntry {
                at,
                outcome,
                duration,
            });
        }
    }

    /// The capacity its history holds against the limit (none on a follower).
    pub(super) fn history_reserved(&self) -> u32 {
        self.history.as_ref().map_or(0, |h| h.capacity() as u32)
    }
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
