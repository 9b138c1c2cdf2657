//! The reference model's reading of proto/SEMANTICS.md section 2a, as naive as it can be:
//! the time window is every outcome with the instant it counts at, filtered by bucket each
//! time it is judged; the cooldown backoff multiplies with integer arithmetic spelled out.

use std::time::Duration;

use super::model::{Model, reached};
use super::{Outcome, Status, Time, Transition};
use crate::TransitionReason;

const THIRTY_DAYS: Duration = Duration::from_secs(30 * 24 * 3600);

impl Model {
    /// (bucket width in ms, buckets spanned) of the time window, if any.
    fn buckets(&self) -> Option<(u128, u128)> {
        self.rules.window_duration.map(|d| {
            let width: u128 = if d <= Duration::from_secs(360) { 100 } else { 1_000 };
            (width, d.as_nanos().div_ceil(width * 1_000_000))
        })
    }

    /// (calls, failures, slow) in the time window at its newest instant.
    pub fn time_totals(&self) -> (u64, u64, u64) {
        let (Some((width, span)), Some(&(newest, _, _))) = (self.buckets(), self.timed.last()) else {
            return (0, 0, 0);
        };
        let bucket = |t: Time| t.as_millis() / width;
        let inside = self
            .timed
            .iter()
            .filter(|(t, _, _)| bucket(*t) + span > bucket(newest));
        inside.fold((0, 0, 0), |(c, f, s), &(_, failed, slow)| {
            (c + 1, f + u64::from(failed), s + u64::from(slow))
        })
    }

    /// Records `outcome`; answers whether it was slow.
    pub(super) fn record(&mut self, outcome: Outcome, duration: Option<Duration>, at: Time) -> bool {
        let slow = match (self.rules.slow_call_duration, duration) {
            (Some(limit), Some(d)) => d >= limit,
            _ => false,
        };
        let failed = match outcome {
            Outcome::Ignored => {
                self.counters.ignored += 1;
                return slow;
            }
            Outcome::Success => {
                self.counters.successes += 1;
                self.consecutive_failures = 0;
                false
            }
            Outcome::Failure => {
                self.counters.failures += 1;
                self.consecutive_failures += 1;
                true
            }
        };
        if self.status == Status::Closed && self.rules.window_duration.is_some() {
            let at = self.timed.last().map_or(at, |&(newest, _, _)| newest.max(at));
            self.timed.push((at, failed, slow));
        } else {
            self.window.push(failed);
            self.slow.push(slow);
            if self.window.len() > self.window_size {
                self.window.remove(0);
                self.slow.remove(0);
            }
        }
        slow
    }

    /// The rules of the current status, after `outcome` was recorded at `at`.
    pub(super) fn judge(
        &mut self,
        outcome: Outcome,
        slow: bool,
        at: Time,
        expired: bool,
    ) -> Option<Transition> {
        if self.override_.is_some() || outcome == Outcome::Ignored {
            return None;
        }
        let slow_limit = self.rules.slow_call_limit;
        match self.status {
            Status::Closed => {
                let (calls, failures, slows) = if self.rules.window_duration.is_some() {
                    self.time_totals()
                } else {
                    let slows = self.slow.iter().filter(|s| **s).count();
                    (self.window.len() as u64, self.failures() as u64, slows as u64)
                };
                let full = match self.rules.window_duration {
                    Some(_) => {
                        let minimum = self.rules.minimum_calls.unwrap_or(self.spec.failure_limit.1);
                        calls >= u64::from(minimum)
                    }
                    None => self.window.len() == self.closed_window(),
                };
                let failed = outcome == Outcome::Failure;
                let streak = self.rules.consecutive_failures;
                let reason = if failed
                    && full
                    && reached(self.spec.failure_limit, failures as usize, calls as usize)
                {
                    TransitionReason::FailureLimit
                } else if failed && streak > 0 && self.consecutive_failures >= u64::from(streak) {
                    TransitionReason::ConsecutiveFailures
                } else if slow
                    && full
                    && slow_limit.is_some_and(|l| reached(l, slows as usize, calls as usize))
                {
                    TransitionReason::SlowCalls
                } else {
                    return None;
                };
                Some(self.enter(Status::Open, reason, at, None))
            }
            Status::HalfOpen => {
                if self.window.len() < self.window_size {
                    return None;
                }
                let len = self.window.len();
                let close = match self.spec.success_limit {
                    Some(limit) => reached(limit, self.successes(), len),
                    None => !reached(self.spec.failure_limit, self.failures(), len),
                };
                let slows = self.slow.iter().filter(|s| **s).count();
                let too_slow = slow_limit.is_some_and(|l| reached(l, slows, len));
                let (to, reason) = if expired {
                    let to = if close && !too_slow {
                        Status::Closed
                    } else {
                        Status::Open
                    };
                    (to, TransitionReason::PermitExpired)
                } else if !close {
                    (Status::Open, TransitionReason::TrialsFailed)
                } else if too_slow {
                    (Status::Open, TransitionReason::SlowCalls)
                } else {
                    (Status::Closed, TransitionReason::TrialsSucceeded)
                };
                Some(self.enter(to, reason, at, None))
            }
            Status::Open => None,
        }
    }

    /// How long an OPEN entered from `from` for `reason` lasts.
    pub(super) fn cooldown_for(
        &self,
        from: Status,
        to: Status,
        reason: TransitionReason,
        open_for: Option<Duration>,
    ) -> Duration {
        if to != Status::Open {
            return Duration::ZERO;
        }
        if let Some(d) = open_for {
            return d;
        }
        let thousandths = u128::from(self.rules.cooldown_multiplier.as_thousandths());
        let reopening = from == Status::HalfOpen && reason != TransitionReason::Manual;
        if !reopening || thousandths == 1_000 {
            return self.spec.cooldown;
        }
        let nanos = self.last_open.as_nanos() * thousandths / 1_000;
        let grown = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        grown
            .min(self.rules.max_cooldown.unwrap_or(THIRTY_DAYS))
            .min(THIRTY_DAYS)
    }

    /// The cooldown in force.
    pub fn cooldown_in_force(&self) -> Duration {
        if self.status == Status::Closed {
            self.spec.cooldown
        } else {
            self.last_open
        }
    }
}
