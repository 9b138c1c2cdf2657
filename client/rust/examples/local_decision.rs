//! Measures a cached protector's local decision: `acquire()` answered from the cached
//! state plus `success()` counted for the next batch, with no I/O.
//!
//! `cargo run --release -p resilient-circuit --example local_decision [-- --daemon URI]`
//!
//! Without `--daemon` it starts a daemon in this process on 127.0.0.1:0. Decisions are
//! timed in blocks of 1,000 (one clock read per block, so the clock's own cost does not
//! dominate), 1,000 blocks per pass; each block's mean is one sample. Prints p50, p99
//! and the worst block for a decision resolved SUCCESS and for one resolved IGNORED.

use std::time::{Duration, Instant};

use futures_util::FutureExt;
use resilient_circuit::{Client, PolicySpec, ProtectorPolicy};

const BLOCK: u32 = 1_000;
const BLOCKS: usize = 1_000;

fn pass(p: &resilient_circuit::Protector, success: bool) -> Vec<f64> {
    let mut samples = Vec::with_capacity(BLOCKS);
    for _ in 0..BLOCKS {
        let start = Instant::now();
        for _ in 0..BLOCK {
            let permit = p
                .acquire()
                .now_or_never()
                .expect("a local decision never waits")
                .expect("CLOSED admits");
            let resolved = if success {
                permit.success().now_or_never()
            } else {
                permit.ignore().now_or_never()
            };
            std::hint::black_box(resolved.expect("a local success never waits"));
        }
        samples.push(start.elapsed().as_nanos() as f64 / f64::from(BLOCK));
    }
    samples.sort_by(f64::total_cmp);
    samples
}

fn print(what: &str, samples: &[f64]) {
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{what}: p50 {:.1} ns  p99 {:.1} ns  max {:.1} ns  ({} blocks of {BLOCK})",
        at(0.50),
        at(0.99),
        samples[samples.len() - 1],
        samples.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    // The in-process daemon lives until main returns: dropping it stops it.
    let (uri, _in_process) = match args.iter().position(|a| a == "--daemon") {
        Some(i) => (args.get(i + 1).cloned().ok_or("--daemon needs a URI")?, None),
        None => {
            let daemon = support::Daemon::start().await;
            (daemon.uri(), Some(daemon))
        }
    };
    let client = Client::connect(uri).await?;
    let policy = ProtectorPolicy::try_new(PolicySpec {
        failure_limit: (5, 10),
        ..PolicySpec::default()
    })?;
    let p = client
        .protector_builder("bench-local-decision")
        .policy(policy)
        .cached(true)
        .build()
        .await?;
    // The first local permit means the Watch stream has synced.
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let permit = p.acquire().await?;
        if permit.is_local() {
            permit.ignore().await;
            break;
        }
        permit.ignore().await;
        assert!(Instant::now() < give_up, "never admitted locally");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // On a thread of its own, as application code would run: the runtime keeps the
    // Watch stream and the flusher going on its worker.
    let measured = std::thread::spawn(move || {
        pass(&p, true); // warm-up
        (pass(&p, true), pass(&p, false), p)
    })
    .join()
    .map_err(|_| "the measuring thread panicked")?;
    print("acquire + success", &measured.0);
    print("acquire + ignore ", &measured.1);
    // Let the flusher deliver before reporting what the daemon recorded.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = client.stats();
    println!(
        "batched outcomes: accepted {} stale {} lost {}",
        stats.batched_accepted, stats.batched_stale, stats.batched_lost
    );
    drop(measured.2);
    Ok(())
}
