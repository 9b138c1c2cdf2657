//! [`Protector`] and its operations: the transitions themselves. The rules and the edge
//! cases are the design note of [`machine`](super); the plain-data form is `state.rs`.
//! Fields are `pub(super)` so that `state.rs` can take a protector apart and rebuild it.

use std::time::Duration;

use super::trials::TrialPermits;
use super::types::*;
use crate::Time;
use crate::policy::Policy;
use crate::window::{TimeWindow, Window};

/// One protector: policy, status, window, trials, override and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protector {
    pub(super) policy: Policy,
    pub(super) status: Status,
    pub(super) generation: u64,
    /// Set exactly while OPEN.
    pub(super) open_until: Option<Time>,
    pub(super) window: Window,
    /// With a `window_duration`: CLOSED's window (section 2a); OPEN keeps it frozen.
    /// Boxed: a protector without one pays a word, not the window's fields.
    pub(super) time_window: Option<Box<TimeWindow>>,
    pub(super) consecutive_failures: u64,
    /// Outstanding trial permits (ids only grow).
    pub(super) trials: TrialPermits,
    pub(super) next_permit_id: u64,
    pub(super) override_: Option<Override>,
    /// When the last override ended: `auto_half_open` never fires before it.
    pub(super) resumed_at: Time,
    /// How long the current OPEN was entered for (the cooldown or a manual `open_for`),
    /// so a restart can cap `open_until` however the wall clock moved.
    pub(super) open_for: Duration,
    pub(super) counters: Counters,
}

/// Adds to a counter, saturating: a lifetime counter (or a batch's tally) stops at
/// `u64::MAX` rather than wrapping, however many outcomes one batch claims.
pub(super) fn add(counter: &mut u64, by: u64) {
    *counter = counter.saturating_add(by);
}

/// A scheduled expiry found by [`Protector::due`].
enum Due {
    Override,
    Trial(u64),
    HalfOpen,
}

impl Protector {
    /// A new protector: CLOSED, generation 1, an empty window.
    pub fn new(policy: Policy) -> Protector {
        Protector {
            window: Window::new(policy.closed_window()),
            time_window: policy.window_duration().map(|d| Box::new(TimeWindow::new(d))),
            policy,
            status: Status::Closed,
            generation: 1,
            open_until: None,
            consecutive_failures: 0,
            trials: TrialPermits::default(),
            next_permit_id: 1,
            override_: None,
            resumed_at: Time::ZERO,
            open_for: Duration::ZERO,
            counters: Counters::default(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
    /// The status of the status machine (an override may hold it still).
    pub fn status(&self) -> Status {
        self.status
    }
    /// Starts at 1; +1 on every transition.
    pub fn generation(&self) -> u64 {
        self.generation
    }
    /// While OPEN: when a trial may go (possibly in the past).
    pub fn open_until(&self) -> Option<Time> {
        self.open_until
    }
    /// The current window.
    pub fn window(&self) -> &Window {
        &self.window
    }
    /// CLOSED's time window, if the policy has one (kept frozen while OPEN).
    pub fn time_window(&self) -> Option<&TimeWindow> {
        self.time_window.as_deref()
    }
    /// The cooldown in force (section 2a): in CLOSED the one the next trip will use, the
    /// policy's `cooldown`; otherwise the length of the latest OPEN, which a reopening from
    /// HALF_OPEN multiplies.
    pub fn cooldown_in_force(&self) -> Duration {
        match self.status {
            Status::Closed => self.policy.cooldown(),
            Status::Open | Status::HalfOpen => self.open_for,
        }
    }
    /// Failures since the last success or entry into CLOSED.
    pub fn consecutive_failures(&self) -> u64 {
        self.consecutive_failures
    }
    /// Trial permits outstanding.
    pub fn trials_in_flight(&self) -> u32 {
        self.trials.len() as u32
    }
    /// The override in force, if any.
    pub fn override_state(&self) -> Option<Override> {
        self.override_
    }
    /// Lifetime counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The earliest instant at which [`Protector::tick`] would change something, if any.
    /// The daemon's scheduler wakes for it; nothing is lost if it wakes late, since every
    /// expiry takes effect at its own instant.
    pub fn next_deadline(&self) -> Option<Time> {
        if !self.may_expire() {
            return None;
        }
        let override_end = self.override_.and_then(|o| o.expires_at);
        let trial = self.trials.earliest().map(|(at, _)| at);
        let half_open = self.auto_half_open_at();
        [override_end, trial, half_open].into_iter().flatten().min()
    }

    /// Applies every expiry due by `now`.
    pub fn tick(&mut self, now: Time) -> Vec<Change> {
        let mut changes = Vec::new();
        self.advance(now, &mut changes);
        changes
    }

    /// May a call go ahead at `now`?
    pub fn acquire(&mut self, now: Time) -> AcquireResult {
        let mut changes = Vec::new();
        self.advance(now, &mut changes);
        let decision = match self.override_.map(|o| o.kind) {
            Some(OverrideKind::ForcedOpen) => Decision::Rejected {
                reason: DecisionReason::ForcedOpen,
                retry_after: self
                    .override_
                    .and_then(|o| o.expires_at)
                    .map(|e| e.saturating_sub(now)),
            },
            Some(OverrideKind::Disabled) => Decision::Admitted {
                permit: self.untracked_permit(),
                reason: DecisionReason::Disabled,
            },
            None => match self.status {
                Status::Closed => Decision::Admitted {
                    permit: self.untracked_permit(),
                    reason: DecisionReason::Closed,
                },
                Status::Open => {
                    let until = self.open_until.unwrap_or(now);
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
        if decision.is_admitted() {
            add(&mut self.counters.admitted, 1);
        } else {
            add(&mut self.counters.rejected, 1);
        }
        let mut would_reject = None;
        let decision = match decision {
            // Shadow: answer yes, but say no as the live machine would (section 2a). An
            // operator's FORCED_OPEN is obeyed all the same.
            Decision::Rejected { reason, .. }
                if self.policy.shadow() && reason != DecisionReason::ForcedOpen =>
            {
                would_reject = Some(reason);
                Decision::Admitted {
                    permit: self.untracked_permit(),
                    reason,
                }
            }
            d => d,
        };
        AcquireResult {
            decision,
            changes,
            would_reject,
        }
    }

    /// Records how an admitted call went. A stale permit (another generation, a trial
    /// already reported or expired, an untracked permit where none is valid) is refused
    /// and changes nothing but the stale counter.
    pub fn report(&mut self, permit: Permit, outcome: Outcome, now: Time) -> ReportResult {
        self.report_timed(permit, outcome, None, now)
    }

    /// [`Protector::report`] with how long the call took, for the slow-call rule
    /// (section 2a); `None` is never slow.
    pub fn report_timed(
        &mut self,
        permit: Permit,
        outcome: Outcome,
        duration: Option<Duration>,
        now: Time,
    ) -> ReportResult {
        let mut changes = Vec::new();
        self.advance(now, &mut changes);
        let valid = permit.generation == self.generation
            && if !permit.is_trial() {
                self.status == Status::Closed
                    || self.override_.is_some_and(|o| o.kind == OverrideKind::Disabled)
            } else {
                self.take_trial(permit.id)
            };
        if !valid {
            add(&mut self.counters.stale_reports, 1);
            return ReportResult {
                accepted: false,
                transition: None,
                changes,
            };
        }
        let slow = self.policy.is_slow(duration);
        self.record(outcome, slow, now);
        let transition = self.evaluate(outcome, slow, now, false);
        changes.extend(transition.map(Change::Transition));
        ReportResult {
            accepted: true,
            transition,
            changes,
        }
    }

    /// Records outcomes of calls admitted locally while the protector was CLOSED in
    /// `generation` (a client's cached mode): `successes` SUCCESS outcomes first, then
    /// `outcomes` in order. They are judged exactly as reports of untracked permits of that
    /// generation, one by one: once the protector trips (or had already moved on), the
    /// rest are stale. The work is O(window size + `outcomes.len()`) whatever `successes`
    /// says (a success never trips, so only the newest window's worth can matter), and
    /// every counter saturates; a caller bounds `outcomes.len()` per call (the daemon
    /// applies a long list in chunks).
    pub fn report_batch(
        &mut self,
        generation: u64,
        successes: u64,
        outcomes: &[Outcome],
        now: Time,
    ) -> BatchResult {
        self.batch(generation, successes, outcomes.iter().map(|&o| (o, false)), now)
    }

    /// [`Protector::report_batch`] with each listed outcome's duration, for the slow-call
    /// rule; the `successes` counted are calls that were not slow (section 2a).
    pub fn report_batch_timed(
        &mut self,
        generation: u64,
        successes: u64,
        outcomes: &[(Outcome, Option<Duration>)],
        now: Time,
    ) -> BatchResult {
        let policy = self.policy;
        let timed = outcomes.iter().map(|&(o, d)| (o, policy.is_slow(d)));
        self.batch(generation, successes, timed, now)
    }

    fn batch(
        &mut self,
        generation: u64,
        successes: u64,
        outcomes: impl Iterator<Item = (Outcome, bool)>,
        now: Time,
    ) -> BatchResult {
        let mut changes = Vec::new();
        self.advance(now, &mut changes);
        let mut result = BatchResult::default();
        let untracked_valid = |p: &Protector| {
            generation == p.generation
                && (p.status == Status::Closed
                    || p.override_.is_some_and(|o| o.kind == OverrideKind::Disabled))
        };
        if successes > 0 {
            if untracked_valid(self) {
                match &mut self.time_window {
                    Some(tw) if self.status == Status::Closed => tw.record(now, false, false, successes),
                    // A success never trips, so only the newest `size` of them can matter.
                    _ => {
                        for _ in 0..successes.min(u64::from(self.window.size())) {
                            self.window.push(false);
                        }
                    }
                }
                add(&mut self.counters.successes, successes);
                self.consecutive_failures = 0;
                add(&mut result.accepted, successes);
            } else {
                add(&mut self.counters.stale_reports, successes);
                add(&mut result.stale, successes);
            }
        }
        for (outcome, slow) in outcomes {
            if !untracked_valid(self) {
                add(&mut self.counters.stale_reports, 1);
                add(&mut result.stale, 1);
                continue;
            }
            self.record(outcome, slow, now);
            add(&mut result.accepted, 1);
            if let Some(t) = self.evaluate(outcome, slow, now, false) {
                result.transition.get_or_insert(t);
                changes.push(Change::Transition(t));
            }
        }
        result.changes = changes;
        result
    }

    /// An operator's SetStatus: the same transition as the natural one, reason MANUAL.
    /// Setting the current status re-enters it. `open_for` replaces the cooldown when
    /// entering OPEN. The manual transition is the last change returned.
    pub fn set_status(&mut self, to: Status, open_for: Option<Duration>, now: Time) -> Vec<Change> {
        let mut changes = Vec::new();
        self.advance(now, &mut changes);
        let t = self.enter(to, TransitionReason::Manual, now, open_for);
        changes.push(Change::Transition(t));
        changes
    }

    /// Sets (`Some`) or clears (`None`) the override. Clearing resumes the status machine
    /// where it was; an `auto_half_open` cooldown that elapsed meanwhile fires at `now`.
    pub fn set_override(&mut self, new: Option<Override>, now: Time) -> Vec<Change> {
        let mut changes = Vec::new();
        self.advance(now, &mut changes);
        if self.override_.is_some() && new.is_none() {
            self.resumed_at = now;
        }
        self.override_ = new;
        self.advance(now, &mut changes);
        changes
    }

    /// Replaces the policy. The status, generation, `open_until` and outstanding trials
    /// stay; the window starts anew at the size the new policy gives the current status.
    pub fn update_policy(&mut self, policy: Policy, now: Time) -> Vec<Change> {
        let mut changes = Vec::new();
        self.advance(now, &mut changes);
        self.policy = policy;
        self.window = Window::new(self.window_size_for(self.status));
        self.reset_time_window();
        self.advance(now, &mut changes);
        changes
    }

    pub(super) fn untracked_permit(&self) -> Permit {
        Permit {
            generation: self.generation,
            id: 0,
            expires_at: None,
        }
    }

    fn admit_trial(&mut self, now: Time) -> Decision {
        if let Some(limit) = self.policy.trial_limit()
            && self.trials.len() >= limit as usize
        {
            let earliest = self.trials.earliest().map_or(now, |(at, _)| at);
            return Decision::Rejected {
                reason: DecisionReason::TrialsExhausted,
                retry_after: Some(earliest.saturating_sub(now)),
            };
        }
        let id = self.next_permit_id;
        self.next_permit_id += 1;
        let expires_at = now + self.policy.permit_ttl();
        self.trials.insert(id, expires_at);
        Decision::Admitted {
            permit: Permit {
                generation: self.generation,
                id,
                expires_at: Some(expires_at),
            },
            reason: DecisionReason::Trial,
        }
    }

    /// Removes trial `id` if outstanding.
    fn take_trial(&mut self, id: u64) -> bool {
        self.trials.take(id)
    }

    fn auto_half_open_at(&self) -> Option<Time> {
        match (self.status, self.override_, self.open_until) {
            (Status::Open, None, Some(until)) if self.policy.auto_half_open() => {
                Some(until.max(self.resumed_at))
            }
            _ => None,
        }
    }

    /// Whether anything could expire: an override, a trial permit or an OPEN status.
    /// Most decisions are of a CLOSED protector with none, and skip the search for what
    /// is due ([`advance`](Self::advance), [`next_deadline`](Self::next_deadline)).
    #[inline]
    fn may_expire(&self) -> bool {
        self.override_.is_some() || !self.trials.is_empty() || self.status == Status::Open
    }

    /// The earliest expiry due by `now`, with its instant.
    fn due(&self, now: Time) -> Option<(Time, Due)> {
        let override_end = self
            .override_
            .and_then(|o| o.expires_at)
            .map(|t| (t, Due::Override));
        let trial = self.trials.earliest().map(|(at, id)| (at, Due::Trial(id)));
        let half_open = self.auto_half_open_at().map(|t| (t, Due::HalfOpen));
        [override_end, trial, half_open]
            .into_iter()
            .flatten()
            .filter(|(t, _)| *t <= now)
            .min_by_key(|(t, _)| *t)
    }

    /// Applies every expiry due by `now`, earliest first, each at its own instant.
    #[inline]
    fn advance(&mut self, now: Time, changes: &mut Vec<Change>) {
        if self.may_expire() {
            self.expire(now, changes);
        }
    }

    /// [`advance`](Self::advance)'s work, when anything could expire.
    fn expire(&mut self, now: Time, changes: &mut Vec<Change>) {
        while let Some((at, due)) = self.due(now) {
            match due {
                Due::Override => {
                    if let Some(o) = self.override_.take() {
                        self.resumed_at = at;
                        changes.push(Change::OverrideExpired { kind: o.kind, at });
                    }
                }
                Due::Trial(id) => {
                    self.take_trial(id);
                    add(&mut self.counters.expired_permits, 1);
                    // An expired permit's duration is unknown: a FAILURE, not slow.
                    self.record(Outcome::Failure, false, at);
                    if let Some(t) = self.evaluate(Outcome::Failure, false, at, true) {
                        changes.push(Change::Transition(t));
                    }
                }
                Due::HalfOpen => {
                    let t = self.enter(Status::HalfOpen, TransitionReason::CooldownElapsed, at, None);
                    changes.push(Change::Transition(t));
                }
            }
        }
    }
}
