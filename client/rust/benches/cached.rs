//! A cached protector's local decision: `acquire()` answered from the cached state and
//! `success()` counted for the next batch, against a daemon started in this process.
//!
//! - `cached/acquire_success`: one thread deciding alone.
//! - `cached/acquire_success_shared_by_2_threads`: two threads deciding at once on the
//!   same protector (clones of one handle), the time for both threads' decisions of one
//!   iteration each: what sharing a protector costs. Before the counters were striped
//!   (`stripe.rs`), every decision of both threads wrote the same cache lines.
//!
//! The daemon and the protector's Watch and flusher run on a runtime of their own; the
//! measuring threads run no runtime, as application threads calling a library would.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use resilient_circuit::{Client, PolicySpec, Protector, ProtectorPolicy};

fn decide(p: &Protector) {
    let permit = p
        .acquire()
        .now_or_never()
        .expect("a local decision never waits")
        .expect("CLOSED admits");
    assert!(permit.is_local(), "the cached state decides");
    std::hint::black_box(
        permit
            .success()
            .now_or_never()
            .expect("a local success never waits"),
    );
}

/// A synced cached protector on an in-process daemon (kept alive by the returned guard).
fn protector(runtime: &tokio::runtime::Runtime) -> (Protector, support::Daemon) {
    runtime.block_on(async {
        let daemon = support::Daemon::start().await;
        let client = Client::connect(daemon.uri()).await.expect("connects");
        let policy = ProtectorPolicy::try_new(PolicySpec {
            failure_limit: (5, 10),
            ..PolicySpec::default()
        })
        .expect("a valid policy");
        let p = client
            .protector_builder("bench-cached")
            .policy(policy)
            .cached(true)
            .build()
            .await
            .expect("builds");
        // Local once the Watch stream has synced.
        let give_up = Instant::now() + support::DEADLINE;
        loop {
            let permit = p.acquire().await.expect("admits");
            let local = permit.is_local();
            permit.ignore().await;
            if local {
                break;
            }
            assert!(Instant::now() < give_up, "never admitted locally");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (p, daemon)
    })
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let (p, _daemon) = protector(&runtime);

    c.bench_function("cached/acquire_success", |b| b.iter(|| decide(&p)));

    c.bench_function("cached/acquire_success_shared_by_2_threads", |b| {
        b.iter_custom(|iters| {
            let start = Barrier::new(2);
            std::thread::scope(|s| {
                let threads: Vec<_> = (0..2)
                    .map(|_| {
                        let (p, start) = (p.clone(), &start);
                        s.spawn(move || {
                            start.wait();
                            let began = Instant::now();
                            for _ in 0..iters {
                                decide(&p);
                            }
                            began.elapsed()
                        })
                    })
                    .collect();
                threads
                    .into_iter()
                    .map(|t| t.join().expect("a measuring thread"))
                    .max()
                    .expect("two threads")
            })
        })
    });
}

criterion_group!(cached, benches);
criterion_main!(cached);
