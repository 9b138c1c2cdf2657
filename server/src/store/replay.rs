//! Recovery's working state: every protector as the snapshot and the records replayed
//! so far leave it.
//!
//! A `Put` replaces a protector's state when it is newer (its version, the sequence
//! number it was written at, is higher than the state's); a `Delete` removes it. A
//! `Trial` record applies on top of the state before it: the permits that state had in
//! flight, less those expired by the record's instant and the one taken back, plus the
//! one handed out; every other field comes from the record. The permits of a protector
//! that received one are kept indexed (the status machine's own [`TrialPermits`]) until
//! the end, so each such record costs O(log n) in the permits outstanding, not O(n).

use std::collections::HashMap;

use resilient_circuit_breaker::TrialPermits;

use super::record::{Body, Record, StoredProtector, StoredTrial, TrialChange, nanos, time};

struct Replayed {
    stored: StoredProtector,
    /// Once a `Trial` record applied: the permits in flight (`stored.trials` is stale).
    trials: Option<TrialPermits>,
}

/// Every protector recovered (or, on a replica, replicated) so far, by name.
#[derive(Default)]
pub struct Replay {
    protectors: HashMap<String, Replayed>,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("protectors", &self.protectors.len())
            .finish()
    }
}

impl Replay {
    /// Starts from a snapshot's protector.
    pub fn insert(&mut self, stored: StoredProtector) {
        let name = stored.name.clone();
        self.protectors.insert(name, Replayed { stored, trials: None });
    }

    /// Applies one record; the error says why it cannot apply.
    pub fn apply(&mut self, record: Record) -> Result<(), String> {
        match record.body {
            Some(Body::Put(p))
                if self
                    .protectors
                    .get(&p.name)
                    .is_none_or(|old| old.stored.version < p.version) =>
            {
                self.insert(p);
            }
            Some(Body::Delete(name))
                if self
                    .protectors
                    .get(&name)
                    .is_some_and(|old| old.stored.version < record.seq) =>
            {
                self.protectors.remove(&name);
            }
            Some(Body::Trial(change)) => self.apply_trial(record.seq, change)?,
            Some(Body::Put(_) | Body::Delete(_)) | None => {}
        }
        Ok(())
    }

    fn apply_trial(&mut self, seq: u64, change: TrialChange) -> Result<(), String> {
        let state = change
            .state
            .ok_or_else(|| "a trial permit record without its protector's state".to_owned())?;
        let Some(old) = self.protectors.get_mut(&state.name) else {
            return Err(format!(
                "a trial permit record of protector {:?}, which has no earlier state",
                state.name
            ));
        };
        if old.stored.version >= seq {
            // The snapshot already reflects it.
            return Ok(());
        }
        let trials = old.trials.get_or_insert_with(|| {
            old.stored
                .trials
                .iter()
                .map(|t| (t.id, time(t.expires_at)))
                .collect()
        });
        trials.expire_through(time(change.at));
        if let Some(id) = change.released {
            trials.take(id);
        }
        if let Some(t) = change.issued {
            trials.insert(t.id, time(t.expires_at));
        }
        old.stored = state;
        Ok(())
    }

    /// Every protector, in no particular order, its permits in flight in id order.
    pub fn finish(self) -> Vec<StoredProtector> {
        self.protectors.into_values().map(Replayed::whole).collect()
    }

    /// One protector's whole state as replayed so far (replicas apply each record as it
    /// arrives and need the state it leaves).
    pub fn get(&self, name: &str) -> Option<StoredProtector> {
        self.protectors.get(name).map(|r| {
            Replayed {
                stored: r.stored.clone(),
                trials: r.trials.clone(),
            }
            .whole()
        })
    }

    /// Every protector's whole state, in no particular order, keeping the replay.
    pub fn all(&self) -> Vec<StoredProtector> {
        self.protectors.keys().filter_map(|name| self.get(name)).collect()
    }

    /// The highest revision any protector's state carries.
    pub fn max_revision(&self) -> u64 {
        self.protectors
            .values()
            .map(|r| r.stored.mod_revision)
            .max()
            .unwrap_or(0)
    }
}

impl Replayed {
    fn whole(self) -> StoredProtector {
        let mut stored = self.stored;
        if let Some(trials) = self.trials {
            stored.trials = trials
                .iter()
                .map(|(id, at)| StoredTrial {
                    id,
                    expires_at: nanos(at),
                })
                .collect();
        }
        stored
    }
}
