//! The registry's side of durability: the records it writes, the batch flush, the
//! snapshot it hands the store, and recovery.
//!
//! A record is the whole state of one protector, versioned by the journal sequence
//! number it was written at (see `store`), or, for a trial permit handed out or taken
//! back with nothing published, that state without the permits in flight plus the one
//! permit (so bytes per trial do not grow with the permits outstanding). An operation
//! that publishes a change, hands out or takes back a trial permit writes its record
//! inside the entry guard (through the sequencer, so revision order and journal order
//! agree) and waits for it after the guard is released. Anything else only raises the
//! entry's `dirty` flag; the flush task writes those entries every `flush_interval`
//! without waiting.
//!
//! Why a trial record can leave the permits out: every change to the permits in flight
//! is journaled at once (a permit handed out or reported here, a transition clearing
//! them as a whole state, a restart's capped expiries in `restore`), except expiries,
//! which the record's instant implies: the operation applied every expiry due by then.

use std::sync::Arc;

use resilient_circuit_breaker::Protector;

use super::{Entry, Registry, TrialStep};
use crate::error::Error;
use crate::sequencer::{Published, RecordFn};
use crate::store::record::{
    Body, LoggedEvent, Record, Snapshot, StoredProtector, StoredTrial, TrialChange, nanos,
};
use crate::store::{self, Journal, StoreError};

/// The revision of an operation's last event.
fn last_revision(made: &[Arc<Published>]) -> Option<u64> {
    made.last().map(|p| p.event.revision)
}

/// The revision of an operation's CREATED or POLICY_UPDATED event: when its policy was set.
fn policy_set(made: &[Arc<Published>]) -> Option<u64> {
    use resilient_circuit_api::v1::watch_event::Event;
    made.iter()
        .find(|p| matches!(p.event.event, Some(Event::Created(_) | Event::PolicyUpdated(_))))
        .map(|p| p.event.revision)
}

/// An operation's events as a replicated journal logs them beside its record.
fn logged(made: &[Arc<Published>]) -> Vec<LoggedEvent> {
    made.iter()
        .map(|p| LoggedEvent {
            name: p.name.clone(),
            event: Some(p.event.clone()),
        })
        .collect()
}

impl Registry {
    /// The record storing `protector`'s state; its mod_revision is the revision of the
    /// operation's last event, or `keep_revision` when it published none.
    /// Its policy_revision is that of the operation's CREATED or POLICY_UPDATED event, or
    /// `policy_revision` when it published neither.
    pub(super) fn put_record<'a>(
        &'a self,
        name: &'a str,
        protector: &'a Protector,
        creator: Option<&'a str>,
        keep_revision: u64,
        policy_revision: u64,
    ) -> Option<RecordFn<'a>> {
        let journal = self.store.as_ref()?;
        Some(Box::new(move |made: &[Arc<Published>]| {
            let mod_revision = last_revision(made).unwrap_or(keep_revision);
            let policy_revision = policy_set(made).unwrap_or(policy_revision);
            journal.append_logged(
                |seq| Record {
                    seq,
                    revision: mod_revision,
                    body: Some(Body::Put(
                        StoredProtector::new(name, protector, mod_revision, seq)
                            .created_by(creator)
                            .policy_set_at(policy_revision),
                    )),
                },
                || logged(made),
            )
        }))
    }

    /// The record of a trial permit handed out or taken back with nothing published.
    pub(super) fn trial_record<'a>(
        &'a self,
        name: &'a str,
        protector: &'a Protector,
        creator: Option<&'a str>,
        (mod_revision, policy_revision): (u64, u64),
        step: TrialStep,
    ) -> Option<RecordFn<'a>> {
        let journal = self.store.as_ref()?;
        Some(Box::new(move |_| {
            journal.append(|seq| Record {
                seq,
                revision: mod_revision,
                body: Some(Body::Trial(TrialChange {
                    state: Some(
                        StoredProtector::without_trials(name, protector, mod_revision, seq)
                            .created_by(creator)
                            .policy_set_at(policy_revision),
                    ),
                    at: nanos(step.at),
                    issued: step.issued.map(|(id, at)| StoredTrial {
                        id,
                        expires_at: nanos(at),
                    }),
                    released: step.released,
                })),
            })
        }))
    }

    /// The record of `name`'s deletion.
    pub(super) fn delete_record<'a>(&'a self, name: &'a str) -> Option<RecordFn<'a>> {
        let journal = self.store.as_ref()?;
        Some(Box::new(move |made: &[Arc<Published>]| {
            journal.append_logged(
                |seq| Record {
                    seq,
                    revision: last_revision(made).unwrap_or_default(),
                    body: Some(Body::Delete(name.to_owned())),
                },
                || logged(made),
            )
        }))
    }

    /// Marks the entry for the next batch flush (once per flush, however many calls).
    #[inline]
    pub(super) fn mark_dirty(&self, name: &str, entry: &mut Entry) {
        if self.store.is_some() && !entry.dirty {
            self.list_dirty(name, entry);
        }
    }

    /// The rare part of [`mark_dirty`](Self::mark_dirty), out of line so that the check
    /// made on every decision stays small enough to inline.
    #[inline(never)]
    fn list_dirty(&self, name: &str, entry: &mut Entry) {
        entry.dirty = true;
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.to_owned());
    }

    /// Whether `decided` may be answered now, without [`durable`](Self::durable)'s wait:
    /// nothing to wait for (in memory), or its record already on disk. False also when it
    /// can never be (the journal failed): the wait then says why.
    pub fn is_durable<T>(&self, decided: &super::Decided<T>) -> bool {
        match (&self.store, decided.seq) {
            (Some(_), Some(super::NEVER_DURABLE)) => false,
            (Some(journal), Some(seq)) => journal.is_durable(seq),
            _ => true,
        }
    }

    /// Waits until the journal holds `seq` (nothing to wait for in memory); a state that
    /// can never be durable is UNAVAILABLE at once.
    pub(super) async fn durable(&self, seq: Option<u64>) -> Result<(), Error> {
        match (&self.store, seq) {
            (Some(_), Some(super::NEVER_DURABLE)) => Err(Error::Unavailable),
            (Some(journal), Some(seq)) => Ok(journal.durable(seq).await?),
            _ => Ok(()),
        }
    }

    /// Writes every entry marked dirty; returns how many. Does not wait for the fsync.
    pub fn flush_dirty(&self) -> Result<usize, Error> {
        let Some(journal) = &self.store else {
            return Ok(0);
        };
        let names = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|e| e.into_inner()));
        let mut written = 0;
        for name in names {
            if let Some(mut entry) = self.map.get_mut(name.as_str())
                && entry.dirty
            {
                let mod_revision = entry.mod_revision;
                let seq = journal.append(|seq| Record {
                    seq,
                    revision: mod_revision,
                    body: Some(Body::Put(
                        StoredProtector::new(&name, &entry.protector, mod_revision, seq)
                            .created_by(entry.creator.as_deref())
                            .policy_set_at(entry.policy_revision),
                    )),
                })?;
                entry.version = seq;
                entry.dirty = false;
                written += 1;
            }
        }
        Ok(written)
    }

    /// A replicated leader's snapshot: every record up to `last_seq` is durable (and its
    /// events delivered, so `revision` covers them) before the states are read, so the
    /// log up to `last_seq` may go once the snapshot is stored; states read later may be
    /// newer, and their records follow in the log, which replay applies by version.
    async fn compact_remote(self: &Arc<Self>, journal: &Arc<Journal>) -> Result<(), StoreError> {
        let last_seq = journal.last_seq();
        journal.durable(last_seq).await?;
        let revision = self.sequencer.revision();
        let mut snapshot = self.snapshot(journal, 0);
        snapshot.last_seq = last_seq;
        snapshot.revision = revision;
        tracing::info!(
            protectors = snapshot.protectors.len(),
            last_seq,
            "snapshot handed to the replicated log"
        );
        journal.hand_snapshot(snapshot)
    }

    /// A snapshot of every protector for segments from `first_segment` on: each state is
    /// versioned at the journal's sequence number when it was read, under its guard, so
    /// any later record of it replays over it and any earlier one does not.
    pub fn snapshot(&self, journal: &Journal, first_segment: u64) -> Snapshot {
        let names: Vec<String> = self.map.iter().map(|e| e.key().clone()).collect();
        let mut protectors = Vec::with_capacity(names.len());
        let mut revision = self.sequencer.revision();
        for name in names {
            if let Some(entry) = self.map.get(name.as_str()) {
                let version = journal.last_seq();
                revision = revision.max(entry.mod_revision);
                protectors.push(
                    StoredProtector::new(&name, &entry.protector, entry.mod_revision, version)
                        .created_by(entry.creator.as_deref())
                        .policy_set_at(entry.policy_revision),
                );
            }
        }
        Snapshot {
            revision,
            first_segment,
            protectors,
            last_seq: journal.last_seq(),
        }
    }

    /// Loads what recovery found: every protector back in the map, its deadlines capped
    /// at now plus their configured length (a wall clock that went backwards never
    /// lengthens a cooldown), and scheduled. A record that does not make a valid
    /// protector refuses the start.
    pub fn restore(&self, protectors: Vec<StoredProtector>) -> Result<(), String> {
        let now = self.clock.now();
        for stored in protectors {
            let mut protector = stored
                .protector()
                .map_err(|e| format!("the stored state of protector {:?} is invalid: {e}", stored.name))?;
            let rebased = protector.rebase(now);
            let next = protector.next_deadline();
            // Histories are memory only: a restored protector starts an empty one.
            let history = Entry::history_for(protector.policy());
            self.count_history(protector.policy().rules().history_size);
            self.map.insert(
                stored.name.clone(),
                Entry {
                    stats: super::stats::Stats::new(super::State::of_protector(&protector), now),
                    protector,
                    mod_revision: stored.mod_revision,
                    scheduled: next,
                    version: stored.version,
                    dirty: false,
                    creator: stored.creator.as_deref().map(Arc::from),
                    policy_revision: stored.policy_revision.unwrap_or_default(),
                    history,
                    latest: std::time::Duration::ZERO,
                },
            );
            self.creators.add(stored.creator.as_deref());
            if rebased && let Some(mut entry) = self.map.get_mut(stored.name.as_str()) {
                // Written now rather than batched: a trial record's replay relies on
                // the journal holding every change to the permits in flight.
                self.mark_dirty(&stored.name, &mut entry);
            }
            self.index_insert(&stored.name);
            if let Some(next) = next {
                self.scheduler.schedule(next, &stored.name);
            }
            self.count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        self.flush_dirty()
            .map_err(|e| format!("storing the protectors' capped deadlines: {e}"))?;
        Ok(())
    }

    /// The store's background work until `shutdown`: the batch flush every
    /// `flush_interval`, and a snapshot whenever the journal asks for one. On shutdown,
    /// a last flush; the caller then closes the journal.
    pub async fn run_store(
        self: Arc<Self>,
        flush_interval: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let Some(journal) = self.store.clone() else {
            return;
        };
        let mut tick = tokio::time::interval(flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = self.flush_dirty() {
                        tracing::error!(error = %e, "batch flush failed");
                    }
                }
                () = journal.compaction_due() => {
                    if let Err(e) = self.compact(&journal).await {
                        tracing::error!(error = %e, "snapshot failed; the journal keeps growing until one succeeds");
                    }
                }
            }
        }
        if let Err(e) = self.flush_dirty() {
            tracing::error!(error = %e, "final flush failed");
        }
    }

    async fn compact(self: &Arc<Self>, journal: &Arc<Journal>) -> Result<(), StoreError> {
        if journal.is_remote() {
            return self.compact_remote(journal).await;
        }
        let rotating = Arc::clone(journal);
        let segment = tokio::task::spawn_blocking(move || rotating.rotate())
            .await
            .map_err(|_| StoreError::Failed)??;
        let snapshot = self.snapshot(journal, segment);
        let dir = journal.dir().to_owned();
        let count = snapshot.protectors.len();
        tokio::task::spawn_blocking(move || store::write_snapshot(&dir, &snapshot))
            .await
            .map_err(|_| StoreError::Failed)??;
        tracing::info!(
            protectors = count,
            segment,
            "snapshot written; older journal segments removed"
        );
        Ok(())
    }
}
