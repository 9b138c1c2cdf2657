//! The revision, the bounded history and the Watch streams.
//!
//! Design note. Every change (create, delete, transition, policy update, override) is
//! committed through [`WatchHub::commit`], which under one short mutex takes the next
//! daemon-wide revision, appends the event to a bounded history (for `start_revision`
//! replay) and hands it to a `tokio::sync::broadcast` channel. Writers never wait for
//! watchers: a broadcast send never blocks, and the ring is shared, so an idle watcher
//! costs a receiver, not a buffer. A watcher that falls more than `watch.buffer` events
//! behind gets `Lagged` from the channel; it then sends RESYNC and a fresh snapshot —
//! never a silent gap. With a store, committed events wait in `pending` until the
//! journal says their record is durable ([`WatchHub::deliver_through`]), so no watcher
//! ever hears of a change a crash could take back.
//!
//! Lock order: the registry publishes while holding a protector's entry guard, so the
//! hub never touches the registry while holding its mutex. A snapshot is therefore taken
//! *after* subscribing at revision `base`, protector by protector; each snapshot carries
//! its own `mod_revision`, and a queued event already reflected in the snapshot (same
//! protector, revision <= its `mod_revision`) is dropped. Clients resume from SYNCED's
//! revision and may drop any event whose revision they already hold for that protector.
//!
//! A stream is a pull-driven state machine polled by the transport: when the client does
//! not read, nothing accumulates but the channel position. Shutdown ends every stream
//! with UNAVAILABLE so clients reconnect elsewhere or later.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::Stream;
use resilient_circuit_api::v1::{self, watch_event::Event};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::WatchConfig;

/// One published change: the protector's name (for filtering) and the event.
#[derive(Debug)]
pub struct Published {
    /// The protector the change concerns.
    pub name: String,
    /// The event as every watcher receives it.
    pub event: v1::WatchEvent,
}

/// Which protectors a watcher wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Exactly these names.
    Names(HashSet<String>),
    /// Names starting with this prefix; empty = every protector.
    Prefix(String),
}

impl Filter {
    /// Whether `name` passes.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Filter::Names(names) => names.contains(name),
            Filter::Prefix(prefix) => name.starts_with(prefix.as_str()),
        }
    }
}

/// Where a watcher's snapshots come from (the registry). Kept as a trait so the hub
/// never depends on the registry.
pub trait SnapshotSource: Send + Sync + 'static {
    /// The names passing `filter`, in name order.
    fn names(&self, filter: &Filter) -> Vec<String>;
    /// One protector's state with its `mod_revision`, if it still exists.
    fn snapshot(&self, name: &str) -> Option<v1::Protector>;
}

/// The parameters of one Watch, already validated.
#[derive(Debug, Clone)]
pub struct WatchParams {
    /// Which protectors.
    pub filter: Filter,
    /// Replay the changes after this revision instead of a snapshot.
    pub start_revision: Option<u64>,
    /// The epoch `start_revision` belongs to, if the client knows it.
    pub start_epoch: Option<u64>,
    /// Idle time before PROGRESS.
    pub progress_interval: Duration,
}

/// Why a Watch could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// `max_watchers` streams are open.
    #[error("{0} watch streams are open, the configured maximum")]
    TooManyWatchers(usize),
}

struct HubState {
    /// The last revision handed out.
    revision: u64,
    /// The last revision delivered to watchers (equal to `revision` without a store).
    delivered: u64,
    history: VecDeque<Arc<Published>>,
    /// With a store: changes waiting for their record to be durable, in revision order,
    /// each with the journal sequence number that makes it so.
    pending: VecDeque<(u64, Arc<Published>)>,
}

/// A change's event, built once its revision is known.
pub type EventFn<'a> = Box<dyn FnOnce(u64) -> Event + 'a>;

/// Writes the record that makes a change durable, given the revision of the change's
/// last event (None when it published none); returns the journal's sequence number.
pub type RecordFn<'a> = Box<dyn FnOnce(Option<u64>) -> Result<u64, crate::store::StoreError> + 'a>;

/// What [`WatchHub::commit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The revision of the last event, or the delivered revision when there was none.
    pub revision: u64,
    /// The journal sequence number to wait for before acknowledging, if a record was
    /// written.
    pub seq: Option<u64>,
}

/// The daemon-wide revision, the history and the fan-out to watchers.
pub struct WatchHub {
    state: Mutex<HubState>,
    /// Mirror of `state.revision` for lock-free reads by responses.
    revision: AtomicU64,
    tx: broadcast::Sender<Arc<Published>>,
    watchers: AtomicUsize,
    max_watchers: usize,
    history_cap: usize,
    /// Whether changes wait for a store before delivery.
    durable: bool,
    /// This history of revisions (see `Synced.epoch`).
    epoch: u64,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for WatchHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHub")
            .field("revision", &self.revision())
            .field("watchers", &self.watchers())
            .finish_non_exhaustive()
    }
}

/// How a new watcher starts.
enum Start {
    /// Snapshot, then changes after `base`.
    Snapshot { base: u64 },
    /// These changes, then SYNCED at `base`.
    Replay { base: u64, events: Vec<Arc<Published>> },
    /// The start revision is not in the history: RESYNC, snapshot.
    Compacted { base: u64 },
}

impl WatchHub {
    /// A hub whose revision continues from `revision`; `shutdown` ends every stream.
    /// With `durable`, committed changes wait for [`WatchHub::deliver_through`].
    pub fn new(
        config: &WatchConfig,
        max_watchers: usize,
        revision: u64,
        epoch: u64,
        durable: bool,
        shutdown: CancellationToken,
    ) -> WatchHub {
        let (tx, _) = broadcast::channel(config.buffer.max(1));
        WatchHub {
            state: Mutex::new(HubState {
                revision,
                delivered: revision,
                history: VecDeque::new(),
                pending: VecDeque::new(),
            }),
            revision: AtomicU64::new(revision),
            tx,
            watchers: AtomicUsize::new(0),
            max_watchers,
            history_cap: config.history,
            durable,
            epoch,
            shutdown,
        }
    }

    /// This daemon's epoch: the identity of its history of revisions.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The revision of the latest change delivered to watchers (with a store: the latest
    /// durable one).
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Open Watch streams.
    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // Nothing under this lock can leave the state half-updated, so a poisoned lock
        // is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Commits one operation's changes about `name`: takes the next revision for each
    /// event, then (with a store) has `record` write the protector's state with the last
    /// of them, all under one short lock, so revisions and the journal agree on order.
    /// Without a store each event is delivered at once; with one, the events wait until
    /// [`WatchHub::deliver_through`] hears their record is durable, so a watcher never
    /// sees a change a crash could take back. Never waits for a watcher.
    pub fn commit(
        &self,
        name: &str,
        events: Vec<EventFn<'_>>,
        record: Option<RecordFn<'_>>,
    ) -> Result<Committed, crate::store::StoreError> {
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
            (true, Some(record)) => Some(record(last)?),
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

    fn deliver(&self, state: &mut HubState, published: Arc<Published>) {
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

    fn subscribe(
        &self,
        start_revision: Option<u64>,
        start_epoch: Option<u64>,
        filter: &Filter,
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
                        .filter(|p| p.event.revision > s && filter.matches(&p.name))
                        .cloned()
                        .collect(),
                },
                _ => Start::Compacted { base },
            },
        };
        (rx, start)
    }

    /// Opens a Watch stream over `source`, counted against `max_watchers`.
    pub fn watch<S: SnapshotSource>(
        self: &Arc<Self>,
        source: Arc<S>,
        params: WatchParams,
    ) -> Result<impl Stream<Item = Result<v1::WatchEvent, tonic::Status>> + Send + 'static, WatchError> {
        let slot = WatcherSlot::try_new(Arc::clone(self))?;
        let (rx, start) = self.subscribe(params.start_revision, params.start_epoch, &params.filter);
        let mut watcher = Watcher {
            hub: Arc::clone(self),
            source,
            filter: params.filter,
            rx,
            out: VecDeque::new(),
            snapshot: None,
            seen: HashMap::new(),
            last_seen: 0,
            progress_interval: params.progress_interval,
            idle_since: Instant::now(),
            ended: false,
            _slot: slot,
        };
        match start {
            Start::Snapshot { base } => watcher.begin_snapshot(base),
            Start::Replay { base, events } => {
                watcher.last_seen = base;
                watcher.out.extend(events.iter().map(|p| p.event.clone()));
                watcher.out.push_back(synced(base, self.epoch));
            }
            Start::Compacted { base } => {
                watcher.out.push_back(resync(base, v1::ResyncReason::Compacted));
                watcher.begin_snapshot(base);
            }
        }
        Ok(futures_util::stream::unfold(watcher, |mut w| async move {
            w.next().await.map(|item| (item, w))
        }))
    }
}

/// A place among `max_watchers`, given back on drop.
struct WatcherSlot(Arc<WatchHub>);

impl WatcherSlot {
    fn try_new(hub: Arc<WatchHub>) -> Result<WatcherSlot, WatchError> {
        let max = hub.max_watchers;
        hub.watchers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| WatchError::TooManyWatchers(max))?;
        Ok(WatcherSlot(hub))
    }
}

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::AcqRel);
    }
}

struct SnapshotCursor {
    names: std::vec::IntoIter<String>,
    base: u64,
}

struct Watcher<S> {
    hub: Arc<WatchHub>,
    source: Arc<S>,
    filter: Filter,
    rx: broadcast::Receiver<Arc<Published>>,
    /// Ready to send, in order.
    out: VecDeque<v1::WatchEvent>,
    /// A snapshot being sent, one protector per poll.
    snapshot: Option<SnapshotCursor>,
    /// Protectors whose snapshot is newer than the subscription: their mod_revision.
    seen: HashMap<String, u64>,
    /// The newest revision this watcher has accounted for.
    last_seen: u64,
    progress_interval: Duration,
    idle_since: Instant,
    ended: bool,
    _slot: WatcherSlot,
}

fn synced(revision: u64, epoch: u64) -> v1::WatchEvent {
    v1::WatchEvent {
        revision,
        event: Some(Event::Synced(v1::Synced { epoch })),
    }
}

fn resync(revision: u64, reason: v1::ResyncReason) -> v1::WatchEvent {
    v1::WatchEvent {
        revision,
        event: Some(Event::Resync(v1::Resync {
            reason: reason as i32,
        })),
    }
}

impl<S: SnapshotSource> Watcher<S> {
    fn begin_snapshot(&mut self, base: u64) {
        self.seen.clear();
        self.last_seen = base;
        self.snapshot = Some(SnapshotCursor {
            names: self.source.names(&self.filter).into_iter(),
            base,
        });
    }

    /// After `Lagged`: a fresh subscription, RESYNC, and a new snapshot.
    fn resync_lagged(&mut self) {
        let (rx, start) = self.hub.subscribe(None, None, &self.filter);
        self.rx = rx;
        let base = match start {
            Start::Snapshot { base } | Start::Replay { base, .. } | Start::Compacted { base } => base,
        };
        self.out.clear();
        self.out.push_back(resync(base, v1::ResyncReason::Lagged));
        self.begin_snapshot(base);
    }

    /// Whether a change must be sent: it passes the filter and the snapshot did not
    /// already reflect it.
    fn wanted(&self, p: &Published) -> bool {
        self.filter.matches(&p.name) && self.seen.get(&p.name).is_none_or(|&m| p.event.revision > m)
    }

    fn sent(&mut self, event: v1::WatchEvent) -> Option<Result<v1::WatchEvent, tonic::Status>> {
        self.idle_since = Instant::now();
        Some(Ok(event))
    }

    async fn next(&mut self) -> Option<Result<v1::WatchEvent, tonic::Status>> {
        loop {
            if self.ended {
                return None;
            }
            if self.hub.shutdown.is_cancelled() {
                self.ended = true;
                return Some(Err(tonic::Status::unavailable("circuitd is shutting down")));
            }
            if let Some(event) = self.out.pop_front() {
                return self.sent(event);
            }
            if let Some(cursor) = &mut self.snapshot {
                let base = cursor.base;
                match cursor.names.next() {
                    Some(name) => {
                        if let Some(p) = self.source.snapshot(&name) {
                            if p.mod_revision > base {
                                self.seen.insert(name, p.mod_revision);
                            }
                            let event = v1::WatchEvent {
                                revision: p.mod_revision,
                                event: Some(Event::Snapshot(p)),
                            };
                            return self.sent(event);
                        }
                        continue;
                    }
                    None => {
                        self.snapshot = None;
                        return self.sent(synced(base, self.hub.epoch));
                    }
                }
            }
            let idle_deadline = self.idle_since + self.progress_interval;
            tokio::select! {
                biased;
                () = self.hub.shutdown.cancelled() => continue,
                received = self.rx.recv() => match received {
                    Ok(p) => {
                        self.last_seen = p.event.revision;
                        if self.wanted(&p) {
                            return self.sent(p.event.clone());
                        }
                    }
                    Err(RecvError::Lagged(_)) => self.resync_lagged(),
                    Err(RecvError::Closed) => return None,
                },
                () = tokio::time::sleep_until(idle_deadline) => match self.rx.try_recv() {
                    // Something arrived at the same moment: deliver it first.
                    Ok(p) => {
                        self.last_seen = p.event.revision;
                        if self.wanted(&p) {
                            return self.sent(p.event.clone());
                        }
                    }
                    Err(TryRecvError::Lagged(_)) => self.resync_lagged(),
                    Err(TryRecvError::Closed) => return None,
                    Err(TryRecvError::Empty) => {
                        let progress = v1::WatchEvent {
                            revision: self.last_seen,
                            event: Some(Event::Progress(v1::Progress {})),
                        };
                        return self.sent(progress);
                    }
                },
            }
        }
    }
}
