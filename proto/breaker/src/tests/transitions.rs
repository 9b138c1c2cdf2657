//! One table row per transition of the machine and per decision reason.

use super::*;
use crate::TransitionReason;

#[test]
fn closed_trips_only_on_a_recorded_failure_with_a_full_window() {
    // (failure_limit, script, index of the report that trips, if any)
    let rows: &[(Limit, &str, Option<usize>)] = &[
        ((1, 1), "F", Some(0)),
        ((1, 1), "SSSF", Some(3)),
        ((1, 3), "FF", None),
        ((1, 3), "SSF", Some(2)),
        ((2, 4), "SSFF", Some(3)),
        // The rate is reached, but the last outcome is a success: no check.
        ((2, 4), "FFSS", None),
        ((2, 3), "SSFSF", Some(4)),
        ((3, 3), "FFSF", None),
        // IGNORED fills no slot.
        ((2, 2), "FIF", Some(2)),
        ((2, 2), "FSF", None),
    ];
    for &(limit, script, trips_at) in rows {
        let mut p = protector(|s| {
            s.failure_limit = limit;
            s.cooldown = secs(7);
        });
        let mut tripped = None;
        for (i, o) in outcomes(script).into_iter().enumerate() {
            let now = at(i as u64);
            let (permit, reason) = admit(&mut p, now);
            assert_eq!(reason, DecisionReason::Closed, "{limit:?} {script}");
            if let Some(t) = accept(&mut p, permit, o, now) {
                assert!(tripped.is_none(), "{limit:?} {script}: tripped twice");
                tripped = Some((i, t));
            }
        }
        assert_eq!(tripped.map(|(i, _)| i), trips_at, "{limit:?} {script}");
        if let Some((i, t)) = tripped {
            let now = at(i as u64);
            let expected = Transition {
                from: Status::Closed,
                to: Status::Open,
                reason: TransitionReason::FailureLimit,
                generation: 2,
                open_until: Some(now + secs(7)),
                at: now,
            };
            assert_eq!(t, expected, "{limit:?} {script}");
            assert_eq!(p.status(), Status::Open);
            assert_eq!(p.open_until(), Some(now + secs(7)));
            // OPEN keeps the window it tripped with.
            assert!(p.window().is_full());
            assert!(limit_reached(limit, p.window().failures(), p.window().len()));
        } else {
            assert_eq!(
                (p.status(), p.generation()),
                (Status::Closed, 1),
                "{limit:?} {script}"
            );
        }
    }
}

fn limit_reached((n, d): (u32, u32), failures: u32, len: u32) -> bool {
    failures * d >= n * len
}

#[test]
fn open_rejects_until_open_until_then_the_first_acquire_is_a_trial() {
    // Lazy rule: the transition happens at the acquire, whenever that is.
    for late in [0, 1, 5_000] {
        let mut p = protector(|s| {
            s.cooldown = secs(10);
            s.permit_ttl = ms(250);
        });
        trip(&mut p, at(0));
        assert_eq!(reject(&mut p, at(1)), (DecisionReason::Open, Some(ms(9_999))));
        assert_eq!(reject(&mut p, at(9_999)), (DecisionReason::Open, Some(ms(1))));
        // Without auto_half_open nothing moves by itself: it still shows OPEN.
        assert_eq!(p.tick(at(10_000 + late)), vec![]);
        assert_eq!(p.status(), Status::Open);
        assert_eq!(p.next_deadline(), None);

        let now = at(10_000 + late);
        let r = p.acquire(now);
        let expected = Transition {
            from: Status::Open,
            to: Status::HalfOpen,
            reason: TransitionReason::CooldownElapsed,
            generation: 3,
            open_until: None,
            at: now,
        };
        assert_eq!(r.changes, vec![Change::Transition(expected)], "late by {late} ms");
        let Decision::Admitted { permit, reason } = r.decision else {
            panic!("the first acquire after the cooldown is admitted: {r:?}");
        };
        assert_eq!(reason, DecisionReason::Trial);
        assert_eq!(permit.generation, 3);
        assert_ne!(permit.id, 0);
        assert_eq!(permit.expires_at, Some(now + ms(250)));
        assert_eq!((p.status(), p.trials_in_flight()), (Status::HalfOpen, 1));
        assert!(p.window().is_empty());
    }
}

#[test]
fn auto_half_open_takes_effect_at_open_until_even_when_noticed_later() {
    // (how the machine notices, how late in ms)
    let rows: &[(&str, u64)] = &[("tick", 0), ("tick", 7_000), ("acquire", 0), ("acquire", 3_000)];
    for &(how, late) in rows {
        let mut p = protector(|s| {
            s.cooldown = secs(10);
            s.auto_half_open = true;
        });
        trip(&mut p, at(0));
        assert_eq!(p.next_deadline(), Some(at(10_000)));
        assert_eq!(p.tick(at(9_999)), vec![]);
        let now = at(10_000 + late);
        let changes = match how {
            "tick" => p.tick(now),
            _ => {
                let r = p.acquire(now);
                assert!(matches!(
                    r.decision,
                    Decision::Admitted {
                        reason: DecisionReason::Trial,
                        permit: Permit { generation: 3, .. }
                    }
                ));
                r.changes
            }
        };
        let expected = Transition {
            from: Status::Open,
            to: Status::HalfOpen,
            reason: TransitionReason::CooldownElapsed,
            generation: 3,
            open_until: None,
            at: at(10_000),
        };
        assert_eq!(
            changes,
            vec![Change::Transition(expected)],
            "{how} late by {late}"
        );
        assert_eq!(p.status(), Status::HalfOpen);
        assert_eq!(p.tick(now + secs(1)), vec![], "{how}");
    }
}

#[test]
fn half_open_decides_when_its_window_is_full() {
    // (failure_limit, success_limit, trial outcomes, status after, reason)
    use Status::{Closed, Open};
    use TransitionReason::{TrialsFailed, TrialsSucceeded};
    let rows: &[(Limit, Option<Limit>, &str, Status, TransitionReason)] = &[
        ((1, 1), None, "S", Closed, TrialsSucceeded),
        ((1, 1), None, "F", Open, TrialsFailed),
        ((2, 5), None, "FSFSS", Open, TrialsFailed),
        ((3, 5), None, "FSFSS", Closed, TrialsSucceeded),
        ((2, 10), Some((3, 5)), "FSFSS", Closed, TrialsSucceeded),
        ((2, 10), Some((3, 5)), "FSFSF", Open, TrialsFailed),
        ((1, 1), Some((1, 2)), "IFS", Closed, TrialsSucceeded),
        ((1, 1), Some((2, 2)), "SIF", Open, TrialsFailed),
    ];
    for &(fl, sl, script, to, reason) in rows {
        let mut p = protector(|s| {
            s.failure_limit = fl;
            s.success_limit = sl;
            s.cooldown = secs(3);
            s.trial_permits = Some(0);
        });
        p.set_status(Status::HalfOpen, None, at(0));
        let gen_before = p.generation();
        let script = outcomes(script);
        let permits = trials(&mut p, script.len(), at(1));
        let last = script.len() - 1;
        for (i, (permit, o)) in permits.into_iter().zip(script).enumerate() {
            let t = accept(&mut p, permit, o, at(2 + i as u64));
            if i < last {
                assert_eq!(t, None, "{fl:?} {sl:?} decided early");
                continue;
            }
            let now = at(2 + i as u64);
            let open_until = (to == Open).then(|| now + secs(3));
            let expected = Transition {
                from: Status::HalfOpen,
                to,
                reason,
                generation: gen_before + 1,
                open_until,
                at: now,
            };
            assert_eq!(t, Some(expected), "{fl:?} {sl:?}");
        }
        assert_eq!(p.status(), to);
        if to == Closed {
            assert_eq!((p.window().size(), p.window().len()), (fl.1, 0));
            assert_eq!(p.consecutive_failures(), 0);
        }
    }
}

#[test]
fn an_expired_trial_counts_as_a_failure_at_its_own_instant() {
    // (success_limit, outcomes reported before the expiry, status after)
    let rows: &[(Option<Limit>, &str, Status)] = &[
        (None, "", Status::Open),
        (Some((1, 2)), "S", Status::Closed),
        (Some((2, 2)), "S", Status::Open),
    ];
    for &(sl, before, to) in rows {
        for notice in ["tick", "acquire", "report"] {
            let mut p = protector(|s| {
                s.success_limit = sl;
                s.cooldown = secs(1);
                s.permit_ttl = ms(100);
                s.trial_permits = Some(0);
            });
            trip(&mut p, at(0));
            let script = outcomes(before);
            let permits = trials(&mut p, script.len() + 1, at(1_000));
            for (permit, o) in permits.iter().zip(&script) {
                accept(&mut p, *permit, *o, at(1_050));
            }
            let last = *permits.last().expect("one trial left");
            let now = at(9_000);
            let changes = match notice {
                "tick" => p.tick(now),
                "acquire" => p.acquire(now).changes,
                _ => {
                    let r = p.report(last, Outcome::Success, now);
                    assert!(!r.accepted, "a report after the expiry is stale");
                    r.changes
                }
            };
            let expected = Transition {
                from: Status::HalfOpen,
                to,
                reason: TransitionReason::PermitExpired,
                generation: 4,
                open_until: (to == Status::Open).then(|| at(1_100) + secs(1)),
                at: at(1_100),
            };
            assert_eq!(
                changes.first(),
                Some(&Change::Transition(expected)),
                "{sl:?} {notice}"
            );
            assert_eq!(p.counters().expired_permits, 1);
            assert_eq!(p.counters().failures, 2);
        }
    }
}

#[test]
fn set_status_performs_every_transition_including_reentry() {
    use Status::{Closed, HalfOpen, Open};
    for from in [Closed, Open, HalfOpen] {
        for to in [Closed, Open, HalfOpen] {
            let mut p = protector(|s| {
                s.failure_limit = (3, 4);
                s.cooldown = secs(5);
                s.trial_permits = Some(0);
            });
            calls(&mut p, "SFF", at(0));
            if from != Closed {
                p.set_status(from, None, at(1));
            }
            if from == HalfOpen {
                let permits = trials(&mut p, 2, at(2));
                accept(&mut p, permits[0], Outcome::Failure, at(2));
                assert_eq!(p.trials_in_flight(), 1);
            }
            let (gen_before, window_before) = (p.generation(), p.window().clone());
            let consecutive_before = p.consecutive_failures();
            let now = at(10);
            let changes = p.set_status(to, None, now);
            let expected = Transition {
                from,
                to,
                reason: TransitionReason::Manual,
                generation: gen_before + 1,
                open_until: (to == Open).then(|| now + secs(5)),
                at: now,
            };
            assert_eq!(changes, vec![Change::Transition(expected)], "{from:?} -> {to:?}");
            assert_eq!((p.status(), p.generation()), (to, gen_before + 1));
            assert_eq!(p.trials_in_flight(), 0, "{from:?} -> {to:?} drops the trials");
            match to {
                Open => assert_eq!(p.window(), &window_before, "OPEN keeps the window"),
                Closed => assert_eq!((p.window().size(), p.window().len()), (4, 0)),
                HalfOpen => assert_eq!((p.window().size(), p.window().len()), (4, 0)),
            }
            let consecutive = if to == Closed { 0 } else { consecutive_before };
            assert_eq!(p.consecutive_failures(), consecutive, "{from:?} -> {to:?}");
        }
    }
}

#[test]
fn set_status_open_for_replaces_the_cooldown() {
    for open_for in [Duration::ZERO, ms(1), secs(3_600)] {
        let mut p = protector(|s| s.cooldown = secs(5));
        let changes = p.set_status(Status::Open, Some(open_for), at(0));
        assert_eq!(transitions(&changes)[0].open_until, Some(at(0) + open_for));
        assert_eq!(p.open_until(), Some(at(0) + open_for));
        if open_for > Duration::ZERO {
            assert_eq!(reject(&mut p, at(0)), (DecisionReason::Open, Some(open_for)));
        }
        assert_eq!(admit(&mut p, at(0) + open_for).1, DecisionReason::Trial);
    }
}

/// Ten thousand trials in flight, taken back out of order: the next deadline is always
/// the earliest outstanding expiry, and the state round-trips.
#[test]
fn many_trials_in_flight_are_tracked_by_id_and_by_expiry() {
    let mut p = protector(|s| {
        s.permit_ttl = secs(60);
        s.trial_permits = Some(0); // unlimited
    });
    p.set_status(Status::HalfOpen, None, at(0));
    let permits: Vec<Permit> = (0..10_000).flat_map(|i| trials(&mut p, 1, at(i))).collect();
    assert_eq!(p.trials_in_flight(), 10_000);
    for permit in permits.iter().rev().step_by(2) {
        accept(&mut p, *permit, Outcome::Ignored, at(10_000));
    }
    assert_eq!(p.trials_in_flight(), 5_000);
    // The odd-numbered ones (admitted at 1 ms, 3 ms, ...) went back; the first remains.
    assert_eq!(p.next_deadline(), permits[0].expires_at);
    accept(&mut p, permits[0], Outcome::Ignored, at(10_000));
    assert_eq!(p.next_deadline(), permits[2].expires_at);
    assert_eq!(Protector::restore(p.to_state()).unwrap(), p);
}

#[test]
fn half_open_rejects_when_every_trial_permit_is_in_flight() {
    let mut p = protector(|s| {
        s.trial_permits = Some(2);
        s.failure_limit = (1, 3);
        s.permit_ttl = secs(1);
    });
    p.set_status(Status::HalfOpen, None, at(0));
    let first = trials(&mut p, 1, at(0))[0];
    let second = trials(&mut p, 1, at(300))[0];
    assert_eq!(second.id, first.id + 1);
    assert_eq!(
        reject(&mut p, at(500)),
        (DecisionReason::TrialsExhausted, Some(ms(500)))
    );
    accept(&mut p, first, Outcome::Success, at(600));
    let third = trials(&mut p, 1, at(600))[0];
    // The earliest outstanding is now the second one.
    assert_eq!(
        reject(&mut p, at(700)),
        (DecisionReason::TrialsExhausted, Some(ms(600)))
    );
    accept(&mut p, second, Outcome::Ignored, at(800));
    accept(&mut p, third, Outcome::Success, at(800));
    assert_eq!(p.trials_in_flight(), 0);
    assert_eq!(p.counters().rejected, 2);
}

#[test]
fn the_trial_limit_defaults_to_the_half_open_window_and_zero_is_unlimited() {
    // (failure_limit, success_limit, trial_permits, trials admitted before a rejection;
    // 50 is all of them: unlimited)
    let rows: &[(Limit, Option<Limit>, Option<u32>, usize)] = &[
        ((1, 1), None, None, 1),
        ((2, 6), None, None, 6),
        ((2, 6), Some((1, 3)), None, 3),
        ((2, 6), None, Some(2), 2),
        ((1, 1), None, Some(0), 50),
    ];
    for &(fl, sl, tp, limit) in rows {
        let mut p = protector(|s| {
            s.failure_limit = fl;
            s.success_limit = sl;
            s.trial_permits = tp;
        });
        p.set_status(Status::HalfOpen, None, at(0));
        let admitted = (0..50)
            .take_while(|_| p.acquire(at(1)).decision.is_admitted())
            .count();
        assert_eq!(admitted, limit, "{fl:?} {sl:?} {tp:?}");
    }
}

#[test]
fn every_admission_and_rejection_reason() {
    use crate::{Override, OverrideKind};
    let mut p = protector(|s| s.cooldown = secs(1));
    assert_eq!(admit(&mut p, at(0)).1, DecisionReason::Closed);
    p.set_override(
        Some(Override {
            kind: OverrideKind::Disabled,
            expires_at: None,
        }),
        at(0),
    );
    assert_eq!(admit(&mut p, at(0)).1, DecisionReason::Disabled);
    let forced = Override {
        kind: OverrideKind::ForcedOpen,
        expires_at: Some(at(40)),
    };
    p.set_override(Some(forced), at(0));
    assert_eq!(reject(&mut p, at(10)), (DecisionReason::ForcedOpen, Some(ms(30))));
    p.set_override(None, at(10));
    trip(&mut p, at(10));
    assert_eq!(reject(&mut p, at(10)), (DecisionReason::Open, Some(secs(1))));
    assert_eq!(admit(&mut p, at(1_010)).1, DecisionReason::Trial);
    assert_eq!(reject(&mut p, at(1_010)).0, DecisionReason::TrialsExhausted);
}

#[test]
fn the_generation_starts_at_one_and_grows_by_one_per_transition() {
    let mut p = protector(|s| s.permit_ttl = ms(10));
    let mut seen = vec![p.generation()];
    let mut note = |p: &Protector, changes: &[Change]| {
        for t in transitions(changes) {
            assert_eq!(t.generation, seen.last().copied().unwrap_or(0) + 1, "{t:?}");
            seen.push(t.generation);
        }
        assert_eq!(*seen.last().expect("seeded"), p.generation());
    };
    let tripped = trip(&mut p, at(0));
    note(&p, &[Change::Transition(tripped)]);
    let r = p.acquire(at(0));
    note(&p, &r.changes);
    let changes = p.tick(at(100));
    note(&p, &changes);
    let changes = p.set_status(Status::Open, None, at(100));
    note(&p, &changes);
    let changes = p.set_status(Status::Closed, None, at(100));
    note(&p, &changes);
    assert_eq!(seen, vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn update_policy_keeps_the_status_and_starts_a_new_window() {
    use Status::{Closed, HalfOpen, Open};
    for status in [Closed, Open, HalfOpen] {
        let mut p = protector(|s| {
            s.failure_limit = (2, 3);
            s.trial_permits = Some(0);
        });
        calls(&mut p, "SF", at(0));
        if status != Closed {
            p.set_status(status, Some(secs(9)), at(0));
        }
        let in_flight = if status == HalfOpen {
            trials(&mut p, 2, at(0)).len() as u32
        } else {
            0
        };
        let before = p.clone();
        let next = policy(|s| {
            s.failure_limit = (3, 7);
            s.success_limit = Some((1, 4));
            s.trial_permits = Some(0);
        });
        assert_eq!(p.update_policy(next, at(1)), vec![], "{status:?}");
        assert_eq!(p.policy(), &next);
        assert_eq!(
            (p.status(), p.generation()),
            (before.status(), before.generation())
        );
        assert_eq!(p.open_until(), before.open_until());
        assert_eq!(p.trials_in_flight(), in_flight);
        assert_eq!(p.consecutive_failures(), before.consecutive_failures());
        let size = if status == HalfOpen { 4 } else { 7 };
        assert_eq!((p.window().size(), p.window().len()), (size, 0), "{status:?}");
    }
}
