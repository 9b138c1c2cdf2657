//! A cached protector's outcomes waiting for the next batch (see "Outcomes" and "Slow
//! calls" in the `cached` module's note): successes counted on striped counters, each a
//! generation tag and a count; slow successes queued with their durations; and the
//! count of those dropped because their protector's life ended.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use resilient_circuit_api::{convert, v1};

use crate::stripe::{self, Padded, STRIPES};
use crate::sync::lock;

/// Pending successes that trigger a flush before the interval ends.
pub const FLUSH_AT: u64 = 1_000;
/// Slow successes (each listed with its duration) waiting for a flush, at most.
pub const MAX_SLOW_PENDING: usize = 10_000;

/// The success counter: the low bits count, the high bits tag the generation counted.
const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const TAG_MASK: u64 = (1 << (64 - COUNT_BITS)) - 1;

fn tag(generation: u64) -> u64 {
    (generation & TAG_MASK) << COUNT_BITS
}

/// Successes of generations other than the one the counters' tag stands for.
#[derive(Debug, Default)]
struct Tally {
    /// The full generation the counters' tag stands for.
    generation: u64,
    older: Vec<(u64, u64)>,
}

/// The outcomes of a cached protector's local permits that the next batch sends.
#[derive(Debug)]
pub(super) struct Pending {
    /// Pending successes, striped by thread: each holds a generation tag and a count.
    successes: Box<[Padded<AtomicU64>]>,
    tally: Mutex<Tally>,
    /// Pending outcomes of a life that ended, dropped: the next send counts them lost.
    dropped: AtomicU64,
    /// Wakes the flusher before its interval ends.
    flush_now: tokio::sync::Notify,
    /// The daemon's `slow_call_duration` in nanoseconds; 0 while its policy has no
    /// slow-call rule (or is not known yet).
    slow_call_nanos: AtomicU64,
    /// Slow successes waiting for a flush: (generation, duration), oldest first.
    slow: Mutex<Vec<(u64, Duration)>>,
}

impl Default for Pending {
    fn default() -> Pending {
        Pending {
            successes: (0..STRIPES).map(|_| Padded(AtomicU64::new(0))).collect(),
            tally: Mutex::new(Tally::default()),
            dropped: AtomicU64::new(0),
            flush_now: tokio::sync::Notify::new(),
            slow_call_nanos: AtomicU64::new(0),
            slow: Mutex::new(Vec::new()),
        }
    }
}

impl Pending {
    /// The daemon's slow-call threshold, when its policy has a slow-call rule.
    #[inline]
    pub(super) fn slow_call_duration(&self) -> Option<Duration> {
        match self.slow_call_nanos.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    /// The daemon's slow-call threshold in nanoseconds, 0 for none.
    pub(super) fn set_slow_call_nanos(&self, nanos: u64) {
        self.slow_call_nanos.store(nanos, Ordering::Relaxed);
    }

    /// A SUCCESS of a permit admitted in `generation` that took `duration`: counted, or,
    /// when slow under the daemon's rule, queued with its duration. `false` when the queue
    /// is full and the outcome is dropped. `current` reads the model's generation.
    #[inline]
    pub(super) fn success_timed(
        &self,
        generation: u64,
        duration: Option<Duration>,
        current: impl FnOnce() -> u64,
    ) -> bool {
        // An unmeasured call (no slow-call rule when its permit was handed out) is
        // counted without reading the rule again.
        if let Some(took) = duration
            && self.slow_call_duration().is_some_and(|slow| took >= slow)
        {
            let mut queue = lock(&self.slow);
            if queue.len() >= MAX_SLOW_PENDING {
                return false;
            }
            queue.push((generation, took));
            if queue.len().is_multiple_of(FLUSH_AT as usize) {
                self.flush_now.notify_one();
            }
            return true;
        }
        self.success(generation, current);
        true
    }

    /// Counts a SUCCESS of a permit admitted in `generation`, on this thread's stripe.
    #[inline]
    fn success(&self, generation: u64, current: impl FnOnce() -> u64) {
        let tag = tag(generation);
        let stripe = &self.successes[stripe::index()];
        let mut w = stripe.load(Ordering::Relaxed);
        while w & !COUNT_MASK == tag {
            match stripe.compare_exchange_weak(w, w + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    if (w + 1) & COUNT_MASK == FLUSH_AT {
                        self.flush_now.notify_one();
                    }
                    return;
                }
                Err(now) => w = now,
            }
        }
        self.success_elsewhere(generation, current);
    }

    /// A success of another generation than the counters': the counters move on to a
    /// newer (or the current) generation; a late one is kept aside.
    #[cold]
    fn success_elsewhere(&self, generation: u64, current: impl FnOnce() -> u64) {
        let mut t = lock(&self.tally);
        // The tags change only under this lock, all together: every stripe is tagged
        // with `t.generation` whenever the lock is free.
        let stripe = &self.successes[stripe::index()];
        if stripe.load(Ordering::Relaxed) & !COUNT_MASK == tag(generation) {
            stripe.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if generation > t.generation || generation == current() {
            // Each stripe's count is taken with its retagging in one step: an increment
            // lands before it (and is taken here) or fails its exchange and retries.
            let before: u64 = self
                .successes
                .iter()
                .map(|s| s.swap(tag(generation), Ordering::Relaxed) & COUNT_MASK)
                .sum();
            stripe.fetch_add(1, Ordering::Relaxed);
            let previous = t.generation;
            add(&mut t.older, previous, before);
            t.generation = generation;
        } else {
            add(&mut t.older, generation, 1);
        }
    }

    /// Takes every pending success, oldest generations first, as batches for `name`.
    pub(super) fn take(&self, name: &str) -> Vec<v1::OutcomeBatch> {
        let mut t = lock(&self.tally);
        let counted: u64 = self
            .successes
            .iter()
            .map(|s| s.fetch_and(!COUNT_MASK, Ordering::Relaxed) & COUNT_MASK)
            .sum();
        let generation = t.generation;
        let mut taken = std::mem::take(&mut t.older);
        add(&mut taken, generation, counted);
        drop(t);
        let mut batches: Vec<v1::OutcomeBatch> = taken
            .into_iter()
            .map(|(generation, successes)| outcome_batch(name, generation, successes))
            .collect();
        // Each slow success is listed with its duration, in its generation's batch.
        let slow = std::mem::take(&mut *lock(&self.slow));
        for (generation, took) in slow {
            let at = match batches.iter().position(|b| b.generation == generation) {
                Some(at) => at,
                None => {
                    batches.push(outcome_batch(name, generation, 0));
                    batches.len() - 1
                }
            };
            let b = &mut batches[at];
            b.outcomes.push(v1::Outcome::Success as i32);
            b.durations.push(convert::duration(took));
        }
        batches.sort_by_key(|b| b.generation);
        batches
    }

    /// Drops every pending success, counted for the next send to report lost (the slow
    /// successes, listed one by one with their durations, too).
    pub(super) fn drop_all(&self) {
        let pending: u64 = self
            .take("")
            .iter()
            .map(|b| b.successes + b.outcomes.len() as u64)
            .sum();
        self.dropped.fetch_add(pending, Ordering::Relaxed);
    }

    /// How many pending outcomes were dropped since the last call.
    pub(super) fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }

    /// Waits until a counter or the queue of slow successes fills up.
    pub(super) async fn flush_wanted(&self) {
        self.flush_now.notified().await;
    }
}

/// A batch of `successes` of `generation` and nothing else yet.
pub(crate) fn outcome_batch(name: &str, generation: u64, successes: u64) -> v1::OutcomeBatch {
    v1::OutcomeBatch {
        durations: Vec::new(),
        name: name.to_owned(),
        generation,
        successes,
        outcomes: Vec::new(),
    }
}

fn add(counts: &mut Vec<(u64, u64)>, generation: u64, n: u64) {
    if n == 0 || generation == 0 {
        return;
    }
    match counts.iter_mut().find(|(g, _)| *g == generation) {
        Some((_, count)) => *count += n,
        None => counts.push((generation, n)),
    }
}
