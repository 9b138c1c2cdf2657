//! Time-driven work for every protector from one task: trial permit expiry, override
//! expiry and `auto_half_open`.
//!
//! Design note. A min-heap of (deadline, name) behind a short mutex, and one task that
//! sleeps until the earliest deadline (or until an earlier one is pushed) and then ticks
//! the protectors that are due. The registry pushes a deadline only when a protector's
//! next deadline moves earlier than the one already queued, so the heap holds about one
//! entry per protector with pending work, and none for a quiet CLOSED one. A stale entry
//! (the deadline moved later) costs one harmless tick. Expiries also apply lazily on the
//! next call, and each takes effect at its own instant, so a late wake-up changes
//! nothing but when watchers hear of it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Mutex, MutexGuard};

use resilient_circuit_breaker::Time;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

/// The queue of deadlines.
#[derive(Debug, Default)]
pub struct Scheduler {
    heap: Mutex<BinaryHeap<Reverse<(Time, String)>>>,
    wake: Notify,
}

impl Scheduler {
    fn lock(&self) -> MutexGuard<'_, BinaryHeap<Reverse<(Time, String)>>> {
        // A push or pop cannot leave the heap half-updated.
        self.heap.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a tick of `name` at `at`; wakes the task when it is the new earliest.
    pub fn schedule(&self, at: Time, name: &str) {
        let mut heap = self.lock();
        let earliest = heap.peek().is_none_or(|Reverse((t, _))| at < *t);
        heap.push(Reverse((at, name.to_owned())));
        drop(heap);
        if earliest {
            self.wake.notify_one();
        }
    }

    fn pop_due(&self, now: Time) -> Vec<String> {
        let mut heap = self.lock();
        let mut due = Vec::new();
        while heap.peek().is_some_and(|Reverse((t, _))| *t <= now) {
            if let Some(Reverse((_, name))) = heap.pop() {
                due.push(name);
            }
        }
        due
    }

    fn earliest(&self) -> Option<Time> {
        self.lock().peek().map(|Reverse((t, _))| *t)
    }
}

impl Scheduler {
    /// The scheduler task: until `shutdown`, calls `tick` with each name whose deadline
    /// `clock` has reached. `tick` is the registry's; taking it as an argument keeps this
    /// queue free of the registry that fills it.
    pub async fn run(&self, clock: &Clock, shutdown: CancellationToken, tick: impl Fn(&str)) {
        loop {
            let now = clock.now();
            for name in self.pop_due(now) {
                tick(&name);
            }
            let sleep = self
                .earliest()
                .map(|t| tokio::time::sleep_until(clock.instant_at(t)));
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = async {
                    match sleep {
                        Some(s) => s.await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }
}
