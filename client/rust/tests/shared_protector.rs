//! Two clients, on separate connections, share one protector held by a real daemon:
//! what one does, the other sees, and every transition is announced exactly once on
//! each.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    assert_no_more_changes, changes, next_change, patient_client, policy, start_daemon, until_watching,
};
use resilient_circuit::{CallError, DecisionReason, Status, StatusChange, TransitionReason};
use resilient_circuit_api::v1;
use tokio::sync::mpsc::UnboundedReceiver;

const COOLDOWN: Duration = Duration::from_millis(200);

/// Takes changes until every generation in `wanted` has arrived; fails on a repeat.
async fn collect(rx: &mut UnboundedReceiver<StatusChange>, wanted: &[u64]) -> BTreeMap<u64, StatusChange> {
    let mut got = BTreeMap::new();
    while !wanted.iter().all(|g| got.contains_key(g)) {
        let change = next_change(rx).await;
        let generation = change.generation;
        if let Some(first) = got.insert(generation, change) {
            panic!("generation {generation} announced twice; first {first:?}");
        }
    }
    got
}

#[track_caller]
fn assert_change(c: &StatusChange, from: Status, to: Status, reason: TransitionReason) {
    assert_eq!((c.from, c.to, c.reason), (from, to, Some(reason)), "{c:?}");
    assert_eq!(c.name, "shared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_through_one_client_reject_and_notify_the_other() {
    let daemon = start_daemon().await;
    let (a_client, b_client) = (patient_client(&daemon).await, patient_client(&daemon).await);
    let a = a_client
        .protector("shared", policy(COOLDOWN, (1, 1)))
        .await
        .expect("protector a");
    let b = b_client
        .protector("shared", policy(COOLDOWN, (1, 1)))
        .await
        .expect("protector b");
    let (on_a, mut a_changes) = changes();
    let (on_b, mut b_changes) = changes();
    a.on_status_change(on_a);
    b.on_status_change(on_b);

    // Operator transitions reach both through their watches, which proves both streams
    // are live before the test relies on them.
    let tripped_generation =
        until_watching(&daemon, "shared", &mut [&mut a_changes, &mut b_changes]).await + 1;

    // A's failure trips the protector; A hears of it synchronously, from its report.
    let failed = a.call(|| async { Err::<(), _>("down") }).await;
    assert!(matches!(failed, Err(CallError::Failed("down"))), "{failed:?}");
    let a_trip = a_changes.try_recv().expect("A announces its own trip at once");
    assert_change(
        &a_trip,
        Status::Closed,
        Status::Open,
        TransitionReason::FailureLimit,
    );
    assert_eq!(a_trip.generation, tripped_generation);
    assert!(a_trip.open_until.is_some());

    // B's very next acquire is rejected by the daemon, with when to ask again.
    let rejection = b.acquire().await.expect_err("B is rejected");
    assert!(!rejection.fallback, "{rejection:?}");
    assert_eq!(
        (rejection.status, rejection.reason),
        (Status::Open, DecisionReason::Open)
    );
    let retry_after = rejection.retry_after.expect("retry_after");
    assert!(retry_after <= COOLDOWN, "{retry_after:?}");

    // B hears of the trip through its watch.
    let b_trip = next_change(&mut b_changes).await;
    assert_change(
        &b_trip,
        Status::Closed,
        Status::Open,
        TransitionReason::FailureLimit,
    );
    assert_eq!(b_trip.generation, tripped_generation);

    // After the announced cooldown, B's next call is the trial that closes it again.
    tokio::time::sleep(retry_after).await;
    let trial = b.acquire().await.expect("the trial is admitted");
    assert!(trial.is_trial() && !trial.is_fallback());
    let resolved = trial.success().await;
    assert!(resolved.accepted);
    assert_eq!(resolved.status, Some(Status::Closed));
    b.call(|| async { Ok::<_, ()>(()) }).await.expect("CLOSED admits");

    // Both see HALF_OPEN (from the watch) and CLOSED (B from its own report), once each.
    let (half_open, closed) = (tripped_generation + 1, tripped_generation + 2);
    for rx in [&mut a_changes, &mut b_changes] {
        let got = collect(rx, &[half_open, closed]).await;
        assert_change(
            &got[&half_open],
            Status::Open,
            Status::HalfOpen,
            TransitionReason::CooldownElapsed,
        );
        assert_change(
            &got[&closed],
            Status::HalfOpen,
            Status::Closed,
            TransitionReason::TrialsSucceeded,
        );
    }

    // A last operator transition: per stream events come in order, so once it arrived
    // any repeat of an earlier one would have been seen before it.
    let last = daemon.set_status("shared", v1::Status::Open).await;
    for rx in [&mut a_changes, &mut b_changes] {
        let c = next_change(rx).await;
        assert_change(&c, Status::Closed, Status::Open, TransitionReason::Manual);
        assert_eq!(c.generation, last.generation);
        assert_no_more_changes(rx);
    }
    assert_eq!(
        a_client.stats().fallback_decisions + b_client.stats().fallback_decisions,
        0
    );
}
