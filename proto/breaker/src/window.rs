//! The windows of recent outcomes. [`Window`] (the library's execution log) is a ring of
//! bits, two per outcome (failed, slow), so a window of 10 costs two words and 100,000
//! protectors cost little. [`TimeWindow`] (proto/SEMANTICS.md section 2a) keeps counts per
//! bucket of time, so its memory is bounded by its bucket count, not the call rate.

use std::collections::VecDeque;
use std::time::Duration;

use crate::Time;

/// A count window of the last `size` SUCCESS/FAILURE outcomes, oldest dropped first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Bit i set = the outcome in ring slot i was a failure; bit `words * 64 + i` set =
    /// it was slow. One allocation for both, so a window costs what it did plus a word.
    bits: Box<[u64]>,
    size: u32,
    /// Ring slot of the oldest outcome.
    head: u32,
    len: u32,
    failures: u32,
    slow: u32,
}

impl Window {
    /// An empty window of `size` slots (at least 1).
    pub fn new(size: u32) -> Window {
        let size = size.max(1);
        Window {
            bits: vec![0; 2 * size.div_ceil(64) as usize].into_boxed_slice(),
            size,
            head: 0,
            len: 0,
            failures: 0,
            slow: 0,
        }
    }

    /// A window of `size` slots holding `outcomes` (true = failure), oldest first; when
    /// there are more than `size`, only the newest are kept.
    pub fn from_outcomes(size: u32, outcomes: impl IntoIterator<Item = bool>) -> Window {
        let mut w = Window::new(size);
        for failed in outcomes {
            w.push(failed);
        }
        w
    }

    /// A window of `size` slots holding `outcomes` (true = failure) with their slow
    /// marks (`slow`, by position; missing marks are not slow), oldest first.
    pub fn from_calls(size: u32, outcomes: Vec<bool>, slow: Vec<bool>) -> Window {
        let mut w = Window::new(size);
        for (i, failed) in outcomes.into_iter().enumerate() {
            w.push_call(failed, slow.get(i).copied().unwrap_or(false));
        }
        w
    }

    /// Appends an outcome that was not slow, dropping the oldest when full.
    pub fn push(&mut self, failed: bool) {
        self.push_call(failed, false);
    }

    /// Appends an outcome, failed or not, slow or not, dropping the oldest when full.
    pub fn push_call(&mut self, failed: bool, slow: bool) {
        let slot = if self.len == self.size {
            let oldest = self.head;
            if self.bit(oldest) {
                self.failures -= 1;
            }
            if self.bit(self.slow_slot(oldest)) {
                self.slow -= 1;
            }
            self.head = (self.head + 1) % self.size;
            oldest
        } else {
            self.len += 1;
            (self.head + self.len - 1) % self.size
        };
        self.set_bit(slot, failed);
        self.set_bit(self.slow_slot(slot), slow);
        self.failures += u32::from(failed);
        self.slow += u32::from(slow);
    }

    /// Slow outcomes held.
    pub fn slow(&self) -> u32 {
        self.slow
    }

    /// Whether each outcome was slow, oldest first.
    pub fn iter_slow(&self) -> impl Iterator<Item = bool> + '_ {
        (0..self.len).map(move |i| self.bit(self.slow_slot((self.head + i) % self.size)))
    }

    fn slow_slot(&self, slot: u32) -> u32 {
        (self.bits.len() as u32 / 2) * 64 + slot
    }

    /// The capacity.
    pub fn size(&self) -> u32 {
        self.size
    }
    /// Outcomes held.
    pub fn len(&self) -> u32 {
        self.len
    }
    /// Whether no outcome is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Whether the window holds `size` outcomes.
    pub fn is_full(&self) -> bool {
        self.len == self.size
    }
    /// Failures held.
    pub fn failures(&self) -> u32 {
        self.failures
    }
    /// Successes held.
    pub fn successes(&self) -> u32 {
        self.len - self.failures
    }
    /// The outcomes, oldest first (true = failure).
    pub fn iter(&self) -> impl Iterator<Item = bool> + '_ {
        (0..self.len).map(move |i| self.bit((self.head + i) % self.size))
    }

    fn bit(&self, slot: u32) -> bool {
        self.bits[(slot / 64) as usize] & (1 << (slot % 64)) != 0
    }

    fn set_bit(&mut self, slot: u32, on: bool) {
        let word = &mut self.bits[(slot / 64) as usize];
        if on {
            *word |= 1 << (slot % 64);
        } else {
            *word &= !(1 << (slot % 64));
        }
    }
}

/// A time window (proto/SEMANTICS.md section 2a): calls, failures and slow calls counted
/// per bucket of `width` (100 ms up to a 6 min window, 1 s above), over the last `span`
/// buckets, the current one included. Only non-empty buckets are stored, at most `span`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeWindow {
    width_ms: u64,
    span: u64,
    /// Oldest first, indices strictly increasing.
    buckets: VecDeque<Bucket>,
    /// The newest bucket index seen: the window's clock, which never goes back.
    latest: u64,
    calls: u64,
    failures: u64,
    slow: u64,
}

/// One bucket's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// floor(instant / width) since the Unix epoch.
    pub index: u64,
    /// SUCCESS and FAILURE outcomes recorded in it.
    pub calls: u32,
    /// FAILUREs among them.
    pub failures: u32,
    /// Slow calls among them.
    pub slow: u32,
}

/// Up to this window length buckets are 100 ms wide, above it 1 s.
const FINE_UP_TO: Duration = Duration::from_secs(360);

impl TimeWindow {
    /// An empty window over `duration` (the policy checks 1 s to 1 h).
    pub fn new(duration: Duration) -> TimeWindow {
        let width_ms: u64 = if duration <= FINE_UP_TO { 100 } else { 1_000 };
        let span = u64::try_from(duration.as_nanos().div_ceil(u128::from(width_ms) * 1_000_000))
            .unwrap_or(u64::MAX)
            .max(1);
        TimeWindow {
            width_ms,
            span,
            buckets: VecDeque::new(),
            latest: 0,
            calls: 0,
            failures: 0,
            slow: 0,
        }
    }

    /// The bucket width.
    pub fn width(&self) -> Duration {
        Duration::from_millis(self.width_ms)
    }
    /// How many buckets the window spans (the current one included).
    pub fn span(&self) -> u64 {
        self.span
    }
    /// The bucket holding instant `t`.
    pub fn bucket_of(&self, t: Time) -> u64 {
        t.as_secs()
            .saturating_mul(1_000)
            .saturating_add(u64::from(t.subsec_millis()))
            / self.width_ms
    }

    /// Drops the buckets older than the window at `now` (or at the newest instant seen,
    /// if later).
    pub fn expire(&mut self, now: Time) {
        self.latest = self.latest.max(self.bucket_of(now));
        while let Some(oldest) = self.buckets.front()
            && oldest.index.saturating_add(self.span) <= self.latest
        {
            self.calls -= u64::from(oldest.calls);
            self.failures -= u64::from(oldest.failures);
            self.slow -= u64::from(oldest.slow);
            self.buckets.pop_front();
        }
    }

    /// Records `n` calls at `now` (at the newest instant seen, if later), all failed or
    /// not, all slow or not, after dropping what fell out of the window. A bucket counts
    /// at most `u32::MAX` calls; more are not counted.
    pub fn record(&mut self, now: Time, failed: bool, slow: bool, n: u64) {
        self.expire(now);
        let index = self.latest;
        let bucket = match self.buckets.back_mut() {
            Some(b) if b.index == index => b,
            _ => {
                if self.buckets.len() == self.buckets.capacity() {
                    // Grow by doubling, but never past the span: the memory bound is the
                    // bucket count, not the next power of two above it.
                    let span = usize::try_from(self.span).unwrap_or(usize::MAX);
                    let want = (self.buckets.len() * 2).clamp(4, span.max(4));
                    self.buckets.reserve_exact(want - self.buckets.len());
                }
                self.buckets.push_back(Bucket {
                    index,
                    calls: 0,
                    failures: 0,
                    slow: 0,
                });
                self.buckets.back_mut().expect("just pushed")
            }
        };
        let n = n.min(u64::from(u32::MAX - bucket.calls)) as u32;
        bucket.calls += n;
        self.calls += u64::from(n);
        if failed {
            bucket.failures += n;
            self.failures += u64::from(n);
        }
        if slow {
            bucket.slow += n;
            self.slow += u64::from(n);
        }
    }

    /// Empties the window, keeping its bucket storage.
    pub fn clear(&mut self) {
        self.buckets.clear();
        self.latest = 0;
        self.calls = 0;
        self.failures = 0;
        self.slow = 0;
    }

    /// Calls in the window (as of the last record or expire).
    pub fn calls(&self) -> u64 {
        self.calls
    }
    /// Failures in the window.
    pub fn failures(&self) -> u64 {
        self.failures
    }
    /// Successes in the window.
    pub fn successes(&self) -> u64 {
        self.calls - self.failures
    }
    /// Slow calls in the window.
    pub fn slow(&self) -> u64 {
        self.slow
    }
    /// The non-empty buckets, oldest first.
    pub fn buckets(&self) -> impl Iterator<Item = &Bucket> + '_ {
        self.buckets.iter()
    }
    /// Bytes this window holds on the heap (its bucket storage's capacity).
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Bucket>()
    }

    /// The window's clock (the newest bucket index seen) and its non-empty buckets, as
    /// plain data for persistence.
    pub fn state(&self) -> TimeWindowState {
        TimeWindowState {
            latest: self.latest,
            buckets: self.buckets.iter().copied().collect(),
        }
    }

    /// A window over `duration` holding `state`, checked: buckets in strictly increasing
    /// order, none newer than the clock or older than the window, each counting at
    /// least one call and no more failures or slow calls than calls.
    pub fn restore(duration: Duration, state: TimeWindowState) -> Result<TimeWindow, &'static str> {
        let mut w = TimeWindow::new(duration);
        let ordered = state.buckets.windows(2).all(|b| b[0].index < b[1].index);
        let inside = state
            .buckets
            .iter()
            .all(|b| b.index <= state.latest && b.index.saturating_add(w.span) > state.latest);
        let counted = state
            .buckets
            .iter()
            .all(|b| b.calls > 0 && b.failures <= b.calls && b.slow <= b.calls);
        if !ordered || !inside || !counted {
            return Err("time window buckets out of order, out of the window or miscounted");
        }
        w.latest = state.latest;
        for b in &state.buckets {
            w.calls += u64::from(b.calls);
            w.failures += u64::from(b.failures);
            w.slow += u64::from(b.slow);
        }
        w.buckets = state.buckets.into();
        Ok(w)
    }
}

/// A [`TimeWindow`] as plain data: its clock and its non-empty buckets, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeWindowState {
    /// The newest bucket index the window has seen.
    pub latest: u64,
    /// The non-empty buckets, oldest first.
    pub buckets: Vec<Bucket>,
}
