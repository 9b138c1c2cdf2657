//! TLS and mTLS on the real binary, with certificates made at test time: who is refused
//! at the handshake, that every call works for a client that trusts the daemon (and
//! that the daemon trusts), and that SIGHUP swaps the certificate for new connections
//! while open ones keep theirs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use resilient_circuit::{Client, Fallback, Outcome, PolicySpec, ProtectorPolicy};
use resilient_circuit_api::v1;
use support::process::Circuitd;
use support::*;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// A certificate authority made for one test (the cluster trust tests use it too).
pub(crate) struct Ca(CertifiedIssuer<'static, KeyPair>);

/// A certificate signed by a [`Ca`] and its key, as PEM.
pub(crate) struct Leaf {
    pub(crate) cert: String,
    pub(crate) key: String,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Ca(CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA"))
    }

    pub(crate) fn pem(&self) -> String {
        self.0.pem()
    }

    /// A certificate for 127.0.0.1 and localhost (server and client use alike).
    pub(crate) fn leaf(&self, subject: &str) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, subject);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.0).expect("sign");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// The files a daemon is started with.
pub(crate) struct Files {
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
}

impl Files {
    pub(crate) fn write(dir: &Path, leaf: &Leaf, client_ca: Option<&Ca>) -> Files {
        let files = Files {
            cert: dir.join("server.pem"),
            key: dir.join("server-key.pem"),
            client_ca: dir.join("client-ca.pem"),
        };
        files.replace(leaf);
        if let Some(ca) = client_ca {
            std::fs::write(&files.client_ca, ca.pem()).expect("write the client CA");
        }
        files
    }

    /// Writes a new certificate and key in place, as a renewal would.
    fn replace(&self, leaf: &Leaf) {
        std::fs::write(&self.cert, &leaf.cert).expect("write the certificate");
        std::fs::write(&self.key, &leaf.key).expect("write the key");
    }

    pub(crate) fn flags(&self, mtls: bool) -> Vec<String> {
        let mut flags = vec![
            "--tls-cert".to_owned(),
            self.cert.display().to_string(),
            "--tls-key".to_owned(),
            self.key.display().to_string(),
        ];
        if mtls {
            flags.extend(["--tls-client-ca".to_owned(), self.client_ca.display().to_string()]);
        }
        flags
    }
}

pub(crate) async fn start(dir: &TempDir, flags: &[String]) -> Circuitd {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Circuitd::launch_listening(dir.path(), &flags).await.serving()
}

/// A new TLS connection to `addr` trusting `ca`, presenting `identity` if given.
pub(crate) async fn connect(
    addr: std::net::SocketAddr,
    ca: &Ca,
    identity: Option<&Leaf>,
) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca.pem()));
    if let Some(leaf) = identity {
        tls = tls.identity(Identity::from_pem(&leaf.cert, &leaf.key));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)
        .expect("tls config")
        .connect_timeout(DEADLINE)
        .timeout(DEADLINE)
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// Whether a call on a new connection to `addr` trusting `ca` (with `identity`) works:
/// a refused handshake fails either the connection or the first call.
async fn answers(addr: std::net::SocketAddr, ca: &Ca, identity: Option<&Leaf>) -> Result<(), String> {
    let channel = connect(addr, ca, identity).await?;
    ProtectorClient::new(channel)
        .list_protectors(v1::ListProtectorsRequest::default())
        .await
        .map(drop)
        .map_err(|s| format!("{s:?}"))
}

fn one_failure() -> v1::Policy {
    policy(Duration::from_secs(3600), (1, 1), None)
}

#[tokio::test]
async fn plaintext_and_a_client_trusting_another_ca_are_refused() {
    let dir = TempDir::new("tls-refused");
    let ca = Ca::new("circuitd test CA");
    let files = Files::write(dir.path(), &ca.leaf("circuitd"), None);
    let daemon = start(&dir, &files.flags(false)).await;

    // Plaintext HTTP/2 to the TLS port: the connection or the call fails.
    if let Ok(channel) = daemon.channel().await {
        let refused = ProtectorClient::new(channel)
            .list_protectors(v1::ListProtectorsRequest::default())
            .await;
        assert!(refused.is_err(), "a plaintext call was answered: {refused:?}");
    }
    let stranger = Ca::new("another CA");
    let refused = answers(daemon.addr, &stranger, None).await;
    assert!(refused.is_err(), "a client trusting another CA got through");
    answers(daemon.addr, &ca, None).await.expect("the right CA");
    daemon.terminate().await.assert_no_panic();
}

#[tokio::test]
async fn with_mtls_a_client_needs_a_certificate_from_the_client_ca() {
    let dir = TempDir::new("tls-mtls");
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let files = Files::write(dir.path(), &server_ca.leaf("circuitd"), Some(&client_ca));
    let daemon = start(&dir, &files.flags(true)).await;

    let refused = answers(daemon.addr, &server_ca, None).await;
    assert!(refused.is_err(), "a client without a certificate got through");
    let impostor = Ca::new("impostor CA").leaf("app");
    let refused = answers(daemon.addr, &server_ca, Some(&impostor)).await;
    assert!(refused.is_err(), "a certificate from another CA got through");
    answers(daemon.addr, &server_ca, Some(&client_ca.leaf("app")))
        .await
        .expect("a client certificate from the client CA");
    daemon.terminate().await.assert_no_panic();
}

#[tokio::test]
async fn every_call_works_over_mtls_on_both_listeners() {
    let dir = TempDir::new("tls-calls");
    let ca = Ca::new("one CA");
    let files = Files::write(dir.path(), &ca.leaf("circuitd"), Some(&ca));
    let mut flags = files.flags(true);
    flags.extend(["--admin-listen".to_owned(), "127.0.0.1:0".to_owned()]);
    let daemon = start(&dir, &flags).await;
    let app = ca.leaf("app");

    let channel = connect(daemon.addr, &ca, Some(&app)).await.expect("connect");
    let mut data = ProtectorClient::new(channel);
    ensure(&mut data, "tls", one_failure()).await;
    let mut watcher = Watcher::open(&mut data, watch_names(&["tls"])).await;
    watcher.snapshot().await;
    let reported = call(&mut data, "tls", v1::Outcome::Failure).await;
    assert!(reported.accepted);
    assert_eq!(watcher.next_transition().await.1.to(), v1::Status::Open);
    assert_eq!(get(&mut data, "tls").await.status(), v1::Status::Open);
    assert_eq!(list_all(&mut data).await.0.len(), 1);

    // The admin listener speaks TLS too, and only TLS.
    let admin_addr = daemon.admin_addr.expect("the admin address");
    let admin_channel = connect(admin_addr, &ca, Some(&app))
        .await
        .expect("connect to admin");
    let mut admin = AdminClient::new(admin_channel);
    set_status(&mut admin, "tls", v1::Status::Closed, None).await;
    assert_eq!(watcher.next_transition().await.1.to(), v1::Status::Closed);
    let plaintext = Endpoint::from_shared(format!("http://{admin_addr}"))
        .expect("uri")
        .timeout(DEADLINE)
        .connect()
        .await;
    if let Ok(channel) = plaintext {
        let refused = AdminClient::new(channel)
            .get_cluster(v1::GetClusterRequest {})
            .await;
        assert!(refused.is_err(), "plaintext reached the admin listener");
    }

    // The Rust client, over TLS with its identity.
    let client = Client::builder(format!("https://{}", daemon.addr))
        .tls_ca(ca.pem())
        .tls_identity(&app.cert, &app.key)
        .request_timeout(DEADLINE)
        .acquire_deadline(DEADLINE)
        .build()
        .await
        .expect("client");
    let protector = client
        .protector_builder("tls-client")
        .policy(
            ProtectorPolicy::try_new(PolicySpec {
                failure_limit: (1, 1),
                ..PolicySpec::default()
            })
            .expect("policy"),
        )
        .fallback(Fallback::Deny)
        .build()
        .await
        .expect("the protector, over TLS");
    let permit = protector.acquire().await.expect("admitted");
    assert!(!permit.is_fallback(), "the daemon was not reached");
    permit.resolve(Outcome::Success).await;
    assert_eq!(client.stats().fallback_decisions, 0);
    daemon.terminate().await.assert_no_panic();
}

#[tokio::test]
async fn sighup_swaps_the_certificate_and_open_connections_keep_working() {
    let dir = TempDir::new("tls-reload");
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    let files = Files::write(dir.path(), &old_ca.leaf("circuitd"), None);
    let daemon = start(&dir, &files.flags(false)).await;

    let old = connect(daemon.addr, &old_ca, None).await.expect("connect");
    let mut open = ProtectorClient::new(old);
    ensure(&mut open, "reload", one_failure()).await;
    let mut watcher = Watcher::open(&mut open, watch_names(&["reload"])).await;
    watcher.snapshot().await;
    assert!(answers(daemon.addr, &new_ca, None).await.is_err());

    // A reload that fails keeps the certificate in force.
    std::fs::write(&files.key, "half-written").expect("write");
    daemon.hangup();
    eventually(
        async || match daemon.stderr().contains("TLS files not reloaded") {
            true => Ok(()),
            false => Err(daemon.stderr()),
        },
        |log| format!("no failed reload logged:\n{log}"),
    )
    .await;
    answers(daemon.addr, &old_ca, None)
        .await
        .expect("the old certificate after a failed reload");

    files.replace(&new_ca.leaf("circuitd renewed"));
    daemon.hangup();
    eventually(
        async || answers(daemon.addr, &new_ca, None).await,
        |e| format!("new connections never saw the new certificate: {e}"),
    )
    .await;
    let refused = answers(daemon.addr, &old_ca, None).await;
    assert!(refused.is_err(), "a new connection still got the old certificate");

    // The connection made before the reload still serves calls and its Watch.
    call(&mut open, "reload", v1::Outcome::Failure).await;
    assert_eq!(watcher.next_transition().await.1.to(), v1::Status::Open);
    daemon.terminate().await.assert_no_panic();
}

#[tokio::test]
async fn bad_tls_settings_are_refused_at_start_naming_the_flag_and_file() {
    let dir = TempDir::new("tls-bad");
    let ca = Ca::new("CA");
    let files = Files::write(dir.path(), &ca.leaf("circuitd"), None);
    let cert = files.cert.display().to_string();
    let key = files.key.display().to_string();
    let missing = dir.path().join("missing.pem").display().to_string();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--tls-cert", &cert],
            "--tls-cert needs its private key (--tls-key)",
        ),
        (
            &["--tls-key", &key],
            "--tls-key needs its certificate (--tls-cert)",
        ),
        (
            &["--tls-cert", &missing, "--tls-key", &key],
            "missing.pem: cannot read it",
        ),
        (&["--tls-cert", &key, "--tls-key", &key], "no PEM certificate"),
    ];
    for (flags, expected) in cases {
        let exit = Circuitd::launch_listening(dir.path(), flags).await.refused();
        assert!(!exit.status.success());
        assert!(exit.stderr.contains(expected), "{flags:?}: {}", exit.stderr);
    }
}

#[tokio::test]
async fn a_follower_forwards_to_the_leader_over_mtls() {
    let etcd = Etcd::start(1).await;
    let dir = TempDir::new("tls-replicas");
    let ca = Ca::new("cluster CA");
    // One certificate for both replicas: each advertises 127.0.0.1:PORT, and with mTLS on
    // a follower presents it to the leader as its client certificate.
    let files = Files::write(dir.path(), &ca.leaf("replica"), Some(&ca));
    let prefix = unique_prefix("tls");
    let mut args = vec![
        "--etcd".to_owned(),
        etcd.urls_arg(),
        "--etcd-prefix".to_owned(),
        prefix,
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
    ];
    args.extend(files.flags(true));
    let mut replicas = Vec::new();
    for _ in 0..2 {
        replicas.push(Circuitd::launch_args_listening(&args).await.serving());
    }
    let app = ca.leaf("app");
    let mut clients = Vec::new();
    for replica in &replicas {
        let channel = connect(replica.addr, &ca, Some(&app)).await.expect("connect");
        clients.push(ProtectorClient::new(channel));
    }
    // One replica leads and the other follows: a write through each is answered only if
    // the follower's hop to the leader speaks mTLS too.
    for (i, client) in clients.iter().enumerate() {
        let name = format!("forwarded-{i}");
        eventually(
            async || {
                client
                    .clone()
                    .ensure_protector(v1::EnsureProtectorRequest {
                        name: name.clone(),
                        policy: Some(one_failure()),
                    })
                    .await
            },
            |status| format!("EnsureProtector through replica {i}: {status:?}"),
        )
        .await;
    }
    // A follower serves reads from what it replicated, which may lag a moment.
    for client in &clients {
        eventually(
            async || match list_all(&mut client.clone()).await.0.len() {
                2 => Ok(()),
                n => Err(n),
            },
            |n| format!("{n} protectors listed, expected 2"),
        )
        .await;
    }
    for replica in replicas {
        replica.terminate().await.assert_no_panic();
    }
}
