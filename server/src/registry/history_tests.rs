//! The what-if history in the registry: kept for accepted outcomes only, bounded by the
//! policy and the daemon's limit, resized by UpdatePolicy, copied out by `history`.

use std::time::Duration;

use resilient_circuit_breaker::{Decision, Outcome, Policy, PolicySpec, Rules};

use super::Registry;
use crate::error::Error;

fn registry(max_history: usize) -> Registry {
    super::super::tests::empty_registry().with_max_history(max_history)
}

fn keeping(history_size: u32) -> Policy {
    let spec = PolicySpec {
        failure_limit: (1, 2),
        ..PolicySpec::default()
    };
    let rules = Rules {
        history_size,
        ..Rules::default()
    };
    Policy::try_with(spec, rules).expect("policy")
}

async fn call(registry: &Registry, name: &str, outcome: Outcome, ms: u64) {
    let acquired = registry.acquire(name).await.expect("acquire");
    let Decision::Admitted { permit, .. } = acquired.decision else {
        panic!("rejected")
    };
    registry
        .report_timed(name, permit, outcome, Some(Duration::from_millis(ms)))
        .await
        .expect("report");
}

#[tokio::test]
async fn accepted_outcomes_are_kept_newest_last_and_resized_by_update_policy() {
    let registry = registry(100);
    let ensured = registry.ensure("p", keeping(3)).await.expect("ensure");
    assert_eq!(ensured.view.policy_revision, ensured.revision);
    for ms in 1..=4 {
        call(&registry, "p", Outcome::Success, ms).await;
    }
    let (policy, entries) = registry.history("p").expect("history");
    assert_eq!(policy, keeping(3));
    let durations: Vec<_> = entries.iter().map(|e| e.duration.unwrap().as_millis()).collect();
    assert_eq!(durations, vec![2, 3, 4]);
    assert_eq!(registry.get("p").await.expect("get").history_len, 3);
    assert_eq!(registry.history_entries(), 3);

    // A batch's successes and listed outcomes are noted too, with their durations.
    let generation = registry.get("p").await.expect("get").protector.generation();
    registry
        .report_batch_timed(
            "p",
            generation,
            1,
            &[Outcome::Success],
            &[Duration::from_millis(9)],
        )
        .await
        .expect("batch");
    let (_, entries) = registry.history("p").expect("history");
    let durations: Vec<_> = entries
        .iter()
        .map(|e| e.duration.map(|d| d.as_millis()))
        .collect();
    assert_eq!(durations, vec![Some(4), None, Some(9)]);

    let (view, revision) = registry.update_policy("p", keeping(2)).await.expect("update");
    assert_eq!(view.policy_revision, revision);
    assert_eq!(view.history_len, 2, "the newest two are kept");
    assert_eq!(registry.history_entries(), 2);
    registry.update_policy("p", keeping(0)).await.expect("update");
    assert!(registry.history("p").expect("history").1.is_empty());
    assert_eq!(registry.history_entries(), 0);
}

#[tokio::test]
async fn histories_past_the_daemon_limit_are_refused() {
    let registry = registry(10);
    registry.ensure("a", keeping(6)).await.expect("ensure");
    let refused = registry.ensure("b", keeping(5)).await;
    assert!(
        matches!(
            refused,
            Err(Error::ResourceExhausted {
                limit: "max_history_entries",
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(registry.len(), 1, "nothing was created");
    registry.ensure("b", keeping(4)).await.expect("fits exactly");
    let refused = registry.update_policy("a", keeping(7)).await;
    assert!(
        matches!(refused, Err(Error::ResourceExhausted { .. })),
        "{refused:?}"
    );
    registry.delete("a").await.expect("delete");
    registry
        .ensure("c", keeping(6))
        .await
        .expect("a deletion frees its room");
    assert_eq!(registry.history_entries(), 10);
}

#[tokio::test]
async fn a_replica_applies_the_leaders_rules_buckets_and_policy_revision_but_keeps_no_history() {
    use crate::store::record::StoredProtector;
    let leader = registry(100);
    let timed = {
        let spec = PolicySpec {
            failure_limit: (9, 10),
            ..PolicySpec::default()
        };
        let rules = Rules {
            window_duration: Some(Duration::from_secs(60)),
            slow_call_duration: Some(Duration::from_millis(5)),
            slow_call_limit: Some((9, 10)),
            history_size: 10,
            ..Rules::default()
        };
        Policy::try_with(spec, rules).expect("policy")
    };
    leader.ensure("p", keeping(3)).await.expect("ensure");
    let (_, revision) = leader.update_policy("p", timed).await.expect("update");
    call(&leader, "p", Outcome::Failure, 9).await;
    call(&leader, "p", Outcome::Success, 1).await;
    let view = leader.get("p").await.expect("get");
    let stored = StoredProtector::new("p", &view.protector, view.mod_revision, 7).policy_set_at(revision);

    let follower = registry(100);
    follower.replicate_put(&stored).expect("replicate");
    let replica = follower.get("p").await.expect("get");
    assert_eq!(replica.protector, view.protector, "rules, buckets and slow marks");
    let w = replica.protector.time_window().expect("time window");
    assert_eq!((w.calls(), w.failures(), w.slow()), (2, 1, 1));
    assert_eq!(replica.policy_revision, revision);
    assert_eq!((replica.history_len, follower.history_entries()), (0, 0));
}
