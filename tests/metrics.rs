//! `--http-listen`: the HTTP listener, `/metrics` and its tokens.

use support::http;
use support::process::Circuitd;
use support::*;

#[tokio::test]
async fn the_http_listener_prints_its_address_and_answers_healthz() {
    let dir = TempDir::new("http-listen");
    let daemon = Circuitd::start(dir.path(), &["--http-listen", "127.0.0.1:0"]).await;
    let addr = daemon.http_addr.expect("the HTTP listener's address on stdout");
    assert_ne!(addr, daemon.addr);
    let reply = http::get(addr, "/healthz", None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = http::get(addr, "/metrics", None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.body.contains("circuitd_build_info"), "{}", reply.body);
}
