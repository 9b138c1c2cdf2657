//! Which connections have a call in flight.
//!
//! hyper does not say how many streams a connection has open, so a layer counts them:
//! each request holds an [`InFlight`] on its connection's [`Activity`] from the moment
//! it arrives until its response body is dropped. For a unary call that is when the
//! reply is sent; for a Watch or Session it is when the stream ends or is reset. The
//! connection's reader consults the count to decide whether it is idle.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::transport::server::TcpConnectInfo;

/// The calls in flight on one connection, and when the last one ended. Every call's end
/// writes the time, so it is an atomic beside the count (the same cache line), not a lock
/// the calls of one connection would queue on.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// Nanoseconds after `opened` when the connection was last seen with a call ending
    /// (or its handshake completing).
    quiet_since: AtomicU64,
    opened: Instant,
}

impl Activity {
    /// A connection with no call yet, quiet since now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            quiet_since: AtomicU64::new(0),
            opened: Instant::now(),
        })
    }

    /// `None` while a call is in flight; otherwise since when none has been.
    pub fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let nanos = self.quiet_since.load(Ordering::Acquire);
        Some(self.opened + std::time::Duration::from_nanos(nanos))
    }

    /// Restarts the quiet period (the handshake just completed).
    pub fn quiet_from_now(&self) {
        let nanos = u64::try_from(self.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.quiet_since.fetch_max(nanos, Ordering::AcqRel);
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }
}

/// One call in flight; dropping it ends the call.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        // The time first, then the count: whoever sees the count reach zero also sees
        // when it did, so a connection is never judged idle since before this call.
        self.0.quiet_from_now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What tonic puts in each request's extensions for a counted connection: the peer's
/// address, the connection's `Activity` and, with mTLS, the client's certificate.
#[derive(Debug, Clone)]
pub struct Peer {
    pub(crate) tcp: TcpConnectInfo,
    pub(crate) activity: Arc<Activity>,
    /// The leaf certificate the client presented (verified against the client CA at
    /// the handshake), for naming the caller.
    pub(crate) client_certificate: Option<Arc<rustls_pki_types::CertificateDer<'static>>>,
    /// Its subject, read once per connection rather than per call (see `auth`).
    pub(crate) client_subject: Option<Arc<crate::subject::Subject>>,
    /// Whether that certificate also verified against `--tls-peer-ca`: the connection
    /// comes from another replica (see `service::forward::trust`).
    pub(crate) replica_certificate: bool,
}

impl Peer {
    /// The certificate the client presented with mTLS (DER), already verified.
    pub fn client_certificate(&self) -> Option<&rustls_pki_types::CertificateDer<'static>> {
        self.client_certificate.as_deref()
    }

    /// The subject of [`Peer::client_certificate`].
    pub fn client_subject(&self) -> Option<&crate::subject::Subject> {
        self.client_subject.as_deref()
    }
}

/// The layer that counts calls per connection (see the module note).
#[derive(Debug, Clone, Copy, Default)]
pub struct CountCalls;

impl<S> tower_layer::Layer<S> for CountCalls {
    type Service = Counting<S>;

    fn layer(&self, inner: S) -> Counting<S> {
        Counting { inner }
    }
}

/// [`CountCalls`] around a service.
#[derive(Debug, Clone)]
pub struct Counting<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Counting<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Unpin,
{
    type Response = http::Response<CallBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let in_flight = request.extensions().get::<Peer>().cloned().map(|peer| {
            // `Request::remote_addr` looks for the TCP info itself, so the audit log
            // keeps naming the peer.
            request.extensions_mut().insert(peer.tcp);
            peer.activity.begin()
        });
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| CallBody {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A response body that keeps its call counted until hyper drops it.
#[derive(Debug)]
pub struct CallBody<B> {
    body: B,
    _in_flight: Option<InFlight>,
}

impl<B: Body + Unpin> Body for CallBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
