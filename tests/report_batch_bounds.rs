//! ReportBatch at its bounds: a batch claiming any number of successes, or listing a
//! million outcomes, is answered with counters that saturate instead of wrapping (the
//! chunking itself is shown by the registry's unit tests).

use std::time::Duration;

use resilient_circuit_api::v1;
use support::*;

fn huge(generation: u64, successes: u64, listed: usize) -> v1::ReportBatchRequest {
    v1::ReportBatchRequest {
        batches: vec![v1::OutcomeBatch {
            name: "huge".into(),
            generation,
            successes,
            outcomes: vec![v1::Outcome::Success as i32; listed],
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn a_huge_batch_saturates_the_counters_and_keeps_the_protector_answering() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    ensure(
        &mut client,
        "huge",
        policy(Duration::from_secs(60), (5, 10), None),
    )
    .await;

    for _ in 0..2 {
        let resp = client
            .report_batch(huge(1, u64::MAX, 1_000_000))
            .await
            .expect("ReportBatch")
            .into_inner();
        let r = &resp.results[0];
        assert_eq!((r.error.as_ref(), r.accepted, r.stale), (None, u64::MAX, 0));
    }
    let p = get(&mut client, "huge").await;
    let c = p.counters.expect("counters");
    assert_eq!((c.successes, c.failures), (u64::MAX, 0), "saturated, not wrapped");
    let w = p.window.expect("window");
    assert_eq!((w.size, w.successes), (10, 10));
    assert!(
        acquire(&mut client, "huge").await.permit.is_some(),
        "still CLOSED and answering"
    );
}
