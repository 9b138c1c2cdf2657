//! Every RPC's success path against the real daemon, with exact values: the data plane,
//! the control plane, health and reflection.

use std::time::Duration;

use resilient_circuit_api::v1::{self, watch_event::Event};
use support::*;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const CLOSED: i32 = v1::Status::Closed as i32;
const OPEN: i32 = v1::Status::Open as i32;
const HALF_OPEN: i32 = v1::Status::HalfOpen as i32;
const ADMITTED: i32 = v1::Decision::Admitted as i32;
const REJECTED: i32 = v1::Decision::Rejected as i32;
const SUCCESS: i32 = v1::Outcome::Success as i32;

/// The default policy as the daemon reports it, every default filled in.
fn default_policy() -> v1::Policy {
    v1::Policy {
        cooldown: Some(duration(Duration::ZERO)),
        failure_limit: frac(1, 1),
        success_limit: None,
        trial_permits: None,
        permit_ttl: Some(duration(Duration::from_secs(30))),
        auto_half_open: false,
        ..Default::default()
    }
}

fn frac(numerator: u32, denominator: u32) -> Option<v1::Fraction> {
    Some(v1::Fraction {
        numerator,
        denominator,
    })
}

/// The message of an OK answer; any error fails the test.
#[track_caller]
fn ok<T>(r: Result<tonic::Response<T>, tonic::Status>) -> T {
    r.expect("an OK answer").into_inner()
}

fn no_override() -> Option<v1::Override> {
    Some(v1::Override {
        kind: v1::OverrideKind::None as i32,
        expires_at: None,
    })
}

fn window(size: u32, outcomes: &[v1::Outcome]) -> Option<v1::Window> {
    let count = |o: v1::Outcome| outcomes.iter().filter(|x| **x == o).count() as u32;
    Some(v1::Window {
        size,
        successes: count(v1::Outcome::Success),
        failures: count(v1::Outcome::Failure),
        outcomes: outcomes.iter().map(|o| *o as i32).collect(),
        ..Default::default()
    })
}

/// An instant as nanoseconds since the epoch, so instants subtract exactly.
fn nanos(ts: &prost_types::Timestamp) -> i128 {
    i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos)
}

/// Asserts `ts` is the wall clock's now, give or take the time a test takes.
#[track_caller]
fn assert_recent(ts: &prost_types::Timestamp) {
    let now = wall_now().as_nanos() as i128;
    let off = (nanos(ts) - now).abs();
    assert!(off < 5_000_000_000, "{ts:?} is {off} ns away from now");
}

#[track_caller]
fn transition(event: v1::WatchEvent) -> v1::Transition {
    match event.event {
        Some(Event::StatusChanged(s)) => s.transition.expect("transition"),
        other => panic!("expected STATUS_CHANGED, got {other:?}"),
    }
}

fn names(protectors: &[v1::Protector]) -> Vec<String> {
    protectors.iter().map(|p| p.name.clone()).collect()
}

#[tokio::test]
async fn ensure_creates_once_and_never_changes_an_existing_protector() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    let ensure_with = |policy: Option<v1::Policy>| v1::EnsureProtectorRequest {
        name: "orders".into(),
        policy,
    };
    let first = ok(client.ensure_protector(ensure_with(None)).await);
    let want = v1::Protector {
        name: "orders".into(),
        policy: Some(default_policy()),
        status: CLOSED,
        r#override: no_override(),
        generation: 1,
        open_until: None,
        window: window(1, &[]),
        consecutive_failures: 0,
        trials_in_flight: 0,
        counters: Some(v1::Counters::default()),
        mod_revision: 1,
        cooldown_in_force: Some(prost_types::Duration::default()),
        policy_revision: 1,
        ..Default::default()
    };
    assert!(first.created);
    assert!(first.policy_matches);
    assert_eq!(first.revision, 1);
    assert_eq!(first.protector, Some(want.clone()));

    for (policy, matches) in [
        (None, true),
        (Some(default_policy()), true),
        (Some(policy(Duration::from_secs(60), (1, 1), None)), false),
        (Some(policy(Duration::ZERO, (2, 3), None)), false),
    ] {
        let again = ok(client.ensure_protector(ensure_with(policy)).await);
        assert!(!again.created, "{policy:?}");
        assert_eq!(again.policy_matches, matches, "{policy:?}");
        assert_eq!(again.revision, 1, "{policy:?}");
        assert_eq!(again.protector, Some(want.clone()), "{policy:?}");
    }

    let custom = v1::Policy {
        cooldown: Some(duration(Duration::from_millis(2500))),
        failure_limit: frac(3, 5),
        success_limit: frac(2, 4),
        trial_permits: Some(0),
        permit_ttl: Some(duration(Duration::from_millis(500))),
        auto_half_open: true,
        ..Default::default()
    };
    let created = ensure(&mut client, "payments", custom).await;
    assert_eq!(created.policy, Some(custom));
    assert_eq!(created.window, window(5, &[]));
    assert_eq!(created.mod_revision, 2);
}

#[tokio::test]
async fn acquire_admits_in_closed_rejects_in_open_and_grants_trials_in_half_open() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    let mut watcher = Watcher::open(&mut client, watch_names(&["a"])).await;
    watcher.snapshot().await;
    ensure(&mut client, "a", policy(Duration::from_millis(300), (1, 1), None)).await;

    let closed = acquire(&mut client, "a").await;
    let untracked = permit(1, 0);
    let want = v1::AcquireResponse {
        decision: ADMITTED,
        status: CLOSED,
        permit: Some(untracked),
        retry_after: None,
        reason: v1::DecisionReason::Closed as i32,
        revision: 1,
        transition: None,
        policy_revision: 1,
        ..Default::default()
    };
    assert_eq!(closed, want);
    report(&mut client, "a", untracked, v1::Outcome::Failure).await;

    let rejected = acquire(&mut client, "a").await;
    assert_eq!(rejected.decision, REJECTED);
    assert_eq!(rejected.status, OPEN);
    assert_eq!(rejected.permit, None);
    assert_eq!(rejected.reason, v1::DecisionReason::Open as i32);
    assert_eq!(rejected.revision, 2);
    let retry_after = std_duration(rejected.retry_after);
    assert!(
        retry_after > Duration::ZERO && retry_after <= Duration::from_millis(300),
        "{retry_after:?}"
    );

    // The daemon announced when the cooldown ends; waiting until then is its contract.
    tokio::time::sleep(retry_after).await;
    let trial = acquire(&mut client, "a").await;
    assert_eq!(trial.decision, ADMITTED);
    assert_eq!(trial.status, HALF_OPEN);
    assert_eq!(trial.reason, v1::DecisionReason::Trial as i32);
    assert_eq!(trial.revision, 3);
    let permit = trial.permit.expect("trial permit");
    assert_eq!((permit.generation, permit.id), (3, 1));
    let expires_at = permit.expires_at.expect("a trial permit expires");

    assert!(matches!(watcher.next().await.event, Some(Event::Created(_))));
    assert_eq!(transition(watcher.next().await).to, OPEN);
    let half_open = watcher.next().await;
    assert_eq!(half_open.revision, 3);
    let t = transition(half_open);
    assert_eq!((t.from, t.to), (OPEN, HALF_OPEN));
    assert_eq!(t.reason, v1::TransitionReason::CooldownElapsed as i32);
    // The acquire that caused it answers with the same transition.
    assert_eq!(trial.transition.as_deref(), Some(&t));
    let at = t.at.expect("at");
    assert_eq!(nanos(&expires_at) - nanos(&at), 30_000_000_000, "permit_ttl 30 s");

    // One trial at a time by default (the HALF_OPEN window's size is 1).
    let exhausted = acquire(&mut client, "a").await;
    assert_eq!(exhausted.decision, REJECTED);
    assert_eq!(exhausted.reason, v1::DecisionReason::TrialsExhausted as i32);
    let wait = std_duration(exhausted.retry_after);
    assert!(
        wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
}

#[tokio::test]
async fn report_accepts_answers_the_transition_and_refuses_stale_permits() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, "r", policy(Duration::ZERO, (1, 1), None)).await;
    let p1 = acquire(&mut client, "r").await.permit.expect("permit");
    let p2 = acquire(&mut client, "r").await.permit.expect("permit");

    let ok = report(&mut client, "r", p1, v1::Outcome::Success).await;
    let want = v1::ReportResponse {
        accepted: true,
        status: CLOSED,
        revision: 1,
        transition: None,
    };
    assert_eq!(ok, want);

    let tripped = report(&mut client, "r", p2, v1::Outcome::Failure).await;
    assert!(tripped.accepted);
    assert_eq!((tripped.status, tripped.revision), (OPEN, 2));
    let t = tripped.transition.expect("the trip");
    assert_eq!((t.from, t.to, t.generation), (CLOSED, OPEN, 2));
    assert_eq!(t.reason, v1::TransitionReason::FailureLimit as i32);
    let at = t.at.expect("at");
    assert_recent(&at);
    assert_eq!(t.open_until, Some(at), "cooldown 0");

    let stale = report(&mut client, "r", p1, v1::Outcome::Success).await;
    let want = v1::ReportResponse {
        accepted: false,
        status: OPEN,
        revision: 2,
        transition: None,
    };
    assert_eq!(stale, want);

    let trial = acquire(&mut client, "r").await.permit.expect("trial permit");
    assert_eq!((trial.generation, trial.id), (3, 1));
    let closed = report(&mut client, "r", trial, v1::Outcome::Success).await;
    assert!(closed.accepted);
    assert_eq!((closed.status, closed.revision), (CLOSED, 4));
    let t = closed.transition.expect("trials succeeded");
    assert_eq!((t.from, t.to, t.generation), (HALF_OPEN, CLOSED, 4));
    assert_eq!(t.reason, v1::TransitionReason::TrialsSucceeded as i32);
    assert_eq!(t.open_until, None);
    let again = report(&mut client, "r", trial, v1::Outcome::Success).await;
    assert!(!again.accepted);

    // A trial reported twice in its own generation is refused the second time.
    let mut admin = daemon.admin().await;
    ensure(&mut client, "twice", policy(Duration::ZERO, (1, 2), None)).await;
    set_status(&mut admin, "twice", v1::Status::HalfOpen, None).await;
    let t1 = acquire(&mut client, "twice").await.permit.expect("trial");
    acquire(&mut client, "twice").await.permit.expect("second trial");
    let first = report(&mut client, "twice", t1, v1::Outcome::Success).await;
    assert!(first.accepted);
    assert_eq!(first.transition, None);
    let second = report(&mut client, "twice", t1, v1::Outcome::Success).await;
    assert!(!second.accepted);
    let p = get(&mut client, "twice").await;
    assert_eq!(p.trials_in_flight, 1);
    assert_eq!(p.counters.expect("counters").stale_reports, 1);
    assert_eq!(p.window, window(2, &[v1::Outcome::Success]));
}

#[tokio::test]
async fn get_protector_shows_the_window_counters_and_open_until() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    let mut admin = daemon.admin().await;
    ensure(&mut client, "g", policy(Duration::from_secs(60), (3, 3), None)).await;
    use v1::Outcome::{Failure as F, Ignored as I, Success as S};
    for outcome in [S, F, S, F, I] {
        call(&mut client, "g", outcome).await;
    }
    let got = get_protector(&mut client, "g").await;
    assert_eq!(got.revision, 1);
    let p = got.protector.expect("protector");
    assert_eq!((p.status, p.generation, p.open_until), (CLOSED, 1, None));
    assert_eq!(
        p.window,
        window(3, &[F, S, F]),
        "oldest first, the oldest dropped"
    );
    assert_eq!(p.consecutive_failures, 1);
    let counters = v1::Counters {
        admitted: 5,
        successes: 2,
        failures: 2,
        ignored: 1,
        ..Default::default()
    };
    assert_eq!(p.counters, Some(counters));

    call(&mut client, "g", F).await;
    let trip = call(&mut client, "g", F).await.transition.expect("the trip");
    let rejected = acquire(&mut client, "g").await;
    assert_eq!(rejected.decision, REJECTED);
    let stale = permit(1, 0);
    assert!(!report(&mut client, "g", stale, S).await.accepted);
    let got = get_protector(&mut client, "g").await;
    assert_eq!(got.revision, 2);
    let p = got.protector.expect("protector");
    assert_eq!((p.status, p.generation, p.mod_revision), (OPEN, 2, 2));
    assert_eq!(p.open_until, trip.open_until);
    assert!(p.open_until.is_some());
    assert_eq!(
        p.window,
        window(3, &[F, F, F]),
        "OPEN keeps the window it tripped with"
    );
    assert_eq!(p.consecutive_failures, 3);
    let counters = v1::Counters {
        admitted: 7,
        rejected: 1,
        successes: 2,
        failures: 4,
        ignored: 1,
        stale_reports: 1,
        expired_permits: 0,
    };
    assert_eq!(p.counters, Some(counters));

    set_status(&mut admin, "g", v1::Status::HalfOpen, None).await;
    for _ in 0..2 {
        assert_eq!(
            acquire(&mut client, "g").await.reason,
            v1::DecisionReason::Trial as i32
        );
    }
    let got = get_protector(&mut client, "g").await;
    assert_eq!(got.revision, 3);
    let p = got.protector.expect("protector");
    assert_eq!((p.status, p.generation, p.open_until), (HALF_OPEN, 3, None));
    assert_eq!(p.trials_in_flight, 2);
    assert_eq!(p.window, window(3, &[]));
    assert_eq!(p.counters.expect("counters").admitted, 9);
}

#[tokio::test]
async fn list_protectors_filters_by_prefix_in_name_order_and_pages() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    for name in ["svc-e", "svc-a", "other", "svc-c", "svcx", "svc-b", "svc-d"] {
        ensure(&mut client, name, v1::Policy::default()).await;
    }
    let list = |prefix: &str, page_size, page_token: &str| v1::ListProtectorsRequest {
        prefix: prefix.into(),
        page_size,
        page_token: page_token.into(),
    };
    let all = ok(client.list_protectors(list("", 0, "")).await);
    let want = ["other", "svc-a", "svc-b", "svc-c", "svc-d", "svc-e", "svcx"];
    assert_eq!(names(&all.protectors), want);
    assert_eq!(all.next_page_token, "");
    assert_eq!(all.revision, 7);
    assert_eq!(all.protectors[0].policy, Some(default_policy()));

    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = ok(client.list_protectors(list("svc-", 2, &token)).await);
        pages.push(names(&page.protectors));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
        assert!(pages.len() < 10, "pagination does not end: {pages:?}");
    }
    assert_eq!(
        pages,
        [vec!["svc-a", "svc-b"], vec!["svc-c", "svc-d"], vec!["svc-e"]]
    );

    let none = ok(client.list_protectors(list("nothing", 0, "")).await);
    assert!(none.protectors.is_empty());
    assert_eq!(none.next_page_token, "");
}

#[tokio::test]
async fn set_status_performs_manual_transitions_and_re_enters_the_same_status() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    let mut admin = daemon.admin().await;
    ensure(&mut client, "s", policy(Duration::from_secs(60), (1, 1), None)).await;
    let mut watcher = Watcher::open(&mut client, watch_names(&["s"])).await;
    watcher.snapshot().await;

    let steps = [
        (OPEN, None, CLOSED),
        (OPEN, Some(Duration::from_secs(5)), OPEN),
        (HALF_OPEN, None, OPEN),
        (HALF_OPEN, None, HALF_OPEN),
        (CLOSED, None, HALF_OPEN),
        (CLOSED, None, CLOSED),
    ];
    for (i, (to, open_for, from)) in steps.into_iter().enumerate() {
        let generation = i as u64 + 2;
        let status = v1::Status::try_from(to).expect("a status");
        let resp = set_status(&mut admin, "s", status, open_for).await;
        assert_eq!(resp.revision, generation);
        let t = resp.transition.expect("transition");
        assert_eq!((t.from, t.to, t.generation), (from, to, generation), "step {i}");
        assert_eq!(t.reason, v1::TransitionReason::Manual as i32);
        let at = t.at.expect("at");
        assert_recent(&at);
        let want_open_until = (to == OPEN).then(|| {
            let d = open_for.unwrap_or(Duration::from_secs(60));
            nanos(&at) + d.as_nanos() as i128
        });
        assert_eq!(t.open_until.as_ref().map(nanos), want_open_until, "step {i}");
        let p = resp.protector.expect("protector");
        assert_eq!((p.status, p.generation), (to, generation));
        assert_eq!(p.open_until, t.open_until);
        assert_eq!(p.mod_revision, generation);

        let event = watcher.next().await;
        assert_eq!(event.revision, generation);
        assert_eq!(transition(event), t);

        if open_for.is_some() {
            let rejected = acquire(&mut client, "s").await;
            let wait = std_duration(rejected.retry_after);
            assert!(
                wait > Duration::ZERO && wait <= Duration::from_secs(5),
                "{wait:?}"
            );
        }
    }
}

/// Reads the next event, asserting it is OVERRIDE_CHANGED to `kind` at `revision`.
async fn expect_override(watcher: &mut Watcher, revision: u64, kind: v1::OverrideKind, expired: bool) {
    let event = watcher.next().await;
    assert_eq!(event.revision, revision);
    match event.event {
        Some(Event::OverrideChanged(o)) => {
            assert_eq!(o.name, "o");
            assert_eq!(o.r#override.expect("override").kind, kind as i32);
            assert_eq!(o.expired, expired);
        }
        other => panic!("expected OVERRIDE_CHANGED, got {other:?}"),
    }
}

#[tokio::test]
async fn set_override_forces_disables_clears_and_expires_by_itself() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    let mut admin = daemon.admin().await;
    ensure(&mut client, "o", v1::Policy::default()).await;
    let mut watcher = Watcher::open(&mut client, watch_names(&["o"])).await;
    watcher.snapshot().await;
    let set = |kind: v1::OverrideKind, expires_after: Option<Duration>| v1::SetOverrideRequest {
        name: "o".into(),
        kind: kind as i32,
        expires_after: expires_after.map(duration),
    };
    let reason = async |client: &mut ProtectorClient| acquire(client, "o").await.reason;
    let mut revision = 1;

    let forced = ok(admin.set_override(set(v1::OverrideKind::ForcedOpen, None)).await);
    revision += 1;
    assert_eq!(forced.revision, revision);
    let p = forced.protector.expect("protector");
    let want = v1::Override {
        kind: v1::OverrideKind::ForcedOpen as i32,
        expires_at: None,
    };
    assert_eq!(
        (p.r#override, p.status, p.mod_revision),
        (Some(want), CLOSED, revision)
    );
    let rejected = acquire(&mut client, "o").await;
    assert_eq!((rejected.decision, rejected.status), (REJECTED, CLOSED));
    assert_eq!(rejected.reason, v1::DecisionReason::ForcedOpen as i32);
    assert_eq!(rejected.retry_after, None);
    expect_override(&mut watcher, revision, v1::OverrideKind::ForcedOpen, false).await;

    let disabled = ok(admin.set_override(set(v1::OverrideKind::Disabled, None)).await);
    revision += 1;
    assert_eq!(disabled.revision, revision);
    let admitted = acquire(&mut client, "o").await;
    assert_eq!(admitted.decision, ADMITTED);
    assert_eq!(admitted.reason, v1::DecisionReason::Disabled as i32);
    let permit = admitted.permit.expect("permit");
    assert_eq!((permit.generation, permit.id), (1, 0));
    let recorded = report(&mut client, "o", permit, v1::Outcome::Failure).await;
    assert!(recorded.accepted);
    assert_eq!(
        (recorded.status, recorded.transition),
        (CLOSED, None),
        "DISABLED never trips"
    );
    expect_override(&mut watcher, revision, v1::OverrideKind::Disabled, false).await;

    let cleared = ok(admin.set_override(set(v1::OverrideKind::None, None)).await);
    revision += 1;
    assert_eq!(cleared.protector.expect("protector").r#override, no_override());
    assert_eq!(reason(&mut client).await, v1::DecisionReason::Closed as i32);
    expect_override(&mut watcher, revision, v1::OverrideKind::None, false).await;

    let expiring = set(v1::OverrideKind::ForcedOpen, Some(Duration::from_millis(500)));
    let expiring = ok(admin.set_override(expiring).await);
    revision += 1;
    let o = expiring
        .protector
        .expect("protector")
        .r#override
        .expect("override");
    assert_recent(o.expires_at.as_ref().expect("expires_at"));
    expect_override(&mut watcher, revision, v1::OverrideKind::ForcedOpen, false).await;
    let forced = acquire(&mut client, "o").await;
    assert_eq!(forced.reason, v1::DecisionReason::ForcedOpen as i32);
    let wait = std_duration(forced.retry_after);
    assert!(wait <= Duration::from_millis(500), "{wait:?}");

    expect_override(&mut watcher, revision + 1, v1::OverrideKind::None, true).await;
    let p = get(&mut client, "o").await;
    assert_eq!(p.r#override, no_override());
    assert_eq!(reason(&mut client).await, v1::DecisionReason::Closed as i32);
}

#[tokio::test]
async fn update_policy_replaces_the_policy_keeps_the_status_and_is_published() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    let mut admin = daemon.admin().await;
    ensure(&mut client, "u", policy(Duration::from_secs(60), (1, 1), None)).await;
    let trip = call(&mut client, "u", v1::Outcome::Failure)
        .await
        .transition
        .expect("trip");
    let mut watcher = Watcher::open(&mut client, watch_names(&["u"])).await;
    watcher.snapshot().await;

    let new = policy(Duration::from_secs(10), (3, 5), Some((2, 2)));
    let req = v1::UpdatePolicyRequest {
        name: "u".into(),
        policy: Some(new),
    };
    let resp = admin.update_policy(req).await.expect("UpdatePolicy").into_inner();
    assert_eq!(resp.revision, 3);
    let filled = v1::Policy {
        permit_ttl: Some(duration(Duration::from_secs(30))),
        ..new
    };
    let p = resp.protector.expect("protector");
    assert_eq!(p.policy, Some(filled));
    assert_eq!((p.status, p.generation, p.mod_revision), (OPEN, 2, 3));
    assert_eq!(p.open_until, trip.open_until, "the cooldown in course is kept");
    assert_eq!(p.window, window(5, &[]), "a new window of the new size");

    let event = watcher.next().await;
    assert_eq!(event.revision, 3);
    let want = v1::PolicyUpdated {
        name: "u".into(),
        policy: Some(filled),
    };
    assert_eq!(event.event, Some(Event::PolicyUpdated(want)));
    assert_eq!(get_protector(&mut client, "u").await.protector, Some(p));
}

#[tokio::test]
async fn delete_protector_removes_it_for_every_rpc() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    let mut admin = daemon.admin().await;
    ensure(&mut client, "d", v1::Policy::default()).await;
    let permit = acquire(&mut client, "d").await.permit.expect("permit");
    let mut watcher = Watcher::open(&mut client, watch_names(&["d"])).await;
    watcher.snapshot().await;

    let deleted = delete(&mut admin, "d").await;
    assert_eq!(deleted.revision, 2);
    let event = watcher.next().await;
    assert_eq!(event.revision, 2);
    assert_eq!(
        event.event,
        Some(Event::Deleted(v1::Deleted { name: "d".into() }))
    );

    let get = client
        .get_protector(v1::GetProtectorRequest { name: "d".into() })
        .await;
    assert_eq!(get.unwrap_err().code(), Code::NotFound);
    let acquire = client.acquire(v1::AcquireRequest { name: "d".into() }).await;
    assert_eq!(acquire.unwrap_err().code(), Code::NotFound);
    let report = v1::ReportRequest {
        name: "d".into(),
        permit: Some(permit),
        outcome: SUCCESS,
        ..Default::default()
    };
    assert_eq!(client.report(report).await.unwrap_err().code(), Code::NotFound);
    let again = admin
        .delete_protector(v1::DeleteProtectorRequest { name: "d".into() })
        .await;
    assert_eq!(again.unwrap_err().code(), Code::NotFound);

    let recreated = ensure(&mut client, "d", v1::Policy::default()).await;
    assert_eq!((recreated.generation, recreated.mod_revision), (1, 3));
    assert_eq!(recreated.counters, Some(v1::Counters::default()));
}

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_services() {
    let daemon = Daemon::start().await;
    let mut health = HealthClient::new(daemon.channel().await);
    for service in [
        "",
        "resilient_circuit.v1.ProtectorService",
        "resilient_circuit.v1.AdminService",
    ] {
        let req = HealthCheckRequest {
            service: service.into(),
        };
        let resp = health.check(req).await.expect("Check").into_inner();
        assert_eq!(resp.status, ServingStatus::Serving as i32, "{service:?}");
    }
    let unknown = HealthCheckRequest {
        service: "no.such.Service".into(),
    };
    assert_eq!(health.check(unknown).await.unwrap_err().code(), Code::NotFound);
}

/// grpc.reflection ServerReflectionRequest, only the fields this test sends.
#[derive(Clone, PartialEq, prost::Message)]
struct ReflectionRequest {
    #[prost(string, tag = "1")]
    host: String,
    /// The `list_services` member of the request's oneof.
    #[prost(string, optional, tag = "7")]
    list_services: Option<String>,
}

/// grpc.reflection ServerReflectionResponse, only the list_services answer.
#[derive(Clone, PartialEq, prost::Message)]
struct ReflectionResponse {
    #[prost(message, optional, tag = "6")]
    list_services_response: Option<ListServiceResponse>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ListServiceResponse {
    #[prost(message, repeated, tag = "1")]
    service: Vec<ServiceResponse>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ServiceResponse {
    #[prost(string, tag = "1")]
    name: String,
}

async fn reflected_services(daemon: &Daemon, package: &str) -> Vec<String> {
    let mut grpc = tonic::client::Grpc::new(daemon.channel().await);
    grpc.ready().await.expect("ready");
    let path = format!("/{package}.ServerReflection/ServerReflectionInfo");
    let path = PathAndQuery::try_from(path).expect("path");
    let request = ReflectionRequest {
        host: String::new(),
        list_services: Some(String::new()),
    };
    let codec = tonic_prost::ProstCodec::<ReflectionRequest, ReflectionResponse>::default();
    let requests = tonic::Request::new(tokio_stream::iter([request]));
    let mut responses = grpc
        .streaming(requests, path, codec)
        .await
        .expect("ServerReflectionInfo")
        .into_inner();
    let response = tokio::time::timeout(DEADLINE, responses.message())
        .await
        .expect("a reflection answer in time")
        .expect("a reflection answer")
        .expect("one message");
    let mut names: Vec<String> = response
        .list_services_response
        .expect("list_services_response")
        .service
        .into_iter()
        .map(|s| s.name)
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn reflection_lists_the_services_in_both_versions() {
    let daemon = Daemon::start().await;
    for package in ["grpc.reflection.v1", "grpc.reflection.v1alpha"] {
        let names = reflected_services(&daemon, package).await;
        for want in [
            "resilient_circuit.v1.ProtectorService",
            "resilient_circuit.v1.AdminService",
            "grpc.health.v1.Health",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{package}: {want} not in {names:?}"
            );
        }
    }
}
