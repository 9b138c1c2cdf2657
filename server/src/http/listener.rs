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

use crate::config::ConnectionConfig;
use crate::connections::{Alpn, Counted, Peer};
use crate::tls::Tls;

/// The connections the daemon accepted, as axum's listener.
pub(super) struct Accepted {
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
pub(super) async fn peer_extension(mut request: Request) -> Request {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<Peer>>().cloned() {
        request.extensions_mut().insert(peer);
    }
    request
}

/// The connections `listener` accepts (at most `max_connections` open, each through
/// TLS when `tls` is given), for `axum::serve`.
pub(super) fn accepted(
    listener: TcpListener,
    max_connections: usize,
    timeouts: &ConnectionConfig,
    tls: Option<Arc<Tls>>,
) -> io::Result<Accepted> {
    let addr = listener.local_addr()?;
    let connections = crate::connections::incoming_for(listener, max_connections, timeouts, tls, Alpn::Http);
    Ok(Accepted {
        connections: Box::pin(connections),
        addr,
    })
}
