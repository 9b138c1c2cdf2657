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
use tokio_stream::wrappers::TcpListenerStream;
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
    // As circuitd's (one worker per core), with its own thread name, so a profile of the
    // load generator tells the echo server's work from the client's.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("echo-server")
        .build()
        .map_err(|e| Error::because("cannot start the echo baseline's runtime", e))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        // As circuitd does: small RPCs want TCP_NODELAY, which tonic does not set on
        // accepted connections itself.
        let incoming = TcpListenerStream::new(listener).map(|conn| {
            conn.inspect(|s| {
                let _ = s.set_nodelay(true);
            })
        });
        // circuitd's default stream limit, so both servers admit the same concurrency.
        tonic::transport::Server::builder()
            .max_concurrent_streams(1024)
            .add_service(EchoServiceServer::new(Echo))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await
            .map_err(|e| Error::because("the echo baseline failed", e))
    })
}
