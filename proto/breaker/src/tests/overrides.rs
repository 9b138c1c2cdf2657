//! Overrides, stale reports, IGNORED, consecutive failures and the counters.

use super::*;
use crate::{Override, OverrideKind, TransitionReason};

fn forced(expires_at: Option<Time>) -> Option<Override> {
    Some(Override {
        kind: OverrideKind::ForcedOpen,
        expires_at,
    })
}

fn disabled(expires_at: Option<Time>) -> Option<Override> {
    Some(Override {
        kind: OverrideKind::Disabled,
        expires_at,
    })
}

#[test]
fn forced_open_rejects_with_the_time_to_its_expiry() {
    // (expiry, now, retry_after)
    let rows: &[(Option<u64>, u64, Option<Duration>)] = &[
        (None, 5, None),
        (Some(100), 5, Some(ms(95))),
        (Some(100), 99, Some(ms(1))),
    ];
    for &(expiry, now, retry) in rows {
        let mut p = protector(|_| {});
        p.set_override(forced(expiry.map(at)), at(0));
        assert_eq!(reject(&mut p, at(now)), (DecisionReason::ForcedOpen, retry));
        assert_eq!(p.status(), Status::Closed);
        assert_eq!(p.counters().rejected, 1);
    }
    // Over every status of the machine underneath.
    for status in [Status::Closed, Status::Open, Status::HalfOpen] {
        let mut p = protector(|_| {});
        p.set_status(status, Some(Duration::ZERO), at(0));
        p.set_override(forced(None), at(0));
        assert_eq!(reject(&mut p, at(1)).0, DecisionReason::ForcedOpen, "{status:?}");
        assert_eq!(p.status(), status);
    }
}

#[test]
fn disabled_admits_every_call_records_it_and_never_trips() {
    for status in [Status::Closed, Status::Open, Status::HalfOpen] {
        let mut p = protector(|s| s.cooldown = secs(60));
        p.set_status(status, None, at(0));
        let generation = p.generation();
        p.set_override(disabled(None), at(0));
        for i in 0..10 {
            let (permit, reason) = admit(&mut p, at(i));
            assert_eq!(reason, DecisionReason::Disabled);
            assert_eq!(
                permit,
                Permit {
                    generation,
                    id: 0,
                    expires_at: None
                }
            );
            assert_eq!(accept(&mut p, permit, Outcome::Failure, at(i)), None);
        }
        assert_eq!((p.status(), p.generation()), (status, generation));
        assert_eq!(p.trials_in_flight(), 0, "DISABLED calls are not trials");
        assert_eq!(p.counters().failures, 10);
        assert_eq!(p.consecutive_failures(), 10);
        assert_eq!(p.window().failures(), 1, "a window of 1 keeps the newest");
    }
}

#[test]
fn outcomes_under_an_override_wait_for_the_next_outcome_after_it() {
    for kind in [OverrideKind::ForcedOpen, OverrideKind::Disabled] {
        let mut p = protector(|s| s.failure_limit = (1, 2));
        let before = [admit(&mut p, at(0)).0, admit(&mut p, at(0)).0];
        p.set_override(
            Some(Override {
                kind,
                expires_at: None,
            }),
            at(1),
        );
        for permit in before {
            assert_eq!(accept(&mut p, permit, Outcome::Failure, at(2)), None, "{kind:?}");
        }
        assert_eq!(p.set_override(None, at(3)), vec![]);
        // The window is full of failures, yet nothing was evaluated.
        assert_eq!((p.status(), p.window().failures()), (Status::Closed, 2));
        assert_eq!(p.tick(at(4)), vec![]);
        // A success is recorded but only a failure checks the trip rule.
        assert_eq!(calls(&mut p, "S", at(5)), vec![]);
        let tripped = calls(&mut p, "F", at(6));
        assert_eq!(tripped.len(), 1, "{kind:?}");
        assert_eq!(tripped[0].reason, TransitionReason::FailureLimit);
    }
}

#[test]
fn trials_reported_or_expired_under_forced_open_decide_nothing() {
    let mut p = protector(|s| {
        s.permit_ttl = ms(100);
        s.success_limit = Some((1, 2));
    });
    p.set_status(Status::HalfOpen, None, at(0));
    let permits = trials(&mut p, 2, at(0));
    p.set_override(forced(None), at(10));
    accept(&mut p, permits[0], Outcome::Success, at(20));
    assert_eq!(p.tick(at(500)), vec![], "the expiry is recorded, not evaluated");
    assert_eq!(p.counters().expired_permits, 1);
    assert!(p.window().is_full());
    assert_eq!((p.status(), p.generation()), (Status::HalfOpen, 2));
    p.set_override(None, at(600));
    let (permit, _) = admit(&mut p, at(600));
    // The next outcome is evaluated over the full window: S,F then S is F,S: 1/2.
    let t = accept(&mut p, permit, Outcome::Success, at(601)).expect("decides");
    assert_eq!(
        (t.to, t.reason),
        (Status::Closed, TransitionReason::TrialsSucceeded)
    );
}

#[test]
fn an_override_expires_at_its_own_instant() {
    for kind in [OverrideKind::ForcedOpen, OverrideKind::Disabled] {
        let mut p = protector(|_| {});
        p.set_override(
            Some(Override {
                kind,
                expires_at: Some(at(50)),
            }),
            at(0),
        );
        assert_eq!(p.next_deadline(), Some(at(50)));
        assert_eq!(p.tick(at(49)), vec![]);
        let expired = vec![Change::OverrideExpired { kind, at: at(50) }];
        assert_eq!(p.acquire(at(80)).changes, expired, "{kind:?}");
        assert_eq!(p.override_state(), None);
        assert_eq!(p.next_deadline(), None);
    }
}

#[test]
fn auto_half_open_waits_for_the_override_to_end() {
    // (ended by expiry, the instant the override ends)
    for (by_expiry, end) in [(true, 5_000), (false, 5_000), (true, 500), (false, 500)] {
        let mut p = protector(|s| {
            s.cooldown = secs(1);
            s.auto_half_open = true;
        });
        trip(&mut p, at(0));
        p.set_override(forced(by_expiry.then(|| at(end))), at(10));
        assert_eq!(p.tick(at(end - 1)), vec![], "nothing moves under the override");
        let mut changes = if by_expiry {
            vec![]
        } else {
            p.set_override(None, at(end))
        };
        changes.extend(p.tick(at(end + 7_000)));
        let half_open = transitions(&changes);
        assert_eq!(half_open.len(), 1, "{changes:?}");
        assert_eq!(half_open[0].reason, TransitionReason::CooldownElapsed);
        assert_eq!(
            half_open[0].at,
            at(end.max(1_000)),
            "by expiry {by_expiry}, end {end}"
        );
    }
}

#[test]
fn set_status_under_an_override_moves_the_machine_underneath() {
    let mut p = protector(|s| s.cooldown = secs(2));
    p.set_override(forced(None), at(0));
    let changes = p.set_status(Status::Open, None, at(0));
    assert_eq!(transitions(&changes)[0].reason, TransitionReason::Manual);
    assert_eq!((p.status(), p.generation()), (Status::Open, 2));
    assert_eq!(reject(&mut p, at(1)).0, DecisionReason::ForcedOpen);
    p.set_override(None, at(500));
    assert_eq!(reject(&mut p, at(500)), (DecisionReason::Open, Some(ms(1_500))));
    p.set_override(disabled(None), at(600));
    p.set_status(Status::HalfOpen, None, at(600));
    assert_eq!(admit(&mut p, at(600)).1, DecisionReason::Disabled);
    p.set_override(None, at(700));
    assert_eq!(admit(&mut p, at(700)).1, DecisionReason::Trial);
}

#[test]
fn disabled_calls_reported_after_disabled_ends_open_or_half_open_are_stale() {
    // (status underneath, accepted after DISABLED ended)
    let rows = [
        (Status::Closed, true),
        (Status::Open, false),
        (Status::HalfOpen, false),
    ];
    for (status, accepted) in rows {
        for by_expiry in [false, true] {
            let mut p = protector(|s| s.cooldown = secs(60));
            p.set_status(status, None, at(0));
            p.set_override(disabled(by_expiry.then(|| at(5))), at(0));
            let (permit, _) = admit(&mut p, at(1));
            if !by_expiry {
                p.set_override(None, at(5));
            }
            let r = p.report(permit, Outcome::Success, at(9));
            assert_eq!(r.accepted, accepted, "{status:?} by expiry {by_expiry}");
            assert_eq!(p.counters().stale_reports, u64::from(!accepted));
        }
    }
}

#[test]
fn stale_reports_are_refused_and_change_nothing_but_their_counter() {
    type Setup = fn(&mut Protector) -> Permit;
    let rows: &[(&str, Setup)] = &[
        ("old generation", |p| {
            let (permit, _) = admit(p, at(0));
            p.set_status(Status::Closed, None, at(1));
            permit
        }),
        ("future generation", |p| {
            let (permit, _) = admit(p, at(0));
            Permit {
                generation: permit.generation + 1,
                ..permit
            }
        }),
        ("trial reported twice", |p| {
            p.set_status(Status::HalfOpen, None, at(0));
            let permits = trials(p, 2, at(0));
            accept(p, permits[0], Outcome::Ignored, at(1));
            permits[0]
        }),
        ("trial after its expiry", |p| {
            p.set_status(Status::HalfOpen, None, at(0));
            let permit = trials(p, 1, at(0))[0];
            p.tick(at(100));
            permit
        }),
        ("trial at its expiry instant", |p| {
            p.set_status(Status::HalfOpen, None, at(0));
            trials(p, 1, at(0))[0]
        }),
        ("id 0 in HALF_OPEN", |p| {
            p.set_status(Status::HalfOpen, None, at(0));
            Permit {
                generation: p.generation(),
                id: 0,
                expires_at: None,
            }
        }),
        ("fabricated trial id", |p| {
            p.set_status(Status::HalfOpen, None, at(0));
            let permit = trials(p, 1, at(0))[0];
            Permit {
                id: permit.id + 40,
                ..permit
            }
        }),
        ("a trial id in CLOSED", |p| Permit {
            generation: p.generation(),
            id: 1,
            expires_at: None,
        }),
        ("id 0 in OPEN", |p| {
            p.set_status(Status::Open, None, at(0));
            Permit {
                generation: p.generation(),
                id: 0,
                expires_at: None,
            }
        }),
    ];
    for &(name, setup) in rows {
        let mut p = protector(|s| {
            s.permit_ttl = ms(100);
            s.trial_permits = Some(0);
            s.failure_limit = (1, 3);
            s.cooldown = secs(10);
        });
        let permit = setup(&mut p);
        let now = at(100);
        for outcome in [Outcome::Failure, Outcome::Success, Outcome::Ignored] {
            let mut expected = p.clone();
            let expected_changes = expected.tick(now);
            let stale = p.counters().stale_reports;
            let r = p.report(permit, outcome, now);
            assert!(!r.accepted, "{name}: {outcome:?} accepted");
            assert_eq!((r.transition, r.changes), (None, expected_changes), "{name}");
            assert_eq!(observable(&p), observable(&expected), "{name}: {outcome:?}");
            assert_eq!(p.counters().stale_reports, stale + 1, "{name}");
        }
    }
}

#[test]
fn ignored_releases_a_trial_permit_and_records_nothing() {
    let mut p = protector(|s| s.trial_permits = Some(1));
    trip(&mut p, at(0));
    let (permit, _) = admit(&mut p, at(0));
    assert_eq!(reject(&mut p, at(0)).0, DecisionReason::TrialsExhausted);
    let consecutive = p.consecutive_failures();
    assert_eq!(accept(&mut p, permit, Outcome::Ignored, at(1)), None);
    assert_eq!(
        (p.status(), p.trials_in_flight(), p.window().len()),
        (Status::HalfOpen, 0, 0)
    );
    assert_eq!(p.consecutive_failures(), consecutive);
    assert_eq!(admit(&mut p, at(1)).1, DecisionReason::Trial);
    // In CLOSED too: the window and the streak stay as they were.
    let mut p = protector(|s| s.failure_limit = (1, 4));
    calls(&mut p, "FIIF", at(0));
    assert_eq!((p.window().len(), p.consecutive_failures()), (2, 2));
    assert_eq!(p.counters().ignored, 2);
}

#[test]
fn consecutive_failures_counts_the_current_streak() {
    let mut p = protector(|s| {
        s.failure_limit = (5, 5);
        s.permit_ttl = ms(10);
    });
    let mut streak = vec![];
    for step in ["F", "F", "I", "F", "S", "F", "F"] {
        calls(&mut p, step, at(0));
        streak.push(p.consecutive_failures());
    }
    assert_eq!(streak, vec![1, 2, 2, 3, 0, 1, 2]);
    // Entering OPEN or HALF_OPEN keeps the streak; an expired trial extends it.
    p.set_status(Status::HalfOpen, None, at(1));
    trials(&mut p, 1, at(1));
    p.set_override(forced(None), at(2));
    p.tick(at(50));
    assert_eq!(p.consecutive_failures(), 3);
    p.set_status(Status::Closed, None, at(60));
    assert_eq!(p.consecutive_failures(), 0);
}

#[test]
fn every_counter() {
    let mut p = protector(|s| {
        s.permit_ttl = ms(10);
        s.cooldown = ms(100);
        s.trial_permits = Some(1);
    });
    calls(&mut p, "SSI", at(0));
    let stale = admit(&mut p, at(0)).0;
    calls(&mut p, "F", at(0));
    refuse(&mut p, stale, Outcome::Success, at(0));
    reject(&mut p, at(50));
    trials(&mut p, 1, at(100));
    reject(&mut p, at(101));
    p.tick(at(200));
    let expected = Counters {
        admitted: 6,
        rejected: 2,
        successes: 2,
        failures: 2,
        ignored: 1,
        stale_reports: 1,
        expired_permits: 1,
    };
    assert_eq!(p.counters(), &expected);
}
