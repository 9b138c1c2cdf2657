//! `--http-listen` with `--tls-cert`: the HTTP listener speaks TLS with the gRPC
//! listeners' certificate (ALPN offers HTTP/1.1 too), and refuses plaintext.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use support::http;
use support::process::Circuitd;
use support::*;

/// (CA PEM, server certificate PEM for 127.0.0.1, its key PEM).
fn certificates() -> (String, String, String) {
    let mut authority = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    authority.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer =
        CertifiedIssuer::self_signed(authority, KeyPair::generate().expect("a CA key")).expect("the CA");
    let server_key = KeyPair::generate().expect("a server key");
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("server params")
        .signed_by(&server_key, &issuer)
        .expect("signed");
    (issuer.pem(), server.pem(), server_key.serialize_pem())
}

#[tokio::test]
async fn the_http_listener_serves_tls_with_the_daemons_certificate() {
    let dir = TempDir::new("metrics-tls");
    let (ca, cert, key) = certificates();
    let (cert_path, key_path) = (dir.path().join("server.pem"), dir.path().join("server-key.pem"));
    std::fs::write(&cert_path, cert).expect("write the certificate");
    std::fs::write(&key_path, key).expect("write the key");
    let flags = [
        "--http-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert_path.to_str().expect("utf-8"),
        "--tls-key",
        key_path.to_str().expect("utf-8"),
    ];
    let daemon = Circuitd::launch_listening(&dir.path().join("data"), &flags)
        .await
        .serving();
    let addr = daemon.http_addr.expect("the HTTP address");

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(ca.as_bytes()).expect("the CA in PEM"))
        .expect("a usable CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("a server name");
    let tls = tokio::time::timeout(
        DEADLINE,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("the handshake in time")
    .expect("a TLS handshake with the daemon's certificate");
    let reply = http::exchange(tls, &addr.to_string(), "GET", "/metrics", &[], "").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.body.contains("circuitd_build_info"), "{}", reply.body);

    // Plaintext HTTP gets no answer: the listener expects a TLS handshake.
    let mut plain = tokio::net::TcpStream::connect(addr).await.expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, plain.read_to_end(&mut raw))
        .await
        .expect("closed in time");
    assert!(!String::from_utf8_lossy(&raw).contains("circuitd_build_info"));
}
