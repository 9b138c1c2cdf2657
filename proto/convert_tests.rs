//! Tests of the wire conversions.

use super::*;
use resilient_circuit_breaker::{Outcome, OverrideKind, Policy, Protector, Status};

fn ts(seconds: i64, nanos: i32) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos }
}
fn dur(seconds: i64, nanos: i32) -> prost_types::Duration {
    prost_types::Duration { seconds, nanos }
}
fn frac(numerator: u32, denominator: u32) -> Option<v1::Fraction> {
    Some(v1::Fraction {
        numerator,
        denominator,
    })
}

#[test]
fn instants_round_trip_and_bad_timestamps_are_refused() {
    for t in [Time::ZERO, Duration::new(1_700_000_000, 999_999_999)] {
        assert_eq!(time(&timestamp(t)), Some(t));
    }
    for bad in [ts(-1, 0), ts(1, -1), ts(1, 1_000_000_000)] {
        assert_eq!(time(&bad), None, "{bad:?}");
    }
}

#[test]
fn durations_round_trip_and_malformed_ones_are_refused() {
    for d in [Duration::ZERO, Duration::new(30, 5), Duration::from_nanos(1)] {
        assert_eq!(std_duration(&duration(d)), Ok(d));
    }
    use DurationError::*;
    let cases = [
        (dur(-1, 0), Negative),
        (dur(0, -1), Negative),
        (dur(-1, -5), Negative),
        (dur(0, 1_000_000_000), NanosOutOfRange),
        (dur(0, -1_000_000_000), NanosOutOfRange),
        (dur(1, -1), SignMismatch),
        (dur(-1, 1), SignMismatch),
    ];
    for (d, want) in cases {
        assert_eq!(std_duration(&d), Err(want), "{d:?}");
    }
}

#[test]
fn enums_round_trip_and_unspecified_is_refused() {
    for s in [Status::Closed, Status::Open, Status::HalfOpen] {
        assert_eq!(Status::try_from(v1::Status::from(s)), Ok(s));
    }
    for o in [Outcome::Success, Outcome::Failure, Outcome::Ignored] {
        assert_eq!(Outcome::try_from(v1::Outcome::from(o)), Ok(o));
    }
    for k in [OverrideKind::ForcedOpen, OverrideKind::Disabled] {
        assert_eq!(override_kind(v1::OverrideKind::from(k)), Ok(Some(k)));
    }
    assert_eq!(override_kind(v1::OverrideKind::None), Ok(None));
    let err = Status::try_from(v1::Status::Unspecified).unwrap_err();
    assert_eq!(err.value, "STATUS_UNSPECIFIED");
    assert!(Outcome::try_from(v1::Outcome::Unspecified).is_err());
    assert!(override_kind(v1::OverrideKind::Unspecified).is_err());
    let reason = v1::DecisionReason::from(breaker::DecisionReason::TrialsExhausted);
    assert_eq!(reason, v1::DecisionReason::TrialsExhausted);
    let reason = v1::TransitionReason::from(breaker::TransitionReason::PermitExpired);
    assert_eq!(reason, v1::TransitionReason::PermitExpired);
}

#[test]
fn reasons_round_trip_and_unspecified_is_refused() {
    use breaker::{DecisionReason as D, TransitionReason as T};
    for r in [
        D::Closed,
        D::Trial,
        D::Disabled,
        D::Open,
        D::TrialsExhausted,
        D::ForcedOpen,
    ] {
        assert_eq!(D::try_from(v1::DecisionReason::from(r)), Ok(r));
    }
    for r in [
        T::FailureLimit,
        T::CooldownElapsed,
        T::TrialsSucceeded,
        T::TrialsFailed,
        T::PermitExpired,
        T::Manual,
        T::ConsecutiveFailures,
        T::SlowCalls,
    ] {
        assert_eq!(T::try_from(v1::TransitionReason::from(r)), Ok(r));
    }
    let err = D::try_from(v1::DecisionReason::Unspecified).unwrap_err();
    assert_eq!(err.value, "DECISION_REASON_UNSPECIFIED");
    let err = T::try_from(v1::TransitionReason::Unspecified).unwrap_err();
    assert_eq!(err.value, "TRANSITION_REASON_UNSPECIFIED");
}

#[test]
fn policies_round_trip_with_defaults_and_fractions_as_given() {
    assert_eq!(policy(&v1::Policy::default()), Ok(Policy::default()));
    let specs = [
        PolicySpec::default(),
        PolicySpec {
            cooldown: Duration::from_millis(2500),
            failure_limit: (5, 10),
            success_limit: Some((1, 1)),
            trial_permits: Some(0),
            permit_ttl: Duration::from_millis(1),
            auto_half_open: true,
        },
        PolicySpec {
            success_limit: Some((3, 4)),
            trial_permits: Some(10_000),
            ..PolicySpec::default()
        },
    ];
    for spec in specs {
        let p = Policy::try_new(spec).unwrap();
        let wire = v1::Policy::from(&p);
        assert!(wire.cooldown.is_some() && wire.permit_ttl.is_some());
        assert!(wire.failure_limit.is_some());
        assert_eq!(wire.trial_permits, spec.trial_permits);
        assert_eq!(policy(&wire), Ok(p));
    }
}

#[test]
fn invalid_policies_name_the_field() {
    let fl = |n, d| v1::Policy {
        failure_limit: frac(n, d),
        ..Default::default()
    };
    let sl = |n, d| v1::Policy {
        success_limit: frac(n, d),
        ..Default::default()
    };
    let cd = |s, n| v1::Policy {
        cooldown: Some(dur(s, n)),
        ..Default::default()
    };
    let ttl = |s, n| v1::Policy {
        permit_ttl: Some(dur(s, n)),
        ..Default::default()
    };
    let cases = [
        (fl(0, 5), "failure_limit.numerator"),
        (fl(6, 5), "failure_limit"),
        (fl(0, 0), "failure_limit.denominator"),
        (fl(1, 10_001), "failure_limit.denominator"),
        (sl(0, 5), "success_limit.numerator"),
        (sl(2, 1), "success_limit"),
        (cd(-1, 0), "cooldown"),
        (cd(31 * 24 * 3600, 0), "cooldown"),
        (ttl(1, -1), "permit_ttl"),
        (ttl(0, 0), "permit_ttl"),
        (ttl(3601, 0), "permit_ttl"),
        (
            v1::Policy {
                trial_permits: Some(10_001),
                ..Default::default()
            },
            "trial_permits",
        ),
    ];
    for (p, field) in cases {
        let err = policy(&p).unwrap_err();
        assert_eq!(err.field, field, "{p:?}: {err}");
        assert!(!err.description.is_empty());
    }
    let err = policy(&fl(6, 5)).unwrap_err();
    assert!(err.description.contains("6/5"), "{err}");
}

#[test]
fn permits_round_trip_without_the_expiry() {
    let bp = |generation, id, expires_at| breaker::Permit {
        generation,
        id,
        expires_at,
    };
    let wp = |generation, id, expires_at| v1::Permit {
        generation,
        id,
        expires_at,
    };
    let untracked = bp(3, 0, None);
    assert_eq!(permit(&untracked.into()), Ok(untracked));
    let wire = v1::Permit::from(bp(4, 9, Some(Duration::from_secs(5))));
    assert_eq!(wire, wp(4, 9, Some(ts(5, 0))));
    assert_eq!(permit(&wire), Ok(bp(4, 9, None)));
    assert_eq!(permit(&wp(2, 0, Some(ts(1, 0)))), Ok(bp(2, 0, None)));
    assert_eq!(permit(&wp(0, 1, None)).unwrap_err().field, "generation");
}

#[test]
fn a_protector_fills_every_field() {
    let spec = PolicySpec {
        failure_limit: (2, 3),
        ..PolicySpec::default()
    };
    let mut p = Protector::new(Policy::try_new(spec).unwrap());
    let now = Duration::from_secs(100);
    let breaker::Decision::Admitted { permit, .. } = p.acquire(now).decision else {
        panic!("a new protector admits");
    };
    p.report(permit, Outcome::Success, now);
    p.report(permit, Outcome::Failure, now);
    let wire = protector("db", &p, 42);
    assert_eq!((wire.name.as_str(), wire.mod_revision), ("db", 42));
    assert_eq!((wire.status, wire.generation), (v1::Status::Closed as i32, 1));
    assert_eq!(wire.r#override, Some(no_override()));
    assert_eq!(wire.policy.and_then(|p| p.failure_limit), frac(2, 3));
    let w = wire.window.unwrap();
    assert_eq!((w.size, w.successes, w.failures), (3, 1, 1));
    assert_eq!(
        w.outcomes,
        [v1::Outcome::Success as i32, v1::Outcome::Failure as i32]
    );
    let counters = wire.counters.map(|c| (c.admitted, c.successes, c.failures));
    assert_eq!(counters, Some((1, 1, 1)));
    assert_eq!(wire.consecutive_failures, 1);

    let forced = breaker::Override {
        kind: OverrideKind::ForcedOpen,
        expires_at: None,
    };
    p.set_override(Some(forced), now);
    let changes = p.set_status(Status::Open, None, now);
    let wire = protector("db", &p, 43);
    let kind = wire.r#override.map(|o| o.kind);
    assert_eq!(kind, Some(v1::OverrideKind::ForcedOpen as i32));
    assert_eq!(wire.open_until, Some(ts(100, 0)));
    let Some(breaker::Change::Transition(t)) = changes.last() else {
        panic!("SetStatus transitions");
    };
    // The generated getter `Transition::from` shadows `From::from`, hence `into`.
    let t: v1::Transition = (*t).into();
    assert_eq!((t.from(), t.to()), (v1::Status::Closed, v1::Status::Open));
    assert_eq!(t.reason(), v1::TransitionReason::Manual);
    assert_eq!(
        (t.generation, t.at, t.open_until),
        (2, Some(ts(100, 0)), Some(ts(100, 0)))
    );
}

fn a_transition() -> breaker::Transition {
    breaker::Transition {
        from: Status::Closed,
        to: Status::Open,
        reason: breaker::TransitionReason::FailureLimit,
        generation: 2,
        open_until: Some(Duration::new(130, 5)),
        at: Duration::from_secs(100),
    }
}

#[test]
fn transitions_round_trip_and_malformed_ones_name_the_field() {
    let t = a_transition();
    assert_eq!(transition(&t.into()), Ok(t));
    let closed = breaker::Transition {
        to: Status::Closed,
        open_until: None,
        ..t
    };
    assert_eq!(transition(&closed.into()), Ok(closed));

    let wire = || -> v1::Transition { t.into() };
    let cases = [
        (v1::Transition { from: 0, ..wire() }, "from"),
        (v1::Transition { to: 99, ..wire() }, "to"),
        (v1::Transition { reason: 0, ..wire() }, "reason"),
        (
            v1::Transition {
                generation: 0,
                ..wire()
            },
            "generation",
        ),
        (v1::Transition { at: None, ..wire() }, "at"),
        (
            v1::Transition {
                at: Some(ts(-1, 0)),
                ..wire()
            },
            "at",
        ),
        (
            v1::Transition {
                open_until: Some(ts(1, 1_000_000_000)),
                ..wire()
            },
            "open_until",
        ),
    ];
    for (bad, field) in cases {
        let err = transition(&bad).unwrap_err();
        assert_eq!(err.field, field, "{bad:?}: {err}");
    }
    let err = transition(&v1::Transition { from: 0, ..wire() }).unwrap_err();
    assert_eq!(err.description, "STATUS_UNSPECIFIED is not accepted");
    let err = transition(&v1::Transition { to: 99, ..wire() }).unwrap_err();
    assert_eq!(err.description, "99 is not a known value");
}

#[test]
fn acquire_answers_round_trip_their_decision() {
    let trial = breaker::Permit {
        generation: 3,
        id: 7,
        expires_at: Some(Duration::from_secs(160)),
    };
    let admitted = breaker::Decision::Admitted {
        permit: trial,
        reason: breaker::DecisionReason::Trial,
    };
    let moved = breaker::Transition {
        from: Status::Open,
        to: Status::HalfOpen,
        reason: breaker::TransitionReason::CooldownElapsed,
        generation: 3,
        open_until: None,
        at: Duration::from_secs(130),
    };
    let wire = acquire_response(admitted, Status::HalfOpen, 12, Some(moved), false, 3);
    assert_eq!(wire.status(), v1::Status::HalfOpen);
    assert_eq!((wire.revision, wire.policy_revision), (12, 3));
    assert_eq!(wire.permit, Some(trial.into()));
    assert_eq!(wire.transition.as_deref().map(transition), Some(Ok(moved)));
    // The permit comes back as `permit` reads it: without the expiry.
    let read = breaker::Permit {
        expires_at: None,
        ..trial
    };
    let want = breaker::Decision::Admitted {
        permit: read,
        reason: breaker::DecisionReason::Trial,
    };
    assert_eq!(decision(&wire), Ok(want));

    for retry_after in [Some(Duration::from_millis(1500)), None] {
        let rejected = breaker::Decision::Rejected {
            reason: breaker::DecisionReason::Open,
            retry_after,
        };
        let wire = acquire_response(rejected, Status::Open, 13, None, false, 3);
        assert_eq!((wire.permit, wire.transition.as_deref()), (None, None));
        assert_eq!(decision(&wire), Ok(rejected));
    }
}

#[test]
fn malformed_acquire_answers_name_the_field() {
    let rejected = breaker::Decision::Rejected {
        reason: breaker::DecisionReason::Open,
        retry_after: None,
    };
    let wire = || acquire_response(rejected, Status::Open, 1, None, false, 3);
    let admitted = || v1::AcquireResponse {
        decision: v1::Decision::Admitted.into(),
        reason: v1::DecisionReason::Closed.into(),
        permit: Some(v1::Permit {
            generation: 1,
            id: 0,
            expires_at: None,
        }),
        ..wire()
    };
    assert!(decision(&admitted()).is_ok());
    let cases = [
        (
            v1::AcquireResponse {
                decision: 0,
                ..wire()
            },
            "decision",
        ),
        (
            v1::AcquireResponse {
                decision: 9,
                ..wire()
            },
            "decision",
        ),
        (v1::AcquireResponse { reason: 0, ..wire() }, "reason"),
        (
            v1::AcquireResponse {
                retry_after: Some(dur(-1, 0)),
                ..wire()
            },
            "retry_after",
        ),
        (
            v1::AcquireResponse {
                reason: 0,
                ..admitted()
            },
            "reason",
        ),
        (
            v1::AcquireResponse {
                permit: None,
                ..admitted()
            },
            "permit",
        ),
        (
            v1::AcquireResponse {
                permit: Some(v1::Permit::default()),
                ..admitted()
            },
            "permit.generation",
        ),
    ];
    for (bad, field) in cases {
        let err = decision(&bad).unwrap_err();
        assert_eq!(err.field, field, "{bad:?}: {err}");
    }
}

#[test]
fn every_rule_of_section_2a_round_trips_and_names_its_field() {
    let d = |s: i64, n: i32| Some(prost_types::Duration { seconds: s, nanos: n });
    let full = v1::Policy {
        cooldown: d(2, 0),
        window_duration: d(30, 0),
        minimum_calls: Some(20),
        consecutive_failures: 5,
        slow_call_duration: d(0, 250_000_000),
        slow_call_limit: Some(v1::Fraction {
            numerator: 1,
            denominator: 2,
        }),
        cooldown_multiplier: Some(1.5),
        max_cooldown: d(60, 0),
        shadow: true,
        history_size: 1_000,
        ..Default::default()
    };
    let p = policy(&full).expect("valid");
    let back = v1::Policy::from(&p);
    assert_eq!(policy(&back), Ok(p));
    assert_eq!(back.cooldown_multiplier, Some(1.5));
    assert_eq!(back.window_duration, full.window_duration);
    // The default multiplier goes back unset.
    let plain = v1::Policy::from(&policy(&v1::Policy::default()).expect("valid"));
    assert_eq!(plain.cooldown_multiplier, None);
    assert_eq!(plain.max_cooldown, None);

    let cases: Vec<(v1::Policy, &str)> = vec![
        (
            v1::Policy {
                window_duration: d(0, 0),
                ..Default::default()
            },
            "window_duration",
        ),
        (
            v1::Policy {
                window_duration: d(-1, 0),
                ..Default::default()
            },
            "window_duration",
        ),
        (
            v1::Policy {
                window_duration: d(3_601, 0),
                ..Default::default()
            },
            "window_duration",
        ),
        (
            v1::Policy {
                minimum_calls: Some(3),
                ..Default::default()
            },
            "minimum_calls",
        ),
        (
            v1::Policy {
                consecutive_failures: 10_001,
                ..Default::default()
            },
            "consecutive_failures",
        ),
        (
            v1::Policy {
                slow_call_duration: d(1, 0),
                ..Default::default()
            },
            "slow_call_duration",
        ),
        (
            v1::Policy {
                slow_call_duration: d(1, 0),
                slow_call_limit: Some(v1::Fraction {
                    numerator: 3,
                    denominator: 2,
                }),
                ..Default::default()
            },
            "slow_call_limit",
        ),
        (
            v1::Policy {
                cooldown_multiplier: Some(0.5),
                ..Default::default()
            },
            "cooldown_multiplier",
        ),
        (
            v1::Policy {
                cooldown_multiplier: Some(f64::NAN),
                ..Default::default()
            },
            "cooldown_multiplier",
        ),
        (
            v1::Policy {
                max_cooldown: d(0, 0),
                ..Default::default()
            },
            "max_cooldown",
        ),
        (
            v1::Policy {
                cooldown: d(10, 0),
                max_cooldown: d(5, 0),
                ..Default::default()
            },
            "max_cooldown",
        ),
        (
            v1::Policy {
                history_size: 1_000_001,
                ..Default::default()
            },
            "history_size",
        ),
    ];
    for (p, field) in cases {
        let err = policy(&p).expect_err(field);
        assert!(err.field.starts_with(field), "{p:?}: {err}");
    }
}
