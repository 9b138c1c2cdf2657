//! Invariants of the machine on its own (no model), over random policies and operations.

use proptest::prelude::*;

use super::props::{Op, Run, config, ops, spec};
use super::*;
use crate::OverrideKind;

/// What the invariants see of one operation.
#[derive(Debug)]
struct Seen<'a> {
    now: Time,
    /// The protector before the operation.
    before: &'a Protector,
    /// The same after applying only the expiries due at `now`.
    due: &'a Protector,
    /// The changes those expiries made.
    due_changes: &'a [Change],
    after: &'a Protector,
    /// The decision, for an acquire.
    decision: Option<Decision>,
    /// Whether a report was accepted, for a report.
    accepted: Option<bool>,
    changes: &'a [Change],
}

/// Runs `ops` on the real protector alone (no model), calling `check` after each.
fn drive(
    spec: PolicySpec,
    ops: &[Op],
    mut check: impl FnMut(Seen<'_>) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let mut run = Run::new(spec);
    for op in ops {
        let now = run.now;
        let before = run.real.clone();
        let mut due = run.real.clone();
        let due_changes = due.tick(now);
        let (mut decision, mut accepted) = (None, None);
        let changes = match op {
            Op::Acquire => {
                let r = run.real.acquire(now);
                if let Decision::Admitted { permit, .. } = r.decision {
                    run.held.push(permit);
                }
                decision = Some(r.decision);
                r.changes
            }
            Op::Report(pick, outcome, duration) => {
                let r = run.real.report_timed(run.permit(pick), *outcome, *duration, now);
                accepted = Some(r.accepted);
                r.changes
            }
            Op::Advance(step) => {
                let deadlines = [run.real.next_deadline(), run.real.open_until()];
                run.now = run.advance(step, deadlines.into_iter().flatten().collect());
                Vec::new()
            }
            Op::Tick => run.real.tick(now),
            Op::SetStatus(to, open_for) => run.real.set_status(*to, *open_for, now),
            Op::SetOverride(o) => {
                let o = run.override_at(*o, run.real.next_deadline().into_iter().collect());
                run.real.set_override(o, now)
            }
            Op::UpdatePolicy(..) => unreachable!("invariants run without policy updates"),
        };
        let seen = Seen {
            now,
            before: &before,
            due: &due,
            due_changes: &due_changes,
            after: &run.real,
            decision,
            accepted,
            changes: &changes,
        };
        check(seen)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1_024))]

    #[test]
    fn never_more_trials_in_flight_than_the_limit(spec in spec(), ops in ops(false)) {
        drive(spec, &ops, |seen| {
            if let Some(limit) = seen.after.policy().trial_limit() {
                let in_flight = seen.after.trials_in_flight();
                prop_assert!(in_flight <= limit, "{} > {}", in_flight, limit);
            }
            Ok(())
        })?;
    }

    #[test]
    fn open_never_admits_before_open_until(spec in spec(), ops in ops(false)) {
        drive(spec, &ops, |seen| {
            let (Some(decision), Status::Open, Some(until)) =
                (seen.decision, seen.due.status(), seen.due.open_until())
            else {
                return Ok(());
            };
            let kind = seen.due.override_state().map(|o| o.kind);
            if seen.now < until && kind != Some(OverrideKind::Disabled) {
                prop_assert!(!decision.is_admitted(), "admitted at {:?} before {:?}", seen.now, until);
            }
            if kind == Some(OverrideKind::ForcedOpen) {
                prop_assert!(!decision.is_admitted());
            }
            Ok(())
        })?;
    }

    #[test]
    fn a_stale_report_changes_nothing_but_its_counter(spec in spec(), ops in ops(false)) {
        drive(spec, &ops, |seen| {
            if seen.accepted != Some(false) {
                return Ok(());
            }
            prop_assert_eq!(seen.due_changes, seen.changes);
            prop_assert_eq!(observable(seen.after), observable(seen.due));
            let stale = seen.due.counters().stale_reports + 1;
            prop_assert_eq!(seen.after.counters().stale_reports, stale);
            // Hidden state too: the same as refusing a permit no one could hold.
            let mut expected = seen.due.clone();
            let nobody = Permit { generation: 0, id: 0, expires_at: None };
            prop_assert!(!expected.report(nobody, Outcome::Failure, seen.now).accepted);
            prop_assert_eq!(seen.after, &expected);
            Ok(())
        })?;
    }

    #[test]
    fn the_generation_only_grows_one_transition_at_a_time(spec in spec(), ops in ops(false)) {
        drive(spec, &ops, |seen| {
            let mut generation = seen.before.generation();
            for t in transitions(seen.changes) {
                prop_assert_eq!(t.generation, generation + 1);
                generation = t.generation;
            }
            prop_assert_eq!(generation, seen.after.generation());
            Ok(())
        })?;
    }
}
