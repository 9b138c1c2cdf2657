//! Striping: what every decision of a protector shared by many threads writes is spread
//! over cache lines, one per thread where the stripes suffice, so two cores deciding at
//! once never pass one line back and forth (a cached decision costs tens of
//! nanoseconds; one contended line costs more than the decision).
//!
//! A thread takes its stripe number the first time it needs one, from a process-wide
//! counter: the threads that decide (a runtime's workers) get consecutive numbers, so
//! [`STRIPES`] of them never share a stripe.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Stripes per striped value: a power of two, enough for the worker threads of a
/// typical host; past it, threads share stripes (correct, only slower).
pub(crate) const STRIPES: usize = 16;

/// A value alone on its cache line(s): 128 bytes, as adjacent-line prefetchers pair
/// 64-byte lines.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
}

/// This thread's stripe, in `0..STRIPES`.
#[inline]
pub(crate) fn index() -> usize {
    MINE.with(|i| *i)
}

/// A counter each thread adds to on its own stripe; reading sums the stripes.
#[derive(Debug)]
pub(crate) struct Counter {
    cells: Box<[Padded<AtomicU64>]>,
}

impl Default for Counter {
    fn default() -> Counter {
        Counter {
            cells: (0..STRIPES).map(|_| Padded(AtomicU64::new(0))).collect(),
        }
    }
}

impl Counter {
    #[inline]
    pub(crate) fn bump(&self) {
        self.cells[index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The total so far (each stripe read once; concurrent additions may or may not count).
    pub(crate) fn get(&self) -> u64 {
        self.cells.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_striped_counter_sums_every_threads_additions() {
        let counter = Counter::default();
        std::thread::scope(|s| {
            for _ in 0..2 * STRIPES {
                s.spawn(|| (0..1000).for_each(|_| counter.bump()));
            }
        });
        assert_eq!(counter.get(), 2 * STRIPES as u64 * 1000);
    }

    #[test]
    fn padded_values_sit_on_their_own_lines() {
        assert_eq!(std::mem::align_of::<Padded<AtomicU64>>(), 128);
        assert_eq!(std::mem::size_of::<Padded<AtomicU64>>(), 128);
    }
}
