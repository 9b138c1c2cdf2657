//! What the handles of one protector share: its settings, the daemon's protector kept
//! ensured, the notifier and the background tasks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use resilient_circuit_api::{convert, v1};
use resilient_circuit_breaker::Policy as ProtectorPolicy;
use tokio::task::AbortHandle;

use super::fallback::{Fallback, LocalMachine};
use crate::batches::Reporter;
use crate::cached::Cache;
use crate::stripe::{self, Padded};
use crate::sync::lock;
use crate::transport::{Connection, Replica};
use crate::watcher::{self, Follower, Notifier, StatusChange};

/// The state the handles of one protector share.
#[derive(Debug)]
pub(super) struct Inner {
    pub(super) name: String,
    pub(super) policy: ProtectorPolicy,
    pub(super) connection: Arc<Connection>,
    pub(super) fallback: Fallback,
    /// Whether the fallback was declared, rather than the default.
    pub(super) declared: bool,
    pub(super) local: Option<LocalMachine>,
    /// Whether the daemon is known to have the protector.
    pub(super) ensured: AtomicBool,
    pub(super) fallback_decisions: AtomicU64,
    pub(super) daemon_decisions: AtomicU64,
    pub(super) notifier: Arc<Notifier>,
    pub(super) watch: Mutex<Option<AbortHandle>>,
    /// Cached mode: the local model and the task flushing its successes.
    pub(super) cache: Option<Arc<Cache>>,
    pub(super) flusher: Mutex<Option<AbortHandle>>,
}

/// What a permit holds its protector by. A locally admitted permit takes one of the
/// protector's striped references (`Stripes`), so the reference counts that permits of
/// different threads bump live on different cache lines; any other permit (which waited
/// for the daemon anyway) clones the protector's own.
#[derive(Debug, Clone)]
pub(super) enum Hold {
    Whole(Arc<Inner>),
    Stripe(Arc<Padded<Arc<Inner>>>),
}

impl std::ops::Deref for Hold {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        match self {
            Hold::Whole(inner) => inner,
            Hold::Stripe(stripe) => &stripe.0,
        }
    }
}

/// A cached protector's references for its local permits, one per stripe, each in an
/// allocation (and on cache lines) of its own. Held by the handles, not by `Inner`,
/// so they form no cycle: once the handles and permits are gone, so is `Inner`.
pub(super) type Stripes = Arc<[Arc<Padded<Arc<Inner>>>]>;

/// The stripes of a cached protector; `None` when not cached.
pub(super) fn stripes(inner: &Arc<Inner>) -> Option<Stripes> {
    inner.cache.as_ref()?;
    Some(
        (0..stripe::STRIPES)
            .map(|_| Arc::new(Padded(Arc::clone(inner))))
            .collect(),
    )
}

impl Drop for Inner {
    fn drop(&mut self) {
        let (watch, flusher) = (lock(&self.watch).take(), lock(&self.flusher).take());
        if let Some(task) = watch {
            task.abort();
        }
        if let Some(task) = flusher {
            task.abort();
            // The successes counted since the last flush still go out.
            if let (Ok(runtime), Some(reporter)) = (tokio::runtime::Handle::try_current(), self.reporter()) {
                runtime.spawn(async move { reporter.send(None).await });
            }
        }
    }
}

impl Inner {
    /// Starts the protector's Watch task unless it runs already.
    pub(super) fn start_watch(&self) {
        let mut watch = lock(&self.watch);
        if watch.is_some() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let task = runtime.spawn(watcher::run(
                    Arc::clone(&self.connection),
                    Arc::clone(&self.notifier),
                    self.cache.clone().map(|cache| cache as Arc<dyn Follower>),
                ));
                *watch = Some(task.abort_handle());
            }
            Err(_) => tracing::warn!(
                name = %self.name,
                "no Tokio runtime: status changes are announced only for this client's own reports"
            ),
        }
    }

    /// What a cached protector's reports need; `None` when not cached.
    pub(super) fn reporter(&self) -> Option<Reporter> {
        Some(Reporter {
            name: self.name.clone(),
            connection: Arc::clone(&self.connection),
            cache: Arc::clone(self.cache.as_ref()?),
            notifier: Arc::clone(&self.notifier),
        })
    }

    /// A transition this client's own Acquire or Report caused.
    pub(super) fn learned(&self, t: &v1::Transition, revision: u64) {
        let Ok(t) = convert::transition(t) else { return };
        if let Some(cache) = &self.cache {
            cache.transition(&t);
        }
        self.notifier
            .transition(StatusChange::announced(&self.name, &t), revision);
    }

    /// Makes sure the daemon has the protector, and takes in what it answers.
    pub(super) async fn ensure(&self, replica: &Replica) -> Result<(), tonic::Status> {
        // A cached protector's batch being sent lands first (see `cached`: lives).
        let _sending = match &self.cache {
            Some(cache) => Some(cache.sending.lock().await),
            None => None,
        };
        let response = replica.ensure_protector(&self.name, &self.policy).await?;
        let daemon_policy = response
            .protector
            .as_ref()
            .and_then(|p| p.policy.as_ref())
            .and_then(|p| convert::policy(p).ok());
        if !response.policy_matches {
            tracing::warn!(
                name = %self.name,
                asked = ?self.policy,
                daemon = ?daemon_policy,
                "the daemon's protector has another policy than the one asked for; the daemon's applies"
            );
            if let (Some(local), Some(policy)) = (&self.local, daemon_policy) {
                local.adopt(policy);
            }
        }
        if response.created && self.notifier.knows_status() {
            tracing::info!(name = %self.name, "the protector was created again (deleted, or the daemon restarted)");
            self.notifier.restart_watch();
        }
        if let Some(p) = &response.protector {
            self.notifier.snapshot(p, p.mod_revision, response.created);
            if let Some(cache) = &self.cache {
                cache.snapshot(p, response.created);
            }
        }
        self.ensured.store(true, Ordering::Release);
        Ok(())
    }

    /// Asks the daemon, ensuring the protector first when the daemon does not know it.
    pub(super) async fn ask(&self, replica: &Replica) -> Result<v1::AcquireResponse, tonic::Status> {
        // The ensure is rare and its unary call's future is ten times the size of the
        // Acquire's: boxed, so that every Acquire's future does not carry (and move) it.
        if !self.ensured.load(Ordering::Acquire) {
            Box::pin(self.ensure(replica)).await?;
        }
        match replica.acquire(&self.name).await {
            Err(status) if status.code() == tonic::Code::NotFound => {
                self.ensured.store(false, Ordering::Release);
                tracing::info!(name = %self.name, "the daemon does not know the protector; ensuring it again");
                Box::pin(self.ensure(replica)).await?;
                replica.acquire(&self.name).await
            }
            other => other,
        }
    }
}
