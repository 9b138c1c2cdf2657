//! The shortest path through the daemon: create, acquire, fail, trip, watch it happen.

use std::time::Duration;

use resilient_circuit_api::v1;
use support::*;

#[tokio::test]
async fn a_failure_trips_the_default_policy_and_watchers_hear_it() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    let mut watcher = Watcher::open(&mut client, watch_all()).await;
    let (snapshot, synced) = watcher.snapshot().await;
    assert!(snapshot.is_empty());

    let created = ensure(
        &mut client,
        "payments",
        policy(Duration::from_secs(60), (1, 1), None),
    )
    .await;
    assert_eq!(created.status, v1::Status::Closed as i32);
    let report = call(&mut client, "payments", v1::Outcome::Failure).await;
    assert!(report.accepted);
    assert_eq!(report.status, v1::Status::Open as i32);

    let rejected = acquire(&mut client, "payments").await;
    assert_eq!(rejected.decision, v1::Decision::Rejected as i32);
    assert_eq!(rejected.reason, v1::DecisionReason::Open as i32);
    assert!(rejected.retry_after.is_some());

    let created_event = watcher.next().await;
    assert_eq!(created_event.revision, synced + 1);
    assert!(matches!(
        created_event.event,
        Some(v1::watch_event::Event::Created(_))
    ));
    let tripped = watcher.next().await;
    assert_eq!(tripped.revision, synced + 2);
    match tripped.event {
        Some(v1::watch_event::Event::StatusChanged(s)) => {
            let t = s.transition.expect("transition");
            assert_eq!(t.to, v1::Status::Open as i32);
            assert_eq!(t.reason, v1::TransitionReason::FailureLimit as i32);
        }
        other => panic!("expected STATUS_CHANGED, got {other:?}"),
    }
    daemon.stop().await.expect("clean stop");
}
