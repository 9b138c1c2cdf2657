//! A protector as plain data, for persistence: [`Protector::to_state`] and
//! [`Protector::restore`] round-trip every field, and [`Protector::rebase`] caps the
//! deadlines a restart brings back, whatever the wall clock did meanwhile.

use std::fmt;
use std::time::Duration;

use super::protector::Protector;
use super::types::{Counters, Override, Status};
use crate::Time;
use crate::policy::{Policy, PolicyError, PolicySpec};
use crate::rules::Rules;
use crate::window::{TimeWindow, TimeWindowState, Window};

/// Every field of a [`Protector`], as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectorState {
    /// The policy's inputs.
    pub policy: PolicySpec,
    /// The policy's optional rules (section 2a).
    pub rules: Rules,
    /// The status.
    pub status: Status,
    /// The generation.
    pub generation: u64,
    /// Set exactly while OPEN.
    pub open_until: Option<Time>,
    /// How long the current OPEN was entered for.
    pub open_for: Duration,
    /// The window's capacity.
    pub window_size: u32,
    /// The window's outcomes, oldest first (true = failure).
    pub window: Vec<bool>,
    /// Whether each of them was slow, oldest first; empty = none was (states written
    /// before slow marks existed).
    pub window_slow: Vec<bool>,
    /// CLOSED's time window (kept frozen while OPEN), with a `window_duration`; `None`
    /// with one = empty (states written before it was kept).
    pub time_window: Option<TimeWindowState>,
    /// Failures since the last success or entry into CLOSED.
    pub consecutive_failures: u64,
    /// Outstanding trial permits: (id, expires_at), in id order.
    pub trials: Vec<(u64, Time)>,
    /// The next trial permit id.
    pub next_permit_id: u64,
    /// The override in force.
    pub override_state: Option<Override>,
    /// When the last override ended.
    pub resumed_at: Time,
    /// Lifetime counters.
    pub counters: Counters,
}

/// Why a [`ProtectorState`] cannot be a protector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidState {
    /// The policy breaks a rule.
    Policy(PolicyError),
    /// The fields contradict each other.
    Inconsistent(&'static str),
}

impl fmt::Display for InvalidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidState::Policy(e) => write!(f, "invalid policy: {e}"),
            InvalidState::Inconsistent(why) => write!(f, "inconsistent state: {why}"),
        }
    }
}

impl std::error::Error for InvalidState {}

impl Protector {
    /// Every field, as plain data.
    pub fn to_state(&self) -> ProtectorState {
        ProtectorState {
            trials: self.trials.iter().collect(),
            ..self.state_except_trials()
        }
    }

    /// Every field but the trial permits in flight (`trials` is empty), as plain data:
    /// its size does not grow with the permits outstanding, so a journal can store a
    /// permit handed out or taken back as this plus the one permit.
    pub fn state_except_trials(&self) -> ProtectorState {
        ProtectorState {
            policy: self.policy.spec(),
            rules: self.policy.rules(),
            status: self.status,
            generation: self.generation,
            open_until: self.open_until,
            open_for: self.open_for,
            window_size: self.window.size(),
            window: self.window.iter().collect(),
            // Left empty when none is slow: what a policy without slow calls stores.
            window_slow: if self.window.slow() > 0 {
                self.window.iter_slow().collect()
            } else {
                Vec::new()
            },
            time_window: self.time_window.as_ref().map(|w| w.state()),
            consecutive_failures: self.consecutive_failures,
            trials: Vec::new(),
            next_permit_id: self.next_permit_id,
            override_state: self.override_,
            resumed_at: self.resumed_at,
            counters: self.counters,
        }
    }

    /// A protector from plain data, checked: the policy is valid, OPEN has an
    /// `open_until` and no other status has one, the generation is at least 1, trials
    /// exist only in HALF_OPEN, in id order, below `next_permit_id`.
    pub fn restore(state: ProtectorState) -> Result<Protector, InvalidState> {
        let policy = Policy::try_with(state.policy, state.rules).map_err(InvalidState::Policy)?;
        if state.generation == 0 {
            return Err(InvalidState::Inconsistent("generation 0"));
        }
        if (state.status == Status::Open) != state.open_until.is_some() {
            return Err(InvalidState::Inconsistent(
                "open_until must be set exactly while OPEN",
            ));
        }
        if state.window_size == 0 || state.window_size > crate::policy::MAX_DENOMINATOR {
            return Err(InvalidState::Inconsistent("window size out of range"));
        }
        if state.window.len() > state.window_size as usize {
            return Err(InvalidState::Inconsistent("more outcomes than the window holds"));
        }
        if !state.window_slow.is_empty() && state.window_slow.len() != state.window.len() {
            return Err(InvalidState::Inconsistent("slow marks do not match the outcomes"));
        }
        let time_window = match (policy.window_duration(), state.time_window) {
            (Some(d), Some(w)) => Some(Box::new(
                TimeWindow::restore(d, w).map_err(InvalidState::Inconsistent)?,
            )),
            (Some(d), None) => Some(Box::new(TimeWindow::new(d))),
            (None, Some(_)) => {
                return Err(InvalidState::Inconsistent(
                    "a time window without window_duration",
                ));
            }
            (None, None) => None,
        };
        if !state.trials.is_empty() && state.status != Status::HalfOpen {
            return Err(InvalidState::Inconsistent("trial permits outside HALF_OPEN"));
        }
        let ordered = state.trials.windows(2).all(|w| w[0].0 < w[1].0);
        let below = state
            .trials
            .iter()
            .all(|&(id, _)| id > 0 && id < state.next_permit_id);
        if !ordered || !below {
            return Err(InvalidState::Inconsistent("trial permit ids out of order"));
        }
        Ok(Protector {
            policy,
            status: state.status,
            generation: state.generation,
            open_until: state.open_until,
            window: Window::from_calls(state.window_size, state.window, state.window_slow),
            time_window,
            consecutive_failures: state.consecutive_failures,
            trials: state.trials.into_iter().collect(),
            next_permit_id: state.next_permit_id,
            override_: state.override_state,
            resumed_at: state.resumed_at,
            open_for: state.open_for,
            counters: state.counters,
        })
    }

    /// Caps the deadlines brought back by a restart at `now` plus their configured
    /// length: a wall clock that jumped backwards while the daemon was down never
    /// extends a cooldown or a trial permit beyond its length; one that jumped forwards
    /// may end them early (the next call or tick applies that). Returns whether
    /// anything changed.
    pub fn rebase(&mut self, now: Time) -> bool {
        let mut changed = false;
        if let Some(until) = self.open_until {
            let cap = now.saturating_add(self.open_for);
            if until > cap {
                self.open_until = Some(cap);
                changed = true;
            }
        }
        let ttl_cap = now.saturating_add(self.policy.permit_ttl());
        changed |= self.trials.cap(ttl_cap);
        if self.resumed_at > now {
            self.resumed_at = now;
            changed = true;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Outcome, OverrideKind};

    const T0: Time = Duration::from_secs(1_700_000_000);

    fn tripped(cooldown: Duration) -> Protector {
        let spec = PolicySpec {
            cooldown,
            failure_limit: (2, 3),
            ..PolicySpec::default()
        };
        let mut p = Protector::new(Policy::try_new(spec).unwrap());
        for outcome in [Outcome::Success, Outcome::Failure, Outcome::Failure] {
            let a = p.acquire(T0);
            let crate::Decision::Admitted { permit, .. } = a.decision else {
                panic!("rejected")
            };
            p.report(permit, outcome, T0);
        }
        assert_eq!(p.status(), Status::Open);
        p
    }

    #[test]
    fn every_field_round_trips() {
        let mut p = tripped(Duration::from_secs(10));
        p.set_override(
            Some(Override {
                kind: OverrideKind::Disabled,
                expires_at: Some(T0 + Duration::from_secs(5)),
            }),
            T0,
        );
        let restored = Protector::restore(p.to_state()).unwrap();
        assert_eq!(restored, p);

        let mut half = tripped(Duration::ZERO);
        half.acquire(T0);
        assert_eq!(half.status(), Status::HalfOpen);
        assert_eq!(half.trials_in_flight(), 1);
        assert_eq!(Protector::restore(half.to_state()).unwrap(), half);
    }

    #[test]
    fn rules_time_window_and_slow_marks_round_trip() {
        use crate::Rules;
        let spec = PolicySpec {
            failure_limit: (3, 4),
            ..PolicySpec::default()
        };
        let timed = |window_duration| Rules {
            window_duration,
            slow_call_duration: Some(Duration::from_millis(100)),
            slow_call_limit: Some((4, 5)),
            history_size: 7,
            ..Rules::default()
        };
        for rules in [timed(None), timed(Some(Duration::from_secs(10)))] {
            let mut p = Protector::new(Policy::try_with(spec, rules).unwrap());
            for (i, ms) in [(0u64, 150u64), (1, 10), (25, 300)] {
                let now = T0 + Duration::from_millis(i * 100);
                let a = p.acquire(now);
                let crate::Decision::Admitted { permit, .. } = a.decision else {
                    panic!("rejected")
                };
                p.report_timed(permit, Outcome::Success, Some(Duration::from_millis(ms)), now);
            }
            let state = p.to_state();
            assert_eq!(state.rules, rules);
            let restored = Protector::restore(state.clone()).unwrap();
            assert_eq!(restored, p);
            assert_eq!(restored.to_state(), state);
            match p.time_window() {
                Some(w) => assert_eq!((w.calls(), w.slow(), w.buckets().count()), (3, 2, 3)),
                None => assert_eq!(p.window().slow(), 2),
            }
            // A state written before these were kept restores an empty time window
            // and no slow marks.
            let old = ProtectorState {
                window_slow: Vec::new(),
                time_window: None,
                ..state
            };
            let restored = Protector::restore(old).unwrap();
            assert_eq!(restored.window().slow(), 0);
            assert!(restored.time_window().is_none_or(|w| w.calls() == 0));
        }
    }

    #[test]
    fn inconsistent_states_are_refused() {
        let good = tripped(Duration::from_secs(10)).to_state();
        type Spoil = Box<dyn Fn(&mut ProtectorState)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("generation 0", Box::new(|s| s.generation = 0)),
            ("open without deadline", Box::new(|s| s.open_until = None)),
            ("closed with deadline", Box::new(|s| s.status = Status::Closed)),
            ("window size 0", Box::new(|s| s.window_size = 0)),
            ("too many outcomes", Box::new(|s| s.window = vec![true; 4])),
            ("trials outside half-open", Box::new(|s| s.trials = vec![(1, T0)])),
            ("bad policy", Box::new(|s| s.policy.failure_limit = (0, 3))),
            (
                "bad rule",
                Box::new(|s| s.rules.cooldown_multiplier = crate::Multiplier::thousandths(10)),
            ),
            (
                "slow marks of another length",
                Box::new(|s| s.window_slow = vec![true]),
            ),
            (
                "time window without window_duration",
                Box::new(|s| s.time_window = Some(Default::default())),
            ),
        ];
        for (what, spoil) in cases {
            let mut s = good.clone();
            spoil(&mut s);
            assert!(Protector::restore(s).is_err(), "{what} was accepted");
        }
    }

    #[test]
    fn rebase_caps_deadlines_after_the_clock_jumped_backwards() {
        let mut p = tripped(Duration::from_secs(60));
        assert_eq!(p.open_until(), Some(T0 + Duration::from_secs(60)));
        // The wall clock now reads an hour earlier than when the protector tripped.
        let now = T0 - Duration::from_secs(3600);
        assert!(p.rebase(now));
        assert_eq!(p.open_until(), Some(now + Duration::from_secs(60)));
        // A clock that moved forwards leaves the deadline alone: it simply ends sooner.
        let mut q = tripped(Duration::from_secs(60));
        assert!(!q.rebase(T0 + Duration::from_secs(30)));
        assert_eq!(q.open_until(), Some(T0 + Duration::from_secs(60)));
    }
}
