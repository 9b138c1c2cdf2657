//! `max_connections`: past the limit the daemon stops accepting, and a newcomer is
//! served as soon as an open connection closes.

use std::time::Duration;

use circuitd::Config;
use resilient_circuit_api::v1;
use support::*;

#[tokio::test]
async fn a_connection_past_the_limit_waits_for_a_place() {
    let mut config = Config::default();
    config.limits.max_connections = 2;
    let daemon = Daemon::with_config(config).await;
    let mut first = daemon.protectors().await;
    let mut second = daemon.protectors().await;
    ensure(&mut first, "limited", v1::Policy::default()).await;
    acquire(&mut second, "limited").await;

    // The third connection is queued by the kernel, not served.
    let uri = daemon.uri();
    let mut third = tokio::spawn(async move {
        let channel = tonic::transport::Endpoint::from_shared(uri)
            .expect("uri")
            .connect_lazy();
        let mut client = ProtectorClient::new(channel);
        client
            .acquire(v1::AcquireRequest {
                name: "limited".into(),
            })
            .await
            .map(|r| r.into_inner().decision)
    });
    // Nothing signals "not served"; a short bounded wait is the only way to see it.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut third)
            .await
            .is_err(),
        "a third connection was served past max_connections = 2"
    );

    // Closing one frees its place: the waiting call goes through.
    drop(first);
    let decision = tokio::time::timeout(DEADLINE, third)
        .await
        .expect("served once a place was free")
        .expect("task")
        .expect("Acquire");
    assert_eq!(decision, v1::Decision::Admitted as i32);
    acquire(&mut second, "limited").await;
    daemon.stop().await.expect("clean stop");
}
