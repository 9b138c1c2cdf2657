//! The unary shape: each worker awaits an Acquire, then (when admitted) a Report, one
//! decision after another. Against the echo baseline each of those is an Echo call, so
//! both runs make the same number of round trips of the same size.

use std::pin::pin;

use resilient_circuit_api::v1;
use resilient_circuit_api::v1::protector_service_client::ProtectorServiceClient;
use tokio::task::JoinSet;

use crate::daemon::Transport;
use crate::echo::EchoRequest;
use crate::echo::echo_service_client::EchoServiceClient;
use crate::tally::{Answer, Tally, Window, Workload};

/// Where a worker sends its two calls.
#[derive(Debug, Clone)]
pub enum Target {
    /// circuitd: Acquire and Report.
    Daemon(ProtectorServiceClient<Transport>),
    /// The echo baseline: two Echo calls.
    Echo(EchoServiceClient<Transport>),
}

impl Target {
    async fn acquire(&mut self, name: &str) -> Result<Answer, tonic::Status> {
        match self {
            Target::Daemon(client) => {
                let req = v1::AcquireRequest {
                    name: name.to_owned(),
                };
                Ok(Answer::acquired(client.acquire(req).await?.into_inner()))
            }
            Target::Echo(client) => {
                let req = EchoRequest {
                    id: 0,
                    name: name.to_owned(),
                };
                client.echo(req).await?;
                Ok(Answer::Admitted(None))
            }
        }
    }

    async fn report(
        &mut self,
        name: &str,
        permit: Option<v1::Permit>,
        outcome: v1::Outcome,
        duration: Option<prost_types::Duration>,
    ) -> Result<Answer, tonic::Status> {
        match self {
            Target::Daemon(client) => {
                let req = v1::ReportRequest {
                    duration,
                    name: name.to_owned(),
                    permit,
                    outcome: outcome as i32,
                };
                client.report(req).await?;
                Ok(Answer::Reported)
            }
            Target::Echo(client) => {
                let req = EchoRequest {
                    id: 1,
                    name: name.to_owned(),
                };
                client.echo(req).await?;
                Ok(Answer::Reported)
            }
        }
    }
}

/// Runs `workload.concurrency` workers, worker `i` on `targets[i % targets.len()]`, and
/// returns their merged tally.
pub async fn run(targets: &[Target], workload: &Workload, window: Window) -> Tally {
    let mut workers = JoinSet::new();
    for worker in 0..workload.concurrency {
        let target = targets[worker % targets.len()].clone();
        workers.spawn(work(target, workload.clone(), worker, window));
    }
    Tally::gather(workers, &window, "a worker").await
}

async fn work(mut target: Target, workload: Workload, worker: usize, window: Window) -> Tally {
    let mut tally = Tally::new();
    let mut rng = workload.rng(worker);
    // One timer for the worker's whole life: a call still unanswered at give_up is
    // abandoned, so a daemon that stops answering cannot hold the run open.
    let mut give_up = pin!(tokio::time::sleep_until(window.give_up.into()));
    let mut iteration = 0u64;
    loop {
        let started = std::time::Instant::now();
        if !window.open_at(started) {
            return tally;
        }
        let name = workload.name(worker, iteration);
        iteration += 1;
        let acquired = tokio::select! {
            biased;
            r = target.acquire(name) => r,
            () = &mut give_up => return tally,
        };
        let answer = match acquired {
            Ok(Answer::Admitted(_)) if workload.acquire_only => Ok(Answer::Reported),
            Ok(Answer::Admitted(permit)) => {
                let outcome = workload.outcome(&mut rng);
                tokio::select! {
                    biased;
                    r = target.report(name, permit, outcome, workload.report_duration) => r,
                    () = &mut give_up => return tally,
                }
            }
            other => other,
        };
        match answer {
            Ok(Answer::Reported) => tally.decided(&window, started, true),
            Ok(Answer::Rejected) => tally.decided(&window, started, false),
            Ok(other) => tally.failed(&window, format!("unexpected answer {other:?}")),
            Err(status) => tally.failed(&window, format!("{:?}: {}", status.code(), status.message())),
        }
    }
}
