//! Bad requests get the documented code: INVALID_ARGUMENT naming the field in a
//! google.rpc.BadRequest, NOT_FOUND naming the protector, RESOURCE_EXHAUSTED naming the
//! configured limit; and none of them changes anything or stops the daemon.

use std::time::Duration;

use circuitd::Config;
use circuitd::config::Limits;
use resilient_circuit_api::v1;
use support::*;
use tonic::{Code, Status};
use tonic_types::StatusExt;

const OPEN: i32 = v1::Status::Open as i32;
const FORCED_OPEN: i32 = v1::OverrideKind::ForcedOpen as i32;
const THIRTY_DAYS: Duration = Duration::from_secs(30 * 24 * 3600);

/// Every RPC that takes a protector's name.
#[derive(Debug, Clone, Copy)]
enum Rpc {
    Ensure,
    Acquire,
    Report,
    Get,
    SetStatus,
    SetOverride,
    UpdatePolicy,
    Delete,
}

const RPCS: [Rpc; 8] = [
    Rpc::Ensure,
    Rpc::Acquire,
    Rpc::Report,
    Rpc::Get,
    Rpc::SetStatus,
    Rpc::SetOverride,
    Rpc::UpdatePolicy,
    Rpc::Delete,
];

/// Calls `rpc` on `name` with every other field valid.
async fn by_name(rpc: Rpc, name: &str, p: &mut ProtectorClient, a: &mut AdminClient) -> Result<(), Status> {
    let name = name.to_owned();
    match rpc {
        Rpc::Ensure => p
            .ensure_protector(v1::EnsureProtectorRequest { name, policy: None })
            .await
            .map(drop),
        Rpc::Acquire => p.acquire(v1::AcquireRequest { name }).await.map(drop),
        Rpc::Report => p.report(report_req(&name, Some(permit(1)), 1)).await.map(drop),
        Rpc::Get => p.get_protector(v1::GetProtectorRequest { name }).await.map(drop),
        Rpc::SetStatus => a.set_status(set_status_req(&name, OPEN, None)).await.map(drop),
        Rpc::SetOverride => a
            .set_override(set_override_req(&name, FORCED_OPEN, None))
            .await
            .map(drop),
        Rpc::UpdatePolicy => a
            .update_policy(v1::UpdatePolicyRequest { name, policy: None })
            .await
            .map(drop),
        Rpc::Delete => a
            .delete_protector(v1::DeleteProtectorRequest { name })
            .await
            .map(drop),
    }
}

fn permit(generation: u64) -> v1::Permit {
    v1::Permit {
        generation,
        id: 0,
        expires_at: None,
    }
}

fn report_req(name: &str, permit: Option<v1::Permit>, outcome: i32) -> v1::ReportRequest {
    v1::ReportRequest {
        name: name.into(),
        permit,
        outcome,
        ..Default::default()
    }
}

fn set_status_req(name: &str, status: i32, open_for: Option<prost_types::Duration>) -> v1::SetStatusRequest {
    v1::SetStatusRequest {
        name: name.into(),
        status,
        open_for,
    }
}

fn set_override_req(
    name: &str,
    kind: i32,
    expires_after: Option<prost_types::Duration>,
) -> v1::SetOverrideRequest {
    v1::SetOverrideRequest {
        name: name.into(),
        kind,
        expires_after,
    }
}

fn secs(seconds: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos: 0 })
}

fn dur(d: Duration) -> Option<prost_types::Duration> {
    Some(duration(d))
}

/// The field an INVALID_ARGUMENT names in its BadRequest, checked against the message.
#[track_caller]
pub(crate) fn invalid_field(result: Result<(), Status>, case: &str) -> String {
    let status = result.expect_err(case);
    assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
    let bad = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("{case}: no BadRequest in {status:?}"));
    assert_eq!(bad.field_violations.len(), 1, "{case}: {bad:?}");
    let field = bad.field_violations[0].field.clone();
    assert!(!bad.field_violations[0].description.is_empty(), "{case}");
    assert!(
        status.message().starts_with(&format!("invalid {field}: ")),
        "{case}: {}",
        status.message()
    );
    field
}

/// The limit a RESOURCE_EXHAUSTED names in its QuotaFailure.
#[track_caller]
fn exhausted_limit(status: Status) -> String {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let quota = status.get_details_quota_failure().expect("QuotaFailure details");
    assert_eq!(quota.violations.len(), 1, "{quota:?}");
    assert!(status.message().contains(&quota.violations[0].subject));
    quota.violations[0].subject.clone()
}

#[tokio::test]
async fn bad_names_are_refused_by_every_rpc_that_takes_one() {
    let daemon = Daemon::start().await;
    let (mut p, mut a) = (daemon.protectors().await, daemon.admin().await);
    let long = "a".repeat(300);
    let just_too_long = "a".repeat(257);
    let bad = [
        "",
        long.as_str(),
        just_too_long.as_str(),
        "db one",
        "db\tone",
        "db\u{a0}one",
        "line\n",
        "db\u{7}",
        "db\u{0}",
        "\u{7f}",
    ];
    for rpc in RPCS {
        for name in bad {
            let case = format!("{rpc:?} {name:?}");
            assert_eq!(
                invalid_field(by_name(rpc, name, &mut p, &mut a).await, &case),
                "name"
            );
        }
    }
    let longest = "a".repeat(256);
    let list = p
        .list_protectors(v1::ListProtectorsRequest::default())
        .await
        .unwrap();
    assert!(
        list.into_inner().protectors.is_empty(),
        "a refused Ensure created something"
    );
    ensure(&mut p, &longest, v1::Policy::default()).await;
}

#[tokio::test]
async fn bad_policies_name_the_policy_field() {
    let daemon = Daemon::start().await;
    let (mut p, mut a) = (daemon.protectors().await, daemon.admin().await);
    let existing = ensure(&mut p, "exists", v1::Policy::default()).await;
    let fraction = |numerator, denominator| {
        Some(v1::Fraction {
            numerator,
            denominator,
        })
    };
    let mut cases: Vec<(String, v1::Policy, &str)> = Vec::new();
    for (n, d) in [(0, 5), (6, 5), (0, 0), (5, 10_001)] {
        let failure = v1::Policy {
            failure_limit: fraction(n, d),
            ..Default::default()
        };
        cases.push((format!("failure_limit {n}/{d}"), failure, "policy.failure_limit"));
        let success = v1::Policy {
            success_limit: fraction(n, d),
            ..Default::default()
        };
        cases.push((format!("success_limit {n}/{d}"), success, "policy.success_limit"));
    }
    let timed = [
        ("cooldown -1 s", secs(-1), None, "policy.cooldown"),
        (
            "cooldown 30 days + 1 s",
            dur(THIRTY_DAYS + Duration::from_secs(1)),
            None,
            "policy.cooldown",
        ),
        ("permit_ttl 0", None, secs(0), "policy.permit_ttl"),
        ("permit_ttl 1 h + 1 s", None, secs(3601), "policy.permit_ttl"),
        ("permit_ttl -1 s", None, secs(-1), "policy.permit_ttl"),
    ];
    for (case, cooldown, permit_ttl, field) in timed {
        let policy = v1::Policy {
            cooldown,
            permit_ttl,
            ..Default::default()
        };
        cases.push((case.into(), policy, field));
    }
    let too_many_trials = v1::Policy {
        trial_permits: Some(10_001),
        ..Default::default()
    };
    cases.push((
        "trial_permits 10001".into(),
        too_many_trials,
        "policy.trial_permits",
    ));

    for (case, policy, field) in cases {
        let ensure = v1::EnsureProtectorRequest {
            name: "new".into(),
            policy: Some(policy),
        };
        let got = invalid_field(p.ensure_protector(ensure).await.map(drop), &case);
        assert!(got.starts_with(field), "Ensure {case}: {got}");
        let update = v1::UpdatePolicyRequest {
            name: "exists".into(),
            policy: Some(policy),
        };
        let got = invalid_field(a.update_policy(update).await.map(drop), &case);
        assert!(got.starts_with(field), "UpdatePolicy {case}: {got}");
    }
    let get = v1::GetProtectorRequest { name: "new".into() };
    assert_eq!(p.get_protector(get).await.unwrap_err().code(), Code::NotFound);
    let get = v1::GetProtectorRequest {
        name: "exists".into(),
    };
    assert_eq!(
        p.get_protector(get).await.unwrap().into_inner().protector,
        Some(existing)
    );
}

/// A request with one bad field besides the name: Report(permit, outcome),
/// SetStatus(status, open_for), SetOverride(kind, expires_after).
#[derive(Debug)]
enum Bad {
    Report(Option<v1::Permit>, i32),
    SetStatus(i32, Option<prost_types::Duration>),
    SetOverride(i32, Option<prost_types::Duration>),
}

#[tokio::test]
async fn bad_fields_of_the_other_requests_are_named() {
    let daemon = Daemon::start().await;
    let (mut p, mut a) = (daemon.protectors().await, daemon.admin().await);
    let existing = ensure(&mut p, "exists", v1::Policy::default()).await;
    let name = "exists";
    let closed = v1::Status::Closed as i32;
    let half_open = v1::Status::HalfOpen as i32;
    let none = v1::OverrideKind::None as i32;
    let too_long = dur(THIRTY_DAYS + Duration::from_secs(1));
    let cases = [
        ("outcome 99", Bad::Report(Some(permit(1)), 99), "outcome"),
        ("outcome 0", Bad::Report(Some(permit(1)), 0), "outcome"),
        ("no permit", Bad::Report(None, 1), "permit"),
        (
            "generation 0",
            Bad::Report(Some(permit(0)), 1),
            "permit.generation",
        ),
        ("status 0", Bad::SetStatus(0, None), "status"),
        ("status 42", Bad::SetStatus(42, None), "status"),
        ("open_for -1 s", Bad::SetStatus(OPEN, secs(-1)), "open_for"),
        (
            "open_for 30 days + 1 s",
            Bad::SetStatus(OPEN, too_long),
            "open_for",
        ),
        (
            "open_for with CLOSED",
            Bad::SetStatus(closed, secs(1)),
            "open_for",
        ),
        (
            "open_for with HALF_OPEN",
            Bad::SetStatus(half_open, secs(1)),
            "open_for",
        ),
        ("kind 0", Bad::SetOverride(0, None), "kind"),
        ("kind 7", Bad::SetOverride(7, None), "kind"),
        (
            "expires_after -1 s",
            Bad::SetOverride(FORCED_OPEN, secs(-1)),
            "expires_after",
        ),
        (
            "expires_after 0",
            Bad::SetOverride(FORCED_OPEN, secs(0)),
            "expires_after",
        ),
        (
            "expires_after 30 days + 1 s",
            Bad::SetOverride(FORCED_OPEN, too_long),
            "expires_after",
        ),
        (
            "expires_after with NONE",
            Bad::SetOverride(none, secs(1)),
            "expires_after",
        ),
    ];
    for (case, bad, field) in cases {
        let result = match bad {
            Bad::Report(permit, outcome) => p.report(report_req(name, permit, outcome)).await.map(drop),
            Bad::SetStatus(status, open_for) => a
                .set_status(set_status_req(name, status, open_for))
                .await
                .map(drop),
            Bad::SetOverride(kind, after) => a
                .set_override(set_override_req(name, kind, after))
                .await
                .map(drop),
        };
        assert_eq!(invalid_field(result, case), field, "{case}");
    }
    let get = v1::GetProtectorRequest { name: name.into() };
    let after = p.get_protector(get).await.unwrap().into_inner().protector;
    assert_eq!(after, Some(existing), "a refused request changed the protector");
}

#[tokio::test]
async fn bad_watch_and_list_requests_are_named() {
    let daemon = Daemon::start().await;
    let mut p = daemon.protectors().await;
    use v1::watch_request::Filter;
    let names = |list: &[&str]| {
        Some(Filter::Names(v1::NameList {
            names: list.iter().map(|n| (*n).to_owned()).collect(),
        }))
    };
    let watch = |filter, progress_interval| v1::WatchRequest {
        filter,
        progress_interval,
        ..Default::default()
    };
    let all = Some(Filter::All(true));
    let watches = [
        ("no filter", watch(None, None), "filter"),
        ("all false", watch(Some(Filter::All(false)), None), "all"),
        ("no names", watch(names(&[]), None), "names.names"),
        ("an empty name", watch(names(&["ok", ""]), None), "names.names[1]"),
        (
            "a name with a space",
            watch(names(&["a b"]), None),
            "names.names[0]",
        ),
        (
            "a prefix longer than any name",
            watch(Some(Filter::Prefix("a".repeat(300))), None),
            "prefix",
        ),
        (
            "progress_interval 10 ms",
            watch(all.clone(), dur(Duration::from_millis(10))),
            "progress_interval",
        ),
        (
            "progress_interval -1 s",
            watch(all.clone(), secs(-1)),
            "progress_interval",
        ),
        (
            "progress_interval 1 h + 1 s",
            watch(all.clone(), secs(3601)),
            "progress_interval",
        ),
    ];
    for (case, request, field) in watches {
        assert_eq!(
            invalid_field(p.watch(request).await.map(drop), case),
            field,
            "{case}"
        );
    }
    let list = |page_size, page_token: &str| v1::ListProtectorsRequest {
        prefix: String::new(),
        page_size,
        page_token: page_token.into(),
    };
    let lists = [
        ("page_size 5000", list(5000, ""), "page_size"),
        ("page_size 1001", list(1001, ""), "page_size"),
        ("page_token not hex", list(0, "not a token!"), "page_token"),
        ("page_token odd length", list(0, "abc"), "page_token"),
        ("page_token not UTF-8", list(0, "ff"), "page_token"),
    ];
    for (case, request, field) in lists {
        assert_eq!(
            invalid_field(p.list_protectors(request).await.map(drop), case),
            field,
            "{case}"
        );
    }
    p.list_protectors(list(1000, ""))
        .await
        .expect("page_size 1000 is allowed");
}

#[tokio::test]
async fn unknown_protectors_are_not_found_by_every_rpc() {
    let daemon = Daemon::start().await;
    let (mut p, mut a) = (daemon.protectors().await, daemon.admin().await);
    ensure(&mut p, "known", v1::Policy::default()).await;
    for rpc in RPCS.into_iter().filter(|r| !matches!(r, Rpc::Ensure)) {
        let status = by_name(rpc, "ghost-1", &mut p, &mut a)
            .await
            .expect_err("unknown");
        assert_eq!(status.code(), Code::NotFound, "{rpc:?}: {status:?}");
        assert!(
            status.message().contains("\"ghost-1\""),
            "{rpc:?}: {}",
            status.message()
        );
        let info = status.get_details_resource_info().expect("ResourceInfo");
        assert_eq!(info.resource_name, "ghost-1", "{rpc:?}");
        assert_eq!(info.resource_type, "resilient_circuit.v1.Protector", "{rpc:?}");
    }
}

fn limits(limits: Limits) -> Config {
    Config {
        limits,
        ..Config::default()
    }
}

#[tokio::test]
async fn max_protectors_refuses_the_one_too_many_until_a_delete_frees_a_place() {
    let daemon = Daemon::with_config(limits(Limits {
        max_protectors: 3,
        ..Limits::default()
    }))
    .await;
    let (mut p, mut a) = (daemon.protectors().await, daemon.admin().await);
    for name in ["one", "two", "three"] {
        ensure(&mut p, name, v1::Policy::default()).await;
    }
    let fourth = || v1::EnsureProtectorRequest {
        name: "four".into(),
        policy: None,
    };
    let refused = p.ensure_protector(fourth()).await.unwrap_err();
    assert_eq!(exhausted_limit(refused), "max_protectors");
    let existing = v1::EnsureProtectorRequest {
        name: "two".into(),
        policy: None,
    };
    let again = p
        .ensure_protector(existing)
        .await
        .expect("Ensure of an existing one");
    assert!(!again.into_inner().created);

    a.delete_protector(v1::DeleteProtectorRequest { name: "one".into() })
        .await
        .expect("DeleteProtector");
    let created = p.ensure_protector(fourth()).await.expect("a place was freed");
    assert!(created.into_inner().created);
    let refused = p.ensure_protector(v1::EnsureProtectorRequest {
        name: "five".into(),
        policy: None,
    });
    assert_eq!(exhausted_limit(refused.await.unwrap_err()), "max_protectors");
}

#[tokio::test]
async fn max_watchers_refuses_the_one_too_many_until_a_watch_ends() {
    let daemon = Daemon::with_config(limits(Limits {
        max_watchers: 2,
        ..Limits::default()
    }))
    .await;
    let mut p = daemon.protectors().await;
    let first = Watcher::open(&mut p, watch_all()).await;
    let _second = Watcher::open(&mut p, watch_all()).await;
    let refused = p.watch(watch_all()).await.map(drop).unwrap_err();
    assert_eq!(exhausted_limit(refused), "max_watchers");

    drop(first);
    // The daemon frees the place when it sees the stream reset, which takes a round trip.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut third = loop {
        match p.watch(watch_all()).await {
            Ok(stream) => break stream.into_inner(),
            Err(s) if s.code() == Code::ResourceExhausted && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(s) => panic!("no place freed within {DEADLINE:?}: {s:?}"),
        }
    };
    let first_event = tokio::time::timeout(DEADLINE, third.message()).await;
    let first_event = first_event.expect("an event in time").expect("a live stream");
    let synced = first_event.expect("an event").event;
    assert!(
        matches!(synced, Some(v1::watch_event::Event::Synced(_))),
        "{synced:?}"
    );
    let refused = p.watch(watch_all()).await.map(drop).unwrap_err();
    assert_eq!(exhausted_limit(refused), "max_watchers");
}

#[tokio::test]
async fn max_watch_names_refuses_a_longer_name_list() {
    let daemon = Daemon::with_config(limits(Limits {
        max_watch_names: 3,
        ..Limits::default()
    }))
    .await;
    let mut p = daemon.protectors().await;
    let names = |n: usize| v1::WatchRequest {
        filter: Some(v1::watch_request::Filter::Names(v1::NameList {
            names: (0..n).map(|i| format!("n{i}")).collect(),
        })),
        ..Default::default()
    };
    let refused = p.watch(names(4)).await.map(drop).unwrap_err();
    assert_eq!(exhausted_limit(refused), "max_watch_names");
    let mut watcher = Watcher::open(&mut p, names(3)).await;
    assert!(watcher.snapshot().await.0.is_empty());
}

#[tokio::test]
async fn a_request_over_max_message_bytes_is_refused_and_the_daemon_keeps_serving() {
    let daemon = Daemon::with_config(limits(Limits {
        max_message_bytes: 1024,
        ..Limits::default()
    }))
    .await;
    let mut p = daemon.protectors().await;
    let huge = v1::ListProtectorsRequest {
        prefix: "p".repeat(2000),
        ..Default::default()
    };
    let refused = p.list_protectors(huge).await.unwrap_err();
    // tonic refuses an oversized message while decoding it, before the daemon sees it.
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    assert!(
        refused.message().contains("the limit is: 1024 bytes"),
        "{}",
        refused.message()
    );

    ensure(&mut p, "still-here", v1::Policy::default()).await;
    let list = p.list_protectors(v1::ListProtectorsRequest::default()).await;
    let names: Vec<String> = list
        .expect("ListProtectors")
        .into_inner()
        .protectors
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["still-here"]);
}
