//! Every control-plane change leaves one audit line (target `circuitd::audit`) naming the
//! call, the protector, the peer and the revision; data-plane calls leave none.

use resilient_circuit_api::v1;
use support::process::Circuitd;
use support::*;

#[tokio::test]
async fn each_admin_change_is_audited_once_with_its_revision() {
    let dir = TempDir::new("audit");
    let daemon = Circuitd::start(dir.path(), &[]).await;
    let mut client = daemon.protectors().await;
    let mut admin = daemon.admin().await;
    ensure(&mut client, "audited", v1::Policy::default()).await;
    call(&mut client, "audited", v1::Outcome::Success).await;
    let set = set_status(&mut admin, "audited", v1::Status::Open, None).await;
    let deleted = delete(&mut admin, "audited").await;
    let exit = daemon.terminate().await;
    let audit = exit.logged("circuitd::audit");
    assert_eq!(audit.len(), 2, "{audit:#?}");
    for (line, rpc, revision) in [
        (audit[0], "SetStatus", set.revision),
        (audit[1], "DeleteProtector", deleted.revision),
    ] {
        assert!(line.contains(&format!("rpc=\"{rpc}\"")), "{line}");
        assert!(line.contains("name=\"audited\""), "{line}");
        assert!(line.contains("peer=Some(127.0.0.1:"), "{line}");
        assert!(line.contains(&format!("revision={revision}")), "{line}");
    }
}
