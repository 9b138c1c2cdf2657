//! Forwarding: a follower hands every call it does not serve itself to the leader, so a
//! client may talk to any replica.
//!
//! Rules. Watch, GetProtector, ListProtectors and GetCluster are always served here.
//! Everything else is routed by the replica's role, read per call from the role's watch
//! borrow (a read lock, no allocation: the standalone and leader path pays nothing more):
//! - standalone or leader: served here, exactly as without replication;
//! - follower with a known leader: forwarded to its advertised address (AdminService
//!   calls to its advertised admin address when it runs an admin listener, where alone
//!   it serves them) over one cached channel per address (connected lazily, replaced
//!   when the leader changes), with the caller's
//!   metadata (so its deadline, `grpc-timeout`, and any credentials) minus the transport's
//!   own headers, and marked with [`FORWARDED`]. The leader's answer, an error included
//!   (code, message, details), comes back unchanged; a failure of the hop itself (the
//!   leader not listening, the connection breaking) becomes UNAVAILABLE naming the
//!   leader's address, so the client retries;
//! - follower with no leader yet, or unavailable: UNAVAILABLE, retry.
//!
//! The loop guard: a call that carries [`FORWARDED`] and that this replica would forward
//! again is answered UNAVAILABLE instead. Two replicas whose views of the leader are
//! stale (each thinking the other leads) therefore never bounce a call between them; the
//! client retries once the election has settled.
//!
//! Who may mark a call: [`trust`] removes [`FORWARDED_FOR`] from every call that does
//! not come from a replica, before any service sees it, so a client cannot choose the
//! address the audit log names. [`FORWARDED`] stays whoever sets it: all it can do is
//! make a follower refuse to forward the caller's own call, while removing it from a
//! replica that is not recognised (behind NAT, say) would let a stale view bounce a
//! call between two followers.
//!
//! A Session is piped both ways without a task or queue of its own: the leader's stream
//! pulls the client's requests as HTTP/2 flow control lets it, and the client's answers
//! are the leader's, so the buffering is the transport's windows on each hop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use resilient_circuit_api::v1::{
    self, admin_service_client::AdminServiceClient, protector_service_client::ProtectorServiceClient,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Response, Status};

pub mod trust;

use super::SessionStream;
use crate::cluster::{Cluster, Role};

/// The metadata key that marks a forwarded call; its value is the forwarding replica's id.
pub const FORWARDED: &str = "x-circuitd-forwarded";

/// The metadata key a forwarded call carries its client's address in, for the leader's
/// audit log (which otherwise could only name the follower).
pub const FORWARDED_FOR: &str = "x-circuitd-forwarded-for";

/// How long forwarding waits for a connection to the leader before the call fails
/// (UNAVAILABLE): long enough for a loaded leader, short next to a client's deadline.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// While calls are in flight to the leader, the channel pings it this often, and drops
/// the connection when a ping goes unanswered for [`PING_TIMEOUT`]: a leader that froze
/// or vanished from the network (no RST) would otherwise hold forwarded calls until
/// their clients' deadlines, or forever for calls without one. A leader that is merely
/// slow still answers pings (HTTP/2 answers them below the service).
const PING_INTERVAL: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The least each forwarded message may be (tonic's default): the leader's answers are
/// not bounded by the request limit this replica applies to its clients.
const MIN_MESSAGE: usize = 4 * 1024 * 1024;

/// Headers that belong to one hop's transport, not to the call: the next hop writes its
/// own. Everything else (the deadline, credentials, a trace context) travels on.
const TRANSPORT_HEADERS: [&str; 11] = [
    "te",
    "content-type",
    "content-length",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "grpc-encoding",
    "grpc-accept-encoding",
];

/// Routes calls by the replica's role and holds the channel to the current leader.
#[derive(Debug)]
pub(super) struct Forwarder {
    /// The cluster, whose `decides()` flag answers the common case (serve here) without
    /// the role's lock.
    cluster: Arc<Cluster>,
    role: watch::Receiver<Role>,
    /// This replica's id, as the value of [`FORWARDED`].
    marker: AsciiMetadataValue,
    /// The channel to the leader last forwarded to.
    leader: ArcSwapOption<Leader>,
    /// The channel to the leader's admin listener, when it has one apart.
    admin: ArcSwapOption<Leader>,
    /// The largest message forwarded, each way.
    max_message: usize,
    /// With TLS on, the leader is dialled over TLS (https) with this configuration.
    tls: Option<ClientTlsConfig>,
    /// The daemon's runtime, which runs the leader channel's tasks (see [`OnRuntime`]).
    runtime: Option<tokio::runtime::Handle>,
}

/// Spawns a leader channel's tasks (its connection, its buffer) on the daemon's runtime.
/// The channel is made by the first call to forward, on whichever connection thread
/// serves it; left to `tokio::spawn`, the channel would live on that thread, and the
/// calls of every other thread would stop with it at shutdown.
#[derive(Debug, Clone)]
struct OnRuntime(tokio::runtime::Handle);

impl<F> hyper::rt::Executor<F> for OnRuntime
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.spawn(future);
    }
}

/// Which of the leader's services a call is for, and so which of its listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plane {
    /// ProtectorService: the leader's advertised address.
    Data,
    /// AdminService: its advertised admin address, when it has an admin listener.
    Admin,
}

/// The leader calls are forwarded to, and the one channel to it.
#[derive(Debug)]
pub(super) struct Leader {
    advertise: String,
    channel: Channel,
    marker: AsciiMetadataValue,
    max_message: usize,
}

impl Forwarder {
    pub(super) fn new(cluster: &Arc<Cluster>, max_message: usize, tls: Option<ClientTlsConfig>) -> Forwarder {
        Forwarder {
            cluster: Arc::clone(cluster),
            role: cluster.watch_role(),
            // Ids are hex; one that is no valid header value still marks the call.
            marker: cluster
                .me()
                .id
                .parse()
                .unwrap_or_else(|_| AsciiMetadataValue::from_static("circuitd")),
            leader: ArcSwapOption::empty(),
            admin: ArcSwapOption::empty(),
            max_message: max_message.max(MIN_MESSAGE),
            tls,
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Where a call of `plane` that only the deciding replica may serve goes: `None` to
    /// serve it here, the leader to forward it to, or the UNAVAILABLE to answer.
    pub(super) fn route(&self, metadata: &MetadataMap, plane: Plane) -> Result<Option<Arc<Leader>>, Status> {
        // Every Acquire and Report asks: a replica that decides answers from one flag.
        if self.cluster.decides() {
            return Ok(None);
        }
        let role = self.role.borrow();
        match &*role {
            Role::Standalone | Role::Leader { .. } => Ok(None),
            Role::Follower { leader: Some(leader) } => {
                if metadata.contains_key(FORWARDED) {
                    return Err(Status::unavailable(format!(
                        "leader changed; retry: this replica follows {} and does not forward \
                         a call another replica forwarded to it",
                        leader.advertise
                    )));
                }
                match (plane, &leader.admin) {
                    (Plane::Admin, Some(admin)) if *admin != leader.advertise => {
                        self.leader_at(&self.admin, admin).map(Some)
                    }
                    _ => self.leader_at(&self.leader, &leader.advertise).map(Some),
                }
            }
            Role::Follower { leader: None } => {
                Err(Status::unavailable("no leader is elected yet; retry shortly"))
            }
            Role::Unavailable => Err(Status::unavailable(
                "this replica has lost its cluster and no leader is known; retry, here or at another replica",
            )),
        }
    }

    /// The channel cached in `cache` if it goes to `advertise`, else a new one there
    /// (the leader moved), cached in its place.
    fn leader_at(&self, cache: &ArcSwapOption<Leader>, advertise: &str) -> Result<Arc<Leader>, Status> {
        if let Some(leader) = &*cache.load()
            && leader.advertise == advertise
        {
            return Ok(Arc::clone(leader));
        }
        let uri = if advertise.contains("://") {
            advertise.to_owned()
        } else if self.tls.is_some() {
            format!("https://{advertise}")
        } else {
            format!("http://{advertise}")
        };
        let unusable = |e: tonic::transport::Error| {
            Status::unavailable(format!("the leader's address {advertise:?} is not usable: {e}"))
        };
        let mut endpoint = Endpoint::from_shared(uri).map_err(unusable)?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone()).map_err(unusable)?;
        }
        if let Some(runtime) = &self.runtime {
            endpoint = endpoint.executor(OnRuntime(runtime.clone()));
        }
        let channel = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT)
            .connect_lazy();
        let leader = Arc::new(Leader {
            advertise: advertise.to_owned(),
            channel,
            marker: self.marker.clone(),
            max_message: self.max_message,
        });
        // Two calls racing here both build a channel; the last one stays, and the
        // other's calls finish on theirs.
        cache.store(Some(Arc::clone(&leader)));
        Ok(leader)
    }
}

impl Leader {
    /// A data-plane client over the shared channel (a clone is a handle, not a connection).
    pub(super) fn protectors(&self) -> ProtectorServiceClient<Channel> {
        ProtectorServiceClient::new(self.channel.clone())
            .max_decoding_message_size(self.max_message)
            .max_encoding_message_size(self.max_message)
    }

    /// A control-plane client over the shared channel.
    pub(super) fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel.clone())
            .max_decoding_message_size(self.max_message)
            .max_encoding_message_size(self.max_message)
    }

    /// The call as the leader receives it: the caller's metadata (its deadline included)
    /// without this hop's transport headers, marked as forwarded.
    pub(super) fn request<T>(&self, request: Request<T>) -> Request<T> {
        let client = request.remote_addr();
        let (metadata, _, message) = request.into_parts();
        Request::from_parts(self.metadata(metadata, client), Default::default(), message)
    }

    fn metadata(&self, metadata: MetadataMap, client: Option<SocketAddr>) -> MetadataMap {
        let mut metadata = strip(metadata);
        metadata.insert(FORWARDED, self.marker.clone());
        metadata.remove(FORWARDED_FOR);
        if let Some(value) = client.and_then(|c| c.to_string().parse().ok()) {
            metadata.insert(FORWARDED_FOR, value);
        }
        metadata
    }

    /// The leader's answer, unchanged, but for a failure of the hop itself.
    pub(super) fn answer<T>(&self, answer: Result<Response<T>, Status>) -> Result<Response<T>, Status> {
        match answer {
            Ok(response) => {
                let (metadata, message, extensions) = response.into_parts();
                Ok(Response::from_parts(strip(metadata), message, extensions))
            }
            Err(status) => Err(self.hop(status)),
        }
    }

    /// A status the leader sent passes unchanged; one the forwarding hop made up (a
    /// transport error: it carries its cause as `source`) becomes UNAVAILABLE naming the
    /// leader, so the client knows to retry.
    fn hop(&self, status: Status) -> Status {
        if std::error::Error::source(&status).is_none() {
            return status;
        }
        Status::unavailable(format!(
            "the leader at {} could not be reached: {}",
            self.advertise,
            status.message()
        ))
    }

    /// Opens the leader's Session and pipes `inbound` to it and its answers back. The
    /// stream ends when either side ends it, with UNAVAILABLE when the leader's side
    /// fails or this replica shuts down.
    pub(super) async fn session(
        self: Arc<Self>,
        request: Request<tonic::Streaming<v1::SessionRequest>>,
        shutdown: CancellationToken,
    ) -> Result<Response<SessionStream>, Status> {
        let client = request.remote_addr();
        let (metadata, _, inbound) = request.into_parts();
        // The client's requests, until it closes its side or its stream breaks (then the
        // client is gone and so is the answer stream: ending the leader's side suffices).
        let requests = futures_util::stream::unfold(inbound, |mut inbound| async move {
            match inbound.message().await {
                Ok(Some(request)) => Some((request, inbound)),
                Ok(None) | Err(_) => None,
            }
        });
        let outbound = Request::from_parts(self.metadata(metadata, client), Default::default(), requests);
        let answer = self.protectors().session(outbound).await;
        let (metadata, answers, extensions) = self.answer(answer)?.into_parts();
        let piped = Piped {
            leader: self,
            answers,
            shutdown,
            ended: false,
        };
        let stream = futures_util::stream::unfold(piped, |mut piped| async move {
            piped.next().await.map(|item| (item, piped))
        });
        Ok(Response::from_parts(
            metadata,
            Box::pin(stream) as SessionStream,
            extensions,
        ))
    }
}

/// The leader's side of a forwarded Session.
struct Piped {
    leader: Arc<Leader>,
    answers: tonic::Streaming<v1::SessionResponse>,
    shutdown: CancellationToken,
    ended: bool,
}

impl Piped {
    async fn next(&mut self) -> Option<Result<v1::SessionResponse, Status>> {
        if self.ended {
            return None;
        }
        let next = tokio::select! {
            biased;
            () = self.shutdown.cancelled() => Err(Status::unavailable("circuitd is shutting down")),
            answer = self.answers.message() => answer.map_err(|status| self.leader.hop(status)),
        };
        match next {
            Ok(Some(answer)) => Some(Ok(answer)),
            Ok(None) => {
                self.ended = true;
                None
            }
            Err(status) => {
                self.ended = true;
                Some(Err(status))
            }
        }
    }
}

/// The client a forwarding replica says a call came from: a call marked [`FORWARDED`]
/// names it in [`FORWARDED_FOR`], which [`trust`] removed unless a replica sent it.
pub(super) fn forwarded_for(metadata: &MetadataMap) -> Option<SocketAddr> {
    if !metadata.contains_key(FORWARDED) {
        return None;
    }
    metadata.get(FORWARDED_FOR)?.to_str().ok()?.parse().ok()
}

/// Metadata without one hop's transport headers; the next hop writes its own.
fn strip(mut metadata: MetadataMap) -> MetadataMap {
    for header in TRANSPORT_HEADERS {
        metadata.remove(header);
    }
    metadata
}
