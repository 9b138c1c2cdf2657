//! The behaviours the Python library documents, one test each, as the daemon keeps them.

use super::*;
use crate::TransitionReason;

#[test]
fn two_failures_in_the_last_five_trip_two_fifths() {
    let mut p = protector(|s| s.failure_limit = (2, 5));
    assert_eq!(calls(&mut p, "SSSSS", at(0)), vec![]);
    assert_eq!(calls(&mut p, "SFSSSSF", at(1)), vec![]);
    assert_eq!(p.status(), Status::Closed);
    let tripped = calls(&mut p, "F", at(2));
    assert_eq!(tripped.len(), 1);
    assert_eq!(tripped[0].reason, TransitionReason::FailureLimit);
    assert_eq!(p.status(), Status::Open);
}

#[test]
fn the_same_calls_leave_three_fifths_closed() {
    let mut p = protector(|s| s.failure_limit = (3, 5));
    assert_eq!(calls(&mut p, "SSSSS SFSSSSFS", at(0)), vec![]);
    assert_eq!(p.status(), Status::Closed);
    assert_eq!(
        p.window().iter().collect::<Vec<_>>(),
        [false, false, false, true, false]
    );
}

/// Trips, lets the cooldown (0) pass, then reports `script` as trials in HALF_OPEN.
fn half_open_then(p: &mut Protector, script: &str) -> Vec<Transition> {
    trip_with_any_limit(p);
    let script = outcomes(script);
    let permits = trials(p, script.len(), at(1));
    permits
        .into_iter()
        .zip(script)
        .filter_map(|(permit, o)| accept(p, permit, o, at(2)))
        .collect()
}

fn trip_with_any_limit(p: &mut Protector) {
    while p.status() == Status::Closed {
        calls(p, "F", at(0));
    }
}

#[test]
fn three_fifths_successes_close_half_open() {
    let mut p = protector(|s| {
        s.failure_limit = (2, 10);
        s.success_limit = Some((3, 5));
    });
    let decided = half_open_then(&mut p, "FSFSS");
    assert_eq!(decided.len(), 1);
    assert_eq!(
        (decided[0].to, decided[0].reason),
        (Status::Closed, TransitionReason::TrialsSucceeded)
    );
}

#[test]
fn without_a_success_limit_two_fifths_failures_reopen_half_open() {
    let mut p = protector(|s| s.failure_limit = (2, 5));
    let decided = half_open_then(&mut p, "FSFSS");
    assert_eq!(decided.len(), 1);
    assert_eq!(
        (decided[0].to, decided[0].reason),
        (Status::Open, TransitionReason::TrialsFailed)
    );
}

#[test]
fn the_default_policy_opens_on_the_first_failure_and_one_trial_closes_it() {
    let mut p = Protector::new(Policy::default());
    let tripped = calls(&mut p, "F", at(0));
    assert_eq!(tripped.len(), 1);
    assert_eq!(tripped[0].open_until, Some(at(0)), "cooldown 0");
    let (permit, reason) = admit(&mut p, at(0));
    assert_eq!((reason, p.status()), (DecisionReason::Trial, Status::HalfOpen));
    let closed = accept(&mut p, permit, Outcome::Success, at(0)).expect("one trial decides");
    assert_eq!(
        (closed.to, closed.reason),
        (Status::Closed, TransitionReason::TrialsSucceeded)
    );
    assert_eq!(admit(&mut p, at(0)).1, DecisionReason::Closed);
}

#[test]
fn an_open_protector_with_a_cooldown_rejects_and_stays_open() {
    let mut p = protector(|s| s.cooldown = secs(10));
    trip(&mut p, at(0));
    for now in [0, 1, 5_000, 9_999] {
        assert_eq!(reject(&mut p, at(now)).0, DecisionReason::Open);
        assert_eq!((p.status(), p.generation()), (Status::Open, 2));
    }
}

#[test]
fn a_window_of_ten_needs_ten_outcomes_before_it_can_trip() {
    let mut p = protector(|s| s.failure_limit = (5, 10));
    assert_eq!(calls(&mut p, "FFFFFFFFF", at(0)), vec![]);
    assert_eq!(p.status(), Status::Closed);
    assert_eq!(calls(&mut p, "F", at(0)).len(), 1);
    assert_eq!(p.status(), Status::Open);
}
