//! The dashboard in replicated mode: a follower's page reads the follower's own view,
//! and its admin actions go to the leader, which checks the caller's token again and
//! audits the caller's identity, as for a forwarded gRPC call.

use std::net::SocketAddr;

use resilient_circuit_api::v1;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `POST path` with a JSON body and a bearer token: the status line's code and the whole
/// response (the support client sends no Content-Type, which `/api/admin` requires).
async fn post_json(addr: SocketAddr, path: &str, token: &str, body: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("send");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.expect("read");
        raw
    };
    let raw = tokio::time::timeout(DEADLINE, exchange)
        .await
        .expect("answered in time");
    let code = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    (code, raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followers_dashboard_reads_and_its_actions_go_to_the_leader() {
    let dir = TempDir::new("dashboard-replicated");
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        tokens_file(&[("ops", "admin-token", "admin"), ("viewer", "read-token", "read")]),
    )
    .expect("write the tokens file");
    let tokens_arg = tokens.to_str().expect("UTF-8 path").to_owned();
    let etcd = Etcd::single().await;
    // With tokens, the harness cannot ask for roles without one: the first replica leads
    // once it says so, and the one added after it follows.
    let mut replicas = Replicas::start(
        &etcd,
        1,
        &["--tokens", &tokens_arg, "--http-listen", "127.0.0.1:0"],
    )
    .await;
    replicas.wait_for_log(0, "role: leader").await;
    let (leader, follower) = (0, replicas.add().await);
    let http = replicas
        .replica(follower)
        .http_addr
        .expect("the follower's HTTP address");
    let mut on_leader = v1::protector_service_client::ProtectorServiceClient::with_interceptor(
        replicas.replica(leader).channel().await.expect("connect"),
        with_token("admin-token"),
    );
    on_leader
        .ensure_protector(v1::EnsureProtectorRequest {
            name: "dash".into(),
            policy: None,
        })
        .await
        .expect("ensure");

    // Reads: the follower's own replicated view, with the read role.
    let row = eventually(
        async || {
            let reply = support::http::get(http, "/api/protector?name=dash", Some("read-token")).await;
            if reply.status == 200 {
                Ok(reply.body)
            } else {
                Err(format!("{} {}", reply.status, reply.body))
            }
        },
        |last| format!("the follower's page never showed the protector: {last}"),
    )
    .await;
    assert!(row.contains("\"status\":\"closed\""), "{row}");
    let cluster = support::http::get(http, "/api/cluster", Some("read-token")).await;
    assert!(cluster.body.contains("\"role\":\"follower\""), "{}", cluster.body);
    assert!(
        cluster
            .body
            .contains(&format!("\"leader\":\"{}\"", replicas.addr(leader))),
        "{}",
        cluster.body
    );

    // Actions: the read role is refused on the follower; the admin role's action is the
    // leader's change, audited there with the caller's identity.
    let action = r#"{"name":"dash","action":"force_open"}"#;
    let (code, refused) = post_json(http, "/api/admin", "read-token", action).await;
    assert_eq!(code, 403, "{refused}");
    let (code, done) = post_json(http, "/api/admin", "admin-token", action).await;
    assert_eq!(code, 200, "{done}");
    assert!(done.contains("\"override\":\"forced_open\""), "{done}");
    let got = on_leader
        .get_protector(v1::GetProtectorRequest { name: "dash".into() })
        .await
        .expect("get")
        .into_inner();
    let kind = got.protector.and_then(|p| p.r#override).map(|o| o.kind);
    assert_eq!(kind, Some(v1::OverrideKind::ForcedOpen as i32));
    // The line is written before the answer leaves, but read from the pipe apart.
    replicas.wait_for_log(leader, "rpc=\"SetOverride\"").await;
    let leader_log = replicas.stderr(leader);
    let audit = leader_log
        .lines()
        .find(|l| l.contains("admin change") && l.contains("rpc=\"SetOverride\""))
        .unwrap_or_else(|| panic!("no audit line on the leader:\n{leader_log}"));
    assert!(
        audit.contains("identity=\"ops\"") && audit.contains("via=Some(127.0.0.1:"),
        "{audit}"
    );
    replicas.terminate(follower).await;
    replicas.terminate(leader).await;
}
