//! A protector as plain data, for persistence: [`Protector::to_state`] and
//! [`Protector::restore`] round-trip every field, and [`Protector::rebase`] caps the
//! deadlines a restart brings back, whatever the wall clock did meanwhile.

use std::fmt;
use std::time::Duration;

use super::protector::Protector;
use super::types::{Counters, Override, Status};
use crate::Time;
use crate::policy::{InvalidPolicy, Policy, PolicySpec};
use crate::window::{TimeWindow, Window};

/// Every field of a [`Protector`], as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectorState {
    /// The policy's inputs.
    pub policy: PolicySpec,
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
    Policy(InvalidPolicy),
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
            status: self.status,
            generation: self.generation,
            open_until: self.open_until,
            open_for: self.open_for,
            window_size: self.window.size(),
            window: self.window.iter().collect(),
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
        let policy = Policy::try_new(state.policy).map_err(InvalidState::Policy)?;
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
            window: Window::from_outcomes(state.window_size, state.window),
            // Not in the plain-data form yet (section 2a, contract): a restored time
            // window starts empty, and slow marks are not restored.
            time_window: policy.window_duration().map(|d| Box::new(TimeWindow::new(d))),
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
