//! What every driver shares: the measured window, the per-worker tally of decisions and
//! their latency, and the workload (which protector, which outcome).
//!
//! A decision counts when it completes inside the window (after the warmup, before the
//! end), whenever it started: the rate is then completions per second of the window, and
//! a decision that straddles the boundary is counted once, at its end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use resilient_circuit_api::v1;
use tokio::task::JoinSet;

/// The longest latency the histogram holds exactly; longer ones are recorded as this.
const LATENCY_CEILING_NS: u64 = 60_000_000_000;

/// An empty histogram of latencies in nanoseconds, to 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_CEILING_NS, 3)
        .expect("the bounds are constants that hdrhistogram accepts")
}

/// How many empty intervals [`timer_floor_ns`] times.
const FLOOR_SAMPLES: u32 = 100_000;

/// The median of an empty interval timed as [`Tally::decided`] times a decision (one
/// clock read at the start, one at the end), in nanoseconds: what the clock itself adds
/// to every latency figure. A local decision costs tens of nanoseconds, about as much as
/// a read of a virtual machine's clock, so its figure is read beside this one.
pub fn timer_floor_ns() -> u64 {
    let mut floor = latency_histogram();
    for _ in 0..FLOOR_SAMPLES {
        let started = Instant::now();
        let ns = u64::try_from(Instant::now().duration_since(started).as_nanos()).unwrap_or(u64::MAX);
        floor.saturating_record(ns.max(1));
    }
    floor.value_at_quantile(0.5)
}

/// When the run measures.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Decisions completing before this are warmup.
    pub warm_end: Instant,
    /// No decision starts after this; those completing after it are not counted.
    pub end: Instant,
    /// Past this, workers stop waiting for answers still outstanding.
    pub give_up: Instant,
}

impl Window {
    /// A window opening `warmup` from now and lasting `duration`; stragglers get `grace`.
    pub fn starting_now(warmup: Duration, duration: Duration, grace: Duration) -> Window {
        let warm_end = Instant::now() + warmup;
        let end = warm_end + duration;
        Window {
            warm_end,
            end,
            give_up: end + grace,
        }
    }

    fn holds(&self, at: Instant) -> bool {
        at >= self.warm_end && at <= self.end
    }

    /// Whether a new decision may start at `at`.
    pub fn open_at(&self, at: Instant) -> bool {
        at < self.end
    }
}

/// How one decision ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Acquire admitted the call; the report is still to come.
    Admitted(Option<v1::Permit>),
    /// Acquire rejected the call: the decision is complete.
    Rejected,
    /// The report was answered: the decision is complete.
    Reported,
    /// The request failed (the daemon's error, or the stream's).
    Failed(String),
}

impl Answer {
    /// An Acquire answer.
    pub fn acquired(r: v1::AcquireResponse) -> Answer {
        if r.decision == v1::Decision::Admitted as i32 {
            Answer::Admitted(r.permit)
        } else {
            Answer::Rejected
        }
    }
}

/// One worker's (or one stream's) counts and latencies.
#[derive(Debug, Clone)]
pub struct Tally {
    latency_ns: Histogram<u64>,
    /// Decisions admitted (and reported).
    pub admitted: u64,
    /// Decisions rejected.
    pub rejected: u64,
    /// Requests that failed inside the window.
    pub errors: u64,
    /// The first failure, for the operator.
    pub first_error: Option<String>,
}

impl Tally {
    /// An empty tally.
    pub fn new() -> Tally {
        Tally {
            latency_ns: latency_histogram(),
            admitted: 0,
            rejected: 0,
            errors: 0,
            first_error: None,
        }
    }

    /// A decision that began at `started` has just completed.
    pub fn decided(&mut self, window: &Window, started: Instant, admitted: bool) {
        let now = Instant::now();
        if !window.holds(now) {
            return;
        }
        let ns = u64::try_from(now.duration_since(started).as_nanos()).unwrap_or(u64::MAX);
        self.latency_ns.saturating_record(ns.max(1));
        if admitted {
            self.admitted += 1;
        } else {
            self.rejected += 1;
        }
    }

    /// A request failed just now.
    pub fn failed(&mut self, window: &Window, why: String) {
        if self.first_error.is_none() {
            self.first_error = Some(why);
        }
        if window.holds(Instant::now()) {
            self.errors += 1;
        }
    }

    /// Adds another worker's tally to this one.
    pub fn merge(&mut self, other: &Tally) {
        self.latency_ns
            .add(&other.latency_ns)
            .expect("tallies share their bounds");
        self.admitted += other.admitted;
        self.rejected += other.rejected;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    /// The merged tallies of `tasks` as they end; a task that panicked or was cancelled
    /// counts as a failure of `what`.
    pub async fn gather(mut tasks: JoinSet<Tally>, window: &Window, what: &str) -> Tally {
        let mut total = Tally::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(tally) => total.merge(&tally),
                Err(e) => total.failed(window, format!("{what} ended abnormally: {e}")),
            }
        }
        total
    }

    /// Decisions completed in the window.
    pub fn decisions(&self) -> u64 {
        self.admitted + self.rejected
    }

    /// The latency at quantile `q` (0..=1), in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.latency_ns.value_at_quantile(q) as f64 / 1_000.0
    }

    /// The mean latency, in microseconds.
    pub fn mean_us(&self) -> f64 {
        self.latency_ns.mean() / 1_000.0
    }
}

/// Which protector each decision uses and how each admitted call "went".
#[derive(Debug, Clone)]
pub struct Workload {
    /// The protectors' names.
    pub names: Arc<[String]>,
    /// Total decisions in flight, across connections.
    pub concurrency: usize,
    /// The chance that an admitted call is reported as a failure.
    pub failure_rate: f64,
    /// The seed of every worker's outcome sequence.
    pub seed: u64,
    /// Whether a decision ends at its Acquire (admitted calls are never reported).
    pub acquire_only: bool,
    /// The call duration every Report carries, if any.
    pub report_duration: Option<prost_types::Duration>,
}

impl Workload {
    /// The protector of `worker`'s `iteration`th decision. Workers stride over the names
    /// so that, with as many protectors as workers, each worker keeps one to itself.
    pub fn name(&self, worker: usize, iteration: u64) -> &str {
        &self.names[self.index(worker, iteration)]
    }

    /// The index in `names` of that protector.
    pub fn index(&self, worker: usize, iteration: u64) -> usize {
        let p = self.names.len() as u64;
        ((worker as u64).wrapping_add(iteration.wrapping_mul(self.concurrency as u64)) % p) as usize
    }

    /// The outcome sequence of `worker`: reproducible for a given seed.
    pub fn rng(&self, worker: usize) -> SmallRng {
        SmallRng::seed_from_u64(self.seed ^ (worker as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// The next outcome to report.
    pub fn outcome(&self, rng: &mut SmallRng) -> v1::Outcome {
        if self.failure_rate > 0.0 && rng.random_bool(self.failure_rate) {
            v1::Outcome::Failure
        } else {
            v1::Outcome::Success
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(protectors: usize, concurrency: usize, failure_rate: f64) -> Workload {
        Workload {
            names: (0..protectors).map(|i| format!("bench-{i}")).collect(),
            concurrency,
            failure_rate,
            seed: 7,
            acquire_only: false,
            report_duration: None,
        }
    }

    #[test]
    fn workers_stride_over_the_protectors() {
        let w = workload(4, 4, 0.0);
        assert!((0..10).all(|it| w.name(1, it) == "bench-1"));
        let w = workload(3, 2, 0.0);
        let seen: Vec<&str> = (0..3).map(|it| w.name(0, it)).collect();
        assert_eq!(seen, ["bench-0", "bench-2", "bench-1"]);
    }

    #[test]
    fn the_failure_rate_is_honoured_and_reproducible() {
        let w = workload(1, 1, 0.25);
        let draw = |w: &Workload| {
            let mut rng = w.rng(3);
            (0..10_000)
                .filter(|_| w.outcome(&mut rng) == v1::Outcome::Failure)
                .count()
        };
        let failures = draw(&w);
        assert_eq!(failures, draw(&w));
        assert!((2_200..2_800).contains(&failures), "{failures}");
        let never = workload(1, 1, 0.0);
        assert_eq!(draw(&never), 0);
    }

    #[test]
    fn only_decisions_completing_in_the_window_count() {
        let now = Instant::now();
        let future = Window {
            warm_end: now + Duration::from_secs(3600),
            end: now + Duration::from_secs(7200),
            give_up: now + Duration::from_secs(7200),
        };
        let mut t = Tally::new();
        t.decided(&future, now, true);
        assert_eq!(t.decisions(), 0);
        let open = Window {
            warm_end: now,
            ..future
        };
        t.decided(&open, now, true);
        t.decided(&open, now, false);
        let mut total = Tally::new();
        total.merge(&t);
        total.merge(&t);
        assert_eq!((total.admitted, total.rejected, total.decisions()), (2, 2, 4));
        assert!(total.quantile_us(0.5) > 0.0);
    }
}
