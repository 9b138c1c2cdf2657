//! The policies around a real protector, held by a real `circuitd` in this process.
//!
//! Real time here (a paused clock would race the network): the backoffs are a few
//! milliseconds and only pace the retries; nothing waits for anything to happen.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{patient_client, policy};
use resilient_circuit::backoff::FixedDelay;
use resilient_circuit::policy::{Classified, Policy};
use resilient_circuit::protector::Protector;
use resilient_circuit::retry::RetryWithBackoff;
use resilient_circuit::safety_net::SafetyNet;
use resilient_circuit::{CallError, Outcome, Status};
use resilient_circuit_api::v1;
use resilient_circuit_breaker::DecisionReason;
use support::Daemon;

/// A protector `name` of `daemon` with `cooldown` and `failure_limit`, through a patient
/// client of its own: every decision here must be the daemon's, even on a loaded machine.
async fn protector(daemon: &Daemon, name: &str, cooldown: Duration, failure_limit: (u32, u32)) -> Protector {
    patient_client(daemon)
        .await
        .protector(name, policy(cooldown, failure_limit))
        .await
        .expect("protector")
}

#[derive(Debug, PartialEq, Eq)]
struct Down;

#[tokio::test]
async fn a_retry_around_a_protector_stops_on_the_rejection_once_it_trips() {
    let daemon = Daemon::start().await;
    // Trips after two failures in a row and stays open for a minute.
    let protector = protector(&daemon, "payments", Duration::from_secs(60), (2, 2)).await;
    let net = SafetyNet::new(
        RetryWithBackoff::<Down>::new()
            .max_retries(10)
            .backoff(FixedDelay(Duration::from_millis(5))),
        protector,
    );
    let calls = AtomicU32::new(0);

    let err = net
        .call(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(Down) }
        })
        .await
        .unwrap_err();

    // Two calls reached the service; the third attempt was refused by the open
    // protector, whose minute-long retry_after does not fit a 5 ms backoff.
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let rejection = match err {
        CallError::Rejected(rejection) => rejection,
        other => panic!("expected the rejection, got {other:?}"),
    };
    assert_eq!(rejection.status, Status::Open);
    assert_eq!(rejection.reason, DecisionReason::Open);
    assert!(!rejection.fallback);
    let retry_after = rejection.retry_after.expect("an open protector says when");
    assert!(retry_after > Duration::from_secs(50), "{retry_after:?}");

    let seen = daemon.inspect("payments").await;
    assert_eq!(seen.status(), v1::Status::Open);
    let counters = seen.counters.expect("counters");
    assert_eq!(
        (counters.admitted, counters.failures, counters.rejected),
        (2, 2, 1)
    );
}

#[tokio::test]
async fn a_protector_around_a_retry_counts_the_whole_sequence_once_by_its_last_error() {
    let daemon = Daemon::start().await;
    let protector = protector(&daemon, "inventory", Duration::from_secs(60), (3, 3)).await;
    let net = SafetyNet::new(
        protector,
        RetryWithBackoff::<Down>::new()
            .max_retries(3)
            .backoff(FixedDelay(Duration::from_millis(1))),
    );
    let calls = AtomicU32::new(0);

    let err = net
        .call(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(Down) }
        })
        .await
        .unwrap_err();

    assert!(
        matches!(err, CallError::RetryLimitReached { attempts: 4, .. }),
        "{err:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    let seen = daemon.inspect("inventory").await;
    assert_eq!(seen.status(), v1::Status::Closed);
    let counters = seen.counters.expect("counters");
    assert_eq!(
        (counters.admitted, counters.failures, counters.successes),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn a_rejection_from_an_inner_protector_counts_as_ignored_outside() {
    let daemon = Daemon::start().await;
    let outer = protector(&daemon, "edge", Duration::from_secs(60), (1, 1)).await;
    let inner = protector(&daemon, "backend", Duration::from_secs(60), (1, 1)).await;

    // Trip the inner protector with one failure.
    let tripped = inner
        .execute(|| async { Err::<(), _>(CallError::Failed(Down)) })
        .await;
    assert!(matches!(tripped, Err(CallError::Failed(Down))));

    let net = SafetyNet::new(&outer, &inner);
    let err = net.call(|| async { Ok::<(), Down>(()) }).await.unwrap_err();
    assert!(
        matches!(err, CallError::Rejected(ref r) if r.name == "backend"),
        "{err:?}"
    );

    // The outer protector let the call through and counted it as neither.
    let seen = daemon.inspect("edge").await;
    assert_eq!(seen.status(), v1::Status::Closed);
    let counters = seen.counters.expect("counters");
    assert_eq!(
        (
            counters.admitted,
            counters.successes,
            counters.failures,
            counters.ignored
        ),
        (1, 0, 0, 1)
    );
}

#[tokio::test]
async fn a_classified_protector_counts_each_error_as_told() {
    let daemon = Daemon::start().await;
    let protector = protector(&daemon, "search", Duration::from_secs(60), (1, 1)).await;
    // A "not found" is the service working: count it as a success, as the library's
    // should_handle did for errors it declined.
    let classified = Classified::new(protector, |e: &&str| {
        if *e == "not found" {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    });

    let err = classified
        .execute(|| async { Err::<(), _>(CallError::Failed("not found")) })
        .await;
    assert!(matches!(err, Err(CallError::Failed("not found"))));
    assert_eq!(daemon.inspect("search").await.status(), v1::Status::Closed);

    let err = classified
        .execute(|| async { Err::<(), _>(CallError::Failed("timeout")) })
        .await;
    assert!(matches!(err, Err(CallError::Failed("timeout"))));
    let seen = daemon.inspect("search").await;
    assert_eq!(seen.status(), v1::Status::Open);
    let counters = seen.counters.expect("counters");
    assert_eq!((counters.successes, counters.failures), (1, 1));
}
