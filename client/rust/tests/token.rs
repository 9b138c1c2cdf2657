//! `ClientBuilder::token`: against a daemon started with a tokens file, the client sends
//! its token on every call (unary calls, the Session stream, EnsureProtector and the
//! cached mode's Watch stream); without it the daemon refuses.

mod common;

use std::time::Duration;

use common::policy;
use resilient_circuit::{Client, Error, Transport};
use support::circuitd::Config;
use support::{DEADLINE, Daemon, TempDir, tokens_file};
use tokio::time::Instant;

const TOKEN: &str = "rust-client-token";

async fn guarded(dir: &TempDir) -> Daemon {
    let path = dir.path().join("tokens.toml");
    std::fs::write(&path, tokens_file(&[("rust-app", TOKEN, "data")])).expect("write the tokens file");
    Daemon::with_config(Config {
        tokens: Some(path),
        ..Config::default()
    })
    .await
}

async fn client(daemon: &Daemon, transport: Transport, token: Option<&str>) -> Client {
    let mut builder = Client::builder(daemon.uri())
        .acquire_deadline(DEADLINE)
        .request_timeout(DEADLINE)
        .transport(transport);
    if let Some(token) = token {
        builder = builder.token(token);
    }
    builder.build().await.expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_goes_with_every_call_on_either_transport() {
    let dir = TempDir::new("client-token");
    let daemon = guarded(&dir).await;
    for transport in [Transport::Session, Transport::Unary] {
        let client = client(&daemon, transport, Some(TOKEN)).await;
        let name = format!("token-{transport:?}");
        let p = client
            .protector(&name, policy(Duration::from_secs(60), (5, 5)))
            .await
            .expect("EnsureProtector with the token");
        for _ in 0..3 {
            let permit = p.acquire().await.expect("admitted");
            assert!(!permit.is_fallback(), "{transport:?}: the daemon decided");
            assert!(permit.success().await.accepted);
        }
        assert_eq!(client.stats().fallback_decisions, 0);
        assert_eq!(client.stats().reports_lost, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cached_mode_watches_with_the_token() {
    let dir = TempDir::new("client-token-cached");
    let daemon = guarded(&dir).await;
    let client = client(&daemon, Transport::Session, Some(TOKEN)).await;
    let p = client
        .protector_builder("token-cached")
        .policy(policy(Duration::from_secs(60), (5, 5)))
        .cached(true)
        .build()
        .await
        .expect("protector");
    // Local permits come only once the Watch stream has synced.
    let give_up = Instant::now() + DEADLINE;
    loop {
        let permit = p.acquire().await.expect("admitted");
        let local = permit.is_local();
        permit.success().await;
        if local {
            break;
        }
        assert!(Instant::now() < give_up, "the Watch stream never synced");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_token_the_daemon_refuses() {
    let dir = TempDir::new("client-no-token");
    let daemon = guarded(&dir).await;
    let client = client(&daemon, Transport::Session, None).await;
    let refused = client
        .protector("token-none", policy(Duration::from_secs(60), (5, 5)))
        .await
        .expect_err("no token");
    match refused {
        Error::Status(status) => assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}"),
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }
    let wrong = Client::builder(daemon.uri())
        .token("line\nbreak")
        .build()
        .await
        .expect_err("a token that cannot be a header");
    assert!(matches!(wrong, Error::InvalidToken(_)), "{wrong:?}");
}
