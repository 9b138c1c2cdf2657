//! The gRPC face: thin. Each RPC turns its request into typed values (or
//! INVALID_ARGUMENT naming the field), calls the registry, and converts the answer back.
//! No business logic lives here.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::Stream;
use resilient_circuit_api::v1::{self, protector_service_server::ProtectorService};
use resilient_circuit_api::{ProtectorName, convert};
use resilient_circuit_breaker::{Outcome, Permit};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// Forwards the call to the leader and returns its answer, unless this replica decides
/// (then it goes on to serve the call itself): `forward!(shared, request, protectors.acquire)`.
macro_rules! forward {
    ($shared:expr, $request:ident, protectors . $rpc:ident) => {
        forward!(@ $shared, $request, Data, protectors.$rpc)
    };
    ($shared:expr, $request:ident, admin . $rpc:ident) => {
        forward!(@ $shared, $request, Admin, admin.$rpc)
    };
    (@ $shared:expr, $request:ident, $plane:ident, $client:ident . $rpc:ident) => {
        if let Some(leader) = $shared
            .forward
            .route($request.metadata(), forward::Plane::$plane)?
        {
            $shared.ready()?;
            return leader.answer(leader.$client().$rpc(leader.request($request)).await);
        }
    };
}

mod admin;
pub(crate) mod audit;
pub mod forward;
mod session;

use crate::auth::Identity;
use crate::cluster::Cluster;
use crate::config::{Limits, WatchConfig};
use crate::error::Error;
use crate::limits::{Slot, Streams};
use crate::registry::{Acquired, Creator, Registry, Reported};
use crate::validate;
use crate::watch::{Filter, WatchParams};

/// The default and the largest ListProtectors page.
const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 1000;
/// The bounds of a requested PROGRESS interval.
const MIN_PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
const MAX_PROGRESS_INTERVAL: Duration = Duration::from_secs(3600);
/// The bounds of an override's `expires_after`.
const MIN_OVERRIDE: Duration = Duration::from_millis(1);

/// What both services share.
#[derive(Debug)]
struct Shared {
    cluster: Arc<Cluster>,
    /// Routes what only the deciding replica serves: here, or to the leader.
    forward: forward::Forwarder,
    limits: Limits,
    watch: WatchConfig,
    /// Cancelled when shutdown begins: new calls get UNAVAILABLE.
    shutdown: CancellationToken,
    /// Set once `shutdown` is cancelled, by a task waiting for it (`stopping`).
    stopped: Arc<AtomicBool>,
    /// Whether that task runs (the services were built on a runtime).
    stop_watched: bool,
    /// Open Watch and Session streams per identity.
    watchers: Arc<Streams>,
    sessions: Arc<Streams>,
}

/// Who made `request` (see `auth`): the identity the auth layer put in its extensions,
/// or, for a service called without the layer, its peer's address.
fn identity<T>(request: &Request<T>) -> Identity {
    request
        .extensions()
        .get::<Identity>()
        .cloned()
        .unwrap_or_else(|| Identity::open(request.remote_addr()))
}

impl Shared {
    /// The registry this call is served from (it changes with the replica's role).
    fn registry(&self) -> Arc<Registry> {
        self.cluster.registry()
    }

    /// A place for one more Watch stream of `who`.
    fn watcher(&self, who: &Identity) -> Result<Slot, Error> {
        let max = who
            .limits
            .max_watchers
            .unwrap_or(self.limits.max_watchers_per_identity);
        self.watchers.take(who, max)
    }

    /// A place for one more Session stream of `who`.
    fn session(&self, who: &Identity) -> Result<Slot, Error> {
        let max = who
            .limits
            .max_sessions
            .unwrap_or(self.limits.max_sessions_per_identity);
        self.sessions.take(who, max)
    }

    /// `who` as the creator of a protector, with the number it may have created.
    fn creator(&self, who: &Identity) -> Creator {
        Creator {
            key: who.key().into(),
            max: who
                .limits
                .max_protectors
                .unwrap_or(self.limits.max_protectors_per_identity),
            display: who.to_string(),
        }
    }

    /// Whether shutdown began. Read for every call and every Session message: a flag
    /// load, where asking the token takes its mutex (shared by every connection). The
    /// flag follows the token within one wake-up of its task, a call racing the shutdown
    /// by that much goes ahead, as one that arrived just before it would.
    fn stopping(&self) -> bool {
        if self.stop_watched {
            self.stopped.load(Ordering::Acquire)
        } else {
            self.shutdown.is_cancelled()
        }
    }

    fn ready(&self) -> Result<(), Error> {
        if self.stopping() {
            Err(Error::Unavailable)
        } else {
            Ok(())
        }
    }

    /// A prefix can match nothing longer than a name, so a longer one is a mistake.
    fn prefix(&self, field: &str, prefix: &str) -> Result<(), Error> {
        self.ready()?;
        let max = self.limits.max_name_len;
        if prefix.len() > max {
            return Err(Error::invalid(
                field,
                format!("is {} bytes, longer than any name can be ({max})", prefix.len()),
            ));
        }
        Ok(())
    }

    fn name(&self, field: &str, name: String) -> Result<ProtectorName, Error> {
        self.ready()?;
        validate::name(field, name, self.limits.max_name_len)
    }

    /// As [`name`](Self::name), the name checked where it is rather than taken.
    fn name_in_place(&self, field: &str, name: &str) -> Result<(), Error> {
        self.ready()?;
        validate::name_in_place(field, name, self.limits.max_name_len)
    }

    /// Acquire, for the unary call (the session decides through `session::decide`).
    async fn acquire(&self, req: v1::AcquireRequest) -> Result<v1::AcquireResponse, Error> {
        let name = self.name("name", req.name)?;
        Ok(acquire_answer(self.registry().acquire(&name).await?))
    }

    /// Report, for the unary call (as [`acquire`](Self::acquire)).
    async fn report(&self, req: v1::ReportRequest) -> Result<v1::ReportResponse, Error> {
        let (permit, outcome, duration) = self.report_fields(&req)?;
        let reported = self
            .registry()
            .report_timed(&req.name, permit, outcome, duration)
            .await?;
        Ok(report_answer(reported))
    }

    /// A Report's fields, each checked and named in its error, read where they are (the
    /// name only checked: the caller looks it up in `req`).
    fn report_fields(&self, req: &v1::ReportRequest) -> Result<(Permit, Outcome, Option<Duration>), Error> {
        self.name_in_place("name", &req.name)?;
        let permit = validate::permit("permit", req.permit.as_ref())?;
        let outcome = validate::outcome("outcome", req.outcome)?;
        let duration = validate::call_duration("duration", req.duration.as_ref())?;
        Ok((permit, outcome, duration))
    }
}

/// The wire form of an Acquire's answer. Inlined: called apart, its result was copied
/// into the Session's answer right after it was built, a copy that stalls (see
/// `codec::request::decode_into`).
#[inline]
fn acquire_answer(acquired: Acquired) -> v1::AcquireResponse {
    convert::acquire_response(
        acquired.decision,
        acquired.status,
        acquired.revision,
        acquired.transition,
        acquired.would_reject,
        acquired.policy_revision,
    )
}

/// The wire form of a Report's answer (inlined, as `acquire_answer`).
#[inline]
fn report_answer(reported: Reported) -> v1::ReportResponse {
    v1::ReportResponse {
        accepted: reported.accepted,
        status: v1::Status::from(reported.status) as i32,
        revision: reported.revision,
        transition: reported.transition.map(|t| Box::new(t.into())),
    }
}

/// `ProtectorService`, the data plane.
#[derive(Debug, Clone)]
pub struct ProtectorApi(Arc<Shared>);

/// `AdminService`, the control plane.
#[derive(Debug, Clone)]
pub struct AdminApi(Arc<Shared>);

/// Both services over the cluster's current registry.
pub fn services(
    cluster: Arc<Cluster>,
    limits: Limits,
    watch: WatchConfig,
    shutdown: CancellationToken,
) -> (ProtectorApi, AdminApi) {
    services_with_peer_tls(cluster, limits, watch, shutdown, None)
}

/// [`services`], forwarding to the leader over TLS with `peer_tls` when given.
pub fn services_with_peer_tls(
    cluster: Arc<Cluster>,
    limits: Limits,
    watch: WatchConfig,
    shutdown: CancellationToken,
    peer_tls: Option<tonic::transport::ClientTlsConfig>,
) -> (ProtectorApi, AdminApi) {
    let stopped = Arc::new(AtomicBool::new(false));
    let stop_watched = match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            let (token, flag) = (shutdown.clone(), Arc::clone(&stopped));
            runtime.spawn(async move {
                token.cancelled().await;
                flag.store(true, Ordering::Release);
            });
            true
        }
        Err(_) => false,
    };
    let shared = Arc::new(Shared {
        forward: forward::Forwarder::new(&cluster, limits.max_message_bytes, peer_tls),
        cluster,
        limits,
        watch,
        shutdown,
        stopped,
        stop_watched,
        watchers: Streams::new("Watch streams", "max_watchers_per_identity"),
        sessions: Streams::new("Session streams", "max_sessions_per_identity"),
    });
    (ProtectorApi(Arc::clone(&shared)), AdminApi(shared))
}

/// The page token is the last name of the previous page, hex-encoded so that clients
/// treat it as opaque.
pub(crate) fn encode_token(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn decode_token(token: &str) -> Result<String, Error> {
    let invalid = || {
        Error::invalid(
            "page_token",
            "not a token from a previous ListProtectors response",
        )
    };
    // Hex digits only: `from_str_radix` alone also takes a sign ("+f"), so another
    // spelling of a token would name the same page (found by fuzzing).
    if !token.len().is_multiple_of(2) || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| token.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    String::from_utf8(bytes).map_err(|_| invalid())
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<v1::WatchEvent, Status>> + Send + 'static>>;

/// The response stream of a session, served here or piped from the leader.
pub type SessionStream = Pin<Box<dyn Stream<Item = Result<v1::SessionResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl ProtectorService for ProtectorApi {
    async fn ensure_protector(
        &self,
        request: Request<v1::EnsureProtectorRequest>,
    ) -> Result<Response<v1::EnsureProtectorResponse>, Status> {
        forward!(self.0, request, protectors.ensure_protector);
        let creator = self.0.creator(&identity(&request));
        let req = request.into_inner();
        let name = self.0.name("name", req.name)?;
        let policy = validate::policy("policy", req.policy.as_ref())?;
        let ensured = self.0.registry().ensure_as(&name, policy, Some(&creator)).await?;
        Ok(Response::new(v1::EnsureProtectorResponse {
            policy_matches: *ensured.view.protector.policy() == policy,
            protector: Some(ensured.view.to_proto()),
            created: ensured.created,
            revision: ensured.revision,
        }))
    }

    async fn acquire(
        &self,
        request: Request<v1::AcquireRequest>,
    ) -> Result<Response<v1::AcquireResponse>, Status> {
        forward!(self.0, request, protectors.acquire);
        Ok(Response::new(self.0.acquire(request.into_inner()).await?))
    }

    async fn report(
        &self,
        request: Request<v1::ReportRequest>,
    ) -> Result<Response<v1::ReportResponse>, Status> {
        forward!(self.0, request, protectors.report);
        Ok(Response::new(self.0.report(request.into_inner()).await?))
    }

    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: Request<tonic::Streaming<v1::SessionRequest>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        // Counted on the replica the client reached, whether it serves the session or
        // pipes it to the leader: the stream is held open here either way.
        let slot = self.0.session(&identity(&request))?;
        if let Some(leader) = self.0.forward.route(request.metadata(), forward::Plane::Data)? {
            self.0.ready()?;
            let response = leader.session(request, self.0.shutdown.clone()).await?;
            return Ok(
                response.map(|stream| -> SessionStream { Box::pin(crate::limits::hold(stream, slot)) })
            );
        }
        self.0.ready()?;
        Ok(Response::new(session::open(
            Arc::clone(&self.0),
            request.into_inner(),
            slot,
        )))
    }

    async fn report_batch(
        &self,
        request: Request<v1::ReportBatchRequest>,
    ) -> Result<Response<v1::ReportBatchResponse>, Status> {
        forward!(self.0, request, protectors.report_batch);
        self.0.ready()?;
        Ok(Response::new(self.0.report_batch(request.into_inner()).await))
    }

    type WatchStream = WatchStream;

    async fn watch(&self, request: Request<v1::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let who = identity(&request);
        let req = request.into_inner();
        self.0.ready()?;
        let filter = match req.filter {
            None => {
                return Err(Error::invalid("filter", "set one of names, prefix or all").into());
            }
            Some(v1::watch_request::Filter::All(all)) => {
                if !all {
                    return Err(Error::invalid("all", "must be true when set").into());
                }
                Filter::Prefix(String::new())
            }
            Some(v1::watch_request::Filter::Prefix(prefix)) => {
                self.0.prefix("prefix", &prefix)?;
                Filter::Prefix(prefix)
            }
            Some(v1::watch_request::Filter::Names(list)) => {
                if list.names.is_empty() {
                    return Err(Error::invalid("names.names", "list at least one name").into());
                }
                let max = self.0.limits.max_watch_names;
                if list.names.len() > max {
                    return Err(Error::ResourceExhausted {
                        limit: "max_watch_names",
                        description: format!(
                            "{} names in one Watch, more than the maximum of {max}",
                            list.names.len()
                        ),
                    }
                    .into());
                }
                let names = validate::names("names.names", list.names, self.0.limits.max_name_len)?;
                Filter::Names(names.into_iter().map(String::from).collect::<BTreeSet<_>>())
            }
        };
        let progress_interval = validate::duration_in(
            "progress_interval",
            req.progress_interval.as_ref(),
            MIN_PROGRESS_INTERVAL,
            MAX_PROGRESS_INTERVAL,
        )?
        .unwrap_or(self.0.watch.progress_interval);
        let params = WatchParams {
            filter,
            start_revision: req.start_revision,
            start_epoch: req.start_epoch,
            progress_interval,
        };
        let slot = self.0.watcher(&who)?;
        let stream = self.0.registry().watch(params).map_err(Error::from)?;
        Ok(Response::new(Box::pin(crate::limits::hold(
            Box::pin(stream),
            slot,
        ))))
    }

    async fn get_protector(
        &self,
        request: Request<v1::GetProtectorRequest>,
    ) -> Result<Response<v1::GetProtectorResponse>, Status> {
        let req = request.into_inner();
        let name = self.0.name("name", req.name)?;
        let revision = self.0.registry().revision();
        let view = self.0.registry().get(&name).await?;
        Ok(Response::new(v1::GetProtectorResponse {
            protector: Some(view.to_proto()),
            revision: revision.max(view.mod_revision),
        }))
    }

    async fn list_protectors(
        &self,
        request: Request<v1::ListProtectorsRequest>,
    ) -> Result<Response<v1::ListProtectorsResponse>, Status> {
        let req = request.into_inner();
        self.0.prefix("prefix", &req.prefix)?;
        let page_size = match req.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n > MAX_PAGE_SIZE => {
                return Err(Error::invalid(
                    "page_size",
                    format!("{n} is above the maximum of {MAX_PAGE_SIZE}"),
                )
                .into());
            }
            n => n,
        };
        let after = if req.page_token.is_empty() {
            None
        } else {
            Some(decode_token(&req.page_token)?)
        };
        let (page, more) = self
            .0
            .registry()
            .list(&req.prefix, page_size as usize, after.as_deref())
            .await?;
        // Read after the page is durable, so it is at least every state's revision.
        let revision = self.0.registry().revision();
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => encode_token(&last.name),
            _ => String::new(),
        };
        Ok(Response::new(v1::ListProtectorsResponse {
            protectors: page.iter().map(|v| v.to_proto()).collect(),
            next_page_token,
            revision,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        for name in ["a", "payments.eu-west", "ünïcode/名前"] {
            assert_eq!(decode_token(&encode_token(name)).unwrap(), name);
        }
        for bad in ["abc", "zz", "ff", "+f", "7061796d+66e7"] {
            assert!(decode_token(bad).is_err(), "{bad}");
        }
    }
}
