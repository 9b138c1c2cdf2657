//! Proptests: the real [`Protector`] against the [`Model`] on random policies and random
//! sequences of operations, compared after every step. The generators live here and
//! serve [`super::invariants`] too.
//!
//! Failing seeds are kept in `props.regressions` beside this file (for every proptest of
//! this module and of `invariants`), committed so every run replays them first.

use std::collections::HashSet;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{FileFailurePersistence, TestRunner};

use super::model::Model;
use super::*;
use crate::{Multiplier, Override, OverrideKind, TransitionReason};

/// One thing a caller or the clock does.
#[derive(Debug, Clone)]
pub(super) enum Op {
    Acquire,
    /// A report, with how long the call took.
    Report(Pick, Outcome, Option<Duration>),
    Advance(Step),
    Tick,
    SetStatus(Status, Option<Duration>),
    /// Set (kind, when it ends) or clear.
    SetOverride(Option<(OverrideKind, Ends)>),
    UpdatePolicy(PolicySpec, Rules),
}

/// Which permit a report carries.
#[derive(Debug, Clone)]
pub(super) enum Pick {
    /// One admitted earlier (index modulo how many): current, or stale by now.
    Held(usize),
    /// Made up: `back` generations before the current one (or one after, for 3), any id.
    Fabricated { back: u64, id: u64 },
}

/// When an override ends by itself.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ends {
    Never,
    After(Duration),
    /// At one of the deadlines still ahead (index modulo how many), so that an override
    /// and a trial permit can expire at the same instant.
    AtDeadline(usize),
}

#[derive(Debug, Clone)]
pub(super) enum Step {
    Millis(u64),
    Secs(u64),
    /// To one of the model's deadlines (index modulo how many), nudged by -1, 0 or +1 ms.
    Deadline(usize, i8),
    /// The injected clock jumps backwards.
    Back(u64),
}

pub(super) fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

fn fraction() -> impl Strategy<Value = (u32, u32)> {
    (1u32..=6).prop_flat_map(|d| (1..=d, Just(d)))
}

pub(super) fn spec() -> impl Strategy<Value = PolicySpec> {
    let cooldown = prop_oneof![Just(Duration::ZERO), (1u64..=300).prop_map(ms), Just(secs(10))];
    let trial_permits = prop_oneof![Just(None), Just(Some(0)), (1u32..=3).prop_map(Some)];
    let ttl = prop_oneof![3 => (1u64..=200).prop_map(ms), 1 => Just(secs(30))];
    let limits = (fraction(), prop::option::of(fraction()));
    (cooldown, limits, trial_permits, ttl, any::<bool>()).prop_map(
        |(cooldown, (failure_limit, success_limit), trial_permits, permit_ttl, auto_half_open)| PolicySpec {
            cooldown,
            failure_limit,
            success_limit,
            trial_permits,
            permit_ttl,
            auto_half_open,
        },
    )
}

/// The optional rules of section 2a, on `spec` (`max_cooldown` must not be below its
/// cooldown): windows of 1 to 3 s (100 ms buckets) or 7 min (1 s buckets), and short
/// slow-call durations, so that the generated clock steps cross buckets and windows.
pub(super) fn rules_for(spec: PolicySpec) -> impl Strategy<Value = Rules> {
    let window = prop_oneof![
        2 => Just(None),
        2 => (1000u64..=3000).prop_map(|n| Some(ms(n))),
        1 => Just(Some(secs(420))),
    ];
    let minimum = prop::option::of(1u32..=5);
    let streak = prop_oneof![2 => Just(0u32), 1 => 1u32..=4];
    let slow = prop::option::of(((1u64..=60).prop_map(ms), fraction()));
    let multiplier = prop_oneof![2 => Just(1_000u32), 1 => Just(1_500), 1 => Just(2_000), 1 => Just(3_000)];
    let max_cooldown = prop::option::of(0u64..=2_000);
    let shadow = prop_oneof![3 => Just(false), 1 => Just(true)];
    (window, minimum, streak, slow, multiplier, max_cooldown, shadow).prop_map(
        move |(window_duration, minimum, streak, slow, multiplier, max_cooldown, shadow)| Rules {
            window_duration,
            minimum_calls: window_duration.and(minimum),
            consecutive_failures: streak,
            slow_call_duration: slow.map(|(d, _)| d),
            slow_call_limit: slow.map(|(_, f)| f),
            cooldown_multiplier: Multiplier::thousandths(multiplier),
            max_cooldown: max_cooldown.map(|extra| (spec.cooldown + ms(extra)).max(ms(1))),
            shadow,
            history_size: 0,
        },
    )
}

/// A policy spec and optional rules for it.
pub(super) fn inputs() -> impl Strategy<Value = (PolicySpec, Rules)> {
    spec().prop_flat_map(|spec| (Just(spec), rules_for(spec)))
}

fn duration() -> impl Strategy<Value = Option<Duration>> {
    prop_oneof![1 => Just(None), 3 => (0u64..=80).prop_map(|n| Some(ms(n)))]
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![4 => Just(Outcome::Success), 4 => Just(Outcome::Failure), 1 => Just(Outcome::Ignored)]
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![Just(Status::Closed), Just(Status::Open), Just(Status::HalfOpen)]
}

fn short() -> impl Strategy<Value = Duration> {
    prop_oneof![Just(Duration::ZERO), (1u64..=400).prop_map(ms), Just(secs(20))]
}

fn op(policy_updates: bool) -> impl Strategy<Value = Op> {
    let pick = prop_oneof![
        4 => any::<usize>().prop_map(Pick::Held),
        1 => (0u64..=3, 0u64..=12).prop_map(|(back, id)| Pick::Fabricated { back, id }),
    ];
    let step = prop_oneof![
        3 => (0u64..=60).prop_map(Step::Millis),
        1 => (1u64..=30).prop_map(Step::Secs),
        3 => (any::<usize>(), -1i8..=1).prop_map(|(i, nudge)| Step::Deadline(i, nudge)),
        3 => (100u64..=1_500).prop_map(Step::Millis),
        u32::from(policy_updates) => (1u64..=500).prop_map(Step::Back),
    ];
    let kind = prop_oneof![Just(OverrideKind::ForcedOpen), Just(OverrideKind::Disabled)];
    let ends = prop_oneof![
        Just(Ends::Never),
        short()
            .prop_filter("positive", |d| !d.is_zero())
            .prop_map(Ends::After),
        any::<usize>().prop_map(Ends::AtDeadline),
    ];
    let set_override = prop::option::of((kind, ends));
    prop_oneof![
        8 => Just(Op::Acquire),
        8 => (pick, outcome(), duration()).prop_map(|(p, o, d)| Op::Report(p, o, d)),
        6 => step.prop_map(Op::Advance),
        1 => Just(Op::Tick),
        1 => (status(), prop::option::of(short())).prop_map(|(s, d)| Op::SetStatus(s, d)),
        1 => set_override.prop_map(Op::SetOverride),
        u32::from(policy_updates) => inputs().prop_map(|(s, r)| Op::UpdatePolicy(s, r)),
    ]
}

pub(super) fn ops(policy_updates: bool) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(policy_updates), 1..80)
}

/// The real protector, the model and the shared clock, driven by the same operations.
#[derive(Debug)]
pub(super) struct Run {
    pub real: Protector,
    model: Model,
    pub now: Time,
    /// Every permit admitted so far, in order.
    pub held: Vec<Permit>,
    /// What the run has exercised so far.
    tally: Tally,
}

/// What a run exercised, to show the generators reach every rule.
#[derive(Debug, Default)]
struct Tally {
    decisions: HashSet<DecisionReason>,
    transitions: HashSet<TransitionReason>,
    override_expiries: usize,
    would_reject: usize,
    accepted: usize,
    refused: usize,
}

impl Tally {
    fn note(&mut self, decision: Option<Decision>, accepted: Option<bool>, changes: &[Change]) {
        match decision {
            Some(Decision::Admitted { reason, .. } | Decision::Rejected { reason, .. }) => {
                self.decisions.insert(reason);
            }
            None => {}
        }
        match accepted {
            Some(true) => self.accepted += 1,
            Some(false) => self.refused += 1,
            None => {}
        }
        for c in changes {
            match c {
                Change::Transition(t) => {
                    self.transitions.insert(t.reason);
                }
                Change::OverrideExpired { .. } => self.override_expiries += 1,
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.decisions.extend(other.decisions);
        self.transitions.extend(other.transitions);
        self.override_expiries += other.override_expiries;
        self.would_reject += other.would_reject;
        self.accepted += other.accepted;
        self.refused += other.refused;
    }
}

impl Run {
    pub(super) fn new(spec: PolicySpec) -> Run {
        Run::with(spec, Rules::default())
    }

    pub(super) fn with(spec: PolicySpec, rules: Rules) -> Run {
        Run {
            real: Protector::new(Policy::try_with(spec, rules).expect("generated policies are valid")),
            model: Model::new(spec, rules),
            now: T0,
            held: Vec::new(),
            tally: Tally::default(),
        }
    }

    /// Where `step` moves the clock, aiming at one of `deadlines`; only `Back` goes back.
    pub(super) fn advance(&self, step: &Step, deadlines: Vec<Time>) -> Time {
        match *step {
            Step::Millis(n) => self.now + ms(n),
            Step::Secs(n) => self.now + secs(n),
            Step::Back(n) => self.now - ms(n),
            Step::Deadline(i, nudge) => {
                if deadlines.is_empty() {
                    return self.now + ms(1);
                }
                let target = deadlines[i % deadlines.len()];
                let nudged = match nudge {
                    -1 => target.saturating_sub(ms(1)),
                    1 => target + ms(1),
                    _ => target,
                };
                nudged.max(self.now)
            }
        }
    }

    pub(super) fn permit(&self, pick: &Pick) -> Permit {
        match *pick {
            Pick::Held(i) if !self.held.is_empty() => self.held[i % self.held.len()],
            Pick::Held(_) => Permit {
                generation: self.real.generation(),
                id: 0,
                expires_at: None,
            },
            Pick::Fabricated { back, id } => {
                let current = self.real.generation();
                let generation = if back == 3 {
                    current + 1
                } else {
                    current.saturating_sub(back)
                };
                Permit {
                    generation,
                    id,
                    expires_at: None,
                }
            }
        }
    }

    pub(super) fn override_at(
        &self,
        o: Option<(OverrideKind, Ends)>,
        deadlines: Vec<Time>,
    ) -> Option<Override> {
        let ahead: Vec<Time> = deadlines.into_iter().filter(|t| *t > self.now).collect();
        o.map(|(kind, ends)| Override {
            kind,
            expires_at: match ends {
                Ends::Never => None,
                Ends::After(d) => Some(self.now + d),
                Ends::AtDeadline(_) if ahead.is_empty() => Some(self.now + ms(1)),
                Ends::AtDeadline(i) => Some(ahead[i % ahead.len()]),
            },
        })
    }

    /// Applies `op` to both and checks they agree on its answer and on everything after.
    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let now = self.now;
        let (mut decision, mut accepted) = (None, None);
        let changes = match op {
            Op::Acquire => {
                let real = self.real.acquire(now);
                let (expected, changes, would_reject) = self.model.acquire(now);
                prop_assert_eq!(real.decision, expected);
                prop_assert_eq!(real.would_reject, would_reject);
                self.tally.would_reject += usize::from(would_reject.is_some());
                if let Decision::Admitted { permit, .. } = expected {
                    self.held.push(permit);
                }
                decision = Some(expected);
                (real.changes, changes)
            }
            Op::Report(pick, outcome, duration) => {
                let permit = self.permit(pick);
                let real = self.real.report_timed(permit, *outcome, *duration, now);
                let (ok, transition, changes) = self.model.report(permit, *outcome, *duration, now);
                prop_assert_eq!((real.accepted, real.transition), (ok, transition), "{:?}", permit);
                accepted = Some(ok);
                (real.changes, changes)
            }
            Op::Advance(step) => {
                self.now = self.advance(step, self.model.deadlines());
                (Vec::new(), Vec::new())
            }
            Op::Tick => (self.real.tick(now), self.model.tick(now)),
            Op::SetStatus(to, open_for) => (
                self.real.set_status(*to, *open_for, now),
                self.model.set_status(*to, *open_for, now),
            ),
            Op::SetOverride(o) => {
                let o = self.override_at(*o, self.model.deadlines());
                (self.real.set_override(o, now), self.model.set_override(o, now))
            }
            Op::UpdatePolicy(spec, rules) => {
                let policy = Policy::try_with(*spec, *rules).expect("generated policies are valid");
                (
                    self.real.update_policy(policy, now),
                    self.model.update_policy(*spec, *rules, now),
                )
            }
        };
        prop_assert_eq!(&changes.0, &changes.1);
        self.tally.note(decision, accepted, &changes.0);
        self.agree()
    }

    fn agree(&self) -> Result<(), TestCaseError> {
        let (r, m) = (&self.real, &self.model);
        prop_assert_eq!(
            (r.status(), r.generation(), r.open_until()),
            (m.status, m.generation, m.open_until)
        );
        prop_assert_eq!(r.window().iter().collect::<Vec<_>>(), m.window.clone());
        prop_assert_eq!(r.window().size() as usize, m.window_size);
        prop_assert_eq!(r.consecutive_failures(), m.consecutive_failures);
        prop_assert_eq!(r.trials_in_flight() as usize, m.trials.len());
        prop_assert_eq!(r.override_state(), m.override_);
        prop_assert_eq!(r.counters(), &m.counters);
        prop_assert_eq!(r.next_deadline(), m.next_deadline());
        prop_assert_eq!(r.policy().spec(), m.spec);
        prop_assert_eq!(r.policy().rules(), m.rules);
        prop_assert_eq!(r.window().iter_slow().collect::<Vec<_>>(), m.slow.clone());
        let time = r
            .time_window()
            .map_or((0, 0, 0), |t| (t.calls(), t.failures(), t.slow()));
        prop_assert_eq!(time, m.time_totals());
        prop_assert_eq!(r.cooldown_in_force(), m.cooldown_in_force());
        Ok(())
    }
}

proptest! {
    #![proptest_config(config(4_096))]

    #[test]
    fn the_machine_agrees_with_the_model((spec, rules) in inputs(), ops in ops(true)) {
        let mut run = Run::with(spec, rules);
        for op in &ops {
            run.step(op)?;
        }
    }
}

#[test]
fn the_generated_runs_reach_every_rule() {
    let mut runner = TestRunner::deterministic();
    let cases = (inputs(), ops(true));
    let mut tally = Tally::default();
    for _ in 0..300 {
        let ((spec, rules), ops) = cases.new_tree(&mut runner).expect("generates").current();
        let mut run = Run::with(spec, rules);
        for op in &ops {
            run.step(op).expect("the machine agrees with the model");
        }
        tally.merge(run.tally);
    }
    assert_eq!(tally.decisions.len(), 6, "{tally:?}");
    assert_eq!(tally.transitions.len(), 8, "{tally:?}");
    assert!(tally.would_reject >= 10, "{tally:?}");
    assert!(tally.override_expiries >= 10, "{tally:?}");
    assert!(tally.accepted >= 500 && tally.refused >= 500, "{tally:?}");
}
