//! [`ProtectorBuilder`]: a protector's policy, fallback and mode.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use resilient_circuit_breaker::Policy as ProtectorPolicy;

use super::fallback::{Fallback, LocalMachine};
use super::handle::Protector;
use super::state::Inner;
use crate::cached::{Cache, DEFAULT_CACHED_STALENESS};
use crate::error::Error;
use crate::link::{Attempt, unreachable};
use crate::transport::{Connection, Unanswered};
use crate::watcher::Notifier;

/// Options of a [`Protector`]; see [`Client::protector_builder`](crate::Client::protector_builder).
#[derive(Debug)]
pub struct ProtectorBuilder {
    connection: Arc<Connection>,
    name: String,
    policy: ProtectorPolicy,
    fallback: Option<Fallback>,
    cached: Option<Duration>,
}

impl ProtectorBuilder {
    pub(crate) fn new(connection: Arc<Connection>, name: String) -> ProtectorBuilder {
        ProtectorBuilder {
            connection,
            name,
            policy: ProtectorPolicy::default(),
            fallback: None,
            cached: None,
        }
    }

    /// Cached mode: decide locally while this protector's Watch stream is synced and
    /// fresh and the protector is CLOSED with no override; successes are sent in
    /// batches, a failure at once (its answer updates the local state before the call
    /// returns); OPEN rejects locally until `open_until`; HALF_OPEN trials, overrides
    /// and a stale stream go to the daemon, then to the fallback. The staleness bound is
    /// [`DEFAULT_CACHED_STALENESS`] (2 s, with PROGRESS asked every 500 ms) unless set
    /// with [`cached_staleness`](Self::cached_staleness).
    ///
    /// The window: calls this process admits between another client's trip and the
    /// Watch event announcing it run against an OPEN protector; their outcomes carry the
    /// old generation and are counted stale by the daemon (and in
    /// [`ClientStats::batched_stale`](crate::ClientStats::batched_stale)). The window
    /// lasts as long as the Watch delivery (BENCHMARKS.md has the figures), at worst the
    /// staleness bound.
    ///
    /// Slow calls: while the daemon's policy has a slow-call rule, a local permit
    /// measures its call, and a success at or above the rule's duration is sent with
    /// its duration in the next batch (at most 10,000 wait; past that they are counted
    /// in [`ClientStats::batched_lost`](crate::ClientStats::batched_lost)). Without the
    /// rule no clock is read on the local path.
    pub fn cached(mut self, cached: bool) -> Self {
        self.cached = cached.then(|| self.cached.unwrap_or(DEFAULT_CACHED_STALENESS));
        self
    }

    /// Cached mode with this staleness bound (at least 300 ms): local decisions stop
    /// when the Watch stream has been silent this long. Implies [`cached`](Self::cached).
    pub fn cached_staleness(mut self, staleness: Duration) -> Self {
        self.cached = Some(staleness.max(Duration::from_millis(300)));
        self
    }

    /// The policy to create the protector with if the daemon does not have it (default:
    /// every default of the daemon).
    pub fn policy(mut self, policy: ProtectorPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Who decides when the daemon cannot be asked. Declaring one also lets
    /// [`build`](Self::build) succeed while the daemon is down: the protector is then
    /// created on the daemon once it is back.
    pub fn fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = Some(fallback);
        self
    }

    /// Ensures the protector on the daemon and returns its handle. Fails when the
    /// daemon refuses (an invalid name, a limit), and when it cannot be reached and no
    /// fallback was declared.
    pub async fn build(self) -> Result<Protector, Error> {
        let fallback = self.fallback.unwrap_or_default();
        let inner = Arc::new(Inner {
            local: (fallback == Fallback::Local).then(|| LocalMachine::new(self.policy)),
            notifier: Arc::new(Notifier::new(self.name.clone())),
            name: self.name,
            policy: self.policy,
            connection: self.connection,
            fallback,
            declared: self.fallback.is_some(),
            ensured: AtomicBool::new(false),
            fallback_decisions: AtomicU64::new(0),
            daemon_decisions: AtomicU64::new(0),
            watch: Mutex::new(None),
            cache: self.cached.map(|staleness| Arc::new(Cache::new(staleness))),
            flusher: Mutex::new(None),
        });

        let link = &inner.connection.link;
        if inner.declared && link.attempt() == Attempt::Skip {
            return Ok(Protector::started(inner));
        }
        let connection = &inner.connection;
        let timeout = connection.config.request_timeout;
        // Without a declared fallback, a daemon that cannot be asked fails the build; with
        // one, the protector starts and the fallback decides until the daemon answers.
        let unanswered = match connection.ask(timeout, |replica| inner.ensure(replica)).await {
            Ok(()) => return Ok(Protector::started(inner)),
            Err(Unanswered::Status(status)) if !unreachable(&status) => return Err(Error::Status(status)),
            Err(unanswered) => unanswered,
        };
        if inner.declared {
            return Ok(Protector::started(inner));
        }
        Err(match unanswered {
            Unanswered::Status(status) => Error::Status(status),
            Unanswered::Timeout(timeout) => Error::Timeout(timeout),
        })
    }
}

impl Protector {
    /// A cached-mode handle on the same protector, with the same policy and fallback
    /// (see [`ProtectorBuilder::cached`]): decisions are local while the daemon says
    /// CLOSED. This handle itself is unchanged; a handle already cached is returned as
    /// it is.
    pub async fn cached(&self) -> Result<Protector, Error> {
        if self.is_cached() {
            return Ok(self.clone());
        }
        let inner = &self.inner;
        let mut builder = ProtectorBuilder::new(Arc::clone(&inner.connection), inner.name.clone())
            .policy(inner.policy)
            .cached(true);
        if inner.declared {
            builder = builder.fallback(inner.fallback);
        }
        builder.build().await
    }
}
