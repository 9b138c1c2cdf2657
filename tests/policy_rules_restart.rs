//! The rules of proto/SEMANTICS.md section 2a over time and across restarts: outcomes
//! leave a time window as time passes (tokio's clock paused and advanced, the daemon's
//! registry on an injected clock), and a restart keeps the policy's rules, the time
//! window's buckets, the count window's slow marks and `policy_revision` (the what-if
//! history, memory only, starts empty).

use std::sync::Arc;
use std::time::Duration;

use circuitd::clock::Clock;
use circuitd::config::{StoreSettings, WatchConfig};
use circuitd::registry::Registry;
use circuitd::sequencer::Sequencer;
use circuitd::watch::Watchers;
use resilient_circuit_api::v1;
use resilient_circuit_breaker::{Decision, Outcome, Policy, PolicySpec, Rules, Status, TransitionReason};
use support::*;

const HOUR: Duration = Duration::from_secs(3600);
const MS: Duration = Duration::from_millis(1);

async fn registry_call(
    registry: &Registry,
    outcome: Outcome,
) -> Option<resilient_circuit_breaker::Transition> {
    let Decision::Admitted { permit, .. } = registry.acquire("tw").await.expect("acquire").decision else {
        panic!("rejected")
    };
    registry
        .report("tw", permit, outcome)
        .await
        .expect("report")
        .transition
}

#[tokio::test(start_paused = true)]
async fn outcomes_older_than_the_window_no_longer_count() {
    let t0 = Duration::from_secs(1_700_000_000);
    let sequencer = Arc::new(Sequencer::new(&WatchConfig::default(), 0, 1, false));
    let watchers = Watchers::new(1, tokio_util::sync::CancellationToken::new());
    let registry = Registry::new(10, sequencer, watchers, Clock::starting_at(t0), None);
    let spec = PolicySpec {
        failure_limit: (1, 2),
        cooldown: HOUR,
        ..PolicySpec::default()
    };
    let rules = Rules {
        window_duration: Some(Duration::from_secs(10)),
        minimum_calls: Some(2),
        ..Rules::default()
    };
    registry
        .ensure("tw", Policy::try_with(spec, rules).expect("policy"))
        .await
        .expect("ensure");

    assert_eq!(
        registry_call(&registry, Outcome::Failure).await,
        None,
        "one call: below minimum_calls"
    );
    // 100 ms buckets, 100 of them: past 10 s the first failure has left the window.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(
        registry_call(&registry, Outcome::Failure).await,
        None,
        "the first one left the window"
    );
    let window = registry.get("tw").await.expect("get").protector;
    let w = window.time_window().expect("time window");
    assert_eq!((w.calls(), w.failures()), (1, 1));
    // Within the window, the second failure makes 2 of 2.
    tokio::time::advance(Duration::from_secs(9)).await;
    let trip = registry_call(&registry, Outcome::Failure)
        .await
        .expect("2 failures within 10 s trip");
    assert_eq!(
        (trip.to, trip.reason),
        (Status::Open, TransitionReason::FailureLimit)
    );
}

#[tokio::test]
async fn a_restart_keeps_rules_buckets_slow_marks_and_the_policy_revision() {
    let dir = TempDir::new("policy-rules-restart");
    let config = circuitd::Config {
        store: Some(StoreSettings::new(dir.path())),
        ..circuitd::Config::default()
    };
    let mut daemon = Daemon::with_config(config).await;
    let mut client = daemon.protectors().await;
    let mut admin = daemon.admin().await;
    let slow = v1::Policy {
        slow_call_duration: Some(duration(100 * MS)),
        slow_call_limit: Some(v1::Fraction {
            numerator: 9,
            denominator: 10,
        }),
        history_size: 10,
        cooldown_multiplier: Some(1.5),
        max_cooldown: Some(duration(2 * HOUR)),
        consecutive_failures: 50,
        ..policy(HOUR, (1, 2), None)
    };
    let timed = v1::Policy {
        window_duration: Some(duration(HOUR)),
        minimum_calls: Some(5),
        ..slow
    };
    ensure(&mut client, "tw", slow).await;
    // The policy set last, by UpdatePolicy, is the one the revision names.
    let updated = update_policy(&mut admin, "tw", timed).await;
    ensure(
        &mut client,
        "cw",
        v1::Policy {
            failure_limit: Some(v1::Fraction {
                numerator: 10,
                denominator: 10,
            }),
            ..slow
        },
    )
    .await;
    for (i, name) in [(0, "tw"), (1, "tw"), (2, "tw"), (3, "tw"), (0, "cw"), (1, "cw")] {
        let a = acquire(&mut client, name).await;
        let outcome = if i == 0 {
            v1::Outcome::Success
        } else {
            v1::Outcome::Failure
        };
        let r = client
            .report(v1::ReportRequest {
                name: name.into(),
                permit: a.permit,
                outcome: outcome as i32,
                duration: Some(duration(if i % 2 == 0 { 500 * MS } else { MS })),
            })
            .await
            .expect("Report")
            .into_inner();
        assert_eq!(r.transition, None, "{name} {i}");
    }
    let before_tw = get(&mut client, "tw").await;
    let before_cw = get(&mut client, "cw").await;
    assert_eq!(before_tw.history_len, 4);
    let w = before_tw.time_window.expect("time window");
    assert_eq!((w.calls, w.failures, w.slow_calls), (4, 3, 2));
    assert_eq!(before_cw.window.clone().expect("window").slow_calls, 1);

    daemon.stop_in_place().await;
    daemon.start_again().await;
    let mut client = daemon.protectors().await;
    let after_tw = get(&mut client, "tw").await;
    let after_cw = get(&mut client, "cw").await;
    assert_eq!(after_tw.policy, before_tw.policy, "the rules are kept");
    assert_eq!(after_tw.policy, Some(normalized(timed)));
    assert_eq!(
        after_tw.time_window, before_tw.time_window,
        "the buckets are kept"
    );
    assert_eq!(after_tw.policy_revision, updated.revision);
    assert_eq!(after_cw.window, before_cw.window, "the slow marks are kept");
    assert_eq!(after_tw.history_len, 0, "the history is memory only");
    assert_eq!(acquire(&mut client, "tw").await.policy_revision, updated.revision);

    // The restored window goes on counting: a fifth call reaches minimum_calls, and
    // 4 failures of 5 trip.
    let trip = call(&mut client, "tw", v1::Outcome::Failure)
        .await
        .transition
        .expect("the restored buckets count towards the trip");
    assert_eq!(trip.reason, v1::TransitionReason::FailureLimit as i32);
    daemon.stop().await.expect("stop");
}

/// The policy as the daemon sends it back: defaults filled in.
fn normalized(p: v1::Policy) -> v1::Policy {
    let checked = resilient_circuit_api::convert::policy(&p).expect("valid");
    (&checked).into()
}
