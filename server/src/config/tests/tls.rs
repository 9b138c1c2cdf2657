//! The `[tls]` settings: where each path comes from, and that cert and key go together.

use std::path::PathBuf;

use super::{load_err, load_ok};
use crate::config::TlsSettings;

const FILE: &str = r#"
[tls]
cert = "file-cert.pem"
key = "file-key.pem"
client_ca = "file-ca.pem"
"#;

#[test]
fn without_tls_settings_the_daemon_serves_plaintext() {
    assert_eq!(load_ok(&[], &[], None).config.tls, None);
}

#[test]
fn from_the_file_the_environment_and_flags() {
    let s = load_ok(&["--config", "c.toml"], &[], Some(FILE));
    assert_eq!(
        s.config.tls,
        Some(TlsSettings {
            cert: PathBuf::from("file-cert.pem"),
            key: PathBuf::from("file-key.pem"),
            client_ca: Some(PathBuf::from("file-ca.pem")),
            peer_ca: None,
        })
    );
    let s = load_ok(
        &["--config", "c.toml", "--tls-key", "flag-key.pem"],
        &[
            ("CIRCUITD_TLS_CERT", "env-cert.pem"),
            ("CIRCUITD_TLS_PEER_CA", "peers.pem"),
        ],
        Some(FILE),
    );
    let tls = s.config.tls.expect("tls");
    assert_eq!(tls.cert, PathBuf::from("env-cert.pem"));
    assert_eq!(tls.key, PathBuf::from("flag-key.pem"));
    assert_eq!(tls.client_ca, Some(PathBuf::from("file-ca.pem")));
    assert_eq!(tls.peer_ca, Some(PathBuf::from("peers.pem")));
}

#[test]
fn a_certificate_without_its_key_and_the_reverse_are_refused_naming_the_source() {
    let (_, e) = load_err(&["--tls-cert", "c.pem"], &[], None);
    assert_eq!(e, "--tls-cert needs its private key (--tls-key) too");
    let (_, e) = load_err(&[], &[("CIRCUITD_TLS_KEY", "k.pem")], None);
    assert_eq!(
        e,
        "environment variable CIRCUITD_TLS_KEY needs its certificate (--tls-cert) too"
    );
    let (_, e) = load_err(
        &["--config", "c.toml"],
        &[],
        Some("[tls]\nclient_ca = \"ca.pem\"\n"),
    );
    assert!(
        e.ends_with("tls.client_ca needs TLS (--tls-cert and --tls-key) too"),
        "{e}"
    );
    let (_, e) = load_err(
        &["--config", "c.toml"],
        &[],
        Some("[tls]\ncert = \"c.pem\"\nkye = \"k\"\n"),
    );
    assert!(e.contains("unknown field `kye`"), "{e}");
}
