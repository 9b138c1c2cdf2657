//! Forwarding: a follower hands Acquire, Report, EnsureProtector, Session, ReportBatch
//! and the admin writes to its leader and returns the leader's answers unchanged; it
//! answers UNAVAILABLE when no leader is known or the leader cannot be reached, never
//! forwards a call another replica forwarded, and passes the caller's deadline and
//! metadata on.
//!
//! The leader is a normal in-process daemon ([`Daemon`]) or, where the test must see what
//! arrives, a [`Replica`] that records each call's metadata. A follower is a [`Replica`]
//! with an empty registry of its own, so whatever state a test reads back on the leader
//! got there through forwarding.

use std::time::Duration;

use circuitd::cluster::Role;
use circuitd::service::forward::FORWARDED;
use resilient_circuit_api::v1::{self, session_request, session_response};
use support::in_role::{Replica, bind, follower_of, leading};
use support::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

const HOUR: Duration = Duration::from_secs(3600);

fn hour_policy() -> v1::Policy {
    policy(HOUR, (5, 10), None)
}

/// Asserts that `client`'s replica holds no `name` (GetProtector answers NOT_FOUND).
async fn assert_missing(client: &mut ProtectorClient, name: &str) {
    let status = client
        .get_protector(v1::GetProtectorRequest { name: name.into() })
        .await
        .expect_err("no such protector");
    assert_eq!(status.code(), Code::NotFound, "{name}: {status:?}");
}

/// Opens a Session through `client`: the sender of its requests and its answers.
async fn open_session(
    client: &mut ProtectorClient,
) -> (
    mpsc::Sender<v1::SessionRequest>,
    tonic::Streaming<v1::SessionResponse>,
) {
    let (requests, rx) = mpsc::channel(16);
    let answers = client
        .session(ReceiverStream::new(rx))
        .await
        .expect("Session")
        .into_inner();
    (requests, answers)
}

async fn send(requests: &mpsc::Sender<v1::SessionRequest>, id: u64, request: session_request::Request) {
    requests
        .send(v1::SessionRequest {
            id,
            request: Some(request),
        })
        .await
        .expect("the session accepts requests");
}

fn acquire_req(name: &str) -> session_request::Request {
    session_request::Request::Acquire(v1::AcquireRequest { name: name.into() })
}

#[track_caller]
fn assert_unavailable(status: &Status, mentions: &str) {
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains(mentions),
        "the message should mention {mentions:?}: {status:?}"
    );
}

#[tokio::test]
async fn the_data_plane_through_a_follower_changes_the_leader() {
    let leader = Daemon::start().await;
    let follower = Replica::following("f1", leader.addr).await;
    let mut via = follower.protectors().await;

    let created = ensure(&mut via, "fwd.data", hour_policy()).await;
    assert_eq!(created.name, "fwd.data");
    let admitted = acquire(&mut via, "fwd.data").await;
    assert_eq!(admitted.decision, v1::Decision::Admitted as i32, "{admitted:?}");
    let reported = report(
        &mut via,
        "fwd.data",
        admitted.permit.expect("permit"),
        v1::Outcome::Success,
    )
    .await;
    assert!(reported.accepted, "{reported:?}");

    let on_leader = leader.inspect("fwd.data").await;
    let counters = on_leader.counters.expect("counters");
    assert_eq!((counters.admitted, counters.successes), (1, 1), "{counters:?}");
    // The follower's own registry saw none of it: reads are its own, writes the leader's.
    assert_missing(&mut via, "fwd.data").await;
}

#[tokio::test]
async fn admin_writes_through_a_follower_change_the_leader() {
    let leader = Daemon::start().await;
    ensure(&mut leader.protectors().await, "fwd.admin", hour_policy()).await;
    let follower = Replica::following("f1", leader.addr).await;
    let mut admin = follower.admin().await;

    set_status(&mut admin, "fwd.admin", v1::Status::Open, None).await;
    assert_eq!(leader.inspect("fwd.admin").await.status, v1::Status::Open as i32);

    set_override(&mut admin, "fwd.admin", v1::OverrideKind::Disabled, None).await;
    let kind = leader.inspect("fwd.admin").await.r#override.map(|o| o.kind);
    assert_eq!(kind, Some(v1::OverrideKind::Disabled as i32));

    let longer = policy(2 * HOUR, (5, 10), None);
    admin
        .update_policy(v1::UpdatePolicyRequest {
            name: "fwd.admin".into(),
            policy: Some(longer),
        })
        .await
        .expect("UpdatePolicy");
    let cooldown = leader.inspect("fwd.admin").await.policy.and_then(|p| p.cooldown);
    assert_eq!(std_duration(cooldown), 2 * HOUR);

    admin
        .delete_protector(v1::DeleteProtectorRequest {
            name: "fwd.admin".into(),
        })
        .await
        .expect("DeleteProtector");
    assert_missing(&mut leader.protectors().await, "fwd.admin").await;
}

#[tokio::test]
async fn a_session_through_a_follower_answers_in_order() {
    let leader = Daemon::start().await;
    ensure(&mut leader.protectors().await, "fwd.session", hour_policy()).await;
    let follower = Replica::following("f1", leader.addr).await;
    let (requests, mut answers) = open_session(&mut follower.protectors().await).await;
    let mut next = async || {
        tokio::time::timeout(DEADLINE, answers.message())
            .await
            .expect("an answer within the deadline")
    };

    for id in 1..=20u64 {
        send(&requests, id, acquire_req("fwd.session")).await;
        let answer = next().await.expect("the stream goes on").expect("an answer");
        assert_eq!(answer.id, id, "{answer:?}");
        let Some(session_response::Response::Acquire(a)) = answer.response else {
            panic!("expected an Acquire answer: {answer:?}");
        };
        let report = session_request::Request::Report(v1::ReportRequest {
            name: "fwd.session".into(),
            permit: a.permit,
            outcome: v1::Outcome::Success as i32,
            ..Default::default()
        });
        send(&requests, 1000 + id, report).await;
        let answer = next().await.expect("the stream goes on").expect("an answer");
        assert_eq!(answer.id, 1000 + id, "{answer:?}");
        assert!(
            matches!(answer.response, Some(session_response::Response::Report(ref r)) if r.accepted),
            "{answer:?}"
        );
    }
    // The client closes its side; the leader's stream ends, and so does the follower's.
    drop(requests);
    assert!(next().await.expect("a clean end").is_none());
    let counters = leader.inspect("fwd.session").await.counters.expect("counters");
    assert_eq!((counters.admitted, counters.successes), (20, 20), "{counters:?}");
}

#[tokio::test]
async fn report_batch_through_a_follower_reaches_the_leader() {
    let leader = Daemon::start().await;
    let generation = ensure(&mut leader.protectors().await, "fwd.batch", hour_policy())
        .await
        .generation;
    let follower = Replica::following("f1", leader.addr).await;
    let response = follower
        .protectors()
        .await
        .report_batch(v1::ReportBatchRequest {
            batches: vec![v1::OutcomeBatch {
                name: "fwd.batch".into(),
                generation,
                successes: 7,
                outcomes: vec![v1::Outcome::Failure as i32],
                ..Default::default()
            }],
        })
        .await
        .expect("ReportBatch")
        .into_inner();
    assert_eq!(response.results.len(), 1, "{response:?}");
    assert_eq!(response.results[0].accepted, 8, "{response:?}");
    let counters = leader.inspect("fwd.batch").await.counters.expect("counters");
    assert_eq!((counters.successes, counters.failures), (7, 1), "{counters:?}");
}

#[tokio::test]
async fn errors_from_the_leader_come_back_unchanged() {
    let leader = Daemon::start().await;
    let follower = Replica::following("f1", leader.addr).await;
    let (mut direct, mut via) = (leader.protectors().await, follower.protectors().await);

    let missing = || v1::AcquireRequest {
        name: "fwd.missing".into(),
    };
    let expected = direct.acquire(missing()).await.expect_err("no such protector");
    let got = via.acquire(missing()).await.expect_err("no such protector");
    assert_eq!(got.code(), Code::NotFound, "{got:?}");
    assert_eq!(
        (got.code(), got.message(), got.details()),
        (expected.code(), expected.message(), expected.details())
    );

    let bad_policy = || v1::EnsureProtectorRequest {
        name: "fwd.invalid".into(),
        policy: Some(policy(HOUR, (2, 1), None)),
    };
    let expected = direct
        .ensure_protector(bad_policy())
        .await
        .expect_err("bad policy");
    let got = via.ensure_protector(bad_policy()).await.expect_err("bad policy");
    assert_eq!(got.code(), Code::InvalidArgument, "{got:?}");
    assert_eq!(
        (got.code(), got.message(), got.details()),
        (expected.code(), expected.message(), expected.details())
    );
    let fields: Vec<String> = got
        .get_details_bad_request()
        .expect("a BadRequest")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert!(
        fields.len() == 1 && fields[0].starts_with("policy."),
        "names the field: {fields:?}"
    );
}

#[tokio::test]
async fn without_a_leader_a_replica_answers_unavailable_and_still_serves_reads() {
    for role in [Role::Follower { leader: None }, Role::Unavailable] {
        let replica = Replica::start("f1", role.clone()).await;
        let mut client = replica.protectors().await;
        let status = client
            .acquire(v1::AcquireRequest { name: "x".into() })
            .await
            .expect_err("nothing to forward to");
        assert_unavailable(&status, "no leader");
        let status = set_status_err(&mut replica.admin().await, "x").await;
        assert_unavailable(&status, "no leader");
        // Reads are its own.
        assert_missing(&mut client, "x").await;
    }
}

async fn set_status_err(admin: &mut AdminClient, name: &str) -> Status {
    admin
        .set_status(v1::SetStatusRequest {
            name: name.into(),
            status: v1::Status::Open as i32,
            open_for: None,
        })
        .await
        .expect_err("SetStatus should fail")
}

#[tokio::test]
async fn a_forwarded_call_is_not_forwarded_again() {
    // Two replicas with stale views, each taking the other for the leader.
    let (a_listener, b_listener) = (bind().await, bind().await);
    let (a_addr, b_addr) = (
        a_listener.local_addr().expect("addr"),
        b_listener.local_addr().expect("addr"),
    );
    let a = Replica::serve(a_listener, "replica-a", follower_of(b_addr));
    let b = Replica::serve(b_listener, "replica-b", follower_of(a_addr));

    let status = a
        .protectors()
        .await
        .acquire(v1::AcquireRequest { name: "x".into() })
        .await
        .expect_err("no one decides");
    assert_unavailable(&status, "leader changed; retry");
    let (to_a, to_b) = (a.calls(), b.calls());
    assert_eq!(to_a.len(), 1, "the client's call only: {to_a:?}");
    assert!(to_a[0].get(FORWARDED).is_none(), "{to_a:?}");
    assert_eq!(to_b.len(), 1, "forwarded once: {to_b:?}");
    assert_eq!(
        to_b[0].get(FORWARDED).and_then(|v| v.to_str().ok()),
        Some("replica-a")
    );
}

#[tokio::test]
async fn a_leader_that_does_not_listen_gives_unavailable_naming_it() {
    let gone = bind().await;
    let addr = gone.local_addr().expect("addr");
    drop(gone);
    let follower = Replica::following("f1", addr).await;
    let mut client = follower.protectors().await;
    let status = client
        .acquire(v1::AcquireRequest { name: "x".into() })
        .await
        .expect_err("the leader is gone");
    assert_unavailable(&status, &addr.to_string());
    let (_requests, rx) = mpsc::channel::<v1::SessionRequest>(1);
    let status = client
        .session(ReceiverStream::new(rx))
        .await
        .expect_err("the leader is gone");
    assert_unavailable(&status, &addr.to_string());
}

#[tokio::test]
async fn the_deadline_and_metadata_travel_to_the_leader() {
    let leader = Replica::start("the-leader", leading()).await;
    ensure(&mut leader.protectors().await, "fwd.meta", hour_policy()).await;
    let follower = Replica::following("f1", leader.addr).await;

    let mut request = Request::new(v1::AcquireRequest {
        name: "fwd.meta".into(),
    });
    request.set_timeout(Duration::from_secs(30));
    request
        .metadata_mut()
        .insert("authorization", "Bearer token".parse().expect("value"));
    let admitted = follower
        .protectors()
        .await
        .acquire(request)
        .await
        .expect("Acquire")
        .into_inner();
    assert_eq!(admitted.decision, v1::Decision::Admitted as i32, "{admitted:?}");

    let calls = leader.calls();
    let seen = calls.last().expect("the forwarded call");
    let timeout = seen
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .map(grpc_timeout)
        .expect("the leader sees grpc-timeout");
    assert!(
        timeout > Duration::ZERO && timeout <= Duration::from_secs(30),
        "{timeout:?}"
    );
    assert_eq!(
        seen.get("authorization").and_then(|v| v.to_str().ok()),
        Some("Bearer token")
    );
    assert_eq!(seen.get(FORWARDED).and_then(|v| v.to_str().ok()), Some("f1"));
}

/// A `grpc-timeout` value: an integer and a unit.
fn grpc_timeout(value: &str) -> Duration {
    let (amount, unit) = value.split_at(value.len() - 1);
    let amount: u64 = amount.parse().expect("an integer");
    match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => panic!("not a grpc-timeout: {value:?}"),
    }
}

#[tokio::test]
async fn a_change_of_role_reroutes_the_next_call() {
    let first = Daemon::start().await;
    let second = Daemon::start().await;
    let replica = Replica::start("f1", Role::Follower { leader: None }).await;
    let mut client = replica.protectors().await;
    let name = "fwd.role";

    // A leader appears: calls go to it.
    replica.cluster.set_role(follower_of(first.addr));
    ensure(&mut client, name, hour_policy()).await;
    first.inspect(name).await;

    // Another leader: the cached channel is replaced.
    replica.cluster.set_role(follower_of(second.addr));
    ensure(&mut client, name, hour_policy()).await;
    second.inspect(name).await;

    // This replica leads: it decides from its own (empty) registry.
    replica.cluster.set_role(leading());
    let status = client
        .acquire(v1::AcquireRequest { name: name.into() })
        .await
        .expect_err("its own registry does not hold it");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

#[tokio::test]
async fn a_session_ends_unavailable_when_the_leader_goes() {
    let mut leader = Daemon::with_shutdown_grace(Duration::from_secs(1)).await;
    ensure(&mut leader.protectors().await, "fwd.gone", hour_policy()).await;
    let follower = Replica::following("f1", leader.addr).await;
    let (requests, mut answers) = open_session(&mut follower.protectors().await).await;
    send(&requests, 1, acquire_req("fwd.gone")).await;
    let first = tokio::time::timeout(DEADLINE, answers.message())
        .await
        .expect("in time");
    assert_eq!(first.expect("an answer").expect("an answer").id, 1);

    leader.stop_in_place().await;
    let end = tokio::time::timeout(DEADLINE, answers.message())
        .await
        .expect("in time");
    let status = end.expect_err("the stream ends with an error");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

#[tokio::test]
async fn the_leader_audits_a_forwarded_change_with_its_client_and_the_follower() {
    let dir = TempDir::new("forwarding-audit");
    let leader = support::process::Circuitd::start(dir.path(), &[]).await;
    ensure(&mut leader.protectors().await, "fwd.audited", hour_policy()).await;
    let follower = Replica::following("f1", leader.addr).await;
    set_status(&mut follower.admin().await, "fwd.audited", v1::Status::Open, None).await;
    set_status(&mut leader.admin().await, "fwd.audited", v1::Status::Closed, None).await;
    let exit = leader.terminate().await;
    let audit = exit.logged("circuitd::audit");
    assert_eq!(audit.len(), 2, "{audit:#?}");
    // Through the follower: the leader here is a daemon alone, which believes no
    // replica's forwarding marks (no replica forwards to a daemon alone), so it audits
    // the follower as the peer. The client and the follower it came through, on a real
    // cluster: forwarded_trust.rs.
    assert!(audit[0].contains("peer=Some(127.0.0.1:"), "{}", audit[0]);
    assert!(audit[0].contains("via=None"), "{}", audit[0]);
    // Directly: the client alone.
    assert!(audit[1].contains("peer=Some(127.0.0.1:"), "{}", audit[1]);
    assert!(audit[1].contains("via=None"), "{}", audit[1]);
}

#[tokio::test]
async fn a_session_on_a_leader_that_steps_down_ends_unavailable() {
    let replica = Replica::start("was-leader", leading()).await;
    let mut client = replica.protectors().await;
    ensure(&mut client, "fwd.deposed", hour_policy()).await;
    let (requests, mut answers) = open_session(&mut client).await;
    send(&requests, 1, acquire_req("fwd.deposed")).await;
    let first = tokio::time::timeout(DEADLINE, answers.message())
        .await
        .expect("in time");
    assert_eq!(first.expect("an answer").expect("an answer").id, 1);

    replica.cluster.set_role(Role::Follower { leader: None });
    send(&requests, 2, acquire_req("fwd.deposed")).await;
    let end = tokio::time::timeout(DEADLINE, answers.message())
        .await
        .expect("in time");
    assert_unavailable(&end.expect_err("the session ends"), "leader changed");
}
