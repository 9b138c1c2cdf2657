//! The sequencer: every change's daemon-wide revision, the bounded history of changes, and
//! their delivery to watchers in revision order, once durable.
//!
//! Design note. Every change (create, delete, transition, policy update, override) is
//! committed through [`Sequencer::commit`], which under one short mutex takes the next
//! revision for each event and, with a store, has the journal append the protector's
//! record in the same step, so revision order and journal order agree. Without a store a
//! change is delivered at once; with one it waits in `pending` until the journal says its
//! record is durable ([`Sequencer::deliver_through`]), so no watcher ever hears of a change
//! a crash could take back. Delivery appends the event to the bounded history (for
//! `start_revision` replay) and hands it to a `tokio::sync::broadcast` channel. Writers
//! never wait for watchers: a broadcast send never blocks, and the ring is shared, so an
//! idle watcher costs a receiver, not a buffer.
//!
//! The Watch streams that read from it are `watch.rs`; the sequencer knows neither them
//! nor the registry, so whoever holds a protector's entry guard may commit through it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use resilient_circuit_api::v1::{self, watch_event::Event};
use tokio::sync::broadcast;

use crate::config::WatchConfig;
use crate::store::{Journal, StoreError};

/// One delivered change: the protector's name (for filtering) and the event.
#[derive(Debug)]
pub struct Published {
    /// The protector the change concerns.
    pub name: String,
    /// The event as every watcher receives it.
    pub event: v1::WatchEvent,
}

/// A change's event, built once its revision is known.
pub type EventFn<'a> = Box<dyn FnOnce(u64) -> Event + 'a>;

/// Writes the record that makes a change durable, given the change's events (the last
/// one's revision is the record's; none when it published none); returns the journal's
/// sequence number.
pub type RecordFn<'a> = Box<dyn FnOnce(&[Arc<Published>]) -> Result<u64, StoreError> + 'a>;

/// What [`Sequencer::commit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The revision of the last event, or the delivered revision when there was none.
    pub revision: u64,
    /// The journal sequence number to wait for before acknowledging, if a record was
    /// written.
    pub seq: Option<u64>,
}

/// Where a new subscriber starts, decided under the same lock as its subscription.
#[derive(Debug)]
pub enum Start {
    /// Snapshot, then changes after `base`.
    Snapshot {
        /// The revision the subscription starts after.
        base: u64,
    },
    /// These changes, then SYNCED at `base`.
    Replay {
        /// The revision the subscription starts after.
        base: u64,
        /// The history after the requested revision that the subscriber wants.
        events: Vec<Arc<Published>>,
    },
    /// The start revision is not in the history: RESYNC, snapshot.
    Compacted {
        /// The revision the subscription starts after.
        base: u64,
    },
}

impl Start {
    /// The revision the subscription starts after.
    pub fn base(&self) -> u64 {
        match self {
            Start::Snapshot { base } | Start::Replay { base, .. } | Start::Compacted { base } => *base,
        }
    }
}

struct State {
    /// The last revision handed out.
    revision: u64,
    /// The last revision delivered to watchers (equal to `revision` without a store).
    delivered: u64,
    history: VecDeque<Arc<Published>>,
    /// With a store: changes waiting for their record to be durable, in revision order,
    /// each with the journal sequence number that makes it so.
    pending: VecDeque<(u64, Arc<Published>)>,
}

/// The daemon-wide revision, the history and the ordered delivery of changes.
pub struct Sequencer {
    state: Mutex<State>,
    /// Mirror of `state.delivered` for lock-free reads by responses.
    revision: AtomicU64,
    tx: broadcast::Sender<Arc<Published>>,
    /// The configured broadcast buffer (`watch.buffer`).
    buffer: usize,
    history_cap: usize,
    /// Whether changes wait for a store before delivery.
    durable: bool,
    /// This history of revisions (see `Synced.epoch`).
    epoch: u64,
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer")
            .field("revision", &self.revision())
            .field("epoch", &self.epoch)
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
}

impl Sequencer {
    /// A sequencer whose revision continues from `revision` in the history `epoch`, with
    /// `config`'s broadcast buffer and history length. With `durable`, committed changes
    /// wait for [`Sequencer::deliver_through`].
    pub fn new(config: &WatchConfig, revision: u64, epoch: u64, durable: bool) -> Sequencer {
        let (tx, _) = broadcast::channel(config.buffer.max(1));
        Sequencer {
            state: Mutex::new(State {
                revision,
                delivered: revision,
                history: VecDeque::new(),
                pending: VecDeque::new(),
            }),
            revision: AtomicU64::new(revision),
            tx,
            buffer: config.buffer.max(1),
            history_cap: config.history,
            durable,
            epoch,
        }
    }

    /// Has `journal` deliver, after each fsync, the changes it made durable. The journal
    /// holds the sequencer weakly, so neither keeps the other alive.
    pub fn deliver_on_durable(self: &Arc<Self>, journal: &Journal) {
        let delivering = Arc::downgrade(self);
        journal.set_on_durable(Box::new(move |seq| {
            if let Some(sequencer) = delivering.upgrade() {
                sequencer.deliver_through(seq);
            }
        }));
    }

    /// This daemon's epoch: the identity of its history of revisions.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// How many changes a watcher may fall behind before it lags (`watch.buffer`).
    pub fn buffer(&self) -> usize {
        self.buffer
    }

    /// The revision of the latest change delivered to watchers (with a store: the latest
    /// durable one).
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under this lock can leave the state half-updated, so a poisoned lock
        // is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Commits one operation's changes about `name`: takes the next revision for each
    /// event, then (with a store) has `record` write the protector's state with the last
    /// of them, all under one short lock, so revisions and the journal agree on order.
    /// Without a store each event is delivered at once; with one, the events wait until
    /// [`Sequencer::deliver_through`] hears their record is durable, so a watcher never
    /// sees a change a crash could take back. Never waits for a watcher.
    pub fn commit(
        &self,
        name: &str,
        events: Vec<EventFn<'_>>,
        record: Option<RecordFn<'_>>,
    ) -> Result<Committed, StoreError> {
        let mut state = self.lock();
        let mut made = Vec::with_capacity(events.len());
        for event in events {
            let revision = state.revision + 1;
            state.revision = revision;
            made.push(Arc::new(Published {
                name: name.to_owned(),
                event: v1::WatchEvent {
                    revision,
                    event: Some(event(revision)),
                },
            }));
        }
        let last = made.last().map(|p| p.event.revision);
        let seq = match (self.durable, record) {
            (true, Some(record)) => Some(record(&made)?),
            _ => None,
        };
        match seq {
            Some(seq) => state.pending.extend(made.into_iter().map(|p| (seq, p))),
            None => {
                for published in made {
                    self.deliver(&mut state, published);
                }
            }
        }
        Ok(Committed {
            revision: last.unwrap_or(state.delivered),
            seq,
        })
    }

    /// Delivers, in order, every pending change whose record is durable up to `seq`.
    pub fn deliver_through(&self, seq: u64) {
        let mut state = self.lock();
        while state.pending.front().is_some_and(|(s, _)| *s <= seq) {
            if let Some((_, published)) = state.pending.pop_front() {
                self.deliver(&mut state, published);
            }
        }
    }

    /// A replica's delivery of a change the leader made durable, with the leader's
    /// revision. A change at or below the delivered revision was delivered already (a
    /// replica that reloads its state replays the log from an earlier point) and is
    /// skipped, so a watcher never sees one twice.
    pub fn replicate(&self, published: Published) {
        let mut state = self.lock();
        let revision = published.event.revision;
        if revision <= state.delivered {
            return;
        }
        state.revision = state.revision.max(revision);
        self.deliver(&mut state, Arc::new(published));
    }

    /// A replica starting from a snapshot taken at `revision`: the changes before it are
    /// not in this history. If that skips revisions, the history is dropped, so a watcher
    /// resuming from before the gap resyncs instead of missing them.
    pub fn advance_to(&self, revision: u64) {
        let mut state = self.lock();
        if revision > state.delivered {
            state.history.clear();
            state.delivered = revision;
            state.revision = state.revision.max(revision);
            self.revision.store(revision, Ordering::Release);
        }
    }

    /// Forgets the changes still waiting for a durable record (a deposed leader: its
    /// journal will never make them durable); the next revision follows the delivered.
    pub fn abandon_pending(&self) {
        let mut state = self.lock();
        state.pending.clear();
        state.revision = state.delivered;
    }

    fn deliver(&self, state: &mut State, published: Arc<Published>) {
        if self.history_cap > 0 {
            if state.history.len() == self.history_cap {
                state.history.pop_front();
            }
            state.history.push_back(Arc::clone(&published));
        }
        state.delivered = published.event.revision;
        self.revision.store(state.delivered, Ordering::Release);
        // An error only means nobody is watching.
        let _ = self.tx.send(published);
    }

    /// A receiver of every change delivered from now on, and where its subscriber starts:
    /// from a snapshot (no `start_revision`), by replaying the history after
    /// `start_revision` (only the changes `wanted` keeps), or, when that revision is not
    /// in this history, with a resync.
    pub fn subscribe(
        &self,
        start_revision: Option<u64>,
        start_epoch: Option<u64>,
        wanted: impl Fn(&Published) -> bool,
    ) -> (broadcast::Receiver<Arc<Published>>, Start) {
        let state = self.lock();
        let rx = self.tx.subscribe();
        let base = state.delivered;
        let start = match start_revision {
            None => Start::Snapshot { base },
            // Another history: its revisions mean nothing here.
            Some(_) if start_epoch.is_some_and(|e| e != self.epoch) => Start::Compacted { base },
            Some(s) if s == base => Start::Replay {
                base,
                events: Vec::new(),
            },
            // Ahead of this daemon's history (it restarted without its state): the
            // client's view belongs to another history.
            Some(s) if s > base => Start::Compacted { base },
            Some(s) => match state.history.front() {
                Some(oldest) if oldest.event.revision <= s + 1 => Start::Replay {
                    base,
                    events: state
                        .history
                        .iter()
                        .filter(|p| p.event.revision > s && wanted(p))
                        .cloned()
                        .collect(),
                },
                _ => Start::Compacted { base },
            },
        };
        (rx, start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequencer(history: usize, durable: bool) -> Sequencer {
        let config = WatchConfig {
            history,
            ..WatchConfig::default()
        };
        Sequencer::new(&config, 10, 7, durable)
    }

    fn deleted(name: &str) -> EventFn<'_> {
        Box::new(move |_| {
            Event::Deleted(v1::Deleted {
                name: name.to_owned(),
            })
        })
    }

    fn revisions(events: &[Arc<Published>]) -> Vec<u64> {
        events.iter().map(|p| p.event.revision).collect()
    }

    #[test]
    fn in_memory_changes_are_delivered_at_once_in_revision_order() {
        let s = sequencer(100, false);
        let (mut rx, start) = s.subscribe(None, None, |_| true);
        assert!(matches!(start, Start::Snapshot { base: 10 }));
        let committed = s.commit("a", vec![deleted("a"), deleted("a")], None).unwrap();
        assert_eq!(
            committed,
            Committed {
                revision: 12,
                seq: None
            }
        );
        assert_eq!(s.revision(), 12);
        assert_eq!(rx.try_recv().unwrap().event.revision, 11);
        assert_eq!(rx.try_recv().unwrap().event.revision, 12);
        // Nothing to publish: the answer reflects the delivered revision.
        assert_eq!(s.commit("a", Vec::new(), None).unwrap().revision, 12);
    }

    #[test]
    fn durable_changes_wait_for_their_record() {
        let s = sequencer(100, true);
        let (mut rx, _) = s.subscribe(None, None, |_| true);
        let journaled = |seq: u64| -> Option<RecordFn<'static>> {
            Some(Box::new(move |made| {
                assert!(!made.is_empty());
                Ok(seq)
            }))
        };
        assert_eq!(
            s.commit("a", vec![deleted("a")], journaled(1)).unwrap().seq,
            Some(1)
        );
        assert_eq!(
            s.commit("b", vec![deleted("b")], journaled(2)).unwrap().revision,
            12
        );
        assert_eq!(s.revision(), 10);
        assert!(rx.try_recv().is_err());
        s.deliver_through(1);
        assert_eq!((s.revision(), rx.try_recv().unwrap().name.as_str()), (11, "a"));
        assert!(rx.try_recv().is_err());
        s.deliver_through(5);
        assert_eq!((s.revision(), rx.try_recv().unwrap().name.as_str()), (12, "b"));
        let failed: RecordFn<'_> = Box::new(|_| Err(StoreError::Failed));
        assert!(s.commit("c", vec![deleted("c")], Some(failed)).is_err());
    }

    #[test]
    fn a_subscriber_replays_the_history_it_asks_for_or_resyncs() {
        let s = sequencer(3, false);
        for name in ["a", "b", "a", "b"] {
            s.commit(name, vec![deleted(name)], None).unwrap();
        }
        // History holds revisions 12..=14; 11 fell out.
        let only_a = |p: &Published| p.name == "a";
        match s.subscribe(Some(11), Some(7), only_a).1 {
            Start::Replay { base, events } => assert_eq!((base, revisions(&events)), (14, vec![13])),
            other => panic!("{other:?}"),
        }
        match s.subscribe(Some(14), None, |_| true).1 {
            Start::Replay { base, events } => assert_eq!((base, events.len()), (14, 0)),
            other => panic!("{other:?}"),
        }
        for (start, epoch) in [(Some(10), None), (Some(15), None), (Some(12), Some(8))] {
            let (_, got) = s.subscribe(start, epoch, |_| true);
            assert!(
                matches!(got, Start::Compacted { base: 14 }),
                "{start:?} {epoch:?}: {got:?}"
            );
        }
    }

    #[test]
    fn a_replica_delivers_the_leaders_revisions_once_and_resyncs_across_a_gap() {
        let s = sequencer(100, true);
        let (mut rx, _) = s.subscribe(None, None, |_| true);
        let published = |revision| Published {
            name: "a".into(),
            event: v1::WatchEvent {
                revision,
                event: Some(Event::Deleted(v1::Deleted { name: "a".into() })),
            },
        };
        // After the sequencer's 10: delivered with the leader's revision, once.
        for revision in [11, 12, 11, 12, 10] {
            s.replicate(published(revision));
        }
        assert_eq!(
            revisions(&[rx.try_recv().unwrap(), rx.try_recv().unwrap()]),
            vec![11, 12]
        );
        assert!(rx.try_recv().is_err());
        assert_eq!(s.revision(), 12);
        // A snapshot taken at 20: the history no longer reaches back.
        s.advance_to(20);
        assert_eq!(s.revision(), 20);
        assert!(matches!(
            s.subscribe(Some(12), Some(7), |_| true).1,
            Start::Compacted { base: 20 }
        ));
        // A deposed leader forgets what never became durable; the next revision follows 20.
        let journaled: RecordFn<'_> = Box::new(|_| Ok(99));
        s.commit("a", vec![deleted("a")], Some(journaled)).unwrap();
        s.abandon_pending();
        s.deliver_through(99);
        assert_eq!(s.revision(), 20);
        assert_eq!(
            s.commit("a", vec![deleted("a")], Some(Box::new(|_| Ok(100))))
                .unwrap()
                .revision,
            21
        );
    }
}
