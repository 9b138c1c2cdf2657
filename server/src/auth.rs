//! Who may call what: bearer tokens, each with one role (`--tokens FILE`).
//!
//! Design note. Every call passes one tower layer, [`Authenticate`], before it reaches a
//! service, so no RPC can be served without a check. The layer reads
//! `authorization: Bearer <token>`, hashes the token with SHA-256 and compares the
//! digest with each one of the tokens file in constant time (the file never holds a
//! token in clear, so reading it gives no one access). The role a call needs comes from
//! one table, [`METHODS`], keyed by the gRPC path; a path missing from it (a new RPC
//! nobody classified) needs `admin`, so forgetting it fails closed, and a unit test
//! fails until every RPC of the contract is listed. A caller it lets through carries its
//! [`Identity`] in the request's extensions, which the audit log names.
//!
//! Refusals: no credential, or one that matches no token, is UNAUTHENTICATED; a token
//! whose role is too weak is PERMISSION_DENIED naming the role needed. Each refusal is
//! logged on `circuitd::audit`, at most one line per second per reason (see `refusals`).
//!
//! Why `sha2` and `subtle`: RustCrypto's SHA-256 is pure Rust (no C toolchain or
//! assembly build step, unlike `ring`), widely used and audited, and fast enough to hash
//! a token per call; a plain hash suffices because a token is 32 random bytes, not a
//! password a slow KDF would have to protect. `subtle` compares the digests without an
//! early exit, so the time a refusal takes says nothing about how close a guess came.
//!
//! Without `--tokens` the layer lets every call through (the daemon warns at start that
//! its API is open). In replicated mode a follower checks a call before it forwards it,
//! and forwards the caller's `authorization` with it, so the leader checks it again
//! against its own file: replicas must share the tokens file.
//!
//! Layout: `tokens` the file and its rules, `refusals` the rate-limited refusal log.

mod refusals;
mod tokens;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::transport::server::TcpConnectInfo;

use crate::connections::Peer;
pub use refusals::{Reason, Refusals};
pub use tokens::{Role, Token, Tokens, TokensError, sha256_hex};

/// The role each gRPC method needs: THE table. A method not listed needs `admin`.
pub const METHODS: &[(&str, Role)] = &[
    ("/resilient_circuit.v1.ProtectorService/GetProtector", Role::Read),
    (
        "/resilient_circuit.v1.ProtectorService/ListProtectors",
        Role::Read,
    ),
    ("/resilient_circuit.v1.ProtectorService/Watch", Role::Read),
    (
        "/resilient_circuit.v1.ProtectorService/EnsureProtector",
        Role::Data,
    ),
    ("/resilient_circuit.v1.ProtectorService/Acquire", Role::Data),
    ("/resilient_circuit.v1.ProtectorService/Report", Role::Data),
    ("/resilient_circuit.v1.ProtectorService/Session", Role::Data),
    ("/resilient_circuit.v1.ProtectorService/ReportBatch", Role::Data),
    ("/resilient_circuit.v1.AdminService/GetCluster", Role::Read),
    ("/resilient_circuit.v1.AdminService/SetStatus", Role::Admin),
    ("/resilient_circuit.v1.AdminService/SetOverride", Role::Admin),
    ("/resilient_circuit.v1.AdminService/UpdatePolicy", Role::Admin),
    ("/resilient_circuit.v1.AdminService/DeleteProtector", Role::Admin),
    ("/grpc.health.v1.Health/Check", Role::Read),
    ("/grpc.health.v1.Health/Watch", Role::Read),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        Role::Read,
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        Role::Read,
    ),
];

/// The role `path` (e.g. `/resilient_circuit.v1.AdminService/SetStatus`) needs.
pub fn required(path: &str) -> Role {
    METHODS
        .iter()
        .find(|(method, _)| *method == path)
        .map_or(Role::Admin, |(_, role)| *role)
}

/// The caller a call was let through for, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's `name` in the tokens file.
    pub name: Arc<str>,
    /// Its role.
    pub role: Role,
}

/// The tokens in force, the file they come from, and the refusal log.
#[derive(Debug)]
pub struct Guard {
    path: PathBuf,
    tokens: ArcSwap<Tokens>,
    refusals: Refusals,
}

impl Guard {
    /// Reads and checks the tokens file.
    pub fn load(path: &Path) -> Result<Guard, TokensError> {
        Ok(Guard {
            path: path.to_owned(),
            tokens: ArcSwap::from_pointee(Tokens::load(path)?),
            refusals: Refusals::default(),
        })
    }

    /// Reads the file again; a file that does not load leaves the tokens in force as
    /// they were. Returns how many tokens are in force.
    pub fn reload(&self) -> Result<usize, TokensError> {
        let tokens = Tokens::load(&self.path)?;
        let count = tokens.len();
        self.tokens.store(Arc::new(tokens));
        Ok(count)
    }

    /// [`Guard::reload`], logging what came of it (the SIGHUP reload, see `server`).
    pub fn reload_logged(&self) {
        match self.reload() {
            Ok(count) => {
                tracing::info!(file = %self.path.display(), tokens = count, "SIGHUP: tokens reloaded")
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: the tokens file was refused; the previous tokens stay in force")
            }
        }
    }

    /// Who `authorization` (the header's value, if any) is, and whether that identity may
    /// call `path`.
    pub fn check(
        &self,
        path: &str,
        authorization: Option<&[u8]>,
    ) -> Result<Identity, (Reason, tonic::Status)> {
        let rpc = path.rsplit('/').next().unwrap_or(path);
        self.authorize(required(path), rpc, authorization)
    }

    /// Who `authorization` is, and whether that identity holds at least `needed` to do
    /// `what` (named in the refusal). The one check behind gRPC calls and HTTP requests.
    pub fn authorize(
        &self,
        needed: Role,
        what: &str,
        authorization: Option<&[u8]>,
    ) -> Result<Identity, (Reason, tonic::Status)> {
        let Some(value) = authorization else {
            return Err((
                Reason::Missing,
                tonic::Status::unauthenticated("no credential: send `authorization: Bearer <token>`"),
            ));
        };
        let Some(token) = bearer(value) else {
            return Err((
                Reason::Malformed,
                tonic::Status::unauthenticated("the authorization header is not `Bearer <token>`"),
            ));
        };
        let tokens = self.tokens.load();
        let Some(found) = tokens.find(token) else {
            return Err((Reason::Unknown, tonic::Status::unauthenticated("unknown token")));
        };
        if found.role < needed {
            return Err((
                Reason::Forbidden,
                tonic::Status::permission_denied(format!(
                    "{what} needs the {needed} role; token {:?} has the {} role",
                    found.name, found.role
                )),
            ));
        }
        Ok(Identity {
            name: Arc::clone(&found.name),
            role: found.role,
        })
    }

    /// Logs a refusal unless this reason was logged less than a second ago.
    pub(crate) fn refused(
        &self,
        reason: Reason,
        path: &str,
        peer: Option<std::net::SocketAddr>,
        status: &tonic::Status,
    ) {
        if let Some(suppressed) = self.refusals.admit(reason, tokio::time::Instant::now()) {
            tracing::warn!(
                target: "circuitd::audit",
                reason = reason.as_str(),
                rpc = path,
                peer = ?peer,
                suppressed,
                message = status.message(),
                "refused"
            );
        }
    }
}

/// The token of an `authorization` value `Bearer <token>` (the scheme in any case).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// The layer that checks every call against the tokens (see the module note); with no
/// guard, every call goes through.
#[derive(Debug, Clone, Default)]
pub struct Authenticate {
    guard: Option<Arc<Guard>>,
}

impl Authenticate {
    /// Checks calls against `guard`, or none without one.
    pub fn new(guard: Option<Arc<Guard>>) -> Authenticate {
        Authenticate { guard }
    }
}

impl<S> tower_layer::Layer<S> for Authenticate {
    type Service = Authenticating<S>;

    fn layer(&self, inner: S) -> Authenticating<S> {
        Authenticating {
            inner,
            guard: self.guard.clone(),
        }
    }
}

/// [`Authenticate`] around a service.
#[derive(Debug, Clone)]
pub struct Authenticating<S> {
    inner: S,
    guard: Option<Arc<Guard>>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Authenticating<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        if let Some(guard) = &self.guard {
            let path = request.uri().path();
            let authorization = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(http::HeaderValue::as_bytes);
            match guard.check(path, authorization) {
                Ok(identity) => {
                    request.extensions_mut().insert(identity);
                }
                Err((reason, status)) => {
                    let peer = request
                        .extensions()
                        .get::<TcpConnectInfo>()
                        .or_else(|| request.extensions().get::<Peer>().map(|p| &p.tcp))
                        .and_then(TcpConnectInfo::remote_addr);
                    guard.refused(reason, path, peer, &status);
                    let response = status.into_http::<ResBody>();
                    return Box::pin(std::future::ready(Ok(response)));
                }
            }
        }
        let response = self.inner.call(request);
        Box::pin(response)
    }
}

#[cfg(test)]
mod tests;
