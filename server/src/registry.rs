//! The map of protectors: the only state the hot path touches.
//!
//! Design note. `DashMap<String, Entry>`: a protector's entry guard is the only lock an
//! Acquire or Report takes. Inside it, synchronously, the daemon reads the clock, runs
//! the pure status machine, publishes each resulting change through the [`WatchHub`]
//! (which assigns its revision) and notes the protector's next deadline for the
//! [`Scheduler`]. No guard is ever held across an `.await`: nothing here is async.
//!
//! Lock order is entry guard, then the hub's mutex, then the scheduler's mutex; neither
//! of the latter ever calls back into the map, so there is no cycle.
//!
//! Fields of [`Entry`]:
//! - `protector`: the status machine's whole state.
//! - `mod_revision`: the revision of this protector's last published change, so a
//!   snapshot says which changes it already reflects.
//! - `scheduled`: the deadline the scheduler holds for it, if any, so a deadline is
//!   queued again only when it moves earlier (one heap entry per protector, not per call).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use resilient_circuit_api::breaker::{
    Change, Decision, Outcome, Override, OverrideKind, Permit, Policy, Protector, Status, Time, Transition,
};
use resilient_circuit_api::convert;
use resilient_circuit_api::v1::{self, watch_event::Event};

use crate::clock::Clock;
use crate::error::Error;
use crate::scheduler::Scheduler;
use crate::watch::{Filter, SnapshotSource, WatchHub};

struct Entry {
    protector: Protector,
    mod_revision: u64,
    scheduled: Option<Time>,
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
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("protectors", &self.len())
            .field("hub", &self.hub)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry publishing to `hub`.
    pub fn new(max_protectors: usize, hub: Arc<WatchHub>, clock: Clock) -> Registry {
        Registry {
            map: DashMap::new(),
            count: AtomicUsize::new(0),
            max_protectors,
            hub,
            scheduler: Scheduler::default(),
            clock,
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
    pub fn ensure(&self, name: &str, policy: Policy) -> Result<Ensured, Error> {
        match self.map.entry(name.to_owned()) {
            MapEntry::Occupied(e) => Ok(Ensured {
                view: view(name, e.get()),
                created: false,
                revision: self.hub.revision(),
            }),
            MapEntry::Vacant(slot) => {
                self.reserve()?;
                let protector = Protector::new(policy);
                let revision = self.hub.publish(name, |rev| {
                    Event::Created(convert::protector(name, &protector, rev))
                });
                let entry = slot.insert(Entry {
                    protector,
                    mod_revision: revision,
                    scheduled: None,
                });
                Ok(Ensured {
                    view: view(name, &entry),
                    created: true,
                    revision,
                })
            }
        }
    }

    /// May a call protected by `name` go ahead?
    pub fn acquire(&self, name: &str) -> Result<Acquired, Error> {
        self.with_entry(name, |entry, now| {
            let result = entry.protector.acquire(now);
            let revision = self.publish_changes(name, entry, &result.changes);
            Acquired {
                decision: result.decision,
                status: entry.protector.status(),
                revision,
            }
        })
    }

    /// Records the outcome of a call admitted with `permit`.
    pub fn report(&self, name: &str, permit: Permit, outcome: Outcome) -> Result<Reported, Error> {
        self.with_entry(name, |entry, now| {
            let result = entry.protector.report(permit, outcome, now);
            // With a transition, this is exactly its revision: a client can tell the
            // event it will hear on Watch from this answer.
            let revision = self.publish_changes(name, entry, &result.changes);
            Reported {
                accepted: result.accepted,
                status: entry.protector.status(),
                transition: result.transition,
                revision,
            }
        })
    }

    /// Applies the expiries due now (the scheduler's call).
    pub fn tick(&self, name: &str) -> Result<(), Error> {
        self.with_entry(name, |entry, now| {
            entry.scheduled = None;
            let changes = entry.protector.tick(now);
            self.publish_changes(name, entry, &changes);
        })
    }

    /// An operator's SetStatus; returns the protector, the manual transition and its
    /// revision.
    pub fn set_status(
        &self,
        name: &str,
        status: Status,
        open_for: Option<Duration>,
    ) -> Result<(View, Transition, u64), Error> {
        self.with_entry(name, |entry, now| {
            let changes = entry.protector.set_status(status, open_for, now);
            let revision = self.publish_changes(name, entry, &changes);
            match changes.last() {
                Some(Change::Transition(t)) => Ok((view(name, entry), *t, revision)),
                _ => Err(Error::Internal("SetStatus performed no transition".into())),
            }
        })?
    }

    /// Sets (`Some`) or clears (`None`) the override; publishes OVERRIDE_CHANGED after
    /// any expiry that came due first.
    pub fn set_override(
        &self,
        name: &str,
        kind: Option<OverrideKind>,
        expires_after: Option<Duration>,
    ) -> Result<(View, u64), Error> {
        self.with_entry(name, |entry, now| {
            let new = kind.map(|kind| Override {
                kind,
                expires_at: expires_after.map(|d| now.saturating_add(d)),
            });
            let due = entry.protector.tick(now);
            self.publish_changes(name, entry, &due);
            let resumed = entry.protector.set_override(new, now);
            let revision = self.publish(name, entry, |_, entry| {
                Event::OverrideChanged(v1::OverrideChanged {
                    name: name.to_owned(),
                    r#override: Some(override_proto(entry.protector.override_state())),
                    expired: false,
                })
            });
            self.publish_changes(name, entry, &resumed);
            (view(name, entry), revision)
        })
    }

    /// Replaces the policy (the window starts anew); publishes POLICY_UPDATED.
    pub fn update_policy(&self, name: &str, policy: Policy) -> Result<(View, u64), Error> {
        self.with_entry(name, |entry, now| {
            let due = entry.protector.tick(now);
            self.publish_changes(name, entry, &due);
            let after = entry.protector.update_policy(policy, now);
            let revision = self.publish(name, entry, |_, _| {
                Event::PolicyUpdated(v1::PolicyUpdated {
                    name: name.to_owned(),
                    policy: Some((&policy).into()),
                })
            });
            self.publish_changes(name, entry, &after);
            (view(name, entry), revision)
        })
    }

    /// Deletes the protector; publishes DELETED. Its outstanding permits become stale
    /// with it.
    pub fn delete(&self, name: &str) -> Result<u64, Error> {
        match self.map.entry(name.to_owned()) {
            MapEntry::Vacant(_) => Err(Error::not_found(name)),
            MapEntry::Occupied(e) => {
                let revision = self.hub.publish(name, |_| {
                    Event::Deleted(v1::Deleted {
                        name: name.to_owned(),
                    })
                });
                e.remove();
                self.count.fetch_sub(1, Ordering::AcqRel);
                Ok(revision)
            }
        }
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
        let mut names: Vec<String> = self
            .map
            .iter()
            .filter(|e| e.key().starts_with(prefix) && after.is_none_or(|a| e.key().as_str() > a))
            .map(|e| e.key().clone())
            .collect();
        names.sort_unstable();
        let more = names.len() > page_size;
        let page = names
            .iter()
            .take(page_size)
            .filter_map(|n| self.map.get(n.as_str()).map(|e| view(n, &e)))
            .collect();
        (page, more)
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
    fn with_entry<R>(&self, name: &str, f: impl FnOnce(&mut Entry, Time) -> R) -> Result<R, Error> {
        let mut entry = self.map.get_mut(name).ok_or_else(|| Error::not_found(name))?;
        // Read under the guard, so one protector's operations see time in order.
        let now = self.clock.now();
        let result = f(&mut entry, now);
        if let Some(next) = entry.protector.next_deadline()
            && entry.scheduled.is_none_or(|s| next < s || s <= now)
        {
            entry.scheduled = Some(next);
            self.scheduler.schedule(next, name);
        }
        Ok(result)
    }

    /// Publishes one event about `name` and records its revision on the entry.
    fn publish(&self, name: &str, entry: &mut Entry, event: impl FnOnce(u64, &Entry) -> Event) -> u64 {
        let revision = self.hub.publish(name, |rev| event(rev, entry));
        entry.mod_revision = revision;
        revision
    }

    /// Publishes the machine's changes in order; returns the revision of the last one,
    /// or the current revision when there were none.
    fn publish_changes(&self, name: &str, entry: &mut Entry, changes: &[Change]) -> u64 {
        let mut revision = self.hub.revision();
        for change in changes {
            revision = self.publish(name, entry, |_, _| match *change {
                Change::Transition(t) => Event::StatusChanged(v1::StatusChanged {
                    name: name.to_owned(),
                    transition: Some(t.into()),
                }),
                Change::OverrideExpired { .. } => Event::OverrideChanged(v1::OverrideChanged {
                    name: name.to_owned(),
                    r#override: Some(convert::no_override()),
                    expired: true,
                }),
            });
        }
        revision
    }
}

fn view(name: &str, entry: &Entry) -> View {
    View {
        name: name.to_owned(),
        protector: entry.protector.clone(),
        mod_revision: entry.mod_revision,
    }
}

fn override_proto(o: Option<Override>) -> v1::Override {
    o.map_or_else(convert::no_override, Into::into)
}

impl SnapshotSource for Registry {
    fn names(&self, filter: &Filter) -> Vec<String> {
        let mut names: Vec<String> = match filter {
            Filter::Names(names) => names
                .iter()
                .filter(|n| self.map.contains_key(n.as_str()))
                .cloned()
                .collect(),
            Filter::Prefix(prefix) => self
                .map
                .iter()
                .filter(|e| e.key().starts_with(prefix.as_str()))
                .map(|e| e.key().clone())
                .collect(),
        };
        names.sort_unstable();
        names
    }

    fn snapshot(&self, name: &str) -> Option<v1::Protector> {
        self.get(name).ok().map(|v| v.to_proto())
    }
}
