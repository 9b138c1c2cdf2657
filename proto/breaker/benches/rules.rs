//! The cost of the optional rules of proto/SEMANTICS.md section 2a on the hot path, and of
//! a what-if replay.
//!
//! - `record/*`: one Acquire + Report in CLOSED, on the count window of today's policies
//!   and on a 60 s time window with the slow-call rule and a streak rule on. The clock
//!   advances 1 ms per call (100 ms buckets roll every 100 calls) and every 8th call fails,
//!   below every limit, so both routines measure the record-and-judge path, never a trip.
//! - `replay/100k`: [`replay`] of 100,000 outcomes (1 ms apart, failures in bursts that
//!   trip and recover) through a candidate with a time window, slow calls and backoff.
//!
//! Under `cargo test --benches` criterion runs each routine once.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use resilient_circuit_breaker::{
    Decision, HistoryEntry, Multiplier, Outcome, Policy, PolicySpec, Protector, Rules, Status, Time, replay,
};

/// A realistic wall-clock instant.
const T0: Time = Time::from_secs(1_700_000_000);

fn spec() -> PolicySpec {
    PolicySpec {
        failure_limit: (5, 10),
        cooldown: Duration::from_secs(5),
        ..PolicySpec::default()
    }
}

fn rich() -> Rules {
    Rules {
        window_duration: Some(Duration::from_secs(60)),
        minimum_calls: Some(10),
        consecutive_failures: 5,
        slow_call_duration: Some(Duration::from_millis(500)),
        slow_call_limit: Some((1, 2)),
        cooldown_multiplier: Multiplier::thousandths(2_000),
        max_cooldown: Some(Duration::from_secs(60)),
        ..Rules::default()
    }
}

/// Acquire + Report of call `n` at `T0 + n ms`, taking 20 ms; every 8th fails.
fn one_call(p: &mut Protector, n: u64) {
    let now = T0 + Duration::from_millis(n);
    let Decision::Admitted { permit, .. } = p.acquire(now).decision else {
        panic!("a bench call was rejected")
    };
    let outcome = if n.is_multiple_of(8) {
        Outcome::Failure
    } else {
        Outcome::Success
    };
    black_box(p.report_timed(permit, outcome, Some(Duration::from_millis(20)), now));
}

fn record(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    for (name, rules) in [
        ("count_window", Rules::default()),
        ("time_window_slow_streak", rich()),
    ] {
        let mut p = Protector::new(Policy::try_with(spec(), rules).expect("bench policy is valid"));
        let mut n = 1;
        group.bench_function(name, |b| {
            b.iter(|| {
                one_call(&mut p, n);
                n += 1;
            })
        });
        assert_eq!(p.status(), Status::Closed, "{name} tripped");
    }
    group.finish();
}

/// 100,000 calls 1 ms apart: mostly fast successes, with every 10,000 calls a burst of
/// 300 slow failures that trips the candidate.
fn history() -> Vec<HistoryEntry> {
    (0..100_000u64)
        .map(|n| {
            let burst = n % 10_000 < 300;
            HistoryEntry {
                at: T0 + Duration::from_millis(n),
                outcome: if burst { Outcome::Failure } else { Outcome::Success },
                duration: Some(Duration::from_millis(if burst { 900 } else { 20 })),
            }
        })
        .collect()
}

fn what_if(c: &mut Criterion) {
    let history = history();
    let candidate = Policy::try_with(spec(), rich()).expect("bench policy is valid");
    let first = replay(candidate, &history);
    assert!(first.transitions.len() >= 10 && first.rejected > 0, "{first:?}");
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(history.len() as u64));
    group.sample_size(20);
    group.bench_function("100k", |b| {
        b.iter(|| black_box(replay(candidate, black_box(&history))))
    });
    group.finish();
}

criterion_group!(benches, record, what_if);
criterion_main!(benches);
