//! Replicated mode when etcd itself fails: one member of three lost and the cluster
//! keeps serving; every member lost and replicas stop deciding, then resume with their
//! state intact when etcd returns.

use std::time::Duration;

use resilient_circuit_api::v1;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_etcd_member_of_three_lost_and_the_cluster_keeps_serving() {
    let mut etcd = Etcd::three().await;
    let replicas = Replicas::start(&etcd, 2, &[]).await;
    let leader = replicas.leader().await;
    let follower = 1 - leader;
    let mut any = Anywhere::new(replicas.uris());
    any.ensure("steady").await.expect("ensure");

    // The worst member to lose: etcd's own leader.
    let member = etcd.leader().await;
    etcd.kill(member);
    let mut last = 0;
    let mut open = true;
    for _ in 0..10 {
        let status = if open {
            v1::Status::Open
        } else {
            v1::Status::Closed
        };
        let answer = any
            .set_status("steady", status, open.then_some(Duration::from_secs(600)))
            .await
            .expect("the cluster keeps deciding with two etcd members of three");
        last = answer.protector.expect("protector").generation;
        open = !open;
    }
    let mut on_follower = replicas.protectors(follower).await;
    eventually(
        async || {
            let now = get(&mut on_follower, "steady").await.generation;
            if now == last { Ok(()) } else { Err(now) }
        },
        |now| format!("the follower shows generation {now}, the leader acknowledged {last}"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_all_of_etcd_gone_replicas_stop_deciding_and_resume_intact() {
    let mut etcd = Etcd::single().await;
    let replicas = Replicas::start(&etcd, 2, &[]).await;
    let leader = replicas.leader().await;
    let mut any = Anywhere::new(replicas.uris());
    any.ensure("closed").await.expect("ensure");
    let held = any.held_open("held", Duration::from_secs(600)).await;

    etcd.kill_all();
    // Every replica stops deciding: even a CLOSED protector's Acquire, which writes
    // nothing, is UNAVAILABLE once the leader's lease may have passed.
    for i in 0..replicas.len() {
        let mut client = replicas.protectors(i).await;
        eventually(
            async || match client
                .acquire(v1::AcquireRequest {
                    name: "closed".into(),
                })
                .await
            {
                Err(status) if status.code() == tonic::Code::Unavailable => Ok(()),
                other => Err(format!("{other:?}")),
            },
            |last| format!("replica {i} kept deciding without etcd: {last}"),
        )
        .await;
    }
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        replicas.replica(leader).channel().await.expect("channel"),
    );
    eventually(
        async || {
            let status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|r| r.into_inner().status());
            match status {
                Ok(tonic_health::pb::health_check_response::ServingStatus::NotServing) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
        |last| format!("the leader's health is {last} without etcd"),
    )
    .await;

    etcd.restart_all().await;
    let answer = any
        .acquire("held")
        .await
        .expect("decisions resume when etcd returns");
    assert_eq!(answer.decision(), v1::Decision::Rejected);
    let now = any.get("held").await.expect("get").protector.expect("protector");
    assert_eq!(
        (now.status(), now.generation, now.open_until),
        (v1::Status::Open, held.generation, held.open_until),
        "the state must come back intact"
    );
    assert_eq!(
        any.acquire("closed").await.expect("acquire").decision(),
        v1::Decision::Admitted
    );
}
