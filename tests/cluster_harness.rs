//! The cluster harness against real replicas on a real three-member etcd: the replicas
//! agree on one leader, and after the leader is killed (or frozen) another takes over
//! while the old one, restarted (or thawed), rejoins as a follower. The scenario tests
//! (failover under load, fencing, watchers) build on exactly these moves.

use resilient_circuit_api::v1::ReplicaRole;
use support::*;

#[tokio::test]
async fn replicas_agree_on_a_leader_and_the_harness_moves_it() {
    let etcd = Etcd::three().await;
    let mut replicas = Replicas::start(&etcd, 3, &[]).await;
    let first = replicas.leader().await;

    // Every replica answers GetCluster for the whole cluster, the leader first. A leader
    // can be elected before it has read the other members' records from etcd: wait for
    // the three, as a client would see them once the membership watch delivers.
    let cluster = eventually(
        async || {
            let cluster = replicas.cluster(first).await.expect("GetCluster");
            if cluster.replicas.len() == 3 {
                Ok(cluster)
            } else {
                Err(cluster)
            }
        },
        |cluster| format!("the leader never listed three replicas: {cluster:?}"),
    )
    .await;
    assert_eq!(cluster.prefix, replicas.prefix());
    assert_eq!(cluster.replicas[0].role(), ReplicaRole::Leader);
    assert_eq!(replicas.index_of(&cluster.replicas[0].advertise), Some(first));
    assert!(
        !etcd.keys(replicas.prefix()).await.is_empty(),
        "the cluster keeps nothing under its prefix"
    );

    // Killed: another leads; restarted on its address: it follows.
    replicas.kill(first).await;
    let second = replicas.new_leader(first).await;
    replicas.restart(first).await;
    replicas.wait_for_role(first, ReplicaRole::Follower).await;
    assert_eq!(replicas.leader().await, second);

    // Frozen past its lease: another leads; thawed: it follows.
    replicas.freeze(second);
    let third = replicas.new_leader(second).await;
    replicas.thaw(second);
    replicas.wait_for_role(second, ReplicaRole::Follower).await;
    assert_eq!(replicas.leader().await, third);
    replicas.wait_for_log(third, "role: leader").await;
}
