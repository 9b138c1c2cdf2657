//! A stale report is refused and changes nothing: the protector, its revision and every
//! counter but `stale_reports` stay as they were.

use std::time::Duration;

use resilient_circuit_api::v1;
use support::*;

const HOUR: Duration = Duration::from_secs(3600);

/// Reports `permit` and asserts it was refused and changed nothing but the stale counter.
async fn assert_stale(client: &mut ProtectorClient, name: &str, permit: v1::Permit, outcome: v1::Outcome) {
    let before = get_protector(client, name).await;
    let r = report(client, name, permit, outcome).await;
    let mut expected = before.protector.clone().expect("protector");
    assert!(!r.accepted, "{permit:?} should be stale: {r:?}");
    assert_eq!(r.transition, None);
    assert_eq!(r.status, expected.status);
    assert_eq!(r.revision, before.revision, "a stale report is no change");
    let after = get_protector(client, name).await;
    assert_eq!(after.revision, before.revision);
    expected.counters.as_mut().expect("counters").stale_reports += 1;
    assert_eq!(after.protector, Some(expected), "only stale_reports moves");
}

#[track_caller]
fn admitted(a: &v1::AcquireResponse, reason: v1::DecisionReason) -> v1::Permit {
    assert_eq!(a.decision, v1::Decision::Admitted as i32, "{a:?}");
    assert_eq!(a.reason, reason as i32, "{a:?}");
    a.permit.expect("permit")
}

#[tokio::test]
async fn a_report_from_before_a_trip_changes_nothing() {
    const NAME: &str = "stale.trip";
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, NAME, policy(HOUR, (1, 1), None)).await;
    let tripping = admitted(&acquire(&mut client, NAME).await, v1::DecisionReason::Closed);
    let late = admitted(&acquire(&mut client, NAME).await, v1::DecisionReason::Closed);
    let trip = report(&mut client, NAME, tripping, v1::Outcome::Failure).await;
    assert_eq!(trip.transition.map(|t| t.generation), Some(2));

    for outcome in [v1::Outcome::Success, v1::Outcome::Failure, v1::Outcome::Ignored] {
        assert_stale(&mut client, NAME, late, outcome).await;
    }
    // A generation that never was is no better.
    assert_stale(&mut client, NAME, permit(99, 0), v1::Outcome::Success).await;
    let c = counters(&mut client, NAME).await;
    assert_eq!(
        (c.stale_reports, c.failures, c.successes, c.ignored),
        (4, 1, 0, 0)
    );
}

#[tokio::test]
async fn trial_permits_are_tracked_one_by_one() {
    const NAME: &str = "stale.trials";
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    let closed = {
        let mut p = policy(HOUR, (1, 1), Some((3, 3)));
        p.trial_permits = Some(3);
        p.permit_ttl = Some(duration(HOUR));
        ensure(&mut client, NAME, p).await;
        admitted(&acquire(&mut client, NAME).await, v1::DecisionReason::Closed)
    };
    // A trial id where there are no trials.
    assert_stale(&mut client, NAME, permit(1, 1), v1::Outcome::Success).await;

    let half_open = daemon.set_status(NAME, v1::Status::HalfOpen).await;
    let generation = half_open.generation;
    assert_eq!(generation, 2);
    let first = admitted(&acquire(&mut client, NAME).await, v1::DecisionReason::Trial);
    let second = admitted(&acquire(&mut client, NAME).await, v1::DecisionReason::Trial);
    assert_eq!((first.generation, second.generation), (generation, generation));

    let once = report(&mut client, NAME, first, v1::Outcome::Success).await;
    assert!(once.accepted && once.transition.is_none(), "{once:?}");
    // Reported twice: the second is refused, whatever it says.
    assert_stale(&mut client, NAME, first, v1::Outcome::Success).await;
    assert_stale(&mut client, NAME, first, v1::Outcome::Failure).await;
    // Fabricated ids: the next one to be issued, and far beyond.
    for id in [second.id + 1, second.id + 1000, u64::MAX] {
        assert_stale(&mut client, NAME, permit(generation, id), v1::Outcome::Failure).await;
    }
    // An untracked (id 0) permit is no trial: neither a real CLOSED one nor one claiming
    // the current generation counts in HALF_OPEN.
    assert_stale(&mut client, NAME, closed, v1::Outcome::Success).await;
    assert_stale(&mut client, NAME, permit(generation, 0), v1::Outcome::Success).await;

    let state = get(&mut client, NAME).await;
    assert_eq!(state.trials_in_flight, 1, "the second trial is still out");
    assert_eq!(
        state.window.expect("window").outcomes,
        vec![v1::Outcome::Success as i32]
    );
    let still = report(&mut client, NAME, second, v1::Outcome::Success).await;
    assert!(still.accepted, "the untouched trial still counts: {still:?}");
}

#[tokio::test]
async fn re_entering_closed_fences_the_permits_of_the_previous_closed() {
    const NAME: &str = "stale.reenter";
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, NAME, policy(HOUR, (2, 2), None)).await;
    let old = admitted(&acquire(&mut client, NAME).await, v1::DecisionReason::Closed);
    let recorded = report(&mut client, NAME, old, v1::Outcome::Failure).await;
    assert!(recorded.accepted);

    let t = daemon.set_status(NAME, v1::Status::Closed).await;
    assert_eq!(
        (t.from, t.to, t.reason, t.generation),
        (
            v1::Status::Closed as i32,
            v1::Status::Closed as i32,
            v1::TransitionReason::Manual as i32,
            2
        )
    );
    // The old permit would have tripped the fresh window's rule had it counted.
    assert_stale(&mut client, NAME, old, v1::Outcome::Failure).await;
    assert_stale(&mut client, NAME, old, v1::Outcome::Failure).await;
    let state = get(&mut client, NAME).await;
    assert_eq!(state.status, v1::Status::Closed as i32);
    assert!(state.window.expect("window").outcomes.is_empty());

    let fresh = admitted(&acquire(&mut client, NAME).await, v1::DecisionReason::Closed);
    assert_eq!(fresh.generation, 2);
    assert!(
        report(&mut client, NAME, fresh, v1::Outcome::Success)
            .await
            .accepted
    );
}

#[tokio::test]
async fn disabled_calls_reported_after_the_override_count_only_while_closed() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;

    for status in [v1::Status::Open, v1::Status::HalfOpen] {
        let name = format!("stale.disabled.{}", status.as_str_name());
        ensure(&mut client, &name, policy(HOUR, (1, 1), None)).await;
        let generation = daemon.set_status(&name, status).await.generation;
        set_override(&mut daemon.admin().await, &name, v1::OverrideKind::Disabled, None).await;
        let during = admitted(&acquire(&mut client, &name).await, v1::DecisionReason::Disabled);
        let after = admitted(&acquire(&mut client, &name).await, v1::DecisionReason::Disabled);
        assert_eq!((during.generation, during.id), (generation, 0));
        let state = get(&mut client, &name).await;
        assert_eq!(state.trials_in_flight, 0, "DISABLED calls are no trials");

        let r = report(&mut client, &name, during, v1::Outcome::Failure).await;
        assert!(r.accepted, "reported while DISABLED holds: {r:?}");
        assert_eq!(r.transition, None, "nothing is evaluated under an override");

        set_override(&mut daemon.admin().await, &name, v1::OverrideKind::None, None).await;
        assert_stale(&mut client, &name, after, v1::Outcome::Success).await;
        let state = get(&mut client, &name).await;
        assert_eq!((state.status, state.generation), (status as i32, generation));
    }

    let name = "stale.disabled.STATUS_CLOSED";
    ensure(&mut client, name, policy(HOUR, (2, 2), None)).await;
    set_override(&mut daemon.admin().await, name, v1::OverrideKind::Disabled, None).await;
    let call = admitted(&acquire(&mut client, name).await, v1::DecisionReason::Disabled);
    assert_eq!((call.generation, call.id), (1, 0));
    set_override(&mut daemon.admin().await, name, v1::OverrideKind::None, None).await;
    let r = report(&mut client, name, call, v1::Outcome::Success).await;
    assert!(
        r.accepted,
        "CLOSED still accepts its generation's untracked permits: {r:?}"
    );
    let state = get(&mut client, name).await;
    assert_eq!(
        state.window.expect("window").outcomes,
        vec![v1::Outcome::Success as i32]
    );
    let c = state.counters.expect("counters");
    assert_eq!((c.successes, c.stale_reports), (1, 0));
}
