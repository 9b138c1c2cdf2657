//! A follower's registry: the leader's states, as the replicated log delivers them.
//!
//! A follower never decides and never schedules: its entries change only here, from
//! records the leader made durable, so reads and Watch snapshots on every replica show
//! states the leader acknowledged. A new leader builds a deciding registry from the
//! same replayed states instead (`Registry::restore`), which schedules their deadlines.

use std::sync::atomic::Ordering;

use dashmap::mapref::entry::Entry as MapEntry;

use super::{Entry, Registry};
use crate::sequencer::Published;
use crate::store::Replay;
use crate::store::record::{Body, LogEntry, StoredProtector};

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
                if entry.creator.as_deref() != stored.creator.as_deref() {
                    self.creators.remove(entry.creator.as_deref());
                    self.creators.add(stored.creator.as_deref());
                    entry.creator = stored.creator.as_deref().map(Into::into);
                }
                entry.stats.settle(&protector, self.clock.now());
                entry.protector = protector;
                entry.mod_revision = stored.mod_revision;
                entry.version = stored.version;
                entry.policy_revision = stored.policy_revision.unwrap_or_default();
            }
            MapEntry::Vacant(slot) => {
                slot.insert(Entry {
                    stats: super::stats::Stats::new(super::State::of_protector(&protector), self.clock.now()),
                    protector,
                    mod_revision: stored.mod_revision,
                    scheduled: None,
                    version: stored.version,
                    dirty: false,
                    creator: stored.creator.as_deref().map(Into::into),
                    policy_revision: stored.policy_revision.unwrap_or_default(),
                    // A follower records no outcome: the leader keeps the history.
                    history: None,
                    latest: std::time::Duration::ZERO,
                });
                self.creators.add(stored.creator.as_deref());
                self.index_insert(&stored.name);
                self.count.fetch_add(1, Ordering::AcqRel);
            }
        }
        Ok(())
    }

    /// Applies one entry of the replicated log: its records after sequence number
    /// `applied` to `replay` and to this registry's states, then its events to the
    /// watchers (so a watcher that reads after an event sees at least that state). The
    /// error says which record cannot apply.
    pub fn replicate_entry(&self, replay: &mut Replay, entry: LogEntry, applied: u64) -> Result<(), String> {
        for record in entry.records {
            if record.seq <= applied {
                continue;
            }
            let name = match &record.body {
                Some(Body::Put(p)) => p.name.clone(),
                Some(Body::Trial(t)) => t.state.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
                Some(Body::Delete(name)) => name.clone(),
                None => continue,
            };
            replay.apply(record)?;
            match replay.get(&name) {
                Some(stored) => self.replicate_put(&stored)?,
                None => self.replicate_delete(&name),
            }
        }
        for logged in entry.events {
            if let Some(event) = logged.event {
                self.sequencer.replicate(Published {
                    name: logged.name,
                    event,
                });
            }
        }
        Ok(())
    }

    /// Removes the protector `name`, if it exists.
    pub fn replicate_delete(&self, name: &str) {
        if let MapEntry::Occupied(e) = self.map.entry(name.to_owned()) {
            self.forget(e.get());
            let (_, entry) = e.remove_entry();
            self.creators.remove(entry.creator.as_deref());
            self.index_remove(name);
            self.count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
