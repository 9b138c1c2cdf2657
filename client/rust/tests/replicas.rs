//! A client given several addresses (the replicas of one cluster) moves to the next when
//! the one it asks cannot be reached: for unary calls, the Session stream and the Watch.
//!
//! The daemons here are two standalone in-memory ones, A and B: not a cluster, so their
//! states differ, which is what lets a test tell which one answered. The Watch that
//! moves from A to B resumes with A's revision and epoch; B answers RESYNC and a
//! snapshot, and the stream goes on.

mod common;

use std::time::Duration;

use common::{changes, next_change, policy, start_daemon, until_watching};
use resilient_circuit::{Client, ClientBuilder, Error, Fallback, Status, Transport};
use resilient_circuit_api::v1;
use support::{DEADLINE, dead_uri, ensure, requests};

/// A patient client of `uris`: every decision must come from a daemon.
fn patient(uris: &[String]) -> ClientBuilder {
    Client::builder_many(uris)
        .acquire_deadline(DEADLINE)
        .request_timeout(DEADLINE)
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(200))
}

#[tokio::test]
async fn every_address_is_validated() {
    let live = dead_uri();
    for bad in ["nonsense", "127.0.0.1:50051", "ftp://host:1"] {
        match Client::builder_many([live.clone(), bad.to_owned()]).build().await {
            Err(Error::InvalidUri { uri, .. }) => assert_eq!(uri, bad),
            other => panic!("{bad:?} accepted: {other:?}"),
        }
    }
    let none: [&str; 0] = [];
    let err = Client::connect_many(none).await.expect_err("no address");
    assert!(err.to_string().contains("no address"), "{err}");
}

async fn dead_first(transport: Transport) {
    let live = start_daemon().await;
    let uris = [dead_uri(), live.uri()];
    let client = patient(&uris).transport(transport).build().await.expect("client");
    assert_eq!(client.uris().collect::<Vec<_>>(), uris);
    // No fallback declared: the build fails unless a daemon answers EnsureProtector.
    let p = client
        .protector("dead-first", policy(Duration::from_secs(60), (1, 1)))
        .await
        .expect("the live replica answers");
    let permit = p.acquire().await.expect("admitted");
    assert!(!permit.is_fallback());
    assert_eq!(permit.success().await.status, Some(Status::Closed));
    assert_eq!(client.uri(), live.uri());
    let stats = client.stats();
    assert!(!stats.link_down && stats.link_downs == 0, "{stats:?}");
    assert_eq!(stats.fallback_decisions, 0);
}

#[tokio::test]
async fn a_dead_first_address_is_passed_over_on_the_session() {
    dead_first(Transport::Session).await;
}

#[tokio::test]
async fn a_dead_first_address_is_passed_over_with_unary_calls() {
    dead_first(Transport::Unary).await;
}

async fn keeps_answering(transport: Transport) {
    let mut a = start_daemon().await;
    let b = start_daemon().await;
    let client = patient(&[a.uri(), b.uri()])
        .transport(transport)
        .build()
        .await
        .expect("client");
    let p = client
        .protector_builder("failover")
        .policy(policy(Duration::from_secs(60), (5, 10)))
        .fallback(Fallback::Deny)
        .build()
        .await
        .expect("protector");
    for _ in 0..3 {
        p.acquire().await.expect("admitted by A").success().await;
    }
    assert_eq!(client.uri(), a.uri());

    a.stop_in_place().await;
    for i in 0..10 {
        let permit = p.acquire().await.unwrap_or_else(|r| panic!("acquire {i}: {r}"));
        assert!(!permit.is_fallback(), "acquire {i} came from the fallback");
        assert!(permit.failure().await.accepted, "B recorded report {i}");
    }
    assert_eq!(client.uri(), b.uri());
    assert_eq!(p.fallback_decisions(), 0);
    assert_eq!(client.stats().link_downs, 0, "{:?}", client.stats());
    // B holds the protector now (created there on first use), with the failures the
    // client reported to it.
    let on_b = b.inspect("failover").await;
    assert_eq!(on_b.status(), v1::Status::Open, "{on_b:?}");
}

#[tokio::test]
async fn the_session_moves_to_the_next_replica_when_one_stops() {
    keeps_answering(Transport::Session).await;
}

#[tokio::test]
async fn unary_calls_move_to_the_next_replica_when_one_stops() {
    keeps_answering(Transport::Unary).await;
}

#[tokio::test]
async fn the_watch_moves_to_the_next_replica_and_resyncs_from_its_snapshot() {
    const NAME: &str = "watched";
    let mut a = start_daemon().await;
    let b = start_daemon().await;
    // B already holds the protector, OPEN: a status A's watchers never saw. Then B's
    // history runs on past anything A will reach, on another protector, so B's revision
    // is above the one the stream resumes from while the protector's own snapshot
    // (its last change) is below it: only the epoch tells the histories apart.
    let mut raw = b.protectors().await;
    let spec = || requests::policy(Duration::from_secs(60), (1, 1), None);
    ensure(&mut raw, NAME, spec()).await;
    b.set_status(NAME, v1::Status::Open).await;
    ensure(&mut raw, "elsewhere", spec()).await;
    for _ in 0..50 {
        b.set_status("elsewhere", v1::Status::Closed).await;
    }

    let client = patient(&[a.uri(), b.uri()]).build().await.expect("client");
    let p = client
        .protector(NAME, policy(Duration::from_secs(60), (1, 1)))
        .await
        .expect("protector on A");
    let (on_change, mut changes) = changes();
    p.on_status_change(on_change);
    until_watching(&a, NAME, &mut [&mut changes]).await;

    // The stream resumes on B with A's revision and epoch: B answers RESYNC and its
    // snapshot, which reveals the OPEN status, reconciled as a change of no reason.
    a.stop_in_place().await;
    let reconciled = next_change(&mut changes).await;
    assert_eq!(
        (reconciled.from, reconciled.to),
        (Status::Closed, Status::Open),
        "{reconciled:?}"
    );
    assert_eq!(reconciled.reason, None, "{reconciled:?}");

    // And the stream goes on: B's next transition arrives.
    let closed = b.set_status(NAME, v1::Status::Closed).await;
    let heard = next_change(&mut changes).await;
    assert_eq!(
        (heard.to, heard.generation),
        (Status::Closed, closed.generation),
        "{heard:?}"
    );
    assert_eq!(client.uri(), b.uri());
}
