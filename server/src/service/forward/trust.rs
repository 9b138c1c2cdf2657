//! Which calls may name the client a forwarding replica acted for.
//!
//! A follower writes its client's address in [`FORWARDED_FOR`] for the leader's audit
//! log. Anyone can send that header, so it is believed only from a replica, and removed
//! from every other call before any service sees it (the audit log then names the real
//! peer). A replica is recognised by:
//! - its certificate, when replicas have a CA of their own: with `--tls-peer-ca` and
//!   mTLS (`--tls-client-ca`), a connection whose client certificate verifies against
//!   the peer CA (checked once, at the handshake, see `crate::tls`). Nothing else counts,
//!   so give replicas certificates from that CA and clients from another;
//! - otherwise its address: a connection from an IP address that the members' advertised
//!   hosts (data or admin) resolve to, as last seen in etcd. Any process on a replica's
//!   host passes this test, and a replica whose connections leave from another address
//!   (NAT, a second interface) fails it; both are reasons to use a peer CA;
//! - standalone, by nothing: no replica forwards to a daemon alone.
//!
//! The check runs only for calls that carry the header, so a client's call pays one
//! header lookup.

use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::{Service, http};

use super::FORWARDED_FOR;
use crate::cluster::Cluster;
use crate::connections::Peer;

/// How this daemon recognises the replicas whose forwarding marks it believes.
#[derive(Debug, Clone)]
pub enum Replicas {
    /// Standalone: nobody forwards here.
    Nobody,
    /// By source address, among the members' advertised hosts.
    ByAddress(Arc<Cluster>),
    /// By a client certificate that verified against `--tls-peer-ca`.
    ByCertificate,
}

impl Replicas {
    /// The rule for this daemon: standalone without a cluster; by certificate when
    /// `by_certificate` (a peer CA with mTLS); by address otherwise.
    pub fn of(cluster: &Arc<Cluster>, by_certificate: bool) -> Replicas {
        if cluster.prefix().is_empty() {
            Replicas::Nobody
        } else if by_certificate {
            Replicas::ByCertificate
        } else {
            Replicas::ByAddress(Arc::clone(cluster))
        }
    }

    /// Whether a call on `peer`'s connection comes from a replica.
    fn recognise(&self, peer: Option<&Peer>) -> bool {
        let Some(peer) = peer else { return false };
        match self {
            Replicas::Nobody => false,
            Replicas::ByCertificate => peer.replica_certificate,
            Replicas::ByAddress(cluster) => peer
                .tcp
                .remote_addr()
                .is_some_and(|addr| cluster.is_member_address(addr.ip())),
        }
    }
}

/// The layer that removes [`FORWARDED_FOR`] from calls no replica sent.
#[derive(Debug, Clone)]
pub struct TrustForwarded(pub Replicas);

impl<S> tower_layer::Layer<S> for TrustForwarded {
    type Service = Trusting<S>;

    fn layer(&self, inner: S) -> Trusting<S> {
        Trusting {
            inner,
            replicas: self.0.clone(),
        }
    }
}

/// [`TrustForwarded`] around a service.
#[derive(Debug, Clone)]
pub struct Trusting<S> {
    inner: S,
    replicas: Replicas,
}

impl<S, B> Service<http::Request<B>> for Trusting<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> S::Future {
        if request.headers().contains_key(FORWARDED_FOR)
            && !self.replicas.recognise(request.extensions().get::<Peer>())
        {
            request.headers_mut().remove(FORWARDED_FOR);
            tracing::debug!(
                peer = ?request.extensions().get::<Peer>().and_then(|p| p.tcp.remote_addr()),
                "ignored {FORWARDED_FOR} from a peer that is not a replica"
            );
        }
        self.inner.call(request)
    }
}
