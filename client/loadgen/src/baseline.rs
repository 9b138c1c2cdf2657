//! The transport baseline: an echo service served from this process on 127.0.0.1:0.
//!
//! It runs on a runtime and threads of its own, built as circuitd builds its own (one
//! worker per core), so the load generator drives it exactly as it drives the daemon in
//! another process, and the two runs differ only in what the handlers do.

use std::net::SocketAddr;
use std::pin::Pin;

use crate::echo::echo_service_server::{EchoService, EchoServiceServer};
use crate::echo::{EchoRequest, EchoResponse};
use futures_util::{Stream, StreamExt};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status, Streaming};

use crate::error::Error;

/// Answers every call at once with what it was sent.
#[derive(Debug, Clone, Copy)]
struct Echo;

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let EchoRequest { id, name } = request.into_inner();
        Ok(Response::new(EchoResponse { id, name }))
    }

    type EchoStreamStream = Pin<Box<dyn Stream<Item = Result<EchoResponse, Status>> + Send + 'static>>;

    async fn echo_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::EchoStreamStream>, Status> {
        let answers = request
            .into_inner()
            .map(|r| r.map(|EchoRequest { id, name }| EchoResponse { id, name }));
        Ok(Response::new(Box::pin(answers)))
    }
}

/// A running echo server.
#[derive(Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    done: oneshot::Receiver<Result<(), Error>>,
}

impl EchoServer {
    /// Binds 127.0.0.1:0 and starts serving on a thread of its own.
    pub fn start() -> Result<EchoServer, Error> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| Error::because("cannot bind the echo baseline", e))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let (finished, done) = oneshot::channel();
        std::thread::Builder::new()
            .name("echo-baseline".to_owned())
            .spawn(move || {
                let _ = finished.send(serve(listener, stopped));
            })
            .map_err(|e| Error::because("cannot start the echo baseline's thread", e))?;
        Ok(EchoServer { addr, stop, done })
    }

    /// The URI to connect to.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits until the server has let go of its threads.
    pub async fn stop(self) -> Result<(), Error> {
        let _ = self.stop.send(());
        self.done
            .await
            .map_err(|e| Error::because("the echo baseline's thread panicked", e))?
    }
}

fn serve(listener: std::net::TcpListener, stopped: oneshot::Receiver<()>) -> Result<(), Error> {
    // As circuitd serves its data connections (server/src/connections/threads.rs): each
    // one, for its whole life, on one of a few threads (one per core) with a
    // single-threaded runtime of its own, handed there by one acceptor. circuitd hands a
    // new connection to the thread serving the fewest; the benchmark's connections all
    // live as long as the run, so taking the threads in turn does the same here.
    let count = std::thread::available_parallelism().map_or(1, usize::from);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut handoffs = Vec::with_capacity(count);
    let mut served = Vec::with_capacity(count);
    for i in 0..count {
        let (handoff, arrivals) = tokio::sync::mpsc::unbounded_channel::<std::net::TcpStream>();
        let mut stopping = stopping.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::because("cannot start the echo baseline's runtime", e))?;
        // Its own thread name, so a profile of the load generator tells the echo
        // server's work from the client's.
        let thread = std::thread::Builder::new()
            .name(format!("echo-server-{i}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let incoming =
                        tokio_stream::wrappers::UnboundedReceiverStream::new(arrivals).map(|conn| {
                            let conn = tokio::net::TcpStream::from_std(conn)?;
                            // As circuitd does: small RPCs want TCP_NODELAY, which tonic
                            // does not set on accepted connections itself.
                            let _ = conn.set_nodelay(true);
                            Ok::<_, std::io::Error>(conn)
                        });
                    // circuitd's default stream limit, so both servers admit the same
                    // concurrency.
                    tonic::transport::Server::builder()
                        .max_concurrent_streams(1024)
                        .add_service(EchoServiceServer::new(Echo))
                        .serve_with_incoming_shutdown(incoming, async move {
                            let _ = stopping.wait_for(|stop| *stop).await;
                        })
                        .await
                        .map_err(|e| Error::because("the echo baseline failed", e))
                })
            })
            .map_err(|e| Error::because("cannot start the echo baseline's thread", e))?;
        handoffs.push(handoff);
        served.push(thread);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::because("cannot start the echo baseline's runtime", e))?;
    let accepted: Result<(), Error> = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut stopped = std::pin::pin!(stopped);
        for next in (0..count).cycle() {
            let conn = tokio::select! {
                _ = &mut stopped => break,
                conn = listener.accept() => conn,
            };
            // An accept that fails (a peer gone already) costs nothing but itself.
            if let Ok((conn, _)) = conn {
                let _ = handoffs[next].send(conn.into_std()?);
            }
        }
        Ok(())
    });
    let _ = stop.send(true);
    let mut result = accepted;
    for thread in served {
        let served = thread.join().unwrap_or_else(|_| {
            Err(Error::because(
                "the echo baseline's thread panicked",
                std::io::Error::other("panic"),
            ))
        });
        result = result.and(served);
    }
    result
}
