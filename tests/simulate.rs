//! SimulatePolicy through the real daemon: known calls reported (with durations), the
//! history they leave (GetProtector's history_len), and the answer compared with a
//! direct `breaker::replay` of the same calls, for the candidate and the current policy;
//! the errors: NOT_FOUND, FAILED_PRECONDITION without a history, INVALID_ARGUMENT naming
//! `policy.<field>`.
//!
//! The daemon's instants are its own clock's: the test knows each call's outcome,
//! duration and order, and the answer's first and last instants. With a count window and
//! an hour's cooldown no decision depends on when a call came, so the direct replay puts
//! the calls between those two instants and must find the same transitions and counts;
//! each transition's instant is then checked to lie in the span (the registry's own test,
//! with paused time, compares instants exactly).

use std::time::Duration;

use resilient_circuit_api::{convert, v1};
use resilient_circuit_breaker::{self as breaker, HistoryEntry, Outcome};
use support::{Daemon, acquire, duration, ensure, policy};
use tonic::Code;

const NAME: &str = "whatif";

/// The calls, in order: their outcomes and how long each took (ms).
const CALLS: [(v1::Outcome, u64); 12] = [
    (v1::Outcome::Success, 10),
    (v1::Outcome::Failure, 20),
    (v1::Outcome::Success, 300),
    (v1::Outcome::Success, 10),
    (v1::Outcome::Failure, 15),
    (v1::Outcome::Success, 400),
    (v1::Outcome::Success, 10),
    (v1::Outcome::Failure, 30),
    (v1::Outcome::Success, 10),
    (v1::Outcome::Success, 500),
    (v1::Outcome::Success, 600),
    (v1::Outcome::Success, 10),
];

/// The current policy: never trips on CALLS (at most 2 failures in any 4).
fn current() -> v1::Policy {
    v1::Policy {
        history_size: 100,
        ..policy(Duration::from_secs(3600), (3, 4), None)
    }
}

/// The candidate: trips on 2 slow calls (250 ms or more) of 4, or 2 failures in a row.
fn candidate() -> v1::Policy {
    v1::Policy {
        slow_call_duration: Some(duration(Duration::from_millis(250))),
        slow_call_limit: Some(v1::Fraction {
            numerator: 2,
            denominator: 4,
        }),
        consecutive_failures: 2,
        ..policy(Duration::from_secs(3600), (4, 4), None)
    }
}

async fn simulate(
    d: &Daemon,
    name: &str,
    policy: v1::Policy,
) -> Result<v1::SimulatePolicyResponse, tonic::Status> {
    d.admin()
        .await
        .simulate_policy(v1::SimulatePolicyRequest {
            name: name.into(),
            policy: Some(policy),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Transitions without their instants (`at`, and `open_until`, which follows from it).
fn without_instants(ts: &[v1::Transition]) -> Vec<v1::Transition> {
    ts.iter()
        .map(|t| v1::Transition {
            at: None,
            open_until: None,
            ..*t
        })
        .collect()
}

#[track_caller]
fn assert_replayed(
    answered: &v1::Simulation,
    policy: &v1::Policy,
    history: &[HistoryEntry],
    span: (Duration, Duration),
) {
    let direct = breaker::replay(convert::policy(policy).expect("valid"), history);
    let direct_wire: Vec<v1::Transition> = direct.transitions.iter().copied().map(Into::into).collect();
    assert_eq!(
        without_instants(&answered.transitions),
        without_instants(&direct_wire)
    );
    assert_eq!(
        (answered.admitted, answered.rejected),
        (direct.admitted, direct.rejected)
    );
    for t in &answered.transitions {
        let at = t.at.as_ref().and_then(convert::time).expect("an instant");
        assert!(span.0 <= at && at <= span.1, "{t:?} outside {span:?}");
        if let Some(until) = t.open_until.as_ref().and_then(convert::time) {
            assert_eq!(until - at, Duration::from_secs(3600), "{t:?}");
        }
    }
}

#[tokio::test]
async fn simulate_answers_what_a_direct_replay_of_the_history_finds() {
    let d = Daemon::start().await;
    let mut c = d.protectors().await;
    ensure(&mut c, NAME, current()).await;
    for (outcome, ms) in CALLS {
        let a = acquire(&mut c, NAME).await;
        assert_eq!(a.decision(), v1::Decision::Admitted, "{a:?}");
        let r = c
            .report(v1::ReportRequest {
                name: NAME.into(),
                permit: a.permit,
                outcome: outcome as i32,
                duration: Some(duration(Duration::from_millis(ms))),
            })
            .await
            .expect("Report")
            .into_inner();
        assert!(r.accepted);
    }
    assert_eq!(d.inspect(NAME).await.history_len, CALLS.len() as u32);

    let answer = simulate(&d, NAME, candidate()).await.expect("SimulatePolicy");
    assert_eq!(answer.calls, CALLS.len() as u64);
    let first = answer
        .first_at
        .as_ref()
        .and_then(convert::time)
        .expect("first_at");
    let last = answer.last_at.as_ref().and_then(convert::time).expect("last_at");
    assert!(first <= last);
    // The calls between the two instants the answer gives (see the module note).
    let history: Vec<HistoryEntry> = CALLS
        .iter()
        .enumerate()
        .map(|(i, (outcome, ms))| HistoryEntry {
            at: if i + 1 == CALLS.len() { last } else { first },
            outcome: Outcome::try_from(*outcome).expect("an outcome"),
            duration: Some(Duration::from_millis(*ms)),
        })
        .collect();
    let candidate_replay = answer.candidate.as_ref().expect("candidate");
    assert_replayed(candidate_replay, &candidate(), &history, (first, last));
    assert_replayed(
        answer.current.as_ref().expect("current"),
        &current(),
        &history,
        (first, last),
    );
    // What the test itself expects of these calls: the candidate trips once, on the
    // second slow call of four (the 6th call: 300 ms and 400 ms among calls 3 to 6), and
    // rejects the rest for its hour of cooldown; the current policy never trips.
    let [trip] = &candidate_replay.transitions[..] else {
        panic!("{candidate_replay:?}")
    };
    assert_eq!(
        (trip.from(), trip.to(), trip.reason()),
        (
            v1::Status::Closed,
            v1::Status::Open,
            v1::TransitionReason::SlowCalls
        )
    );
    assert_eq!((candidate_replay.admitted, candidate_replay.rejected), (6, 6));
    let current_replay = answer.current.as_ref().expect("current");
    assert!(current_replay.transitions.is_empty(), "{current_replay:?}");
    assert_eq!((current_replay.admitted, current_replay.rejected), (12, 0));
    // The candidate is answered with its defaults filled in, and nothing changed.
    let filled = answer.policy.expect("policy");
    assert_eq!(filled.permit_ttl, Some(duration(Duration::from_secs(30))));
    assert_eq!(d.inspect(NAME).await.status(), v1::Status::Closed);
}

#[tokio::test]
async fn simulate_refuses_what_it_cannot_judge() {
    let d = Daemon::start().await;
    let mut c = d.protectors().await;
    ensure(&mut c, "no-history", policy(Duration::from_secs(1), (1, 1), None)).await;

    let unknown = simulate(&d, "nobody", candidate()).await.expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

    let none = simulate(&d, "no-history", candidate())
        .await
        .expect_err("no history");
    assert_eq!(none.code(), Code::FailedPrecondition, "{none:?}");
    assert!(none.message().contains("history_size"), "{none:?}");

    let bad = v1::Policy {
        cooldown_multiplier: Some(0.5),
        ..candidate()
    };
    let refused = simulate(&d, "no-history", bad).await.expect_err("invalid");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("policy.cooldown_multiplier"),
        "{refused:?}"
    );

    let nameless = simulate(&d, "", candidate()).await.expect_err("no name");
    assert_eq!(nameless.code(), Code::InvalidArgument, "{nameless:?}");
}
