//! Connection threads: each of the data listener's connections is served, for its whole
//! life, by one of a few threads, each running a single-threaded runtime of its own.
//!
//! Why not the daemon's work-stealing runtime: a busy connection's tasks (hyper's
//! connection and the call's stream) wake one another many times a millisecond, and each
//! wake-up tells an idle worker to look for work; that worker wakes, takes a task the busy
//! one would have run next, and the connection's state moves between cores. On a host
//! whose cores the daemon shares with its clients, half of its time went to the kernel
//! (BENCHMARKS.md, issue 17). On one thread a connection's tasks wake one another for the
//! price of a queue push. Envoy serves its connections the same way: the listener hands
//! each to one worker thread, which runs it to the end.
//!
//! One acceptor, on the daemon's runtime, takes each connection (holding its place among
//! `max_connections`, so the cap and the backlog behave as with one runtime), sets its TCP
//! options, detaches it from that runtime and hands it to the thread serving the fewest
//! connections. There it is registered with the thread's own reactor, its TLS handshake
//! runs, and tonic serves it.
//!
//! Stopping: `stop` ends the acceptor, which closes the listener, and each thread's tonic
//! ends its connections gracefully (the signal given to `serve`). Dropping [`Threads`]
//! (past the shutdown grace, or with the future serving the daemon) stops the acceptor
//! and each thread's runtime where it is, dropping the connections still open.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::transport::server::TcpConnectInfo;

use super::{Accepted, Alpn, Counted, Place, Ready, accept, places};
use crate::config::ConnectionConfig;
use crate::error::ServeError;
use crate::tls::Tls;

#[cfg(test)]
mod tests;

/// Connections handed to a thread and not yet taken up by it. Each holds its place among
/// `max_connections`, so the places bound the memory too; this only keeps the acceptor
/// from running ahead of one busy thread.
const HANDOFF: usize = 64;

/// What a connection thread's tonic reads: its connections, ready to be served.
pub type Incoming = ReceiverStream<io::Result<Counted>>;

/// The result of one thread's serving.
type Served = Result<(), tonic::transport::Error>;

/// The connections one thread serves, counted while they live; the acceptor picks the
/// thread with the fewest.
#[derive(Debug)]
pub(super) struct Load(Arc<AtomicUsize>);

impl Load {
    fn of(count: &Arc<AtomicUsize>) -> Load {
        count.fetch_add(1, Ordering::Relaxed);
        Load(Arc::clone(count))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection on its way to its thread: detached from the runtime that accepted it.
#[derive(Debug)]
struct Detached {
    stream: std::net::TcpStream,
    tcp: TcpConnectInfo,
    place: Place,
}

impl Accepted {
    /// Detached from this runtime's reactor, counted in `load` from now on.
    fn detach(self, load: &Arc<AtomicUsize>) -> io::Result<Detached> {
        let Accepted {
            stream,
            tcp,
            mut place,
        } = self;
        place._load = Some(Load::of(load));
        Ok(Detached {
            stream: stream.into_std()?,
            tcp,
            place,
        })
    }
}

impl Detached {
    /// Registered with the current runtime's reactor.
    fn attach(self) -> io::Result<Accepted> {
        Ok(Accepted {
            stream: TcpStream::from_std(self.stream)?,
            tcp: self.tcp,
            place: self.place,
        })
    }
}

/// How many connection threads serve when `asked` for: one per core when `None`.
pub fn count_of(asked: Option<usize>) -> usize {
    asked
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .clamp(1, crate::config::MAX_WORKER_THREADS)
}

/// The connection threads, serving until each one's tonic returns. Dropped, they stop
/// where they are.
#[derive(Debug)]
pub struct Threads {
    served: Vec<oneshot::Receiver<Served>>,
    /// The acceptor, which owns the listener.
    acceptor: tokio::task::JoinHandle<()>,
    abort: DropGuard,
}

/// The connection threads, `count` of them (one per core when `None`), started: the
/// connections `listener` accepts, at most `max` open at once, each served to its end by
/// the thread serving the fewest when it arrived, TLS handshake included when `tls` is
/// given. `serve` makes one thread's server, called here once per thread; the server runs
/// on that thread, its connections taken from [`Incoming`], and must end them when `stop`
/// is cancelled, which also stops the acceptor and closes the listener.
///
/// The acceptor is a task on the current runtime. Fails only if a thread or its runtime
/// cannot be started.
pub fn serve<S, F, Fut>(
    listener: TcpListener,
    count: Option<usize>,
    max: usize,
    timeouts: &ConnectionConfig,
    tls: Option<Arc<Tls>>,
    stop: CancellationToken,
    mut serve: S,
) -> io::Result<Threads>
where
    S: FnMut() -> F,
    F: FnOnce(Incoming) -> Fut + Send + 'static,
    Fut: Future<Output = Served> + 'static,
{
    let count = count_of(count);
    let abort = CancellationToken::new();
    let mut handoffs = Vec::with_capacity(count);
    let mut served = Vec::with_capacity(count);
    for i in 0..count {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (handoff, arrivals) = mpsc::channel(HANDOFF);
        let (done, result) = oneshot::channel();
        let server = serve();
        let timeouts = timeouts.clone();
        let tls = tls.clone();
        let abort = abort.clone();
        std::thread::Builder::new()
            .name(format!("circuitd-conn-{i}"))
            .spawn(move || {
                let outcome = runtime.block_on(async move {
                    let incoming = admit(arrivals, timeouts, tls);
                    tokio::select! {
                        served = server(incoming) => served,
                        () = abort.cancelled() => Ok(()),
                    }
                });
                // Past the grace: the connections still open are dropped, not awaited.
                runtime.shutdown_background();
                let _ = done.send(outcome);
            })?;
        handoffs.push((handoff, Arc::new(AtomicUsize::new(0))));
        served.push(result);
    }
    let timeouts = timeouts.clone();
    let dropped = abort.clone();
    // It owns the listener: stopping, or the threads dropped (the serving future with
    // them), closes it at once, as tonic closes a listener it serves.
    let acceptor = tokio::spawn(async move {
        tokio::select! {
            () = stop.cancelled() => {}
            () = dropped.cancelled() => {}
            () = hand_out(listener, places(max), timeouts, handoffs) => {}
        }
    });
    Ok(Threads {
        served,
        acceptor,
        abort: abort.drop_guard(),
    })
}

impl Threads {
    /// Completes when every thread's server has returned, or the first fails; a thread
    /// that stopped without answering (it panicked) is [`ServeError::Threads`]. Either
    /// way the acceptor has ended by then and the listener is closed, so its address can
    /// be bound again at once (a daemon restarted on the same port).
    pub async fn finished(self) -> Result<(), ServeError> {
        let Threads {
            served,
            acceptor,
            abort,
        } = self;
        let mut served: FuturesUnordered<_> = served.into_iter().collect();
        let mut result = Ok(());
        while let Some(outcome) = served.next().await {
            let failed = match outcome {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.into(),
                Err(_) => ServeError::Threads("a connection thread stopped unexpectedly".into()),
            };
            result = Err(failed);
            break;
        }
        // The threads are done (or one failed, and the rest are told to stop): the
        // acceptor goes too, and is waited for. Without the wait it would close the
        // listener only when next polled, after this has returned.
        drop(abort);
        let _ = acceptor.await;
        result
    }
}

/// Accepts, and hands each connection to the thread serving the fewest, until a thread
/// stops taking them (it is shutting down).
async fn hand_out(
    listener: TcpListener,
    places: Arc<tokio::sync::Semaphore>,
    timeouts: ConnectionConfig,
    handoffs: Vec<(mpsc::Sender<Detached>, Arc<AtomicUsize>)>,
) {
    loop {
        let accepted = match accept(&listener, &places, &timeouts).await {
            None => return,
            Some(Ok(accepted)) => accepted,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "accept failed");
                continue;
            }
        };
        let Some((handoff, load)) = handoffs
            .iter()
            .min_by_key(|(_, load)| load.load(Ordering::Relaxed))
        else {
            return;
        };
        let detached = match accepted.detach(load) {
            Ok(detached) => detached,
            Err(e) => {
                tracing::debug!(error = %e, "could not hand an accepted connection to its thread");
                continue;
            }
        };
        if handoff.send(detached).await.is_err() {
            return;
        }
    }
}

/// On a connection thread: each connection handed to it registered here and, with
/// `tls`, handshaken on a task of its own; the ones ready to be served, for tonic.
fn admit(
    mut arrivals: mpsc::Receiver<Detached>,
    timeouts: ConnectionConfig,
    tls: Option<Arc<Tls>>,
) -> Incoming {
    let (ready, waiting): (Ready, _) = mpsc::channel(HANDOFF);
    tokio::spawn(async move {
        loop {
            let detached = tokio::select! {
                () = ready.closed() => return,
                detached = arrivals.recv() => match detached {
                    Some(detached) => detached,
                    None => return,
                },
            };
            let accepted = match detached.attach() {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(error = %e, "could not register a connection with its thread");
                    continue;
                }
            };
            match &tls {
                Some(tls) => accepted.handshake(tls, Alpn::Grpc, &timeouts, &ready),
                None => {
                    if ready.send(Ok(accepted.plain(&timeouts))).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    ReceiverStream::new(waiting)
}
