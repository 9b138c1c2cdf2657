//! RPC latency by method and gRPC code: a tower layer on both gRPC listeners.
//!
//! A call is timed from its request to the end of its response body, when hyper drops
//! it; its code is the `grpc-status` of the response's headers (a call refused at once)
//! or trailers. A body dropped before its end (the client went away) counts as
//! CANCELLED. For a Watch or Session stream the time is the stream's life.
//!
//! Every (method, code) pair has its histogram from the start, in a flat table indexed
//! by the method's place in [`crate::auth::METHODS`] (one more row for paths not
//! listed) and the code: recording is a few relaxed atomic additions, no lock, no map.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use tonic::codegen::{BoxFuture, Service, http};

use crate::auth::METHODS;
use crate::latency::{Histogram, Snapshot};

/// gRPC's status codes by number, as labelled.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];
const CANCELLED: usize = 1;
const UNKNOWN: usize = 2;

/// The histograms of every method and code.
#[derive(Debug)]
pub struct RpcLatency {
    table: Box<[Histogram]>,
}

impl Default for RpcLatency {
    fn default() -> Self {
        let rows = METHODS.len() + 1;
        RpcLatency {
            table: (0..rows * CODES.len()).map(|_| Histogram::default()).collect(),
        }
    }
}

impl RpcLatency {
    fn observe(&self, method: usize, code: usize, began: Instant) {
        self.table[method * CODES.len() + code].observe(began.elapsed());
    }

    /// Every (method, code) with at least one call: the method's path without its
    /// leading `/` (`other` for paths no RPC has), the code's name, the histogram.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, Snapshot)> {
        let mut out = Vec::new();
        for (i, histogram) in self.table.iter().enumerate() {
            if histogram.count() == 0 {
                continue;
            }
            let (method, code) = (i / CODES.len(), i % CODES.len());
            let name = METHODS
                .get(method)
                .map_or("other", |(path, _)| path.trim_start_matches('/'));
            out.push((name, CODES[code], histogram.snapshot()));
        }
        out
    }
}

fn method_of(path: &str) -> usize {
    METHODS
        .iter()
        .position(|(method, _)| *method == path)
        .unwrap_or(METHODS.len())
}

fn code_of(value: Option<&http::HeaderValue>) -> Option<usize> {
    let code: usize = value?.to_str().ok()?.trim().parse().ok()?;
    Some(if code < CODES.len() { code } else { UNKNOWN })
}

/// The layer; with no latency table (no HTTP listener, so no `/metrics`), it times
/// nothing.
#[derive(Debug, Clone, Default)]
pub struct TimeCalls {
    latency: Option<Arc<RpcLatency>>,
}

impl TimeCalls {
    /// Records into `latency`, if given.
    pub fn new(latency: Option<Arc<RpcLatency>>) -> TimeCalls {
        TimeCalls { latency }
    }
}

impl<S> tower_layer::Layer<S> for TimeCalls {
    type Service = Timed<S>;

    fn layer(&self, inner: S) -> Timed<S> {
        Timed {
            inner,
            latency: self.latency.clone(),
        }
    }
}

/// [`TimeCalls`] around a service.
#[derive(Debug, Clone)]
pub struct Timed<S> {
    inner: S,
    latency: Option<Arc<RpcLatency>>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Timed<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Unpin,
{
    type Response = http::Response<TimedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let timing = self.latency.clone().map(|latency| Timing {
            latency,
            method: method_of(request.uri().path()),
            began: Instant::now(),
            code: None,
            ended: false,
        });
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let timing = timing.map(|mut t| {
                t.code = code_of(response.headers().get("grpc-status"));
                t
            });
            Ok(response.map(|body| TimedBody { body, timing }))
        })
    }
}

/// One call being timed; recorded when dropped.
#[derive(Debug)]
struct Timing {
    latency: Arc<RpcLatency>,
    method: usize,
    began: Instant,
    code: Option<usize>,
    ended: bool,
}

impl Drop for Timing {
    fn drop(&mut self) {
        let code = match (self.code, self.ended) {
            (Some(code), _) => code,
            (None, true) => UNKNOWN,
            (None, false) => CANCELLED,
        };
        self.latency.observe(self.method, code, self.began);
    }
}

/// A response body that records its call's latency and code when hyper drops it.
#[derive(Debug)]
pub struct TimedBody<B> {
    body: B,
    timing: Option<Timing>,
}

impl<B: Body + Unpin> Body for TimedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Some(timing) = &mut this.timing {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(code) = frame.trailers_ref().and_then(|t| code_of(t.get("grpc-status"))) {
                        timing.code = Some(code);
                    }
                }
                Poll::Ready(None) => timing.ended = true,
                _ => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
