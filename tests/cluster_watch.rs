//! Replicated mode: a watcher on a follower across a leader failover sees every change,
//! in strictly increasing revisions, with no gap and no duplicate.

use std::time::Duration;

use resilient_circuit_api::v1;
use resilient_circuit_api::v1::watch_event::Event;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_a_follower_misses_nothing_across_a_failover() {
    let etcd = Etcd::single().await;
    let mut replicas = Replicas::start(&etcd, 3, &[]).await;
    let leader = replicas.leader().await;
    let follower = (leader + 1) % replicas.len();
    let mut any = Anywhere::new(replicas.uris());
    any.ensure("w").await.expect("ensure");

    // A follower is a hot standby: health reports it SERVING.
    let channel = replicas.replica(follower).channel().await.expect("channel");
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(
        health.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );

    let mut on_follower = replicas.protectors(follower).await;
    let mut watcher = Watcher::open(&mut on_follower, watch_all()).await;
    let (_, synced) = watcher.snapshot().await;

    let mut acknowledged = Vec::new();
    let mut open = true;
    for k in 0..40 {
        if k == 20 {
            replicas.kill(leader).await;
        }
        let status = if open {
            v1::Status::Open
        } else {
            v1::Status::Closed
        };
        let answer = any
            .set_status("w", status, open.then_some(Duration::from_secs(600)))
            .await
            .expect("SetStatus");
        acknowledged.push(answer.revision);
        open = !open;
    }
    let last = *acknowledged.last().expect("changes");
    let mut seen = Vec::new();
    let mut previous = synced;
    while previous < last {
        let event = watcher.next().await;
        match &event.event {
            Some(Event::Progress(_)) => continue,
            Some(Event::Resync(r)) => panic!("the watcher was resynced: {r:?}"),
            _ => {}
        }
        assert!(
            event.revision > previous,
            "revision {} after {previous}: not strictly increasing",
            event.revision
        );
        previous = event.revision;
        seen.push(event.revision);
    }
    for revision in acknowledged {
        assert!(
            seen.contains(&revision),
            "the watcher missed revision {revision}; saw {seen:?}"
        );
    }
}
