//! A follower's registry: the leader's states, as the replicated log delivers them.
//!
//! A follower never decides and never schedules: its entries change only here, from
//! records the leader made durable, so reads and Watch snapshots on every replica show
//! states the leader acknowledged. A new leader builds a deciding registry from the
//! same replayed states instead (`Registry::restore`), which schedules their deadlines.

use std::sync::atomic::Ordering;

use dashmap::mapref::entry::Entry as MapEntry;

use super::{Entry, Registry};
use crate::store::record::StoredProtector;

impl Registry {
    /// Makes `stored` the state of its protector (created if new). The error says why
    /// the state is not a valid protector.
    pub fn replicate_put(&self, stored: &StoredProtector) -> Result<(), String> {
        let protector = stored.protector().map_err(|e| {
            format!(
                "the replicated state of protector {:?} is invalid: {e}",
                stored.name
            )
        })?;
        match self.map.entry(stored.name.clone()) {
            MapEntry::Occupied(mut e) => {
                let entry = e.get_mut();
                entry.stats.settle(&protector, self.clock.now());
                entry.protector = protector;
                entry.mod_revision = stored.mod_revision;
                entry.version = stored.version;
            }
            MapEntry::Vacant(slot) => {
                slot.insert(Entry {
                    stats: super::stats::Stats::new(super::State::of_protector(&protector), self.clock.now()),
                    protector,
                    mod_revision: stored.mod_revision,
                    scheduled: None,
                    version: stored.version,
                    dirty: false,
                });
                self.index_insert(&stored.name);
                self.count.fetch_add(1, Ordering::AcqRel);
            }
        }
        Ok(())
    }

    /// Removes the protector `name`, if it exists.
    pub fn replicate_delete(&self, name: &str) {
        if let MapEntry::Occupied(e) = self.map.entry(name.to_owned()) {
            self.forget(e.get());
            e.remove();
            self.index_remove(name);
            self.count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
