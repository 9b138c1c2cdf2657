//! Decisions through the client library, each worker acquiring and resolving permits as
//! an application would. In cached mode the protectors decide in this process: latency
//! is then the library's own (a local decision costs nanoseconds), what the application
//! pays per call, not a round trip. Without it every decision is asked of the daemon on
//! the library's own transport, so the figure includes what the library adds to the
//! round trip.

use std::sync::Arc;
use std::time::{Duration, Instant};

use resilient_circuit::{Client, Protector};
use resilient_circuit_api::v1;
use tokio::task::JoinSet;

use crate::error::Error;
use crate::tally::{Tally, Window, Workload};

/// Decisions a worker takes between yields. A cached protector's local decision never
/// waits, so without a yield a worker would keep its thread from the Watch streams and
/// flushers; a decision asked of the daemon yields on its own while it waits.
const DECISIONS_PER_YIELD: u64 = 256;

/// A client on `addr` and one protector per name, in cached mode (each synced with the
/// daemon) when `cached`.
pub async fn prepare(
    addr: &str,
    workload: &Workload,
    policy: &v1::Policy,
    timeout: Duration,
    cached: bool,
) -> Result<(Client, Arc<[Protector]>), Error> {
    let policy = resilient_circuit_api::convert::policy(policy)
        .map_err(|e| Error::other(format!("the bench policy: {e}")))?;
    let client = tokio::time::timeout(timeout, Client::connect(addr.to_owned()))
        .await
        .map_err(|_| Error::other(format!("no connection to {addr} within {timeout:?}")))?
        .map_err(|e| Error::because("cannot connect the client library", e))?;
    let mut protectors = Vec::with_capacity(workload.names.len());
    for name in workload.names.iter() {
        let build = client
            .protector_builder(name.clone())
            .policy(policy)
            .cached(cached)
            .build();
        let protector = tokio::time::timeout(timeout, build)
            .await
            .map_err(|_| Error::other(format!("{name}: not ready within {timeout:?}")))?
            .map_err(|e| Error::because(format!("{name}: cannot build the protector"), e))?;
        protectors.push(protector);
    }
    Ok((client, protectors.into()))
}

/// Runs `workload.concurrency` workers on the protectors (`protectors[i]` is the one named
/// `workload.names[i]`).
pub async fn run(protectors: &Arc<[Protector]>, workload: &Workload, window: Window) -> Tally {
    let mut workers = JoinSet::new();
    for worker in 0..workload.concurrency {
        let protectors = Arc::clone(protectors);
        let workload = workload.clone();
        workers.spawn(async move {
            let mut tally = Tally::new();
            let mut rng = workload.rng(worker);
            let mut iteration = 0u64;
            loop {
                // The load generator's own choices are made before the clock starts: the
                // figure is the library's acquire and resolve, and the clock's reads.
                let protector = &protectors[workload.index(worker, iteration)];
                let failure = workload.outcome(&mut rng) == v1::Outcome::Failure;
                iteration += 1;
                let started = Instant::now();
                if !window.open_at(started) {
                    return tally;
                }
                match protector.acquire().await {
                    Ok(permit) => {
                        let _ = if failure {
                            permit.failure().await
                        } else {
                            permit.success().await
                        };
                        tally.decided(&window, started, true);
                    }
                    Err(_) => tally.decided(&window, started, false),
                }
                if iteration.is_multiple_of(DECISIONS_PER_YIELD) {
                    tokio::task::yield_now().await;
                }
            }
        });
    }
    Tally::gather(workers, &window, "a worker").await
}
