//! Tests of the status machine, held to proto/SEMANTICS.md section 2.
//!
//! Layout: [`transitions`] one table row per transition and per decision reason,
//! [`overrides`] overrides, stale reports and counters, [`validation`] policy rules and
//! the window, [`library`] the behaviours the Python library documents, [`model`] an
//! independent reference model written from the rules, [`props`] proptests that drive
//! the real [`Protector`] and the model side by side, [`invariants`] proptests of the
//! machine alone. Section 2a (issue 18): [`rules`] a table per optional rule,
//! [`rules_validation`] their field checks, `model_rules` the model's reading of them,
//! [`replays`] the what-if replay against a direct replay through the model.
//!
//! Every test runs on an invented clock: instants are offsets from [`T0`].

mod batch;
mod invariants;
mod library;
mod model;
mod model_rules;
mod overrides;
mod props;
mod replays;
mod rules;
mod rules_validation;
mod transitions;
mod validation;

use std::time::Duration;

use super::{
    Change, Counters, Decision, DecisionReason, Outcome, Permit, Policy, PolicySpec, Protector, Rules,
    Status, Time, Transition,
};

/// A fraction n/d as a policy spec gives it.
type Limit = (u32, u32);

/// The epoch of every test: a fixed, realistic wall-clock instant.
const T0: Time = Time::from_secs(1_700_000_000);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The instant `n` milliseconds after [`T0`].
fn at(n: u64) -> Time {
    T0 + ms(n)
}

/// A valid policy: the default spec as changed by `edit`.
#[track_caller]
fn policy(edit: impl FnOnce(&mut PolicySpec)) -> Policy {
    let mut spec = PolicySpec::default();
    edit(&mut spec);
    Policy::try_new(spec).expect("test policy is valid")
}

/// A protector on the policy `edit` makes of the default spec.
#[track_caller]
fn protector(edit: impl FnOnce(&mut PolicySpec)) -> Protector {
    Protector::new(policy(edit))
}

/// Acquires at `now`, which must be admitted; answers the permit and the reason.
#[track_caller]
fn admit(p: &mut Protector, now: Time) -> (Permit, DecisionReason) {
    match p.acquire(now).decision {
        Decision::Admitted { permit, reason } => (permit, reason),
        other => panic!("expected admission at {now:?}, got {other:?}"),
    }
}

/// Acquires at `now`, which must be rejected; answers the reason and `retry_after`.
#[track_caller]
fn reject(p: &mut Protector, now: Time) -> (DecisionReason, Option<Duration>) {
    match p.acquire(now).decision {
        Decision::Rejected { reason, retry_after } => (reason, retry_after),
        other => panic!("expected rejection at {now:?}, got {other:?}"),
    }
}

/// Reports `permit` at `now`, which must be accepted; answers the transition it caused.
#[track_caller]
fn accept(p: &mut Protector, permit: Permit, outcome: Outcome, now: Time) -> Option<Transition> {
    let r = p.report(permit, outcome, now);
    assert!(r.accepted, "report of {permit:?} at {now:?} was refused");
    r.transition
}

/// Reports `permit` at `now`, which must be refused as stale.
#[track_caller]
fn refuse(p: &mut Protector, permit: Permit, outcome: Outcome, now: Time) {
    let r = p.report(permit, outcome, now);
    assert!(!r.accepted, "stale report of {permit:?} at {now:?} was accepted");
    assert_eq!(r.transition, None);
}

/// Parses a script of outcomes: `S` success, `F` failure, `I` ignored; spaces skipped.
fn outcomes(script: &str) -> Vec<Outcome> {
    script
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            'S' => Outcome::Success,
            'F' => Outcome::Failure,
            'I' => Outcome::Ignored,
            other => panic!("unknown outcome {other:?}"),
        })
        .collect()
}

/// Runs `script` one call at a time (acquire, then report) at `now`; answers the
/// transitions the reports caused, in order.
#[track_caller]
fn calls(p: &mut Protector, script: &str, now: Time) -> Vec<Transition> {
    outcomes(script)
        .into_iter()
        .filter_map(|o| {
            let (permit, _) = admit(p, now);
            accept(p, permit, o, now)
        })
        .collect()
}

/// Admits `n` trials at `now` (the protector must be admitting trials).
#[track_caller]
fn trials(p: &mut Protector, n: usize, now: Time) -> Vec<Permit> {
    (0..n)
        .map(|_| {
            let (permit, reason) = admit(p, now);
            assert_eq!(reason, DecisionReason::Trial);
            permit
        })
        .collect()
}

/// The transitions among `changes`.
fn transitions(changes: &[Change]) -> Vec<Transition> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Transition(t) => Some(*t),
            Change::OverrideExpired { .. } => None,
        })
        .collect()
}

/// Trips a default-policy protector (1/1) with one failure at `now`.
#[track_caller]
fn trip(p: &mut Protector, now: Time) -> Transition {
    let t = calls(p, "F", now);
    assert_eq!(t.len(), 1, "one failure should trip {p:?}");
    assert_eq!(p.status(), Status::Open);
    t[0]
}

/// Every observable part of a protector except `stale_reports`.
fn observable(p: &Protector) -> impl PartialEq + std::fmt::Debug {
    let counters = Counters {
        stale_reports: 0,
        ..*p.counters()
    };
    let state = (p.status(), p.generation(), p.open_until(), p.window().clone());
    let more = (p.consecutive_failures(), p.trials_in_flight(), p.override_state());
    (state, more, counters, p.next_deadline(), *p.policy())
}
