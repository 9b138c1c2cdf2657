//! Roles from a client certificate's subject (`[[certificate]]` tables of the tokens
//! file, with mTLS), on the real binary with certificates made at test time: each
//! mapped certificate can call exactly its role's RPCs (the role table of `auth`); a
//! certificate that maps to nothing is UNAUTHENTICATED; a presented token decides over
//! the certificate, and a bad one is UNAUTHENTICATED even with a good certificate; the
//! audit log names the certificate's identity; certificate roles without mTLS refuse
//! to start.

use support::process::Circuitd;
use support::*;
use tonic::Code;

use crate::auth::{admin_changes, assert_role_table, call};
use crate::tls::{Ca, Files, connect, start};

/// (common name of the client certificate, role, entry name) of the tokens file.
const CERTIFICATES: [(&str, &str, &str); 3] = [
    ("reader-host", "read", "reader"),
    ("app-host", "data", "app"),
    ("ops-host", "admin", "ops"),
];

/// The tokens file: one `[[certificate]]` table per entry of [`CERTIFICATES`], and a
/// read token.
fn tokens() -> String {
    let certificates: String = CERTIFICATES
        .iter()
        .map(|(cn, role, name)| {
            format!("[[certificate]]\nsubject = \"CN={cn}\"\nrole = \"{role}\"\nname = \"{name}\"\n")
        })
        .collect();
    format!("{}{certificates}", tokens_file(&[("viewer", "v-token", "read")]))
}

/// A daemon serving mTLS with the client CA `ca`, and the tokens file.
async fn daemon(dir: &TempDir, ca: &Ca) -> Circuitd {
    let files = Files::write(dir.path(), &ca.leaf("circuitd"), Some(ca));
    let path = dir.path().join("tokens.toml");
    std::fs::write(&path, tokens()).expect("write the tokens file");
    let mut flags = files.flags(true);
    flags.extend(["--tokens".to_owned(), path.display().to_string()]);
    start(dir, &flags).await
}

#[tokio::test]
async fn each_mapped_certificate_can_call_exactly_its_roles_rpcs() {
    let dir = TempDir::new("cert-roles");
    let ca = Ca::new("cert roles CA");
    let daemon = daemon(&dir, &ca).await;
    for (cn, role, name) in CERTIFICATES {
        let channel = connect(daemon.addr, &ca, Some(&ca.leaf(cn)))
            .await
            .expect("connect");
        assert_role_table(&channel, None, &format!("certificate {name:?}"), role).await;
    }
    daemon.terminate().await.assert_no_panic();
}

#[tokio::test]
async fn a_token_decides_over_the_certificate_and_an_unmapped_one_is_unauthenticated() {
    let dir = TempDir::new("cert-precedence");
    let ca = Ca::new("cert precedence CA");
    let daemon = daemon(&dir, &ca).await;
    let set_status_rpc = "/resilient_circuit.v1.AdminService/SetStatus";
    let list = "/resilient_circuit.v1.ProtectorService/ListProtectors";

    let stranger = connect(daemon.addr, &ca, Some(&ca.leaf("stranger")))
        .await
        .expect("the CA signed it: the handshake succeeds");
    let status = call(&stranger, list, None).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("\"CN=stranger\" maps to no role"),
        "{status:?}"
    );
    assert_eq!(
        call(&stranger, list, Some("Bearer v-token")).await.code(),
        Code::Ok
    );

    let ops = connect(daemon.addr, &ca, Some(&ca.leaf("ops-host")))
        .await
        .expect("connect");
    let status = call(&ops, set_status_rpc, Some("Bearer v-token")).await;
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "the token's read role decides: {status:?}"
    );
    assert!(status.message().contains("token \"viewer\""), "{status:?}");
    let status = call(&ops, list, Some("Bearer wrong")).await;
    assert_eq!(
        status.code(),
        Code::Unauthenticated,
        "a bad token is never rescued: {status:?}"
    );

    let mut admin = resilient_circuit_api::v1::admin_service_client::AdminServiceClient::new(ops.clone());
    let mut data = resilient_circuit_api::v1::protector_service_client::ProtectorServiceClient::new(ops);
    ensure(
        &mut data,
        "by-cert",
        policy(std::time::Duration::from_secs(60), (1, 2), None),
    )
    .await;
    set_status(
        &mut admin,
        "by-cert",
        resilient_circuit_api::v1::Status::Open,
        None,
    )
    .await;
    let exit = daemon.terminate().await;
    let audit = admin_changes(&exit);
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert!(audit[0].contains("identity=\"ops\""), "{}", audit[0]);
}

#[tokio::test]
async fn certificate_roles_without_mtls_refuse_to_start_naming_the_entry() {
    let dir = TempDir::new("cert-no-mtls");
    let ca = Ca::new("cert no mTLS CA");
    let files = Files::write(dir.path(), &ca.leaf("circuitd"), None);
    let path = dir.path().join("tokens.toml");
    std::fs::write(&path, tokens()).expect("write the tokens file");
    let mut flags: Vec<String> = files.flags(false);
    flags.extend(["--tokens".to_owned(), path.display().to_string()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let exit = Circuitd::launch(dir.path(), &flags).await.refused();
    assert!(!exit.status.success());
    assert!(
        exit.stderr
            .contains("certificate[0] \"reader\": certificate roles need mTLS: set --tls-client-ca"),
        "{}",
        exit.stderr
    );
}
