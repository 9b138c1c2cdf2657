//! Silent peers cannot hold places under `max_connections`: a connection that never
//! sends the HTTP/2 preface is closed after the handshake timeout, one with no call in
//! flight after the idle timeout, and an open Watch is a call in flight.
//!
//! The timeouts here are short configured values, never asserted latencies: each test
//! waits for an event (a socket closed, a call answered) with the generous DEADLINE.

use std::time::Duration;

use circuitd::Config;
use resilient_circuit_api::v1;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The HTTP/2 client preface followed by an empty SETTINGS frame: a handshake done.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Short, so the tests are quick; a client's own preface is already in the socket when
/// its connection is accepted, so it is never what this closes.
const HANDSHAKE: Duration = Duration::from_millis(200);

/// Short, yet long enough that a busy machine does not pause a test between its
/// handshake and its first call (or between two calls) for that long.
const IDLE: Duration = Duration::from_secs(1);

/// Long enough never to be what closes a connection in these tests.
const NEVER: Duration = Duration::from_secs(3600);

fn config(max_connections: usize, handshake: Duration, idle: Duration) -> Config {
    let mut config = Config::default();
    config.limits.max_connections = max_connections;
    config.connections.handshake_timeout = handshake;
    config.connections.idle_timeout = idle;
    config
}

/// Reads (and discards whatever the daemon sends) until the daemon closes `socket`.
async fn until_closed(socket: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(DEADLINE, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "{what} was still open after {DEADLINE:?}");
}

/// A call on a new connection, which must be served within DEADLINE.
async fn served(daemon: &Daemon, why: &str) {
    let served = tokio::time::timeout(DEADLINE, async {
        let mut client = daemon.protectors().await;
        ensure(&mut client, "timeouts", v1::Policy::default()).await;
        acquire(&mut client, "timeouts").await
    })
    .await;
    let response = served.unwrap_or_else(|_| panic!("a new connection was not served: {why}"));
    assert_eq!(response.decision, v1::Decision::Admitted as i32);
}

/// A raw peer that connects and sends `bytes`, then nothing more.
async fn peer(daemon: &Daemon, bytes: &[u8]) -> TcpStream {
    let mut socket = TcpStream::connect(daemon.addr).await.expect("connect");
    socket.write_all(bytes).await.expect("write");
    socket
}

/// Every place is taken by a raw peer that sends `bytes`; a call on a new connection
/// must still be served, and each peer must be closed.
async fn places_come_back(config: Config, bytes: &[u8], peers: &str) {
    let places = config.limits.max_connections;
    let daemon = Daemon::with_config(config).await;
    let mut taken = Vec::new();
    for _ in 0..places {
        taken.push(peer(&daemon, bytes).await);
    }
    served(&daemon, &format!("{peers} still hold every place")).await;
    for socket in &mut taken {
        until_closed(socket, peers).await;
    }
    daemon.stop().await.expect("clean stop");
}

#[tokio::test]
async fn sockets_that_never_speak_are_closed_and_free_their_places() {
    let config = config(2, HANDSHAKE, NEVER);
    places_come_back(config, b"", "sockets that never sent the preface").await;
}

#[tokio::test]
async fn a_partial_preface_does_not_complete_the_handshake() {
    let config = config(1, HANDSHAKE, NEVER);
    places_come_back(config, &PREFACE[..10], "sockets that sent part of the preface").await;
}

#[tokio::test]
async fn idle_connections_are_closed_and_free_their_places() {
    // The handshake completes, and no stream is ever opened.
    let config = config(2, NEVER, IDLE);
    places_come_back(config, PREFACE, "idle connections").await;
}

#[tokio::test]
async fn a_client_that_goes_quiet_gives_its_place_back() {
    let daemon = Daemon::with_config(config(1, NEVER, IDLE)).await;
    let mut quiet = daemon.protectors().await;
    ensure(&mut quiet, "quiet", v1::Policy::default()).await;
    // The only place is this client's until its connection has been idle long enough.
    served(
        &daemon,
        "a client with no call in flight still holds the only place",
    )
    .await;
    // The quiet client's next call finds its connection closed; the channel reconnects.
    let again = tokio::time::timeout(
        DEADLINE,
        quiet.acquire(v1::AcquireRequest { name: "quiet".into() }),
    )
    .await
    .expect("the quiet client was not served again")
    .expect("Acquire after the idle close");
    assert_eq!(again.into_inner().decision, v1::Decision::Admitted as i32);
    daemon.stop().await.expect("clean stop");
}

#[tokio::test]
async fn an_open_watch_keeps_its_connection_past_the_idle_timeout() {
    let daemon = Daemon::with_config(config(10_000, NEVER, IDLE)).await;
    let mut admin = daemon.protectors().await;
    ensure(&mut admin, "watched", v1::Policy::default()).await;
    drop(admin);
    let mut watching = daemon.protectors().await;
    let mut watcher = Watcher::past_snapshot(&mut watching, "watched").await;

    // Two idle periods pass while the Watch is open, each shown by an idle connection
    // that was opened after the Watch being closed.
    for _ in 0..2 {
        let mut witness = peer(&daemon, PREFACE).await;
        until_closed(&mut witness, "an idle connection").await;
    }

    // The Watch (and so its connection) is still there and delivers.
    daemon.set_status("watched", v1::Status::Open).await;
    let (_, transition) = watcher.next_transition().await;
    assert_eq!(transition.to, v1::Status::Open as i32);
    daemon.stop().await.expect("clean stop");
}
