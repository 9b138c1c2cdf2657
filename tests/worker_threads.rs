//! `--worker-threads`: the real binary runs on exactly the threads asked for (its
//! runtime's workers and its connection threads), serves on them, and refuses a count out
//! of range naming the flag.

use std::time::Duration;

use resilient_circuit_api::v1;
use support::process::Circuitd;
use support::*;

#[tokio::test]
async fn the_daemon_serves_on_the_worker_threads_it_was_given() {
    let dir = TempDir::new("worker-threads");
    let daemon = Circuitd::start(dir.path(), &["--worker-threads", "1"]).await;
    let mut client = daemon.protectors().await;
    ensure(
        &mut client,
        "one-thread",
        policy(Duration::from_secs(60), (1, 1), None),
    )
    .await;
    let tripped = call(&mut client, "one-thread", v1::Outcome::Failure).await;
    assert_eq!(tripped.status, v1::Status::Open as i32);
    let exit = daemon.terminate().await;
    exit.assert_no_panic();
    assert!(
        exit.stderr.contains("(worker threads: 1, connection threads: 1)"),
        "{}",
        exit.stderr
    );
}

#[tokio::test]
async fn a_worker_thread_count_out_of_range_is_refused_naming_the_flag() {
    let dir = TempDir::new("worker-threads-refused");
    for bad in ["0", "1025"] {
        let exit = Circuitd::launch(dir.path(), &["--worker-threads", bad])
            .await
            .refused();
        assert!(!exit.status.success());
        assert!(
            exit.stderr
                .contains(&format!("--worker-threads must be 1 to 1024, got {bad}")),
            "{}",
            exit.stderr
        );
    }
}
