//! The streaming data plane: `Session` (pipelined Acquire and Report on one stream) and
//! `ReportBatch` (outcomes of locally admitted calls).
//!
//! A session is a state machine polled by the transport (no task of its own). It reads
//! requests while fewer than [`MAX_IN_FLIGHT`] are unanswered, runs each exactly as the
//! unary call would, and writes each answer as soon as it is ready: most finish at once,
//! and one that waits for the journal never holds up those behind it. A request's error
//! is answered in its own response; the stream ends only when the client closes it, it
//! breaks, the daemon shuts down, or the replica stops deciding (both UNAVAILABLE: a
//! session opened on a leader that steps down ends at its next request, so the client
//! reopens it and reaches the new leader, directly or forwarded). A session that ends drops the answers
//! still pending, and a trial Acquire among them gives its permit back (the registry's
//! `release`): no one is left to report it. An answer already handed to the transport
//! counts as sent; the client gives back a trial permit it no longer wants.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, Stream};
use futures_util::{FutureExt, StreamExt};
use resilient_circuit_api::codec::names;
use resilient_circuit_api::v1::{self, session_request, session_response};
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::Status;

use super::{SessionStream, Shared, acquire_answer, report_answer};
use crate::cluster::RegistryCache;
use crate::error::Error;
use crate::limits::Slot;
use crate::registry::Registry;
use crate::validate;

/// Requests a session may have unanswered at once; past it, the daemon stops reading
/// (HTTP/2 flow control then slows the client) rather than queue without bound.
pub const MAX_IN_FLIGHT: usize = 1024;

/// An answer that waits for the journal before it may leave.
type Waiting = Pin<Box<dyn Future<Output = v1::SessionResponse> + Send>>;

/// A request's answer: ready now (in memory, always; with a store, whenever the state it
/// rests on is already on disk), or a future that waits for the journal.
enum Answered {
    Now(v1::SessionResponse),
    Later(Waiting),
}

/// Decides one request from `registry` under its protector's guard, synchronously: only
/// an answer that must wait for the journal builds (and allocates) a future. A name no
/// longer needed goes back to the codec's spare buffers, for the next request read on
/// this thread.
fn decide(shared: &Shared, registry: &Arc<Registry>, request: v1::SessionRequest) -> Answered {
    let id = request.id;
    let answer = move |response| v1::SessionResponse {
        id,
        response: Some(response),
    };
    let failed = move |e: Error| answer(session_response::Response::Error(v1::SessionError::from(e)));
    match request.request {
        Some(session_request::Request::Acquire(req)) => {
            let decided = shared.name("name", req.name).and_then(|name| {
                let decided = registry.decide_acquire(&name)?;
                Ok((name, decided))
            });
            match decided {
                Ok((name, decided)) if registry.is_durable(&decided) => {
                    names::recycle(name.into_string());
                    Answered::Now(answer(session_response::Response::Acquire(acquire_answer(
                        decided.value,
                    ))))
                }
                Ok((name, decided)) => {
                    let acquired = Arc::clone(registry).acquired(name, decided);
                    Answered::Later(Box::pin(async move {
                        match acquired.await {
                            Ok(a) => answer(session_response::Response::Acquire(acquire_answer(a))),
                            Err(e) => failed(e),
                        }
                    }))
                }
                Err(e) => Answered::Now(failed(e)),
            }
        }
        Some(session_request::Request::Report(req)) => {
            let decided = shared
                .report_fields(req)
                .and_then(|(name, permit, outcome, duration)| {
                    let decided = registry.decide_report(&name, permit, outcome, duration)?;
                    names::recycle(name.into_string());
                    Ok(decided)
                });
            match decided {
                Ok(decided) if registry.is_durable(&decided) => Answered::Now(answer(
                    session_response::Response::Report(report_answer(decided.value)),
                )),
                Ok(decided) => {
                    let reported = Arc::clone(registry).reported(decided);
                    Answered::Later(Box::pin(async move {
                        match reported.await {
                            Ok(r) => answer(session_response::Response::Report(report_answer(r))),
                            Err(e) => failed(e),
                        }
                    }))
                }
                Err(e) => Answered::Now(failed(e)),
            }
        }
        None => Answered::Now(failed(Error::invalid("request", "set one of acquire or report"))),
    }
}

/// One session's state, a stream polled by the transport: reading a request, deciding it
/// and writing its answer all happen in that poll, with no task, channel or future of its
/// own in between (each would cost a wake-up or an allocation per message).
struct Session {
    shared: Arc<Shared>,
    inbound: tonic::Streaming<v1::SessionRequest>,
    /// The registry, kept while requests flow (one pointer compared a message, not a
    /// load of the cluster's registry); dropped when the session waits, so an idle
    /// session never keeps a registry the cluster has replaced.
    registry: Option<RegistryCache>,
    /// Answers still waiting (for the journal, in practice).
    in_flight: FuturesUnordered<Waiting>,
    /// Polled only when nothing else is ready: while requests flow, the cheap check of
    /// [`Shared::stopping`] ends the session; this wakes an idle one.
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    reading: bool,
    ended: bool,
    /// The identity's count of open sessions, given back when the session is dropped
    /// (held here, not by a wrapping stream: one layer fewer on every message).
    _slot: Slot,
}

impl Session {
    fn end(&mut self, status: Status) -> Poll<Option<Result<v1::SessionResponse, Status>>> {
        self.ended = true;
        Poll::Ready(Some(Err(status)))
    }
}

impl Stream for Session {
    type Item = Result<v1::SessionResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            if this.shared.stopping() {
                return this.end(Status::unavailable("circuitd is shutting down"));
            }
            if !this.in_flight.is_empty()
                && let Poll::Ready(Some(response)) = this.in_flight.poll_next_unpin(cx)
            {
                return Poll::Ready(Some(Ok(response)));
            }
            if !this.reading {
                if this.in_flight.is_empty() {
                    return Poll::Ready(None);
                }
            } else if this.in_flight.len() < MAX_IN_FLIGHT {
                match this.inbound.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(request))) => {
                        // A session opened while this replica decided must not go on
                        // deciding from a follower's registry: it ends, and the client's
                        // next session is forwarded to the new leader.
                        if !this.shared.cluster.decides() {
                            return this.end(Status::unavailable(
                                "leader changed: this replica no longer decides; open a new session",
                            ));
                        }
                        let registry = this
                            .registry
                            .get_or_insert_with(|| this.shared.cluster.registry_cache())
                            .load();
                        match decide(&this.shared, registry, request) {
                            Answered::Now(response) => return Poll::Ready(Some(Ok(response))),
                            Answered::Later(waiting) => {
                                this.in_flight.push(waiting);
                                continue;
                            }
                        }
                    }
                    Poll::Ready(None) => {
                        this.reading = false;
                        continue;
                    }
                    Poll::Ready(Some(Err(status))) => {
                        tracing::debug!(%status, "session stream broke");
                        this.ended = true;
                        return Poll::Ready(None);
                    }
                    Poll::Pending => {}
                }
            }
            // Nothing ready: wake on shutdown too.
            return match this.shutdown.poll_unpin(cx) {
                Poll::Ready(()) => this.end(Status::unavailable("circuitd is shutting down")),
                Poll::Pending => {
                    this.registry = None;
                    Poll::Pending
                }
            };
        }
    }
}

/// Starts serving one session stream, holding `slot` for as long as it lives.
pub fn open(shared: Arc<Shared>, inbound: tonic::Streaming<v1::SessionRequest>, slot: Slot) -> SessionStream {
    Box::pin(Session {
        shutdown: Box::pin(shared.shutdown.clone().cancelled_owned()),
        shared,
        inbound,
        registry: None,
        in_flight: FuturesUnordered::new(),
        reading: true,
        ended: false,
        _slot: slot,
    })
}

impl Shared {
    /// ReportBatch: each batch applied in order, each failing on its own.
    pub(super) async fn report_batch(&self, req: v1::ReportBatchRequest) -> v1::ReportBatchResponse {
        let mut results = Vec::with_capacity(req.batches.len());
        for (i, batch) in req.batches.into_iter().enumerate() {
            let result = match self.one_batch(i, &batch).await {
                Ok(r) => r,
                Err(e) => v1::OutcomeBatchResult {
                    name: batch.name,
                    error: Some(v1::SessionError::from(e)),
                    ..Default::default()
                },
            };
            results.push(result);
        }
        v1::ReportBatchResponse {
            results,
            revision: self.registry().revision(),
        }
    }

    async fn one_batch(&self, i: usize, batch: &v1::OutcomeBatch) -> Result<v1::OutcomeBatchResult, Error> {
        let field = |f: &str| format!("batches[{i}].{f}");
        let name = self.name(&field("name"), batch.name.clone())?;
        if batch.generation == 0 {
            return Err(Error::invalid(field("generation"), "must be at least 1"));
        }
        let outcomes = batch
            .outcomes
            .iter()
            .enumerate()
            .map(|(j, &o)| validate::outcome(&field(&format!("outcomes[{j}]")), o))
            .collect::<Result<Vec<_>, _>>()?;
        let durations = validate::call_durations(&field("durations"), &batch.durations, outcomes.len())?;
        let r = self
            .registry()
            .report_batch_timed(&name, batch.generation, batch.successes, &outcomes, &durations)
            .await?;
        Ok(v1::OutcomeBatchResult {
            name: name.into_string(),
            accepted: r.accepted,
            stale: r.stale,
            status: v1::Status::from(r.status) as i32,
            generation: r.generation,
            transition: r.transition.map(Into::into),
            error: None,
        })
    }
}

impl super::ProtectorApi {
    /// One Session message answered as a session answers it, without the transport: the
    /// benches' way in (`benches/session.rs`). It reads the cluster's registry for each
    /// message, where a session keeps it while requests flow. Not part of the daemon's
    /// interface.
    #[doc(hidden)]
    pub async fn session_message(&self, request: v1::SessionRequest) -> v1::SessionResponse {
        match decide(&self.0, &self.0.cluster.registry(), request) {
            Answered::Now(response) => response,
            Answered::Later(waiting) => waiting.await,
        }
    }
}
