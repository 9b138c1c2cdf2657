//! One helper per request the end-to-end tests make over and over, on the raw gRPC
//! clients, each failing the test (with the RPC's name) when the daemon answers with an
//! error; plus the wire values those requests carry (policies, permits, durations,
//! instants).
//!
//! A test that checks an error calls the client itself; these are for the steps that
//! must succeed.

use std::time::{Duration, SystemTime};

use resilient_circuit_api::{convert, v1};

use crate::fixtures::{AdminClient, ProtectorClient};

/// A policy message: cooldown, failure limit n/d, optional success limit.
pub fn policy(cooldown: Duration, failure: (u32, u32), success: Option<(u32, u32)>) -> v1::Policy {
    v1::Policy {
        cooldown: Some(duration(cooldown)),
        failure_limit: Some(v1::Fraction {
            numerator: failure.0,
            denominator: failure.1,
        }),
        success_limit: success.map(|(numerator, denominator)| v1::Fraction {
            numerator,
            denominator,
        }),
        ..Default::default()
    }
}

/// A protobuf duration.
pub fn duration(d: Duration) -> prost_types::Duration {
    convert::duration(d)
}

/// A wire duration the daemon sent, as a std one; fails the test if it is absent or
/// negative.
#[track_caller]
pub fn std_duration(d: Option<prost_types::Duration>) -> Duration {
    convert::std_duration(&d.expect("a duration")).expect("a valid duration")
}

/// A wire instant the daemon sent, as time since the Unix epoch; fails the test if it is
/// absent or invalid.
#[track_caller]
pub fn instant(ts: Option<prost_types::Timestamp>) -> Duration {
    convert::time(&ts.expect("a timestamp")).expect("a valid timestamp")
}

/// `at + d` as a wire timestamp.
#[track_caller]
pub fn plus(at: &prost_types::Timestamp, d: Duration) -> prost_types::Timestamp {
    convert::timestamp(convert::time(at).expect("valid timestamp") + d)
}

/// The wall clock as the daemon's instants are written: since the Unix epoch.
pub fn wall_now() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after the epoch")
}

/// A permit of `generation` with `id` (0: a CLOSED permit, which is not tracked), and no
/// expiry.
pub fn permit(generation: u64, id: u64) -> v1::Permit {
    v1::Permit {
        generation,
        id,
        expires_at: None,
    }
}

/// Asserts from, to, reason and generation of `t`.
#[track_caller]
pub fn assert_transition(
    t: &v1::Transition,
    from: v1::Status,
    to: v1::Status,
    reason: v1::TransitionReason,
    generation: u64,
) {
    assert_eq!(
        (t.from, t.to, t.reason, t.generation),
        (from as i32, to as i32, reason as i32, generation),
        "{t:?}"
    );
}

/// Creates `name` with `policy`, asserting it was created.
#[track_caller]
pub fn ensure<'a>(
    client: &'a mut ProtectorClient,
    name: &'a str,
    policy: v1::Policy,
) -> impl Future<Output = v1::Protector> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        let resp = client
            .ensure_protector(v1::EnsureProtectorRequest {
                name: name.into(),
                policy: Some(policy),
            })
            .await
            .unwrap_or_else(|status| panic!("{caller}: EnsureProtector {name}: {status:?}"))
            .into_inner();
        assert!(resp.created, "{caller}: {name} already existed");
        resp.protector.expect("protector")
    }
}

/// Acquires on `name`, expecting OK (admitted or rejected).
pub async fn acquire(client: &mut ProtectorClient, name: &str) -> v1::AcquireResponse {
    client
        .acquire(v1::AcquireRequest { name: name.into() })
        .await
        .expect("Acquire")
        .into_inner()
}

/// Reports `outcome` for `permit` on `name`, expecting OK (accepted or stale).
pub async fn report(
    client: &mut ProtectorClient,
    name: &str,
    permit: v1::Permit,
    outcome: v1::Outcome,
) -> v1::ReportResponse {
    client
        .report(v1::ReportRequest {
            duration: None,
            name: name.into(),
            permit: Some(permit),
            outcome: outcome as i32,
        })
        .await
        .expect("Report")
        .into_inner()
}

/// Acquires and reports `outcome` in one go; fails the test if the acquire was rejected.
#[track_caller]
pub fn call<'a>(
    client: &'a mut ProtectorClient,
    name: &'a str,
    outcome: v1::Outcome,
) -> impl Future<Output = v1::ReportResponse> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        let a = acquire(client, name).await;
        assert_eq!(
            a.decision,
            v1::Decision::Admitted as i32,
            "{caller}: acquire on {name} rejected: {a:?}"
        );
        report(client, name, a.permit.expect("permit"), outcome).await
    }
}

/// GetProtector's whole answer for `name`: the protector and the revision it is at.
pub async fn get_protector(client: &mut ProtectorClient, name: &str) -> v1::GetProtectorResponse {
    client
        .get_protector(v1::GetProtectorRequest { name: name.into() })
        .await
        .expect("GetProtector")
        .into_inner()
}

/// The daemon's view of `name`.
pub async fn get(client: &mut ProtectorClient, name: &str) -> v1::Protector {
    get_protector(client, name).await.protector.expect("protector")
}

/// The daemon's view of `name` and the revision it is at.
pub async fn get_at(client: &mut ProtectorClient, name: &str) -> (v1::Protector, u64) {
    let r = get_protector(client, name).await;
    (r.protector.expect("protector"), r.revision)
}

/// The counters of `name`.
pub async fn counters(client: &mut ProtectorClient, name: &str) -> v1::Counters {
    get(client, name).await.counters.expect("counters")
}

/// Every protector the daemon holds, in name order, and the revision of the answer.
pub async fn list_all(client: &mut ProtectorClient) -> (Vec<v1::Protector>, u64) {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_protectors(v1::ListProtectorsRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await
            .expect("ListProtectors")
            .into_inner();
        all.extend(page.protectors);
        if page.next_page_token.is_empty() {
            return (all, page.revision);
        }
        page_token = page.next_page_token;
    }
}

/// An operator's SetStatus: `name` to `status`, OPEN for `open_for` (the policy's
/// cooldown when `None`).
pub async fn set_status(
    admin: &mut AdminClient,
    name: &str,
    status: v1::Status,
    open_for: Option<Duration>,
) -> v1::SetStatusResponse {
    admin
        .set_status(v1::SetStatusRequest {
            name: name.into(),
            status: status as i32,
            open_for: open_for.map(duration),
        })
        .await
        .expect("SetStatus")
        .into_inner()
}

/// An operator's SetOverride: `kind` on `name`, until `expires_after` (for good when
/// `None`).
pub async fn set_override(
    admin: &mut AdminClient,
    name: &str,
    kind: v1::OverrideKind,
    expires_after: Option<Duration>,
) -> v1::SetOverrideResponse {
    admin
        .set_override(v1::SetOverrideRequest {
            name: name.into(),
            kind: kind as i32,
            expires_after: expires_after.map(duration),
        })
        .await
        .expect("SetOverride")
        .into_inner()
}

/// An operator's UpdatePolicy: `policy` for `name`.
pub async fn update_policy(
    admin: &mut AdminClient,
    name: &str,
    policy: v1::Policy,
) -> v1::UpdatePolicyResponse {
    admin
        .update_policy(v1::UpdatePolicyRequest {
            name: name.into(),
            policy: Some(policy),
        })
        .await
        .expect("UpdatePolicy")
        .into_inner()
}

/// An operator's DeleteProtector of `name`.
pub async fn delete(admin: &mut AdminClient, name: &str) -> v1::DeleteProtectorResponse {
    admin
        .delete_protector(v1::DeleteProtectorRequest { name: name.into() })
        .await
        .expect("DeleteProtector")
        .into_inner()
}
