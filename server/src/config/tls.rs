//! The `[tls]` settings: which files, and that they come as a set. The files themselves
//! are read and checked when the daemon starts (`crate::tls`), so that SIGHUP re-reads
//! them by the same rules.

use std::path::PathBuf;

use super::error::ConfigError;
use super::load::{Layers, Picked};
use super::types::TlsSettings;

impl Layers<'_> {
    /// TLS if a certificate or key is configured; both or neither.
    pub(super) fn tls(&self) -> Result<Option<TlsSettings>, ConfigError> {
        let args = &self.parsed.args;
        let path = |id: &str,
                    flag: &Option<PathBuf>,
                    key: &'static str,
                    file: fn(&super::file::FileTls) -> &Option<PathBuf>| {
            self.pick(
                id,
                flag.clone().map(Some),
                key,
                |f| file(&f.tls).clone().map(Some),
                None,
            )
        };
        let cert = path("tls_cert", &args.tls_cert, "tls.cert", |t| &t.cert);
        let key = path("tls_key", &args.tls_key, "tls.key", |t| &t.key);
        let client_ca = path("tls_client_ca", &args.tls_client_ca, "tls.client_ca", |t| {
            &t.client_ca
        });
        let peer_ca = path("tls_peer_ca", &args.tls_peer_ca, "tls.peer_ca", |t| &t.peer_ca);
        let needs = |given: &Picked<Option<PathBuf>>, what: &str| ConfigError::Invalid {
            setting: given.key,
            origin: given.origin.clone(),
            rule: format!("needs {what} too"),
        };
        match (cert.value.clone(), key.value.clone()) {
            (None, None) => {
                for extra in [&client_ca, &peer_ca] {
                    if extra.value.is_some() {
                        return Err(needs(extra, "TLS (--tls-cert and --tls-key)"));
                    }
                }
                Ok(None)
            }
            (Some(_), None) => Err(needs(&cert, "its private key (--tls-key)")),
            (None, Some(_)) => Err(needs(&key, "its certificate (--tls-cert)")),
            (Some(cert), Some(key)) => Ok(Some(TlsSettings {
                cert,
                key,
                client_ca: client_ca.value,
                peer_ca: peer_ca.value,
            })),
        }
    }
}
