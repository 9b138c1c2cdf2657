//! TLS for both listeners, optional mTLS, and certificates re-read on SIGHUP.
//!
//! Why circuitd terminates TLS itself (tokio-rustls in the accept path, see
//! [`crate::connections::incoming`]) rather than with tonic's `ServerTlsConfig`: tonic
//! builds its rustls configuration once, when the server starts, and offers no way to
//! change it while serving, so a renewed certificate would need a restart that drops
//! every connection. Here each accepted connection takes the configuration current at
//! that moment ([`Tls::acceptor`], one atomic load); [`Tls::reload`] builds a whole new
//! rustls `ServerConfig` (certificate chain, key and client CA alike) and swaps it in.
//! Open connections keep the session they negotiated; new handshakes use the new
//! files. Swapping the whole configuration, rather than only a `ResolvesServerCert`,
//! lets a rotated client CA take effect the same way. A reload that fails (a file
//! missing, half-written, a key that does not match) keeps the configuration in force
//! and says why in the log.
//!
//! The handshake is bounded by the connection handshake timeout and runs on a task of
//! its own, so a slow or silent client never holds up the accept loop.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsSettings;

/// Why the TLS files could not be used. Each names the flag and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("{flag} {}: cannot read it: {error}", path.display())]
    Read {
        /// The flag that names the file, e.g. `--tls-cert`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// The file holds no PEM block of the kind expected.
    #[error("{flag} {}: {what}", path.display())]
    Invalid {
        /// The flag that names the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// The key is not the certificate's.
    #[error("--tls-key {} does not match the certificate in --tls-cert {}: {why}", key.display(), cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        why: String,
    },
}

/// The server's TLS configuration in force, swapped whole by [`Tls::reload`].
#[derive(Debug)]
pub struct Tls {
    settings: TlsSettings,
    current: ArcSwap<ServerConfig>,
    /// The same configuration offering HTTP/1.1 besides `h2`, for the HTTP listener
    /// (browsers and curl); swapped with `current`.
    http: ArcSwap<ServerConfig>,
}

/// The ALPN protocols the HTTP listener offers: HTTP/2 first, then HTTP/1.1.
fn for_http(config: &ServerConfig) -> ServerConfig {
    let mut config = config.clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

impl Tls {
    /// Reads and checks the files named by `settings`.
    pub fn load(settings: &TlsSettings) -> Result<Tls, TlsError> {
        let config = server_config(settings)?;
        Ok(Tls {
            http: ArcSwap::from_pointee(for_http(&config)),
            current: ArcSwap::from_pointee(config),
            settings: settings.clone(),
        })
    }

    /// Re-reads the files; on success new handshakes use them, on failure the
    /// configuration in force stays and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.settings)?;
        self.http.store(Arc::new(for_http(&config)));
        self.current.store(Arc::new(config));
        Ok(())
    }

    /// The acceptor for one new connection, with the configuration current now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    /// [`Tls::acceptor`] for the HTTP listener: ALPN offers HTTP/1.1 too.
    pub fn http_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.http.load_full())
    }

    /// [`Tls::reload`], logging what came of it (the SIGHUP reload, see `server`).
    pub fn reload_logged(&self) {
        match self.reload() {
            Ok(()) => tracing::info!(
                cert = %self.settings.cert.display(),
                "SIGHUP: TLS certificate and key re-read; new connections use them"
            ),
            Err(e) => tracing::error!(
                error = %e,
                "SIGHUP: TLS files not reloaded; the previous certificate stays in use"
            ),
        }
    }
}

/// The rustls configuration for `settings`: its chain and key, the client CA when
/// mTLS is on, and ALPN `h2` (gRPC clients such as grpc-core require it).
fn server_config(settings: &TlsSettings) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates("--tls-cert", &settings.cert)?;
    let key = private_key("--tls-key", &settings.key)?;
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| TlsError::Invalid {
            flag: "--tls-key",
            path: settings.key.clone(),
            what: format!("unusable private key: {e}"),
        })?;
    let mismatch = |why: String| TlsError::Mismatch {
        cert: settings.cert.clone(),
        key: settings.key.clone(),
        why,
    };
    CertifiedKey::new(chain.clone(), signing)
        .keys_match()
        .map_err(|e| mismatch(e.to_string()))?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| mismatch(e.to_string()))?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let roots = roots("--tls-client-ca", path)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Invalid {
                    flag: "--tls-client-ca",
                    path: path.clone(),
                    what: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| mismatch(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        flag,
        path: path.to_owned(),
        error,
    })
}

/// Every certificate in a PEM file; none is an error.
pub fn certificates(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let invalid = |what: String| TlsError::Invalid {
        flag,
        path: path.to_owned(),
        what,
    };
    let pem = read(flag, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("not a PEM file: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
fn private_key(flag: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(flag, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Invalid {
        flag,
        path: path.to_owned(),
        what: format!("holds no PEM private key (-----BEGIN PRIVATE KEY-----): {e}"),
    })
}

/// A trust store of the certificates in a PEM file.
pub fn roots(flag: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(flag, path)? {
        roots.add(cert).map_err(|e| TlsError::Invalid {
            flag,
            path: path.to_owned(),
            what: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// Replicated mode with TLS: how a follower dials the leader. It trusts `--tls-peer-ca`
/// (default `--tls-client-ca`) and, with mTLS on, presents this replica's own
/// certificate and key, so replicas need certificates valid for both server and client
/// use (no extended key usage, or both). The files are read once, at start.
pub fn peer(config: &crate::Config) -> Result<Option<tonic::transport::ClientTlsConfig>, crate::ServeError> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let (Some(settings), Some(_)) = (&config.tls, &config.cluster) else {
        return Ok(None);
    };
    let refuse = |e: TlsError| crate::ServeError::Config(e.to_string());
    let (flag, ca) = match (&settings.peer_ca, &settings.client_ca) {
        (Some(ca), _) => ("--tls-peer-ca", ca),
        (None, Some(ca)) => ("--tls-client-ca", ca),
        (None, None) => {
            return Err(crate::ServeError::Config(
                "replicated mode with TLS: set --tls-peer-ca to the CA that signed the other replicas' certificates, so followers can forward to the leader".into(),
            ));
        }
    };
    roots(flag, ca).map_err(refuse)?;
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(flag, ca).map_err(refuse)?));
    if settings.client_ca.is_some() {
        let cert = read("--tls-cert", &settings.cert).map_err(refuse)?;
        let key = read("--tls-key", &settings.key).map_err(refuse)?;
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Ok(Some(tls))
}

#[cfg(test)]
mod tests;
