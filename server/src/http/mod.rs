//! The HTTP listener (`--http-listen`): `/metrics` for Prometheus, the live dashboard at
//! `/`, and `/healthz`.
//!
//! Design note. The listener is axum, served on the daemon's runtime: tonic 0.14 is
//! built on the same axum, hyper and tower, so it costs little and its handlers are
//! ordinary tower services. Connections come from the same accept path as gRPC
//! ([`crate::connections::incoming_for`]): the same cap on open connections, handshake
//! and idle timeouts, and TLS with the configuration a SIGHUP swaps (ALPN offers
//! HTTP/1.1 besides `h2`). Each request counts as a call on its connection for the idle
//! timeout, as a gRPC call does, so an open event stream keeps its connection.
//!
//! Tokens: with `--tokens`, a route wrapped in [`require_read`] (or [`require_admin`])
//! needs `Authorization: Bearer <token>` with at least that role, checked by the same
//! [`Guard::authorize`] as every gRPC call; refusals are 401 (no or unknown token, with
//! `WWW-Authenticate: Bearer`) or 403 (role too weak), logged like gRPC refusals.
//! `/healthz` says only whether the daemon serves, so it needs no token (load
//! balancers and probes carry none); every other route decides with these helpers.
//!
//! Layout: `metrics` the `/metrics` route, `dashboard` the page and its feeds,
//! `listener` the accept loop handed to axum.

pub mod dashboard;
mod listener;
pub mod metrics;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::auth::{Guard, Identity, Role};
use crate::clock::Clock;
use crate::cluster::Cluster;
use crate::config::{Limits, WatchConfig};
use crate::connections::Peer;
use crate::metrics::Metrics;
use crate::registry::Registry;

/// What the HTTP handlers need; cheap to clone (every field is shared).
#[derive(Debug, Clone)]
pub struct HttpContext {
    /// This replica's role and the registry it serves now (swapped when the role
    /// changes): read it per request, never keep it.
    pub cluster: Arc<Cluster>,
    /// The tokens in force, or none: HTTP is open, like the gRPC API.
    pub guard: Option<Arc<Guard>>,
    /// The daemon's counters and histograms.
    pub metrics: Arc<Metrics>,
    /// The configured limits (names, watchers).
    pub limits: Limits,
    /// Watch buffers, history and progress (for event feeds opened with
    /// [`Registry::watch`]).
    pub watch: WatchConfig,
    /// Cancelled when the daemon begins to shut down: long-lived responses (event
    /// streams) must end then, or the HTTP listener's graceful shutdown waits on them.
    pub draining: CancellationToken,
    /// How many protectors get per-protector series in `/metrics`.
    pub metrics_max_protectors: usize,
    /// The gRPC services themselves, which the dashboard calls in process so that its
    /// reads, feed and admin actions get their validation, forwarding and audit.
    pub protectors: crate::service::ProtectorApi,
    /// See `protectors`.
    pub admin: crate::service::AdminApi,
}

impl HttpContext {
    /// The registry this replica serves now.
    pub fn registry(&self) -> Arc<Registry> {
        self.cluster.registry()
    }

    /// The daemon's clock (the time protectors' deadlines are written in).
    pub fn clock(&self) -> Clock {
        self.cluster.registry().clock()
    }

    /// Whether the caller whose headers these are holds at least `needed`, to do `what`
    /// (named in a refusal): `Ok(None)` when no tokens are configured, `Ok(identity)`
    /// when the token is good enough. A refusal is logged (rate-limited) and renders as
    /// 401 or 403.
    pub fn authorize(
        &self,
        headers: &HeaderMap,
        peer: Option<&Peer>,
        needed: Role,
        what: &str,
    ) -> Result<Option<Identity>, Refused> {
        check(self.guard.as_deref(), headers, peer, needed, what)
    }
}

/// [`HttpContext::authorize`] against `guard`.
fn check(
    guard: Option<&Guard>,
    headers: &HeaderMap,
    peer: Option<&Peer>,
    needed: Role,
    what: &str,
) -> Result<Option<Identity>, Refused> {
    let Some(guard) = guard else {
        return Ok(None);
    };
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let subject = peer.and_then(Peer::client_subject);
    match guard.authorize(needed, what, authorization, subject) {
        Ok(identity) => Ok(Some(identity)),
        Err((reason, status)) => {
            let addr = peer.and_then(|p| p.tcp.remote_addr());
            guard.refused(reason, what, addr, &status);
            let code = match status.code() {
                tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            };
            Err(Refused {
                code,
                message: status.message().to_owned(),
            })
        }
    }
}

/// A request refused for its credential: 401 or 403 with the reason as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// 401 (no, malformed or unknown token) or 403 (the role is too weak).
    pub code: StatusCode,
    /// Why, for the caller.
    pub message: String,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let mut response = (self.code, format!("{}\n", self.message)).into_response();
        if self.code == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Middleware: lets the request through only with the read role (or none configured).
/// Use with `route_layer(axum::middleware::from_fn_with_state(ctx, require_read))`.
pub async fn require_read(State(ctx): State<HttpContext>, request: Request, next: Next) -> Response {
    require(&ctx, Role::Read, request, next).await
}

/// Middleware: lets the request through only with the admin role (or none configured).
pub async fn require_admin(State(ctx): State<HttpContext>, request: Request, next: Next) -> Response {
    require(&ctx, Role::Admin, request, next).await
}

/// The caller's identity goes into the request's extensions, for handlers that log it.
async fn require(ctx: &HttpContext, needed: Role, mut request: Request, next: Next) -> Response {
    let what = format!("{} {}", request.method(), request.uri().path());
    let checked = ctx.authorize(
        request.headers(),
        request.extensions().get::<Peer>(),
        needed,
        &what,
    );
    match checked {
        Ok(identity) => {
            if let Some(identity) = identity {
                request.extensions_mut().insert(identity);
            }
            next.run(request).await
        }
        Err(refused) => refused.into_response(),
    }
}

/// Serves HTTP on `listener` until `ctx.draining`; the task ends once every open
/// response has (event streams end on `draining` themselves).
pub fn spawn(
    listener: tokio::net::TcpListener,
    ctx: HttpContext,
    max_connections: usize,
    timeouts: &crate::config::ConnectionConfig,
    tls: Option<Arc<crate::tls::Tls>>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let accepted = listener::accepted(listener, max_connections, timeouts, tls)?;
    let draining = ctx.draining.clone();
    let app = router(ctx)
        .layer(crate::connections::CountCalls)
        .layer(axum::middleware::map_request(listener::peer_extension));
    Ok(tokio::spawn(async move {
        let served = axum::serve(accepted, app.into_make_service_with_connect_info::<Peer>())
            .with_graceful_shutdown(draining.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the HTTP listener failed");
        }
    }))
}

/// Every route the listener serves.
pub fn router(ctx: HttpContext) -> Router {
    Router::new()
        .route("/healthz", get(healthz).with_state(ctx.draining.clone()))
        .merge(metrics::routes(ctx.clone()))
        .merge(dashboard::routes(ctx))
}

/// 200 while the daemon serves, 503 once it drains.
async fn healthz(State(draining): State<CancellationToken>) -> Response {
    if draining.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

#[cfg(test)]
mod tests;
