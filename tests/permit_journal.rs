//! Trial permits in the journal: each one handed out or taken back costs a bounded
//! number of bytes however many others are outstanding (a record of the one permit, not
//! the protector's whole state with every permit in flight), and replaying those records
//! brings back exactly the permits the daemon had in flight, with their expiries.

use std::sync::Arc;
use std::time::Duration;

use circuitd::clock::Clock;
use circuitd::config::{StoreSettings, WatchConfig};
use circuitd::registry::Registry;
use circuitd::sequencer::Sequencer;
use circuitd::store::{self, StoreConfig};
use circuitd::watch::Watchers;
use resilient_circuit_api::v1;
use resilient_circuit_breaker::{Decision, Outcome, Permit, Policy, PolicySpec, Status};
use support::process::{Circuitd, segments};
use support::*;

/// Journal bytes allowed per trial Acquire: a record of one permit is well below this
/// (name, the protector's fields but its permits, the permit); a whole state with n
/// permits in flight is about 20 bytes per permit.
const BYTES_PER_TRIAL: u64 = 512;

/// HALF_OPEN with unlimited trial permits (`trial_permits` 0) that live an hour, and a
/// window no unreported trial fills.
fn unlimited_trials() -> v1::Policy {
    let mut p = policy(Duration::ZERO, (500, 1000), None);
    p.trial_permits = Some(0);
    p.permit_ttl = Some(duration(Duration::from_secs(3600)));
    p
}

fn journal_bytes(dir: &std::path::Path) -> u64 {
    segments(dir)
        .iter()
        .map(|s| std::fs::metadata(s).expect("segment metadata").len())
        .sum()
}

#[track_caller]
fn trial(a: &v1::AcquireResponse) -> v1::Permit {
    assert_eq!(a.reason, v1::DecisionReason::Trial as i32, "{a:?}");
    a.permit.expect("permit")
}

#[tokio::test]
async fn unreported_trials_cost_bounded_journal_bytes_each() {
    const TRIALS: u64 = 4_000;
    const TASKS: u64 = 8;
    let dir = TempDir::new("permit-journal-bytes");
    let daemon = Daemon::with_config(circuitd::Config {
        store: Some(StoreSettings {
            // No batch flush and no snapshot: every byte the trials cost stays in the
            // segments.
            flush_interval: Duration::from_secs(3600),
            segment_bytes: 1 << 40,
            ..StoreSettings::new(dir.path())
        }),
        ..circuitd::Config::default()
    })
    .await;
    ensure(&mut daemon.protectors().await, "p", unlimited_trials()).await;
    daemon.set_status("p", v1::Status::HalfOpen).await;
    let base = journal_bytes(dir.path());
    // Rounds of concurrent Acquires (group commits), checked after each round so that
    // quadratic growth fails early rather than writing hundreds of megabytes.
    let mut admitted = 0;
    while admitted < TRIALS {
        let mut tasks = Vec::new();
        for _ in 0..TASKS {
            let mut client = daemon.protectors().await;
            tasks.push(tokio::spawn(async move {
                for _ in 0..TRIALS / TASKS / 4 {
                    trial(&acquire(&mut client, "p").await);
                }
            }));
        }
        for t in tasks {
            t.await.expect("acquire task");
        }
        admitted += TRIALS / 4;
        let bytes = journal_bytes(dir.path()) - base;
        assert!(
            bytes <= admitted * BYTES_PER_TRIAL,
            "{admitted} unreported trials wrote {bytes} journal bytes, more than {BYTES_PER_TRIAL} each"
        );
    }
    let p = get(&mut daemon.protectors().await, "p").await;
    assert_eq!(u64::from(p.trials_in_flight), TRIALS);
    daemon.stop().await.expect("stop");
}

#[tokio::test]
async fn a_killed_daemon_comes_back_with_every_trial_in_flight() {
    let dir = TempDir::new("permit-journal-kill");
    let daemon = Circuitd::start(dir.path(), &[]).await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, "p", unlimited_trials()).await;
    set_status(&mut daemon.admin().await, "p", v1::Status::HalfOpen, None).await;
    let mut permits = Vec::new();
    for _ in 0..600 {
        permits.push(trial(&acquire(&mut client, "p").await));
    }
    // Take back a scattered third, some of them as outcomes in the window.
    let mut reported = Vec::new();
    for (i, permit) in permits.iter().enumerate() {
        let outcome = match i % 9 {
            0 => v1::Outcome::Success,
            3 => v1::Outcome::Failure,
            6 => v1::Outcome::Ignored,
            _ => continue,
        };
        let r = report(&mut client, "p", *permit, outcome).await;
        assert!(r.accepted, "{r:?}");
        reported.push(i);
    }
    let before = get(&mut client, "p").await;
    assert_eq!(before.trials_in_flight as usize, permits.len() - reported.len());
    daemon.kill().await;

    let daemon = Circuitd::start(dir.path(), &[]).await;
    let mut client = daemon.protectors().await;
    let after = get(&mut client, "p").await;
    assert_eq!(
        (
            after.status,
            after.generation,
            after.trials_in_flight,
            after.window
        ),
        (
            before.status,
            before.generation,
            before.trials_in_flight,
            before.window.clone()
        )
    );
    assert_eq!(after.counters, before.counters);
    // The very permits: each outstanding one is accepted once, each reported one is stale.
    for (i, permit) in permits.iter().enumerate() {
        let r = report(&mut client, "p", *permit, v1::Outcome::Ignored).await;
        assert_eq!(r.accepted, !reported.contains(&i), "permit {i}: {r:?}");
    }
    assert_eq!(get(&mut client, "p").await.trials_in_flight, 0);
    daemon.terminate().await.assert_no_panic();
}

/// The registry on a data directory, as `serve` builds it, on a clock starting at `at`.
fn registry_on(dir: &std::path::Path, at: Duration) -> (Arc<Registry>, Arc<store::Journal>, std::fs::File) {
    let recovered = store::open(&StoreConfig {
        dir: dir.to_owned(),
        repair: false,
        segment_bytes: 1 << 40,
        faults: None,
    })
    .expect("open the store");
    let sequencer = Arc::new(Sequencer::new(
        &WatchConfig::default(),
        recovered.revision,
        recovered.epoch,
        true,
    ));
    sequencer.deliver_on_durable(&recovered.journal);
    let registry = Registry::new(
        100,
        sequencer,
        Watchers::new(10, tokio_util::sync::CancellationToken::new()),
        Clock::starting_at(at),
        Some(Arc::clone(&recovered.journal)),
    );
    registry.restore(recovered.protectors).expect("restore");
    (Arc::new(registry), recovered.journal, recovered.lock)
}

/// Unlimited trials that expire after 10 s, and a window of 10,000 that none of this
/// test's outcomes fills (so no transition rewrites the whole state).
fn ten_second_trials() -> Policy {
    Policy::try_new(PolicySpec {
        failure_limit: (5_000, 10_000),
        trial_permits: Some(0),
        permit_ttl: Duration::from_secs(10),
        ..PolicySpec::default()
    })
    .expect("valid policy")
}

async fn admit(registry: &Registry, n: usize) -> Vec<Permit> {
    let mut permits = Vec::with_capacity(n);
    for _ in 0..n {
        match registry.acquire("p").await.expect("acquire").decision {
            Decision::Admitted { permit, .. } => permits.push(permit),
            other => panic!("rejected: {other:?}"),
        }
    }
    permits
}

/// Permits handed out, reported and expired (without a transition, so only the trial
/// records say what happened), then the directory replayed: the protector is exactly
/// the daemon's, every permit in flight with its expiry, the expired ones gone and
/// counted once.
#[tokio::test(start_paused = true)]
async fn replay_yields_exactly_the_permits_in_flight_and_their_expiries() {
    let t0 = Duration::from_secs(1_700_000_000);
    let dir = TempDir::new("permit-journal-replay");
    let (registry, journal, lock) = registry_on(dir.path(), t0);
    registry.ensure("p", ten_second_trials()).await.expect("ensure");
    registry
        .set_status("p", Status::HalfOpen, None)
        .await
        .expect("set_status");
    let first = admit(&registry, 300).await;
    tokio::time::advance(Duration::from_secs(5)).await;
    let second = admit(&registry, 300).await;
    for (i, permit) in first.iter().chain(&second).enumerate() {
        let outcome = match i % 7 {
            0 => Outcome::Success,
            2 => Outcome::Failure,
            4 => Outcome::Ignored,
            _ => continue,
        };
        assert!(
            registry
                .report("p", *permit, outcome)
                .await
                .expect("report")
                .accepted
        );
    }
    // The first batch expires unreported; nobody ticks, so the next Acquire applies the
    // expiries itself, then hands out one more permit.
    tokio::time::advance(Duration::from_secs(6)).await;
    admit(&registry, 1).await;
    let daemon = registry.get("p").await.expect("get").protector;
    assert_eq!(daemon.status(), Status::HalfOpen);
    assert!(daemon.counters().expired_permits > 150, "{:?}", daemon.counters());
    assert!(daemon.trials_in_flight() > 150);

    journal.close();
    drop((registry, journal, lock));
    let recovered = store::open(&StoreConfig {
        dir: dir.path().to_owned(),
        repair: false,
        segment_bytes: 1 << 40,
        faults: None,
    })
    .expect("reopen the store");
    let [stored] = <[_; 1]>::try_from(recovered.protectors).expect("one protector");
    let replayed = stored.protector().expect("a valid protector");
    assert_eq!(replayed.to_state(), daemon.to_state());
    recovered.journal.close();
}
