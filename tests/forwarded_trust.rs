//! Who may name the client behind a call (`x-circuitd-forwarded-for`, which the leader's
//! audit log records): only another replica. A client that sets the header itself is
//! audited under its real address; a call a follower really forwards is audited under
//! the client behind it. Two rules, both on real etcd and real replicas:
//! - by address (no peer CA): a replica is a connection from a member's host, so the
//!   client here connects from 127.0.0.2 while the replicas live on 127.0.0.1;
//! - by certificate (`--tls-peer-ca` with mTLS): the client connects from the replicas'
//!   own address, and only its certificate (from another CA) tells it apart.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use resilient_circuit_api::v1;
use support::*;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use crate::cluster_admin::start_replicas;
use crate::tls::{Ca, connect};

/// What a client that wants to pass for a replica sends.
const SPOOFED_FOR: &str = "203.0.113.7:4242";

/// A plaintext connection to `addr` from 127.0.0.2, an address no replica advertises.
async fn from_elsewhere(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .local_address(Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))))
        .connect_timeout(DEADLINE)
        .timeout(DEADLINE)
        .connect()
        .await
        .expect("connect from 127.0.0.2")
}

fn set(name: &str, status: v1::Status) -> v1::SetStatusRequest {
    v1::SetStatusRequest {
        name: name.into(),
        status: status as i32,
        open_for: None,
    }
}

/// SetStatus marked as if a replica had forwarded it for [`SPOOFED_FOR`].
async fn spoofed(channel: &Channel, request: v1::SetStatusRequest) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(request);
    let metadata = request.metadata_mut();
    metadata.insert("x-circuitd-forwarded", "0123456789abcdef".parse().expect("value"));
    metadata.insert("x-circuitd-forwarded-for", SPOOFED_FOR.parse().expect("value"));
    AdminClient::new(channel.clone())
        .set_status(request)
        .await
        .map(drop)
}

/// SetStatus through a follower, retried while it has not found its leader yet.
async fn through(channel: &Channel, request: v1::SetStatusRequest) {
    eventually(
        async || match AdminClient::new(channel.clone())
            .set_status(request.clone())
            .await
        {
            Err(status) if status.code() == Code::Unavailable => Err(status),
            answered => Ok(answered.expect("SetStatus through the follower")),
        },
        |status| format!("the follower never forwarded: {status:?}"),
    )
    .await;
}

/// The leader's audit lines for the SetStatus to OPEN and to CLOSED, once its stderr
/// (read from a pipe) holds both.
async fn audited(stderr: impl Fn() -> String) -> (String, String) {
    let line = |log: &str, status: &str| {
        let lines: Vec<String> = log
            .lines()
            .filter(|l| l.contains("circuitd::audit") && l.contains("SetStatus") && l.contains(status))
            .map(str::to_owned)
            .collect();
        match lines.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        }
    };
    eventually(
        async || {
            let log = stderr();
            match (line(&log, "(Open,"), line(&log, "(Closed,")) {
                (Some(open), Some(closed)) => Ok((open, closed)),
                _ => Err(log),
            }
        },
        |log| format!("one audit line each for OPEN and CLOSED:\n{log}"),
    )
    .await
}

#[tokio::test]
async fn by_address_a_client_cannot_name_another_but_a_follower_names_its_client() {
    let etcd = Etcd::single().await;
    let mut replicas = Replicas::start(&etcd, 2, &[]).await;
    let leader = replicas.leader().await;
    let follower = 1 - leader;
    let mut data = replicas.protectors(leader).await;
    ensure(
        &mut data,
        "marked",
        policy(std::time::Duration::from_secs(60), (1, 1), None),
    )
    .await;

    // The client marks its own call to the leader: the leader audits the real peer.
    let to_leader = from_elsewhere(replicas.addr(leader)).await;
    spoofed(&to_leader, set("marked", v1::Status::Open))
        .await
        .expect("SetStatus on the leader");
    // A call the follower forwards: its client, from 127.0.0.2, via the follower. The
    // client's own marks are not passed on as if they were the follower's.
    let to_follower = from_elsewhere(replicas.addr(follower)).await;
    through(&to_follower, set("marked", v1::Status::Closed)).await;
    spoofed(&to_follower, set("marked", v1::Status::HalfOpen))
        .await
        .expect_err("a follower does not forward a call marked as forwarded (the loop guard)");

    let (own, forwarded) = audited(|| replicas.stderr(leader)).await;
    assert!(!own.contains(SPOOFED_FOR), "{own}");
    assert!(own.contains("peer=Some(127.0.0.2:"), "{own}");
    assert!(own.contains("via=None"), "{own}");
    assert!(forwarded.contains("peer=Some(127.0.0.2:"), "{forwarded}");
    assert!(forwarded.contains("via=Some(127.0.0.1:"), "{forwarded}");
    replicas.terminate(follower).await;
    replicas.terminate(leader).await;
}

#[tokio::test]
async fn by_certificate_only_a_replica_certificate_names_the_client() {
    let etcd = Etcd::single().await;
    let dir = TempDir::new("trust-by-certificate");
    let replica_ca = Ca::new("replica CA");
    let client_ca = Ca::new("client CA");
    let replica = replica_ca.leaf("replica");
    let file = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write a TLS file");
        path.display().to_string()
    };
    let cert = file("replica.pem", replica.cert.clone());
    let key = file("replica-key.pem", replica.key.clone());
    // Clients and replicas alike may connect; only replicas verify against the peer CA.
    let clients = file("clients.pem", format!("{}{}", client_ca.pem(), replica_ca.pem()));
    let peers = file("peers.pem", replica_ca.pem());
    let flags = [
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &clients,
        "--tls-peer-ca",
        &peers,
    ];
    let replicas = start_replicas(&etcd, "trust-cert", 2, &flags).await;
    let app = client_ca.leaf("app");
    let mut channels = Vec::new();
    for replica in &replicas {
        channels.push(
            connect(replica.addr, &replica_ca, Some(&app))
                .await
                .expect("connect"),
        );
    }
    let leader = eventually(
        async || {
            let answer = AdminClient::new(channels[0].clone())
                .get_cluster(v1::GetClusterRequest {})
                .await
                .map_err(|s| format!("{s:?}"))?
                .into_inner();
            let leads = answer
                .replicas
                .iter()
                .find(|r| r.role() == v1::ReplicaRole::Leader && answer.replicas.len() == 2)
                .ok_or_else(|| format!("{answer:?}"))?;
            Ok::<_, String>(
                replicas
                    .iter()
                    .position(|r| r.addr.to_string() == leads.advertise)
                    .expect("a replica leads"),
            )
        },
        |why| format!("no leader among two replicas: {why}"),
    )
    .await;
    let follower = 1 - leader;
    let mut data = ProtectorClient::new(channels[leader].clone());
    ensure(
        &mut data,
        "marked",
        policy(std::time::Duration::from_secs(60), (1, 1), None),
    )
    .await;

    // From the replicas' own address, with a client's certificate: not a replica.
    spoofed(&channels[leader], set("marked", v1::Status::Open))
        .await
        .expect("SetStatus on the leader");
    through(&channels[follower], set("marked", v1::Status::Closed)).await;

    let (own, forwarded) = audited(|| replicas[leader].stderr()).await;
    assert!(!own.contains(SPOOFED_FOR), "{own}");
    assert!(own.contains("via=None"), "{own}");
    assert!(forwarded.contains("peer=Some(127.0.0.1:"), "{forwarded}");
    assert!(forwarded.contains("via=Some(127.0.0.1:"), "{forwarded}");
    for replica in replicas {
        replica.terminate().await.assert_no_panic();
    }
}
