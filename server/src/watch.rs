//! The Watch streams: a snapshot first, then ordered changes, and a resync instead of
//! a gap.
//!
//! Design note. A stream reads the changes the [`Sequencer`] delivers. It subscribes
//! first, at revision `base`, and then sends a snapshot of its protectors (or replays the
//! history after the client's `start_revision`), then SYNCED, then every change that
//! passes its filter. A watcher that falls more than `watch.buffer` events behind gets
//! `Lagged` from the channel; it then sends RESYNC and a fresh snapshot — never a silent
//! gap.
//!
//! Lock order: the registry commits while holding a protector's entry guard, so a stream
//! never reads the registry while it holds the sequencer's lock. A snapshot is therefore
//! taken *after* subscribing, protector by protector; each snapshot carries its own
//! `mod_revision`, and a queued event already reflected in the snapshot (same protector,
//! revision <= its `mod_revision`) is dropped. Clients resume from SYNCED's revision and
//! may drop any event whose revision they already hold for that protector.
//!
//! A stream is a pull-driven state machine polled by the transport: when the client does
//! not read, nothing accumulates but the channel position. Shutdown ends every stream
//! with UNAVAILABLE so clients reconnect elsewhere or later.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::Stream;
use resilient_circuit_api::v1::{self, watch_event::Event};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::sequencer::{Published, Sequencer, Start};

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

/// Where a watcher's snapshots come from (the registry). Kept as a trait so the streams
/// never depend on the registry.
pub trait SnapshotSource: Send + Sync + 'static {
    /// The names passing `filter`, in name order.
    fn names(&self, filter: &Filter) -> Vec<String>;
    /// One protector's state with its `mod_revision`, if it still exists, and what to
    /// wait for before it may be sent (see [`SnapshotSource::durable`]).
    fn snapshot(&self, name: &str) -> Option<(v1::Protector, Option<u64>)>;
    /// Waits until the state a snapshot was read with is durable: a watcher never sees a
    /// state a crash could take back. An error ends the stream (UNAVAILABLE).
    fn durable(&self, seq: Option<u64>) -> impl Future<Output = Result<(), tonic::Status>> + Send;
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

/// The open Watch streams: their count against `max_watchers`, and the shutdown that
/// ends them all.
#[derive(Debug)]
pub struct Watchers {
    open: Arc<AtomicUsize>,
    max: usize,
    shutdown: CancellationToken,
}

impl Watchers {
    /// At most `max` streams at once; `shutdown` ends every stream.
    pub fn new(max: usize, shutdown: CancellationToken) -> Watchers {
        Watchers {
            open: Arc::new(AtomicUsize::new(0)),
            max,
            shutdown,
        }
    }

    /// Open Watch streams.
    pub fn count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Opens a Watch stream of `sequencer`'s changes with snapshots from `source`,
    /// counted against `max_watchers`.
    pub fn open<S: SnapshotSource>(
        &self,
        sequencer: &Arc<Sequencer>,
        source: Arc<S>,
        params: WatchParams,
    ) -> Result<impl Stream<Item = Result<v1::WatchEvent, tonic::Status>> + Send + 'static, WatchError> {
        let slot = WatcherSlot::try_new(Arc::clone(&self.open), self.max)?;
        let filter = params.filter;
        let (rx, start) = sequencer.subscribe(params.start_revision, params.start_epoch, |p| {
            filter.matches(&p.name)
        });
        let mut watcher = Watcher {
            sequencer: Arc::clone(sequencer),
            shutdown: self.shutdown.clone(),
            source,
            filter,
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
                watcher.out.push_back(synced(base, sequencer.epoch()));
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
struct WatcherSlot(Arc<AtomicUsize>);

impl WatcherSlot {
    fn try_new(open: Arc<AtomicUsize>, max: usize) -> Result<WatcherSlot, WatchError> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .map_err(|_| WatchError::TooManyWatchers(max))?;
        Ok(WatcherSlot(open))
    }
}

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct SnapshotCursor {
    names: std::vec::IntoIter<String>,
    base: u64,
}

struct Watcher<S> {
    sequencer: Arc<Sequencer>,
    shutdown: CancellationToken,
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
        let filter = &self.filter;
        let (rx, start) = self.sequencer.subscribe(None, None, |p| filter.matches(&p.name));
        self.rx = rx;
        let base = start.base();
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
            if self.shutdown.is_cancelled() {
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
                        if let Some((p, seq)) = self.source.snapshot(&name) {
                            if let Err(e) = self.source.durable(seq).await {
                                self.ended = true;
                                return Some(Err(e));
                            }
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
                        return self.sent(synced(base, self.sequencer.epoch()));
                    }
                }
            }
            let idle_deadline = self.idle_since + self.progress_interval;
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => continue,
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
