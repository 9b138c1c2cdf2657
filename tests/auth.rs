//! `--tokens`: every call is checked against the tokens file. Each role can call exactly
//! its RPCs (a table over every RPC and role); no credential or an unknown one is
//! UNAUTHENTICATED; a too-weak role is PERMISSION_DENIED naming the role needed; SIGHUP
//! rotates tokens; the audit log names the token of each change.

use std::path::{Path, PathBuf};

use prost::Message;
use resilient_circuit_api::v1;
use support::process::Circuitd;
use support::*;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

/// The tokens of the file most tests start with, as (name, token, role).
const TOKENS: [(&str, &str, &str); 3] = [
    ("reader", "r-token", "read"),
    ("app", "d-token", "data"),
    ("ops", "a-token", "admin"),
];

/// Every RPC the daemon serves, with the role it must need (the table, written
/// out independently of the daemon's).
const EXPECTED: &[(&str, &str)] = &[
    ("/resilient_circuit.v1.ProtectorService/GetProtector", "read"),
    ("/resilient_circuit.v1.ProtectorService/ListProtectors", "read"),
    ("/resilient_circuit.v1.ProtectorService/Watch", "read"),
    ("/resilient_circuit.v1.AdminService/GetCluster", "read"),
    ("/resilient_circuit.v1.AdminService/SimulatePolicy", "read"),
    ("/grpc.health.v1.Health/Check", "read"),
    ("/grpc.health.v1.Health/Watch", "read"),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "read",
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "read",
    ),
    ("/resilient_circuit.v1.ProtectorService/EnsureProtector", "data"),
    ("/resilient_circuit.v1.ProtectorService/Acquire", "data"),
    ("/resilient_circuit.v1.ProtectorService/Report", "data"),
    ("/resilient_circuit.v1.ProtectorService/Session", "data"),
    ("/resilient_circuit.v1.ProtectorService/ReportBatch", "data"),
    ("/resilient_circuit.v1.AdminService/SetStatus", "admin"),
    ("/resilient_circuit.v1.AdminService/SetOverride", "admin"),
    ("/resilient_circuit.v1.AdminService/UpdatePolicy", "admin"),
    ("/resilient_circuit.v1.AdminService/DeleteProtector", "admin"),
];

fn rank(role: &str) -> u8 {
    match role {
        "read" => 0,
        "data" => 1,
        "admin" => 2,
        other => panic!("no role {other}"),
    }
}

/// A directory with the tokens file `tokens.toml` in it, and the daemon's data directory.
struct Setup {
    _dir: TempDir,
    tokens: PathBuf,
    data: PathBuf,
}

fn setup(label: &str, tokens: &[(&str, &str, &str)]) -> Setup {
    let dir = TempDir::new(label);
    let path = dir.path().join("tokens.toml");
    std::fs::write(&path, tokens_file(tokens)).expect("write the tokens file");
    let data = dir.path().join("data");
    Setup {
        tokens: path,
        data,
        _dir: dir,
    }
}

async fn start(setup: &Setup) -> Circuitd {
    Circuitd::start(&setup.data, &["--tokens", path(&setup.tokens)]).await
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// Calls `method` with one empty message (any RPC kind: a stream of one request) and the
/// `authorization` value given; the status the call was refused with, or OK when the
/// daemon let it through to its service (which may still refuse the empty request).
pub(crate) async fn call(
    channel: &Channel,
    method: &'static str,
    authorization: Option<&str>,
) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("the channel is ready");
    let mut request = tonic::Request::new(tokio_stream::once(()));
    if let Some(value) = authorization {
        let value: MetadataValue<_> = value.parse().expect("a header value");
        request.metadata_mut().insert("authorization", value);
    }
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let answer = tokio::time::timeout(
        DEADLINE,
        grpc.streaming(request, PathAndQuery::from_static(method), codec),
    )
    .await
    .unwrap_or_else(|_| panic!("{method}: no answer in time"));
    match answer {
        Ok(_) => tonic::Status::ok(""),
        Err(status) => status,
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn the_expected_table_covers_every_rpc_of_the_contract() {
    let set =
        prost_types::FileDescriptorSet::decode(resilient_circuit_api::DESCRIPTOR_SET).expect("descriptors");
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                assert!(
                    EXPECTED.iter().any(|(m, _)| *m == path),
                    "{path}: which role may call it? add it to EXPECTED (and to circuitd's auth::METHODS)"
                );
            }
        }
    }
}

#[tokio::test]
async fn each_role_can_call_exactly_its_rpcs() {
    let setup = setup("auth-roles", &TOKENS);
    let daemon = start(&setup).await;
    let channel = daemon.channel().await.expect("connect");
    for (name, token, role) in TOKENS {
        let who = format!("token {name:?}");
        assert_role_table(&channel, Some(&bearer(token)), &who, role).await;
    }
    daemon.terminate().await.assert_no_panic();
}

/// Asserts that the caller `who` on `channel` (with `authorization`, if any) can call
/// exactly the RPCs of `role`: every other one is PERMISSION_DENIED naming the role
/// needed and `who` with its role.
pub(crate) async fn assert_role_table(channel: &Channel, authorization: Option<&str>, who: &str, role: &str) {
    for (method, needed) in EXPECTED {
        let status = call(channel, method, authorization).await;
        if rank(role) >= rank(needed) {
            assert!(
                !matches!(status.code(), Code::PermissionDenied | Code::Unauthenticated),
                "{who} ({role}) may call {method}: {status:?}"
            );
        } else {
            assert_eq!(
                status.code(),
                Code::PermissionDenied,
                "{who} ({role}) on {method}: {status:?}"
            );
            let rpc = method.rsplit('/').next().expect("a method name");
            let expected = format!("{rpc} needs the {needed} role; {who} has the {role} role");
            assert_eq!(status.message(), expected, "{who} on {method}");
        }
    }
}

#[tokio::test]
async fn no_credential_or_an_unknown_one_is_unauthenticated_and_logged() {
    let setup = setup("auth-unauthenticated", &TOKENS);
    let daemon = start(&setup).await;
    let channel = daemon.channel().await.expect("connect");
    for (method, _) in EXPECTED {
        for authorization in [None, Some("Bearer wrong-token"), Some("Basic b3BzOmEtdG9rZW4=")] {
            let status = call(&channel, method, authorization).await;
            assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "{method} with {authorization:?}: {status:?}"
            );
        }
    }
    // A token of the file with another's scheme spelling still counts; the token alone
    // (no scheme) does not.
    let get = "/resilient_circuit.v1.ProtectorService/ListProtectors";
    assert_eq!(call(&channel, get, Some("bearer r-token")).await.code(), Code::Ok);
    assert_eq!(
        call(&channel, get, Some("r-token")).await.code(),
        Code::Unauthenticated
    );
    let exit = daemon.terminate().await;
    let refused: Vec<&str> = exit
        .logged("circuitd::audit")
        .into_iter()
        .filter(|l| l.contains("refused"))
        .collect();
    // Rate-limited: far fewer lines than the refusals, each reason at least once.
    for reason in ["missing", "unknown", "malformed"] {
        assert!(
            refused
                .iter()
                .any(|l| l.contains(&format!("reason=\"{reason}\"")) && l.contains("peer=Some(127.0.0.1:")),
            "no refusal logged for {reason}: {refused:#?}"
        );
    }
    assert!(refused.len() < EXPECTED.len() * 3, "{refused:#?}");
    assert!(
        !exit.stderr.contains("wrong-token"),
        "a presented token must never be logged"
    );
}

#[tokio::test]
async fn a_rotated_token_works_after_sighup_and_the_old_one_stops_working() {
    let setup = setup("auth-rotate", &[("ops", "old-token", "admin")]);
    let daemon = start(&setup).await;
    let channel = daemon.channel().await.expect("connect");
    let list = "/resilient_circuit.v1.ProtectorService/ListProtectors";
    assert_eq!(
        call(&channel, list, Some(&bearer("old-token"))).await.code(),
        Code::Ok
    );
    assert_eq!(
        call(&channel, list, Some(&bearer("new-token"))).await.code(),
        Code::Unauthenticated
    );

    std::fs::write(&setup.tokens, tokens_file(&[("ops", "new-token", "admin")])).expect("rotate");
    daemon.hangup();
    let give_up = tokio::time::Instant::now() + DEADLINE;
    while call(&channel, list, Some(&bearer("new-token"))).await.code() != Code::Ok {
        assert!(
            tokio::time::Instant::now() < give_up,
            "the new token was not taken within {DEADLINE:?}"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(
        call(&channel, list, Some(&bearer("old-token"))).await.code(),
        Code::Unauthenticated
    );

    // A broken file is refused with its reason logged, and the tokens in force stay.
    std::fs::write(&setup.tokens, "[[token]]\nname = \"ops\"\nrole = \"root\"\n").expect("break");
    daemon.hangup();
    let give_up = tokio::time::Instant::now() + DEADLINE;
    while !daemon.stderr().contains("the previous tokens stay in force") {
        assert!(
            tokio::time::Instant::now() < give_up,
            "no refusal logged:\n{}",
            daemon.stderr()
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(
        call(&channel, list, Some(&bearer("new-token"))).await.code(),
        Code::Ok
    );
    let exit = daemon.terminate().await;
    assert!(exit.stderr.contains(path(&setup.tokens)), "{}", exit.stderr);
}

#[tokio::test]
async fn the_audit_line_names_the_token_of_each_change() {
    let setup = setup("auth-audit", &TOKENS);
    let daemon = start(&setup).await;
    let channel = daemon.channel().await.expect("connect");
    let mut app = ProtectorClient::with_interceptor(channel.clone(), with_token("d-token"));
    let ensured = app
        .ensure_protector(v1::EnsureProtectorRequest {
            name: "guarded".into(),
            policy: Some(v1::Policy::default()),
        })
        .await
        .expect("data may ensure");
    drop(ensured);
    let mut ops = AdminClient::with_interceptor(channel, with_token("a-token"));
    ops.set_status(v1::SetStatusRequest {
        name: "guarded".into(),
        status: v1::Status::Open as i32,
        open_for: None,
    })
    .await
    .expect("admin may set the status");
    let exit = daemon.terminate().await;
    let audit = admin_changes(&exit);
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert!(audit[0].contains("identity=\"ops\""), "{}", audit[0]);
    assert!(audit[0].contains("rpc=\"SetStatus\""), "{}", audit[0]);
}

/// The audit log's lines of control-plane changes.
pub(crate) fn admin_changes(exit: &support::process::Exit) -> Vec<&str> {
    exit.logged("circuitd::audit")
        .into_iter()
        .filter(|l| l.contains("admin change"))
        .collect()
}

#[tokio::test]
async fn a_bad_tokens_file_refuses_to_start_naming_the_entry() {
    let setup = setup("auth-bad-file", &TOKENS);
    std::fs::write(
        &setup.tokens,
        format!(
            "{}{}",
            tokens_file(&TOKENS),
            tokens_file(&[("ops", "other", "admin")])
        ),
    )
    .expect("write");
    let exit = Circuitd::launch(&setup.data, &["--tokens", path(&setup.tokens)])
        .await
        .refused();
    assert!(!exit.status.success());
    assert!(exit.stderr.contains(path(&setup.tokens)), "{}", exit.stderr);
    assert!(
        exit.stderr
            .contains("token[3] \"ops\": the name is already used by token[2]"),
        "{}",
        exit.stderr
    );
}

#[tokio::test]
async fn without_tokens_everyone_may_call_and_the_daemon_warns_once() {
    let dir = TempDir::new("auth-open");
    let daemon = Circuitd::start(dir.path(), &[]).await;
    let channel = daemon.channel().await.expect("connect");
    let status = call(&channel, "/resilient_circuit.v1.AdminService/GetCluster", None).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    let exit = daemon.terminate().await;
    assert_eq!(
        exit.stderr.matches("is open to anyone who can reach").count(),
        1,
        "{}",
        exit.stderr
    );
    assert!(exit.stderr.contains("WARN"), "{}", exit.stderr);
}
