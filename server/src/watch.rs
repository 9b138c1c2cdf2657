//! The Watch streams: a snapshot first, then ordered changes, and a resync instead of
//! a gap.
//!
//! Design note. A stream reads the changes the [`Sequencer`] delivers. It subscribes
//! first, at revision `base`, and then sends a snapshot of its protectors (or replays the
//! history after the client's `start_revision`), then SYNCED, then every change that
//! passes its filter. A watcher that falls more than `watch.buffer` events behind after
//! SYNCED gets `Lagged` from the channel; it then sends RESYNC and a fresh snapshot —
//! never a silent gap.
//!
//! Lock order: the registry commits while holding a protector's entry guard, so a stream
//! never reads the registry while it holds the sequencer's lock. A snapshot is therefore
//! taken *after* subscribing, protector by protector; each snapshot carries its own
//! `mod_revision`, and a queued event already reflected in the snapshot (same protector,
//! revision <= its `mod_revision`) is dropped. Clients resume from SYNCED's revision and
//! may drop any event whose revision they already hold for that protector.
//!
//! A snapshot walks the name index with a cursor: the stream holds the last name it
//! visited and asks the source for the next one after it, so its memory does not grow
//! with the number of protectors. The names a snapshot already reflected past `base` (the
//! `seen` map) are kept only up to `watch.buffer`: more of them means more queued changes
//! than the channel holds, so the channel lags anyway.
//!
//! A snapshot longer than the buffer, with changes coming meanwhile, lags while it is
//! sent (the channel is not read during a snapshot). Starting it over would never end,
//! so the rule is: a snapshot that ends lagged (or overflowed `seen`) is followed, before
//! SYNCED, by a *catch-up pass* with a fresh subscription at `base'`: first the DELETED
//! events of its protectors between `base` and `base'` (from the history: a deletion
//! leaves no name to walk), then the snapshot of every protector whose `mod_revision` is
//! above `base`. A protector at or below `base` has not changed since the previous pass
//! read it after `base`, so the client already holds that state. Each pass sends only what
//! changed during the one before, so passes shrink until one ends without lagging; then
//! SYNCED at that pass's `base`, and every change after it in order. If the history no
//! longer reaches `base`, deletions cannot be told: RESYNC (LAGGED) and a full snapshot.
//!
//! A stream is a pull-driven state machine polled by the transport: when the client does
//! not read, nothing accumulates but the channel position. Shutdown ends every stream
//! with UNAVAILABLE so clients reconnect elsewhere or later.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::Stream;
use resilient_circuit_api::v1::{self, watch_event::Event};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::sequencer::{Published, Sequencer, Start};

/// How many unchanged protectors a catch-up pass skips between two yields.
const SKIPS_PER_YIELD: usize = 1024;

/// Which protectors a watcher wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Exactly these names.
    Names(BTreeSet<String>),
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
    /// The first existing name passing `filter` that sorts after `after` (from the start
    /// when `None`): a snapshot walks the names one step at a time and holds only where
    /// it is.
    fn next_name(&self, filter: &Filter, after: Option<&str>) -> Option<String>;
    /// One protector's `mod_revision`, if it exists (cheaper than a snapshot).
    fn mod_revision(&self, name: &str) -> Option<u64>;
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
#[derive(Debug, Clone)]
pub struct Watchers {
    open: Arc<AtomicUsize>,
    max: usize,
    shutdown: CancellationToken,
    /// RESYNCs sent since start (for `/metrics`); bumped only when one is sent.
    resyncs: Arc<AtomicU64>,
}

impl Watchers {
    /// At most `max` streams at once; `shutdown` ends every stream.
    pub fn new(max: usize, shutdown: CancellationToken) -> Watchers {
        Watchers {
            open: Arc::new(AtomicUsize::new(0)),
            max,
            shutdown,
            resyncs: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Open Watch streams.
    pub fn count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// RESYNC events sent since start, every stream's.
    pub fn resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Relaxed)
    }

    /// Opens a Watch stream of `sequencer`'s changes with snapshots from `source`,
    /// counted against `max_watchers`.
    pub fn open<S: SnapshotSource>(
        &self,
        sequencer: &Arc<Sequencer>,
        source: Arc<S>,
        params: WatchParams,
    ) -> Result<impl Stream<Item = Result<v1::WatchEvent, tonic::Status>> + Send + 'static, WatchError> {
        let watcher = self.start(sequencer, source, params)?;
        Ok(futures_util::stream::unfold(watcher, |mut w| async move {
            w.next().await.map(|item| (item, w))
        }))
    }

    /// The stream's state machine, counted against `max_watchers`.
    fn start<S: SnapshotSource>(
        &self,
        sequencer: &Arc<Sequencer>,
        source: Arc<S>,
        params: WatchParams,
    ) -> Result<Watcher<S>, WatchError> {
        let slot = WatcherSlot::try_new(Arc::clone(&self.open), self.max)?;
        let filter = params.filter;
        let (rx, start) = sequencer.subscribe(params.start_revision, params.start_epoch, |p| {
            filter.matches(&p.name)
        });
        let mut watcher = Watcher {
            sequencer: Arc::clone(sequencer),
            shutdown: self.shutdown.clone(),
            resyncs: Arc::clone(&self.resyncs),
            source,
            filter,
            rx,
            out: VecDeque::new(),
            snapshot: None,
            seen: HashMap::new(),
            seen_cap: sequencer.buffer(),
            behind: false,
            held: None,
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
                self.resyncs.fetch_add(1, Ordering::Relaxed);
                watcher.out.push_back(resync(base, v1::ResyncReason::Compacted));
                watcher.begin_snapshot(base);
            }
        }
        Ok(watcher)
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

/// A snapshot being sent: where the walk is, never the names themselves.
struct SnapshotPass {
    /// The last name visited; the next step asks for the first name after it.
    after: Option<String>,
    /// The revision this pass's subscription starts after (SYNCED's revision).
    base: u64,
    /// A catch-up pass: only protectors changed after this revision are sent.
    since: Option<u64>,
}

struct Watcher<S> {
    sequencer: Arc<Sequencer>,
    shutdown: CancellationToken,
    resyncs: Arc<AtomicU64>,
    source: Arc<S>,
    filter: Filter,
    rx: broadcast::Receiver<Arc<Published>>,
    /// Ready to send, in order.
    out: VecDeque<v1::WatchEvent>,
    /// A snapshot being sent, one protector per poll.
    snapshot: Option<SnapshotPass>,
    /// Protectors whose snapshot is newer than the subscription: their mod_revision.
    /// At most `seen_cap` entries.
    seen: HashMap<String, u64>,
    seen_cap: usize,
    /// The current pass reflected more changes than the channel holds: it will lag.
    behind: bool,
    /// A change taken from the channel at the end of a snapshot, not yet handled.
    held: Option<Arc<Published>>,
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
        self.begin_pass(base, None);
    }

    fn begin_pass(&mut self, base: u64, since: Option<u64>) {
        self.seen.clear();
        self.behind = false;
        self.held = None;
        self.last_seen = base;
        self.snapshot = Some(SnapshotPass {
            after: None,
            base,
            since,
        });
    }

    /// A snapshot pass ended; whether its subscription kept every change since its
    /// base. Takes at most one change off the channel (kept in `held`).
    fn pass_kept_up(&mut self) -> bool {
        if self.behind {
            return false;
        }
        match self.rx.try_recv() {
            Ok(p) => {
                self.held = Some(p);
                true
            }
            Err(TryRecvError::Empty | TryRecvError::Closed) => true,
            Err(TryRecvError::Lagged(_)) => false,
        }
    }

    /// The pass after `since` lagged: a fresh subscription, the deletions the history
    /// holds since then, and a catch-up pass of what changed after it (design note).
    fn catch_up(&mut self, since: u64) {
        let filter = &self.filter;
        let epoch = self.sequencer.epoch();
        let (rx, start) = self.sequencer.subscribe(Some(since), Some(epoch), |p| {
            filter.matches(&p.name) && matches!(p.event.event, Some(Event::Deleted(_)))
        });
        self.rx = rx;
        match start {
            Start::Replay { base, events } => {
                self.out.extend(events.iter().map(|p| p.event.clone()));
                self.begin_pass(base, Some(since));
            }
            Start::Snapshot { base } | Start::Compacted { base } => {
                self.resyncs.fetch_add(1, Ordering::Relaxed);
                self.out.push_back(resync(base, v1::ResyncReason::Lagged));
                self.begin_snapshot(base);
            }
        }
    }

    /// One step of the snapshot: the next protector to send, if any; `Err` ends the
    /// stream. `Ok(None)` means the pass is over.
    async fn snapshot_step(&mut self) -> Result<Option<v1::WatchEvent>, tonic::Status> {
        let mut skipped = 0usize;
        while let Some(pass) = &mut self.snapshot {
            let Some(name) = self.source.next_name(&self.filter, pass.after.as_deref()) else {
                return Ok(None);
            };
            let (base, since) = (pass.base, pass.since);
            // A catch-up pass skips what did not change, cheaply, and lets other tasks
            // run now and then while it walks a large index.
            if let Some(since) = since
                && self.source.mod_revision(&name).is_none_or(|m| m <= since)
            {
                pass.after = Some(name);
                skipped += 1;
                if skipped.is_multiple_of(SKIPS_PER_YIELD) {
                    tokio::task::yield_now().await;
                }
                continue;
            }
            let Some((p, seq)) = self.source.snapshot(&name) else {
                pass.after = Some(name);
                continue;
            };
            pass.after = Some(name.clone());
            self.source.durable(seq).await?;
            if p.mod_revision > base && !self.behind {
                if self.seen.len() < self.seen_cap {
                    self.seen.insert(name, p.mod_revision);
                } else {
                    self.behind = true;
                    self.seen.clear();
                }
            }
            return Ok(Some(v1::WatchEvent {
                revision: p.mod_revision,
                event: Some(Event::Snapshot(p)),
            }));
        }
        Ok(None)
    }

    /// After `Lagged`: a fresh subscription, RESYNC, and a new snapshot.
    fn resync_lagged(&mut self) {
        let filter = &self.filter;
        let (rx, start) = self.sequencer.subscribe(None, None, |p| filter.matches(&p.name));
        self.rx = rx;
        let base = start.base();
        self.out.clear();
        self.resyncs.fetch_add(1, Ordering::Relaxed);
        self.out.push_back(resync(base, v1::ResyncReason::Lagged));
        self.begin_snapshot(base);
    }

    /// Handles a change from the channel: the event to send, if it is wanted.
    fn received(&mut self, p: &Published) -> Option<v1::WatchEvent> {
        self.last_seen = p.event.revision;
        self.wanted(p).then(|| p.event.clone())
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
            if let Some(base) = self.snapshot.as_ref().map(|pass| pass.base) {
                match self.snapshot_step().await {
                    Err(e) => {
                        self.ended = true;
                        return Some(Err(e));
                    }
                    Ok(Some(event)) => return self.sent(event),
                    Ok(None) => {
                        self.snapshot = None;
                        if self.pass_kept_up() {
                            return self.sent(synced(base, self.sequencer.epoch()));
                        }
                        self.catch_up(base);
                        continue;
                    }
                }
            }
            if let Some(p) = self.held.take() {
                if let Some(event) = self.received(&p) {
                    return self.sent(event);
                }
                continue;
            }
            let idle_deadline = self.idle_since + self.progress_interval;
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => continue,
                received = self.rx.recv() => match received {
                    Ok(p) => {
                        if let Some(event) = self.received(&p) {
                            return self.sent(event);
                        }
                    }
                    Err(RecvError::Lagged(_)) => self.resync_lagged(),
                    Err(RecvError::Closed) => return None,
                },
                () = tokio::time::sleep_until(idle_deadline) => match self.rx.try_recv() {
                    // Something arrived at the same moment: deliver it first.
                    Ok(p) => {
                        if let Some(event) = self.received(&p) {
                            return self.sent(event);
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

#[cfg(test)]
mod tests;
