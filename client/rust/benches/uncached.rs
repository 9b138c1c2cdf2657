//! An uncached protector's decision: `acquire()` and `success()` each asked of a daemon
//! started in this process, on the client's Session stream (its default transport).
//!
//! - `uncached/acquire_success`: one decision at a time, two round trips each.
//! - `uncached/acquire_success_64_tasks`: 64 tasks deciding at once on one protector,
//!   the time for each of them to make one decision: what the Session transport costs
//!   when callers pipeline on it (the pending map, the answers handed out, the requests
//!   gathered into frames). `circuitctl bench --mode library` measures the same shape
//!   over loopback against a daemon of its own (BENCHMARKS.md).
//!
//! The client and the daemon share a runtime of two workers.

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use resilient_circuit::{Client, Protector};

/// Tasks deciding at once in the pipelined bench.
const TASKS: u64 = 64;

async fn decide(p: &Protector) {
    let permit = p.acquire().await.expect("CLOSED admits");
    assert!(!permit.is_local(), "the daemon decides");
    std::hint::black_box(permit.success().await);
}

/// An uncached protector on an in-process daemon (kept alive by the returned guard).
fn protector(runtime: &tokio::runtime::Runtime) -> (Protector, support::Daemon) {
    runtime.block_on(async {
        let daemon = support::Daemon::start().await;
        let client = Client::connect(daemon.uri()).await.expect("connects");
        let p = client
            .protector_builder("bench-uncached")
            .build()
            .await
            .expect("builds");
        (p, daemon)
    })
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (p, _daemon) = protector(&runtime);
    let mut group = c.benchmark_group("uncached");

    group.bench_function("acquire_success", |b| {
        b.iter(|| runtime.block_on(decide(&p)));
    });

    group.bench_function("acquire_success_64_tasks", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let began = Instant::now();
                let tasks: Vec<_> = (0..TASKS)
                    .map(|_| {
                        let p = p.clone();
                        tokio::spawn(async move {
                            for _ in 0..iters {
                                decide(&p).await;
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("a deciding task");
                }
                began.elapsed()
            })
        });
    });
    group.finish();
}

criterion_group!(uncached, benches);
criterion_main!(uncached);
