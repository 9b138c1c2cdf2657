//! The HTTP listener's accept loop: the daemon's own accepted connections (cap,
//! timeouts, TLS) handed to axum, which serves HTTP/1.1 and HTTP/2 on each.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::serve::{IncomingStream, Listener};
use futures_util::{Stream, StreamExt};
use tokio::net::TcpListener;
use tonic::transport::server::Connected;

use super::HttpContext;
use crate::config::ConnectionConfig;
use crate::connections::{Alpn, CountCalls, Counted, Peer};
use crate::tls::Tls;

/// The connections the daemon accepted, as axum's listener.
struct Accepted {
    connections: Pin<Box<dyn Stream<Item = io::Result<Counted>> + Send>>,
    addr: SocketAddr,
}

impl Listener for Accepted {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Counted, SocketAddr) {
        loop {
            match self.connections.next().await {
                Some(Ok(connection)) => {
                    let peer = connection.connect_info().tcp.remote_addr().unwrap_or(self.addr);
                    return (connection, peer);
                }
                Some(Err(e)) => {
                    // Out of file descriptors, most likely: accepting again at once
                    // would spin.
                    tracing::warn!(error = %e, "HTTP listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // The accept loop ended: serve what is open until shutdown.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

impl axum::extract::connect_info::Connected<IncomingStream<'_, Accepted>> for Peer {
    fn connect_info(stream: IncomingStream<'_, Accepted>) -> Peer {
        stream.io().connect_info()
    }
}

/// Puts the connection's [`Peer`] where the call counter and the refusal log look.
async fn peer_extension(mut request: Request) -> Request {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<Peer>>().cloned() {
        request.extensions_mut().insert(peer);
    }
    request
}

/// Serves HTTP on `listener` until `ctx.draining`; the task ends once every open
/// response has (event streams end on `draining` themselves).
pub fn spawn(
    listener: TcpListener,
    ctx: HttpContext,
    max_connections: usize,
    timeouts: &ConnectionConfig,
    tls: Option<Arc<Tls>>,
) -> io::Result<tokio::task::JoinHandle<()>> {
    let addr = listener.local_addr()?;
    let connections = crate::connections::incoming_for(listener, max_connections, timeouts, tls, Alpn::Http);
    let accepted = Accepted {
        connections: Box::pin(connections),
        addr,
    };
    let draining = ctx.draining.clone();
    let app = super::router(ctx)
        .layer(CountCalls)
        .layer(axum::middleware::map_request(peer_extension));
    Ok(tokio::spawn(async move {
        let served = axum::serve(accepted, app.into_make_service_with_connect_info::<Peer>())
            .with_graceful_shutdown(draining.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the HTTP listener failed");
        }
    }))
}
