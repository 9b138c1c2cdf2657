//! The optional policy rules of proto/SEMANTICS.md section 2a through the real daemon:
//! a time window with `minimum_calls`, a streak of failures, slow calls from the
//! durations that Report, Session reports and ReportBatch carry, the cooldown backoff
//! that GetProtector shows, shadow mode's `would_reject`, and `policy_revision` on
//! every AcquireResponse and Protector.

use std::time::Duration;

use resilient_circuit_api::v1::{self, session_request, session_response};
use support::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use v1::Outcome::{Failure, Success};
use v1::Status::{Closed, HalfOpen, Open};
use v1::TransitionReason as R;

const HOUR: Duration = Duration::from_secs(3600);
const MS: Duration = Duration::from_millis(1);

/// Acquires on `name` (which must admit) and reports `outcome` with `took`.
async fn timed_call(
    client: &mut ProtectorClient,
    name: &str,
    outcome: v1::Outcome,
    took: Option<Duration>,
) -> v1::ReportResponse {
    let a = acquire(client, name).await;
    assert_eq!(a.decision, v1::Decision::Admitted as i32, "{a:?}");
    client
        .report(v1::ReportRequest {
            name: name.into(),
            permit: a.permit,
            outcome: outcome as i32,
            duration: took.map(duration),
        })
        .await
        .expect("Report")
        .into_inner()
}

/// A slow-call rule: calls of 100 ms or more are slow, 2/3 of them trip.
fn slow_policy() -> v1::Policy {
    v1::Policy {
        slow_call_duration: Some(duration(100 * MS)),
        slow_call_limit: Some(v1::Fraction {
            numerator: 2,
            denominator: 3,
        }),
        ..policy(HOUR, (3, 3), None)
    }
}

#[tokio::test]
async fn a_time_window_trips_only_once_it_holds_minimum_calls() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    let p = v1::Policy {
        window_duration: Some(duration(HOUR)),
        minimum_calls: Some(4),
        ..policy(HOUR, (1, 2), None)
    };
    let created = ensure(&mut client, "tw", p).await;
    let window = created.time_window.expect("a time window is shown");
    assert_eq!(std_duration(window.duration), HOUR);
    assert_eq!(std_duration(window.bucket_width), Duration::from_secs(1));

    // Three failures in a row: a count window of d = 2 would have tripped at the first
    // two, but the time window holds fewer than minimum_calls.
    for _ in 0..3 {
        let r = call(&mut client, "tw", Failure).await;
        assert_eq!(r.transition, None, "{r:?}");
    }
    let held = get(&mut client, "tw").await;
    assert_eq!(held.status, Closed as i32);
    let w = held.time_window.expect("time window");
    assert_eq!((w.calls, w.failures), (3, 3));

    // A success is no trip (only a FAILURE checks the failure rule); the next failure
    // finds minimum_calls held: 4/5 >= 1/2 trips, reason FAILURE_LIMIT.
    let r = call(&mut client, "tw", Success).await;
    assert_eq!(r.transition, None, "{r:?}");
    let r = call(&mut client, "tw", Failure).await;
    let trip = r.transition.expect("the rate rule trips at minimum_calls");
    assert_transition(&trip, Closed, Open, R::FailureLimit, 2);
}

#[tokio::test]
async fn a_streak_of_failures_trips_with_its_own_reason() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    let p = v1::Policy {
        consecutive_failures: 3,
        ..policy(HOUR, (100, 100), None)
    };
    ensure(&mut client, "streak", p).await;
    call(&mut client, "streak", Failure).await;
    call(&mut client, "streak", Failure).await;
    call(&mut client, "streak", Success).await; // breaks the streak
    call(&mut client, "streak", Failure).await;
    call(&mut client, "streak", Failure).await;
    assert_eq!(get(&mut client, "streak").await.status, Closed as i32);
    let r = call(&mut client, "streak", Failure).await;
    let trip = r.transition.expect("three failures in a row trip");
    assert_transition(&trip, Closed, Open, R::ConsecutiveFailures, 2);
}

#[tokio::test]
async fn reported_durations_trip_the_slow_call_rule() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, "slow", slow_policy()).await;
    // Successes all: only slowness can trip. A report without a duration is never slow.
    timed_call(&mut client, "slow", Success, Some(150 * MS)).await;
    timed_call(&mut client, "slow", Success, None).await;
    let r = timed_call(&mut client, "slow", Success, Some(99 * MS)).await;
    assert_eq!(r.transition, None, "1 slow of 3 is below 2/3");
    let w = get(&mut client, "slow").await.window.expect("window");
    assert_eq!(w.slow_calls, 1);
    let r = timed_call(&mut client, "slow", Success, Some(100 * MS)).await;
    assert_eq!(r.transition, None, "the first slow call left the window: 1 of 3");
    let r = timed_call(&mut client, "slow", Success, Some(120 * MS)).await;
    let trip = r.transition.expect("2 slow of the last 3 trip");
    assert_transition(&trip, Closed, Open, R::SlowCalls, 2);
}

#[tokio::test]
async fn session_reports_carry_durations() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, "slow.session", slow_policy()).await;
    let (requests, rx) = mpsc::channel(4);
    let mut answers = client
        .session(ReceiverStream::new(rx))
        .await
        .expect("Session")
        .into_inner();
    let mut ask = async |id: u64, request: session_request::Request| {
        let request = v1::SessionRequest {
            id,
            request: Some(request),
        };
        requests.send(request).await.expect("send");
        let answer = tokio::time::timeout(DEADLINE, answers.message())
            .await
            .expect("an answer in time")
            .expect("the stream")
            .expect("an answer");
        assert_eq!(answer.id, id);
        answer.response.expect("a response")
    };
    let mut last = None;
    for i in 0..3 {
        let acquire = session_request::Request::Acquire(v1::AcquireRequest {
            name: "slow.session".into(),
        });
        let session_response::Response::Acquire(a) = ask(2 * i, acquire).await else {
            panic!("not an Acquire answer")
        };
        let report = session_request::Request::Report(v1::ReportRequest {
            name: "slow.session".into(),
            permit: a.permit,
            outcome: Success as i32,
            duration: Some(duration(if i == 1 { MS } else { 200 * MS })),
        });
        let session_response::Response::Report(r) = ask(2 * i + 1, report).await else {
            panic!("not a Report answer")
        };
        last = r.transition;
    }
    let trip = last.expect("the third report trips: 2 slow of 3");
    assert_transition(&trip, Closed, Open, R::SlowCalls, 2);
}

#[tokio::test]
async fn batched_durations_trip_the_slow_call_rule() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, "slow.batch", slow_policy()).await;
    let batch = |successes, outcomes: Vec<v1::Outcome>, durations: Vec<Duration>| v1::ReportBatchRequest {
        batches: vec![v1::OutcomeBatch {
            name: "slow.batch".into(),
            generation: 1,
            successes,
            outcomes: outcomes.into_iter().map(|o| o as i32).collect(),
            durations: durations.into_iter().map(duration).collect(),
        }],
    };
    // A million fast successes cost O(window), then two slow ones among three listed.
    let r = client
        .report_batch(batch(1_000_000, vec![Success, Success], vec![150 * MS]))
        .await
        .expect("ReportBatch")
        .into_inner();
    assert_eq!(r.results[0].transition, None, "{r:?}");
    let r = client
        .report_batch(batch(0, vec![Failure], vec![300 * MS]))
        .await
        .expect("ReportBatch")
        .into_inner();
    let result = &r.results[0];
    assert_eq!(result.error, None, "{result:?}");
    let trip = result.transition.expect("2 slow of the last 3 trip");
    // The failure rule (3/3) does not hold: one failure among the last three.
    assert_transition(&trip, Closed, Open, R::SlowCalls, 2);
}

#[tokio::test]
async fn reopenings_multiply_the_cooldown_up_to_its_cap_and_closing_resets_it() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    let mut admin = daemon.admin().await;
    const COOLDOWN: Duration = Duration::from_secs(10);
    let p = v1::Policy {
        cooldown_multiplier: Some(2.0),
        max_cooldown: Some(duration(Duration::from_secs(25))),
        ..policy(COOLDOWN, (1, 1), None)
    };
    ensure(&mut client, "backoff", p).await;
    let in_force =
        async |client: &mut ProtectorClient| std_duration(get(client, "backoff").await.cooldown_in_force);
    assert_eq!(in_force(&mut client).await, COOLDOWN);

    let trip = call(&mut client, "backoff", Failure)
        .await
        .transition
        .expect("trip");
    let length = |t: &v1::Transition| instant(t.open_until).saturating_sub(instant(t.at));
    assert_eq!(length(&trip), COOLDOWN);
    for expected in [20, 25, 25] {
        set_status(&mut admin, "backoff", HalfOpen, None).await;
        let reopened = call(&mut client, "backoff", Failure)
            .await
            .transition
            .expect("reopen");
        assert_transition(&reopened, HalfOpen, Open, R::TrialsFailed, reopened.generation);
        assert_eq!(length(&reopened), Duration::from_secs(expected));
        assert_eq!(in_force(&mut client).await, Duration::from_secs(expected));
    }
    set_status(&mut admin, "backoff", HalfOpen, None).await;
    let closed = call(&mut client, "backoff", Success)
        .await
        .transition
        .expect("close");
    assert_eq!(closed.to, Closed as i32);
    assert_eq!(in_force(&mut client).await, COOLDOWN, "entering CLOSED resets it");
    let trip = call(&mut client, "backoff", Failure)
        .await
        .transition
        .expect("trip");
    assert_eq!(length(&trip), COOLDOWN);
}

#[tokio::test]
async fn shadow_mode_admits_what_it_would_reject_and_says_so() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    let mut admin = daemon.admin().await;
    let p = v1::Policy {
        shadow: true,
        ..policy(HOUR, (1, 1), None)
    };
    ensure(&mut client, "shadow", p).await;
    let live = acquire(&mut client, "shadow").await;
    assert!(!live.would_reject);
    let trip = report(&mut client, "shadow", live.permit.expect("permit"), Failure).await;
    assert_transition(&trip.transition.expect("trip"), Closed, Open, R::FailureLimit, 2);

    let a = acquire(&mut client, "shadow").await;
    assert_eq!(a.decision, v1::Decision::Admitted as i32, "{a:?}");
    assert!(a.would_reject, "{a:?}");
    assert_eq!(a.reason, v1::DecisionReason::Open as i32);
    assert_eq!(a.status, Open as i32);
    // The call would not have run: its report is no input.
    let r = report(&mut client, "shadow", a.permit.expect("permit"), Success).await;
    assert!(!r.accepted);
    assert_eq!(counters(&mut client, "shadow").await.rejected, 1);

    // An operator's FORCED_OPEN is obeyed in shadow too.
    set_override(&mut admin, "shadow", v1::OverrideKind::ForcedOpen, None).await;
    let forced = acquire(&mut client, "shadow").await;
    assert_eq!(forced.decision, v1::Decision::Rejected as i32, "{forced:?}");
    assert!(!forced.would_reject);
}

#[tokio::test]
async fn policy_revision_says_which_policy_decided() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    let mut admin = daemon.admin().await;
    let created = client
        .ensure_protector(v1::EnsureProtectorRequest {
            name: "rev".into(),
            policy: Some(policy(HOUR, (5, 5), None)),
        })
        .await
        .expect("Ensure")
        .into_inner();
    let at_creation = created.revision;
    assert_eq!(created.protector.expect("protector").policy_revision, at_creation);
    call(&mut client, "rev", Failure).await;
    let a = acquire(&mut client, "rev").await;
    assert_eq!(a.policy_revision, at_creation);

    let updated = update_policy(&mut admin, "rev", policy(HOUR, (3, 5), None)).await;
    let a = acquire(&mut client, "rev").await;
    assert_eq!(a.policy_revision, updated.revision);
    assert!(updated.revision > at_creation);
    let shown = get(&mut client, "rev").await;
    assert_eq!(shown.policy_revision, updated.revision);
    let (listed, _) = list_all(&mut client).await;
    assert_eq!(listed[0].policy_revision, updated.revision);
    let mut watcher = Watcher::open(&mut client, watch_names(&["rev"])).await;
    let (snapshot, _) = watcher.snapshot().await;
    assert_eq!(snapshot[0].policy_revision, updated.revision);
}
