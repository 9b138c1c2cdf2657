//! Recording outcomes and judging them: the rules of proto/SEMANTICS.md sections 2 and 2a
//! (count and time windows, streaks, slow calls, which reason wins) and the transitions
//! they cause, with the cooldown backoff of a reopening.

use std::time::Duration;

use super::protector::{Protector, add};
use super::types::*;
use crate::Time;
use crate::policy::MAX_COOLDOWN;
use crate::rules::Multiplier;
use crate::window::{TimeWindow, Window};

impl Protector {
    /// Counts `outcome` (slow or not) recorded at `at`: CLOSED with a time window records
    /// it there, every other status in the count window. IGNORED is recorded nowhere.
    pub(super) fn record(&mut self, outcome: Outcome, slow: bool, at: Time) {
        let failed = match outcome {
            Outcome::Success => {
                add(&mut self.counters.successes, 1);
                self.consecutive_failures = 0;
                false
            }
            Outcome::Failure => {
                add(&mut self.counters.failures, 1);
                add(&mut self.consecutive_failures, 1);
                true
            }
            Outcome::Ignored => {
                add(&mut self.counters.ignored, 1);
                return;
            }
        };
        match &mut self.time_window {
            Some(tw) if self.status == Status::Closed => tw.record(at, failed, slow, 1),
            _ => self.window.push_call(failed, slow),
        }
    }

    /// Checks the rules of the current status after `outcome` (slow or not) was recorded
    /// at `at`; `expired` when it is an expired trial permit. When several rules hold, the
    /// older rule's reason wins (section 2a).
    pub(super) fn evaluate(
        &mut self,
        outcome: Outcome,
        slow: bool,
        at: Time,
        expired: bool,
    ) -> Option<Transition> {
        if self.override_.is_some() || outcome == Outcome::Ignored {
            return None;
        }
        let policy = self.policy;
        match self.status {
            Status::Closed => {
                let failed = outcome == Outcome::Failure;
                let (full, calls, failures, slows) = match &self.time_window {
                    Some(tw) => (
                        tw.calls() >= u64::from(policy.minimum_calls()),
                        tw.calls(),
                        tw.failures(),
                        tw.slow(),
                    ),
                    None => {
                        let w = &self.window;
                        (w.is_full(), w.len().into(), w.failures().into(), w.slow().into())
                    }
                };
                let streak = policy.consecutive_failures_limit();
                let reason = if failed && full && policy.failure_limit().reached_by_wide(failures, calls) {
                    TransitionReason::FailureLimit
                } else if failed && streak > 0 && self.consecutive_failures >= u64::from(streak) {
                    TransitionReason::ConsecutiveFailures
                } else if slow
                    && full
                    && policy
                        .slow_calls()
                        .is_some_and(|(_, limit)| limit.reached_by_wide(slows, calls))
                {
                    TransitionReason::SlowCalls
                } else {
                    return None;
                };
                Some(self.enter(Status::Open, reason, at, None))
            }
            Status::HalfOpen if self.window.is_full() => {
                let w = &self.window;
                let (len, failures, successes) = (w.len(), w.failures(), w.successes());
                let close = match policy.success_limit() {
                    Some(s) => s.reached_by(successes, len),
                    None => !policy.failure_limit().reached_by(failures, len),
                };
                let too_slow = policy
                    .slow_calls()
                    .is_some_and(|(_, limit)| limit.reached_by(w.slow(), len));
                let (to, reason) = match (close && !too_slow, expired) {
                    (close, true) => (
                        if close { Status::Closed } else { Status::Open },
                        TransitionReason::PermitExpired,
                    ),
                    (true, false) => (Status::Closed, TransitionReason::TrialsSucceeded),
                    (false, false) if close => (Status::Open, TransitionReason::SlowCalls),
                    (false, false) => (Status::Open, TransitionReason::TrialsFailed),
                };
                Some(self.enter(to, reason, at, None))
            }
            Status::HalfOpen | Status::Open => None,
        }
    }

    pub(super) fn window_size_for(&self, status: Status) -> u32 {
        match status {
            Status::HalfOpen => self.policy.half_open_window(),
            Status::Closed | Status::Open => self.policy.closed_window(),
        }
    }

    /// Empties the time window, or makes the one the policy asks for. An existing window of
    /// the same shape is emptied in place, so a protector that trips and recovers keeps its
    /// bucket storage instead of allocating it again.
    pub(super) fn reset_time_window(&mut self) {
        match (self.policy.window_duration(), &mut self.time_window) {
            (Some(d), Some(tw)) => {
                let fresh = TimeWindow::new(d);
                if (tw.width(), tw.span()) == (fresh.width(), fresh.span()) {
                    tw.clear();
                } else {
                    **tw = fresh;
                }
            }
            (Some(d), None) => self.time_window = Some(Box::new(TimeWindow::new(d))),
            (None, _) => self.time_window = None,
        }
    }

    /// How long an OPEN entered now lasts: `open_for` if given (manual), the previous
    /// cooldown times the multiplier for a natural reopening from HALF_OPEN (capped), else
    /// the policy's cooldown. With the multiplier at 1 that is always the cooldown.
    fn next_cooldown(&self, reason: TransitionReason, open_for: Option<Duration>) -> Duration {
        if let Some(d) = open_for {
            return d;
        }
        let m = self.policy.cooldown_multiplier();
        if self.status != Status::HalfOpen || reason == TransitionReason::Manual || m == Multiplier::ONE {
            return self.policy.cooldown();
        }
        m.apply(self.open_for)
            .min(self.policy.max_cooldown())
            .min(MAX_COOLDOWN)
    }

    /// Performs a transition at `at` and returns it.
    pub(super) fn enter(
        &mut self,
        to: Status,
        reason: TransitionReason,
        at: Time,
        open_for: Option<Duration>,
    ) -> Transition {
        let from = self.status;
        let cooldown = (to == Status::Open).then(|| self.next_cooldown(reason, open_for));
        self.status = to;
        self.generation += 1;
        self.trials.clear();
        match to {
            Status::Closed => {
                self.window = Window::new(self.window_size_for(to));
                self.reset_time_window();
                self.consecutive_failures = 0;
                self.open_until = None;
            }
            Status::Open => {
                // The window it tripped with is kept for inspection.
                let cooldown = cooldown.unwrap_or_default();
                self.open_for = cooldown;
                self.open_until = Some(at.saturating_add(cooldown));
            }
            Status::HalfOpen => {
                if from == Status::Closed {
                    // The backoff was reset on entering CLOSED: a reopening multiplies
                    // the policy's cooldown.
                    self.open_for = self.policy.cooldown();
                }
                self.window = Window::new(self.window_size_for(to));
                self.reset_time_window();
                self.open_until = None;
            }
        }
        Transition {
            from,
            to,
            reason,
            generation: self.generation,
            open_until: self.open_until,
            at,
        }
    }
}
