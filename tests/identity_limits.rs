//! Limits per identity, on the real binary: open Watch streams, open Session streams
//! and protectors created, each RESOURCE_EXHAUSTED naming the limit and the identity
//! when reached; another identity is not affected; a freed place works again; a
//! `[[token]]` table's own limit replaces the flag's; the protector count survives a
//! restart, and a deleted protector frees its creator's place.

use std::time::Duration;

use resilient_circuit_api::v1;
use resilient_circuit_api::v1::admin_service_client::AdminServiceClient;
use resilient_circuit_api::v1::protector_service_client::ProtectorServiceClient;
use support::process::Circuitd;
use support::*;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Data = ProtectorServiceClient<InterceptedService<Channel, support::tokens::WithToken>>;

/// (name, token, role) of the tokens file, plus extra lines for the `tight` token.
const TOKENS: [(&str, &str, &str); 4] = [
    ("app", "app-token", "data"),
    ("other", "other-token", "data"),
    ("tight", "tight-token", "data"),
    ("ops", "ops-token", "admin"),
];

/// A daemon on `dir` with the tokens file (where `tight` may have one Watch, one
/// Session and one protector of its own) and `flags`.
async fn start(dir: &TempDir, flags: &[&str]) -> Circuitd {
    let tokens = dir.path().join("tokens.toml");
    let file = tokens_file(&TOKENS).replace(
        "name = \"tight\"\n",
        "name = \"tight\"\nmax_watchers = 1\nmax_sessions = 1\nmax_protectors = 1\n",
    );
    std::fs::write(&tokens, file).expect("write the tokens file");
    let mut args = vec!["--tokens", tokens.to_str().expect("UTF-8")];
    args.extend_from_slice(flags);
    Circuitd::start(&dir.path().join("data"), &args).await
}

async fn client(daemon: &Circuitd, token: &str) -> Data {
    let channel = daemon.channel().await.expect("connect");
    ProtectorServiceClient::with_interceptor(channel, with_token(token))
}

#[track_caller]
fn assert_exhausted(status: &tonic::Status, limit: &str, identity: &str) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains(limit) && status.message().contains(identity),
        "the message should name {limit} and {identity}: {status:?}"
    );
}

/// Retries `open` until it succeeds: a place is freed once the daemon has seen the
/// stream go, shortly after the client dropped it.
async fn once_freed<T, F, Fut>(mut open: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let give_up = tokio::time::Instant::now() + DEADLINE;
    loop {
        match open().await {
            Ok(opened) => return opened,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    tokio::time::Instant::now() < give_up,
                    "the place was not freed within {DEADLINE:?}: {status:?}"
                );
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
}

async fn watch(client: &mut Data) -> Result<tonic::Streaming<v1::WatchEvent>, tonic::Status> {
    let all = v1::WatchRequest {
        filter: Some(v1::watch_request::Filter::All(true)),
        ..Default::default()
    };
    client.watch(all).await.map(tonic::Response::into_inner)
}

/// A Session whose request stream stays open while the sender lives.
async fn session(
    client: &mut Data,
) -> Result<
    (
        tokio::sync::mpsc::Sender<v1::SessionRequest>,
        tonic::Streaming<v1::SessionResponse>,
    ),
    tonic::Status,
> {
    let (send, requests) = tokio::sync::mpsc::channel(1);
    let responses = client
        .session(tokio_stream::wrappers::ReceiverStream::new(requests))
        .await?
        .into_inner();
    Ok((send, responses))
}

#[tokio::test]
async fn watch_streams_are_limited_per_identity() {
    let dir = TempDir::new("limits-watch");
    let daemon = start(&dir, &["--max-watchers-per-identity", "2"]).await;
    let mut app = client(&daemon, "app-token").await;
    let first = watch(&mut app).await.expect("1 of 2");
    let _second = watch(&mut app).await.expect("2 of 2");
    let refused = watch(&mut app).await.expect_err("3 of 2");
    assert_exhausted(&refused, "max_watchers_per_identity", "token \"app\"");

    let mut other = client(&daemon, "other-token").await;
    let _others = watch(&mut other)
        .await
        .expect("another identity has its own places");
    let mut tight = client(&daemon, "tight-token").await;
    let _tights = watch(&mut tight).await.expect("1 of its own 1");
    assert_exhausted(
        &watch(&mut tight).await.expect_err("2 of its own 1"),
        "max_watchers_per_identity",
        "token \"tight\"",
    );

    drop(first);
    let _again = once_freed(|| {
        let mut app = app.clone();
        async move { watch(&mut app).await }
    })
    .await;
    daemon.terminate().await.assert_no_panic();
}

#[tokio::test]
async fn session_streams_are_limited_per_client_address_when_the_api_is_open() {
    let dir = TempDir::new("limits-session");
    let daemon = Circuitd::start(dir.path(), &["--max-sessions-per-identity", "1"]).await;
    let channel = daemon.channel().await.expect("connect");
    let mut open = ProtectorServiceClient::with_interceptor(channel, with_token("ignored"));
    let first = session(&mut open).await.expect("1 of 1");
    let refused = session(&mut open).await.expect_err("2 of 1");
    assert_exhausted(&refused, "max_sessions_per_identity", "address 127.0.0.1");
    drop(first);
    let (send, mut answers) = once_freed(|| {
        let mut open = open.clone();
        async move { session(&mut open).await }
    })
    .await;
    // The session that got the freed place works.
    send.send(v1::SessionRequest {
        id: 1,
        request: Some(v1::session_request::Request::Acquire(v1::AcquireRequest {
            name: "nobody".into(),
        })),
    })
    .await
    .expect("send");
    let answer = tokio::time::timeout(DEADLINE, answers.message())
        .await
        .expect("an answer in time")
        .expect("the stream")
        .expect("one answer");
    assert_eq!(answer.id, 1);
    daemon.terminate().await.assert_no_panic();
}

#[tokio::test]
async fn session_streams_are_limited_per_token() {
    let dir = TempDir::new("limits-session-token");
    let daemon = start(&dir, &["--max-sessions-per-identity", "2"]).await;
    let mut app = client(&daemon, "app-token").await;
    let _first = session(&mut app).await.expect("1 of 2");
    let _second = session(&mut app).await.expect("2 of 2");
    assert_exhausted(
        &session(&mut app).await.expect_err("3 of 2"),
        "max_sessions_per_identity",
        "token \"app\"",
    );
    let mut tight = client(&daemon, "tight-token").await;
    let _tights = session(&mut tight).await.expect("1 of its own 1");
    assert_exhausted(
        &session(&mut tight).await.expect_err("2 of its own 1"),
        "max_sessions_per_identity",
        "token \"tight\"",
    );
    daemon.terminate().await.assert_no_panic();
}

async fn create(client: &mut Data, name: &str) -> Result<bool, tonic::Status> {
    client
        .ensure_protector(v1::EnsureProtectorRequest {
            name: name.into(),
            policy: Some(policy(Duration::from_secs(60), (1, 2), None)),
        })
        .await
        .map(|r| r.into_inner().created)
}

#[tokio::test]
async fn the_protectors_an_identity_created_are_capped_across_a_restart() {
    let dir = TempDir::new("limits-protectors");
    let flags = ["--max-protectors-per-identity", "2"];
    let daemon = start(&dir, &flags).await;
    let mut app = client(&daemon, "app-token").await;
    assert!(create(&mut app, "a1").await.expect("1 of 2"));
    assert!(create(&mut app, "a2").await.expect("2 of 2"));
    assert_exhausted(
        &create(&mut app, "a3").await.expect_err("3 of 2"),
        "max_protectors_per_identity",
        "token \"app\"",
    );
    assert!(
        !create(&mut app, "a1")
            .await
            .expect("an existing one is no creation"),
        "a1 exists"
    );
    let mut other = client(&daemon, "other-token").await;
    assert!(create(&mut other, "o1").await.expect("another identity"));
    let mut tight = client(&daemon, "tight-token").await;
    assert!(create(&mut tight, "t1").await.expect("1 of its own 1"));
    assert_exhausted(
        &create(&mut tight, "t2").await.expect_err("2 of its own 1"),
        "max_protectors_per_identity",
        "token \"tight\"",
    );
    daemon.terminate().await.assert_no_panic();

    // The creators are in the journal: the count is the same after a restart.
    let daemon = start(&dir, &flags).await;
    let mut app = client(&daemon, "app-token").await;
    assert_exhausted(
        &create(&mut app, "a3").await.expect_err("still 2 of 2"),
        "max_protectors_per_identity",
        "token \"app\"",
    );
    let channel = daemon.channel().await.expect("connect");
    let mut ops = AdminServiceClient::with_interceptor(channel, with_token("ops-token"));
    ops.delete_protector(v1::DeleteProtectorRequest { name: "a1".into() })
        .await
        .expect("delete");
    assert!(
        create(&mut app, "a3")
            .await
            .expect("the deleted one freed a place")
    );
    assert_exhausted(
        &create(&mut app, "a4").await.expect_err("2 of 2 again"),
        "max_protectors_per_identity",
        "token \"app\"",
    );
    daemon.terminate().await.assert_no_panic();
}
