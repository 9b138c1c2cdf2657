//! The client over the `Session` stream (the default transport): the same acquire and
//! report semantics as unary calls, and a stream reopened after the daemon restarts.

mod common;

use std::time::Duration;

use common::{policy, start_daemon};
use futures_util::future::join_all;
use resilient_circuit::{Client, DecisionReason, Fallback, Status, Transport};
use support::DEADLINE;
use tokio::time::Instant;

/// One scenario, run on either transport: admissions, reports, a trip, a rejection
/// with its retry_after, and pipelined calls; the daemon's counters must agree.
async fn semantics(transport: Transport) {
    let daemon = start_daemon().await;
    let client = Client::builder(daemon.uri())
        .acquire_deadline(DEADLINE)
        .request_timeout(DEADLINE)
        .transport(transport)
        .build()
        .await
        .expect("client");
    let name = "session-semantics";
    let p = client
        .protector(name, policy(Duration::from_secs(60), (2, 2)))
        .await
        .expect("protector");

    // 64 calls in flight at once, all answered and all recorded.
    let calls = (0..64).map(|_| async {
        let permit = p.acquire().await.expect("CLOSED admits");
        assert!(!permit.is_fallback() && !permit.is_trial());
        assert_eq!(permit.generation(), Some(1));
        permit.success().await
    });
    for resolved in join_all(calls).await {
        assert_eq!((resolved.accepted, resolved.status), (true, Some(Status::Closed)));
    }

    let first = p.acquire().await.expect("admitted").failure().await;
    assert_eq!((first.accepted, first.status), (true, Some(Status::Closed)));
    let trip = p.acquire().await.expect("admitted").failure().await;
    assert_eq!((trip.accepted, trip.status), (true, Some(Status::Open)));

    let rejection = p.acquire().await.expect_err("OPEN rejects");
    assert!(!rejection.fallback, "{rejection:?}");
    assert_eq!(
        (rejection.status, rejection.reason),
        (Status::Open, DecisionReason::Open)
    );
    assert!(
        rejection
            .retry_after
            .is_some_and(|d| d > Duration::from_secs(50) && d <= Duration::from_secs(60)),
        "{rejection:?}"
    );

    let seen = daemon.inspect(name).await;
    let counters = seen.counters.expect("counters");
    assert_eq!(
        (counters.successes, counters.failures, counters.rejected),
        (64, 2, 1)
    );
    assert_eq!(counters.admitted, 66);
    assert_eq!(client.stats().fallback_decisions, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_has_the_semantics_of_unary_calls() {
    semantics(Transport::Session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_stay_available() {
    semantics(Transport::Unary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_reopens_after_a_daemon_restart() {
    let mut daemon = start_daemon().await;
    let client = Client::builder(daemon.uri())
        .acquire_deadline(Duration::from_millis(500))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(100))
        .build()
        .await
        .expect("client");
    let name = "session-restart";
    let p = client
        .protector_builder(name)
        .policy(policy(Duration::from_secs(60), (5, 5)))
        .fallback(Fallback::Deny)
        .build()
        .await
        .expect("protector");
    let permit = p.acquire().await.expect("admitted");
    assert!(!permit.is_fallback());
    assert!(permit.success().await.accepted);

    // The stream breaks with the daemon: the next decision is the fallback's.
    daemon.stop_in_place().await;
    let rejection = p.acquire().await.expect_err("DENY while the daemon is down");
    assert!(rejection.fallback, "{rejection:?}");

    // Back, empty, on the same address: a new stream carries the calls, the protector
    // is ensured again, and its reports are recorded.
    daemon.start_again().await;
    let give_up = Instant::now() + DEADLINE;
    let mut poll = tokio::time::interval(Duration::from_millis(10));
    loop {
        assert!(Instant::now() < give_up, "the session never came back");
        poll.tick().await;
        match p.acquire().await {
            Ok(permit) => {
                assert!(!permit.is_fallback());
                let resolved = permit.success().await;
                assert_eq!((resolved.accepted, resolved.status), (true, Some(Status::Closed)));
                break;
            }
            Err(rejection) => assert!(rejection.fallback, "{rejection:?}"),
        }
    }
    let counters = daemon.inspect(name).await.counters.expect("counters");
    assert_eq!((counters.admitted, counters.successes), (1, 1));
}
