//! The streaming data plane: `Session` (pipelined Acquire and Report on one stream) and
//! `ReportBatch` (outcomes of locally admitted calls).
//!
//! A session is one task per stream (per client connection, not per protector). It reads
//! requests while fewer than [`MAX_IN_FLIGHT`] are unanswered, runs each exactly as the
//! unary call would, and writes each answer as soon as it is ready: most finish at once,
//! and one that waits for the journal never holds up those behind it. A request's error
//! is answered in its own response; the stream ends only when the client closes it, it
//! breaks, or the daemon shuts down (UNAVAILABLE).

use std::pin::Pin;
use std::sync::Arc;

use futures_util::stream::FuturesUnordered;
use futures_util::{Stream, StreamExt};
use resilient_circuit_api::v1::{self, session_request, session_response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::Shared;
use crate::error::Error;
use crate::validate;

/// Requests a session may have unanswered at once; past it, the daemon stops reading
/// (HTTP/2 flow control then slows the client) rather than queue without bound.
pub const MAX_IN_FLIGHT: usize = 1024;

/// The response stream of a session.
pub type SessionStream = Pin<Box<dyn Stream<Item = Result<v1::SessionResponse, Status>> + Send + 'static>>;

/// What a unary call's error would have said, as a session answer.
pub fn session_error(e: Error) -> v1::SessionError {
    let field = match &e {
        Error::InvalidArgument { field, .. } => field.clone(),
        _ => String::new(),
    };
    let status: Status = e.into();
    v1::SessionError {
        code: status.code() as i32,
        message: status.message().to_owned(),
        field,
    }
}

async fn answer(shared: &Shared, request: v1::SessionRequest) -> v1::SessionResponse {
    let response = match request.request {
        Some(session_request::Request::Acquire(req)) => match shared.acquire(req).await {
            Ok(r) => session_response::Response::Acquire(r),
            Err(e) => session_response::Response::Error(session_error(e)),
        },
        Some(session_request::Request::Report(req)) => match shared.report(req).await {
            Ok(r) => session_response::Response::Report(r),
            Err(e) => session_response::Response::Error(session_error(e)),
        },
        None => session_response::Response::Error(session_error(Error::invalid(
            "request",
            "set one of acquire or report",
        ))),
    };
    v1::SessionResponse {
        id: request.id,
        response: Some(response),
    }
}

/// Starts serving one session stream.
pub fn open(shared: Arc<Shared>, mut inbound: tonic::Streaming<v1::SessionRequest>) -> SessionStream {
    let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT);
    tokio::spawn(async move {
        let mut in_flight = FuturesUnordered::new();
        let mut reading = true;
        loop {
            tokio::select! {
                biased;
                () = shared.shutdown.cancelled() => {
                    let _ = tx.send(Err(Status::unavailable("circuitd is shutting down"))).await;
                    return;
                }
                Some(response) = in_flight.next() => {
                    if tx.send(Ok(response)).await.is_err() {
                        return;
                    }
                }
                received = inbound.message(), if reading && in_flight.len() < MAX_IN_FLIGHT => match received {
                    Ok(Some(request)) => in_flight.push(answer(&shared, request)),
                    Ok(None) => reading = false,
                    Err(status) => {
                        tracing::debug!(%status, "session stream broke");
                        return;
                    }
                },
                else => return,
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
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
                    error: Some(session_error(e)),
                    ..Default::default()
                },
            };
            results.push(result);
        }
        v1::ReportBatchResponse {
            results,
            revision: self.registry.hub().revision(),
        }
    }

    async fn one_batch(&self, i: usize, batch: &v1::OutcomeBatch) -> Result<v1::OutcomeBatchResult, Error> {
        let field = |f: &str| format!("batches[{i}].{f}");
        self.name(&field("name"), &batch.name)?;
        if batch.generation == 0 {
            return Err(Error::invalid(field("generation"), "must be at least 1"));
        }
        let outcomes = batch
            .outcomes
            .iter()
            .enumerate()
            .map(|(j, &o)| validate::outcome(&field(&format!("outcomes[{j}]")), o))
            .collect::<Result<Vec<_>, _>>()?;
        let r = self
            .registry
            .report_batch(&batch.name, batch.generation, batch.successes, &outcomes)
            .await?;
        Ok(v1::OutcomeBatchResult {
            name: batch.name.clone(),
            accepted: r.accepted,
            stale: r.stale,
            status: v1::Status::from(r.status) as i32,
            generation: r.generation,
            transition: r.transition.map(Into::into),
            error: None,
        })
    }
}
