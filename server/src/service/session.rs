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
use resilient_circuit_breaker::Time;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::Status;

use super::{SessionStream, Shared, acquire_answer, report_answer};
use crate::clock::Clock;
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

/// Decides one request from `registry` under its protector's guard, at `at` (a reading
/// of the registry's clock; `None` reads it under the guard), synchronously: only
/// an answer that must wait for the journal builds (and allocates) a future. A name no
/// longer needed goes back to the codec's spare buffers, for the next request read on
/// this thread. The request is read where the transport left it, not moved: see
/// `Session::poll_next`. Its name too is checked and looked up where it is, and taken out
/// only once decided (to be recycled, or kept by an answer that waits): taken at once,
/// its three words were read back with one wide load right after the codec stored them
/// one by one, a load that stalls (BENCHMARKS.md, fifteenth pass).
fn decide(
    shared: &Shared,
    registry: &Arc<Registry>,
    at: Option<Time>,
    request: &mut v1::SessionRequest,
) -> Answered {
    let id = request.id;
    let answer = move |response| v1::SessionResponse {
        id,
        response: Some(response),
    };
    let failed = move |e: Error| answer(session_response::Response::Error(v1::SessionError::from(e)));
    match &mut request.request {
        Some(session_request::Request::Acquire(req)) => {
            let decided = shared
                .name_in_place("name", &req.name)
                .and_then(|()| registry.decide_acquire(&req.name, at));
            match decided {
                Ok(decided) if registry.is_durable(&decided) => {
                    names::recycle(std::mem::take(&mut req.name));
                    Answered::Now(answer(session_response::Response::Acquire(acquire_answer(
                        decided.value,
                    ))))
                }
                Ok(decided) => {
                    let acquired = Arc::clone(registry).acquired(std::mem::take(&mut req.name), decided);
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
            let decided = shared.report_fields(req).and_then(|(permit, outcome, duration)| {
                let decided = registry.decide_report(&req.name, permit, outcome, duration, at)?;
                names::recycle(std::mem::take(&mut req.name));
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

/// The most requests a session decides at one reading of the clock.
const SHARED_READING: u32 = 64;

/// The clock reading a session decides its requests at: one for the requests it reads
/// together, not one each. A reading is taken for the first request after the session
/// waited, and again after every [`SHARED_READING`] requests, or when the request is to be
/// decided by a registry of another clock (the cluster replaced it). So a reading serves
/// at most 64 requests read one after another: tens of microseconds at the daemon's rate.
/// (A session that gave its thread to other connections without running dry keeps its
/// reading, and may decide requests read after that at it, as if they had come a little
/// earlier; the count still bounds it.) A client cannot tell that from its request's
/// time on the wire.
///
/// Why: on the virtual machines this was measured on, a reading costs about 30 ns, and
/// with two a decision (Acquire and Report) the clock was the largest single item of the
/// daemon's that its echo twin does not also do (BENCHMARKS.md, twelfth pass). The
/// registry raises a reading older than a protector's latest instant to that instant, so
/// sharing one never moves a protector's time back.
#[derive(Debug, Default)]
struct SharedNow(Option<Reading>);

#[derive(Debug)]
struct Reading {
    clock: Clock,
    at: Time,
    /// Requests that may still be decided at it.
    left: u32,
}

impl SharedNow {
    /// The instant to decide the next request at, in `registry`.
    #[inline]
    fn next(&mut self, registry: &Registry) -> Time {
        let clock = registry.clock();
        match &mut self.0 {
            Some(r) if r.left > 0 && r.clock == clock => {
                r.left -= 1;
                r.at
            }
            _ => {
                let at = clock.now();
                self.0 = Some(Reading {
                    clock,
                    at,
                    left: SHARED_READING - 1,
                });
                at
            }
        }
    }

    /// The session waits: the next request read takes a new reading.
    fn forget(&mut self) {
        self.0 = None;
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
    /// The clock reading the requests read together are decided at.
    now: SharedNow,
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
                    // Bound by reference: moving the request out of what the transport
                    // returned would copy it right after it was written (see
                    // `codec::request::decode_into`).
                    Poll::Ready(Some(Ok(ref mut request))) => {
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
                        let at = this.now.next(registry);
                        match decide(&this.shared, registry, Some(at), request) {
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
                    this.now.forget();
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
        now: SharedNow::default(),
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
    pub async fn session_message(&self, mut request: v1::SessionRequest) -> v1::SessionResponse {
        match decide(&self.0, &self.0.cluster.registry(), None, &mut request) {
            Answered::Now(response) => response,
            Answered::Later(waiting) => waiting.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::{SHARED_READING, SharedNow};
    use crate::clock::Clock;
    use crate::config::WatchConfig;
    use crate::registry::Registry;
    use crate::sequencer::Sequencer;
    use crate::watch::Watchers;

    /// A registry whose clock reads `secs` seconds now.
    fn registry_at(secs: u64) -> Registry {
        let sequencer = Arc::new(Sequencer::new(&WatchConfig::default(), 0, 1, false));
        let watchers = Watchers::new(1, CancellationToken::new());
        let clock = Clock::starting_at(Duration::from_secs(secs));
        Registry::new(10, sequencer, watchers, clock, None)
    }

    #[tokio::test(start_paused = true)]
    async fn requests_read_together_share_a_reading_until_the_session_waits() {
        let registry = registry_at(1_000);
        let ms = Duration::from_millis(1);
        let mut now = SharedNow::default();
        let first = now.next(&registry);
        assert_eq!(first, Duration::from_secs(1_000));
        tokio::time::advance(ms).await;
        for _ in 1..SHARED_READING {
            assert_eq!(now.next(&registry), first, "one reading for a group");
        }
        // A group longer than SHARED_READING takes a new reading.
        let second = now.next(&registry);
        assert_eq!(second, first + ms);
        assert_eq!(now.next(&registry), second);
        // After the session waited, the next request takes a new reading.
        tokio::time::advance(ms).await;
        now.forget();
        assert_eq!(now.next(&registry), second + ms);
    }

    #[tokio::test(start_paused = true)]
    async fn a_registry_of_another_clock_takes_its_own_reading() {
        let old = registry_at(1_000);
        let mut now = SharedNow::default();
        assert_eq!(now.next(&old), Duration::from_secs(1_000));
        // The cluster replaced its registry (a new leader's, anchored anew).
        let new = registry_at(2_000);
        assert_eq!(now.next(&new), Duration::from_secs(2_000));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(now.next(&new), Duration::from_secs(2_000), "shared from here on");
    }
}
