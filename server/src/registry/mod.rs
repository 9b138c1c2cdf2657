//! The map of protectors: the only state the hot path touches.
//!
//! Design note. `DashMap<String, Entry>`: a protector's entry guard is the only lock an
//! Acquire or Report takes. Inside it, synchronously, the daemon reads the clock, runs
//! the pure status machine, commits each resulting change through the [`WatchHub`]
//! (which assigns its revision and, with a store, journals the protector's new state in
//! the same step) and notes the protector's next deadline for the [`Scheduler`]. The
//! guard is released before anything is awaited: an operation that must be durable
//! returns the journal sequence number it waits for after the guard is gone.
//!
//! Lock order is entry guard, then the hub's mutex (and the journal's buffer inside it),
//! then the name index (create and delete only), then the scheduler's mutex; none of
//! those ever calls back into the map.
//!
//! Fields of `Entry`:
//! - `protector`: the status machine's whole state.
//! - `mod_revision`: the revision of this protector's last change, so a snapshot says
//!   which changes it already reflects.
//! - `scheduled`: the deadline the scheduler holds for it, if any, so a deadline is
//!   queued again only when it moves earlier (one heap entry per protector, not per call).
//! - `version`: the journal sequence number of its last stored state (persist.rs).
//! - `dirty`: state changed since it was last stored, waiting for the batch flush.

mod persist;

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use resilient_circuit_api::convert;
use resilient_circuit_api::v1::{self, watch_event::Event};
use resilient_circuit_breaker::{
    Change, Decision, DecisionReason, Outcome, Override, OverrideKind, Permit, Policy, Protector, Status,
    Time, Transition,
};

use crate::clock::Clock;
use crate::error::Error;
use crate::scheduler::Scheduler;
use crate::store::Journal;
use crate::watch::{EventFn, Filter, SnapshotSource, WatchHub};

struct Entry {
    protector: Protector,
    mod_revision: u64,
    scheduled: Option<Time>,
    version: u64,
    dirty: bool,
}

/// How an operation's state change must be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Nothing changed.
    Nothing,
    /// Written by the next batch flush (outcomes in CLOSED, counters).
    Batched,
    /// Durable before the answer (transitions, trial permits).
    Now,
}

/// A protector as read: its name, state and the revision of its last change.
#[derive(Debug, Clone)]
pub struct View {
    /// The protector's name.
    pub name: String,
    /// Its state.
    pub protector: Protector,
    /// The revision of its last change.
    pub mod_revision: u64,
}

impl View {
    /// The wire form.
    pub fn to_proto(&self) -> v1::Protector {
        convert::protector(&self.name, &self.protector, self.mod_revision)
    }
}

/// The answer to [`Registry::ensure`].
#[derive(Debug, Clone)]
pub struct Ensured {
    /// The protector as it is now.
    pub view: View,
    /// Whether this call created it.
    pub created: bool,
    /// The revision the answer reflects.
    pub revision: u64,
}

/// The answer to [`Registry::acquire`].
#[derive(Debug, Clone, Copy)]
pub struct Acquired {
    /// Admitted or rejected.
    pub decision: Decision,
    /// The status after the decision.
    pub status: Status,
    /// The last transition the acquire caused (or applied, for an expiry due), if any.
    pub transition: Option<Transition>,
    /// The revision the answer reflects.
    pub revision: u64,
}

/// The answer to [`Registry::report`].
#[derive(Debug, Clone, Copy)]
pub struct Reported {
    /// False when stale.
    pub accepted: bool,
    /// The status after the report.
    pub status: Status,
    /// The transition the report caused, if any.
    pub transition: Option<Transition>,
    /// The revision the answer reflects: with a transition, exactly its revision.
    pub revision: u64,
}

/// The answer to [`Registry::report_batch`].
#[derive(Debug, Clone, Copy)]
pub struct BatchReported {
    /// Outcomes recorded.
    pub accepted: u64,
    /// Outcomes refused as stale.
    pub stale: u64,
    /// The status after the batch.
    pub status: Status,
    /// The generation after the batch.
    pub generation: u64,
    /// The first transition the batch caused, if any.
    pub transition: Option<Transition>,
    /// The revision the answer reflects.
    pub revision: u64,
}

/// Every protector of the daemon.
pub struct Registry {
    map: DashMap<String, Entry>,
    /// Protectors counted against `max_protectors` (reserved before insertion).
    count: AtomicUsize,
    max_protectors: usize,
    hub: Arc<WatchHub>,
    scheduler: Scheduler,
    clock: Clock,
    /// The journal, unless the daemon runs in memory.
    store: Option<Arc<Journal>>,
    /// Names whose `dirty` flag went up since the last flush.
    dirty: Mutex<Vec<String>>,
    /// Every name in order, for ListProtectors pages and prefix snapshots without
    /// sorting the whole map each time. Changed only by create and delete (under the
    /// entry's guard), never on the hot path.
    names: RwLock<BTreeSet<String>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("protectors", &self.len())
            .field("hub", &self.hub)
            .field("durable", &self.store.is_some())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry publishing to `hub`, journaling to `store` if given.
    pub fn new(
        max_protectors: usize,
        hub: Arc<WatchHub>,
        clock: Clock,
        store: Option<Arc<Journal>>,
    ) -> Registry {
        Registry {
            map: DashMap::new(),
            count: AtomicUsize::new(0),
            max_protectors,
            hub,
            scheduler: Scheduler::default(),
            clock,
            store,
            dirty: Mutex::new(Vec::new()),
            names: RwLock::new(BTreeSet::new()),
        }
    }

    /// How many protectors exist.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether no protector exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The hub changes are published to.
    pub fn hub(&self) -> &Arc<WatchHub> {
        &self.hub
    }

    /// The deadlines the scheduler task serves.
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// The clock every operation reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Creates the protector if absent; never changes an existing one.
    pub async fn ensure(&self, name: &str, policy: Policy) -> Result<Ensured, Error> {
        let (ensured, seq) = match self.map.entry(name.to_owned()) {
            MapEntry::Occupied(e) => (
                Ensured {
                    view: view(name, e.get()),
                    created: false,
                    revision: self.hub.revision(),
                },
                None,
            ),
            MapEntry::Vacant(slot) => {
                self.reserve()?;
                let protector = Protector::new(policy);
                let created: EventFn<'_> =
                    Box::new(|rev| Event::Created(convert::protector(name, &protector, rev)));
                let committed = self
                    .hub
                    .commit(name, vec![created], self.put_record(name, &protector, 0))
                    .inspect_err(|_| {
                        self.count.fetch_sub(1, Ordering::AcqRel);
                    })?;
                let entry = slot.insert(Entry {
                    protector,
                    mod_revision: committed.revision,
                    scheduled: None,
                    version: committed.seq.unwrap_or(0),
                    dirty: false,
                });
                self.index_insert(name);
                let ensured = Ensured {
                    view: view(name, &entry),
                    created: true,
                    revision: committed.revision,
                };
                (ensured, committed.seq)
            }
        };
        self.durable(seq).await?;
        Ok(ensured)
    }

    /// May a call protected by `name` go ahead?
    pub async fn acquire(&self, name: &str) -> Result<Acquired, Error> {
        let (acquired, seq) = self.with_entry(name, |entry, now| {
            let result = entry.protector.acquire(now);
            let keep = match result.decision {
                Decision::Admitted {
                    reason: DecisionReason::Trial,
                    ..
                } => Keep::Now,
                _ => Keep::Batched,
            };
            let committed = self.commit_changes(name, entry, &result.changes, Vec::new(), keep)?;
            let transition = result.changes.iter().rev().find_map(|c| match c {
                Change::Transition(t) => Some(*t),
                Change::OverrideExpired { .. } => None,
            });
            Ok((
                Acquired {
                    decision: result.decision,
                    status: entry.protector.status(),
                    transition,
                    revision: committed.revision,
                },
                committed.seq,
            ))
        })?;
        self.durable(seq).await?;
        Ok(acquired)
    }

    /// Records the outcome of a call admitted with `permit`.
    pub async fn report(&self, name: &str, permit: Permit, outcome: Outcome) -> Result<Reported, Error> {
        let (reported, seq) = self.with_entry(name, |entry, now| {
            let result = entry.protector.report(permit, outcome, now);
            let keep = if result.accepted && permit.id != 0 {
                Keep::Now
            } else {
                Keep::Batched
            };
            let committed = self.commit_changes(name, entry, &result.changes, Vec::new(), keep)?;
            Ok((
                Reported {
                    accepted: result.accepted,
                    status: entry.protector.status(),
                    transition: result.transition,
                    revision: committed.revision,
                },
                committed.seq,
            ))
        })?;
        self.durable(seq).await?;
        Ok(reported)
    }

    /// Records a batch of outcomes of calls a client admitted locally in `generation`.
    pub async fn report_batch(
        &self,
        name: &str,
        generation: u64,
        successes: u64,
        outcomes: &[Outcome],
    ) -> Result<BatchReported, Error> {
        let (reported, seq) = self.with_entry(name, |entry, now| {
            let result = entry.protector.report_batch(generation, successes, outcomes, now);
            let committed = self.commit_changes(name, entry, &result.changes, Vec::new(), Keep::Batched)?;
            Ok((
                BatchReported {
                    accepted: result.accepted,
                    stale: result.stale,
                    status: entry.protector.status(),
                    generation: entry.protector.generation(),
                    transition: result.transition,
                    revision: committed.revision,
                },
                committed.seq,
            ))
        })?;
        self.durable(seq).await?;
        Ok(reported)
    }

    /// Applies the expiries due now (the scheduler's call). Their changes are journaled
    /// like any other; nobody waits for them.
    pub fn tick(&self, name: &str) -> Result<(), Error> {
        self.with_entry(name, |entry, now| {
            entry.scheduled = None;
            let changes = entry.protector.tick(now);
            self.commit_changes(name, entry, &changes, Vec::new(), Keep::Nothing)
                .map(|_| ())
        })
    }

    /// An operator's SetStatus; returns the protector, the manual transition and its
    /// revision.
    pub async fn set_status(
        &self,
        name: &str,
        status: Status,
        open_for: Option<Duration>,
    ) -> Result<(View, Transition, u64), Error> {
        let (answer, seq) = self.with_entry(name, |entry, now| {
            let changes = entry.protector.set_status(status, open_for, now);
            let committed = self.commit_changes(name, entry, &changes, Vec::new(), Keep::Now)?;
            match changes.last() {
                Some(Change::Transition(t)) => {
                    Ok(((view(name, entry), *t, committed.revision), committed.seq))
                }
                _ => Err(Error::Internal("SetStatus performed no transition".into())),
            }
        })?;
        self.durable(seq).await?;
        Ok(answer)
    }

    /// Sets (`Some`) or clears (`None`) the override; publishes OVERRIDE_CHANGED after
    /// any expiry that came due first, and before any transition its clearing allows.
    pub async fn set_override(
        &self,
        name: &str,
        kind: Option<OverrideKind>,
        expires_after: Option<Duration>,
    ) -> Result<(View, u64), Error> {
        let (answer, seq) = self.with_entry(name, |entry, now| {
            let due = entry.protector.tick(now);
            let new = kind.map(|kind| Override {
                kind,
                expires_at: expires_after.map(|d| now.saturating_add(d)),
            });
            let resumed = entry.protector.set_override(new, now);
            let state = entry.protector.override_state();
            let changed: EventFn<'_> = Box::new(move |_| {
                Event::OverrideChanged(v1::OverrideChanged {
                    name: name.to_owned(),
                    r#override: Some(state.map_or_else(convert::no_override, Into::into)),
                    expired: false,
                })
            });
            let mut events = self.events(name, &due);
            events.push(changed);
            let committed = self.commit_changes(name, entry, &resumed, events, Keep::Now)?;
            Ok(((view(name, entry), committed.revision), committed.seq))
        })?;
        self.durable(seq).await?;
        Ok(answer)
    }

    /// Replaces the policy (the window starts anew); publishes POLICY_UPDATED.
    pub async fn update_policy(&self, name: &str, policy: Policy) -> Result<(View, u64), Error> {
        let (answer, seq) = self.with_entry(name, |entry, now| {
            let due = entry.protector.tick(now);
            let after = entry.protector.update_policy(policy, now);
            let updated: EventFn<'_> = Box::new(move |_| {
                Event::PolicyUpdated(v1::PolicyUpdated {
                    name: name.to_owned(),
                    policy: Some((&policy).into()),
                })
            });
            let mut events = self.events(name, &due);
            events.push(updated);
            let committed = self.commit_changes(name, entry, &after, events, Keep::Now)?;
            Ok(((view(name, entry), committed.revision), committed.seq))
        })?;
        self.durable(seq).await?;
        Ok(answer)
    }

    /// Deletes the protector; publishes DELETED. Its outstanding permits become stale
    /// with it.
    pub async fn delete(&self, name: &str) -> Result<u64, Error> {
        let (revision, seq) = match self.map.entry(name.to_owned()) {
            MapEntry::Vacant(_) => return Err(Error::not_found(name)),
            MapEntry::Occupied(e) => {
                let deleted: EventFn<'_> = Box::new(|_| {
                    Event::Deleted(v1::Deleted {
                        name: name.to_owned(),
                    })
                });
                let committed = self.hub.commit(name, vec![deleted], self.delete_record(name))?;
                e.remove();
                self.index_remove(name);
                self.count.fetch_sub(1, Ordering::AcqRel);
                (committed.revision, committed.seq)
            }
        };
        self.durable(seq).await?;
        Ok(revision)
    }

    /// One protector as it is now.
    pub fn get(&self, name: &str) -> Result<View, Error> {
        self.map
            .get(name)
            .map(|e| view(name, &e))
            .ok_or_else(|| Error::not_found(name))
    }

    /// A page of at most `page_size` protectors whose names start with `prefix` and sort
    /// after `after`, in name order, and whether more follow.
    pub fn list(&self, prefix: &str, page_size: usize, after: Option<&str>) -> (Vec<View>, bool) {
        let names = self.names_from(prefix, after, page_size + 1);
        let more = names.len() > page_size;
        let page = names
            .iter()
            .take(page_size)
            .filter_map(|n| self.map.get(n.as_str()).map(|e| view(n, &e)))
            .collect();
        (page, more)
    }

    /// Up to `limit` names starting with `prefix` and sorting after `after`, in order:
    /// a range of the index, so a page costs its own size, not the fleet's.
    fn names_from(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<String> {
        let index = self.names.read().unwrap_or_else(|e| e.into_inner());
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        index
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|n| n.starts_with(prefix))
            .take(limit)
            .cloned()
            .collect()
    }

    fn index_insert(&self, name: &str) {
        self.names
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned());
    }

    fn index_remove(&self, name: &str) {
        self.names.write().unwrap_or_else(|e| e.into_inner()).remove(name);
    }

    fn reserve(&self) -> Result<(), Error> {
        let max = self.max_protectors;
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map(|_| ())
            .map_err(|_| Error::ResourceExhausted {
                limit: "max_protectors",
                description: format!("{max} protectors exist, the configured maximum"),
            })
    }

    /// Runs `f` on the entry under its guard with the current time, then notes the
    /// protector's next deadline for the scheduler.
    fn with_entry<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Entry, Time) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let mut entry = self.map.get_mut(name).ok_or_else(|| Error::not_found(name))?;
        // Read under the guard, so one protector's operations see time in order.
        let now = self.clock.now();
        let result = f(&mut entry, now);
        // Even after a failed commit the machine moved: its deadlines still count.
        if let Some(next) = entry.protector.next_deadline()
            && entry.scheduled.is_none_or(|s| next < s || s <= now)
        {
            entry.scheduled = Some(next);
            self.scheduler.schedule(next, name);
        }
        result
    }

    /// The events of the machine's changes, in order.
    fn events<'a>(&self, name: &'a str, changes: &[Change]) -> Vec<EventFn<'a>> {
        changes
            .iter()
            .map(|change| -> EventFn<'a> {
                let change = *change;
                Box::new(move |_| match change {
                    Change::Transition(t) => Event::StatusChanged(v1::StatusChanged {
                        name: name.to_owned(),
                        transition: Some(t.into()),
                    }),
                    Change::OverrideExpired { .. } => Event::OverrideChanged(v1::OverrideChanged {
                        name: name.to_owned(),
                        r#override: Some(convert::no_override()),
                        expired: true,
                    }),
                })
            })
            .collect()
    }

    /// Commits `first` then the events of `changes` for one operation on `entry`, storing
    /// its state now when anything is published or `keep` asks, else marking it for the
    /// batch flush.
    fn commit_changes<'a>(
        &self,
        name: &'a str,
        entry: &mut Entry,
        changes: &[Change],
        mut first: Vec<EventFn<'a>>,
        keep: Keep,
    ) -> Result<crate::watch::Committed, Error> {
        first.extend(self.events(name, changes));
        if first.is_empty() && keep != Keep::Now {
            if keep == Keep::Batched {
                self.mark_dirty(name, entry);
            }
            // Nothing to write, but the answer must not rest on a state a crash could
            // still take back: wait for this protector's last record too (at once, in
            // the common case where it is long on disk).
            return Ok(crate::watch::Committed {
                revision: self.hub.revision(),
                seq: self.store.as_ref().map(|_| entry.version).filter(|&v| v > 0),
            });
        }
        let published = !first.is_empty();
        let record = self.put_record(name, &entry.protector, entry.mod_revision);
        let committed = self.hub.commit(name, first, record)?;
        if published {
            entry.mod_revision = committed.revision;
        }
        if let Some(seq) = committed.seq {
            entry.version = seq;
            entry.dirty = false;
        }
        Ok(committed)
    }
}

fn view(name: &str, entry: &Entry) -> View {
    View {
        name: name.to_owned(),
        protector: entry.protector.clone(),
        mod_revision: entry.mod_revision,
    }
}

impl SnapshotSource for Registry {
    fn names(&self, filter: &Filter) -> Vec<String> {
        let mut names: Vec<String> = match filter {
            Filter::Names(names) => names
                .iter()
                .filter(|n| self.map.contains_key(n.as_str()))
                .cloned()
                .collect(),
            Filter::Prefix(prefix) => self.names_from(prefix, None, usize::MAX),
        };
        names.sort_unstable();
        names
    }

    fn snapshot(&self, name: &str) -> Option<v1::Protector> {
        self.get(name).ok().map(|v| v.to_proto())
    }
}
