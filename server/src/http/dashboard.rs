//! The live dashboard at `/`: one page, its JSON API and its live feed.
//!
//! Design note. The page and its script and style are compiled into the binary
//! (`include_str!`), so nothing is built or fetched on a user's machine. Everything the
//! page reads or changes goes through the gRPC services' own code, called in process
//! with a `tonic::Request` built from the HTTP request ([`grpc_request`]): the table is
//! ListProtectors with its page tokens (one page of at most 1,000 at a time, so 10,000
//! protectors cost no more than a page), the detail is GetProtector, the feed is a Watch
//! stream encoded as Server-Sent Events (`sse`), and the actions are AdminService's
//! SetStatus and SetOverride (`actions`). So the page gets the same validation, errors,
//! bounded watch buffers and resyncs, forwarding to the leader on a follower, and the
//! same audit line naming the token's identity and the browser's address.
//!
//! Tokens (with `--tokens`): the page and its assets need none (they hold no data; the
//! page asks for a token). `/api/*` reads need the read role and `/api/admin` the admin
//! role, checked by the listener's [`require_read`] and [`require_admin`]. The page sends
//! the token as `Authorization: Bearer` on every request, the feed included: it reads
//! the event stream with `fetch()`, because `EventSource` cannot send headers, and a
//! token in the URL would land in logs and history. The bearer header also rules out
//! cross-site requests riding on ambient credentials; without tokens, `/api/admin` still
//! takes only `Content-Type: application/json`, which a cross-site form cannot send
//! without a CORS preflight this listener never grants.
//!
//! Layout: `view` the page's view of the contract's messages, `sse` the feed's encoding,
//! `actions` the admin actions as AdminService requests.

mod actions;
mod sse;
mod view;

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use resilient_circuit_api::v1::{
    self, admin_service_server::AdminService, protector_service_server::ProtectorService,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{HttpContext, require_admin, require_read};
use crate::auth::Identity;
use crate::connections::Peer;
use actions::{Action, ActionBody};

/// How often an idle feed carries a `progress` event: well under the idle timeouts of
/// common proxies, and the page's sign that the stream is alive.
const FEED_PROGRESS: Duration = Duration::from_secs(10);

/// The assets, compiled in: path, content type, body.
const ASSETS: [(&str, &str, &str); 4] = [
    ("/", "text/html; charset=utf-8", include_str!("assets/index.html")),
    (
        "/assets/dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/dashboard.js"),
    ),
    (
        "/assets/detail.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/detail.js"),
    ),
    (
        "/assets/dashboard.css",
        "text/css; charset=utf-8",
        include_str!("assets/dashboard.css"),
    ),
];

/// The page loads only its own script and style and talks only to this listener.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes: the page and its assets open, `/api/*` behind the tokens.
pub fn routes(ctx: HttpContext) -> Router {
    let reads = Router::new()
        .route("/api/protectors", get(list))
        .route("/api/protector", get(one))
        .route("/api/events", get(events))
        .route("/api/cluster", get(cluster))
        .route_layer(middleware::from_fn_with_state(ctx.clone(), require_read));
    let writes = Router::new()
        .route("/api/admin", post(act))
        .route_layer(middleware::from_fn_with_state(ctx.clone(), require_admin));
    let mut router = Router::new();
    for (path, content_type, body) in ASSETS {
        router = router.route(path, get(move || async move { asset(content_type, body) }));
    }
    router.merge(reads).merge(writes).with_state(ctx)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The assets change with the binary: always revalidate rather than serve a stale page.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The gRPC request the services would have received for this HTTP request: the
/// caller's `authorization` (a follower forwards it, and the leader checks it again), the
/// identity the listener's check proved (named by the audit log) and the browser's
/// address (the audit's peer).
fn grpc_request<T>(parts: &Parts, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        request.metadata_mut().insert("authorization", value);
    }
    if let Some(identity) = parts.extensions.get::<Identity>() {
        request.extensions_mut().insert(identity.clone());
    }
    if let Some(peer) = parts.extensions.get::<Peer>() {
        request.extensions_mut().insert(peer.tcp.clone());
    }
    request
}

/// A service's error as JSON with the HTTP status closest to its gRPC code.
fn failed(status: &tonic::Status) -> Response {
    use tonic::Code;
    let code = match status.code() {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    refused(code, status.message())
}

fn refused(code: StatusCode, message: &str) -> Response {
    (code, axum::Json(json!({ "error": message }))).into_response()
}

fn ok(body: Value) -> Response {
    let mut response = axum::Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    page_size: u32,
    #[serde(default)]
    page_token: String,
}

/// One page of protectors: ListProtectors, with the daemon's clock for the countdowns.
async fn list(State(ctx): State<HttpContext>, parts: Parts, Query(q): Query<ListQuery>) -> Response {
    let request = v1::ListProtectorsRequest {
        prefix: q.prefix,
        page_size: q.page_size,
        page_token: q.page_token,
    };
    match ProtectorService::list_protectors(&ctx.protectors, grpc_request(&parts, request)).await {
        Ok(answer) => {
            let answer = answer.into_inner();
            ok(json!({
                "protectors": answer.protectors.iter().map(view::protector).collect::<Vec<_>>(),
                "next_page_token": answer.next_page_token,
                "revision": answer.revision,
                "now_ms": view::now_millis(&ctx.clock()),
            }))
        }
        Err(status) => failed(&status),
    }
}

#[derive(Debug, Deserialize)]
struct OneQuery {
    name: String,
}

/// One protector (the detail's one-second sample): GetProtector.
async fn one(State(ctx): State<HttpContext>, parts: Parts, Query(q): Query<OneQuery>) -> Response {
    let request = v1::GetProtectorRequest { name: q.name };
    match ProtectorService::get_protector(&ctx.protectors, grpc_request(&parts, request)).await {
        Ok(answer) => {
            let answer = answer.into_inner();
            ok(json!({
                "protector": answer.protector.as_ref().map(view::protector),
                "revision": answer.revision,
                "now_ms": view::now_millis(&ctx.clock()),
            }))
        }
        Err(status) => failed(&status),
    }
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    #[serde(default)]
    prefix: String,
    /// Resume after this revision (for clients that cannot send `Last-Event-ID`).
    after: Option<u64>,
    /// The epoch the resumed revision belongs to (from a `synced` event).
    epoch: Option<u64>,
}

/// The live feed: a Watch from `Last-Event-ID` (or `after`), else from now, as SSE.
async fn events(State(ctx): State<HttpContext>, parts: Parts, Query(q): Query<EventsQuery>) -> Response {
    let last = match parts.headers.get("last-event-id") {
        None => None,
        Some(value) => match value.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) {
            Some(revision) => Some(revision),
            None => return refused(StatusCode::BAD_REQUEST, "Last-Event-ID: not a revision"),
        },
    };
    let resume = last.or(q.after);
    // A new feed starts at the current revision rather than with a snapshot: the page
    // reads its table through the JSON API and wants only what changes from now on.
    let start_revision = resume.unwrap_or_else(|| ctx.registry().revision());
    let filter = if q.prefix.is_empty() {
        v1::watch_request::Filter::All(true)
    } else {
        v1::watch_request::Filter::Prefix(q.prefix)
    };
    let request = v1::WatchRequest {
        filter: Some(filter),
        start_revision: Some(start_revision),
        start_epoch: resume.and(q.epoch),
        progress_interval: Some(resilient_circuit_api::convert::duration(FEED_PROGRESS)),
    };
    let watch = match ProtectorService::watch(&ctx.protectors, grpc_request(&parts, request)).await {
        Ok(answer) => answer.into_inner(),
        Err(status) => return failed(&status),
    };
    // The stream ends when the daemon drains, so the listener's graceful shutdown does
    // not wait on it; the page reconnects elsewhere or later.
    let frames = sse::feed(watch)
        .take_until(ctx.draining.clone().cancelled_owned())
        .map(Ok::<_, Infallible>);
    let mut response = Body::from_stream(frames).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Tells nginx-like proxies not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// This replica's role and the leader's address, for the page's header: GetCluster.
async fn cluster(State(ctx): State<HttpContext>, parts: Parts) -> Response {
    let request = grpc_request(&parts, v1::GetClusterRequest {});
    let answer = match AdminService::get_cluster(&ctx.admin, request).await {
        Ok(answer) => answer.into_inner(),
        Err(status) => return failed(&status),
    };
    let role_of = |r: &v1::Replica| {
        v1::ReplicaRole::try_from(r.role).map_or("unspecified".to_owned(), |role| {
            role.as_str_name()
                .trim_start_matches("REPLICA_ROLE_")
                .to_ascii_lowercase()
        })
    };
    let me = answer.replicas.iter().find(|r| r.advertise == answer.answered_by);
    let leader = answer
        .replicas
        .iter()
        .find(|r| r.role == v1::ReplicaRole::Leader as i32)
        .map(|r| r.advertise.clone());
    ok(json!({
        "role": me.map_or_else(|| "follower".to_owned(), role_of),
        "leader": leader,
        "answered_by": answer.answered_by,
        "revision": answer.revision,
        "epoch": answer.epoch.to_string(),
    }))
}

/// An admin action: SetStatus or SetOverride, served (or forwarded to the leader) and
/// audited by AdminService itself.
async fn act(State(ctx): State<HttpContext>, parts: Parts, body: Bytes) -> Response {
    let json_body = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json_body {
        return refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send Content-Type: application/json",
        );
    }
    let action = match serde_json::from_slice::<ActionBody>(&body) {
        Ok(body) => body.into_action(),
        Err(e) => Err(e.to_string()),
    };
    let answer = match action {
        Err(message) => return refused(StatusCode::BAD_REQUEST, &message),
        Ok(Action::SetStatus(request)) => AdminService::set_status(&ctx.admin, grpc_request(&parts, request))
            .await
            .map(|r| r.into_inner())
            .map(|r| (r.protector, r.revision)),
        Ok(Action::SetOverride(request)) => {
            AdminService::set_override(&ctx.admin, grpc_request(&parts, request))
                .await
                .map(|r| r.into_inner())
                .map(|r| (r.protector, r.revision))
        }
    };
    match answer {
        Ok((protector, revision)) => ok(json!({
            "protector": protector.as_ref().map(view::protector),
            "revision": revision,
        })),
        Err(status) => failed(&status),
    }
}
