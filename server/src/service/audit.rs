//! The audit log of the control plane: one line per change on the `circuitd::audit`
//! target, whoever made it (an AdminService call, or the daemon applying its config file
//! on SIGHUP, `crate::reload`).

use std::net::SocketAddr;
use std::sync::Arc;

use tonic::Request;

use super::forward;
use crate::auth;

/// Who asked for a change: its identity (`auth::Identity`: the token's or certificate
/// table's name, or the client's IP address with the API open), the client's address
/// and, for a call a follower forwarded, the follower's (`via`). A forwarded call is
/// authenticated again here, on its caller's own token, so with a token the identity is
/// the caller's, never the follower's.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    identity: Option<Arc<str>>,
    peer: Option<SocketAddr>,
    via: Option<SocketAddr>,
}

impl Origin {
    pub(super) fn of<T>(request: &Request<T>) -> Origin {
        let remote = request.remote_addr();
        let identity = request
            .extensions()
            .get::<auth::Identity>()
            .map(|i| Arc::clone(&i.name));
        match forward::forwarded_for(request.metadata()) {
            Some(client) => Origin {
                identity,
                peer: Some(client),
                via: remote,
            },
            None => Origin {
                identity,
                peer: remote,
                via: None,
            },
        }
    }
}

/// One line per control-plane change on the `circuitd::audit` target: who asked (the
/// token's name, the peer's address, and the follower it came through), what, and the
/// revision. It is
/// written once the change is durable and before the answer leaves, so the log never
/// shows a change the daemon could lose, nor misses one it acknowledged. Route it apart
/// with `RUST_LOG=circuitd::audit=info`.
pub(super) fn audit(origin: Origin, rpc: &str, name: &str, detail: impl std::fmt::Debug, revision: u64) {
    let Origin { identity, peer, via } = origin;
    let identity = identity.as_deref().unwrap_or("anonymous");
    tracing::info!(target: "circuitd::audit", rpc, name, identity, peer = ?peer, via = ?via, detail = ?detail, revision, "admin change");
}

/// The audit line of a change the daemon made itself, applying its config file's
/// `[[protectors]]` on SIGHUP (`crate::reload`): the same line as the RPC's, with the
/// identity `config-reload` and no peer.
pub(crate) fn audit_reload(rpc: &str, name: &str, detail: impl std::fmt::Debug, revision: u64) {
    let origin = Origin {
        identity: Some(Arc::from("config-reload")),
        peer: None,
        via: None,
    };
    audit(origin, rpc, name, detail, revision);
}
