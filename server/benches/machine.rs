//! The pure status machine, without the daemon around it: what one decision costs when
//! nothing but the machine is measured.
//!
//! Every routine runs at one fixed instant, so no clock read is measured, and on a
//! policy whose CLOSED window is 10 outcomes (failure_limit 5/10) unless a trip is the
//! point. Under `cargo test --benches` criterion runs each routine once.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use resilient_circuit_breaker::{
    Decision, DecisionReason, Outcome, Permit, Policy, PolicySpec, Protector, Status, Time,
};

/// A realistic wall-clock instant; the machine only compares instants.
const NOW: Time = Time::from_secs(1_700_000_000);

/// How many outcomes one batch carries.
const BATCH: u64 = 1_000;

fn policy(failure_limit: (u32, u32), cooldown: Duration) -> Policy {
    Policy::try_new(PolicySpec {
        failure_limit,
        cooldown,
        ..PolicySpec::default()
    })
    .expect("bench policy is valid")
}

fn admitted(p: &mut Protector, now: Time) -> Permit {
    match p.acquire(now).decision {
        Decision::Admitted { permit, .. } => permit,
        other => panic!("expected admission, got {other:?}"),
    }
}

fn closed(c: &mut Criterion) {
    let mut p = Protector::new(policy((5, 10), Duration::from_secs(10)));
    c.bench_function("machine/closed_acquire_report_success", |b| {
        b.iter(|| {
            let permit = admitted(&mut p, NOW);
            black_box(p.report(black_box(permit), Outcome::Success, NOW))
        })
    });
    assert_eq!((p.status(), p.generation()), (Status::Closed, 1));
}

fn open(c: &mut Criterion) {
    // An hour of cooldown: every acquire of the run falls inside it.
    let mut p = Protector::new(policy((1, 1), Duration::from_secs(3600)));
    let permit = admitted(&mut p, NOW);
    assert!(p.report(permit, Outcome::Failure, NOW).transition.is_some());
    c.bench_function("machine/open_acquire_rejected", |b| {
        b.iter(|| {
            let r = p.acquire(black_box(NOW));
            debug_assert!(matches!(
                r.decision,
                Decision::Rejected {
                    reason: DecisionReason::Open,
                    ..
                }
            ));
            black_box(r)
        })
    });
    assert_eq!(p.status(), Status::Open);
}

fn trip_and_recover(c: &mut Criterion) {
    // failure_limit 1/1 and no cooldown: one failure trips, the next acquire is the
    // trial, its success closes. Three transitions per iteration.
    let mut p = Protector::new(policy((1, 1), Duration::ZERO));
    c.bench_function("machine/trip_recover_cycle", |b| {
        b.iter(|| {
            let permit = admitted(&mut p, NOW);
            let tripped = p.report(permit, Outcome::Failure, NOW);
            debug_assert_eq!(p.status(), Status::Open);
            let trial = admitted(&mut p, NOW);
            let closed = p.report(trial, Outcome::Success, NOW);
            debug_assert_eq!(p.status(), Status::Closed);
            black_box((tripped, closed))
        })
    });
    assert_eq!(p.status(), Status::Closed);
}

fn batches(c: &mut Criterion) {
    let mut group = c.benchmark_group("machine/report_batch_1000_successes");
    group.throughput(Throughput::Elements(BATCH));

    // As a count: the form a cached client sends.
    let mut p = Protector::new(policy((5, 10), Duration::from_secs(10)));
    group.bench_function("as_count", |b| {
        b.iter(|| {
            let r = p.report_batch(black_box(1), black_box(BATCH), &[], NOW);
            debug_assert_eq!(r.accepted, BATCH);
            black_box(r)
        })
    });
    assert_eq!(p.counters().stale_reports, 0);

    // As a list of SUCCESS outcomes: the per-outcome path of the same batch.
    let outcomes = vec![Outcome::Success; BATCH as usize];
    let mut p = Protector::new(policy((5, 10), Duration::from_secs(10)));
    group.bench_function("as_outcomes", |b| {
        b.iter(|| {
            let r = p.report_batch(black_box(1), 0, black_box(&outcomes), NOW);
            debug_assert_eq!(r.accepted, BATCH);
            black_box(r)
        })
    });
    assert_eq!(p.counters().stale_reports, 0);

    // A batch that arrives after a trip: every outcome is counted stale.
    group.bench_function("stale_generation", |b| {
        b.iter_batched_ref(
            || {
                let mut p = Protector::new(policy((1, 1), Duration::from_secs(3600)));
                let permit = admitted(&mut p, NOW);
                p.report(permit, Outcome::Failure, NOW);
                p
            },
            |p| black_box(p.report_batch(1, 0, &outcomes, NOW)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, closed, open, trip_and_recover, batches);
criterion_main!(benches);
