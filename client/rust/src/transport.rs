//! How the client reaches the daemon: [`Connection`], and the [`Transport`] Acquire and
//! Report travel on.
//!
//! Design note. Every protector of one client shares one [`Connection`]: one [`Replica`]
//! per address the client was given (its lazily connected `tonic` channel and the
//! `Session` stream on it, see `session`), the link (whether the daemon is worth asking
//! right now, and which replica, see `link`), the client's settings and its counters.
//! Every RPC the client makes goes through [`Connection::ask`], the one place that moves
//! to the next replica when one cannot be reached; the Watch task, which keeps its stream
//! open across calls, moves through the same link.
//!
//! Transport. By default Acquire and Report travel on the client's one `Session` stream,
//! pipelined and correlated by id, which carries many more messages per second than unary
//! calls do (BENCHMARKS.md has the figures). Their semantics, the acquire deadline and
//! the fallbacks are the same either way; [`Transport::Unary`] makes one HTTP/2 request
//! per call. A daemon without the Session RPC is answered with unary calls for good.
//! Reports of batched outcomes, EnsureProtector and Watch are always their own RPCs.

mod session;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use resilient_circuit_api::Bearer;
use resilient_circuit_api::v1::protector_service_client::ProtectorServiceClient;
use resilient_circuit_api::v1::{self, session_request, session_response};
use resilient_circuit_breaker::{Outcome, Policy as ProtectorPolicy};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use self::session::{Session, Wired};
use crate::link::{Link, Reconnect, Turn, unreachable};

/// How Acquire and Report reach the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// One bidirectional `Session` stream per client, requests pipelined on it (the
    /// default). A daemon without the Session RPC is answered with unary calls.
    #[default]
    Session,
    /// One unary RPC per Acquire and per Report.
    Unary,
}

/// The settings every protector of a client shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) acquire_deadline: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) watch_staleness: Duration,
    pub(crate) transport: Transport,
}

/// Client-wide counters (see `ClientStats`).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) daemon_decisions: AtomicU64,
    /// Striped: every local decision of every protector of the client bumps it.
    pub(crate) cache_decisions: crate::stripe::Counter,
    pub(crate) fallback_decisions: AtomicU64,
    pub(crate) reports_lost: AtomicU64,
    pub(crate) reports_dropped: AtomicU64,
    pub(crate) batched_accepted: AtomicU64,
    pub(crate) batched_stale: AtomicU64,
    pub(crate) batched_lost: AtomicU64,
}

impl Stats {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// One client's way to the daemon, shared by all its protectors (see the module note).
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) config: Config,
    pub(crate) link: Link,
    pub(crate) stats: Stats,
    /// One per address, in the order given; never empty.
    replicas: Vec<Replica>,
}

/// Why a call got no answer: the status it failed with, or no answer in time.
#[derive(Debug)]
pub(crate) enum Unanswered {
    Status(tonic::Status),
    Timeout(Duration),
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unanswered::Status(status) => write!(f, "{}: {}", status.code(), status.message()),
            Unanswered::Timeout(timeout) => write!(f, "no answer within {timeout:?}"),
        }
    }
}

impl Connection {
    /// A connection over `channels` (address and channel, at least one), each connecting
    /// on first use.
    /// Every call carries `bearer`.
    pub(crate) fn new(
        channels: Vec<(String, Channel)>,
        config: Config,
        backoff: Reconnect,
        bearer: Bearer,
    ) -> Connection {
        let replicas: Vec<Replica> = channels
            .into_iter()
            .map(|(uri, channel)| {
                let channel = InterceptedService::new(channel, bearer.clone());
                Replica {
                    uri,
                    config,
                    session: Session::new(channel.clone()),
                    channel,
                }
            })
            .collect();
        assert!(!replicas.is_empty(), "a connection needs an address");
        Connection {
            config,
            link: Link::new(backoff, replicas.len()),
            stats: Stats::default(),
            replicas,
        }
    }

    /// Every address, in the order given.
    pub(crate) fn uris(&self) -> impl Iterator<Item = &str> {
        self.replicas.iter().map(|r| r.uri.as_str())
    }

    /// The replica the link asks now.
    pub(crate) fn replica(&self) -> &Replica {
        self.turn().1
    }

    /// The link's turn and the replica it names.
    pub(crate) fn turn(&self) -> (Turn, &Replica) {
        let turn = self.link.turn();
        (turn, &self.replicas[turn.replica % self.replicas.len()])
    }

    /// Runs `call` on the current replica within `timeout`, noting on the link how it
    /// went: up on any answer; when the replica cannot be reached (a transport-level
    /// status, or no answer in time), failed, and `call` runs again on the next replica
    /// while the round lasts and time is left. An error status that is an answer (the
    /// daemon refused) is returned as it is.
    pub(crate) async fn ask<'a, T, Fut>(
        &'a self,
        timeout: Duration,
        mut call: impl FnMut(&'a Replica) -> Fut,
    ) -> Result<T, Unanswered>
    where
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let give_up = tokio::time::Instant::now() + timeout;
        // Each replica at most once per call, whatever other callers do meanwhile.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (turn, replica) = self.turn();
            let why = match tokio::time::timeout_at(give_up, call(replica)).await {
                Ok(Ok(answer)) => {
                    self.link.up();
                    return Ok(answer);
                }
                Ok(Err(status)) if unreachable(&status) => Unanswered::Status(status),
                Ok(Err(status)) => return Err(Unanswered::Status(status)),
                Err(_) => Unanswered::Timeout(timeout),
            };
            let next_now = self.link.failed(turn, &why);
            if !next_now || attempts >= self.replicas.len() || tokio::time::Instant::now() >= give_up {
                return Err(why);
            }
        }
    }
}

/// One address of the daemon: its channel, which connects on first use, and the Session
/// stream on it. Every RPC the client makes is a method of the replica it goes to.
#[derive(Debug)]
pub(crate) struct Replica {
    pub(crate) uri: String,
    config: Config,
    channel: Wired,
    session: Session,
}

fn unexpected(what: &str) -> tonic::Status {
    tonic::Status::internal(format!("the session answered {what}"))
}

impl Replica {
    fn rpc(&self) -> ProtectorServiceClient<Wired> {
        ProtectorServiceClient::new(self.channel.clone())
    }

    fn streams(&self) -> bool {
        self.config.transport == Transport::Session && !self.session.unsupported()
    }

    /// Creates the protector `name` with `policy` unless the daemon has it already.
    pub(crate) async fn ensure_protector(
        &self,
        name: &str,
        policy: &ProtectorPolicy,
    ) -> Result<v1::EnsureProtectorResponse, tonic::Status> {
        self.rpc()
            .ensure_protector(v1::EnsureProtectorRequest {
                name: name.to_owned(),
                policy: Some(policy.into()),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// One Acquire, on the client's transport.
    pub(crate) async fn acquire(&self, name: &str) -> Result<v1::AcquireResponse, tonic::Status> {
        let request = || v1::AcquireRequest {
            name: name.to_owned(),
        };
        if self.streams() {
            match self
                .session
                .call(session_request::Request::Acquire(request()), Some(name))
                .await
            {
                Ok(session_response::Response::Acquire(a)) => return Ok(a),
                Ok(_) => return Err(unexpected("an Acquire with something else")),
                Err(status) if status.code() == tonic::Code::Unimplemented => self.session.mark_unsupported(),
                Err(status) => return Err(status),
            }
        }
        // The call runs on a task of its own and outlives the caller's deadline: when the
        // caller gives up (the fallback decides), an answer that still comes (its fsync
        // finished just after) has its trial permit given back here, IGNORED, instead of
        // left to expire as a FAILURE. What bounds the task is `request_timeout`, sent as
        // the call's `grpc-timeout`, so the daemon drops the call too (and gives back a
        // permit it would have handed out) if it cannot answer by then.
        let mut unary = tonic::Request::new(request());
        unary.set_timeout(self.config.request_timeout);
        let rpc = self.rpc();
        let name = name.to_owned();
        let (answer, waiting) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut rpc = rpc;
            let answered = rpc.acquire(unary).await.map(tonic::Response::into_inner);
            if let Err(Ok(late)) = answer.send(answered)
                && let Some(report) = session::late_trial(name, late)
                && let Err(status) = rpc.report(report).await
            {
                tracing::debug!(%status, "a late trial permit could not be given back; it expires on the daemon");
            }
        });
        waiting.await.unwrap_or_else(|_| {
            Err(tonic::Status::cancelled(
                "the Acquire task ended without an answer",
            ))
        })
    }

    /// One Report, on the client's transport.
    pub(crate) async fn report(
        &self,
        name: &str,
        permit: v1::Permit,
        outcome: Outcome,
        duration: Option<Duration>,
    ) -> Result<v1::ReportResponse, tonic::Status> {
        let request = |permit| v1::ReportRequest {
            duration: duration.map(resilient_circuit_api::convert::duration),
            name: name.to_owned(),
            permit: Some(permit),
            outcome: v1::Outcome::from(outcome) as i32,
        };
        if self.streams() {
            let asked = session_request::Request::Report(request(permit));
            match self.session.call(asked, None).await {
                Ok(session_response::Response::Report(r)) => return Ok(r),
                Ok(_) => return Err(unexpected("a Report with something else")),
                Err(status) if status.code() == tonic::Code::Unimplemented => self.session.mark_unsupported(),
                Err(status) => return Err(status),
            }
        }
        // Boxed: the unary call's future is eight times the size of the Session's, and
        // every Report's future would carry it whichever transport it takes.
        Box::pin(self.rpc().report(request(permit)))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Outcomes of locally admitted calls, in one ReportBatch.
    pub(crate) async fn report_batch(
        &self,
        batches: Vec<v1::OutcomeBatch>,
    ) -> Result<v1::ReportBatchResponse, tonic::Status> {
        self.rpc()
            .report_batch(v1::ReportBatchRequest { batches })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Opens a Watch stream.
    pub(crate) async fn watch(
        &self,
        request: v1::WatchRequest,
    ) -> Result<tonic::Streaming<v1::WatchEvent>, tonic::Status> {
        self.rpc().watch(request).await.map(tonic::Response::into_inner)
    }
}
