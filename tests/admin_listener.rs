//! `--admin-listen`: AdminService is served only on its own listener, so the control
//! plane can be bound to localhost or a private network while the data plane is open.

use resilient_circuit_api::v1;
use support::process::Circuitd;
use support::*;

#[tokio::test]
async fn with_an_admin_listener_the_control_plane_is_served_there_alone() {
    let dir = TempDir::new("admin-listener");
    let daemon = Circuitd::start(dir.path(), &["--admin-listen", "127.0.0.1:0"]).await;
    let admin_addr = daemon.admin_addr.expect("the admin listener's address on stdout");
    assert_ne!(admin_addr, daemon.addr);

    let mut data = daemon.protectors().await;
    ensure(
        &mut data,
        "apart",
        policy(std::time::Duration::from_secs(1), (1, 1), None),
    )
    .await;
    // The data listener has no AdminService.
    let mut admin_on_data = daemon.admin().await;
    let refused = admin_on_data
        .set_status(v1::SetStatusRequest {
            name: "apart".into(),
            status: v1::Status::Open as i32,
            open_for: None,
        })
        .await
        .expect_err("AdminService answered on the data listener");
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused:?}");

    // The admin listener has it, and not the data plane.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{admin_addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect to the admin listener");
    let mut admin = AdminClient::new(channel.clone());
    let opened = set_status(&mut admin, "apart", v1::Status::Open, None).await;
    assert_eq!(opened.protector.expect("protector").status(), v1::Status::Open);
    let refused = ProtectorClient::new(channel)
        .acquire(v1::AcquireRequest { name: "apart".into() })
        .await
        .expect_err("ProtectorService answered on the admin listener");
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused:?}");
    assert_eq!(get(&mut data, "apart").await.status(), v1::Status::Open);
}
