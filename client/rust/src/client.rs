//! [`Client`]: one cheap-to-clone connection to the daemon, its options
//! ([`ClientBuilder`]) and counters ([`ClientStats`]).
//!
//! Design note. A client owns one lazily connected `tonic` channel per address it was
//! given, so constructing it never waits for the daemon and never fails because the
//! daemon is down; only an invalid address is an error. Several addresses are the
//! replicas of one cluster: the client asks one at a time and moves to the next when it
//! cannot be reached (see `link`). Every [`Protector`] made from it shares that
//! connection: the channels, the client's settings, its link (whether the daemon is
//! worth asking right now, with the reconnect backoff) and its counters. How Acquire and
//! Report travel is the [`Transport`] (see `transport`).

use std::sync::Arc;
use std::time::Duration;

use resilient_circuit_api::Bearer;
use resilient_circuit_api::bearer::InvalidToken;
use resilient_circuit_breaker::Policy as ProtectorPolicy;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::error::Error;
use crate::link::Reconnect;
use crate::protector::{Protector, ProtectorBuilder};
pub use crate::transport::Transport;
use crate::transport::{Config, Connection, Stats};

/// The default deadline of one Acquire before the fallback decides.
pub const DEFAULT_ACQUIRE_DEADLINE: Duration = Duration::from_millis(50);
/// The default limit of a Report, an EnsureProtector or opening a Watch.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// The default first reconnect backoff.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(50);
/// The default longest reconnect backoff.
pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(5);
/// The default time after which a silent Watch stream is taken for dead.
pub const DEFAULT_WATCH_STALENESS: Duration = Duration::from_secs(30);

/// A snapshot of a client's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Acquires the daemon decided.
    pub daemon_decisions: u64,
    /// Acquires cached protectors decided from their local model, without a round trip.
    pub cache_decisions: u64,
    /// Acquires the declared fallbacks answered because the daemon could not be asked.
    pub fallback_decisions: u64,
    /// Reports of daemon permits that could not reach the daemon (logged, not retried).
    pub reports_lost: u64,
    /// Reports of permits the ALLOW fallback gave out, which nothing records.
    pub reports_dropped: u64,
    /// How many times the link to the daemon went down.
    pub link_downs: u64,
    /// Whether the link is down now (fallbacks answer without trying the network).
    pub link_down: bool,
    /// Outcomes of locally admitted calls (cached mode) the daemon recorded.
    pub batched_accepted: u64,
    /// Outcomes of locally admitted calls the daemon refused as stale: their
    /// generation had ended (see the cached mode's window in `Protector` docs).
    pub batched_stale: u64,
    /// Outcomes of locally admitted calls that could not reach the daemon, and
    /// successes still waiting for their batch when their protector was deleted or
    /// created again (its next life would take them for its own), and slow successes
    /// the full queue of slow calls dropped.
    pub batched_lost: u64,
}

/// A connection to `circuitd`, shared by every [`Protector`] made from it.
///
/// Cloning is cheap: the clones share one channel, one link state and one set of
/// counters.
#[derive(Debug, Clone)]
pub struct Client {
    connection: Arc<Connection>,
}

/// Options of a [`Client`]; see [`Client::builder`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    uris: Vec<String>,
    config: Config,
    backoff: Reconnect,
    /// The credential; a token that cannot be sent fails `build`.
    bearer: Result<Bearer, InvalidToken>,
    /// TLS for `https://` addresses: the CA to trust and, for mTLS, the identity.
    tls: Option<ClientTlsConfig>,
}

impl ClientBuilder {
    /// How long one Acquire may take before the protector's fallback decides
    /// (default 50 ms). Re-creating a protector the daemon lost counts against it too.
    pub fn acquire_deadline(mut self, deadline: Duration) -> Self {
        self.config.acquire_deadline = deadline;
        self
    }

    /// How long a Report, an EnsureProtector or opening a Watch may take (default 1 s).
    /// Also the connection timeout.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// The backoff after a failure to reach the daemon (with several addresses: after
    /// every one failed in turn): capped exponential with full jitter, from `initial`
    /// (default 50 ms) up to `cap` (default 5 s).
    pub fn reconnect_backoff(mut self, initial: Duration, cap: Duration) -> Self {
        self.backoff = Reconnect::new(initial, cap);
        self
    }

    /// How long a Watch stream may stay silent before it is taken for dead and
    /// reopened (default 30 s). The daemon is asked for PROGRESS messages at a third of
    /// it (at least 100 ms), so a live stream is never silent that long.
    pub fn watch_staleness(mut self, staleness: Duration) -> Self {
        self.config.watch_staleness = staleness.max(Duration::from_millis(300));
        self
    }

    /// How Acquire and Report reach the daemon (default [`Transport::Session`]).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.config.transport = transport;
        self
    }

    /// The bearer token of a daemon started with `--tokens`, sent as `authorization:
    /// Bearer <token>` on every call (Acquire, Report, the Session and Watch streams,
    /// EnsureProtector, ReportBatch). Protectors need a token of the `data` role. Default:
    /// none.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.bearer = Bearer::new(Some(&token.into()));
        self
    }

    /// Trust the CA certificates in `pem` for the daemon's certificate (TLS; the
    /// addresses must then be `https://`, and name the host the certificate is for).
    /// May be called again to trust more than one CA.
    pub fn tls_ca(mut self, pem: impl AsRef<[u8]>) -> Self {
        let tls = self.tls.take().unwrap_or_default();
        self.tls = Some(tls.ca_certificate(Certificate::from_pem(pem)));
        self
    }

    /// Present this certificate chain and private key (PEM) to the daemon: mTLS, for a
    /// daemon started with `--tls-client-ca`.
    pub fn tls_identity(mut self, cert_pem: impl AsRef<[u8]>, key_pem: impl AsRef<[u8]>) -> Self {
        let tls = self.tls.take().unwrap_or_default();
        self.tls = Some(tls.identity(Identity::from_pem(cert_pem, key_pem)));
        self
    }

    /// The client. Fails only when no address was given, one is not a valid `http://`
    /// URI (`https://` with TLS), or the token cannot travel in a header; the connections
    /// themselves are made on first use. Needs a Tokio runtime.
    pub async fn build(self) -> Result<Client, Error> {
        let bearer = self.bearer?;
        if self.uris.is_empty() {
            return Err(Error::InvalidUri {
                uri: String::new(),
                reason: "no address given".to_owned(),
            });
        }
        let channels = self
            .uris
            .into_iter()
            .map(|uri| {
                let channel = endpoint(&uri, self.tls.as_ref())?
                    .connect_timeout(self.config.request_timeout)
                    .tcp_nodelay(true)
                    .connect_lazy();
                Ok((uri, channel))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Client {
            connection: Arc::new(Connection::new(channels, self.config, self.backoff, bearer)),
        })
    }
}

/// The endpoint of one address, which must be an `http://` URI with a host, or an
/// `https://` one when `tls` is set.
fn endpoint(uri: &str, tls: Option<&ClientTlsConfig>) -> Result<Endpoint, Error> {
    let invalid = |reason: String| Error::InvalidUri {
        uri: uri.to_owned(),
        reason,
    };
    let endpoint = Endpoint::from_shared(uri.to_owned()).map_err(|e| invalid(e.to_string()))?;
    match endpoint.uri().scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(invalid(format!("unsupported scheme {other:?}: use http://"))),
        None => return Err(invalid("missing scheme: use http://host:port".to_owned())),
    }
    if endpoint.uri().host().is_none() {
        return Err(invalid("missing host".to_owned()));
    }
    match (tls, endpoint.uri().scheme_str()) {
        (Some(tls), Some("https")) => endpoint
            .tls_config(tls.clone())
            .map_err(|e| invalid(format!("TLS: {e}"))),
        (Some(_), _) => Err(invalid("TLS is configured (tls_ca): use https://".to_owned())),
        (None, Some("https")) => Err(invalid(
            "https:// needs the CA to trust: call ClientBuilder::tls_ca".to_owned(),
        )),
        (None, _) => Ok(endpoint),
    }
}

impl Client {
    /// A client of the daemon at `uri` (e.g. `http://127.0.0.1:50051`) with every
    /// default. A daemon that is down does not fail this; an invalid URI does.
    pub async fn connect(uri: impl Into<String>) -> Result<Client, Error> {
        Client::builder(uri).build().await
    }

    /// A client of the daemon's replicas at `uris` (e.g. the three replicas of a
    /// cluster), with every default; see [`Client::builder_many`].
    pub async fn connect_many<I>(uris: I) -> Result<Client, Error>
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        Client::builder_many(uris).build().await
    }

    /// A builder for a client with options.
    pub fn builder(uri: impl Into<String>) -> ClientBuilder {
        Client::builder_many([uri])
    }

    /// A builder for a client of several replicas of the daemon, tried in the order
    /// given: the client asks one replica at a time and, when it cannot be reached
    /// (connection refused or reset, UNAVAILABLE, no answer in time), moves at once to
    /// the next, within the same call's deadline. Only after every replica failed in
    /// turn does it back off (see [`ClientBuilder::reconnect_backoff`]) and the
    /// fallbacks decide. Watches resume on the next replica from the last revision they
    /// saw. Each address is validated as [`Client::builder`]'s is; none is an error.
    pub fn builder_many<I>(uris: I) -> ClientBuilder
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        ClientBuilder {
            uris: uris.into_iter().map(Into::into).collect(),
            config: Config {
                acquire_deadline: DEFAULT_ACQUIRE_DEADLINE,
                request_timeout: DEFAULT_REQUEST_TIMEOUT,
                watch_staleness: DEFAULT_WATCH_STALENESS,
                transport: Transport::default(),
            },
            backoff: Reconnect::new(DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_CAP),
            bearer: Ok(Bearer::default()),
            tls: None,
        }
    }

    /// The address of the replica the client asks now (with one address, that one).
    pub fn uri(&self) -> &str {
        &self.connection.replica().uri
    }

    /// Every address the client was given, in order.
    pub fn uris(&self) -> impl Iterator<Item = &str> {
        self.connection.uris()
    }

    /// The protector `name`, created with `policy` if the daemon does not have it yet
    /// (an existing protector keeps its own policy; a mismatch is logged at warn level).
    /// Fails when the daemon cannot be asked; without a declared fallback, calls are
    /// rejected while the daemon cannot be reached later on. To create a protector
    /// while the daemon is down, declare a fallback with [`Client::protector_builder`].
    pub async fn protector(
        &self,
        name: impl Into<String>,
        policy: ProtectorPolicy,
    ) -> Result<Protector, Error> {
        self.protector_builder(name).policy(policy).build().await
    }

    /// A builder for the protector `name`, to declare its policy and fallback.
    pub fn protector_builder(&self, name: impl Into<String>) -> ProtectorBuilder {
        ProtectorBuilder::new(Arc::clone(&self.connection), name.into())
    }

    /// The client-wide counters.
    pub fn stats(&self) -> ClientStats {
        let c = &self.connection;
        let s = &c.stats;
        ClientStats {
            daemon_decisions: Stats::get(&s.daemon_decisions),
            cache_decisions: s.cache_decisions.get(),
            fallback_decisions: Stats::get(&s.fallback_decisions),
            reports_lost: Stats::get(&s.reports_lost),
            reports_dropped: Stats::get(&s.reports_dropped),
            link_downs: c.link.downs(),
            link_down: c.link.is_down(),
            batched_accepted: Stats::get(&s.batched_accepted),
            batched_stale: Stats::get(&s.batched_stale),
            batched_lost: Stats::get(&s.batched_lost),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_needs_https_and_https_needs_tls() {
        let tls = ClientTlsConfig::new();
        let refused = endpoint("http://127.0.0.1:1", Some(&tls)).expect_err("http with TLS");
        assert!(refused.to_string().contains("use https://"), "{refused}");
        let refused = endpoint("https://127.0.0.1:1", None).expect_err("https without a CA");
        assert!(refused.to_string().contains("tls_ca"), "{refused}");
        endpoint("https://127.0.0.1:1", Some(&tls)).expect("https with TLS");
        endpoint("http://127.0.0.1:1", None).expect("plaintext");
    }
}
