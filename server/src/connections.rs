//! A cap on open client connections, and the timeouts that keep silent peers from
//! holding a place under it.
//!
//! Streams per connection and pending resets are bounded by HTTP/2 settings; this bounds
//! the connections themselves. Each accepted connection holds a semaphore permit for as
//! long as it lives; with none left, the daemon simply stops accepting, so newcomers wait
//! in the kernel's backlog (no busy loop, no memory per waiter) until a connection
//! closes.
//!
//! A place is only freed when its connection closes, so a peer that connects and then
//! says nothing must be closed by the daemon: [`Counted`] ends a connection that has not
//! sent the HTTP/2 preface within the handshake timeout, or that has had no call in
//! flight for the idle timeout. HTTP/2 PINGs (configured on the transport) and TCP
//! keepalive (set here) find peers that vanished while a call was open.
//!
//! With TLS (`crate::tls`), each accepted connection's handshake runs on a task of its
//! own, bounded by the handshake timeout, and the connection joins the stream tonic
//! serves once it completes; its place is held from the accept on, so handshakes in
//! progress count against `max_connections` too.
//!
//! The data listener's connections are served by [`threads`], each on one thread for its
//! whole life; the admin and HTTP listeners' by [`incoming`] and [`incoming_for`], on the
//! runtime that calls them.
//!
//! A connection is a file descriptor: [`descriptors`] raises the process's limit at
//! start so that each listener can hold `max_connections`.

pub mod descriptors;
mod streams;
pub mod threads;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::config::ConnectionConfig;
use crate::tls::Tls;
use streams::Activity;
pub use streams::{CallBody, CountCalls, Counting, Peer};

/// The HTTP/2 client preface, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", is this long.
const PREFACE_LEN: usize = 24;

/// An accepted connection and its place among `max_connections`, given back on drop.
#[derive(Debug)]
pub struct Counted {
    stream: Io,
    _place: Place,
    peer: Peer,
    /// Preface bytes still to come; the handshake deadline holds until none are left.
    preface_left: usize,
    idle_timeout: Duration,
    /// The handshake deadline, then the earliest moment the connection could be idle.
    deadline: Pin<Box<Sleep>>,
    /// Set once a deadline passed: reads see the end of the stream from then on.
    expired: bool,
}

/// The connections `listener` accepts, at most `max` open at once, each through a TLS
/// handshake when `tls` is given. TCP_NODELAY is set on each (tonic does not for an
/// incoming stream, and small RPCs want it), and TCP keepalive (tonic applies its own
/// setting only to listeners it binds itself).
pub fn incoming(
    listener: TcpListener,
    max: usize,
    timeouts: &ConnectionConfig,
    tls: Option<Arc<Tls>>,
) -> impl Stream<Item = io::Result<Counted>> + Send + use<> {
    incoming_for(listener, max, timeouts, tls, Alpn::Grpc)
}

/// What a listener's TLS handshake offers in ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `h2` only: gRPC.
    Grpc,
    /// `h2` and `http/1.1`: the HTTP listener (browsers, curl, Prometheus).
    Http,
}

/// [`incoming`] for a listener whose TLS handshakes offer `alpn`.
pub fn incoming_for(
    listener: TcpListener,
    max: usize,
    timeouts: &ConnectionConfig,
    tls: Option<Arc<Tls>>,
    alpn: Alpn,
) -> impl Stream<Item = io::Result<Counted>> + Send + use<> {
    use futures_util::StreamExt;
    let places = places(max);
    let timeouts = timeouts.clone();
    match tls {
        None => futures_util::stream::unfold((listener, places), move |(listener, places)| {
            let timeouts = timeouts.clone();
            async move {
                let accepted = accept(&listener, &places, &timeouts).await?;
                let counted = accepted.map(|a| a.plain(&timeouts));
                Some((counted, (listener, places)))
            }
        })
        .left_stream(),
        Some(tls) => {
            // Handshaken connections wait here for tonic; the places bound how many.
            let (ready, waiting) = tokio::sync::mpsc::channel(64);
            tokio::spawn(accept_tls(listener, places, timeouts, (tls, alpn), ready));
            tokio_stream::wrappers::ReceiverStream::new(waiting).right_stream()
        }
    }
}

/// The places among `max` open connections.
fn places(max: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS)))
}

/// Waits for a place, then for a connection, and sets its TCP options. `None` only if
/// the places were closed, which nothing does.
///
/// An accept that fails for want of a resource (no file descriptor left, say) would fail
/// again at once: it is logged and answered after [`ACCEPT_PAUSE`], so the acceptor does
/// not spin on a core until one is freed. A peer gone before its accept is no reason to
/// wait.
async fn accept(
    listener: &TcpListener,
    places: &Arc<Semaphore>,
    timeouts: &ConnectionConfig,
) -> Option<io::Result<Accepted>> {
    let place = Arc::clone(places).acquire_owned().await.ok()?;
    let accepted = listener.accept().await;
    if let Err(e) = &accepted
        && !peer_gone(e)
    {
        tracing::warn!(error = %e, pause = ?ACCEPT_PAUSE, "cannot accept connections; trying again after a pause");
        tokio::time::sleep(ACCEPT_PAUSE).await;
    }
    Some(accepted.map(|(stream, _)| {
        let tcp = tcp_options(&stream, timeouts);
        Accepted {
            stream,
            tcp,
            place: Place {
                _permit: place,
                _load: None,
            },
        }
    }))
}

/// How long the acceptor waits after an accept fails for want of a resource.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Whether an accept failed only because its peer went away meanwhile.
fn peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    )
}

/// Accepts until tonic stops reading the connections (`ready` closed), handing each
/// one's handshake to a task of its own.
async fn accept_tls(
    listener: TcpListener,
    places: Arc<Semaphore>,
    timeouts: ConnectionConfig,
    (tls, alpn): (Arc<Tls>, Alpn),
    ready: Ready,
) {
    loop {
        let accepted = tokio::select! {
            () = ready.closed() => return,
            accepted = accept(&listener, &places, &timeouts) => accepted,
        };
        match accepted {
            None => return,
            Some(Ok(accepted)) => accepted.handshake(&tls, alpn, &timeouts, &ready),
            Some(Err(e)) => {
                if ready.send(Err(e)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Where connections ready to be served wait for tonic.
type Ready = tokio::sync::mpsc::Sender<io::Result<Counted>>;

/// A connection's place among `max_connections`, and among its thread's connections
/// when one of [`threads`] serves it; both are given back when the connection closes.
#[derive(Debug)]
struct Place {
    _permit: OwnedSemaphorePermit,
    _load: Option<threads::Load>,
}

/// An accepted connection holding its place, its TLS handshake (if any) still ahead.
#[derive(Debug)]
struct Accepted {
    stream: TcpStream,
    tcp: TcpConnectInfo,
    place: Place,
}

impl Accepted {
    /// Served as it is: plaintext.
    fn plain(self, timeouts: &ConnectionConfig) -> Counted {
        Counted::new(Io::Plain(self.stream), self.tcp, self.place, timeouts)
    }

    /// Served once its TLS handshake, run on a task of its own (on the current runtime)
    /// within the handshake timeout, completes; it then joins `ready`.
    fn handshake(self, tls: &Arc<Tls>, alpn: Alpn, timeouts: &ConnectionConfig, ready: &Ready) {
        let Accepted { stream, tcp, place } = self;
        let acceptor = match alpn {
            Alpn::Grpc => tls.acceptor(),
            Alpn::Http => tls.http_acceptor(),
        };
        let tls = Arc::clone(tls);
        let timeouts = timeouts.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(timeouts.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let replica = tls.is_replica(stream.get_ref().1.peer_certificates());
                    let mut counted = Counted::new(Io::Tls(Box::new(stream)), tcp, place, &timeouts);
                    counted.peer.replica_certificate = replica;
                    let _ = ready.send(Ok(counted)).await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(peer = ?tcp.remote_addr(), error = %e, "TLS handshake refused");
                }
                Err(_) => {
                    tracing::debug!(peer = ?tcp.remote_addr(), "closing a connection that never completed the TLS handshake");
                }
            }
        });
    }
}

/// Sets TCP_NODELAY and keepalive on an accepted socket; its addresses, for the call's
/// extensions.
fn tcp_options(stream: &TcpStream, timeouts: &ConnectionConfig) -> TcpConnectInfo {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
    let keepalive = socket2::TcpKeepalive::new().with_time(timeouts.tcp_keepalive);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "could not set TCP keepalive");
    }
    stream.connect_info()
}

/// The connection's bytes: plaintext, or TLS over TCP.
#[derive(Debug)]
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Counted {
    fn new(stream: Io, tcp: TcpConnectInfo, place: Place, timeouts: &ConnectionConfig) -> Counted {
        let client_certificate = match &stream {
            Io::Plain(_) => None,
            Io::Tls(tls) => tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| Arc::new(leaf.clone().into_owned())),
        };
        // rustls verified the chain, so the leaf parses; if it did not, the caller
        // simply has no certificate identity.
        let client_subject = client_certificate.as_deref().and_then(|der| {
            crate::subject::Subject::of_certificate(der)
                .inspect_err(|e| tracing::debug!(peer = ?tcp.remote_addr(), error = %e, "unreadable client certificate subject"))
                .ok()
                .map(Arc::new)
        });
        let peer = Peer {
            tcp,
            activity: Activity::new(),
            client_certificate,
            client_subject,
            replica_certificate: false,
        };
        Counted {
            stream,
            _place: place,
            peer,
            preface_left: PREFACE_LEN,
            idle_timeout: timeouts.idle_timeout,
            deadline: Box::pin(tokio::time::sleep(timeouts.handshake_timeout)),
            expired: false,
        }
    }

    /// Counts the bytes just read against the preface. The handshake is taken as done
    /// when the whole preface has arrived: hyper does not tell when its handshake
    /// completes, "the first byte" would let a peer hold its place by sending one, and
    /// from the preface on the idle timeout and PINGs watch the connection.
    fn received(&mut self, bytes: usize) {
        if self.preface_left == 0 || bytes == 0 {
            return;
        }
        self.preface_left = self.preface_left.saturating_sub(bytes);
        if self.preface_left == 0 {
            self.peer.activity.quiet_from_now();
            let at = Instant::now() + self.idle_timeout;
            self.deadline.as_mut().reset(at);
        }
    }

    /// The deadline just passed: when the connection must be checked again, or `None`
    /// if it is to be closed now.
    fn next_deadline(&self) -> Option<Instant> {
        if self.preface_left > 0 {
            tracing::debug!(peer = ?self.peer.tcp.remote_addr(), "closing a connection that never completed the HTTP/2 handshake");
            return None;
        }
        let now = Instant::now();
        match self.peer.activity.idle_since() {
            // A call (perhaps a long Watch) is open; look again one idle period on.
            None => Some(now + self.idle_timeout),
            Some(since) if since + self.idle_timeout > now => Some(since + self.idle_timeout),
            Some(_) => {
                tracing::debug!(peer = ?self.peer.tcp.remote_addr(), "closing an idle connection");
                None
            }
        }
    }
}

impl Connected for Counted {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for Counted {
    /// Reads, and while the peer has nothing to say, watches the deadline. hyper always
    /// keeps a read pending on an HTTP/2 connection, so this is polled whenever it
    /// could expire. Past it, the read sees the end of the stream, as if the peer had
    /// closed: hyper ends the connection and the place is freed.
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.received(buf.filled().len() - before);
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        while this.deadline.as_mut().poll(cx).is_ready() {
            match this.next_deadline() {
                Some(at) => this.deadline.as_mut().reset(at),
                None => {
                    this.expired = true;
                    return Poll::Ready(Ok(()));
                }
            }
        }
        Poll::Pending
    }
}

impl AsyncWrite for Counted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Each method forwards to the plaintext or TLS stream.
macro_rules! either {
    ($io:expr, $s:ident => $e:expr) => {
        match $io {
            Io::Plain($s) => $e,
            Io::Tls($s) => $e,
        }
    };
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        either!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        either!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        either!(self, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::peer_gone;

    #[test]
    fn only_a_peer_gone_is_accepted_again_at_once() {
        let cases = [
            (io::ErrorKind::ConnectionAborted, true),
            (io::ErrorKind::ConnectionReset, true),
            (io::ErrorKind::ConnectionRefused, true),
            // EMFILE and ENFILE: no descriptor left; ENOBUFS, ENOMEM: no memory.
            (io::ErrorKind::Other, false),
            (io::ErrorKind::OutOfMemory, false),
            (io::ErrorKind::PermissionDenied, false),
        ];
        for (kind, gone) in cases {
            assert_eq!(peer_gone(&io::Error::from(kind)), gone, "{kind:?}");
        }
        let emfile = io::Error::from_raw_os_error(24);
        assert!(!peer_gone(&emfile), "{emfile}");
    }
}
