//! Policy validation, one row per rule, and the outcome window.

use super::*;
use crate::policy::{MAX_COOLDOWN, MAX_PERMIT_TTL, MIN_PERMIT_TTL};
use crate::{Fraction, InvalidFraction, InvalidPolicy, Window};

#[test]
fn try_new_names_the_first_rule_violated_and_its_field() {
    use InvalidFraction::{DenominatorTooLarge, NumeratorAboveDenominator, ZeroDenominator, ZeroNumerator};
    type Edit = fn(&mut PolicySpec);
    let rows: &[(Edit, InvalidPolicy, &str)] = &[
        (
            |s| s.cooldown = MAX_COOLDOWN + ms(1),
            InvalidPolicy::CooldownTooLong,
            "cooldown",
        ),
        (
            |s| s.failure_limit = (0, 5),
            InvalidPolicy::FailureLimit(ZeroNumerator),
            "failure_limit",
        ),
        (
            |s| s.failure_limit = (6, 5),
            InvalidPolicy::FailureLimit(NumeratorAboveDenominator),
            "failure_limit",
        ),
        (
            |s| s.failure_limit = (0, 0),
            InvalidPolicy::FailureLimit(ZeroDenominator),
            "failure_limit",
        ),
        (
            |s| s.failure_limit = (5, 10_001),
            InvalidPolicy::FailureLimit(DenominatorTooLarge),
            "failure_limit",
        ),
        (
            |s| s.success_limit = Some((0, 5)),
            InvalidPolicy::SuccessLimit(ZeroNumerator),
            "success_limit",
        ),
        (
            |s| s.success_limit = Some((6, 5)),
            InvalidPolicy::SuccessLimit(NumeratorAboveDenominator),
            "success_limit",
        ),
        (
            |s| s.success_limit = Some((0, 0)),
            InvalidPolicy::SuccessLimit(ZeroDenominator),
            "success_limit",
        ),
        (
            |s| s.success_limit = Some((5, 10_001)),
            InvalidPolicy::SuccessLimit(DenominatorTooLarge),
            "success_limit",
        ),
        (
            |s| s.trial_permits = Some(10_001),
            InvalidPolicy::TrialPermitsTooMany,
            "trial_permits",
        ),
        (
            |s| s.permit_ttl = Duration::from_micros(999),
            InvalidPolicy::PermitTtlTooShort,
            "permit_ttl",
        ),
        (
            |s| s.permit_ttl = Duration::ZERO,
            InvalidPolicy::PermitTtlTooShort,
            "permit_ttl",
        ),
        (
            |s| s.permit_ttl = MAX_PERMIT_TTL + ms(1),
            InvalidPolicy::PermitTtlTooLong,
            "permit_ttl",
        ),
    ];
    for (i, &(edit, error, field)) in rows.iter().enumerate() {
        let mut spec = PolicySpec::default();
        edit(&mut spec);
        assert_eq!(Policy::try_new(spec), Err(error), "row {i}: {spec:?}");
        assert_eq!(error.field(), field, "row {i}");
        assert!(error.to_string().starts_with(field), "row {i}: {error}");
    }
}

#[test]
fn try_new_accepts_every_bound_and_round_trips() {
    type Edit = fn(&mut PolicySpec);
    let rows: &[Edit] = &[
        |_| {},
        |s| s.cooldown = MAX_COOLDOWN,
        |s| s.failure_limit = (10_000, 10_000),
        |s| s.failure_limit = (1, 10_000),
        |s| s.success_limit = Some((1, 1)),
        |s| s.success_limit = Some((10_000, 10_000)),
        |s| s.trial_permits = Some(0),
        |s| s.trial_permits = Some(10_000),
        |s| s.permit_ttl = MIN_PERMIT_TTL,
        |s| s.permit_ttl = MAX_PERMIT_TTL,
        |s| s.auto_half_open = true,
    ];
    for (i, edit) in rows.iter().enumerate() {
        let mut spec = PolicySpec::default();
        edit(&mut spec);
        let p = Policy::try_new(spec).unwrap_or_else(|e| panic!("row {i}: {e}"));
        assert_eq!(p.spec(), spec, "row {i}");
    }
}

#[test]
fn the_default_policy_is_the_documented_one() {
    let p = Policy::default();
    assert_eq!(p.cooldown(), Duration::ZERO);
    assert_eq!(p.failure_limit(), Fraction::ONE);
    assert_eq!(p.success_limit(), None);
    assert_eq!(p.trial_permits(), None);
    assert_eq!(p.permit_ttl(), secs(30));
    assert!(!p.auto_half_open());
    assert_eq!(
        (p.closed_window(), p.half_open_window(), p.trial_limit()),
        (1, 1, Some(1))
    );
}

#[test]
fn a_fraction_is_reached_exactly() {
    // (fraction, count, len, reached)
    let rows = [
        ((2, 5), 2, 5, true),
        ((2, 5), 1, 5, false),
        ((5, 10), 1, 2, true),
        ((1, 3), 1, 3, true),
        ((1, 3), 333, 1_000, false),
        ((10_000, 10_000), 9_999, 10_000, false),
        ((1, 1), 0, 0, false),
    ];
    for ((n, d), count, len, reached) in rows {
        let f = Fraction::try_new(n, d).expect("valid");
        assert_eq!(f.reached_by(count, len), reached, "{f} by {count}/{len}");
    }
}

/// Checks `w` against the plain list of what it should hold, oldest first.
#[track_caller]
fn assert_holds(w: &Window, expected: &[bool]) {
    assert_eq!(w.iter().collect::<Vec<_>>(), expected);
    assert_eq!(w.len() as usize, expected.len());
    assert_eq!(w.failures() as usize, expected.iter().filter(|f| **f).count());
    assert_eq!(w.successes() as usize, expected.iter().filter(|f| !**f).count());
    assert_eq!(w.is_empty(), expected.is_empty());
    assert_eq!(w.is_full(), expected.len() == w.size() as usize);
}

#[test]
fn a_window_drops_its_oldest_outcome_when_full() {
    for size in [1, 2, 3, 63, 64, 65, 128, 130, 200] {
        let mut w = Window::new(size);
        let mut expected = Vec::new();
        assert_holds(&w, &expected);
        // An irregular pattern, so a ring slot off by one shows.
        for i in 0..(size as usize * 3 + 7) {
            let failed = i % 3 == 0 || i % 7 == 0;
            w.push(failed);
            expected.push(failed);
            if expected.len() > size as usize {
                expected.remove(0);
            }
            assert_holds(&w, &expected);
        }
        assert_eq!(w.size(), size);
    }
}

#[test]
fn a_window_from_outcomes_keeps_the_newest() {
    let outcomes: Vec<bool> = (0..150).map(|i| i % 5 == 1).collect();
    assert_holds(&Window::from_outcomes(70, outcomes.clone()), &outcomes[80..]);
    assert_holds(&Window::from_outcomes(200, outcomes.clone()), &outcomes);
    assert_eq!(Window::new(0).size(), 1, "a window has at least one slot");
}
