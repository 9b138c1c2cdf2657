//! A trial permit whose answer never reached its client is released, not left in flight
//! until it expires as a FAILURE. The journal is slow (its fsyncs held at the store's
//! fault gate), so a trial Acquire waits for its record; the client gives up (its
//! `grpc-timeout` passes, or its Session stream breaks) before the answer leaves. Once the
//! disk catches up, the trial is free again at once, nothing was recorded against the
//! protector, and the next trial can close it.
//!
//! The daemon's side is shown on a Session stream that breaks with the trial pending:
//! its end is an answer the test can wait for, so the disk is released only after the
//! daemon dropped the call. (A unary call past its deadline is dropped the same way,
//! but a tonic client enforces the `grpc-timeout` it sends itself, so a test cannot
//! tell when the daemon noticed; the Rust client's tests show both transports end to
//! end.)

use std::time::Duration;

use circuitd::Config;
use circuitd::config::{Limits, StoreSettings};
use circuitd::store::faults::Faults;
use resilient_circuit_api::v1::{self, session_request, session_response};
use support::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const NAME: &str = "slow-disk";
const HOUR: Duration = Duration::from_secs(3600);
/// The daemon's largest request in these tests: a bigger one breaks a Session stream.
const MAX_MESSAGE: usize = 4096;

/// A daemon whose journal fsyncs wait at `faults`' gate while it is held.
async fn slow_disk(dir: &TempDir, faults: &Faults) -> Daemon {
    Daemon::with_config(Config {
        store: Some(StoreSettings {
            faults: Some(faults.clone()),
            // Only what the test does is written: no batch flush interferes.
            flush_interval: HOUR,
            ..StoreSettings::new(dir.path())
        }),
        limits: Limits {
            max_message_bytes: MAX_MESSAGE,
            ..Limits::default()
        },
        ..Config::default()
    })
    .await
}

/// `NAME` in HALF_OPEN with one trial permit that lives an hour (so it cannot expire
/// during the test); returns its generation.
async fn half_open(daemon: &Daemon, client: &mut ProtectorClient) -> u64 {
    let mut p = policy(HOUR, (1, 1), None);
    p.trial_permits = Some(1);
    p.permit_ttl = Some(duration(HOUR));
    ensure(client, NAME, p).await;
    daemon.set_status(NAME, v1::Status::HalfOpen).await.generation
}

/// Waits until the held fsync (the trial's record) is at the gate.
async fn until_held(faults: &Faults) {
    let faults = faults.clone();
    let held = tokio::task::spawn_blocking(move || faults.wait_until_held(1, DEADLINE))
        .await
        .expect("the waiting thread");
    assert!(held, "the trial's record never reached the fsync gate");
}

/// After the disk caught up: the abandoned trial is back, nothing was recorded, and the
/// protector still works as HALF_OPEN (a new trial at once, whose success closes it).
async fn assert_released(daemon: &Daemon, client: &mut ProtectorClient, generation: u64) {
    let p = daemon
        .wait_until(NAME, "without a trial in flight", |p| p.trials_in_flight == 0)
        .await;
    assert_eq!(p.status, v1::Status::HalfOpen as i32, "{p:?}");
    assert_eq!(p.generation, generation, "{p:?}");
    let counters = p.counters.expect("counters");
    assert_eq!(
        (counters.failures, counters.expired_permits),
        (0, 0),
        "{counters:?}"
    );

    let again = acquire(client, NAME).await;
    assert_eq!(
        (again.decision, again.reason),
        (v1::Decision::Admitted as i32, v1::DecisionReason::Trial as i32),
        "the released trial is free again at once: {again:?}"
    );
    let closed = report(client, NAME, again.permit.expect("permit"), v1::Outcome::Success).await;
    let transition = closed
        .transition
        .expect("the trial's success closes the protector");
    assert_transition(
        &transition,
        v1::Status::HalfOpen,
        v1::Status::Closed,
        v1::TransitionReason::TrialsSucceeded,
        generation + 1,
    );
}

#[tokio::test]
async fn a_session_that_breaks_with_a_trial_waiting_for_a_slow_fsync_releases_it() {
    let dir = TempDir::new("permit-release-session");
    let faults = Faults::new();
    let daemon = slow_disk(&dir, &faults).await;
    let mut client = daemon.protectors().await;
    let generation = half_open(&daemon, &mut client).await;

    faults.hold_syncs();
    let (requests, queued) = mpsc::channel(4);
    let mut answers = client
        .session(ReceiverStream::new(queued))
        .await
        .expect("Session")
        .into_inner();
    let acquire = |id, name: String| v1::SessionRequest {
        id,
        request: Some(session_request::Request::Acquire(v1::AcquireRequest { name })),
    };
    requests.send(acquire(1, NAME.into())).await.expect("send");
    until_held(&faults).await;
    // The stream breaks (a request the daemon cannot decode) while the trial waits.
    requests
        .send(acquire(2, "x".repeat(2 * MAX_MESSAGE)))
        .await
        .expect("send");
    // The daemon ends the session without answering the held trial.
    while let Ok(Some(answer)) = tokio::time::timeout(DEADLINE, answers.message())
        .await
        .expect("the session ends within the deadline")
    {
        assert!(
            !matches!(answer.response, Some(session_response::Response::Acquire(_))),
            "the held trial was answered before its record was durable: {answer:?}"
        );
    }
    faults.release_syncs();

    assert_released(&daemon, &mut client, generation).await;
}
