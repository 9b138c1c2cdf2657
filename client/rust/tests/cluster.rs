//! The client on a real cluster: a real etcd and real `circuitd` replicas (the harness's
//! `Etcd` and `Replicas`). Given every replica's address, the leader's first, the client
//! rides out the leader's death (SIGKILL): it moves to the survivor, which leads after the
//! lease, and its Watch resumes there from its last revision, without a resync (the
//! revisions and the epoch are the cluster's), so a transition made meanwhile arrives as
//! the event it was, reason and all.

mod common;

use std::time::Duration;

use common::{changes, next_change, policy};
use resilient_circuit::{Client, Fallback, Status, TransitionReason};
use resilient_circuit_api::v1;
use support::{DEADLINE, Etcd, Replicas, set_status};
use tokio::time::Instant;

const NAME: &str = "cluster-client";

/// A client of every replica at `uris`, reconnecting quickly.
async fn cluster_client(uris: Vec<String>, acquire_deadline: Duration, request_timeout: Duration) -> Client {
    Client::builder_many(uris)
        .acquire_deadline(acquire_deadline)
        .request_timeout(request_timeout)
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(200))
        .build()
        .await
        .expect("client")
}

#[tokio::test]
async fn the_client_moves_to_the_surviving_replica_and_its_watch_resumes_there() {
    let etcd = Etcd::single().await;
    let mut replicas = Replicas::start(&etcd, 2, &[]).await;
    let leader = replicas.leader().await;
    let survivor = 1 - leader;
    let uris = replicas.uris();
    let client = cluster_client(
        vec![uris[leader].clone(), uris[survivor].clone()],
        Duration::from_secs(1),
        Duration::from_secs(1),
    )
    .await;
    let p = client
        .protector_builder(NAME)
        .policy(policy(Duration::from_secs(60), (5, 5)))
        .fallback(Fallback::Deny)
        .build()
        .await
        .expect("protector");
    let (on_change, mut changes) = changes();
    p.on_status_change(on_change);
    let permit = p.acquire().await.expect("admitted by the leader");
    assert!(!permit.is_fallback());
    permit.success().await;

    // The watch is live once it carries an operator's transition (CLOSED to CLOSED moves
    // no status, so a watch that opens after one hears nothing: try until one is heard).
    let give_up = Instant::now() + DEADLINE;
    loop {
        assert!(Instant::now() < give_up, "the watch never went live");
        set_status(&mut replicas.admin(leader).await, NAME, v1::Status::Closed, None).await;
        if tokio::time::timeout(Duration::from_millis(200), changes.recv())
            .await
            .is_ok()
        {
            break;
        }
    }
    while tokio::time::timeout(Duration::from_millis(200), changes.recv())
        .await
        .is_ok()
    {}

    replicas.kill(leader).await;
    assert_eq!(replicas.new_leader(leader).await, survivor);
    // Made on the new leader while the client's watch may still be reconnecting: it
    // reaches the client as the event itself (replayed from the cluster's history, or
    // live), not as a status reconciled from a snapshot after a resync.
    let opened = set_status(&mut replicas.admin(survivor).await, NAME, v1::Status::Open, None)
        .await
        .transition
        .expect("transition");
    let heard = next_change(&mut changes).await;
    assert_eq!(
        (heard.to, heard.generation, heard.reason),
        (Status::Open, opened.generation, Some(TransitionReason::Manual)),
        "{heard:?}"
    );

    // And the survivor decides: the daemon's rejection (OPEN), not the fallback's.
    let give_up = Instant::now() + DEADLINE;
    let mut poll = tokio::time::interval(Duration::from_millis(10));
    loop {
        assert!(Instant::now() < give_up, "the survivor never answered");
        poll.tick().await;
        match p.acquire().await {
            Err(rejection) if !rejection.fallback => {
                assert_eq!(rejection.status, Status::Open, "{rejection:?}");
                break;
            }
            Ok(permit) => panic!("admitted while OPEN: {permit:?}"),
            // The fallback decided (the link is backing off): ask again.
            Err(_) => {}
        }
    }
    assert_eq!(client.uri(), uris[survivor]);
}

/// Several clients, each given every replica's address (a different one first), keep
/// calling through protectors with an Allow fallback while the leader is killed: none of
/// their callers ever sees an error or a rejection. The daemon answers before and after;
/// in between, the fallback decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_with_a_fallback_see_no_error_while_the_leader_is_killed_under_load() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let etcd = Etcd::single().await;
    let mut replicas = Replicas::start(&etcd, 3, &[]).await;
    let leader = replicas.leader().await;
    let stop = Arc::new(AtomicBool::new(false));
    // How many calls completed, watched: the test waits on it, not on a clock.
    let (decided, mut completed) = tokio::sync::watch::channel(0u64);
    let decided = Arc::new(decided);
    let mut callers = Vec::new();
    for i in 0..3 {
        let mut uris = replicas.uris();
        uris.rotate_left(i);
        let client = cluster_client(uris, Duration::from_millis(200), Duration::from_millis(500)).await;
        let p = client
            .protector_builder(format!("load-{i}"))
            .policy(policy(Duration::from_secs(60), (5, 5)))
            .fallback(Fallback::Allow)
            .build()
            .await
            .expect("protector");
        let (stop, decided) = (Arc::clone(&stop), Arc::clone(&decided));
        callers.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Acquire) {
                match p.call(async || Ok::<_, std::io::Error>(())).await {
                    Ok(()) => {}
                    Err(e) => errors.push(e.to_string()),
                }
                decided.send_modify(|n| *n += 1);
            }
            (errors, p.fallback_decisions(), client)
        }));
    }
    let mut wait_for = async |more: u64| {
        let target = *completed.borrow() + more;
        tokio::time::timeout(DEADLINE, completed.wait_for(|n| *n >= target))
            .await
            .expect("the callers stalled")
            .expect("callers alive");
    };
    wait_for(300).await;
    replicas.kill(leader).await;
    replicas.new_leader(leader).await;
    wait_for(300).await;
    stop.store(true, Ordering::Release);
    let mut fallbacks = 0;
    for caller in callers {
        let (errors, fallback_decisions, _client) = caller.await.expect("caller");
        assert!(errors.is_empty(), "errors reached the caller: {errors:?}");
        fallbacks += fallback_decisions;
    }
    println!("fallback decisions while the leader was replaced: {fallbacks}");
}

/// With all of etcd gone the replicas stop deciding, and a protector with a fallback
/// decides by it, without an error; when etcd returns, the daemon decides again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_etcd_the_fallback_decides_and_the_daemon_resumes_when_it_returns() {
    let mut etcd = Etcd::single().await;
    let replicas = Replicas::start(&etcd, 2, &[]).await;
    replicas.leader().await;
    let client = cluster_client(
        replicas.uris(),
        Duration::from_millis(200),
        Duration::from_millis(500),
    )
    .await;
    let p = client
        .protector_builder("outage")
        .policy(policy(Duration::from_secs(60), (5, 5)))
        .fallback(Fallback::Allow)
        .build()
        .await
        .expect("protector");
    let by_daemon = async |want_fallback: bool| {
        let give_up = Instant::now() + DEADLINE;
        let mut poll = tokio::time::interval(Duration::from_millis(20));
        loop {
            assert!(
                Instant::now() < give_up,
                "the decisions never came from the {}",
                if want_fallback { "fallback" } else { "daemon" }
            );
            poll.tick().await;
            let permit = p
                .acquire()
                .await
                .expect("an Allow fallback never rejects a CLOSED protector");
            let fallback = permit.is_fallback();
            permit.success().await;
            if fallback == want_fallback {
                return;
            }
        }
    };
    by_daemon(false).await;
    etcd.kill_all();
    by_daemon(true).await;
    etcd.restart_all().await;
    by_daemon(false).await;
}
