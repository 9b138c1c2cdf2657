//! Measures cached mode's window: the time from the acknowledgement of a trip made by
//! another client to the moment a cached client, admitting in a tight loop, stops
//! admitting (the trip reached it over its Watch stream).
//!
//! `cargo run --release -p resilient-circuit --example trip_latency [-- --daemon URI] [--trips N]`
//!
//! Without `--daemon` it starts a daemon in this process on 127.0.0.1:0. Each round:
//! an operator's SetStatus CLOSED, the cached client admitting locally again, then a
//! second client's Acquire and FAILURE Report on its own connection (failure limit 1/1,
//! so the report trips it); the time is taken when that Report's answer arrives. The
//! cached client's loop runs on a thread of its own and notes the first rejection. A
//! negative time (the Watch event beat the Report's answer) counts as zero and is
//! reported; so is the time from sending the Report (an upper bound of the window,
//! which opens when the daemon applies it). Also prints how many calls were admitted locally after the
//! acknowledgement, and how many outcomes the daemon refused as stale.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use resilient_circuit::{Client, PolicySpec, ProtectorPolicy};
use resilient_circuit_api::v1;
use resilient_circuit_api::v1::admin_service_client::AdminServiceClient;
use resilient_circuit_api::v1::protector_service_client::ProtectorServiceClient;
use tokio::sync::Notify;

const NAME: &str = "bench-trip-latency";

/// What the admitting thread and the driver share.
struct Shared {
    base: Instant,
    round: AtomicU64,
    /// The round in which the loop last admitted locally.
    admitted_in: AtomicU64,
    /// The round, and when the loop first stopped admitting in it (ns since `base`).
    stopped: std::sync::Mutex<(u64, Option<u64>)>,
    /// Local admissions after the acknowledgement (`acked_at`) in this round.
    acked_at: AtomicU64,
    in_window: AtomicU64,
    changed: Notify,
    done: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

fn admit_forever(p: resilient_circuit::Protector, s: Arc<Shared>, runtime: tokio::runtime::Handle) {
    // A remote decision (there should be none while this runs) needs the runtime.
    let _runtime = runtime.enter();
    while !s.done.load(Ordering::Relaxed) {
        let round = s.round.load(Ordering::Acquire);
        match p.acquire().now_or_never() {
            Some(Ok(permit)) if permit.is_local() => {
                if s.admitted_in.swap(round, Ordering::AcqRel) != round {
                    s.changed.notify_one();
                }
                let acked = s.acked_at.load(Ordering::Acquire);
                if acked != 0 && s.now() > acked {
                    s.in_window.fetch_add(1, Ordering::Relaxed);
                }
                let _ = permit.success().now_or_never();
            }
            Some(Err(_)) if s.admitted_in.load(Ordering::Acquire) == round => {
                let now = s.now();
                let mut stopped = s.stopped.lock().unwrap_or_else(|e| e.into_inner());
                // A rejection of the round before (this iteration began before the
                // driver moved on) is not this round's stop.
                if stopped.0 == round && stopped.1.is_none() {
                    stopped.1 = Some(now);
                    s.changed.notify_one();
                }
            }
            _ => std::hint::spin_loop(),
        }
    }
}

async fn wait(s: &Shared, what: &str, done: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < give_up, "{what} took over 10 s");
        let _ = tokio::time::timeout(Duration::from_millis(1), s.changed.notified()).await;
    }
}

fn quantile(sorted: &[u64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)] as f64 / 1_000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let trips: usize = arg("--trips").map(|n| n.parse()).transpose()?.unwrap_or(200);
    // The in-process daemon lives until main returns: dropping it stops it.
    let (uri, _in_process) = match arg("--daemon") {
        Some(uri) => (uri, None),
        None => {
            let daemon = support::Daemon::start().await;
            (daemon.uri(), Some(daemon))
        }
    };
    let client = Client::connect(uri.clone()).await?;
    let policy = ProtectorPolicy::try_new(PolicySpec {
        cooldown: Duration::from_secs(600),
        failure_limit: (1, 1),
        ..PolicySpec::default()
    })?;
    let p = client
        .protector_builder(NAME)
        .policy(policy)
        .cached(true)
        .build()
        .await?;
    let mut other = ProtectorServiceClient::connect(uri.clone()).await?;
    let mut admin = AdminServiceClient::connect(uri).await?;
    let s = Arc::new(Shared {
        base: Instant::now(),
        round: AtomicU64::new(0),
        admitted_in: AtomicU64::new(u64::MAX),
        stopped: std::sync::Mutex::new((0, None)),
        acked_at: AtomicU64::new(0),
        in_window: AtomicU64::new(0),
        changed: Notify::new(),
        done: false.into(),
    });
    let looping = {
        let (s, runtime) = (Arc::clone(&s), tokio::runtime::Handle::current());
        std::thread::spawn(move || admit_forever(p, s, runtime))
    };

    let mut latencies = Vec::with_capacity(trips);
    let mut from_sent = Vec::with_capacity(trips);
    let (mut early, mut in_window) = (0usize, Vec::with_capacity(trips));
    for round in 1..=trips as u64 {
        *s.stopped.lock().unwrap_or_else(|e| e.into_inner()) = (round, None);
        s.acked_at.store(0, Ordering::Release);
        s.in_window.store(0, Ordering::Release);
        s.round.store(round, Ordering::Release);
        admin
            .set_status(v1::SetStatusRequest {
                name: NAME.into(),
                status: v1::Status::Closed as i32,
                open_for: None,
            })
            .await?;
        wait(&s, "admitting locally again", || {
            s.admitted_in.load(Ordering::Acquire) == round
        })
        .await;

        let a = other
            .acquire(v1::AcquireRequest { name: NAME.into() })
            .await?
            .into_inner();
        let sent = s.now();
        let r = other
            .report(v1::ReportRequest {
                name: NAME.into(),
                permit: a.permit,
                outcome: v1::Outcome::Failure as i32,
                ..Default::default()
            })
            .await?
            .into_inner();
        let acked = s.now();
        s.acked_at.store(acked, Ordering::Release);
        assert!(
            r.transition.is_some(),
            "the report did not trip the protector: {r:?}"
        );
        let stopped = || s.stopped.lock().unwrap_or_else(|e| e.into_inner()).1;
        wait(&s, "stopping", || stopped().is_some()).await;
        let stopped = stopped().unwrap_or(u64::MAX);
        if stopped < acked {
            early += 1;
        }
        latencies.push(stopped.saturating_sub(acked));
        from_sent.push(stopped.saturating_sub(sent));
        in_window.push(s.in_window.load(Ordering::Acquire));
    }
    s.done.store(true, Ordering::Relaxed);
    looping.join().map_err(|_| "the admitting thread panicked")?;

    latencies.sort_unstable();
    from_sent.sort_unstable();
    in_window.sort_unstable();
    println!(
        "trip to stop, {trips} trips: p50 {:.1} µs  p99 {:.1} µs  max {:.1} µs  ({early} stopped before the ack)",
        quantile(&latencies, 0.50),
        quantile(&latencies, 0.99),
        quantile(&latencies, 1.0),
    );
    println!(
        "report sent to stop (an upper bound of the window): p50 {:.1} µs  p99 {:.1} µs  max {:.1} µs",
        quantile(&from_sent, 0.50),
        quantile(&from_sent, 0.99),
        quantile(&from_sent, 1.0),
    );
    println!(
        "calls admitted locally after the ack, per trip: p50 {}  p99 {}  max {}",
        in_window[trips / 2],
        in_window[(trips * 99 / 100).min(trips - 1)],
        in_window[trips - 1]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = client.stats();
    println!(
        "batched outcomes: accepted {} stale {} lost {}",
        stats.batched_accepted, stats.batched_stale, stats.batched_lost
    );
    Ok(())
}
