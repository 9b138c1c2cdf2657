//! A latency histogram that a hot path can record into without a lock: one atomic per
//! bucket. A leaf module (it imports nothing of the crate), so the store can time its
//! commits with it without depending on the rest of the daemon.
//!
//! Why not `prometheus_client`'s `Histogram`: it takes a lock on every observation,
//! which every RPC and every journal commit would queue on. Here an observation is
//! three relaxed atomic additions; a scrape reads the buckets and sums them, so the
//! count it reports always equals its `+Inf` bucket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: 100 µs to 10 s, roughly 1-2.5-5 per decade.
pub const BOUNDS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Counts of observations per bucket (the last is `+Inf`) and their sum.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

/// A histogram as read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Seconds, summed.
    pub sum: f64,
    /// Observations.
    pub count: u64,
    /// Cumulative counts per upper bound, `+Inf` last (as `f64::MAX`, which the encoder writes `+Inf`).
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let slot = BOUNDS.iter().position(|b| secs <= *b).unwrap_or(BOUNDS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The counts now, cumulative as Prometheus wants them.
    pub fn snapshot(&self) -> Snapshot {
        let mut running = 0;
        let buckets = BOUNDS
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip(&self.buckets)
            .map(|(bound, n)| {
                running += n.load(Ordering::Relaxed);
                (bound, running)
            })
            .collect();
        Snapshot {
            sum: Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)).as_secs_f64(),
            count: running,
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_count_is_the_last() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets.first(), Some(&(0.0001, 1)));
        assert_eq!(s.buckets.iter().find(|(b, _)| *b == 0.005).map(|x| x.1), Some(2));
        assert_eq!(s.buckets.last(), Some(&(f64::MAX, 3)));
        assert!((s.sum - 60.00305).abs() < 1e-9);
    }
}
