//! The `Session` transport: Acquire and Report pipelined on one bidirectional stream.
//!
//! Design note. A client keeps at most one session stream on each replica's channel. Each request
//! gets an id from a per-client counter and a oneshot sender in the stream's pending
//! map; a driver task reads the answers and hands each to its sender, so answers may
//! come in any order. The stream is opened lazily, by the first request that finds none
//! (or finds the last one broken); the request is queued at once and goes out as soon
//! as the stream is open, so opening costs the first caller one round trip, not more.
//!
//! Failures. When the stream breaks (the daemon stopped, the connection dropped, or the
//! open itself failed), the driver takes the pending map away under its lock, so no
//! request can register on a dead stream, and answers every request still waiting with
//! the status the unary call would have got (UNAVAILABLE and the like): the callers then
//! apply the same link and fallback logic as after a failed unary call. Reopening is
//! paced by the client's link backoff: a broken stream is replaced only by the next
//! request, and requests reach the session only when the link lets them (see `link`).
//! A daemon that does not know the Session RPC (UNIMPLEMENTED) turns the client to
//! unary calls for good.
//!
//! A request whose caller gives up (its deadline passed) leaves the map when its future
//! is dropped; the answer, if it comes, is discarded, except that a trial permit in a
//! late Acquire answer is given back at once (reported IGNORED on the stream, under id
//! 0, whose answer nobody waits for) instead of staying in flight until it expires as
//! a FAILURE. For that, an abandoned Acquire leaves its protector's name behind; the
//! driver hands out each answer under the map's lock, so an answer is either delivered
//! to a caller still waiting, read back from the channel by the caller giving up, or
//! found abandoned by the driver: never lost with a trial permit in it.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use resilient_circuit_api::Bearer;
use resilient_circuit_api::convert;
use resilient_circuit_api::v1::protector_service_client::ProtectorServiceClient;
use resilient_circuit_api::v1::{self, session_request, session_response};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::sync::lock;

/// A replica's channel, with the client's token on every call (defined here, where the
/// stream needs it, so this module imports nothing of its parent).
pub(crate) type Wired = InterceptedService<Channel, Bearer>;

/// One answer: the response, or the status the unary call would have failed with.
pub(crate) type Answer = Result<session_response::Response, tonic::Status>;

/// Requests waiting for their answer; `None` once the stream broke.
type Pending = Mutex<Option<Waiting>>;

/// Maps keyed by request id: the ids are the client's own counter, never an attacker's
/// choice, so they need no keyed hash (std's SipHash, the slower of the two), only a fast
/// one that spreads consecutive ids.
type ById<V> = HashMap<u64, V, foldhash::fast::FixedState>;

/// What a stream's driver has to hand answers to.
#[derive(Debug, Default)]
struct Waiting {
    /// Callers waiting, by request id.
    answers: ById<oneshot::Sender<Answer>>,
    /// Acquires whose callers gave up before the answer came: their protector's name,
    /// to give back a trial permit the answer may carry. Emptied as answers arrive.
    abandoned: ById<String>,
}

/// The id of a request nobody waits for (callers' ids start at 1).
const UNWATCHED: u64 = 0;

/// The report that gives back the trial permit of an Acquire answer nobody waits for any
/// more (IGNORED: released without counting), if it carries one; other permits are not
/// tracked by the daemon and need nothing. Unary calls give back the same way.
pub(super) fn late_trial(name: String, answer: v1::AcquireResponse) -> Option<v1::ReportRequest> {
    let permit = answer.permit?;
    if !convert::permit(&permit).is_ok_and(|p| p.is_trial()) {
        return None;
    }
    tracing::debug!(%name, permit = permit.id, "a trial permit came after its caller gave up; giving it back");
    Some(v1::ReportRequest {
        duration: None,
        name,
        permit: Some(permit),
        outcome: v1::Outcome::Ignored as i32,
    })
}

/// Gives back the trial permit of an Acquire answer nobody waits for any more.
fn release(requests: &mpsc::UnboundedSender<v1::SessionRequest>, name: String, answer: v1::AcquireResponse) {
    let Some(report) = late_trial(name, answer) else {
        return;
    };
    // A stream that just broke takes the permit with it: the daemon releases the trials
    // of a session that ends.
    let _ = requests.send(v1::SessionRequest {
        id: UNWATCHED,
        request: Some(session_request::Request::Report(report)),
    });
}

/// One open (or opening) session stream.
#[derive(Debug)]
struct Stream {
    requests: mpsc::UnboundedSender<v1::SessionRequest>,
    /// Shared with the driver, which empties it when the stream breaks.
    shared: Arc<Shared>,
}

/// What a stream's callers and its driver share.
#[derive(Debug)]
struct Shared {
    pending: Pending,
    /// Set by the driver before it takes the pending map away: a stream found broken is
    /// replaced without taking the map's lock (a caller that finds it unset and the map
    /// gone is answered UNAVAILABLE, as before).
    broken: AtomicBool,
}

impl Stream {
    fn alive(&self) -> bool {
        !self.shared.broken.load(Ordering::Acquire)
    }
}

/// The session of one client (see the module note).
#[derive(Debug)]
pub(crate) struct Session {
    channel: Wired,
    next_id: AtomicU64,
    current: Mutex<Option<Arc<Stream>>>,
    unsupported: AtomicBool,
}

/// Removes a request from the pending map when its caller stops waiting; an Acquire
/// given up on sees to the trial permit its answer may bring (see the module note).
struct Forget<'a> {
    stream: &'a Stream,
    id: u64,
    /// The protector's name, for an Acquire.
    acquire: Option<&'a str>,
    answer: oneshot::Receiver<Answer>,
    /// The answer (or the stream's end) came: the driver took the request out of the map
    /// already, and there is nothing to forget.
    settled: bool,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut pending = lock(&self.stream.shared.pending);
        let Some(waiting) = pending.as_mut() else { return };
        if waiting.answers.remove(&self.id).is_some() {
            if let Some(name) = self.acquire {
                waiting.abandoned.insert(self.id, name.to_owned());
            }
        } else if let Some(name) = self.acquire
            && let Ok(Ok(session_response::Response::Acquire(late))) = self.answer.try_recv()
        {
            // Answered just as the caller gave up: nobody will read it.
            drop(pending);
            release(&self.stream.requests, name.to_owned(), late);
        }
    }
}

fn unavailable(why: &str) -> tonic::Status {
    tonic::Status::unavailable(why.to_owned())
}

impl Session {
    pub(crate) fn new(channel: Wired) -> Session {
        Session {
            channel,
            next_id: AtomicU64::new(1),
            current: Mutex::new(None),
            unsupported: AtomicBool::new(false),
        }
    }

    /// Whether the daemon answered that it has no Session RPC.
    pub(crate) fn unsupported(&self) -> bool {
        self.unsupported.load(Ordering::Relaxed)
    }

    /// Notes that the daemon has no Session RPC: the client uses unary calls from now on.
    pub(crate) fn mark_unsupported(&self) {
        if !self.unsupported.swap(true, Ordering::Relaxed) {
            tracing::warn!("the daemon does not serve Session; using unary calls");
        }
    }

    /// The live stream, opened if there is none.
    fn stream(&self) -> Arc<Stream> {
        let mut current = lock(&self.current);
        if let Some(stream) = current.as_ref().filter(|s| s.alive()) {
            return Arc::clone(stream);
        }
        let (requests, queued) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            pending: Mutex::new(Some(Waiting::default())),
            broken: AtomicBool::new(false),
        });
        // Weak: the driver's own releases must not keep the request stream open.
        let releases = requests.downgrade();
        let stream = Arc::new(Stream {
            requests,
            shared: Arc::clone(&shared),
        });
        let rpc = ProtectorServiceClient::new(self.channel.clone());
        tokio::spawn(drive(
            rpc,
            Corked {
                queued: UnboundedReceiverStream::new(queued),
                idle: false,
            },
            shared,
            releases,
        ));
        *current = Some(Arc::clone(&stream));
        stream
    }

    /// Sends one request and waits for its answer. `acquire_of` names the protector of
    /// an Acquire, so that a trial permit answered after the caller gave up goes back.
    pub(crate) async fn call(&self, request: session_request::Request, acquire_of: Option<&str>) -> Answer {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let stream = self.stream();
        let (tx, rx) = oneshot::channel();
        match lock(&stream.shared.pending).as_mut() {
            Some(waiting) => waiting.answers.insert(id, tx),
            None => return Err(unavailable("the session stream broke")),
        };
        let mut forget = Forget {
            stream: &stream,
            id,
            acquire: acquire_of,
            answer: rx,
            settled: false,
        };
        let request = v1::SessionRequest {
            id,
            request: Some(request),
        };
        if stream.requests.send(request).is_err() {
            return Err(unavailable("the session stream ended"));
        }
        let answer = (&mut forget.answer).await;
        // Either way the driver let go of the request: it sent the answer, or it dropped
        // the sender with the map when the stream broke.
        forget.settled = true;
        answer.unwrap_or_else(|_| Err(unavailable("the session stream ended")))
    }
}

/// The requests of a stream as the transport reads them, gathered: when a request comes
/// after the queue ran dry, the stream first lets the tasks already due to run go (it
/// wakes itself, behind them on the runtime's queue), so that callers woken by the same
/// batch of answers add their requests before the transport takes any. Taken at once, the
/// requests left in many small HTTP/2 frames, a write each: under load, a fifth of the
/// client's time went to those writes (BENCHMARKS.md, eleventh pass).
struct Corked {
    queued: UnboundedReceiverStream<v1::SessionRequest>,
    /// The queue was found empty: the next request waits one turn of the runtime.
    idle: bool,
}

impl tokio_stream::Stream for Corked {
    type Item = v1::SessionRequest;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.idle {
            self.idle = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let next = Pin::new(&mut self.queued).poll_next(cx);
        self.idle = next.is_pending();
        next
    }
}

/// Opens the stream and hands out answers until it breaks, then fails every request
/// still waiting.
async fn drive(
    mut rpc: ProtectorServiceClient<Wired>,
    requests: Corked,
    shared: Arc<Shared>,
    releases: mpsc::WeakUnboundedSender<v1::SessionRequest>,
) {
    let pending = &shared.pending;
    let why = match rpc.session(requests).await {
        Err(status) => status,
        Ok(response) => {
            let mut answers = response.into_inner();
            loop {
                match answers.message().await {
                    Ok(Some(answer)) => {
                        if let Some((name, late)) = hand_out(pending, answer)
                            && let Some(requests) = releases.upgrade()
                        {
                            release(&requests, name, late);
                        }
                    }
                    Ok(None) => break unavailable("the daemon ended the session stream"),
                    Err(status) => break status,
                }
            }
        }
    };
    tracing::debug!(code = ?why.code(), message = why.message(), "session stream closed");
    shared.broken.store(true, Ordering::Release);
    let waiting = lock(pending).take().map(|w| w.answers);
    for (_, tx) in waiting.into_iter().flatten() {
        let _ = tx.send(Err(tonic::Status::new(why.code(), why.message().to_owned())));
    }
}

/// Hands `answer` to the caller waiting for it, under the map's lock (so a caller giving
/// up either finds it in its channel or left its name behind); returns an abandoned
/// Acquire's answer, with its protector's name, for the caller of this to release.
fn hand_out(pending: &Pending, answer: v1::SessionResponse) -> Option<(String, v1::AcquireResponse)> {
    let mut pending = lock(pending);
    let waiting = pending.as_mut()?;
    if let Some(tx) = waiting.answers.remove(&answer.id) {
        let answer = match answer.response {
            Some(session_response::Response::Error(e)) => {
                Err(tonic::Status::new(tonic::Code::from(e.code), e.message))
            }
            Some(response) => Ok(response),
            None => Err(tonic::Status::internal("an empty session answer")),
        };
        let _ = tx.send(answer);
        return None;
    }
    let name = waiting.abandoned.remove(&answer.id)?;
    match answer.response {
        Some(session_response::Response::Acquire(late)) => Some((name, late)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    use tokio_stream::Stream as _;

    use super::*;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn request(id: u64) -> v1::SessionRequest {
        v1::SessionRequest { id, request: None }
    }

    #[test]
    fn a_request_after_a_dry_queue_waits_one_turn_then_leaves_with_the_rest() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut corked = Corked {
            queued: UnboundedReceiverStream::new(rx),
            idle: false,
        };
        let count = Arc::new(Count::default());
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let mut next = |corked: &mut Corked| match Pin::new(corked).poll_next(&mut cx) {
            Poll::Ready(Some(r)) => Some(Some(r.id)),
            Poll::Ready(None) => Some(None),
            Poll::Pending => None,
        };
        let woken = || count.0.load(Ordering::SeqCst);

        // What is queued when the stream opens leaves at once.
        tx.send(request(1)).unwrap();
        assert_eq!(next(&mut corked), Some(Some(1)));
        assert_eq!(next(&mut corked), None, "the queue ran dry");

        // The next request finds the queue dry: its first poll gives up its turn (waking
        // the stream again, behind the tasks already due), and the requests queued by
        // then leave together, in order.
        tx.send(request(2)).unwrap();
        tx.send(request(3)).unwrap();
        let before = woken();
        assert_eq!(next(&mut corked), None, "one turn given up");
        assert_eq!(woken(), before + 1, "and the stream woken for the next");
        assert_eq!(next(&mut corked), Some(Some(2)));
        assert_eq!(next(&mut corked), Some(Some(3)));
        assert_eq!(next(&mut corked), None);

        // The end of the requests comes the same way, one turn later.
        drop(tx);
        assert_eq!(next(&mut corked), None);
        assert_eq!(next(&mut corked), Some(None));
    }
}
