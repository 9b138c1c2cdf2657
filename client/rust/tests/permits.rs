//! Every admitted call ends in exactly one report, whatever happens to it, and errors
//! are counted as the caller classifies them.

mod common;

use std::time::Duration;

use common::{patient_client, policy, start_daemon};
use resilient_circuit::{CallError, Outcome, Status};
use support::Daemon;
use tokio::sync::oneshot;

/// A protector tripped with cooldown 0, so its next acquire is a HALF_OPEN trial (one
/// slot: the trial window of failure limit 1/1 is 1).
async fn half_open(daemon: &Daemon, name: &str) -> resilient_circuit::Protector {
    let client = patient_client(daemon).await;
    let p = client
        .protector(name, policy(Duration::ZERO, (1, 1)))
        .await
        .expect("protector");
    let failed = p.call(|| async { Err::<(), _>("down") }).await;
    assert!(matches!(failed, Err(CallError::Failed(_))), "{failed:?}");
    assert_eq!(
        daemon.inspect(name).await.status,
        resilient_circuit_api::v1::Status::Open as i32
    );
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_permit_reports_ignored_and_frees_its_trial_slot() {
    let daemon = start_daemon().await;
    let p = half_open(&daemon, "dropped-permit").await;

    let trial = p.acquire().await.expect("the trial is admitted");
    assert!(trial.is_trial() && !trial.is_fallback());
    assert_eq!(daemon.inspect("dropped-permit").await.trials_in_flight, 1);
    let busy = p.acquire().await.expect_err("the only trial slot is taken");
    assert_eq!(busy.reason, resilient_circuit::DecisionReason::TrialsExhausted);

    drop(trial);
    let after = daemon
        .wait_until("dropped-permit", "free of trials", |p| p.trials_in_flight == 0)
        .await;
    assert_eq!(after.counters.expect("counters").ignored, 1);
    assert_eq!(after.status, resilient_circuit_api::v1::Status::HalfOpen as i32);

    // The slot is free again: the next trial is admitted and decides.
    let trial = p.acquire().await.expect("the slot was released");
    let resolved = trial.success().await;
    assert_eq!(resolved.status, Some(Status::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_future_dropped_midway_releases_its_trial_permit() {
    let daemon = start_daemon().await;
    let p = half_open(&daemon, "dropped-call").await;

    let (started, running) = oneshot::channel::<()>();
    let call = tokio::spawn({
        let p = p.clone();
        async move {
            p.call(|| async move {
                let _ = started.send(());
                std::future::pending::<Result<(), ()>>().await
            })
            .await
        }
    });
    running.await.expect("the call started");
    assert_eq!(daemon.inspect("dropped-call").await.trials_in_flight, 1);

    call.abort();
    assert!(call.await.expect_err("aborted").is_cancelled());
    let after = daemon
        .wait_until("dropped-call", "free of trials", |p| p.trials_in_flight == 0)
        .await;
    let counters = after.counters.expect("counters");
    assert_eq!((counters.ignored, counters.failures), (1, 1));
    p.acquire().await.expect("the slot was released").ignore().await;
}

/// The policies compose protected calls into `Send` futures, so a protected call must be
/// one whenever the wrapped call is; this fails to compile otherwise.
#[test]
fn protected_calls_are_send() {
    fn send<T: Send>(_: &T) {}
    fn handle<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    handle::<resilient_circuit::Protector>();
    handle::<resilient_circuit::Client>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = resilient_circuit::Client::connect("http://127.0.0.1:9")
            .await
            .expect("client");
        let p = client
            .protector_builder("send")
            .fallback(resilient_circuit::Fallback::Allow);
        let call = async move {
            let p = p.build().await.expect("protector");
            let permit = p.acquire().await.expect("ALLOW");
            send(&permit);
            permit.ignore().await;
            p.call(|| async { Ok::<_, ()>(()) }).await
        };
        send(&call);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_dropped_unpolled_reports_ignored() {
    let daemon = start_daemon().await;
    let p = half_open(&daemon, "unpolled-report").await;

    // Like any future, a report does nothing until polled: dropped unpolled, it drops the
    // permit, which reports IGNORED; the SUCCESS it would have sent is never sent.
    let trial = p.acquire().await.expect("the trial is admitted");
    drop(trial.success());
    let after = daemon
        .wait_until("unpolled-report", "free of trials", |p| p.trials_in_flight == 0)
        .await;
    let counters = after.counters.expect("counters");
    assert_eq!((counters.ignored, counters.successes), (1, 0));
    assert_eq!(after.status, resilient_circuit_api::v1::Status::HalfOpen as i32);

    // An acquire dropped unpolled asks nothing: the slot stays free for the next one.
    drop(p.acquire());
    let trial = p.acquire().await.expect("no slot was taken");
    assert_eq!(trial.success().await.status, Some(Status::Closed));
}

/// The futures of `acquire` and of a permit's report stay a few words long whatever the
/// gRPC exchange behind them: a cached decision is ready at the first poll, and moving a
/// future the size of the whole exchange (about 3 KB) cost more than the decision did.
#[test]
fn the_futures_of_a_decision_stay_small() {
    let acquire = std::mem::size_of::<resilient_circuit::Acquire<'static>>();
    let resolve = std::mem::size_of::<resilient_circuit::Resolve>();
    assert!(acquire <= 64, "Acquire is {acquire} bytes");
    assert!(resolve <= 256, "Resolve is {resolve} bytes");
}

#[derive(Debug, PartialEq)]
enum AppError {
    Timeout,
    NotFound,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_reported_as_classified() {
    let daemon = start_daemon().await;
    let client = patient_client(&daemon).await;
    let p = client
        .protector("classified", policy(Duration::from_secs(60), (1, 1)))
        .await
        .expect("protector");
    let only_timeouts = |e: &AppError| *e == AppError::Timeout;

    // An error should_handle does not handle counts as a SUCCESS, as in the library.
    let r = p
        .call_handled(|| async { Err::<(), _>(AppError::NotFound) }, only_timeouts)
        .await;
    assert!(matches!(r, Err(CallError::Failed(AppError::NotFound))), "{r:?}");
    let c = daemon.inspect("classified").await.counters.expect("counters");
    assert_eq!((c.successes, c.failures, c.ignored), (1, 0, 0));

    // call_classified may make an error IGNORED: recorded nowhere.
    let r = p
        .call_classified(|| async { Err::<(), _>(AppError::Timeout) }, |_| Outcome::Ignored)
        .await;
    assert!(matches!(r, Err(CallError::Failed(AppError::Timeout))), "{r:?}");
    let inspected = daemon.inspect("classified").await;
    let c = inspected.counters.expect("counters");
    assert_eq!((c.successes, c.failures, c.ignored), (1, 0, 1));
    assert_eq!(inspected.status, resilient_circuit_api::v1::Status::Closed as i32);

    // A handled error is a FAILURE, and with 1/1 it trips the protector.
    let r = p
        .call_handled(|| async { Err::<(), _>(AppError::Timeout) }, only_timeouts)
        .await;
    assert!(matches!(r, Err(CallError::Failed(AppError::Timeout))), "{r:?}");
    let inspected = daemon.inspect("classified").await;
    assert_eq!(inspected.counters.expect("counters").failures, 1);
    assert_eq!(inspected.status, resilient_circuit_api::v1::Status::Open as i32);

    // And the next call does not run.
    let r = p.call(|| async { Ok::<_, AppError>(()) }).await;
    let rejection = r
        .expect_err("rejected")
        .rejection()
        .cloned()
        .expect("a rejection");
    assert_eq!(rejection.status, Status::Open);
    assert!(!rejection.fallback);
}
