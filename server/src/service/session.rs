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

use std::pin::Pin;
use std::sync::Arc;

use std::future::Future;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use resilient_circuit_api::v1::{self, session_request, session_response};
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::Status;

use super::{SessionStream, Shared};
use crate::error::Error;
use crate::validate;

/// Requests a session may have unanswered at once; past it, the daemon stops reading
/// (HTTP/2 flow control then slows the client) rather than queue without bound.
pub const MAX_IN_FLIGHT: usize = 1024;

async fn answer(shared: Arc<Shared>, request: v1::SessionRequest) -> v1::SessionResponse {
    let response = match request.request {
        Some(session_request::Request::Acquire(req)) => match shared.acquire(req).await {
            Ok(r) => session_response::Response::Acquire(r),
            Err(e) => session_response::Response::Error(v1::SessionError::from(e)),
        },
        Some(session_request::Request::Report(req)) => match shared.report(req).await {
            Ok(r) => session_response::Response::Report(r),
            Err(e) => session_response::Response::Error(v1::SessionError::from(e)),
        },
        None => session_response::Response::Error(v1::SessionError::from(Error::invalid(
            "request",
            "set one of acquire or report",
        ))),
    };
    v1::SessionResponse {
        id: request.id,
        response: Some(response),
    }
}

/// A boxed answer. Its allocation is reused from one request to the next while answers
/// are ready at once (the common case): only one that has to wait keeps its own.
type Answering<F> = Pin<Box<F>>;

/// One session's state, driven by the transport polling its response stream: reading a
/// request and writing an answer happen on the connection's own task, with no task or
/// channel in between (each would cost a cross-thread wake-up per message).
struct Session<F, M> {
    shared: Arc<Shared>,
    inbound: tonic::Streaming<v1::SessionRequest>,
    /// Answers still waiting (for the journal, in practice).
    in_flight: FuturesUnordered<Answering<F>>,
    /// The allocation of the last answer that was ready at once, for the next one.
    spare: Option<Answering<F>>,
    /// Starts answering a request (`answer`; generic so that its future has a type to
    /// reuse the allocation for).
    start: M,
    /// Polled only when nothing else is ready: while requests flow, the cheap check of
    /// [`Shared::stopping`] ends the session; this wakes an idle one.
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    reading: bool,
    ended: bool,
}

impl<F, M> Session<F, M>
where
    F: Future<Output = v1::SessionResponse> + Send + 'static,
    M: Fn(Arc<Shared>, v1::SessionRequest) -> F,
{
    async fn next(&mut self) -> Option<Result<v1::SessionResponse, Status>> {
        loop {
            if self.ended {
                return None;
            }
            if self.shared.stopping() {
                self.ended = true;
                return Some(Err(Status::unavailable("circuitd is shutting down")));
            }
            if !self.reading && self.in_flight.is_empty() {
                return None;
            }
            tokio::select! {
                biased;
                Some(response) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    return Some(Ok(response));
                }
                received = self.inbound.message(), if self.reading && self.in_flight.len() < MAX_IN_FLIGHT => {
                    match received {
                        Ok(Some(request)) => {
                            // A session opened while this replica decided must not go on
                            // deciding from a follower's registry: it ends, and the
                            // client's next session is forwarded to the new leader.
                            if !self.shared.forward.decides() {
                                self.ended = true;
                                return Some(Err(Status::unavailable(
                                    "leader changed: this replica no longer decides; open a new session",
                                )));
                            }
                            if let Some(response) = self.answer(request) {
                                return Some(Ok(response));
                            }
                        }
                        Ok(None) => self.reading = false,
                        Err(status) => {
                            tracing::debug!(%status, "session stream broke");
                            self.ended = true;
                            return None;
                        }
                    }
                }
                () = &mut self.shutdown => continue,
            }
        }
    }

    /// The answer to `request` if it is ready at once (most are: sent without queueing);
    /// else it joins the answers in flight.
    fn answer(&mut self, request: v1::SessionRequest) -> Option<v1::SessionResponse> {
        let answering = (self.start)(Arc::clone(&self.shared), request);
        let mut boxed = match self.spare.take() {
            Some(mut spare) => {
                // The spare's future has finished: replaced in place, no allocation.
                spare.set(answering);
                spare
            }
            None => Box::pin(answering),
        };
        match boxed.as_mut().now_or_never() {
            Some(response) => {
                self.spare = Some(boxed);
                Some(response)
            }
            None => {
                self.in_flight.push(boxed);
                None
            }
        }
    }
}

/// Starts serving one session stream.
pub fn open(shared: Arc<Shared>, inbound: tonic::Streaming<v1::SessionRequest>) -> SessionStream {
    let session = Session {
        shutdown: Box::pin(shared.shutdown.clone().cancelled_owned()),
        shared,
        inbound,
        in_flight: FuturesUnordered::new(),
        spare: None,
        start: answer,
        reading: true,
        ended: false,
    };
    // Boxed, so that each step moves a pointer, not the whole state, in and out of the
    // step's future.
    Box::pin(futures_util::stream::unfold(
        Box::new(session),
        |mut s| async move { s.next().await.map(|item| (item, s)) },
    ))
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
    /// benches' way in (`benches/session.rs`). Not part of the daemon's interface.
    #[doc(hidden)]
    pub async fn session_message(&self, request: v1::SessionRequest) -> v1::SessionResponse {
        answer(Arc::clone(&self.0), request).await
    }
}
