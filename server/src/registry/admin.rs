//! What changes a protector besides its calls: creating it (EnsureProtector), the
//! operator's SetStatus, SetOverride and UpdatePolicy, and deleting it. Each runs under
//! the entry's guard (creation and deletion under the map's entry for the name), commits
//! through the sequencer, and answers once durable, as the module note says.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dashmap::mapref::entry::Entry as MapEntry;
use resilient_circuit_api::convert;
use resilient_circuit_api::v1::{self, watch_event::Event};
use resilient_circuit_breaker::{Change, Override, OverrideKind, Policy, Protector, Status, Transition};

use super::answers::{Ensured, View};
use super::creators::Creator;
use super::stats::{self, State};
use super::{Entry, Keep, Registry, view};
use crate::error::Error;
use crate::sequencer::EventFn;

impl Registry {
    /// Creates the protector if absent; never changes an existing one.
    pub async fn ensure(&self, name: &str, policy: Policy) -> Result<Ensured, Error> {
        self.ensure_as(name, policy, None).await
    }

    /// [`Registry::ensure`] on behalf of `creator`, who may have created at most
    /// `creator.max` protectors that exist (RESOURCE_EXHAUSTED past it); the protector
    /// records who created it.
    pub async fn ensure_as(
        &self,
        name: &str,
        policy: Policy,
        creator: Option<&Creator>,
    ) -> Result<Ensured, Error> {
        self.fenced()?;
        let (ensured, seq) = match self.map.entry(name.to_owned()) {
            // Answered once the existing state is durable, like every read.
            MapEntry::Occupied(e) => (
                Ensured {
                    view: view(name, e.get()),
                    created: false,
                    revision: self.sequencer.revision(),
                },
                self.stored(e.get().version),
            ),
            MapEntry::Vacant(slot) => {
                self.reserve()?;
                let key = creator.map(|c| Arc::clone(&c.key));
                let history_size = policy.rules().history_size;
                self.reserve_history(0, history_size).inspect_err(|_| {
                    self.count.fetch_sub(1, Ordering::AcqRel);
                })?;
                if let Some(creator) = creator {
                    self.creators.reserve(creator).inspect_err(|_| {
                        self.count.fetch_sub(1, Ordering::AcqRel);
                        let _ = self.reserve_history(history_size, 0);
                    })?;
                }
                let protector = Protector::new(policy);
                let created: EventFn<'_> = Box::new(|rev| {
                    let mut created = convert::protector(name, &protector, rev);
                    created.policy_revision = rev;
                    Event::Created(created)
                });
                let committed = self
                    .sequencer
                    .commit(
                        name,
                        vec![created],
                        self.put_record(name, &protector, key.as_deref(), 0, 0),
                    )
                    .inspect_err(|_| {
                        self.count.fetch_sub(1, Ordering::AcqRel);
                        self.creators.remove(key.as_deref());
                        let _ = self.reserve_history(history_size, 0);
                    })?;
                let stats = stats::Stats::new(State::of_protector(&protector), self.clock.now());
                let entry = slot.insert(Entry {
                    protector,
                    mod_revision: committed.revision,
                    scheduled: None,
                    version: committed.seq.unwrap_or(0),
                    dirty: false,
                    creator: key,
                    stats,
                    policy_revision: committed.revision,
                    history: Entry::history_for(&policy),
                    latest: std::time::Duration::ZERO,
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
            self.reserve_history(entry.history_reserved(), policy.rules().history_size)?;
            entry.resize_history(&policy);
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
            // The events are the expiries due, POLICY_UPDATED, then what the new policy
            // changed at once, with consecutive revisions.
            entry.policy_revision = committed.revision - after.len() as u64;
            Ok(((view(name, entry), committed.revision), committed.seq))
        })?;
        self.durable(seq).await?;
        Ok(answer)
    }

    /// Deletes the protector; publishes DELETED. Its outstanding permits become stale
    /// with it.
    pub async fn delete(&self, name: &str) -> Result<u64, Error> {
        self.fenced()?;
        let (revision, seq) = match self.map.entry(name.to_owned()) {
            MapEntry::Vacant(_) => return Err(Error::not_found(name)),
            MapEntry::Occupied(e) => {
                let deleted: EventFn<'_> = Box::new(|_| {
                    Event::Deleted(v1::Deleted {
                        name: name.to_owned(),
                    })
                });
                let committed = self
                    .sequencer
                    .commit(name, vec![deleted], self.delete_record(name))?;
                self.forget(e.get());
                let (_, entry) = e.remove_entry();
                self.index_remove(name);
                self.count.fetch_sub(1, Ordering::AcqRel);
                self.creators.remove(entry.creator.as_deref());
                let _ = self.reserve_history(entry.history_reserved(), 0);
                (committed.revision, committed.seq)
            }
        };
        self.durable(seq).await?;
        Ok(revision)
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
}
