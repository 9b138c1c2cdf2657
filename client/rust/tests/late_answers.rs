//! An Acquire answered after the client gave up on it (its deadline passed, so the
//! fallback decided) leaves no trial permit behind, on either transport: on the Session
//! stream the late answer still arrives; a unary call runs on to its answer in the
//! background; either way the client gives the trial permit back at once (IGNORED), and
//! where the daemon dropped the call first, the daemon gave it back itself, rather than
//! let it expire as a FAILURE and reopen the protector.
//!
//! The daemon's journal is made slow with the store's fault gate: its fsyncs wait until
//! the test lets them go, so the trial's answer comes exactly when the test says.

use std::time::Duration;

use resilient_circuit::{Client, Fallback, PolicySpec, ProtectorPolicy, Transport};
use resilient_circuit_api::v1;
use support::circuitd::config::StoreSettings;
use support::circuitd::store::faults::Faults;
use support::{DEADLINE, Daemon, TempDir, circuitd};

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_answered_after_the_deadline_is_given_back_on_the_session() {
    given_back(Transport::Session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_answered_after_the_deadline_is_given_back_on_a_unary_call() {
    given_back(Transport::Unary).await;
}

async fn given_back(transport: Transport) {
    const NAME: &str = "late-trial";
    let dir = TempDir::new("late-answers");
    let faults = Faults::new();
    let daemon = Daemon::with_config(circuitd::Config {
        store: Some(StoreSettings {
            faults: Some(faults.clone()),
            flush_interval: HOUR,
            ..StoreSettings::new(dir.path())
        }),
        ..circuitd::Config::default()
    })
    .await;
    // The deadline is short, but nothing waits on it but the held fsync: every answer
    // before that comes from durable state at once.
    let client = Client::builder(daemon.uri())
        .transport(transport)
        .acquire_deadline(Duration::from_millis(50))
        .request_timeout(DEADLINE)
        .build()
        .await
        .expect("client");
    let policy = ProtectorPolicy::try_new(PolicySpec {
        cooldown: HOUR,
        failure_limit: (1, 1),
        trial_permits: Some(1),
        permit_ttl: HOUR,
        ..PolicySpec::default()
    })
    .expect("valid policy");
    let protector = client
        .protector_builder(NAME)
        .policy(policy)
        .fallback(Fallback::Deny)
        .build()
        .await
        .expect("protector");
    let generation = daemon.set_status(NAME, v1::Status::HalfOpen).await.generation;

    faults.hold_syncs();
    let gave_up = protector.acquire().await.expect_err("the fallback denies");
    assert!(gave_up.fallback, "{gave_up:?}");
    let held = faults.clone();
    let at_gate = tokio::task::spawn_blocking(move || held.wait_until_held(1, DEADLINE))
        .await
        .expect("the waiting thread");
    assert!(at_gate, "the trial's record never reached the fsync gate");
    faults.release_syncs();

    let p = daemon
        .wait_until(NAME, "without a trial in flight", |p| p.trials_in_flight == 0)
        .await;
    let counters = p.counters.expect("counters");
    assert_eq!(
        (p.status, p.generation, counters.ignored, counters.failures),
        (v1::Status::HalfOpen as i32, generation, 1, 0),
        "{transport:?}: the late trial was given back, not failed: {p:?}"
    );
}
