//! Shutdown with open watches: every stream ends (UNAVAILABLE or end of stream), new
//! calls never get a wrong answer, health turns NOT_SERVING, and the daemon stops
//! promptly, in process and as the real binary on SIGTERM.

use std::time::Duration;

use circuitd::config::ProtectorConfig;
use resilient_circuit_api::v1;
use resilient_circuit_api::v1::watch_event::Event;
use resilient_circuit_breaker::PolicySpec;
use support::process::Circuitd;
use support::*;
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// How long a stop may take.
const PROMPT: Duration = Duration::from_secs(5);

/// A configuration with `count` protectors named `p000`, `p001`, ...
fn with_protectors(count: usize) -> circuitd::Config {
    circuitd::Config {
        protectors: (0..count)
            .map(|i| ProtectorConfig {
                name: format!("p{i:03}"),
                policy: PolicySpec::default(),
            })
            .collect(),
        ..Default::default()
    }
}

/// Opens a Watch of every protector and reads only its first snapshot event.
async fn mid_snapshot(daemon: &Daemon) -> Watcher {
    let mut client = ProtectorClient::new(daemon.narrow_channel().await);
    let mut watcher = Watcher::open(&mut client, watch_all()).await;
    let first = watcher.next().await;
    assert!(matches!(first.event, Some(Event::Snapshot(_))), "{first:?}");
    watcher
}

/// Reads `watcher` to its end; panics unless it ends with UNAVAILABLE or end of stream
/// before any SYNCED. Returns how many events it read.
async fn drain_unsynced(mut watcher: Watcher) -> usize {
    let mut read = 0;
    loop {
        match watcher.next_raw().await {
            Ok(Some(event)) => {
                assert!(matches!(event.event, Some(Event::Snapshot(_))), "{event:?}");
                read += 1;
            }
            Ok(None) => return read,
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                return read;
            }
        }
    }
}

/// Asserts that the next thing on a synced watch is its end: UNAVAILABLE or end of stream.
async fn expect_end(watcher: &mut Watcher) {
    match watcher.next_raw().await {
        Ok(None) => {}
        Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        Ok(Some(event)) => panic!("expected the end of the watch, got {event:?}"),
    }
}

async fn health(channel: Channel) -> Result<HealthCheckResponse, tonic::Status> {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// A refusal while shutting down: UNAVAILABLE from the daemon, or the transport's own
/// error when the connection is already closing. Never an answer.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>) {
    match result {
        Ok(answer) => panic!("answered during shutdown: {answer:?}"),
        Err(status) => assert!(
            matches!(status.code(), Code::Unavailable | Code::Unknown | Code::Cancelled),
            "{status:?}"
        ),
    }
}

#[tokio::test]
async fn shutdown_ends_every_open_watch_and_completes_promptly() {
    let mut config = with_protectors(5000);
    // Far above PROMPT: a stop within PROMPT means the streams really ended, rather than
    // the grace running out.
    config.shutdown_grace = Duration::from_secs(30);
    let daemon = Daemon::with_config(config).await;
    let channel = daemon.channel().await;
    let mut client = ProtectorClient::new(channel.clone());
    let mut watchers = Vec::new();
    for i in 0..19 {
        let request = if i % 2 == 0 {
            v1::WatchRequest {
                filter: Some(v1::watch_request::Filter::Prefix("p00".into())),
                ..Default::default()
            }
        } else {
            v1::WatchRequest {
                filter: Some(v1::watch_request::Filter::Names(v1::NameList {
                    names: vec![format!("p{i:03}")],
                })),
                ..Default::default()
            }
        };
        let mut watcher = Watcher::open(&mut client, request).await;
        let (snapshot, synced) = watcher.snapshot().await;
        assert_eq!(snapshot.len(), if i % 2 == 0 { 10 } else { 1 });
        assert_eq!(synced, 5000);
        watchers.push(watcher);
    }
    let stuck = mid_snapshot(&daemon).await;
    let health_channel = daemon.channel().await;
    let serving = health(health_channel.clone()).await.expect("health Check");
    assert_eq!(serving.status, ServingStatus::Serving as i32);

    let stopping = tokio::spawn(async move {
        let began = Instant::now();
        let result = daemon.stop().await;
        (result, began.elapsed())
    });
    // The mid-snapshot watcher must be read for its stream to finish: the daemon cannot
    // end a stream whose client leaves the transport window full.
    let draining = tokio::spawn(drain_unsynced(stuck));

    expect_end(&mut watchers[0]).await;
    // A watch has ended, so shutdown has begun: health says so on a connection that is
    // still open, and new calls are refused.
    match health(health_channel).await {
        Ok(answer) => assert_eq!(answer.status, ServingStatus::NotServing as i32),
        Err(status) => assert_refused::<()>(Err(status)),
    }
    assert_refused(client.acquire(v1::AcquireRequest { name: "p000".into() }).await);
    assert_refused(
        client
            .get_protector(v1::GetProtectorRequest { name: "p001".into() })
            .await,
    );
    for watcher in &mut watchers[1..] {
        expect_end(watcher).await;
    }
    let read = draining.await.expect("drain");
    assert!(
        read < 4999,
        "the watch was mid-snapshot, yet {read} more snapshots came"
    );

    let (result, took) = stopping.await.expect("stop");
    result.expect("clean stop");
    assert!(took < PROMPT, "stop took {took:?}");
}

#[tokio::test]
async fn a_watcher_that_never_reads_holds_shutdown_no_longer_than_the_grace() {
    const GRACE: Duration = Duration::from_millis(300);
    let mut config = with_protectors(5000);
    config.shutdown_grace = GRACE;
    let daemon = Daemon::with_config(config).await;
    let _stuck = mid_snapshot(&daemon).await;
    let began = Instant::now();
    daemon.stop().await.expect("clean stop");
    let took = began.elapsed();
    assert!(
        took >= GRACE,
        "the stuck stream cannot have ended, yet stop took {took:?}"
    );
    assert!(took < PROMPT, "stop took {took:?}");
}

#[tokio::test]
async fn sigterm_stops_the_binary_with_status_zero_and_ends_its_watches() {
    let data = TempDir::new("sigterm");
    let daemon = Circuitd::start(&data.path().join("data"), &[]).await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, "payments", v1::Policy::default()).await;
    let mut watcher = Watcher::open(&mut client, watch_all()).await;
    let (snapshot, synced) = watcher.snapshot().await;
    assert_eq!((snapshot.len(), synced), (1, 1));

    let exit = daemon.terminate_within(PROMPT).await;
    assert_eq!(exit.status.code(), Some(0), "{}", exit.status);
    expect_end(&mut watcher).await;
}
