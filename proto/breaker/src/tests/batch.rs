//! `Protector::report_batch`: outcomes of calls a client admitted locally, judged as
//! reports of untracked permits of the batch's generation, one by one.

use super::*;
use crate::{BatchResult, Override, OverrideKind, TransitionReason};

fn disabled(expires_at: Option<Time>) -> Option<Override> {
    Some(Override {
        kind: OverrideKind::Disabled,
        expires_at,
    })
}

/// A CLOSED protector with a window of 10 that trips at half failures.
fn half_of_ten() -> Protector {
    protector(|s| {
        s.failure_limit = (5, 10);
        s.cooldown = secs(30);
    })
}

/// The window's outcomes oldest first, as a script (`S`/`F`).
fn window(p: &Protector) -> String {
    p.window()
        .iter()
        .map(|failed| if failed { 'F' } else { 'S' })
        .collect()
}

/// Everything observable but `stale_reports`, the window by its contents: a batch skips
/// the successes that could not survive in the window, so the ring may sit at another
/// offset.
fn state(p: &Protector) -> impl PartialEq + std::fmt::Debug + use<> {
    let counters = Counters {
        stale_reports: 0,
        ..*p.counters()
    };
    let status = (p.status(), p.generation(), p.open_until(), p.override_state());
    let window = (p.window().size(), window(p));
    let rest = (
        p.consecutive_failures(),
        p.trials_in_flight(),
        counters,
        p.next_deadline(),
    );
    (status, window, rest)
}

#[test]
fn successes_of_the_current_generation_are_counted_and_fill_the_window() {
    let mut p = half_of_ten();
    calls(&mut p, "FF", at(0));
    assert_eq!(p.consecutive_failures(), 2);

    let r = p.report_batch(1, 3, &[], at(1));
    assert_eq!(
        r,
        BatchResult {
            accepted: 3,
            stale: 0,
            transition: None,
            changes: vec![],
        }
    );
    assert_eq!(window(&p), "FFSSS");
    assert_eq!(p.consecutive_failures(), 0);
    let c = p.counters();
    assert_eq!((c.successes, c.failures, c.stale_reports), (3, 2, 0));
    // Reporting admits nothing: the client decided locally.
    assert_eq!((c.admitted, c.rejected), (2, 0));
    assert_eq!((p.status(), p.generation()), (Status::Closed, 1));
}

#[test]
fn only_the_newest_window_size_of_many_successes_are_kept() {
    let mut p = half_of_ten();
    calls(&mut p, "FFFF", at(0));
    let r = p.report_batch(1, 1_000_000, &[], at(1));
    assert_eq!((r.accepted, r.stale), (1_000_000, 0));
    assert_eq!(window(&p), "SSSSSSSSSS");
    assert_eq!(p.window().failures(), 0);
    assert_eq!(p.counters().successes, 1_000_000);
    // The failures were pushed out: four more do not reach 5/10.
    let r = p.report_batch(1, 0, &outcomes("FFFF"), at(2));
    assert_eq!((r.accepted, r.transition), (4, None));
    assert_eq!(window(&p), "SSSSSSFFFF");
}

#[test]
fn successes_go_first_then_outcomes_in_order() {
    let mut p = half_of_ten();
    let r = p.report_batch(1, 7, &outcomes("F S F I"), at(0));
    assert_eq!((r.accepted, r.stale, r.transition), (11, 0, None));
    assert_eq!(window(&p), "SSSSSSSFSF");
    assert_eq!(p.consecutive_failures(), 1);
    let c = p.counters();
    assert_eq!(
        (c.successes, c.failures, c.ignored, c.stale_reports),
        (8, 2, 1, 0)
    );
}

#[test]
fn a_batch_of_another_generation_is_stale_and_changes_nothing_else() {
    let mut p = protector(|s| s.cooldown = ms(10));
    // Trip (generation 2), trial (3), close (4): CLOSED again, but not in generation 1.
    trip(&mut p, at(0));
    calls(&mut p, "S", at(10));
    assert_eq!((p.status(), p.generation()), (Status::Closed, 4));
    for generation in [1, 2, 3, 5, u64::MAX] {
        let before = state(&p);
        let stale_before = p.counters().stale_reports;
        let r = p.report_batch(generation, 5, &outcomes("FSI"), at(20));
        assert_eq!(
            r,
            BatchResult {
                accepted: 0,
                stale: 8,
                transition: None,
                changes: vec![],
            },
            "generation {generation}"
        );
        assert_eq!(state(&p), before, "generation {generation}");
        assert_eq!(p.counters().stale_reports, stale_before + 8);
    }
}

#[test]
fn a_batch_is_stale_unless_closed_or_disabled() {
    // OPEN and HALF_OPEN, in the generation they are in: locally admitted calls do not
    // exist there, so nothing of the batch counts.
    for status in [Status::Open, Status::HalfOpen] {
        let mut p = half_of_ten();
        p.set_status(status, None, at(0));
        let before = state(&p);
        let r = p.report_batch(p.generation(), 2, &outcomes("F"), at(1));
        assert_eq!((r.accepted, r.stale, r.transition), (0, 3, None), "{status:?}");
        assert_eq!(state(&p), before, "{status:?}");
        assert_eq!(p.counters().stale_reports, 3);
    }
}

#[test]
fn under_disabled_a_batch_is_recorded_and_never_trips() {
    let mut p = protector(|s| s.cooldown = secs(30));
    trip(&mut p, at(0));
    assert_eq!((p.status(), p.generation()), (Status::Open, 2));
    p.set_override(disabled(None), at(1));
    let r = p.report_batch(2, 2, &outcomes("F F F"), at(2));
    assert_eq!((r.accepted, r.stale, r.transition), (5, 0, None));
    assert_eq!(r.changes, vec![]);
    assert_eq!((p.status(), p.generation()), (Status::Open, 2));
    // The window of 1 holds the newest outcome; the counters hold all.
    assert_eq!(window(&p), "F");
    let c = p.counters();
    assert_eq!((c.successes, c.failures), (2, 4));

    // DISABLED ended while OPEN: the calls it admitted are now stale.
    p.set_override(None, at(3));
    let r = p.report_batch(2, 1, &outcomes("S"), at(4));
    assert_eq!((r.accepted, r.stale), (0, 2));
    assert_eq!(p.counters().stale_reports, 2);
}

#[test]
fn a_failure_that_trips_makes_the_rest_of_the_batch_stale() {
    let mut p = protector(|s| {
        s.failure_limit = (2, 4);
        s.cooldown = secs(7);
    });
    // S S then F F fills the window at 2/4 and trips on the fourth outcome.
    let r = p.report_batch(1, 2, &outcomes("F F S F I"), at(5));
    let expected = Transition {
        from: Status::Closed,
        to: Status::Open,
        reason: TransitionReason::FailureLimit,
        generation: 2,
        open_until: Some(at(5) + secs(7)),
        at: at(5),
    };
    assert_eq!(
        r,
        BatchResult {
            accepted: 4,
            stale: 3,
            transition: Some(expected),
            changes: vec![Change::Transition(expected)],
        }
    );
    assert_eq!((p.status(), p.generation()), (Status::Open, 2));
    // OPEN keeps the window it tripped with.
    assert_eq!(window(&p), "SSFF");
    let c = p.counters();
    assert_eq!(
        (c.successes, c.failures, c.ignored, c.stale_reports),
        (2, 2, 0, 3)
    );
    assert_eq!(p.consecutive_failures(), 2);
    // The next batch of generation 1 is stale as a whole.
    let r = p.report_batch(1, 10, &[], at(6));
    assert_eq!((r.accepted, r.stale, r.transition), (0, 10, None));
}

#[test]
fn expiries_due_apply_before_the_batch() {
    // DISABLED expired at 100: the failures at 200 are judged by the status machine.
    let mut p = protector(|s| s.cooldown = secs(1));
    p.set_override(disabled(Some(at(100))), at(0));
    let r = p.report_batch(1, 0, &outcomes("F"), at(200));
    assert_eq!((r.accepted, r.stale), (1, 0));
    let t = r.transition.expect("the failure trips once DISABLED is over");
    assert_eq!((t.to, t.at, t.generation), (Status::Open, at(200), 2));
    assert_eq!(
        r.changes,
        vec![
            Change::OverrideExpired {
                kind: OverrideKind::Disabled,
                at: at(100),
            },
            Change::Transition(t),
        ]
    );
}

#[test]
fn a_batch_equals_the_same_reports_one_by_one() {
    // (failure_limit, successes, outcomes, generation offset: 0 = current)
    let rows: &[(Limit, u64, &str, u64)] = &[
        ((1, 1), 0, "", 0),
        ((1, 1), 3, "SSF", 0),
        ((1, 1), 3, "FSSF", 0),
        ((5, 10), 25, "FFIFFSFFFFS", 0),
        ((2, 3), 1, "FIFSF", 0),
        ((3, 3), 2, "FFSFFF", 0),
        ((1, 2), 4, "SF", 1),
    ];
    for &(limit, successes, script, offset) in rows {
        let fresh = protector(|s| {
            s.failure_limit = limit;
            s.cooldown = secs(5);
        });
        let mut batched = fresh.clone();
        calls(&mut batched, "S", at(0));
        let mut one_by_one = batched.clone();
        let generation = batched.generation() + offset;

        let r = batched.report_batch(generation, successes, &outcomes(script), at(1));

        let permit = Permit {
            generation,
            id: 0,
            expires_at: None,
        };
        let each = std::iter::repeat_n(Outcome::Success, successes as usize).chain(outcomes(script));
        let (mut accepted, mut stale, mut transition) = (0, 0, None);
        for outcome in each {
            let one = one_by_one.report(permit, outcome, at(1));
            if one.accepted {
                accepted += 1;
            } else {
                stale += 1;
            }
            transition = transition.or(one.transition);
        }
        let case = format!("{limit:?} {successes} {script} +{offset}");
        assert_eq!(
            (r.accepted, r.stale, r.transition),
            (accepted, stale, transition),
            "{case}"
        );
        assert_eq!(
            transitions(&r.changes),
            transition.into_iter().collect::<Vec<_>>(),
            "{case}"
        );
        assert_eq!(state(&batched), state(&one_by_one), "{case}");
        assert_eq!(
            batched.counters().stale_reports,
            one_by_one.counters().stale_reports,
            "{case}"
        );
    }
}

#[test]
fn counters_saturate_however_many_outcomes_a_batch_claims() {
    // (generation offset: 0 = current, successes of the first batch, outcomes after)
    let rows: &[(u64, u64, &str)] = &[(0, u64::MAX, ""), (0, u64::MAX, "SFI"), (1, u64::MAX, "F")];
    for &(offset, successes, script) in rows {
        let mut p = half_of_ten();
        calls(&mut p, "S", at(0));
        let generation = p.generation() + offset;
        // Twice: the second would wrap every counter it adds to.
        p.report_batch(generation, successes, &outcomes(script), at(1));
        let r = p.report_batch(generation, successes, &outcomes(script), at(2));
        let case = format!("+{offset} {successes} {script}");
        let c = p.counters();
        if offset == 0 {
            assert_eq!((r.accepted, r.stale), (u64::MAX, 0), "{case}");
            assert_eq!(c.successes, u64::MAX, "{case}");
            assert_eq!(window(&p).len(), 10, "{case}: only a window's worth was pushed");
        } else {
            assert_eq!((r.accepted, r.stale), (0, u64::MAX), "{case}");
            assert_eq!(c.stale_reports, u64::MAX, "{case}");
        }
        assert_eq!(p.status(), Status::Closed, "{case}");
    }
}

#[test]
fn a_batch_applied_in_chunks_equals_the_batch_whole() {
    // What the daemon does with a long list: the successes with the first chunk, then
    // the outcomes chunk by chunk, at the same instant.
    let rows: &[(Limit, u64, &str, usize)] = &[
        ((5, 10), 25, "FFIFFSFFFFS", 3),
        ((2, 3), 1, "FIFSF", 1),
        ((3, 3), 2, "FFSFFFSS", 2),
        ((5, 10), 0, "SSSSFFFF", 5),
    ];
    for &(limit, successes, script, chunk) in rows {
        let mut whole = protector(|s| {
            s.failure_limit = limit;
            s.cooldown = secs(5);
        });
        calls(&mut whole, "S", at(0));
        let mut chunked = whole.clone();
        let generation = whole.generation();
        let all = outcomes(script);

        let r = whole.report_batch(generation, successes, &all, at(1));
        let (mut accepted, mut stale, mut transition) = (0, 0, None);
        for (i, part) in all.chunks(chunk).enumerate() {
            let first = if i == 0 { successes } else { 0 };
            let c = chunked.report_batch(generation, first, part, at(1));
            accepted += c.accepted;
            stale += c.stale;
            transition = transition.or(c.transition);
        }
        let case = format!("{limit:?} {successes} {script} by {chunk}");
        assert_eq!(
            (r.accepted, r.stale, r.transition),
            (accepted, stale, transition),
            "{case}"
        );
        assert_eq!(state(&whole), state(&chunked), "{case}");
    }
}
