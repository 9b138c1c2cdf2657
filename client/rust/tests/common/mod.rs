//! What the client's tests share besides the daemon harness (the `support` library of
//! `resilient-circuit-tests`, which starts the daemons): a patient [`Client`], the
//! client's own policy type, and status-change channels read with a deadline.
//!
//! Every test file declares `mod common;` and uses what it needs, so not every helper
//! is used by every file. (It is not named `support`: that is the harness's name.)
#![allow(dead_code)]

use std::time::Duration;

use resilient_circuit::{Client, PolicySpec, ProtectorPolicy, StatusChange};
use resilient_circuit_api::v1;
use support::{DEADLINE, Daemon};
use tokio::sync::mpsc;

/// A daemon for a client test: stopped with a grace of 1 s, so a stop for a restart
/// does not wait long on the streams the client keeps open.
pub async fn start_daemon() -> Daemon {
    Daemon::with_shutdown_grace(Duration::from_secs(1)).await
}

/// A client of `daemon` with a generous acquire deadline, for tests that expect every
/// decision to come from the daemon even on a loaded machine.
pub async fn patient_client(daemon: &Daemon) -> Client {
    Client::builder(daemon.uri())
        .acquire_deadline(DEADLINE)
        .request_timeout(DEADLINE)
        .build()
        .await
        .expect("client")
}

/// A policy: cooldown, failure limit n/d; everything else the default.
pub fn policy(cooldown: Duration, failure_limit: (u32, u32)) -> ProtectorPolicy {
    ProtectorPolicy::try_new(PolicySpec {
        cooldown,
        failure_limit,
        ..PolicySpec::default()
    })
    .expect("valid policy")
}

/// A channel fed by `on_status_change`, and the callback to register.
pub fn changes() -> (
    impl Fn(&StatusChange) + Send + Sync + 'static,
    mpsc::UnboundedReceiver<StatusChange>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    (move |c: &StatusChange| drop(tx.send(c.clone())), rx)
}

/// The next status change, failing the test after [`DEADLINE`].
#[track_caller]
pub fn next_change(
    rx: &mut mpsc::UnboundedReceiver<StatusChange>,
) -> impl Future<Output = StatusChange> + '_ {
    let caller = std::panic::Location::caller();
    async move {
        match tokio::time::timeout(DEADLINE, rx.recv()).await {
            Ok(Some(change)) => change,
            Ok(None) => panic!("{caller}: the status-change channel closed"),
            Err(_) => panic!("{caller}: no status change within {DEADLINE:?}"),
        }
    }
}

/// Waits until the watch behind each of `receivers` is live: a watch that opens after
/// a CLOSED to CLOSED transition reconciles silently (the status did not move), so
/// operator transitions are made until every receiver heard one. Returns the generation
/// of the last one, which every receiver has taken: nothing earlier is left queued.
pub async fn until_watching(
    daemon: &Daemon,
    name: &str,
    receivers: &mut [&mut mpsc::UnboundedReceiver<StatusChange>],
) -> u64 {
    let give_up = tokio::time::Instant::now() + DEADLINE;
    let mut live = vec![false; receivers.len()];
    while live.contains(&false) {
        assert!(
            tokio::time::Instant::now() < give_up,
            "{name}: the watches never went live"
        );
        daemon.set_status(name, v1::Status::Closed).await;
        for (rx, live) in receivers.iter_mut().zip(&mut live) {
            // A poll with a deadline: each round gives the stream a moment to answer.
            if !*live
                && tokio::time::timeout(Duration::from_millis(100), rx.recv())
                    .await
                    .is_ok()
            {
                *live = true;
            }
        }
    }
    let last = daemon.set_status(name, v1::Status::Closed).await.generation;
    for rx in receivers.iter_mut() {
        while next_change(rx).await.generation != last {}
    }
    last
}

/// Asserts that no status change is queued (every one expected was already taken).
#[track_caller]
pub fn assert_no_more_changes(rx: &mut mpsc::UnboundedReceiver<StatusChange>) {
    if let Ok(extra) = rx.try_recv() {
        panic!("an unexpected (or repeated) status change: {extra:?}");
    }
}
