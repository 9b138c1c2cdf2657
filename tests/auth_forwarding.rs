//! `--tokens` in replicated mode: a follower checks a call against its own tokens file
//! before it forwards it, and forwards the caller's `authorization`, so the leader checks
//! the same token against its file and audits the caller's identity.
//!
//! The two replicas get different files (the leader is started on one, the file is then
//! rewritten and the follower started on it), so a token known to one replica alone
//! shows which replica refused.

use resilient_circuit_api::v1;
use support::tokens::WithToken;
use support::*;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

async fn channel(replicas: &Replicas, i: usize) -> Channel {
    replicas.replica(i).channel().await.expect("connect")
}

fn admin(
    channel: &Channel,
    token: &str,
) -> v1::admin_service_client::AdminServiceClient<InterceptedService<Channel, WithToken>> {
    v1::admin_service_client::AdminServiceClient::with_interceptor(channel.clone(), with_token(token))
}

fn set_open(name: &str) -> v1::SetStatusRequest {
    v1::SetStatusRequest {
        name: name.into(),
        status: v1::Status::Open as i32,
        open_for: None,
    }
}

#[tokio::test]
async fn a_follower_checks_before_forwarding_and_the_leader_checks_the_same_token() {
    let dir = TempDir::new("auth-forwarding");
    let tokens = dir.path().join("tokens.toml");
    let tokens_arg = tokens.to_str().expect("UTF-8 path").to_owned();
    std::fs::write(
        &tokens,
        tokens_file(&[
            ("ops", "shared-token", "admin"),
            ("lead-bot", "leader-only", "admin"),
        ]),
    )
    .expect("write the leader's file");
    let etcd = Etcd::single().await;
    let mut replicas = Replicas::start(&etcd, 1, &["--tokens", &tokens_arg]).await;
    replicas.wait_for_log(0, "role: leader").await;
    std::fs::write(
        &tokens,
        tokens_file(&[
            ("ops", "shared-token", "admin"),
            ("follow-bot", "follower-only", "admin"),
            ("viewer", "read-token", "read"),
        ]),
    )
    .expect("write the follower's file");
    let follower = replicas.add().await;
    let via_follower = channel(&replicas, follower).await;

    // The shared token goes through the follower to the leader, which audits its name.
    // UNAVAILABLE until the follower has found its leader.
    let mut app = ProtectorClient::with_interceptor(via_follower.clone(), with_token("shared-token"));
    let give_up = tokio::time::Instant::now() + DEADLINE;
    loop {
        let ensured = app
            .ensure_protector(v1::EnsureProtectorRequest {
                name: "forwarded".into(),
                policy: Some(v1::Policy::default()),
            })
            .await;
        match ensured {
            Ok(_) => break,
            Err(status) if status.code() == Code::Unavailable && tokio::time::Instant::now() < give_up => {
                tokio::task::yield_now().await;
            }
            Err(status) => panic!("the shared data token is not forwarded: {status:?}"),
        }
    }
    admin(&via_follower, "shared-token")
        .set_status(set_open("forwarded"))
        .await
        .expect("the shared admin token is accepted by both");

    // Known to the leader alone: the follower refuses it before forwarding.
    let refused = admin(&via_follower, "leader-only")
        .set_status(set_open("forwarded"))
        .await
        .expect_err("the follower does not know it");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    // The follower's role check comes first too.
    let refused = admin(&via_follower, "read-token")
        .set_status(set_open("forwarded"))
        .await
        .expect_err("read may not set a status");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("needs the admin role"), "{refused:?}");

    // Known to the follower alone: served where the follower answers itself, refused by
    // the leader when forwarded (the leader checks the token the caller sent).
    admin(&via_follower, "follower-only")
        .get_cluster(v1::GetClusterRequest {})
        .await
        .expect("GetCluster is the follower's own");
    let refused = admin(&via_follower, "follower-only")
        .set_status(set_open("forwarded"))
        .await
        .expect_err("the leader does not know it");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert_eq!(refused.message(), "unknown token", "{refused:?}");

    let leader_log = replicas.stderr(0);
    let audit: Vec<&str> = leader_log
        .lines()
        .filter(|l| l.contains("circuitd::audit") && l.contains("admin change"))
        .collect();
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert!(audit[0].contains("identity=\"ops\""), "{}", audit[0]);
    assert!(audit[0].contains("via=Some(127.0.0.1:"), "{}", audit[0]);
    replicas.terminate(follower).await;
    replicas.terminate(0).await;
}
