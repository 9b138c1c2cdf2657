//! ReportBatch: outcomes of locally admitted calls, judged as reports of CLOSED permits
//! of the batch's generation; each batch succeeds or fails on its own.

use std::time::Duration;

use resilient_circuit_api::v1;
use resilient_circuit_api::v1::watch_event::Event;
use support::*;
use tonic::Code;

const HOUR: Duration = Duration::from_secs(3600);
const S: v1::Outcome = v1::Outcome::Success;
const F: v1::Outcome = v1::Outcome::Failure;

fn batch(name: &str, generation: u64, successes: u64, outcomes: &[v1::Outcome]) -> v1::OutcomeBatch {
    v1::OutcomeBatch {
        name: name.into(),
        generation,
        successes,
        outcomes: outcomes.iter().map(|&o| o as i32).collect(),
        ..Default::default()
    }
}

async fn report_batch(
    client: &mut ProtectorClient,
    batches: Vec<v1::OutcomeBatch>,
) -> v1::ReportBatchResponse {
    let sent = batches.len();
    let resp = client
        .report_batch(v1::ReportBatchRequest { batches })
        .await
        .expect("ReportBatch")
        .into_inner();
    assert_eq!(resp.results.len(), sent, "one result per batch: {resp:?}");
    resp
}

/// An accepted result with no transition.
fn plain(
    name: &str,
    accepted: u64,
    stale: u64,
    status: v1::Status,
    generation: u64,
) -> v1::OutcomeBatchResult {
    v1::OutcomeBatchResult {
        name: name.into(),
        accepted,
        stale,
        status: status as i32,
        generation,
        transition: None,
        error: None,
    }
}

fn outcomes(list: &[v1::Outcome]) -> Vec<i32> {
    list.iter().map(|&o| o as i32).collect()
}

#[tokio::test]
async fn successes_are_counted_and_fill_the_window() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, "ok", policy(HOUR, (5, 10), None)).await;
    call(&mut client, "ok", F).await;

    let resp = report_batch(&mut client, vec![batch("ok", 1, 6, &[])]).await;
    assert_eq!(resp.results[0], plain("ok", 6, 0, v1::Status::Closed, 1));
    let p = get(&mut client, "ok").await;
    let c = p.counters.expect("counters");
    assert_eq!((c.successes, c.failures, c.stale_reports), (6, 1, 0));
    assert_eq!(c.admitted, 1, "a batch admits nothing");
    let w = p.window.expect("window");
    assert_eq!((w.size, w.successes, w.failures), (10, 6, 1));
    assert_eq!(w.outcomes, outcomes(&[F, S, S, S, S, S, S]));
    assert_eq!(p.consecutive_failures, 0);
    // Outcomes are not changes: the revision stays that of the creation.
    assert_eq!(resp.revision, p.mod_revision);
}

#[tokio::test]
async fn a_batch_from_before_a_trip_is_stale() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, "old", policy(HOUR, (1, 1), None)).await;
    let r = call(&mut client, "old", F).await;
    assert_eq!(r.transition.expect("trip").generation, 2);
    let before = get(&mut client, "old").await;

    let resp = report_batch(&mut client, vec![batch("old", 1, 40, &[F, S])]).await;
    assert_eq!(resp.results[0], plain("old", 0, 42, v1::Status::Open, 2));

    // Only the stale counter moved.
    let mut expected = before.clone();
    expected.counters.as_mut().expect("counters").stale_reports += 42;
    assert_eq!(get(&mut client, "old").await, expected);
}

#[tokio::test]
async fn a_failure_trips_with_the_transition_in_the_result_and_the_rest_is_stale() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, "trip", policy(HOUR, (2, 4), None)).await;
    let mut watcher = Watcher::open(&mut client, watch_all()).await;
    let (_, synced) = watcher.snapshot().await;

    // S S, then F F fills the window at 2/4: the fourth outcome trips; S F I are stale.
    // The second batch, still of generation 1, is applied after the first: stale.
    let resp = report_batch(
        &mut client,
        vec![
            batch("trip", 1, 2, &[F, F, S, F, v1::Outcome::Ignored]),
            batch("trip", 1, 5, &[]),
        ],
    )
    .await;
    let first = &resp.results[0];
    assert_eq!((first.accepted, first.stale, first.error.as_ref()), (4, 3, None));
    assert_eq!((first.status, first.generation), (v1::Status::Open as i32, 2));
    let t = first.transition.expect("the batch tripped");
    assert_transition(
        &t,
        v1::Status::Closed,
        v1::Status::Open,
        v1::TransitionReason::FailureLimit,
        2,
    );
    let (at, open_until) = (t.at.expect("at"), t.open_until.expect("open_until"));
    assert_eq!(open_until.seconds - at.seconds, 3600, "{t:?}");
    assert_eq!(resp.results[1], plain("trip", 0, 5, v1::Status::Open, 2));

    // Watchers see the trip, and a unary Acquire is rejected.
    let event = watcher.next().await;
    assert_eq!(event.revision, synced + 1);
    match event.event {
        Some(Event::StatusChanged(s)) => {
            assert_eq!(s.name, "trip");
            assert_eq!(s.transition, Some(t));
        }
        other => panic!("expected STATUS_CHANGED, got {other:?}"),
    }
    assert_eq!(resp.revision, event.revision);
    let a = acquire(&mut client, "trip").await;
    assert_eq!(a.decision, v1::Decision::Rejected as i32);

    let p = get(&mut client, "trip").await;
    let c = p.counters.expect("counters");
    assert_eq!(
        (c.successes, c.failures, c.ignored, c.stale_reports),
        (2, 2, 0, 8)
    );
    // OPEN keeps the window it tripped with.
    assert_eq!(p.window.expect("window").outcomes, outcomes(&[S, S, F, F]));
}

#[tokio::test]
async fn a_failed_batch_does_not_affect_the_others() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, "a", policy(HOUR, (5, 10), None)).await;
    ensure(&mut client, "b", policy(HOUR, (5, 10), None)).await;

    let mut bad_outcome = batch("a", 1, 9, &[S]);
    bad_outcome.outcomes.push(99);
    let resp = report_batch(
        &mut client,
        vec![
            batch("a", 1, 3, &[]),
            batch("nope", 1, 3, &[]),
            bad_outcome,
            batch("a", 0, 9, &[S]),
            batch("bad name", 1, 9, &[]),
            batch("a", 1, 0, &[v1::Outcome::Unspecified]),
            batch("b", 1, 2, &[]),
        ],
    )
    .await;
    let r = &resp.results;
    assert_eq!(r[0], plain("a", 3, 0, v1::Status::Closed, 1));
    assert_eq!(r[6], plain("b", 2, 0, v1::Status::Closed, 1));
    // (index, name, code, field)
    let failures: &[(usize, &str, Code, &str)] = &[
        (1, "nope", Code::NotFound, ""),
        (2, "a", Code::InvalidArgument, "batches[2].outcomes[1]"),
        (3, "a", Code::InvalidArgument, "batches[3].generation"),
        (4, "bad name", Code::InvalidArgument, "batches[4].name"),
        (5, "a", Code::InvalidArgument, "batches[5].outcomes[0]"),
    ];
    for &(i, name, code, field) in failures {
        let e = r[i]
            .error
            .as_ref()
            .unwrap_or_else(|| panic!("batch {i} should fail: {:?}", r[i]));
        assert_eq!(
            (e.code, e.field.as_str()),
            (code as i32, field),
            "batch {i}: {e:?}"
        );
        assert!(!e.message.is_empty());
        assert_eq!(r[i].name, name);
        assert_eq!(
            (r[i].accepted, r[i].stale, r[i].transition),
            (0, 0, None),
            "batch {i}"
        );
    }

    // A failed batch records nothing, not even its valid part.
    let a = get(&mut client, "a").await;
    let c = a.counters.expect("counters");
    assert_eq!((c.successes, c.stale_reports), (3, 0));
    assert_eq!(a.window.expect("window").outcomes, outcomes(&[S, S, S]));
    let c = counters(&mut client, "b").await;
    assert_eq!((c.successes, c.stale_reports), (2, 0));
}

#[tokio::test]
async fn a_million_successes_in_one_batch_keep_only_the_newest_window() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, "big", policy(HOUR, (5, 10), None)).await;
    for _ in 0..4 {
        call(&mut client, "big", F).await;
    }

    let resp = report_batch(&mut client, vec![batch("big", 1, 1_000_000, &[])]).await;
    assert_eq!(resp.results[0], plain("big", 1_000_000, 0, v1::Status::Closed, 1));
    let p = get(&mut client, "big").await;
    let c = p.counters.expect("counters");
    assert_eq!((c.successes, c.failures, c.stale_reports), (1_000_000, 4, 0));
    let w = p.window.expect("window");
    assert_eq!((w.size, w.successes, w.failures), (10, 10, 0));
    assert_eq!(w.outcomes, outcomes(&[S; 10]));

    // The failures before it were pushed out: four more do not reach 5/10.
    let resp = report_batch(&mut client, vec![batch("big", 1, 0, &[F, F, F, F])]).await;
    assert_eq!(resp.results[0], plain("big", 4, 0, v1::Status::Closed, 1));
}
