//! A reference model of proto/SEMANTICS.md section 2, written to be obviously right rather than
//! small or fast: a `Vec<bool>` window, a `Vec` of outstanding trials, and every rule
//! spelled out where it applies. It shares only the value types with the machine (status,
//! permit, decision, change), never its logic, so the proptests compare two independent
//! readings of the rules.
//!
//! Choices the rules leave open, made here as the machine documents them:
//! - Trial permit ids count up from 1 over the protector's life.
//! - An expiry takes effect at its instant: a report or acquire at exactly that instant
//!   already sees it. Expiries due at the same instant apply override first, then trials
//!   by id, then `auto_half_open`.
//! - With `auto_half_open`, an OPEN that outlived its cooldown under an override moves
//!   to HALF_OPEN at the instant the override ended.
//!
//! The rules of section 2a are read in `model_rules.rs`: the time window keeps every
//! outcome with its instant and filters them by bucket when judging.

use std::time::Duration;

use super::{Change, Decision, DecisionReason, Outcome, Permit, PolicySpec, Rules, Status, Time, Transition};
use crate::{Counters, Override, OverrideKind, TransitionReason};

/// One protector, by the rules.
#[derive(Debug, Clone)]
pub(super) struct Model {
    pub spec: PolicySpec,
    pub rules: Rules,
    pub status: Status,
    pub generation: u64,
    pub open_until: Option<Time>,
    /// Oldest first; true = failure.
    pub window: Vec<bool>,
    /// Beside `window`: whether each outcome was slow.
    pub slow: Vec<bool>,
    /// CLOSED with a time window: every outcome since the window started, with the
    /// instant it counts at (never before the one recorded before it), failed, slow.
    pub timed: Vec<(Time, bool, bool)>,
    /// The length of the latest OPEN (the cooldown a reopening multiplies).
    pub last_open: Duration,
    pub window_size: usize,
    pub consecutive_failures: u64,
    /// (id, expires_at) of every outstanding trial permit.
    pub trials: Vec<(u64, Time)>,
    next_id: u64,
    pub override_: Option<Override>,
    /// When the last override ended.
    override_ended_at: Time,
    pub counters: Counters,
}

/// `count / len >= n / d`, in integers; never with an empty window.
pub(super) fn reached((n, d): (u32, u32), count: usize, len: usize) -> bool {
    len > 0 && count as u64 * u64::from(d) >= u64::from(n) * len as u64
}

impl Model {
    pub fn new(spec: PolicySpec, rules: Rules) -> Model {
        Model {
            spec,
            rules,
            slow: Vec::new(),
            timed: Vec::new(),
            last_open: Duration::ZERO,
            status: Status::Closed,
            generation: 1,
            open_until: None,
            window: Vec::new(),
            window_size: spec.failure_limit.1 as usize,
            consecutive_failures: 0,
            trials: Vec::new(),
            next_id: 1,
            override_: None,
            override_ended_at: Time::ZERO,
            counters: Counters::default(),
        }
    }

    pub(super) fn closed_window(&self) -> usize {
        self.spec.failure_limit.1 as usize
    }

    fn half_open_window(&self) -> usize {
        match self.spec.success_limit {
            Some((_, d)) => d as usize,
            None => self.spec.failure_limit.1 as usize,
        }
    }

    /// Most trials in flight; `None` = unlimited.
    pub fn trial_limit(&self) -> Option<usize> {
        match self.spec.trial_permits {
            None => Some(self.half_open_window()),
            Some(0) => None,
            Some(n) => Some(n as usize),
        }
    }

    pub(super) fn failures(&self) -> usize {
        self.window.iter().filter(|f| **f).count()
    }

    pub(super) fn successes(&self) -> usize {
        self.window.len() - self.failures()
    }

    /// When `auto_half_open` moves OPEN on, if it applies now.
    fn auto_half_open_at(&self) -> Option<Time> {
        if self.status != Status::Open || self.override_.is_some() || !self.spec.auto_half_open {
            return None;
        }
        self.open_until.map(|until| until.max(self.override_ended_at))
    }

    /// The instants worth landing on: expiries, and `open_until` for the lazy rule.
    pub fn deadlines(&self) -> Vec<Time> {
        let mut all: Vec<Time> = self.trials.iter().map(|(_, e)| *e).collect();
        all.extend(self.override_.and_then(|o| o.expires_at));
        all.extend(self.auto_half_open_at());
        all.extend(self.open_until);
        all
    }

    /// The earliest instant a tick would change something.
    pub fn next_deadline(&self) -> Option<Time> {
        let mut all: Vec<Time> = self.trials.iter().map(|(_, e)| *e).collect();
        all.extend(self.override_.and_then(|o| o.expires_at));
        all.extend(self.auto_half_open_at());
        all.into_iter().min()
    }

    pub(super) fn enter(
        &mut self,
        to: Status,
        reason: TransitionReason,
        at: Time,
        open_for: Option<Duration>,
    ) -> Transition {
        let from = self.status;
        let cooldown = self.cooldown_for(from, to, reason, open_for);
        self.status = to;
        self.generation += 1;
        self.trials.clear();
        if to != Status::Open {
            // OPEN keeps the window it tripped with.
            self.timed.clear();
        }
        match to {
            Status::Closed => {
                self.window.clear();
                self.slow.clear();
                self.window_size = self.closed_window();
                self.consecutive_failures = 0;
                self.open_until = None;
            }
            Status::Open => {
                self.last_open = cooldown;
                self.open_until = Some(at + cooldown);
            }
            Status::HalfOpen => {
                if from == Status::Closed {
                    self.last_open = self.spec.cooldown;
                }
                self.window.clear();
                self.slow.clear();
                self.window_size = self.half_open_window();
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

    /// Applies every expiry due by `now`, one at a time, earliest first.
    fn catch_up(&mut self, now: Time) -> Vec<Change> {
        let mut changes = Vec::new();
        loop {
            // (instant, rank for ties, what)
            let mut due: Vec<(Time, u8, u64)> = Vec::new();
            if let Some(e) = self.override_.and_then(|o| o.expires_at) {
                due.push((e, 0, 0));
            }
            for (id, e) in &self.trials {
                due.push((*e, 1, *id));
            }
            if let Some(t) = self.auto_half_open_at() {
                due.push((t, 2, 0));
            }
            due.retain(|(t, _, _)| *t <= now);
            due.sort();
            let Some(&(at, what, id)) = due.first() else {
                return changes;
            };
            match what {
                0 => {
                    let kind = self.override_.take().expect("an override to expire").kind;
                    self.override_ended_at = at;
                    changes.push(Change::OverrideExpired { kind, at });
                }
                1 => {
                    self.trials.retain(|(t, _)| *t != id);
                    self.counters.expired_permits += 1;
                    self.record(Outcome::Failure, None, at);
                    changes.extend(
                        self.judge(Outcome::Failure, false, at, true)
                            .map(Change::Transition),
                    );
                }
                _ => {
                    let t = self.enter(Status::HalfOpen, TransitionReason::CooldownElapsed, at, None);
                    changes.push(Change::Transition(t));
                }
            }
        }
    }

    fn admit_trial(&mut self, now: Time) -> Decision {
        if let Some(limit) = self.trial_limit()
            && self.trials.len() >= limit
        {
            let earliest = self
                .trials
                .iter()
                .map(|(_, e)| *e)
                .min()
                .expect("a trial in flight");
            return Decision::Rejected {
                reason: DecisionReason::TrialsExhausted,
                retry_after: Some(earliest - now),
            };
        }
        let id = self.next_id;
        self.next_id += 1;
        let expires_at = now + self.spec.permit_ttl;
        self.trials.push((id, expires_at));
        let permit = Permit {
            generation: self.generation,
            id,
            expires_at: Some(expires_at),
        };
        Decision::Admitted {
            permit,
            reason: DecisionReason::Trial,
        }
    }

    pub fn acquire(&mut self, now: Time) -> (Decision, Vec<Change>, Option<DecisionReason>) {
        let mut changes = self.catch_up(now);
        let untracked = Permit {
            generation: self.generation,
            id: 0,
            expires_at: None,
        };
        let decision = match self.override_ {
            Some(Override {
                kind: OverrideKind::ForcedOpen,
                expires_at,
            }) => Decision::Rejected {
                reason: DecisionReason::ForcedOpen,
                retry_after: expires_at.map(|e| e - now),
            },
            Some(Override {
                kind: OverrideKind::Disabled,
                ..
            }) => Decision::Admitted {
                permit: untracked,
                reason: DecisionReason::Disabled,
            },
            None => match self.status {
                Status::Closed => Decision::Admitted {
                    permit: untracked,
                    reason: DecisionReason::Closed,
                },
                Status::Open => {
                    let until = self.open_until.expect("OPEN has an open_until");
                    if now < until {
                        Decision::Rejected {
                            reason: DecisionReason::Open,
                            retry_after: Some(until - now),
                        }
                    } else {
                        let t = self.enter(Status::HalfOpen, TransitionReason::CooldownElapsed, now, None);
                        changes.push(Change::Transition(t));
                        self.admit_trial(now)
                    }
                }
                Status::HalfOpen => self.admit_trial(now),
            },
        };
        match decision {
            Decision::Admitted { .. } => self.counters.admitted += 1,
            Decision::Rejected { .. } => self.counters.rejected += 1,
        }
        // Shadow: what the live machine would refuse goes ahead, saying so.
        match decision {
            Decision::Rejected { reason, .. }
                if self.rules.shadow && reason != DecisionReason::ForcedOpen =>
            {
                let permit = untracked;
                (Decision::Admitted { permit, reason }, changes, Some(reason))
            }
            d => (d, changes, None),
        }
    }

    pub fn report(
        &mut self,
        permit: Permit,
        outcome: Outcome,
        duration: Option<Duration>,
        now: Time,
    ) -> (bool, Option<Transition>, Vec<Change>) {
        let mut changes = self.catch_up(now);
        let valid = if permit.generation != self.generation {
            false
        } else if permit.id == 0 {
            let disabled = self.override_.is_some_and(|o| o.kind == OverrideKind::Disabled);
            self.status == Status::Closed || disabled
        } else if let Some(i) = self.trials.iter().position(|(id, _)| *id == permit.id) {
            self.trials.remove(i);
            true
        } else {
            false
        };
        if !valid {
            self.counters.stale_reports += 1;
            return (false, None, changes);
        }
        let slow = self.record(outcome, duration, now);
        let t = self.judge(outcome, slow, now, false);
        changes.extend(t.map(Change::Transition));
        (true, t, changes)
    }

    pub fn tick(&mut self, now: Time) -> Vec<Change> {
        self.catch_up(now)
    }

    pub fn set_status(&mut self, to: Status, open_for: Option<Duration>, now: Time) -> Vec<Change> {
        let mut changes = self.catch_up(now);
        changes.push(Change::Transition(self.enter(
            to,
            TransitionReason::Manual,
            now,
            open_for,
        )));
        changes
    }

    pub fn set_override(&mut self, new: Option<Override>, now: Time) -> Vec<Change> {
        let mut changes = self.catch_up(now);
        if self.override_.is_some() && new.is_none() {
            self.override_ended_at = now;
        }
        self.override_ = new;
        changes.extend(self.catch_up(now));
        changes
    }

    pub fn update_policy(&mut self, spec: PolicySpec, rules: Rules, now: Time) -> Vec<Change> {
        let mut changes = self.catch_up(now);
        self.spec = spec;
        self.rules = rules;
        self.window.clear();
        self.slow.clear();
        self.timed.clear();
        self.window_size = match self.status {
            Status::HalfOpen => self.half_open_window(),
            Status::Closed | Status::Open => self.closed_window(),
        };
        changes.extend(self.catch_up(now));
        changes
    }
}
