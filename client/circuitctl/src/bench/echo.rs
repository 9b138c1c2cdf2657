//! The transport baseline: an echo service served from this process on 127.0.0.1:0.
//!
//! It runs on a runtime and threads of its own, built as circuitd builds its own (one
//! worker per core), so the load generator drives it exactly as it drives the daemon in
//! another process, and the two runs differ only in what the handlers do.

use std::net::SocketAddr;
use std::pin::Pin;

use anyhow::Context;
use futures_util::{Stream, StreamExt};
use resilient_circuit_loadgen::echo::echo_service_server::{EchoService, EchoServiceServer};
use resilient_circuit_loadgen::echo::{EchoRequest, EchoResponse};
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming};

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
    done: oneshot::Receiver<anyhow::Result<()>>,
}

impl EchoServer {
    /// Binds 127.0.0.1:0 and starts serving on a thread of its own.
    pub fn start() -> anyhow::Result<EchoServer> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind the echo baseline")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let (finished, done) = oneshot::channel();
        std::thread::Builder::new()
            .name("echo-baseline".to_owned())
            .spawn(move || {
                let _ = finished.send(serve(listener, stopped));
            })
            .context("cannot start the echo baseline's thread")?;
        Ok(EchoServer { addr, stop, done })
    }

    /// The URI to connect to.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits until the server has let go of its threads.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.done.await.context("the echo baseline's thread panicked")?
    }
}

fn serve(listener: std::net::TcpListener, stopped: oneshot::Receiver<()>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the echo baseline's runtime")?;
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
            .context("the echo baseline failed")
    })
}
