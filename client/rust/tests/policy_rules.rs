//! Issue 18's policy rules through the client: a policy built with every optional rule
//! reaches the daemon as given, and call durations reach it on both paths (a unary report
//! measured by the permit or given by the caller; a cached protector's batches), so the
//! daemon's slow-call rule trips on them.

mod common;

use std::time::Duration;

use common::{patient_client, start_daemon};
use resilient_circuit::{
    Client, Fallback, Multiplier, Outcome, PolicySpec, Protector, ProtectorPolicy, Rules, Status,
    TransitionReason,
};
use resilient_circuit_api::{convert, v1};
use support::DEADLINE;
use tokio::time::Instant;

/// Trips on slow calls only: 2 slow calls of the last 2 (the failure rule never trips).
fn slow_policy(slow: Duration) -> ProtectorPolicy {
    ProtectorPolicy::try_with(
        PolicySpec {
            cooldown: Duration::from_secs(60),
            failure_limit: (2, 2),
            ..PolicySpec::default()
        },
        Rules {
            slow_call_duration: Some(slow),
            slow_call_limit: Some((2, 2)),
            ..Rules::default()
        },
    )
    .expect("valid policy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_of_a_built_policy_reaches_the_daemon() {
    let daemon = start_daemon().await;
    let client = patient_client(&daemon).await;
    let rules = Rules {
        window_duration: Some(Duration::from_secs(60)),
        minimum_calls: Some(20),
        consecutive_failures: 5,
        slow_call_duration: Some(Duration::from_millis(250)),
        slow_call_limit: Some((1, 2)),
        cooldown_multiplier: Multiplier::thousandths(2_500),
        max_cooldown: Some(Duration::from_secs(600)),
        shadow: true,
        history_size: 1_000,
    };
    let policy = ProtectorPolicy::try_with(
        PolicySpec {
            cooldown: Duration::from_secs(10),
            failure_limit: (3, 10),
            ..PolicySpec::default()
        },
        rules,
    )
    .expect("valid policy");
    let p = client
        .protector_builder("rules-all")
        .policy(policy)
        .build()
        .await
        .expect("protector");
    p.acquire().await.expect("admitted").success().await;

    let held = daemon.inspect("rules-all").await;
    let wire = held.policy.expect("policy");
    assert_eq!(
        wire.window_duration,
        Some(convert::duration(Duration::from_secs(60)))
    );
    assert_eq!(wire.minimum_calls, Some(20));
    assert_eq!(wire.consecutive_failures, 5);
    assert_eq!(
        wire.slow_call_duration,
        Some(convert::duration(Duration::from_millis(250)))
    );
    assert_eq!(
        wire.slow_call_limit,
        Some(v1::Fraction {
            numerator: 1,
            denominator: 2
        })
    );
    assert_eq!(wire.cooldown_multiplier, Some(2.5));
    assert_eq!(
        wire.max_cooldown,
        Some(convert::duration(Duration::from_secs(600)))
    );
    assert!(wire.shadow);
    assert_eq!(wire.history_size, 1_000);
    // And back: the daemon's policy is the one built.
    assert_eq!(convert::policy(&wire).expect("valid").rules(), rules);
}

#[test]
fn a_rule_out_of_range_is_refused_naming_its_field() {
    let refused = ProtectorPolicy::try_with(
        PolicySpec::default(),
        Rules {
            cooldown_multiplier: Multiplier::thousandths(500),
            ..Rules::default()
        },
    )
    .expect_err("a multiplier below 1");
    assert!(refused.to_string().contains("cooldown_multiplier"), "{refused}");
}

async fn unary_protector(client: &Client, name: &str, policy: ProtectorPolicy) -> Protector {
    client
        .protector_builder(name)
        .policy(policy)
        .build()
        .await
        .expect("protector")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_measured_duration_is_reported_and_slow_calls_trip() {
    let daemon = start_daemon().await;
    let client = patient_client(&daemon).await;
    let p = unary_protector(&client, "rules-timed", slow_policy(Duration::from_millis(100))).await;
    // Fast calls are no trip, whatever their number.
    for _ in 0..3 {
        let r = p
            .acquire()
            .await
            .expect("admitted")
            .resolve_timed(Outcome::Success, Duration::from_millis(99))
            .await;
        assert_eq!(r.status, Some(Status::Closed));
    }
    let mut last = None;
    for _ in 0..2 {
        let permit = p.acquire().await.expect("admitted");
        last = Some(
            permit
                .resolve_timed(Outcome::Success, Duration::from_millis(100))
                .await,
        );
    }
    assert_eq!(last.and_then(|r| r.status), Some(Status::Open));
    let held = daemon.inspect("rules-timed").await;
    assert_eq!(held.status(), v1::Status::Open);
    let window = held.window.expect("window");
    assert_eq!(window.slow_calls, 2, "{window:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_measures_the_duration_itself() {
    let daemon = start_daemon().await;
    let client = patient_client(&daemon).await;
    let p = unary_protector(&client, "rules-measured", slow_policy(Duration::from_millis(20))).await;
    let (changes, mut rx) = common::changes();
    p.on_status_change(changes);
    for _ in 0..2 {
        // A slow call: it takes at least the threshold, so it is slow, however loaded the
        // machine (no assertion on how long it takes).
        let r = p
            .call(|| async {
                tokio::time::sleep(Duration::from_millis(25)).await;
                Ok::<(), std::io::Error>(())
            })
            .await;
        r.expect("admitted");
    }
    let change = common::next_change(&mut rx).await;
    assert_eq!(
        (change.to, change.reason),
        (Status::Open, Some(TransitionReason::SlowCalls))
    );
}

/// A cached protector with that policy, denying when the daemon cannot be asked.
async fn cached_protector(client: &Client, name: &str, spec: PolicySpec, rules: Rules) -> Protector {
    client
        .protector_builder(name)
        .policy(ProtectorPolicy::try_with(spec, rules).expect("valid policy"))
        .fallback(Fallback::Deny)
        .cached(true)
        .build()
        .await
        .expect("protector")
}

/// The first permit `p` (cached) admits locally: until the Watch stream vouches for
/// CLOSED, calls the daemon admits go unary (each ignored here, which records nothing).
async fn first_local_permit(p: &Protector) -> resilient_circuit::CallPermit {
    let give_up = Instant::now() + DEADLINE;
    loop {
        assert!(Instant::now() < give_up, "never admitted locally");
        let permit = p.acquire().await.expect("admitted");
        if permit.is_local() {
            return permit;
        }
        permit.ignore().await;
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_protector_batches_slow_calls_with_their_durations() {
    let daemon = start_daemon().await;
    let client = patient_client(&daemon).await;
    let name = "rules-cached";
    let spec = PolicySpec {
        cooldown: Duration::from_secs(60),
        failure_limit: (4, 4),
        ..PolicySpec::default()
    };
    let rules = Rules {
        slow_call_duration: Some(Duration::from_millis(100)),
        slow_call_limit: Some((2, 4)),
        ..Rules::default()
    };
    let p = cached_protector(&client, name, spec, rules).await;
    let first = first_local_permit(&p).await;
    // Two fast successes, counted; two slow ones, listed with their durations: 2 of 4
    // slow trips the protector once they reach the daemon's window.
    first
        .resolve_timed(Outcome::Success, Duration::from_millis(1))
        .await;
    for took in [1, 150, 100] {
        let permit = p.acquire().await.expect("CLOSED admits");
        assert!(permit.is_local());
        permit
            .resolve_timed(Outcome::Success, Duration::from_millis(took))
            .await;
    }
    let seen = daemon
        .wait_until(name, "tripped by the batched slow calls", |p| {
            p.status() == v1::Status::Open
        })
        .await;
    let counters = seen.counters.expect("counters");
    assert_eq!(counters.successes, 4, "{counters:?}");
    assert_eq!(client.stats().batched_lost, 0);
}

/// A cached protector whose policy has no slow-call rule measures nothing itself, but a
/// duration its caller gives a FAILURE goes with the failure (sent at once) into the
/// daemon's history: a candidate policy with a slow-call rule, replayed on that history,
/// finds the slow failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_failure_keeps_the_duration_its_caller_gave() {
    let daemon = start_daemon().await;
    let client = patient_client(&daemon).await;
    let name = "rules-cached-failure";
    let spec = PolicySpec {
        cooldown: Duration::from_secs(3600),
        failure_limit: (3, 4),
        ..PolicySpec::default()
    };
    let rules = Rules {
        history_size: 100,
        ..Rules::default()
    };
    let p = cached_protector(&client, name, spec, rules).await;
    // Two successes (batched, counted) and two slow failures: no trip under the policy.
    first_local_permit(&p).await.success().await;
    p.acquire().await.expect("CLOSED admits").success().await;
    for _ in 0..2 {
        let permit = p.acquire().await.expect("CLOSED admits");
        assert!(permit.is_local());
        let r = permit
            .resolve_timed(Outcome::Failure, Duration::from_millis(300))
            .await;
        assert_eq!(r.status, Some(Status::Closed));
    }
    // 2 slow calls of 4 (250 ms or more) trip the candidate; 2 failures of 4 do not.
    let candidate = v1::Policy {
        slow_call_duration: Some(convert::duration(Duration::from_millis(250))),
        slow_call_limit: Some(v1::Fraction {
            numerator: 2,
            denominator: 4,
        }),
        ..support::policy(Duration::from_secs(3600), (3, 4), None)
    };
    let answer = daemon
        .admin()
        .await
        .simulate_policy(v1::SimulatePolicyRequest {
            name: name.into(),
            policy: Some(candidate),
        })
        .await
        .expect("simulated")
        .into_inner();
    // (Before them, the history holds the unary permits ignored until the stream synced.)
    assert!(answer.calls >= 4, "{answer:?}");
    let reasons: Vec<_> = answer
        .candidate
        .as_ref()
        .expect("candidate")
        .transitions
        .iter()
        .map(|t| t.reason())
        .collect();
    assert_eq!(reasons, [v1::TransitionReason::SlowCalls], "{answer:?}");
}
