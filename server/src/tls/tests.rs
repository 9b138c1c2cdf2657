//! The TLS files' checks: each error names the flag and the file; a failed reload keeps
//! the configuration in force.

use std::path::{Path, PathBuf};

use super::*;

/// A self-signed certificate and its key for `localhost`, as PEM.
fn self_signed() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("circuitd-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn settings(cert: PathBuf, key: PathBuf) -> TlsSettings {
    TlsSettings {
        cert,
        key,
        client_ca: None,
        peer_ca: None,
    }
}

#[test]
fn a_matching_certificate_and_key_load_and_reload() {
    let dir = temp_dir("ok");
    let (cert, key) = self_signed();
    let s = settings(write(&dir, "c.pem", &cert), write(&dir, "k.pem", &key));
    let tls = Tls::load(&s).unwrap();
    assert_eq!(tls.current.load().server.alpn_protocols, vec![b"h2".to_vec()]);
    tls.reload().unwrap();
}

#[test]
fn each_bad_file_is_named_with_its_flag() {
    let dir = temp_dir("bad");
    let (cert, key) = self_signed();
    let (_, other_key) = self_signed();
    let cert = write(&dir, "c.pem", &cert);
    let key = write(&dir, "k.pem", &key);
    let garbage = write(&dir, "garbage.pem", "not pem at all\n");
    let missing = dir.join("missing.pem");

    let e = Tls::load(&settings(missing.clone(), key.clone()))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("--tls-cert ") && e.contains("missing.pem") && e.contains("cannot read"),
        "{e}"
    );
    let e = Tls::load(&settings(garbage.clone(), key.clone()))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("--tls-cert ") && e.contains("no PEM certificate"),
        "{e}"
    );
    let e = Tls::load(&settings(cert.clone(), garbage.clone()))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("--tls-key ") && e.contains("no PEM private key"),
        "{e}"
    );
    let e = Tls::load(&settings(cert.clone(), write(&dir, "other.pem", &other_key)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not match the certificate"), "{e}");
    let mut s = settings(cert, key);
    s.client_ca = Some(garbage);
    let e = Tls::load(&s).unwrap_err().to_string();
    assert!(
        e.starts_with("--tls-client-ca ") && e.contains("garbage.pem"),
        "{e}"
    );
}

#[test]
fn a_failed_reload_keeps_the_configuration_in_force() {
    let dir = temp_dir("keep");
    let (cert, key) = self_signed();
    let s = settings(write(&dir, "c.pem", &cert), write(&dir, "k.pem", &key));
    let tls = Tls::load(&s).unwrap();
    let before = tls.current.load_full();
    write(&dir, "k.pem", "half-written");
    assert!(tls.reload().is_err());
    assert!(Arc::ptr_eq(&before, &tls.current.load_full()));
}

/// A CA, and a leaf it signs (as DER), for the replica check.
fn ca() -> (String, impl Fn() -> rustls_pki_types::CertificateDer<'static>) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let pem = issuer.pem();
    let leaf = move || {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        cert.der().clone()
    };
    (pem, leaf)
}

#[test]
fn a_replica_is_told_by_a_certificate_from_the_peer_ca_only_with_mtls() {
    let dir = temp_dir("replica");
    let (cert, key) = self_signed();
    let (peer_pem, replica) = ca();
    let (client_pem, client) = ca();
    let both = write(&dir, "clients.pem", &format!("{client_pem}{peer_pem}"));
    let peers = write(&dir, "peers.pem", &peer_pem);
    let mut s = settings(write(&dir, "c.pem", &cert), write(&dir, "k.pem", &key));
    s.client_ca = Some(both);
    s.peer_ca = Some(peers);
    assert!(replicas_by_certificate(Some(&s)));
    let tls = Tls::load(&s).unwrap();
    assert!(tls.is_replica(Some(&[replica()])));
    assert!(!tls.is_replica(Some(&[client()])));
    assert!(!tls.is_replica(None));
    // Without mTLS no certificate is asked for: replicas are told by their address.
    s.client_ca = None;
    assert!(!replicas_by_certificate(Some(&s)));
    assert!(!Tls::load(&s).unwrap().is_replica(Some(&[replica()])));
}
