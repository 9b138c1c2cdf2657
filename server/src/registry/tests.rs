//! The registry's ReportBatch in chunks: between two chunks the entry guard is free (an
//! Acquire of the same protector proceeds), and the generation fence still holds. And a
//! change whose record the journal refuses outright is answered from by nobody. And a
//! clock reading older than a protector's latest instant is raised to it.

use std::sync::Arc;
use std::time::Duration;

use resilient_circuit_breaker::{Decision, DecisionReason, Outcome, Policy, PolicySpec, Status};
use tokio_util::sync::CancellationToken;

use super::Registry;
use super::batch::{BATCH_CHUNK, BETWEEN_CHUNKS};
use crate::clock::Clock;
use crate::config::WatchConfig;
use crate::sequencer::Sequencer;
use crate::watch::Watchers;

fn between_chunks_run(hook: impl FnMut(&Registry, &str) + 'static) {
    BETWEEN_CHUNKS.with(|h| *h.borrow_mut() = Some(Box::new(hook)));
}

async fn registry_with(name: &str) -> Arc<Registry> {
    let sequencer = Arc::new(Sequencer::new(&WatchConfig::default(), 0, 1, false));
    let watchers = Watchers::new(1, CancellationToken::new());
    let registry = Arc::new(Registry::new(10, sequencer, watchers, Clock::new(), None));
    let policy = Policy::try_new(PolicySpec::default()).expect("policy");
    registry.ensure(name, policy).await.expect("ensure");
    registry
}

/// Admits a call on `name` as Acquire does, without waiting: the guard must be free.
fn acquire_now(registry: &Registry, name: &str) {
    let free = matches!(
        registry.map.try_get_mut(name),
        dashmap::try_result::TryResult::Present(_)
    );
    assert!(free, "the entry guard is held between chunks");
    registry
        .with_entry(name, |entry, now| Ok(entry.protector.acquire(now)))
        .expect("acquire");
}

#[tokio::test]
async fn a_long_batch_releases_the_guard_between_chunks() {
    let registry = registry_with("big").await;
    let outcomes = vec![Outcome::Success; 3 * BATCH_CHUNK + 1];
    let acquired = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&acquired);
    between_chunks_run(move |registry, name| {
        acquire_now(registry, name);
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    let r = registry
        .report_batch("big", 1, 5, &outcomes)
        .await
        .expect("batch");
    assert_eq!((r.accepted, r.stale), (outcomes.len() as u64 + 5, 0));
    // Four chunks: three pauses, each letting an Acquire through.
    assert_eq!(acquired.load(std::sync::atomic::Ordering::Relaxed), 3);
    let p = registry.get("big").await.expect("get");
    assert_eq!(p.protector.counters().admitted, 3);
    assert_eq!(p.protector.counters().successes, outcomes.len() as u64 + 5);
}

#[tokio::test]
async fn a_transition_between_chunks_makes_the_rest_stale() {
    let registry = registry_with("moved").await;
    let outcomes = vec![Outcome::Success; 2 * BATCH_CHUNK];
    between_chunks_run(|registry, name| {
        registry
            .with_entry(name, |entry, now| {
                let changes = entry.protector.set_status(Status::Open, None, now);
                registry.commit_changes(name, entry, &changes, Vec::new(), super::Keep::Now)
            })
            .expect("set status");
    });
    let r = registry
        .report_batch("moved", 1, 0, &outcomes)
        .await
        .expect("batch");
    assert_eq!((r.accepted, r.stale), (BATCH_CHUNK as u64, BATCH_CHUNK as u64));
    assert_eq!((r.status, r.generation), (Status::Open, 2));
}

#[tokio::test(start_paused = true)]
async fn a_reading_older_than_the_protectors_latest_instant_decides_at_that_instant() {
    let registry = registry_with("late").await;
    let before = registry.clock().now();
    tokio::time::advance(Duration::from_secs(5)).await;
    // Opened for 30 s at the clock read under the guard, 5 s after `before`.
    registry
        .with_entry("late", |entry, now| {
            let changes = entry
                .protector
                .set_status(Status::Open, Some(Duration::from_secs(30)), now);
            registry.commit_changes("late", entry, &changes, Vec::new(), super::Keep::Now)
        })
        .expect("open");
    let retry_after = |at| match registry
        .decide_acquire("late", Some(at))
        .expect("acquire")
        .value
        .decision
    {
        Decision::Rejected { retry_after, .. } => retry_after,
        admitted => panic!("admitted while OPEN: {admitted:?}"),
    };
    // A Session's reading from before the transition is decided at the transition's
    // instant (30 s to wait), not 5 s before it (35 s).
    assert_eq!(retry_after(before), Some(Duration::from_secs(30)));
    // A later reading is taken as it is, and an older one after it is raised to it.
    assert_eq!(
        retry_after(before + Duration::from_secs(15)),
        Some(Duration::from_secs(20))
    );
    assert_eq!(
        retry_after(before + Duration::from_secs(6)),
        Some(Duration::from_secs(20))
    );
    // Read under the guard: the clock itself (5 s after `before`) is older still.
    assert_eq!(
        registry.acquire("late").await.expect("acquire").decision,
        Decision::Rejected {
            reason: DecisionReason::Open,
            retry_after: Some(Duration::from_secs(20)),
        }
    );
}

#[tokio::test]
async fn a_protector_deleted_between_chunks_makes_the_rest_stale() {
    let registry = registry_with("gone").await;
    let outcomes = vec![Outcome::Success; 2 * BATCH_CHUNK + 1];
    let deleting = Arc::clone(&registry);
    between_chunks_run(move |_, name| {
        // Deleting takes the map's entry: it must not be held here.
        let name = name.to_owned();
        let registry = Arc::clone(&deleting);
        futures_util::FutureExt::now_or_never(async move { registry.delete(&name).await })
            .map(|deleted| deleted.ok());
    });
    let r = registry.report_batch("gone", 1, 0, &outcomes).await;
    let r = r.expect("the first chunk was applied: an answer, not NOT_FOUND");
    assert_eq!(
        (r.accepted, r.stale),
        (BATCH_CHUNK as u64, (BATCH_CHUNK + 1) as u64)
    );
    assert!(registry.get("gone").await.is_err(), "deleted");
}

#[tokio::test]
async fn a_change_the_journal_refuses_is_never_answered_from() {
    use crate::store::faults::{Faults, WriteFault};
    use crate::store::{self, StoreConfig};

    let dir = std::env::temp_dir().join(format!(
        "circuitd-registry-refused-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let faults = Faults::new();
    let recovered = store::open(&StoreConfig {
        dir: dir.clone(),
        repair: false,
        segment_bytes: 64 * 1024 * 1024,
        faults: Some(faults.clone()),
    })
    .expect("open an empty store");
    let journal = Arc::clone(&recovered.journal);
    let sequencer = Arc::new(Sequencer::new(&WatchConfig::default(), 0, 1, true));
    sequencer.deliver_on_durable(&journal);
    let watchers = Watchers::new(1, CancellationToken::new());
    let registry = Registry::new(10, sequencer, watchers, Clock::new(), Some(Arc::clone(&journal)));
    let policy = Policy::try_new(PolicySpec::default()).expect("policy");
    registry.ensure("p", policy).await.expect("ensure");
    registry.ensure("other", policy).await.expect("ensure");
    let admitted = registry.acquire("p").await.expect("acquire");
    let resilient_circuit_breaker::Decision::Admitted { permit, .. } = admitted.decision else {
        panic!("CLOSED admits");
    };

    // Another change fails the journal first (as a batch flush can), so the trip's own
    // record is refused at once, after the machine already tripped in memory.
    faults.fail_writes(WriteFault::DiskFull);
    registry
        .set_status("other", Status::Open, None)
        .await
        .expect_err("the disk is full");
    registry
        .report("p", permit, Outcome::Failure)
        .await
        .expect_err("the trip cannot be journaled");

    // Nobody is answered from the tripped state: not an Acquire, not a read.
    assert!(
        registry.acquire("p").await.is_err(),
        "answered OPEN from a state that is not durable"
    );
    assert!(registry.get("p").await.is_err());
    journal.close();
    drop(recovered);
    let _ = std::fs::remove_dir_all(&dir);
}

pub(crate) fn empty_registry() -> Registry {
    let sequencer = Arc::new(Sequencer::new(&WatchConfig::default(), 0, 1, false));
    Registry::new(
        10,
        sequencer,
        Watchers::new(1, CancellationToken::new()),
        Clock::new(),
        None,
    )
}

#[tokio::test]
async fn creators_are_counted_from_the_states_a_registry_is_built_from() {
    use crate::store::record::StoredProtector;
    let policy = Policy::try_new(PolicySpec::default()).expect("policy");
    let creator = super::Creator {
        key: "token:a".into(),
        max: 1,
        display: "token \"a\"".into(),
    };
    let leader = empty_registry();
    leader
        .ensure_as("p", policy, Some(&creator))
        .await
        .expect("1 of 1");
    leader
        .ensure_as("p", policy, Some(&creator))
        .await
        .expect("an existing one");
    let e = leader
        .ensure_as("q", policy, Some(&creator))
        .await
        .expect_err("2 of 1");
    assert!(e.to_string().contains("max_protectors_per_identity"), "{e}");
    assert_eq!(
        leader.len(),
        1,
        "the refused one holds no place under max_protectors"
    );
    leader.delete("p").await.expect("delete");
    assert_eq!(leader.created_by("token:a"), 0);
    leader
        .ensure_as("q", policy, Some(&creator))
        .await
        .expect("freed");

    let protector = resilient_circuit_breaker::Protector::new(policy);
    let stored = |name: &str, who: Option<&str>| StoredProtector::new(name, &protector, 1, 1).created_by(who);
    let follower = empty_registry();
    follower
        .replicate_put(&stored("x", Some("token:a")))
        .expect("put");
    follower
        .replicate_put(&stored("x", Some("token:a")))
        .expect("a later state");
    follower.replicate_put(&stored("y", None)).expect("no creator");
    assert_eq!(follower.created_by("token:a"), 1);
    follower.replicate_delete("x");
    assert_eq!(follower.created_by("token:a"), 0);

    let recovered = empty_registry();
    recovered
        .restore(vec![stored("x", Some("token:a")), stored("z", Some("token:a"))])
        .expect("restore");
    assert_eq!(recovered.created_by("token:a"), 2);
    assert_eq!(stored("x", Some("token:a")).creator.as_deref(), Some("token:a"));
}
