//! Who may call what: bearer tokens and client certificates, each with one role
//! (`--tokens FILE`), and the identity every call carries.
//!
//! Design note. Every call passes one tower layer, [`Authenticate`], before it reaches a
//! service, so no RPC can be served without a check. The layer reads
//! `authorization: Bearer <token>`, hashes the token with SHA-256 and compares the
//! digest with each one of the tokens file in constant time (the file never holds a
//! token in clear, so reading it gives no one access); the last few valid tokens are
//! remembered (`cache`), so the hot path skips the hash. The role a call needs comes from
//! one table, [`METHODS`], keyed by the gRPC path; a path missing from it (a new RPC
//! nobody classified) needs `admin`, so forgetting it fails closed, and a unit test
//! fails until every RPC of the contract is listed.
//!
//! Identities. Every call the layer lets through carries an [`Identity`] in the
//! request's extensions, which the audit log names and the per-identity limits count
//! (`crate::limits`). It is, in this order:
//! 1. with an `authorization` header, the token's name. A presented token always
//!    decides: a bad one is UNAUTHENTICATED even if the client certificate maps to a
//!    role, so a client never silently runs with other rights than the ones it asked
//!    for;
//! 2. with mTLS and no token, the `[[certificate]]` entry whose subject is the client
//!    certificate's (verified at the handshake; see `crate::subject` for the matching);
//! 3. without `--tokens` (the API is open), the peer's IP address, with every role, so
//!    the limits still apply per client machine (its port is left out: one machine,
//!    many connections).
//!
//! Refusals: no credential, or one that matches no token, is UNAUTHENTICATED; an
//! identity whose role is too weak is PERMISSION_DENIED naming the role needed. Each
//! refusal is logged on `circuitd::audit`, at most one line per second per reason (see
//! `refusals`).
//!
//! Why `sha2` and `subtle`: RustCrypto's SHA-256 is pure Rust (no C toolchain or
//! assembly build step, unlike `ring`), widely used and audited, and fast enough to hash
//! a token per call; a plain hash suffices because a token is 32 random bytes, not a
//! password a slow KDF would have to protect. `subtle` compares the digests without an
//! early exit, so the time a refusal takes says nothing about how close a guess came.
//!
//! Without `--tokens` every call goes through (the daemon warns at start that its API
//! is open). In replicated mode a follower checks a call before it forwards it, and
//! forwards the caller's `authorization` with it, so the leader checks it again against
//! its own file: replicas must share the tokens file. The leader sees the follower's
//! connection, though, so a call forwarded on a certificate role alone, or with the API
//! open, is known to the leader by the follower's certificate or address: in a cluster,
//! give clients tokens.
//!
//! Layout: `tokens` the file and its rules, `cache` the recently seen tokens,
//! `refusals` the rate-limited refusal log.

mod cache;
mod refusals;
mod tokens;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::transport::server::TcpConnectInfo;

use crate::connections::Peer;
use crate::subject::Subject;
use cache::TokenCache;
pub use refusals::{Reason, Refusals};
pub use tokens::{Certificate, Overrides, Role, Token, Tokens, TokensError, sha256_hex};

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
    // What-if changes nothing: whoever may read a protector may ask.
    ("/resilient_circuit.v1.AdminService/SimulatePolicy", Role::Read),
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

/// How a caller was recognised (see the module note for the order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Credential {
    /// A bearer token of the tokens file.
    Token,
    /// A client certificate whose subject a `[[certificate]]` table maps.
    Certificate,
    /// Nothing: the API is open, and the caller is its IP address.
    Address,
}

impl Credential {
    /// Its name in messages and in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Credential::Token => "token",
            Credential::Certificate => "certificate",
            Credential::Address => "address",
        }
    }
}

/// The caller a call was let through for, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's or certificate entry's `name`, or the peer's IP address.
    pub name: Arc<str>,
    /// Its role.
    pub role: Role,
    /// How it was recognised.
    pub credential: Credential,
    /// Its own limits from the tokens file, if any.
    pub limits: Overrides,
}

impl Identity {
    /// The caller of an open API (no `--tokens`): its IP address, with every role.
    pub fn open(peer: Option<std::net::SocketAddr>) -> Identity {
        let name: Arc<str> = peer.map_or_else(|| "unknown".into(), |addr| addr.ip().to_string().into());
        Identity {
            name,
            role: Role::Admin,
            credential: Credential::Address,
            limits: Overrides::default(),
        }
    }

    /// `token:NAME`, `certificate:NAME` or `address:IP`: what the per-identity limits
    /// count by, and what the journal records as a protector's creator. The kind keeps
    /// a token from being counted with a machine that happens to share its name.
    pub fn key(&self) -> String {
        format!("{}:{}", self.credential.as_str(), self.name)
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.credential {
            Credential::Address => write!(f, "address {}", self.name),
            credential => write!(f, "{} {:?}", credential.as_str(), self.name),
        }
    }
}

/// The entries of one reading of the tokens file and the tokens recently found in them:
/// swapped together, so a reload never finds a token the new file no longer has.
#[derive(Debug)]
struct Loaded {
    tokens: Tokens,
    cache: TokenCache,
}

/// The tokens in force, the file they come from, and the refusal log.
#[derive(Debug)]
pub struct Guard {
    path: PathBuf,
    /// Whether clients present certificates (`--tls-client-ca`): certificate roles
    /// need it.
    mtls: bool,
    loaded: ArcSwap<Loaded>,
    refusals: Refusals,
}

impl Guard {
    /// Reads and checks the tokens file; `mtls` says whether certificate roles can
    /// apply (they are refused otherwise).
    pub fn load(path: &Path, mtls: bool) -> Result<Guard, TokensError> {
        Ok(Guard {
            path: path.to_owned(),
            mtls,
            loaded: ArcSwap::from_pointee(Guard::read(path, mtls)?),
            refusals: Refusals::default(),
        })
    }

    fn read(path: &Path, mtls: bool) -> Result<Loaded, TokensError> {
        let tokens = Tokens::load(path)?;
        tokens.require_mtls(path, mtls)?;
        Ok(Loaded {
            tokens,
            cache: TokenCache::default(),
        })
    }

    /// Reads the file again; a file that does not load leaves the tokens in force as
    /// they were. Returns how many entries are in force.
    pub fn reload(&self) -> Result<usize, TokensError> {
        let loaded = Guard::read(&self.path, self.mtls)?;
        let count = loaded.tokens.len();
        self.loaded.store(Arc::new(loaded));
        Ok(count)
    }

    /// [`Guard::reload`], logging what came of it (the SIGHUP reload, see `server`).
    pub fn reload_logged(&self) {
        match self.reload() {
            Ok(count) => {
                tracing::info!(file = %self.path.display(), entries = count, "SIGHUP: tokens reloaded")
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: the tokens file was refused; the previous tokens stay in force")
            }
        }
    }

    /// Who the caller is, from `authorization` (the header's value, if any) or else the
    /// client certificate's `subject` (mTLS), and whether that identity may call `path`.
    pub fn check(
        &self,
        path: &str,
        authorization: Option<&[u8]>,
        subject: Option<&Subject>,
    ) -> Result<Identity, (Reason, tonic::Status)> {
        let rpc = path.rsplit('/').next().unwrap_or(path);
        self.authorize(required(path), rpc, authorization, subject)
    }

    /// Who the caller is, from `authorization` (the header's value, if any) or else the
    /// client certificate's `subject` (mTLS), and whether that identity holds at least
    /// `needed` to do `what` (named in the refusal). The one check behind gRPC calls and
    /// HTTP requests.
    pub fn authorize(
        &self,
        needed: Role,
        what: &str,
        authorization: Option<&[u8]>,
        subject: Option<&Subject>,
    ) -> Result<Identity, (Reason, tonic::Status)> {
        let loaded = self.loaded.load();
        let identity = match authorization {
            Some(value) => loaded.token(value)?,
            None => match subject.and_then(|s| loaded.tokens.certificate(s)) {
                Some(found) => Identity {
                    name: Arc::clone(&found.name),
                    role: found.role,
                    credential: Credential::Certificate,
                    limits: found.limits,
                },
                None => {
                    let message = match subject {
                        Some(subject) => format!(
                            "no credential: send `authorization: Bearer <token>`; the client certificate's subject {:?} maps to no role",
                            subject.to_string()
                        ),
                        None => "no credential: send `authorization: Bearer <token>`".to_owned(),
                    };
                    return Err((Reason::Missing, tonic::Status::unauthenticated(message)));
                }
            },
        };
        if identity.role < needed {
            return Err((
                Reason::Forbidden,
                tonic::Status::permission_denied(format!(
                    "{what} needs the {needed} role; {identity} has the {} role",
                    identity.role
                )),
            ));
        }
        Ok(identity)
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

impl Loaded {
    /// The identity of the token in `authorization`, looked up in the cache first.
    fn token(&self, authorization: &[u8]) -> Result<Identity, (Reason, tonic::Status)> {
        let Some(token) = bearer(authorization) else {
            return Err((
                Reason::Malformed,
                tonic::Status::unauthenticated("the authorization header is not `Bearer <token>`"),
            ));
        };
        let index = self.cache.get(token).or_else(|| {
            let index = self.tokens.position(token)?;
            self.cache.insert(token, index);
            Some(index)
        });
        let Some(found) = index.and_then(|i| self.tokens.token(i)) else {
            return Err((Reason::Unknown, tonic::Status::unauthenticated("unknown token")));
        };
        Ok(Identity {
            name: Arc::clone(&found.name),
            role: found.role,
            credential: Credential::Token,
            limits: found.limits,
        })
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
        let peer = request
            .extensions()
            .get::<TcpConnectInfo>()
            .or_else(|| request.extensions().get::<Peer>().map(|p| &p.tcp))
            .and_then(TcpConnectInfo::remote_addr);
        let Some(guard) = &self.guard else {
            request.extensions_mut().insert(Identity::open(peer));
            return Box::pin(self.inner.call(request));
        };
        let path = request.uri().path();
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(http::HeaderValue::as_bytes);
        let subject = request.extensions().get::<Peer>().and_then(Peer::client_subject);
        match guard.check(path, authorization, subject) {
            Ok(identity) => {
                request.extensions_mut().insert(identity);
                Box::pin(self.inner.call(request))
            }
            Err((reason, status)) => {
                guard.refused(reason, path, peer, &status);
                let response = status.into_http::<ResBody>();
                Box::pin(std::future::ready(Ok(response)))
            }
        }
    }
}

#[cfg(test)]
mod tests;
