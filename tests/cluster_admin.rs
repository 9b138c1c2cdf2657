//! `--admin-listen` in a cluster: each replica publishes its admin listener's address
//! with its registration in etcd, GetCluster shows it, and a follower forwards
//! AdminService calls to the leader's admin listener (the leader's data listener has no
//! AdminService), on real etcd and real replica processes.

use resilient_circuit_api::v1;
use support::process::Circuitd;
use support::*;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

async fn plain(addr: std::net::SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(DEADLINE)
        .timeout(DEADLINE)
        .connect()
        .await
        .expect("connect")
}

fn admin_addr(replica: &Circuitd) -> std::net::SocketAddr {
    replica
        .admin_addr
        .expect("the admin listener's address on stdout")
}

/// Starts `n` replicas on `etcd` under a fresh prefix (named after `label`), on
/// 127.0.0.1 with `extra` flags, each probed only by its `listening on` line (a replica
/// with an admin listener or TLS answers no plaintext GetCluster on its data listener).
pub(crate) async fn start_replicas(etcd: &Etcd, label: &str, n: usize, extra: &[&str]) -> Vec<Circuitd> {
    let prefix = unique_prefix(label);
    let urls = etcd.urls_arg();
    let mut args = vec![
        "--etcd",
        &urls,
        "--etcd-prefix",
        &prefix,
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let mut replicas = Vec::new();
    for _ in 0..n {
        replicas.push(Circuitd::launch_args_listening(&args).await.serving());
    }
    replicas
}

#[tokio::test]
async fn a_follower_forwards_admin_calls_to_the_leaders_admin_listener() {
    let etcd = Etcd::single().await;
    let replicas = start_replicas(&etcd, "admin-listen", 3, &["--admin-listen", "127.0.0.1:0"]).await;

    // Every replica's view lists the three, each with its admin address, and one leader.
    let mut views = Vec::new();
    for replica in &replicas {
        views.push(AdminClient::new(plain(admin_addr(replica)).await));
    }
    let leader = eventually(
        async || {
            let mut leaders = Vec::new();
            for view in &views {
                let answer = view
                    .clone()
                    .get_cluster(v1::GetClusterRequest {})
                    .await
                    .map_err(|s| format!("{s:?}"))?
                    .into_inner();
                for (i, replica) in replicas.iter().enumerate() {
                    let entry = answer
                        .replicas
                        .iter()
                        .find(|r| r.advertise == replica.addr.to_string())
                        .ok_or_else(|| format!("replica {i} is not listed yet: {answer:?}"))?;
                    if entry.admin_advertise != admin_addr(replica).to_string() {
                        return Err(format!("replica {i}'s admin address: {entry:?}"));
                    }
                }
                let leads = answer
                    .replicas
                    .iter()
                    .find(|r| r.role() == v1::ReplicaRole::Leader)
                    .ok_or_else(|| format!("no leader yet: {answer:?}"))?;
                leaders.push(leads.advertise.clone());
            }
            leaders.dedup();
            match leaders.as_slice() {
                [one] => Ok(replicas
                    .iter()
                    .position(|r| r.addr.to_string() == *one)
                    .expect("the leader is one of the replicas")),
                _ => Err(format!("the replicas see different leaders: {leaders:?}")),
            }
        },
        |why| why,
    )
    .await;
    let follower = (leader + 1) % replicas.len();

    let mut data = ProtectorClient::new(plain(replicas[leader].addr).await);
    ensure(
        &mut data,
        "forced",
        policy(std::time::Duration::from_secs(60), (1, 1), None),
    )
    .await;
    // The follower's data listener has no AdminService either.
    let refused = AdminClient::new(plain(replicas[follower].addr).await)
        .set_status(v1::SetStatusRequest {
            name: "forced".into(),
            status: v1::Status::Open as i32,
            open_for: None,
        })
        .await
        .expect_err("AdminService answered on a data listener");
    assert_eq!(refused.code(), Code::Unimplemented, "{refused:?}");

    // Force-open through the follower's admin listener: it takes effect on the leader.
    let through_follower = AdminClient::new(plain(admin_addr(&replicas[follower])).await);
    let opened = eventually(
        async || {
            through_follower
                .clone()
                .set_status(v1::SetStatusRequest {
                    name: "forced".into(),
                    status: v1::Status::Open as i32,
                    open_for: None,
                })
                .await
        },
        |status| format!("SetStatus through the follower's admin listener: {status:?}"),
    )
    .await
    .into_inner();
    assert_eq!(opened.protector.expect("protector").status(), v1::Status::Open);
    assert_eq!(get(&mut data, "forced").await.status(), v1::Status::Open);
    let acquired = acquire(&mut data, "forced").await;
    assert_eq!(acquired.decision(), v1::Decision::Rejected, "{acquired:?}");

    // The leader audited it, as a call the follower forwarded.
    let leader_log = replicas[leader].stderr();
    let audit: Vec<&str> = leader_log
        .lines()
        .filter(|l| l.contains("circuitd::audit") && l.contains("SetStatus"))
        .collect();
    assert_eq!(audit.len(), 1, "{leader_log}");
    assert!(audit[0].contains("via=Some(127.0.0.1:"), "{}", audit[0]);
    for replica in replicas {
        replica.terminate().await.assert_no_panic();
    }
}
