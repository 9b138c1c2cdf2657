//! Validation of the optional rules of proto/SEMANTICS.md section 2a: every field named,
//! and the multiplier's exact arithmetic.

use super::*;
use crate::rules::InvalidRules;
use crate::{Multiplier, PolicyError};

#[test]
fn every_invalid_rule_names_its_field() {
    type Edit = fn(&mut Rules);
    let cases: [(Edit, InvalidRules, &str); 16] = [
        (
            |r| r.window_duration = Some(ms(999)),
            InvalidRules::WindowTooShort,
            "window_duration",
        ),
        (
            |r| r.window_duration = Some(Duration::ZERO),
            InvalidRules::WindowTooShort,
            "window_duration",
        ),
        (
            |r| r.window_duration = Some(secs(3_601)),
            InvalidRules::WindowTooLong,
            "window_duration",
        ),
        (
            |r| r.minimum_calls = Some(3),
            InvalidRules::MinimumCallsWithoutWindow,
            "minimum_calls",
        ),
        (
            |r| {
                r.window_duration = Some(secs(1));
                r.minimum_calls = Some(0);
            },
            InvalidRules::MinimumCallsOutOfRange,
            "minimum_calls",
        ),
        (
            |r| r.consecutive_failures = 10_001,
            InvalidRules::ConsecutiveFailuresTooMany,
            "consecutive_failures",
        ),
        (
            |r| {
                r.slow_call_duration = Some(Duration::ZERO);
                r.slow_call_limit = Some((1, 2));
            },
            InvalidRules::SlowCallDurationTooShort,
            "slow_call_duration",
        ),
        (
            |r| {
                r.slow_call_duration = Some(secs(3_601));
                r.slow_call_limit = Some((1, 2));
            },
            InvalidRules::SlowCallDurationTooLong,
            "slow_call_duration",
        ),
        (
            |r| r.slow_call_duration = Some(ms(5)),
            InvalidRules::SlowCallDurationWithoutLimit,
            "slow_call_duration",
        ),
        (
            |r| {
                r.slow_call_duration = Some(ms(5));
                r.slow_call_limit = Some((3, 2));
            },
            InvalidRules::SlowCallLimit(crate::InvalidFraction::NumeratorAboveDenominator),
            "slow_call_limit",
        ),
        (
            |r| r.slow_call_limit = Some((1, 2)),
            InvalidRules::SlowCallLimitWithoutDuration,
            "slow_call_limit",
        ),
        (
            |r| r.cooldown_multiplier = Multiplier::thousandths(999),
            InvalidRules::MultiplierBelowOne,
            "cooldown_multiplier",
        ),
        (
            |r| r.cooldown_multiplier = Multiplier::thousandths(100_001),
            InvalidRules::MultiplierTooLarge,
            "cooldown_multiplier",
        ),
        (
            |r| r.max_cooldown = Some(Duration::ZERO),
            InvalidRules::MaxCooldownTooShort,
            "max_cooldown",
        ),
        (
            |r| r.max_cooldown = Some(secs(9)),
            InvalidRules::MaxCooldownBelowCooldown,
            "max_cooldown",
        ),
        (
            |r| r.history_size = 1_000_001,
            InvalidRules::HistoryTooLarge,
            "history_size",
        ),
    ];
    let spec = PolicySpec {
        cooldown: secs(10),
        ..PolicySpec::default()
    };
    for (edit, why, field) in cases {
        let mut rules = Rules::default();
        edit(&mut rules);
        let err = Policy::try_with(spec, rules).expect_err("invalid rules were accepted");
        assert_eq!((err, err.field()), (PolicyError::Rules(why), field), "{rules:?}");
        assert!(!err.to_string().is_empty());
    }
    // The spec is checked first, and names its own field.
    let bad = PolicySpec {
        failure_limit: (0, 1),
        ..spec
    };
    let err = Policy::try_with(bad, Rules::default()).unwrap_err();
    assert_eq!(err.field(), "failure_limit");
}

#[test]
fn a_multiplier_is_exact_in_thousandths() {
    assert_eq!(Multiplier::from_f64(1.5), Some(Multiplier::thousandths(1_500)));
    assert_eq!(Multiplier::from_f64(f64::NAN), None);
    assert_eq!(Multiplier::from_f64(-1.0), None);
    assert_eq!(
        Multiplier::thousandths(1_500).apply(ms(3)),
        Duration::from_micros(4_500)
    );
    assert_eq!(Multiplier::thousandths(1_001).to_string(), "1.001");
}
