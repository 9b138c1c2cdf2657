//! The map of protectors: the only state the hot path touches.
//!
//! Design note. `DashMap<String, Entry>`: a protector's entry guard is the only lock an
//! Acquire or Report takes. Inside it, synchronously, the daemon reads the clock (or
//! takes the reading a Session shares among the requests it read together, never earlier
//! than the protector's latest instant), runs the pure status machine, commits each
//! resulting change through the [`Sequencer`] (which assigns its revision and, with a
//! store, journals the protector's new state in the same step) and notes the
//! protector's next deadline for the [`Scheduler`]. The guard is released before
//! anything is awaited: an operation that must be durable returns the journal sequence
//! number it waits for after the guard is gone. The registry is what services see: it
//! answers with [`Registry::revision`] and opens streams with [`Registry::watch`],
//! serving their snapshots itself.
//!
//! Lock order is entry guard, then the sequencer's mutex (and the journal's buffer inside
//! it), then the name index (create and delete only), then the scheduler's mutex; none of
//! those ever calls back into the map. The dirty list is taken alone, under the guard or
//! not. The journal's writer thread takes the sequencer's mutex to deliver what became
//! durable, holding nothing else; a Watch stream takes it only to subscribe, and reads
//! entries for its snapshot after releasing it.
//!
//! Fields of `Entry`:
//! - `protector`: the status machine's whole state.
//! - `mod_revision`: the revision of this protector's last change, so a snapshot says
//!   which changes it already reflects.
//! - `scheduled`: the deadline the scheduler holds for it, if any, so a deadline is
//!   queued again only when it moves earlier (one heap entry per protector, not per call).
//! - `version`: the journal sequence number of its last stored state (persist.rs).
//! - `dirty`: state changed since it was last stored, waiting for the batch flush.
//! - `creator`: the identity that created it, if any (`creators.rs`), stored with
//!   every state of it.
//! - `stats`: what the metrics count beyond the machine's counters (`stats.rs`).
//! - `policy_revision`: the revision at which its policy was last set (creation,
//!   UpdatePolicy), stored with every state of it and sent on every AcquireResponse.
//! - `history`: with `history_size` > 0, its recent accepted outcomes for a what-if
//!   (`history.rs`); boxed, so a protector without one pays a word.
//! - `latest`: the latest instant an operation on it was decided at. An operation given
//!   an older reading (a Session's, taken before the guard) is decided at this one, so
//!   one protector's time never goes back.

mod admin;
mod answers;
mod batch;
mod creators;
mod history;
mod persist;
mod read;
mod release;
mod replica;
mod simulate;
mod stats;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use resilient_circuit_api::convert;
use resilient_circuit_api::v1::{self, watch_event::Event};
use resilient_circuit_breaker::{Change, Decision, DecisionReason, Outcome, Permit, Protector, Time};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::error::Error;
use crate::fence::Fence;
use crate::scheduler::Scheduler;
use crate::sequencer::{Committed, EventFn, Sequencer};
use crate::store::Journal;
use crate::watch::Watchers;

pub use answers::{Acquired, BatchReported, Decided, Ensured, Reported, Simulated, View};
pub use creators::Creator;
pub use stats::{REJECTIONS, Sample, State, Totals, TransitionKind, reason_label, status_label};

struct Entry {
    protector: Protector,
    mod_revision: u64,
    scheduled: Option<Time>,
    version: u64,
    dirty: bool,
    creator: Option<Arc<str>>,
    stats: stats::Stats,
    policy_revision: u64,
    history: Option<Box<resilient_circuit_breaker::History>>,
    latest: Time,
}

pub use crate::config::DEFAULT_MAX_HISTORY_ENTRIES;

/// The `version` of an entry whose last change could not be journaled: its state is
/// shown to nobody (see [`Registry::durable`](persist.rs)).
const NEVER_DURABLE: u64 = u64::MAX;

/// How an operation's state change must be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Nothing changed.
    Nothing,
    /// Written by the next batch flush (outcomes in CLOSED, counters).
    Batched,
    /// Durable before the answer (transitions, overrides, policies).
    Now,
    /// Durable before the answer; unless something was published, a record of the one
    /// permit, whose size does not grow with the permits in flight.
    Trial(TrialStep),
}

/// The trial permit an operation handed out or took back, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TrialStep {
    at: Time,
    issued: Option<(u64, Time)>,
    released: Option<u64>,
}

/// Every protector of the daemon.
pub struct Registry {
    /// Hashed with foldhash, seeded per process: a name is hashed on every Acquire and
    /// Report, and SipHash (the default) cost five times as much for a short name.
    map: DashMap<String, Entry, foldhash::fast::RandomState>,
    /// Protectors counted against `max_protectors` (reserved before insertion).
    count: AtomicUsize,
    max_protectors: usize,
    sequencer: Arc<Sequencer>,
    watchers: Watchers,
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
    /// A replicated leader's lease: past it, nothing is decided (UNAVAILABLE).
    fence: Option<Arc<Fence>>,
    /// Existing protectors per creating identity.
    creators: creators::Creators,
    /// What deleted protectors had counted, so daemon-wide counters never go down.
    deleted_totals: Mutex<Totals>,
    /// History entries reserved by every protector's policy (`history.rs`).
    history_entries: AtomicUsize,
    max_history_entries: usize,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("protectors", &self.len())
            .field("sequencer", &self.sequencer)
            .field("watchers", &self.watchers.count())
            .field("durable", &self.store.is_some())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry committing through `sequencer`, journaling to `store` if
    /// given, and serving `watchers`.
    pub fn new(
        max_protectors: usize,
        sequencer: Arc<Sequencer>,
        watchers: Watchers,
        clock: Clock,
        store: Option<Arc<Journal>>,
    ) -> Registry {
        Registry {
            map: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            count: AtomicUsize::new(0),
            max_protectors,
            sequencer,
            watchers,
            scheduler: Scheduler::default(),
            clock,
            store,
            dirty: Mutex::new(Vec::new()),
            names: RwLock::new(BTreeSet::new()),
            fence: None,
            creators: creators::Creators::default(),
            deleted_totals: Mutex::new(Totals::default()),
            history_entries: AtomicUsize::new(0),
            max_history_entries: DEFAULT_MAX_HISTORY_ENTRIES,
        }
    }

    /// An empty registry in memory with `config`'s limits, at revision 0 of epoch 1, with
    /// its own sequencer and watchers: for a daemon assembled in process (tests, fuzzing).
    pub fn in_memory(config: &crate::config::Config, shutdown: CancellationToken) -> Registry {
        let sequencer = Arc::new(Sequencer::new(&config.watch, 0, 1, false));
        let watchers = Watchers::new(config.limits.max_watchers, shutdown);
        Registry::new(
            config.limits.max_protectors,
            sequencer,
            watchers,
            Clock::new(),
            None,
        )
    }

    /// A registry that decides only while `fence` is valid (a replicated leader's).
    pub fn with_fence(mut self, fence: Arc<Fence>) -> Registry {
        self.fence = Some(fence);
        self
    }

    /// UNAVAILABLE once a leader's lease may have passed to another replica.
    fn fenced(&self) -> Result<(), Error> {
        match &self.fence {
            Some(fence) if !fence.is_valid() => Err(Error::NotLeading),
            _ => Ok(()),
        }
    }

    /// The clock this registry decides with.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The open Watch streams (their count, the RESYNCs sent).
    pub fn watchers(&self) -> &Watchers {
        &self.watchers
    }

    /// The journal, unless the registry runs in memory or follows.
    pub fn journal(&self) -> Option<&Arc<Journal>> {
        self.store.as_ref()
    }

    /// How many protectors exist.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether no protector exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The revision of the latest change watchers have heard of (with a store: the
    /// latest durable one). An answer that reflects no change of its own carries it.
    pub fn revision(&self) -> u64 {
        self.sequencer.revision()
    }

    /// The epoch of this history of revisions (see `Synced.epoch`).
    pub fn epoch(&self) -> u64 {
        self.sequencer.epoch()
    }

    /// The scheduler task: applies each protector's expiries at their instants, until
    /// `shutdown`.
    pub async fn run_scheduler(self: Arc<Self>, shutdown: CancellationToken) {
        self.scheduler
            .run(&self.clock, shutdown, |name| {
                // NotFound: deleted since; nothing to do.
                let _ = self.tick(name);
            })
            .await;
    }

    /// How many existing protectors the identity `key` created.
    pub fn created_by(&self, key: &str) -> usize {
        self.creators.count(key)
    }

    /// May a call protected by `name` go ahead?
    pub async fn acquire(&self, name: &str) -> Result<Acquired, Error> {
        let decided = self.decide_acquire(name, None)?;
        // Dropped before the answer leaves (the client gave up): the trial goes back.
        let unanswered = release::Unanswered::new(self, name, &decided.value.decision);
        self.durable(decided.seq).await?;
        unanswered.answered();
        Ok(decided.value)
    }

    /// The decision of an Acquire, taken under the entry's guard; its answer may leave
    /// once [`is_durable`](Self::is_durable) says so, or after [`acquired`](Self::acquired). The
    /// Session answers an Acquire whose state is already durable (in memory, always)
    /// without building a future for it. `at` is a reading of [`clock`](Self::clock)
    /// taken before the guard (a Session shares one among the requests it read together),
    /// or `None` to read the clock under the guard; either way the protector's time never
    /// goes back (the private `with_entry_at` raises an older reading to its latest).
    pub fn decide_acquire(&self, name: &str, at: Option<Time>) -> Result<Decided<Acquired>, Error> {
        let (acquired, seq) = self.with_entry_at(name, at, |entry, now| {
            let result = entry.protector.acquire(now);
            if let Some(reason) = result.would_reject {
                entry.stats.would_reject(reason);
            }
            let keep = match result.decision {
                Decision::Admitted {
                    reason: DecisionReason::Trial,
                    permit,
                } => Keep::Trial(TrialStep {
                    at: now,
                    issued: Some((permit.id, permit.expires_at.unwrap_or(now))),
                    released: None,
                }),
                Decision::Rejected { reason, .. } => {
                    entry.stats.rejected(reason);
                    Keep::Batched
                }
                Decision::Admitted { .. } => Keep::Batched,
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
                    would_reject: result.would_reject.is_some(),
                    policy_revision: entry.policy_revision,
                },
                committed.seq,
            ))
        })?;
        Ok(Decided { value: acquired, seq })
    }

    /// Waits until a decided Acquire may be answered, in a future of its own. Armed at
    /// once: dropped before the answer leaves, polled or not, it gives a trial permit back.
    pub fn acquired<N>(
        self: Arc<Self>,
        name: N,
        decided: Decided<Acquired>,
    ) -> impl Future<Output = Result<Acquired, Error>> + Send + 'static
    where
        N: std::ops::Deref<Target = str> + Send + 'static,
    {
        let unanswered = release::Unanswered::new(self, name, &decided.value.decision);
        async move {
            unanswered.registry().durable(decided.seq).await?;
            unanswered.answered();
            Ok(decided.value)
        }
    }

    /// Records the outcome of a call admitted with `permit`.
    pub async fn report(&self, name: &str, permit: Permit, outcome: Outcome) -> Result<Reported, Error> {
        self.report_timed(name, permit, outcome, None).await
    }

    /// Records the outcome of a call admitted with `permit`, with how long it took (for
    /// the slow-call rule; `None` is never slow).
    pub async fn report_timed(
        &self,
        name: &str,
        permit: Permit,
        outcome: Outcome,
        duration: Option<Duration>,
    ) -> Result<Reported, Error> {
        let decided = self.decide_report(name, permit, outcome, duration, None)?;
        self.durable(decided.seq).await?;
        Ok(decided.value)
    }

    /// [`report_timed`](Self::report_timed) under the entry's guard, without the wait
    /// for durability, at `at` (as [`decide_acquire`](Self::decide_acquire)).
    pub fn decide_report(
        &self,
        name: &str,
        permit: Permit,
        outcome: Outcome,
        duration: Option<Duration>,
        at: Option<Time>,
    ) -> Result<Decided<Reported>, Error> {
        let (reported, seq) = self.with_entry_at(name, at, |entry, now| {
            let result = entry.protector.report_timed(permit, outcome, duration, now);
            if result.accepted {
                entry.note(now, outcome, duration);
            }
            let keep = if result.accepted && permit.is_trial() {
                Keep::Trial(TrialStep {
                    at: now,
                    issued: None,
                    released: Some(permit.id),
                })
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
        Ok(Decided { value: reported, seq })
    }

    /// Waits until a decided Report may be answered, in a future of its own.
    pub async fn reported(self: Arc<Self>, decided: Decided<Reported>) -> Result<Reported, Error> {
        self.durable(decided.seq).await?;
        Ok(decided.value)
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

    /// Runs `f` on the entry under its guard with the current time, then notes the
    /// protector's next deadline for the scheduler.
    fn with_entry<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Entry, Time) -> Result<R, Error>,
    ) -> Result<R, Error> {
        self.with_entry_at(name, None, f)
    }

    /// [`with_entry`](Self::with_entry) at `at`, a reading of the clock taken before the
    /// guard, or `None` to read it under the guard. Either way `f` gets no earlier
    /// instant than the entry's `latest`: a reading taken before the guard may be older
    /// than an operation another thread decided meanwhile, and the machine must not see
    /// one protector's time go back (a transition stamped before the one it follows).
    fn with_entry_at<R>(
        &self,
        name: &str,
        at: Option<Time>,
        f: impl FnOnce(&mut Entry, Time) -> Result<R, Error>,
    ) -> Result<R, Error> {
        self.fenced()?;
        let mut entry = self.map.get_mut(name).ok_or_else(|| Error::not_found(name))?;
        // Read under the guard, or shared and raised to the entry's latest: either way
        // one protector's operations see time in order.
        let now = match at {
            Some(at) => at,
            None => self.clock.now(),
        }
        .max(entry.latest);
        entry.latest = now;
        let result = f(&mut entry, now);
        // An override set or ended moves the state the metrics time.
        let entry = &mut *entry;
        entry.stats.settle(&entry.protector, now);
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
    ) -> Result<Committed, Error> {
        // Most decisions change nothing: no events to build, no transitions to count.
        if !changes.is_empty() {
            first.extend(self.events(name, changes));
            let overridden = entry.protector.override_state().map(|o| o.kind);
            for change in changes {
                if let Change::Transition(t) = change {
                    entry.stats.transition(t, overridden);
                }
            }
        }
        if first.is_empty() && matches!(keep, Keep::Nothing | Keep::Batched) {
            if keep == Keep::Batched {
                self.mark_dirty(name, entry);
            }
            // Nothing to write, but the answer must not rest on a state a crash could
            // still take back: wait for this protector's last record too (at once, in
            // the common case where it is long on disk).
            return Ok(Committed {
                revision: self.sequencer.revision(),
                seq: self.stored(entry.version),
            });
        }
        let published = !first.is_empty();
        let record = match keep {
            Keep::Trial(step) if !published => self.trial_record(
                name,
                &entry.protector,
                entry.creator.as_deref(),
                (entry.mod_revision, entry.policy_revision),
                step,
            ),
            _ => self.put_record(
                name,
                &entry.protector,
                entry.creator.as_deref(),
                entry.mod_revision,
                entry.policy_revision,
            ),
        };
        let committed = match self.sequencer.commit(name, first, record) {
            Ok(committed) => committed,
            Err(e) => {
                // The machine already moved in memory, and its record will never be
                // durable (the journal failed or closed): nothing may answer from this
                // entry again, until a restart reads back what the journal holds.
                entry.version = NEVER_DURABLE;
                return Err(e.into());
            }
        };
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
        policy_revision: entry.policy_revision,
        history_len: entry.history.as_ref().map_or(0, |h| h.len() as u32),
    }
}
