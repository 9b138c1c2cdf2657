//! The daemon's clock: tokio's monotonic clock anchored to the wall clock at start.
//!
//! The status machine wants instants as durations since the Unix epoch, so `open_until`
//! and permit expiries mean something to clients and survive a restart. Reading the
//! wall clock on every call would let an NTP step move deadlines; instead the wall clock
//! is read once, at start, and time then advances with tokio's monotonic clock, which
//! tests can pause and advance.

use resilient_circuit_breaker::Time;
use std::time::SystemTime;
use tokio::time::Instant;

/// Maps tokio's clock to [`Time`] and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    base_instant: Instant,
    base_time: Time,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// Anchored to the wall clock now.
    pub fn new() -> Clock {
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Clock::starting_at(wall)
    }

    /// Anchored so that this instant reads `time` (tests use a fixed start).
    pub fn starting_at(time: Time) -> Clock {
        Clock {
            base_instant: Instant::now(),
            base_time: time,
        }
    }

    /// The current time.
    pub fn now(&self) -> Time {
        self.base_time + self.base_instant.elapsed()
    }

    /// The tokio instant at which the clock will read `time` (now, if `time` is past).
    pub fn instant_at(&self, time: Time) -> Instant {
        self.base_instant + time.saturating_sub(self.base_time)
    }
}
