//! Table tests of the optional rules, proto/SEMANTICS.md section 2a: time window and
//! minimum calls, consecutive failures, slow calls, which reason wins, cooldown backoff,
//! shadow mode, memory; the validation of every field is `rules_validation.rs`.

use super::*;
use crate::{Multiplier, Override, OverrideKind, TransitionReason as R};

/// A protector on the default spec and rules as changed by `spec` and `rules`.
#[track_caller]
fn with(spec: impl FnOnce(&mut PolicySpec), rules: impl FnOnce(&mut Rules)) -> Protector {
    let (mut s, mut r) = (PolicySpec::default(), Rules::default());
    spec(&mut s);
    rules(&mut r);
    Protector::new(Policy::try_with(s, r).expect("test policy is valid"))
}

/// One call at `now` taking `took`; answers the transition its report caused.
#[track_caller]
fn call(p: &mut Protector, outcome: Outcome, took: Option<Duration>, now: Time) -> Option<Transition> {
    let (permit, _) = admit(p, now);
    let r = p.report_timed(permit, outcome, took, now);
    assert!(r.accepted, "report at {now:?} was refused");
    r.transition
}

/// Runs `script` at `now`, each call taking `took`; answers the reasons of the transitions.
#[track_caller]
fn run(p: &mut Protector, script: &str, took: Option<Duration>, now: Time) -> Vec<R> {
    outcomes(script)
        .into_iter()
        .filter_map(|o| call(p, o, took, now).map(|t| t.reason))
        .collect()
}

fn time_window(p: &Protector) -> (u64, u64, u64) {
    let t = p.time_window().expect("a time window");
    (t.calls(), t.failures(), t.slow())
}

#[test]
fn a_time_window_holds_the_current_bucket_and_the_ones_before_it() {
    // 1 s in 100 ms buckets: an outcome recorded in bucket b is dropped once the
    // window's clock reaches bucket b + 10.
    for (last, trips, held) in [(999, true, 5), (1_000, false, 3), (1_099, false, 3)] {
        let mut p = with(
            |s| s.failure_limit = (2, 4),
            |r| r.window_duration = Some(secs(1)),
        );
        assert_eq!(
            run(&mut p, "FF", None, at(0)),
            vec![],
            "fewer than minimum_calls (4)"
        );
        assert_eq!(run(&mut p, "SS", None, at(500)), vec![]);
        let got = call(&mut p, Outcome::Failure, None, at(last)).map(|t| t.reason);
        assert_eq!(got, trips.then_some(R::FailureLimit), "last failure at {last} ms");
        assert_eq!(time_window(&p).0, held, "calls held at {last} ms");
    }
}

#[test]
fn the_time_window_uses_100ms_buckets_up_to_6_minutes_and_1s_above() {
    for (window, width, span) in [
        (secs(1), ms(100), 10),
        (ms(1_050), ms(100), 11),
        (secs(360), ms(100), 3_600),
        (secs(361), secs(1), 361),
        (secs(3_600), secs(1), 3_600),
    ] {
        let p = with(|_| {}, |r| r.window_duration = Some(window));
        let t = p.time_window().expect("a time window");
        assert_eq!((t.width(), t.span()), (width, span), "{window:?}");
    }
}

#[test]
fn minimum_calls_holds_a_trip_back() {
    for (minimum, trips_at) in [(None, 4), (Some(2), 2), (Some(6), 6)] {
        let mut p = with(
            |s| s.failure_limit = (1, 4),
            |r| {
                r.window_duration = Some(secs(10));
                r.minimum_calls = minimum;
            },
        );
        let mut tripped = Vec::new();
        for i in 1..=8 {
            if p.status() == Status::Closed && call(&mut p, Outcome::Failure, None, at(i)).is_some() {
                tripped.push(i);
            }
        }
        assert_eq!(tripped, vec![trips_at], "minimum_calls {minimum:?}");
    }
}

#[test]
fn the_window_clock_never_goes_back() {
    let mut p = with(
        |s| s.failure_limit = (3, 3),
        |r| r.window_duration = Some(secs(1)),
    );
    run(&mut p, "S", None, at(5_000));
    // Reported with an instant 5 s earlier: counted at the newest instant, in the same bucket.
    run(&mut p, "S", None, at(0));
    let buckets: Vec<_> = p.time_window().unwrap().buckets().map(|b| b.calls).collect();
    assert_eq!(buckets, vec![2]);
    // And the outcome is dropped with its bucket, 1 s after the newest instant.
    run(&mut p, "S", None, at(6_000));
    assert_eq!(time_window(&p), (1, 0, 0));
}

#[test]
fn half_open_keeps_its_count_window_and_closed_starts_a_new_time_window() {
    let mut p = with(
        |s| s.failure_limit = (1, 2),
        |r| r.window_duration = Some(secs(5)),
    );
    assert_eq!(run(&mut p, "SF", None, at(0)), vec![R::FailureLimit]);
    assert_eq!(
        time_window(&p),
        (2, 1, 0),
        "OPEN keeps the window it tripped with"
    );
    let trials = trials(&mut p, 2, at(1));
    assert_eq!((p.status(), p.window().size()), (Status::HalfOpen, 2));
    for t in trials {
        accept(&mut p, t, Outcome::Success, at(2));
    }
    assert_eq!(p.status(), Status::Closed);
    assert_eq!(time_window(&p), (0, 0, 0));
}

#[test]
fn consecutive_failures_trip_at_once_whatever_the_window_says() {
    for (script, expect) in [
        ("FFF", vec![R::ConsecutiveFailures]),
        ("FFSFF", vec![]),
        ("FFIF", vec![R::ConsecutiveFailures]),
        ("SSSFFF", vec![R::ConsecutiveFailures]),
    ] {
        let mut p = with(|s| s.failure_limit = (10, 10), |r| r.consecutive_failures = 3);
        assert_eq!(run(&mut p, script, None, at(0)), expect, "{script}");
    }
}

#[test]
fn the_older_rule_gives_the_reason_when_several_trip() {
    // (failure_limit, streak, slow limit, script, calls slow?, reason)
    let cases = [
        ((2, 2), 2, None, "FF", false, R::FailureLimit),
        ((3, 3), 2, None, "FF", false, R::ConsecutiveFailures),
        ((2, 2), 0, Some((1, 2)), "FF", true, R::FailureLimit),
        ((3, 3), 3, Some((1, 1)), "FFF", true, R::FailureLimit),
        ((3, 4), 2, Some((1, 1)), "SFF", true, R::ConsecutiveFailures),
        ((2, 2), 0, Some((2, 2)), "SF", true, R::SlowCalls),
    ];
    for (limit, streak, slow, script, is_slow, reason) in cases {
        let mut p = with(
            |s| s.failure_limit = limit,
            |r| {
                r.consecutive_failures = streak;
                r.slow_call_limit = slow;
                r.slow_call_duration = slow.map(|_| ms(100));
            },
        );
        let took = Some(if is_slow { ms(100) } else { ms(1) });
        assert_eq!(
            run(&mut p, script, took, at(0)),
            vec![reason],
            "{limit:?} {streak} {slow:?} {script}"
        );
    }
}

#[test]
fn slow_calls_trip_closed_when_the_window_is_full() {
    // (call durations, transitions): window of 4, slow at 100 ms or above, limit 1/2.
    let cases: [(&[Option<u64>], Option<R>); 5] = [
        (&[Some(100), Some(1), Some(100), Some(1)], None),
        (&[Some(1), Some(1), Some(100), Some(100)], Some(R::SlowCalls)),
        (&[Some(99), Some(99), Some(99), Some(99)], None),
        (&[None, None, None, Some(100)], None),
        (&[Some(500), Some(500), Some(500), None], None),
    ];
    for (durations, expect) in cases {
        let mut p = with(
            |s| s.failure_limit = (4, 4),
            |r| {
                r.slow_call_duration = Some(ms(100));
                r.slow_call_limit = Some((1, 2));
            },
        );
        let got: Vec<R> = durations
            .iter()
            .filter_map(|d| call(&mut p, Outcome::Success, d.map(ms), at(0)).map(|t| t.reason))
            .collect();
        assert_eq!(got, Vec::from_iter(expect), "{durations:?}");
    }
}

#[test]
fn slow_trials_reopen_half_open() {
    for (took, to, reason) in [
        (ms(200), Status::Open, R::SlowCalls),
        (ms(10), Status::Closed, R::TrialsSucceeded),
    ] {
        let mut p = with(
            |s| s.failure_limit = (1, 2),
            |r| {
                r.slow_call_duration = Some(ms(100));
                r.slow_call_limit = Some((1, 2));
            },
        );
        assert_eq!(run(&mut p, "FF", Some(ms(1)), at(0)), vec![R::FailureLimit]);
        let ts = trials(&mut p, 2, at(1));
        let last = ts
            .iter()
            .map(|t| p.report_timed(*t, Outcome::Success, Some(took), at(2)));
        let t = last
            .filter_map(|r| r.transition)
            .next_back()
            .expect("the trials decide");
        assert_eq!((t.to, t.reason), (to, reason), "{took:?}");
    }
}

#[test]
fn the_cooldown_grows_on_each_reopening_and_resets_in_closed() {
    let mut p = with(
        |s| s.cooldown = secs(1),
        |r| {
            r.cooldown_multiplier = Multiplier::thousandths(2_500);
            r.max_cooldown = Some(secs(5));
        },
    );
    assert_eq!(p.cooldown_in_force(), secs(1));
    let mut now = at(0);
    let mut lengths = Vec::new();
    trip(&mut p, now);
    for _ in 0..4 {
        lengths.push(p.cooldown_in_force());
        now = p.open_until().unwrap();
        let (permit, _) = admit(&mut p, now);
        let t = accept(&mut p, permit, Outcome::Failure, now).expect("reopens");
        assert_eq!(t.open_until, Some(now + p.cooldown_in_force()));
    }
    lengths.push(p.cooldown_in_force());
    assert_eq!(lengths, vec![secs(1), ms(2_500), ms(5_000), secs(5), secs(5)]);
    now = p.open_until().unwrap();
    let (permit, _) = admit(&mut p, now);
    accept(&mut p, permit, Outcome::Success, now);
    assert_eq!((p.status(), p.cooldown_in_force()), (Status::Closed, secs(1)));
    let t = trip(&mut p, now);
    assert_eq!(t.open_until, Some(now + secs(1)));
}

#[test]
fn a_manual_open_is_no_reopening_but_sets_what_the_next_one_multiplies() {
    let mut p = with(
        |s| s.cooldown = secs(1),
        |r| r.cooldown_multiplier = Multiplier::thousandths(2_000),
    );
    p.set_status(Status::Open, Some(secs(3)), at(0));
    assert_eq!(p.cooldown_in_force(), secs(3));
    let (permit, _) = admit(&mut p, at(3_000));
    accept(&mut p, permit, Outcome::Failure, at(3_000));
    assert_eq!(p.cooldown_in_force(), secs(6));
    p.set_status(Status::Open, None, at(3_000));
    assert_eq!(
        p.cooldown_in_force(),
        secs(1),
        "a manual OPEN without open_for uses the cooldown"
    );
}

#[test]
fn shadow_admits_what_it_would_reject_and_says_so() {
    let mut p = with(
        |s| {
            s.cooldown = secs(10);
            s.trial_permits = Some(1);
        },
        |r| r.shadow = true,
    );
    trip(&mut p, at(0));
    let a = p.acquire(at(1));
    let Decision::Admitted { permit, reason } = a.decision else {
        panic!("shadow rejected {a:?}")
    };
    assert_eq!(
        (reason, a.would_reject, permit.id),
        (DecisionReason::Open, Some(DecisionReason::Open), 0)
    );
    // It would not have run: its outcome is no input.
    refuse(&mut p, permit, Outcome::Failure, at(2));
    assert_eq!((p.counters().rejected, p.status()), (1, Status::Open));
    // HALF_OPEN with its one trial out: TRIALS_EXHAUSTED, admitted all the same.
    let (_trial, _) = admit(&mut p, at(10_000));
    let a = p.acquire(at(10_001));
    assert!(a.decision.is_admitted());
    assert_eq!(a.would_reject, Some(DecisionReason::TrialsExhausted));
    // An operator's FORCED_OPEN is obeyed.
    let forced = Override {
        kind: OverrideKind::ForcedOpen,
        expires_at: None,
    };
    p.set_override(Some(forced), at(10_002));
    let (reason, _) = reject(&mut p, at(10_003));
    assert_eq!(reason, DecisionReason::ForcedOpen);
}

#[test]
fn without_rules_a_policy_is_todays_policy() {
    let spec = PolicySpec {
        failure_limit: (3, 5),
        cooldown: secs(4),
        ..PolicySpec::default()
    };
    let plain = Policy::try_new(spec).unwrap();
    assert_eq!(Policy::try_with(spec, Rules::default()), Ok(plain));
    assert_eq!(plain.rules(), Rules::default());
    let mut p = Protector::new(plain);
    assert!(p.time_window().is_none());
    assert_eq!(p.acquire(at(0)).would_reject, None);
}

#[test]
fn an_hour_long_window_holds_at_most_its_span_of_buckets() {
    let mut p = with(
        |s| s.failure_limit = (1000, 1000),
        |r| r.window_duration = Some(secs(3_600)),
    );
    // Several calls in every bucket of two hours: memory stops at the span.
    for n in 0..7_200 * 4 {
        call(&mut p, Outcome::Success, None, at(n * 250));
    }
    let t = p.time_window().unwrap();
    assert_eq!(
        (t.span(), t.buckets().count(), t.calls()),
        (3_600, 3_600, 3_600 * 4)
    );
    assert!(
        t.heap_bytes() <= 3_600 * std::mem::size_of::<crate::window::Bucket>(),
        "{}",
        t.heap_bytes()
    );
}

#[test]
fn a_timed_batch_equals_the_same_reports_one_by_one() {
    let make = || {
        with(
            |s| s.failure_limit = (3, 4),
            |r| {
                r.window_duration = Some(secs(2));
                r.slow_call_duration = Some(ms(100));
                r.slow_call_limit = Some((1, 2));
            },
        )
    };
    let listed = [
        (Outcome::Success, Some(ms(150))),
        (Outcome::Failure, None),
        (Outcome::Success, Some(ms(99))),
        (Outcome::Ignored, Some(ms(500))),
        (Outcome::Failure, Some(ms(100))),
        (Outcome::Success, Some(ms(300))),
        (Outcome::Success, Some(ms(300))),
    ];
    let (mut batched, mut one_by_one) = (make(), make());
    let r = batched.report_batch_timed(1, 1, &listed, at(10));
    let mut reasons = Vec::new();
    for (outcome, took) in std::iter::once((Outcome::Success, None)).chain(listed) {
        if one_by_one.status() == Status::Closed {
            reasons.extend(call(&mut one_by_one, outcome, took, at(10)).map(|t| t.reason));
        }
    }
    assert_eq!(r.transition.map(|t| t.reason), reasons.first().copied());
    // The seventh call (3 slow of 6 recorded) trips; the last is stale in both.
    assert_eq!((reasons, r.accepted, r.stale), (vec![R::SlowCalls], 7, 1));
    assert_eq!(time_window(&batched), time_window(&one_by_one));
    assert_eq!(batched.status(), one_by_one.status());
}
