//! Each declared fallback with the daemon stopped: decides as declared (every decision
//! counted as the fallback's), and hands back to the daemon once it is back on the same
//! address, with the protector's Watch resumed.
//!
//! How soon the fallback decides is a benchmark's question, not a test's: waits here are
//! for events, with the generous `DEADLINE`.

mod common;

use std::time::Duration;

use common::{changes, next_change, policy, start_daemon};
use resilient_circuit::{
    CallPermit, Client, DecisionReason, Fallback, Outcome, PolicySpec, Protector, ProtectorPolicy, Rejection,
    Rules, Status,
};
use resilient_circuit_api::v1;
use support::DEADLINE;
use tokio::time::Instant;

const ACQUIRE_DEADLINE: Duration = Duration::from_millis(50);
const NAME: &str = "fallback";

/// What a mode must decide for the `i`th acquire of the outage.
type Check = fn(usize, Result<CallPermit, Rejection>) -> Option<CallPermit>;

async fn outage(fallback: Fallback, check: Check) {
    let mut daemon = start_daemon().await;
    let client = Client::builder(daemon.uri())
        .acquire_deadline(ACQUIRE_DEADLINE)
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(200))
        .build()
        .await
        .expect("client");
    let p = client
        .protector_builder(NAME)
        .policy(policy(Duration::from_secs(60), (1, 1)))
        .fallback(fallback)
        .build()
        .await
        .expect("protector");
    let (on_change, mut changes) = changes();
    p.on_status_change(on_change);

    // Another process trips the protector; hearing of it proves the watch is live, so
    // it has a revision to resume from after the outage.
    daemon.raw_call(NAME, v1::Outcome::Failure).await;
    let trip = next_change(&mut changes).await;
    assert_eq!((trip.to, trip.generation), (Status::Open, 2), "{trip:?}");
    daemon.set_status(NAME, v1::Status::Closed).await;
    assert_eq!(next_change(&mut changes).await.to, Status::Closed);

    daemon.stop_in_place().await;
    for i in 0..20 {
        let decision = tokio::time::timeout(DEADLINE, p.acquire())
            .await
            .unwrap_or_else(|_| panic!("acquire {i} did not return"));
        if let Some(permit) = check(i, decision) {
            assert!(permit.is_fallback());
            permit.failure().await;
        }
    }
    assert_eq!(p.fallback_decisions(), 20);
    let stats = client.stats();
    assert_eq!(stats.fallback_decisions, 20);
    assert!(stats.link_down && stats.link_downs >= 1, "{stats:?}");

    // The daemon comes back, empty, on the same address: the client ensures the
    // protector again and the daemon decides once more.
    daemon.start_again().await;
    let give_up = Instant::now() + DEADLINE;
    let mut poll = tokio::time::interval(Duration::from_millis(10));
    loop {
        assert!(
            Instant::now() < give_up,
            "still deciding locally after {DEADLINE:?}"
        );
        poll.tick().await;
        match p.acquire().await {
            Ok(permit) if !permit.is_fallback() => {
                assert_eq!(permit.success().await.status, Some(Status::Closed));
                break;
            }
            Ok(permit) => drop(permit.ignore().await),
            Err(rejection) => assert!(rejection.fallback, "{rejection:?}"),
        }
    }
    let decided_locally = p.fallback_decisions();
    p.call(|| async { Ok::<_, ()>(()) })
        .await
        .expect("the daemon admits");
    assert_eq!(p.fallback_decisions(), decided_locally);
    // Every acquire was counted once, by the source that decided it.
    let decisions = p.decisions();
    assert_eq!(decisions.fallback, decided_locally, "{decisions:?}");
    assert!(decisions.daemon >= 2, "{decisions:?}");
    assert_eq!(decisions.cache, 0, "{decisions:?}");
    assert_eq!(client.stats().daemon_decisions, decisions.daemon);

    // The watch resumed: another process trips the protector again and this client
    // hears of it (streamed, or reconciled from the snapshot the resumed watch starts
    // with if the trip came first).
    daemon.raw_call(NAME, v1::Outcome::Failure).await;
    let give_up = Instant::now() + DEADLINE;
    loop {
        assert!(
            Instant::now() < give_up,
            "the trip after the restart was not announced"
        );
        let c = next_change(&mut changes).await;
        if c.to == Status::Open {
            assert_eq!(c.generation, 2, "{c:?}");
            break;
        }
    }
}

fn admitted(i: usize, decision: Result<CallPermit, Rejection>) -> Option<CallPermit> {
    Some(decision.unwrap_or_else(|r| panic!("acquire {i}: ALLOW rejected: {r:?}")))
}

fn denied(i: usize, decision: Result<CallPermit, Rejection>) -> Option<CallPermit> {
    let r = decision
        .err()
        .unwrap_or_else(|| panic!("acquire {i}: DENY admitted"));
    assert!(r.fallback && r.retry_after.is_none(), "{r:?}");
    assert_eq!((r.status, r.reason), (Status::Open, DecisionReason::Open));
    None
}

/// The local machine with failure limit 1/1: the first call is admitted and fails,
/// which trips it; every later one is rejected by it with its cooldown.
fn local(i: usize, decision: Result<CallPermit, Rejection>) -> Option<CallPermit> {
    match (i, decision) {
        (0, Ok(permit)) => Some(permit),
        (0, Err(r)) => panic!("the local machine starts CLOSED: {r:?}"),
        (_, Ok(_)) => panic!("acquire {i}: the local machine did not trip"),
        (_, Err(r)) => {
            assert!(r.fallback, "{r:?}");
            assert_eq!((r.status, r.reason), (Status::Open, DecisionReason::Open));
            assert!(
                r.retry_after.is_some_and(|d| d <= Duration::from_secs(60)),
                "{r:?}"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_admits_while_the_daemon_is_down() {
    outage(Fallback::Allow, admitted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_rejects_while_the_daemon_is_down() {
    outage(Fallback::Deny, denied).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_runs_the_status_machine_in_process() {
    outage(Fallback::Local, local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_fallback_lets_a_protector_start_while_the_daemon_is_down() {
    let mut daemon = start_daemon().await;
    daemon.stop_in_place().await;
    let client = Client::connect(daemon.uri())
        .await
        .expect("a down daemon never fails connect");
    let err = client
        .protector(NAME, policy(Duration::ZERO, (1, 1)))
        .await
        .expect_err("no fallback declared");
    assert!(matches!(err, resilient_circuit::Error::Status(_)), "{err:?}");
    let p: Protector = client
        .protector_builder(NAME)
        .fallback(Fallback::Allow)
        .build()
        .await
        .expect("a declared fallback starts without the daemon");
    p.acquire().await.expect("ALLOW").success().await;
    assert_eq!(p.fallback_decisions(), 1);

    daemon.start_again().await;
    let give_up = Instant::now() + DEADLINE;
    let mut poll = tokio::time::interval(Duration::from_millis(10));
    loop {
        assert!(Instant::now() < give_up, "the daemon was not asked again");
        poll.tick().await;
        let permit = p.acquire().await.expect("ALLOW or the daemon");
        if !permit.is_fallback() {
            assert!(permit.success().await.accepted);
            break;
        }
        permit.ignore().await;
    }
    assert!(daemon.inspect(NAME).await.counters.expect("counters").successes >= 1);
}

/// The LOCAL fallback's machine judges durations too: a permit it gave out measures its
/// call, or takes the caller's measure, and slow calls trip it under the policy's
/// slow-call rule while the daemon is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_fallback_trips_on_slow_calls() {
    let mut daemon = start_daemon().await;
    daemon.stop_in_place().await;
    let client = Client::builder(daemon.uri())
        .acquire_deadline(ACQUIRE_DEADLINE)
        .build()
        .await
        .expect("client");
    let slow = ProtectorPolicy::try_with(
        PolicySpec {
            cooldown: Duration::from_secs(60),
            failure_limit: (2, 2),
            ..PolicySpec::default()
        },
        Rules {
            slow_call_duration: Some(Duration::from_millis(100)),
            slow_call_limit: Some((2, 2)),
            ..Rules::default()
        },
    )
    .expect("valid policy");
    let p = client
        .protector_builder(NAME)
        .policy(slow)
        .fallback(Fallback::Local)
        .build()
        .await
        .expect("a declared fallback starts without the daemon");
    // Two successes, each slow: by the caller's measure, then by the permit's own.
    let first = p.acquire().await.expect("the local machine starts CLOSED");
    assert!(first.is_fallback());
    assert!(
        first
            .resolve_timed(Outcome::Success, Duration::from_millis(150))
            .await
            .accepted
    );
    let second = p.acquire().await.expect("one slow call of two trips nothing");
    tokio::time::sleep(Duration::from_millis(110)).await; // the call: at least the threshold
    assert!(second.success().await.accepted);
    let rejected = p.acquire().await.expect_err("two slow calls of two trip it");
    assert!(rejected.fallback, "{rejected:?}");
    assert_eq!(rejected.status, Status::Open, "{rejected:?}");
}
