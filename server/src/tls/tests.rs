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
    assert_eq!(tls.current.load().alpn_protocols, vec![b"h2".to_vec()]);
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
