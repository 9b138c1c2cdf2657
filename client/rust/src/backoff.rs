//! How long a retry waits before its next attempt.
//!
//! Design note:
//! - Attempts are numbered from 1: `delay(1)` is the wait after the first failure, before
//!   the second attempt.
//! - [`ExponentialDelay`] grows `min_delay * factor^(n-1)`, caps it at `max_delay`, then
//!   spreads it by `jitter` (a fraction: uniform in `[d*(1-jitter), d*(1+jitter)]`) and caps
//!   again, so `max_delay` is a hard ceiling. The library applied the cap before the jitter
//!   only, so a capped delay could overshoot its maximum by up to `jitter`.
//! - Jitter draws from the thread's generator by default; [`ExponentialDelay::with_seed`]
//!   gives a reproducible sequence and [`ExponentialDelay::delay_with`] takes any generator,
//!   for tests.
//! - [`FixedDelay`] waits the same every time; `FixedDelay(Duration::ZERO)` does not wait.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, RngExt, SeedableRng};

use crate::sync::lock;

/// A delay schedule for retries.
pub trait Backoff: Send + Sync + fmt::Debug {
    /// The wait after failed attempt `attempt` (1 for the first attempt; 0 is read as 1).
    fn delay(&self, attempt: u32) -> Duration;
}

impl<B: Backoff + ?Sized> Backoff for Arc<B> {
    fn delay(&self, attempt: u32) -> Duration {
        (**self).delay(attempt)
    }
}

impl<B: Backoff + ?Sized> Backoff for Box<B> {
    fn delay(&self, attempt: u32) -> Duration {
        (**self).delay(attempt)
    }
}

/// The same wait after every attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FixedDelay(pub Duration);

impl Backoff for FixedDelay {
    fn delay(&self, _attempt: u32) -> Duration {
        self.0
    }
}

/// Why an [`ExponentialDelay`] could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidBackoff {
    /// The first delay exceeds the cap.
    #[error("min_delay ({min:?}) must not exceed max_delay ({max:?})")]
    MinAboveMax {
        /// The `min_delay` given.
        min: Duration,
        /// The `max_delay` given.
        max: Duration,
    },
    /// The delays would shrink, or the factor is not a number.
    #[error("factor must be a finite number >= 1, got {0}")]
    Factor(f64),
    /// The jitter is not a fraction.
    #[error("jitter must be between 0 and 1 inclusive, got {0}")]
    Jitter(f64),
}

/// Delays that grow by `factor` from `min_delay` up to `max_delay`, with jitter.
///
/// Defaults (as in the library): `factor` 2, `jitter` 0.1 (the value the library's own
/// documentation uses; its dataclass had no jitter, which makes a fleet of clients retry in
/// lockstep).
#[derive(Clone)]
pub struct ExponentialDelay {
    min_delay: Duration,
    max_delay: Duration,
    factor: f64,
    jitter: f64,
    /// Shared, so clones of a seeded schedule continue one sequence rather than repeat it.
    seeded: Option<Arc<Mutex<SmallRng>>>,
}

impl ExponentialDelay {
    /// The default growth factor.
    pub const DEFAULT_FACTOR: f64 = 2.0;
    /// The default jitter fraction.
    pub const DEFAULT_JITTER: f64 = 0.1;

    /// From `min_delay` to `max_delay` with the default factor and jitter.
    pub fn new(min_delay: Duration, max_delay: Duration) -> Result<Self, InvalidBackoff> {
        Self::try_new(min_delay, max_delay, Self::DEFAULT_FACTOR, Self::DEFAULT_JITTER)
    }

    /// Every setting explicit; each rule is checked with its own error.
    pub fn try_new(
        min_delay: Duration,
        max_delay: Duration,
        factor: f64,
        jitter: f64,
    ) -> Result<Self, InvalidBackoff> {
        if min_delay > max_delay {
            return Err(InvalidBackoff::MinAboveMax {
                min: min_delay,
                max: max_delay,
            });
        }
        // Written so that NaN fails too.
        if !(factor.is_finite() && factor >= 1.0) {
            return Err(InvalidBackoff::Factor(factor));
        }
        if !(0.0..=1.0).contains(&jitter) {
            return Err(InvalidBackoff::Jitter(jitter));
        }
        Ok(Self {
            min_delay,
            max_delay,
            factor,
            jitter,
            seeded: None,
        })
    }

    /// The same schedule with another growth factor.
    pub fn factor(self, factor: f64) -> Result<Self, InvalidBackoff> {
        Self::try_new(self.min_delay, self.max_delay, factor, self.jitter).map(|s| s.keep_rng(self.seeded))
    }

    /// The same schedule with another jitter fraction (0 for none).
    pub fn jitter(self, jitter: f64) -> Result<Self, InvalidBackoff> {
        Self::try_new(self.min_delay, self.max_delay, self.factor, jitter).map(|s| s.keep_rng(self.seeded))
    }

    /// Draws jitter from a generator seeded with `seed`, for reproducible delays.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seeded = Some(Arc::new(Mutex::new(SmallRng::seed_from_u64(seed))));
        self
    }

    fn keep_rng(mut self, seeded: Option<Arc<Mutex<SmallRng>>>) -> Self {
        self.seeded = seeded;
        self
    }

    /// The first delay.
    pub fn min_delay(&self) -> Duration {
        self.min_delay
    }

    /// The cap.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// The growth factor.
    pub fn growth_factor(&self) -> f64 {
        self.factor
    }

    /// The jitter fraction.
    pub fn jitter_fraction(&self) -> f64 {
        self.jitter
    }

    /// The delay before jitter: `min(max_delay, min_delay * factor^(attempt-1))`.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1);
        let nanos = self.min_delay.as_nanos() as f64 * self.factor.powf(f64::from(exponent));
        self.capped(nanos)
    }

    /// The delay for `attempt`, drawing jitter from `rng`.
    pub fn delay_with<R: Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let base = self.base_delay(attempt);
        if self.jitter == 0.0 || base.is_zero() {
            return base;
        }
        let nanos = base.as_nanos() as f64;
        let low = nanos * (1.0 - self.jitter);
        let high = nanos * (1.0 + self.jitter);
        self.capped(rng.random_range(low..=high))
    }

    /// `nanos` as a duration, never above `max_delay`.
    fn capped(&self, nanos: f64) -> Duration {
        // Comparing in f64 also catches an overflow to infinity.
        if nanos >= self.max_delay.as_nanos() as f64 {
            return self.max_delay;
        }
        let nanos = nanos.round().max(0.0);
        let whole = if nanos < u64::MAX as f64 {
            Duration::from_nanos(nanos as u64)
        } else {
            Duration::from_secs_f64(nanos / 1e9)
        };
        whole.min(self.max_delay)
    }
}

impl Backoff for ExponentialDelay {
    fn delay(&self, attempt: u32) -> Duration {
        match &self.seeded {
            Some(rng) => self.delay_with(attempt, &mut *lock(rng)),
            None => self.delay_with(attempt, &mut rand::rng()),
        }
    }
}

impl fmt::Debug for ExponentialDelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExponentialDelay")
            .field("min_delay", &self.min_delay)
            .field("max_delay", &self.max_delay)
            .field("factor", &self.factor)
            .field("jitter", &self.jitter)
            .field("seeded", &self.seeded.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn exponential(min_ms: u32, max_ms: u32, factor: f64, jitter: f64) -> ExponentialDelay {
        ExponentialDelay::try_new(min_ms * MS, max_ms * MS, factor, jitter).expect("valid backoff")
    }

    #[test]
    fn exponential_delay_grows_from_min_by_factor_up_to_the_cap() {
        let doubling = exponential(100, 1_000, 2.0, 0.0);
        let delays: Vec<_> = (1..=6).map(|n| doubling.delay(n)).collect();
        assert_eq!(
            delays,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1_000 * MS, 1_000 * MS]
        );

        let tripling = exponential(10, 500, 3.0, 0.0);
        let delays: Vec<_> = (1..=5).map(|n| tripling.delay(n)).collect();
        assert_eq!(delays, [10 * MS, 30 * MS, 90 * MS, 270 * MS, 500 * MS]);

        // Far past the cap the growth overflows f64; the cap still holds.
        assert_eq!(doubling.delay(u32::MAX), 1_000 * MS);
        // Attempt 0 is read as the first.
        assert_eq!(doubling.delay(0), 100 * MS);
    }

    #[test]
    fn exponential_delay_defaults_to_factor_two_and_a_tenth_of_jitter() {
        let backoff = ExponentialDelay::new(MS, 10 * MS).unwrap();
        assert_eq!(backoff.growth_factor(), 2.0);
        assert_eq!(backoff.jitter_fraction(), 0.1);
        assert_eq!(backoff.base_delay(3), 4 * MS);
    }

    #[test]
    fn exponential_delay_rejects_invalid_settings_with_a_message_per_rule() {
        let err = ExponentialDelay::try_new(2 * MS, MS, 2.0, 0.1).unwrap_err();
        assert_eq!(err, InvalidBackoff::MinAboveMax { min: 2 * MS, max: MS });
        assert_eq!(err.to_string(), "min_delay (2ms) must not exceed max_delay (1ms)");

        for factor in [0.5, -1.0, f64::NAN, f64::INFINITY] {
            let err = ExponentialDelay::try_new(MS, MS, factor, 0.1).unwrap_err();
            assert!(
                matches!(err, InvalidBackoff::Factor(_)),
                "factor {factor}: {err:?}"
            );
        }
        assert!(
            ExponentialDelay::try_new(MS, MS, 2.0, 0.0)
                .unwrap()
                .factor(0.9)
                .is_err()
        );

        for jitter in [-0.01, 1.01, f64::NAN] {
            let err = ExponentialDelay::try_new(MS, MS, 2.0, jitter).unwrap_err();
            assert!(
                matches!(err, InvalidBackoff::Jitter(_)),
                "jitter {jitter}: {err:?}"
            );
        }
        assert_eq!(
            ExponentialDelay::try_new(MS, MS, 2.0, 1.5)
                .unwrap_err()
                .to_string(),
            "jitter must be between 0 and 1 inclusive, got 1.5"
        );
        // The bounds themselves are valid.
        assert!(ExponentialDelay::try_new(MS, MS, 1.0, 0.0).is_ok());
        assert!(ExponentialDelay::try_new(MS, MS, 1.0, 1.0).is_ok());
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_never_exceeds_the_cap() {
        let mut lowest = Duration::MAX;
        let mut highest = Duration::ZERO;
        for seed in 0..500 {
            // Attempt 3 is 400 ms before jitter; attempt 5 is capped at 1 s.
            let backoff = exponential(100, 1_000, 2.0, 0.25).with_seed(seed);
            let third = backoff.delay(3);
            assert!((300 * MS..=500 * MS).contains(&third), "seed {seed}: {third:?}");
            lowest = lowest.min(third);
            highest = highest.max(third);
            let capped = backoff.delay(5);
            assert!(
                (750 * MS..=1_000 * MS).contains(&capped),
                "seed {seed}: {capped:?}"
            );
        }
        // Over 500 draws the spread reaches close to both ends of the range.
        assert!(lowest < 320 * MS, "lowest {lowest:?}");
        assert!(highest > 480 * MS, "highest {highest:?}");
    }

    #[test]
    fn a_seeded_schedule_repeats_and_clones_continue_one_sequence() {
        let draws = |backoff: &ExponentialDelay| (1..=4).map(|n| backoff.delay(n)).collect::<Vec<_>>();
        let first = draws(&exponential(100, 10_000, 2.0, 0.5).with_seed(7));
        let again = draws(&exponential(100, 10_000, 2.0, 0.5).with_seed(7));
        assert_eq!(first, again);
        assert_ne!(first, draws(&exponential(100, 10_000, 2.0, 0.5).with_seed(8)));

        let original = exponential(100, 10_000, 2.0, 0.5).with_seed(7);
        let copy = original.clone();
        assert_eq!(
            [original.delay(1), copy.delay(2), original.delay(3), copy.delay(4)].to_vec(),
            first
        );
    }

    #[test]
    fn fixed_delay_is_the_same_for_every_attempt() {
        let backoff = FixedDelay(250 * MS);
        assert!((1..=10).all(|n| backoff.delay(n) == 250 * MS));
    }
}
