//! The `Session` transport: Acquire and Report pipelined on one bidirectional stream.
//!
//! Design note. A client keeps at most one session stream on its channel. Each request
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
//! is dropped; the answer, if it comes, is discarded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use resilient_circuit_api::v1::protector_service_client::ProtectorServiceClient;
use resilient_circuit_api::v1::{self, session_request, session_response};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

use crate::sync::lock;

/// One answer: the response, or the status the unary call would have failed with.
pub(crate) type Answer = Result<session_response::Response, tonic::Status>;

/// Requests waiting for their answer; `None` once the stream broke.
type Pending = Mutex<Option<HashMap<u64, oneshot::Sender<Answer>>>>;

/// One open (or opening) session stream.
#[derive(Debug)]
struct Stream {
    requests: mpsc::UnboundedSender<v1::SessionRequest>,
    pending: Arc<Pending>,
}

impl Stream {
    fn alive(&self) -> bool {
        lock(&self.pending).is_some()
    }
}

/// The session of one client (see the module note).
#[derive(Debug)]
pub(crate) struct Session {
    channel: Channel,
    next_id: AtomicU64,
    current: Mutex<Option<Arc<Stream>>>,
    unsupported: AtomicBool,
}

/// Removes a request from the pending map when its caller stops waiting.
struct Forget<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Some(map) = lock(self.pending).as_mut() {
            map.remove(&self.id);
        }
    }
}

fn unavailable(why: &str) -> tonic::Status {
    tonic::Status::unavailable(why.to_owned())
}

impl Session {
    pub(crate) fn new(channel: Channel) -> Session {
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
        let pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let stream = Arc::new(Stream {
            requests,
            pending: Arc::clone(&pending),
        });
        let rpc = ProtectorServiceClient::new(self.channel.clone());
        tokio::spawn(drive(rpc, UnboundedReceiverStream::new(queued), pending));
        *current = Some(Arc::clone(&stream));
        stream
    }

    /// Sends one request and waits for its answer.
    pub(crate) async fn call(&self, request: session_request::Request) -> Answer {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let stream = self.stream();
        let (tx, rx) = oneshot::channel();
        match lock(&stream.pending).as_mut() {
            Some(map) => map.insert(id, tx),
            None => return Err(unavailable("the session stream broke")),
        };
        let _forget = Forget {
            pending: &stream.pending,
            id,
        };
        let request = v1::SessionRequest {
            id,
            request: Some(request),
        };
        if stream.requests.send(request).is_err() {
            return Err(unavailable("the session stream ended"));
        }
        rx.await
            .unwrap_or_else(|_| Err(unavailable("the session stream ended")))
    }
}

/// Opens the stream and hands out answers until it breaks, then fails every request
/// still waiting.
async fn drive(
    mut rpc: ProtectorServiceClient<Channel>,
    requests: UnboundedReceiverStream<v1::SessionRequest>,
    pending: Arc<Pending>,
) {
    let why = match rpc.session(requests).await {
        Err(status) => status,
        Ok(response) => {
            let mut answers = response.into_inner();
            loop {
                match answers.message().await {
                    Ok(Some(answer)) => {
                        let waiting = lock(&pending).as_mut().and_then(|m| m.remove(&answer.id));
                        if let Some(tx) = waiting {
                            let answer = match answer.response {
                                Some(session_response::Response::Error(e)) => {
                                    Err(tonic::Status::new(tonic::Code::from(e.code), e.message))
                                }
                                Some(response) => Ok(response),
                                None => Err(tonic::Status::internal("an empty session answer")),
                            };
                            let _ = tx.send(answer);
                        }
                    }
                    Ok(None) => break unavailable("the daemon ended the session stream"),
                    Err(status) => break status,
                }
            }
        }
    };
    tracing::debug!(code = ?why.code(), message = why.message(), "session stream closed");
    let waiting = lock(&pending).take();
    for (_, tx) in waiting.into_iter().flatten() {
        let _ = tx.send(Err(tonic::Status::new(why.code(), why.message().to_owned())));
    }
}
