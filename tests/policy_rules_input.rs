//! Bad input to the rules of proto/SEMANTICS.md section 2a: every policy field's rule,
//! through EnsureProtector and UpdatePolicy, and the durations of Report and
//! ReportBatch, each answered INVALID_ARGUMENT naming the field in a
//! google.rpc.BadRequest; and a history past `--max-history-entries` RESOURCE_EXHAUSTED.

use std::time::Duration;

use circuitd::Config;
use circuitd::config::Limits;
use resilient_circuit_api::v1;
use support::*;
use tonic::{Code, Status};

const HOUR: Duration = Duration::from_secs(3600);

/// The field an INVALID_ARGUMENT names in its BadRequest, checked against the message.
#[track_caller]
fn invalid_field<T>(result: Result<T, Status>, case: &str) -> String {
    crate::bad_input::invalid_field(result.map(drop), case)
}

fn d(seconds: i64, nanos: i32) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos })
}

fn fraction(numerator: u32, denominator: u32) -> Option<v1::Fraction> {
    Some(v1::Fraction {
        numerator,
        denominator,
    })
}

/// One broken rule per case, on a policy otherwise valid (cooldown 10 s).
fn bad_policies() -> Vec<(&'static str, v1::Policy, &'static str)> {
    let base = || policy(Duration::from_secs(10), (1, 2), None);
    let slow = |duration, limit| v1::Policy {
        slow_call_duration: duration,
        slow_call_limit: limit,
        ..base()
    };
    vec![
        (
            "window 0",
            v1::Policy {
                window_duration: d(0, 0),
                ..base()
            },
            "window_duration",
        ),
        (
            "window negative",
            v1::Policy {
                window_duration: d(-1, 0),
                ..base()
            },
            "window_duration",
        ),
        (
            "window above 1 h",
            v1::Policy {
                window_duration: d(3601, 0),
                ..base()
            },
            "window_duration",
        ),
        (
            "minimum_calls without a window",
            v1::Policy {
                minimum_calls: Some(5),
                ..base()
            },
            "minimum_calls",
        ),
        (
            "minimum_calls 0",
            v1::Policy {
                window_duration: d(10, 0),
                minimum_calls: Some(0),
                ..base()
            },
            "minimum_calls",
        ),
        (
            "consecutive_failures above 10,000",
            v1::Policy {
                consecutive_failures: 10_001,
                ..base()
            },
            "consecutive_failures",
        ),
        (
            "slow duration 0",
            slow(d(0, 0), fraction(1, 2)),
            "slow_call_duration",
        ),
        (
            "slow duration negative",
            slow(d(0, -5), fraction(1, 2)),
            "slow_call_duration",
        ),
        (
            "slow duration above 1 h",
            slow(d(3601, 0), fraction(1, 2)),
            "slow_call_duration",
        ),
        (
            "slow duration without a limit",
            slow(d(1, 0), None),
            "slow_call_duration",
        ),
        (
            "slow limit without a duration",
            slow(None, fraction(1, 2)),
            "slow_call_limit",
        ),
        (
            "slow limit above 1",
            slow(d(1, 0), fraction(3, 2)),
            "slow_call_limit",
        ),
        (
            "slow limit 0/5",
            slow(d(1, 0), fraction(0, 5)),
            "slow_call_limit.numerator",
        ),
        (
            "slow limit over 0",
            slow(d(1, 0), fraction(1, 0)),
            "slow_call_limit.denominator",
        ),
        (
            "multiplier below 1",
            v1::Policy {
                cooldown_multiplier: Some(0.5),
                ..base()
            },
            "cooldown_multiplier",
        ),
        (
            "multiplier above 100",
            v1::Policy {
                cooldown_multiplier: Some(101.0),
                ..base()
            },
            "cooldown_multiplier",
        ),
        (
            "multiplier not a number",
            v1::Policy {
                cooldown_multiplier: Some(f64::NAN),
                ..base()
            },
            "cooldown_multiplier",
        ),
        (
            "max_cooldown below cooldown",
            v1::Policy {
                max_cooldown: d(9, 0),
                ..base()
            },
            "max_cooldown",
        ),
        (
            "max_cooldown 0",
            v1::Policy {
                max_cooldown: d(0, 0),
                ..policy(Duration::ZERO, (1, 2), None)
            },
            "max_cooldown",
        ),
        (
            "max_cooldown above 30 days",
            v1::Policy {
                max_cooldown: d(30 * 24 * 3600 + 1, 0),
                ..base()
            },
            "max_cooldown",
        ),
        (
            "history above 1,000,000",
            v1::Policy {
                history_size: 1_000_001,
                ..base()
            },
            "history_size",
        ),
    ]
}

#[tokio::test]
async fn every_broken_rule_is_named_by_ensure_and_update_policy() {
    let daemon = Daemon::start().await;
    let (mut p, mut a) = (daemon.protectors().await, daemon.admin().await);
    ensure(&mut p, "exists", policy(Duration::from_secs(10), (1, 2), None)).await;
    for (case, bad, field) in bad_policies() {
        let expected = format!("policy.{field}");
        let ensured = p
            .ensure_protector(v1::EnsureProtectorRequest {
                name: "new".into(),
                policy: Some(bad),
            })
            .await;
        assert_eq!(invalid_field(ensured, case), expected, "EnsureProtector: {case}");
        let updated = a
            .update_policy(v1::UpdatePolicyRequest {
                name: "exists".into(),
                policy: Some(bad),
            })
            .await;
        assert_eq!(invalid_field(updated, case), expected, "UpdatePolicy: {case}");
    }
    let (all, _) = list_all(&mut p).await;
    assert_eq!(all.len(), 1, "nothing was created");
    assert_eq!(all[0].policy_revision, 1, "nothing was updated");
}

#[tokio::test]
async fn bad_durations_of_reports_are_named() {
    let daemon = Daemon::start().await;
    let mut p = daemon.protectors().await;
    ensure(&mut p, "d", policy(HOUR, (1, 2), None)).await;
    let untracked = v1::Permit {
        generation: 1,
        id: 0,
        expires_at: None,
    };
    for (case, took) in [
        ("negative", d(-1, 0)),
        ("above 1 h", d(3600, 1)),
        ("malformed", d(1, -1)),
    ] {
        let r = p
            .report(v1::ReportRequest {
                name: "d".into(),
                permit: Some(untracked),
                outcome: v1::Outcome::Success as i32,
                duration: took,
            })
            .await;
        assert_eq!(invalid_field(r, case), "duration", "{case}");
    }
    let batch = |outcomes: usize, durations: Vec<Option<prost_types::Duration>>| v1::ReportBatchRequest {
        batches: vec![
            v1::OutcomeBatch {
                name: "d".into(),
                generation: 1,
                successes: 1,
                ..Default::default()
            },
            v1::OutcomeBatch {
                name: "d".into(),
                generation: 1,
                successes: 0,
                outcomes: vec![v1::Outcome::Success as i32; outcomes],
                durations: durations.into_iter().flatten().collect(),
            },
        ],
    };
    for (case, outcomes, durations, field) in [
        ("negative", 2, vec![d(0, 1), d(-2, 0)], "batches[1].durations[1]"),
        ("above 1 h", 1, vec![d(7200, 0)], "batches[1].durations[0]"),
        (
            "more durations than outcomes",
            1,
            vec![d(1, 0), d(1, 0)],
            "batches[1].durations",
        ),
    ] {
        let r = p
            .report_batch(batch(outcomes, durations))
            .await
            .expect("ReportBatch answers per batch")
            .into_inner();
        assert_eq!(r.results[0].error, None, "{case}: the first batch is fine");
        let error = r.results[1].error.clone().expect(case);
        assert_eq!(error.code, Code::InvalidArgument as i32, "{case}: {error:?}");
        assert!(error.message.contains(field), "{case}: {error:?}");
    }
    // A zero duration is a valid one (a call that took no measurable time).
    let r = p
        .report(v1::ReportRequest {
            name: "d".into(),
            permit: Some(untracked),
            outcome: v1::Outcome::Success as i32,
            duration: d(0, 0),
        })
        .await
        .expect("Report")
        .into_inner();
    assert!(r.accepted);
}

#[tokio::test]
async fn histories_are_bounded_daemon_wide() {
    let daemon = Daemon::with_config(Config {
        limits: Limits {
            max_history_entries: 100,
            ..Limits::default()
        },
        ..Config::default()
    })
    .await;
    let mut p = daemon.protectors().await;
    let keeping = |history_size| v1::Policy {
        history_size,
        ..policy(HOUR, (1, 2), None)
    };
    ensure(&mut p, "a", keeping(60)).await;
    let refused = p
        .ensure_protector(v1::EnsureProtectorRequest {
            name: "b".into(),
            policy: Some(keeping(41)),
        })
        .await
        .expect_err("past max_history_entries");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("max_history_entries"), "{refused:?}");
    ensure(&mut p, "b", keeping(40)).await;
    call(&mut p, "b", v1::Outcome::Success).await;
    assert_eq!(get(&mut p, "b").await.history_len, 1);
}
