//! Cached mode: decisions taken in this process while the Watch stream vouches for the
//! protector's status.
//!
//! Design note. A cached protector keeps a *model* of the daemon's protector (status,
//! generation, override, `open_until`), fed by its own Watch stream and by the answers
//! to its own reports, and publishes a one-word summary of it: mode and generation in
//! one `AtomicU64`. A decision is one load of that word (plus, on one admission in 32
//! of a thread's run on the same protector, a clock read against the freshness bound;
//! see `clock_due`):
//!
//! | model | decision |
//! |---|---|
//! | CLOSED, no override, stream synced and fresh | admitted here: a permit marked local, carrying the generation |
//! | OPEN, no override, synced and fresh, before `open_until` | rejected here, `retry_after = open_until - now` |
//! | anything else: HALF_OPEN, an override, OPEN past `open_until` or with an unknown `open_until`, a stream not synced, broken, or silent longer than the staleness bound | asked of the daemon (remote Acquire), then the declared fallback |
//!
//! So every HALF_OPEN trial permit comes from the daemon. *Fresh* means a Watch message
//! arrived within the staleness bound (default [`DEFAULT_CACHED_STALENESS`], 2 s; the
//! daemon is asked for PROGRESS every quarter of it, 500 ms, so a live stream is never
//! silent that long); a stream that breaks or resyncs stops local decisions at once.
//!
//! Histories. Generations compare only within one daemon history (one `epoch`): a
//! daemon that restarted without its state, or a protector deleted and created again,
//! counts generations from 1 again. So a snapshot (at a stream's start, or after RESYNC)
//! is held until SYNCED says which history it belongs to: from another epoch than the
//! model's, it replaces the model whatever its generation; from the same one, an older
//! generation than the model already learned (from an answer the stream has not caught
//! up with) changes nothing; and a snapshot that does not hold the protector at all drops
//! the model, so the daemon decides.
//!
//! Outcomes. A SUCCESS of a local permit increments a counter (an `AtomicU64` holding
//! a generation tag and a count), the calling thread's own among [`STRIPES`](crate::stripe::STRIPES) counters on
//! cache lines of their own (`stripe`), so threads sharing a protector never contend
//! for one line (only a slow success, under a slow-call rule, is queued under a mutex:
//! see "Slow calls" below); a background flusher takes and sums them every [`FLUSH_INTERVAL`]
//! (50 ms), or as soon as one reaches [`FLUSH_AT`](pending::FLUSH_AT) (1,000), and sends one ReportBatch.
//! The stripes' tags change together, under the tally's lock, so each success is taken
//! exactly once, by the batch of its generation. A FAILURE is sent at once: a ReportBatch with the pending
//! successes first and then the FAILURE, whose answer updates the model before the
//! call returns, so this process stops admitting on its own trip immediately. IGNORED
//! needs no report (CLOSED permits are not tracked). Every outcome travels with the
//! generation its permit was admitted in, so the daemon fences it like a unary report.
//! A generation names a call's place only within one life of the protector: successes
//! still pending when the model learns that the protector was deleted or created again
//! (from the stream or an EnsureProtector's answer, whichever comes first by revision)
//! are dropped and counted lost ([`ClientStats::batched_lost`]). An EnsureProtector
//! waits for a batch being sent, so one taken before a deletion lands before the
//! protector is created again.
//!
//! The window. Between the moment another client's report trips the protector on the
//! daemon and the moment the STATUS_CHANGED event reaches this process's Watch stream,
//! the model still says CLOSED, and calls are admitted here. This is the price of not
//! asking, and it is bounded by the Watch delivery latency (`examples/trip_latency.rs`
//! measures it; BENCHMARKS.md has the figures), or, should the stream stall, by the
//! staleness bound. Precisely:
//! - calls admitted in the window run against a protector that is already OPEN;
//! - their outcomes carry the old generation, so the daemon refuses them as stale
//!   (counted in its `stale_reports` and in [`ClientStats::batched_stale`]); they never
//!   touch the OPEN window, never extend the cooldown, and never count as trials;
//! - a FAILURE among them is sent at once and answered stale with the new status, which
//!   also stops admission here before that call returns;
//! - no HALF_OPEN trial can be taken in the window: trials always come from the daemon;
//! - successes still waiting for the flusher when the generation ends (at most one
//!   [`FLUSH_INTERVAL`] of them, calls admitted and finished *before* the trip) arrive
//!   with the old generation too and are refused as stale: a batched success reaches
//!   the daemon's window up to 50 ms late, so it cannot dilute a trip that happens
//!   meanwhile, as a unary report could have.
//!
//!
//! Slow calls. When the daemon's policy has a slow-call rule (`slow_call_duration`,
//! learned from the ensure answer, snapshots, CREATED and POLICY_UPDATED events), a local
//! permit remembers when it was handed out, and a SUCCESS at or above that duration is
//! not counted: it is queued with its duration and sent in the next batch's `outcomes`
//! (OutcomeBatch.durations), so `successes` only counts calls that were not slow, as the
//! daemon's rule needs. A FAILURE carries its duration too. Without the rule no clock is
//! read on the cached path. At most [`MAX_SLOW_PENDING`](pending::MAX_SLOW_PENDING) slow successes wait for a flush;
//! past that they are dropped and counted as lost (`batched_lost`).
//!
//! Layout: this module holds the model and the local decision; `pending`, the outcomes
//! waiting for the next batch; `tests`, the model's unit tests. The batches themselves
//! are sent by `crate::batches`.
//!
//! [`ClientStats::batched_stale`]: crate::ClientStats::batched_stale
//! [`ClientStats::batched_lost`]: crate::ClientStats::batched_lost

mod pending;
#[cfg(test)]
mod tests;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use resilient_circuit_api::convert;
use resilient_circuit_api::v1::{self, watch_event::Event};
use resilient_circuit_breaker::{Status, Transition};

use self::pending::Pending;
pub(crate) use self::pending::outcome_batch;
use crate::stripe;
use crate::sync::lock;
use crate::watcher::{Follower, wall};

/// The default staleness bound of a cached protector's Watch stream.
pub const DEFAULT_CACHED_STALENESS: Duration = Duration::from_secs(2);
/// How often pending successes are sent.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

const MODE_BITS: u32 = 2;
const MODE_MASK: u64 = (1 << MODE_BITS) - 1;
const REMOTE: u64 = 0;
const CLOSED: u64 = 1;
const OPEN: u64 = 2;

/// What the cache decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Local {
    /// Admitted here, in this generation.
    Admit(u64),
    /// Rejected here: OPEN for this much longer.
    Reject(Duration),
    /// The daemon must decide.
    Remote,
}

/// What the Watch stream and the answers told about the daemon's protector.
#[derive(Debug, Default)]
struct Model {
    /// The stream is up and has sent SYNCED since it (re)started.
    synced: bool,
    /// The daemon history the generation belongs to, once a SYNCED said it.
    epoch: Option<u64>,
    /// The stream is sending a snapshot (it started without a resume, or resyncs): what
    /// it held for this protector, applied at SYNCED.
    snapshot: Option<Option<v1::Protector>>,
    status: Option<Status>,
    generation: u64,
    overridden: bool,
    open_until: Option<SystemTime>,
    /// The revision of the newest creation or deletion of the protector learned: the
    /// start or end of the life the pending successes belong to.
    life: u64,
}

impl Model {
    /// A protector's whole state; an older generation than the model's changes nothing
    /// unless `anew` (its generations started over).
    fn apply(&mut self, p: &v1::Protector, anew: bool) {
        if !anew && p.generation < self.generation {
            return;
        }
        self.status = Status::try_from(p.status()).ok();
        self.generation = p.generation;
        self.overridden = overrides(p.r#override.as_ref());
        self.open_until = p.open_until.as_ref().and_then(convert::time).map(wall);
    }
}

/// The cached state of one protector (see the module note).
#[derive(Debug)]
pub(crate) struct Cache {
    base: std::time::Instant,
    /// Mode in the low bits, generation above.
    word: AtomicU64,
    /// Nanoseconds since `base` until which the stream counts as fresh.
    fresh_until: AtomicU64,
    /// Nanoseconds since `base` when OPEN ends.
    open_until: AtomicU64,
    staleness: Duration,
    /// Outcomes of local permits waiting for the next batch.
    pending: Pending,
    /// Local decisions taken, striped by thread.
    decisions: stripe::Counter,
    /// Held while a batch is taken and sent, and while the protector is ensured: a batch
    /// taken before a deletion lands before the protector is created again.
    pub(crate) sending: tokio::sync::Mutex<()>,
    model: Mutex<Model>,
}

/// Whether an override holds: unless the daemon says NONE, the daemon decides.
fn overrides(o: Option<&v1::Override>) -> bool {
    !matches!(o.map(|o| convert::override_kind(o.kind())), Some(Ok(None)))
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

/// Local admissions between two clock reads on one thread (see [`clock_due`]).
const CLOCK_EVERY: u32 = 32;

thread_local! {
    /// The protector (its cache's address) this thread admitted for last, and how many
    /// admissions in a row it made for it.
    static ADMISSIONS: std::cell::Cell<(usize, u32)> = const { std::cell::Cell::new((0, 0)) };
}

/// Whether this admission for the protector at `cache` re-checks freshness against the
/// clock. The Watch task's own timer ends local decisions at the staleness bound; the
/// clock is the backstop for a runtime too starved to run that task, and reading it costs
/// as much as the rest of a decision, so a thread reads it on one admission in
/// [`CLOCK_EVERY`] of a run for the same protector, and whenever it turns to another
/// one: per protector, a thread admits at most that many calls past the bound before it
/// notices, however it interleaves protectors.
#[inline]
fn clock_due(cache: usize) -> bool {
    ADMISSIONS.with(|n| {
        let (last, seen) = n.get();
        let seen = if last == cache { seen } else { 0 };
        n.set((cache, seen.wrapping_add(1)));
        seen % CLOCK_EVERY == 0
    })
}

impl Cache {
    pub(crate) fn new(staleness: Duration) -> Cache {
        Cache {
            base: std::time::Instant::now(),
            word: AtomicU64::new(REMOTE),
            fresh_until: AtomicU64::new(0),
            open_until: AtomicU64::new(0),
            staleness,
            pending: Pending::default(),
            decisions: stripe::Counter::default(),
            sending: tokio::sync::Mutex::new(()),
            model: Mutex::new(Model::default()),
        }
    }

    /// The daemon's slow-call threshold, when its policy has a slow-call rule: a local
    /// permit then measures its call.
    #[inline]
    pub(crate) fn slow_call_duration(&self) -> Option<Duration> {
        self.pending.slow_call_duration()
    }

    /// Takes in the daemon's policy (from an answer or an event): only its slow-call rule
    /// matters here.
    pub(crate) fn learn_policy(&self, policy: Option<&v1::Policy>) {
        let Some(policy) = policy else { return };
        let slow = policy
            .slow_call_duration
            .as_ref()
            .filter(|_| policy.slow_call_limit.is_some())
            .and_then(|d| convert::std_duration(d).ok())
            .map_or(0, |d| nanos(d).max(1));
        self.pending.set_slow_call_nanos(slow);
    }

    /// A SUCCESS of a permit admitted in `generation` that took `duration`: counted, or,
    /// when slow under the daemon's rule, queued with its duration. `false` when the queue
    /// is full and the outcome is dropped.
    #[inline]
    pub(crate) fn success_timed(&self, generation: u64, duration: Option<Duration>) -> bool {
        self.pending.success_timed(generation, duration, || {
            self.word.load(Ordering::Acquire) >> MODE_BITS
        })
    }

    fn now(&self) -> u64 {
        nanos(self.base.elapsed())
    }

    /// The local decision: lock-free, allocation-free.
    #[inline]
    pub(crate) fn decide(&self) -> Local {
        let word = self.word.load(Ordering::Acquire);
        match word & MODE_MASK {
            CLOSED
                if !clock_due(std::ptr::from_ref(self) as usize)
                    || self.now() < self.fresh_until.load(Ordering::Relaxed) =>
            {
                Local::Admit(word >> MODE_BITS)
            }
            OPEN => {
                let now = self.now();
                let until = self.open_until.load(Ordering::Relaxed);
                if now < self.fresh_until.load(Ordering::Relaxed) && now < until {
                    Local::Reject(Duration::from_nanos(until - now))
                } else {
                    Local::Remote
                }
            }
            _ => Local::Remote,
        }
    }

    /// Publishes the model's summary for [`decide`](Self::decide).
    fn publish(&self, m: &Model) {
        // Generation 0 is no generation: the protector is not known (yet, or any more).
        let vouched = m.synced && !m.overridden && m.generation > 0;
        let mode = match (vouched, m.status, m.open_until) {
            (true, Some(Status::Closed), _) => CLOSED,
            (true, Some(Status::Open), Some(until)) => {
                let left = until.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
                self.open_until
                    .store(self.now().saturating_add(nanos(left)), Ordering::Relaxed);
                OPEN
            }
            _ => REMOTE,
        };
        self.word
            .store((m.generation << MODE_BITS) | mode, Ordering::Release);
    }

    fn update(&self, f: impl FnOnce(&mut Model)) {
        let mut m = lock(&self.model);
        f(&mut m);
        self.publish(&m);
    }

    /// A Watch message arrived: the stream is alive for another staleness bound.
    fn heard(&self) {
        let until = self.now().saturating_add(nanos(self.staleness));
        self.fresh_until.store(until, Ordering::Relaxed);
    }

    /// SYNCED of history `epoch`: the snapshot held since the stream (re)started, if
    /// any, is applied, and the model now reflects the daemon up to the stream's present.
    fn synced(&self, epoch: u64) {
        self.update(|m| {
            let new_history = m.epoch.is_some_and(|e| e != epoch);
            if new_history {
                m.status = None;
                m.generation = 0;
                // Its revisions start over (a life's start in the old one means nothing
                // here), and successes still pending name generations of a life this
                // history does not have: dropped, as a life that ends drops them.
                m.life = 0;
                self.drop_pending();
            }
            match m.snapshot.take() {
                Some(Some(p)) => m.apply(&p, new_history),
                // The snapshot did not hold the protector: nothing vouches for a model.
                Some(None) => {
                    m.status = None;
                    m.generation = 0;
                }
                None => {}
            }
            m.epoch = Some(epoch);
            m.synced = true;
        });
    }

    /// A snapshot starts (the stream opened without a resume, or resyncs): what it says
    /// of the protector is held until SYNCED.
    fn snapshot_begins(&self) {
        self.update(|m| {
            m.synced = false;
            m.snapshot = Some(None);
        });
    }

    /// The stream broke or went silent: nothing vouches for the model.
    fn unsynced(&self) {
        self.update(|m| {
            m.synced = false;
            m.snapshot = None;
        });
    }

    /// A protector's whole state, from an answer or a CREATED event. `created`: a new
    /// life, whose generations restart.
    pub(crate) fn snapshot(&self, p: &v1::Protector, created: bool) {
        self.learn_policy(p.policy.as_ref());
        self.update(|m| {
            if created {
                // Just created, its last change is its creation.
                self.life_ends(m, p.mod_revision);
            }
            m.apply(p, created)
        });
    }

    /// The protector was created or deleted at `revision`: successes still pending
    /// belong to a life that ended (the protector's generations start again at 1 in the
    /// next one, which would take them for its own), so they are dropped, unless the
    /// model already learned of a newer creation or deletion (the Watch stream lagging
    /// behind an answer: the pending successes are the new life's).
    fn life_ends(&self, m: &mut Model, revision: u64) {
        if revision <= m.life {
            return;
        }
        m.life = revision;
        self.drop_pending();
    }

    /// Drops every pending success, counted for the next send to report lost.
    fn drop_pending(&self) {
        self.pending.drop_all();
    }

    /// A transition, from the stream or an answer. An older one changes nothing.
    pub(crate) fn transition(&self, t: &Transition) {
        self.update(|m| {
            if t.generation < m.generation {
                return;
            }
            m.status = Some(t.to);
            m.generation = t.generation;
            m.open_until = t.open_until.map(wall);
        });
    }

    /// The status and generation a batch's answer reports, with the transition it
    /// carried.
    pub(crate) fn answered(&self, r: &v1::OutcomeBatchResult, transition: Option<&Transition>) {
        if let Some(t) = transition {
            self.transition(t);
        }
        let status = Status::try_from(r.status()).ok();
        self.update(|m| {
            if r.generation > m.generation || (r.generation == m.generation && status != m.status) {
                m.status = status;
                m.generation = r.generation;
                // The answer does not carry `open_until`: only the Watch event will.
                m.open_until = None;
            }
        });
    }

    fn overridden(&self, o: Option<&v1::Override>) {
        self.update(|m| m.overridden = overrides(o));
    }

    fn deleted(&self, revision: u64) {
        self.update(|m| {
            self.life_ends(m, revision);
            // A snapshot may announce a deletion before SYNCED (its catch-up pass): what
            // it held of the protector is gone too.
            if let Some(held) = &mut m.snapshot {
                *held = None;
            }
            m.status = None;
            m.generation = 0;
        });
    }

    /// Takes every pending success, oldest generations first, as batches for `name`.
    pub(crate) fn take(&self, name: &str) -> Vec<v1::OutcomeBatch> {
        self.pending.take(name)
    }

    /// How many pending outcomes were dropped (their life ended) since the last call.
    pub(crate) fn take_dropped(&self) -> u64 {
        self.pending.take_dropped()
    }

    /// Waits until the pending outcomes should be sent before the flush interval ends.
    pub(crate) async fn flush_wanted(&self) {
        self.pending.flush_wanted().await;
    }

    /// How many decisions this cache took (see `Protector::decisions`).
    pub(crate) fn decisions(&self) -> &stripe::Counter {
        &self.decisions
    }
}

/// What the Watch stream tells the model.
impl Follower for Cache {
    fn staleness(&self) -> Duration {
        self.staleness
    }

    fn event(&self, event: &v1::WatchEvent, started_from: Option<u64>) {
        self.heard();
        match &event.event {
            Some(Event::Snapshot(p)) => self.update(|m| {
                self.learn_policy(p.policy.as_ref());
                if started_from.is_none() && m.snapshot.is_none() {
                    // The first message of a stream opened without a resume.
                    m.snapshot = Some(None);
                }
                if let Some(held) = &mut m.snapshot {
                    *held = Some(p.clone());
                }
            }),
            Some(Event::Created(p)) => self.snapshot(p, true),
            Some(Event::PolicyUpdated(u)) => self.learn_policy(u.policy.as_ref()),
            Some(Event::StatusChanged(sc)) => {
                if let Some(t) = sc.transition.as_ref().and_then(|t| convert::transition(t).ok()) {
                    self.transition(&t);
                }
            }
            Some(Event::Deleted(_)) => self.deleted(event.revision),
            Some(Event::OverrideChanged(oc)) => self.overridden(oc.r#override.as_ref()),
            Some(Event::Resync(_)) => self.snapshot_begins(),
            Some(Event::Synced(synced)) => {
                if started_from.is_none() {
                    // A stream opened without a resume always snapshots first, even
                    // when the snapshot is empty.
                    self.update(|m| {
                        m.snapshot.get_or_insert(None);
                    });
                }
                self.synced(synced.epoch)
            }
            Some(Event::Progress(_)) | None => {}
        }
    }

    fn interrupted(&self) {
        self.unsynced();
    }
}
