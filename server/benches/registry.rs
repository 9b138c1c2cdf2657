//! The registry as the daemon runs it in memory: the map lookup, the entry guard, the
//! clock read, the status machine and the sequencer's revision, without the gRPC transport.
//!
//! The registry is built as `serve` builds it without a store (a `Sequencer` on the
//! default watch settings, the default `max_protectors` and `max_watchers`, the real
//! clock). Its operations are async, so each routine runs on a current-thread tokio
//! runtime through criterion's `to_async`, one operation after another from one thread.
//!
//! `registry/trial_acquire_report_N_outstanding` takes and returns one HALF_OPEN trial
//! permit beside N unreported ones (0 and 10,000): its cost must not grow with N.
//!
//! The memory figure is the process's resident set (VmRSS) before and after creating the
//! protectors, printed once; it includes the map, the machines and the sequencer's bounded
//! history of CREATED events, as in the daemon. Under `cargo test --benches` (criterion's
//! test mode) a smaller fleet is created so the run stays short.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use circuitd::Config;
use circuitd::clock::Clock;
use circuitd::registry::Registry;
use circuitd::sequencer::Sequencer;
use circuitd::watch::Watchers;
use criterion::{Criterion, criterion_group, criterion_main};
use resilient_circuit_breaker::{Decision, Outcome, Policy, PolicySpec, Status};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// The fleet of the scale target: 100,000 protectors with a window of 10.
const FLEET: usize = 100_000;
/// A fleet that fits in the caches, for comparison.
const SMALL_FLEET: usize = 1_000;
/// The fleet when criterion runs in test mode.
const TEST_FLEET: usize = 1_000;
/// Unreported trial permits beside the measured trial Acquire.
const OUTSTANDING_TRIALS: usize = 10_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

/// A registry as `serve` builds it in memory.
fn registry(config: &Config) -> Arc<Registry> {
    let sequencer = Arc::new(Sequencer::new(
        &config.watch,
        0,
        circuitd::store::new_epoch(),
        false,
    ));
    let watchers = Watchers::new(config.limits.max_watchers, CancellationToken::new());
    Arc::new(Registry::new(
        config.limits.max_protectors,
        sequencer,
        watchers,
        Clock::new(),
        None,
    ))
}

/// A window of 10 that a run of successes never trips.
fn policy() -> Policy {
    Policy::try_new(PolicySpec {
        failure_limit: (5, 10),
        cooldown: Duration::from_secs(10),
        ..PolicySpec::default()
    })
    .expect("bench policy is valid")
}

/// One call: acquire, then report its success.
async fn call(registry: &Registry, name: &str) {
    let acquired = registry.acquire(name).await.expect("acquire");
    let Decision::Admitted { permit, .. } = acquired.decision else {
        panic!("{name} rejected: {acquired:?}");
    };
    let reported = registry
        .report(name, permit, Outcome::Success)
        .await
        .expect("report");
    debug_assert!(reported.accepted);
    black_box(reported);
}

/// The resident set of this process, in KiB, from /proc/self/status.
fn vm_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Whether criterion measures (`cargo bench` passes `--bench`) rather than tests.
fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A small xorshift: the pick must cost next to nothing and need no extra crate.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn hot(c: &mut Criterion) {
    let rt = runtime();
    let config = Config::default();
    let registry = rt.block_on(async {
        let registry = registry(&config);
        registry.ensure("hot", policy()).await.expect("ensure");
        registry
    });
    c.bench_function("registry/hot_acquire_report", |b| {
        b.to_async(&rt).iter(|| call(&registry, "hot"))
    });
    let view = rt.block_on(registry.get("hot")).expect("hot exists");
    assert_eq!(view.protector.counters().stale_reports, 0);
}

/// Creates `size` protectors, printing what they cost in resident memory when `report`.
fn build_fleet(rt: &Runtime, names: &[String], report: bool) -> Arc<Registry> {
    let config = Config::default();
    let before = vm_rss_kib();
    let started = Instant::now();
    let registry = rt.block_on(async {
        let registry = registry(&config);
        for name in names {
            registry.ensure(name, policy()).await.expect("ensure");
        }
        registry
    });
    let took = started.elapsed();
    let after = vm_rss_kib();
    let size = names.len();
    assert_eq!(registry.len(), size);
    if !report {
        return registry;
    }
    match (before, after) {
        (Some(before), Some(after)) => println!(
            "registry/memory: {size} protectors (window 10) created in {took:.2?}; \
             VmRSS {:.1} MiB before, {:.1} MiB after, +{:.1} MiB ({:.0} bytes per protector)",
            mib(before),
            mib(after),
            mib(after.saturating_sub(before)),
            after.saturating_sub(before) as f64 * 1024.0 / size as f64,
        ),
        _ => println!("registry/memory: {size} protectors created in {took:.2?}; VmRSS unavailable"),
    }
    registry
}

fn fleet(c: &mut Criterion) {
    // The large fleet first, so its memory is measured in a process that has not yet
    // allocated (and kept) a registry. The small one separates the cost of a random pick
    // from the cost of a fleet that no longer fits in the caches.
    let sizes: &[usize] = if measuring() {
        &[FLEET, SMALL_FLEET]
    } else {
        &[TEST_FLEET]
    };
    let rt = runtime();
    for (i, &size) in sizes.iter().enumerate() {
        let names: Vec<String> = (0..size).map(|i| format!("fleet.p{i:06}")).collect();
        let registry = build_fleet(&rt, &names, i == 0);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        c.bench_function(&format!("registry/fleet_{size}_random_acquire_report"), |b| {
            b.to_async(&rt).iter(|| {
                let name = &names[(next(&mut state) % size as u64) as usize];
                call(&registry, name)
            })
        });
    }
}

/// HALF_OPEN with unlimited trial permits (`trial_permits` 0) that live an hour, and a
/// window of 10,000 that IGNORED outcomes never fill.
fn unlimited_trials() -> Policy {
    Policy::try_new(PolicySpec {
        failure_limit: (5_000, 10_000),
        trial_permits: Some(0),
        permit_ttl: Duration::from_secs(3600),
        ..PolicySpec::default()
    })
    .expect("bench policy is valid")
}

/// A trial Acquire and its IGNORED report beside 0 or 10,000 unreported trial permits:
/// taking a permit, taking it back and finding the next expiry must not grow with them.
fn trials(c: &mut Criterion) {
    let rt = runtime();
    for outstanding in [0, OUTSTANDING_TRIALS] {
        let registry = rt.block_on(async {
            let registry = registry(&Config::default());
            registry
                .ensure("trials", unlimited_trials())
                .await
                .expect("ensure");
            registry
                .set_status("trials", Status::HalfOpen, None)
                .await
                .expect("half-open");
            for _ in 0..outstanding {
                let acquired = registry.acquire("trials").await.expect("acquire");
                assert!(acquired.decision.is_admitted(), "{acquired:?}");
            }
            registry
        });
        c.bench_function(
            &format!("registry/trial_acquire_report_{outstanding}_outstanding"),
            |b| {
                b.to_async(&rt).iter(|| async {
                    let acquired = registry.acquire("trials").await.expect("acquire");
                    let Decision::Admitted { permit, .. } = acquired.decision else {
                        panic!("rejected: {acquired:?}");
                    };
                    let reported = registry
                        .report("trials", permit, Outcome::Ignored)
                        .await
                        .expect("report");
                    debug_assert!(reported.accepted);
                })
            },
        );
        let view = rt.block_on(registry.get("trials")).expect("trials exists");
        assert_eq!(view.protector.trials_in_flight() as usize, outstanding);
    }
}

criterion_group!(benches, hot, fleet, trials);
criterion_main!(benches);
