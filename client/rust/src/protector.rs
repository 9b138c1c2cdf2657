//! [`Protector`]: acquire, run and report one call against a named protector.
//!
//! Design note. The daemon decides every call it can be asked about in time: each
//! Acquire runs under the client's deadline (default 50 ms). When the daemon is down,
//! slow, or the link is in its backoff period, the protector's [`Fallback`] decides at
//! once and the decision is counted and logged. A protector the daemon does not know
//! (it was created while the daemon was down, or the daemon restarted without its
//! state) is ensured again, with this handle's policy, within the same deadline.
//!
//! A [`CallPermit`] always ends in exactly one report: resolved explicitly, or IGNORED
//! from its `Drop` when it is dropped unresolved (a cancelled call future included), so
//! a trial permit is never held until it expires.
//!
//! Cached mode ([`ProtectorBuilder::cached`]): while the protector's own Watch stream is
//! synced and fresh and the protector is CLOSED with no override, decisions are taken
//! in this process and successes go to the daemon in batches; OPEN rejects here until
//! `open_until`; everything else is asked of the daemon as above. What this costs —
//! calls admitted between another client's trip and its arrival here — is spelled out
//! in the `cached` module's note, reproduced in the builder's docs.

mod builder;
mod fallback;
mod permit;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use resilient_circuit_api::convert;
use resilient_circuit_api::v1::protector_service_client::ProtectorServiceClient;
use resilient_circuit_api::v1::{self, Decision};
use resilient_circuit_breaker::{DecisionReason, Outcome, Policy as ProtectorPolicy, Status};
use tokio::task::AbortHandle;
use tonic::transport::Channel;

pub use crate::cached::DEFAULT_CACHED_STALENESS;
use crate::cached::{Cache, Local, Reporter};

pub use self::builder::ProtectorBuilder;
pub use self::fallback::Fallback;
use self::fallback::LocalMachine;
pub use self::permit::{CallPermit, Resolved};
use crate::client::{Shared, Stats};
use crate::error::{CallError, Rejection};
use crate::link::Attempt;
pub use crate::watcher::StatusChange;
use crate::watcher::{self, Notifier};

/// A handle on one named protector of the daemon. Cheap to clone; the clones share
/// everything, the status-change watch included.
#[derive(Clone)]
pub struct Protector {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Protector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protector")
            .field("name", &self.inner.name)
            .field("fallback", &self.inner.fallback)
            .field("ensured", &self.inner.ensured.load(Ordering::Relaxed))
            .field("fallback_decisions", &self.fallback_decisions())
            .finish_non_exhaustive()
    }
}

/// The state the handles of one protector share.
#[derive(Debug)]
pub(crate) struct Inner {
    name: String,
    policy: ProtectorPolicy,
    shared: Arc<Shared>,
    fallback: Fallback,
    declared: bool,
    local: Option<LocalMachine>,
    /// Whether the daemon is known to have the protector.
    ensured: AtomicBool,
    fallback_decisions: AtomicU64,
    notifier: Arc<Notifier>,
    watch: Mutex<Option<AbortHandle>>,
    /// Cached mode: the local model and the task flushing its successes.
    cache: Option<Arc<Cache>>,
    flusher: Mutex<Option<AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let watch = self.watch.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(task) = watch.take() {
            task.abort();
        }
        let flusher = self.flusher.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(task) = flusher.take() {
            task.abort();
            // The successes counted since the last flush still go out.
            if let (Ok(runtime), Some(reporter)) = (tokio::runtime::Handle::try_current(), self.reporter()) {
                runtime.spawn(async move { reporter.send(None).await });
            }
        }
    }
}

fn status(wire: i32) -> Option<Status> {
    v1::Status::try_from(wire)
        .ok()
        .and_then(|s| Status::try_from(s).ok())
}

fn decision_reason(wire: i32) -> Option<DecisionReason> {
    Some(match v1::DecisionReason::try_from(wire).ok()? {
        v1::DecisionReason::Unspecified => return None,
        v1::DecisionReason::Closed => DecisionReason::Closed,
        v1::DecisionReason::Trial => DecisionReason::Trial,
        v1::DecisionReason::Disabled => DecisionReason::Disabled,
        v1::DecisionReason::Open => DecisionReason::Open,
        v1::DecisionReason::TrialsExhausted => DecisionReason::TrialsExhausted,
        v1::DecisionReason::ForcedOpen => DecisionReason::ForcedOpen,
    })
}

/// Starts the protector's Watch task unless it runs already.
fn start_watch(inner: &Arc<Inner>) {
    let mut watch = inner.watch.lock().unwrap_or_else(|e| e.into_inner());
    if watch.is_some() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            let task = runtime.spawn(watcher::run(
                Arc::clone(&inner.shared),
                Arc::clone(&inner.notifier),
                inner.cache.clone(),
            ));
            *watch = Some(task.abort_handle());
        }
        Err(_) => tracing::warn!(
            name = %inner.name,
            "no Tokio runtime: status changes are announced only for this client's own reports"
        ),
    }
}

impl Inner {
    fn rpc(&self) -> ProtectorServiceClient<Channel> {
        ProtectorServiceClient::new(self.shared.channel.clone())
    }

    /// What a cached protector's reports need; `None` when not cached.
    pub(crate) fn reporter(&self) -> Option<Reporter> {
        Some(Reporter {
            name: self.name.clone(),
            shared: Arc::clone(&self.shared),
            cache: Arc::clone(self.cache.as_ref()?),
            notifier: Arc::clone(&self.notifier),
        })
    }

    /// A transition this client's own report caused.
    pub(crate) fn learned(&self, t: &v1::Transition, revision: u64) {
        if let Some(cache) = &self.cache {
            cache.transition(t);
        }
        if let Some(change) = watcher::change(&self.name, t) {
            self.notifier.transition(change, revision);
        }
    }

    async fn ensure(&self, rpc: &mut ProtectorServiceClient<Channel>) -> Result<(), tonic::Status> {
        let response = rpc
            .ensure_protector(v1::EnsureProtectorRequest {
                name: self.name.clone(),
                policy: Some((&self.policy).into()),
            })
            .await?
            .into_inner();
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
    async fn ask(&self) -> Result<v1::AcquireResponse, tonic::Status> {
        let mut rpc = self.rpc();
        if !self.ensured.load(Ordering::Acquire) {
            self.ensure(&mut rpc).await?;
        }
        match self.shared.acquire(&self.name).await {
            Err(status) if status.code() == tonic::Code::NotFound => {
                self.ensured.store(false, Ordering::Release);
                tracing::info!(name = %self.name, "the daemon does not know the protector; ensuring it again");
                self.ensure(&mut rpc).await?;
                self.shared.acquire(&self.name).await
            }
            other => other,
        }
    }

    /// The daemon's answer as a permit or a rejection; `Err` when it makes no sense.
    fn answer(self: &Arc<Self>, a: v1::AcquireResponse) -> Result<Result<CallPermit, Rejection>, String> {
        // Announce the transition this acquire caused (OPEN to HALF_OPEN) before the
        // trial's own report can announce the next one.
        if let Some(t) = &a.transition {
            self.learned(t, a.revision);
        }
        match Decision::try_from(a.decision) {
            Ok(Decision::Admitted) => {
                let permit = a.permit.ok_or("an admission without a permit")?;
                Ok(Ok(CallPermit::daemon(Arc::clone(self), permit)))
            }
            Ok(Decision::Rejected) => Ok(Err(Rejection {
                name: self.name.clone(),
                status: status(a.status).ok_or("a rejection without a status")?,
                reason: decision_reason(a.reason).ok_or("a rejection without a reason")?,
                retry_after: a.retry_after.as_ref().and_then(|d| convert::std_duration(d).ok()),
                fallback: false,
            })),
            _ => Err(format!("decision {} is not ADMITTED or REJECTED", a.decision)),
        }
    }

    /// A cached protector's local decision, if it can take one.
    #[inline]
    fn decide_cached(self: &Arc<Self>) -> Option<Result<CallPermit, Rejection>> {
        match self.cache.as_ref()?.decide() {
            Local::Admit(generation) => Some(Ok(CallPermit::cached(Arc::clone(self), generation))),
            Local::Reject(retry_after) => Some(Err(Rejection {
                name: self.name.clone(),
                status: Status::Open,
                reason: DecisionReason::Open,
                retry_after: Some(retry_after),
                fallback: false,
            })),
            Local::Remote => None,
        }
    }

    async fn acquire(self: &Arc<Self>) -> Result<CallPermit, Rejection> {
        let link = &self.shared.link;
        let why = match link.attempt() {
            Attempt::Skip => "the link to the daemon is down".to_owned(),
            Attempt::Ask | Attempt::Probe => {
                match link.ask(self.shared.config.acquire_deadline, self.ask()).await {
                    Ok(response) => match self.answer(response) {
                        Ok(decision) => return decision,
                        Err(why) => why,
                    },
                    Err(why) => why,
                }
            }
        };
        self.decide_locally(&why)
    }

    fn decide_locally(self: &Arc<Self>, why: &str) -> Result<CallPermit, Rejection> {
        self.fallback_decisions.fetch_add(1, Ordering::Relaxed);
        Stats::bump(&self.shared.stats.fallback_decisions);
        let decision = match self.fallback {
            Fallback::Allow => Ok(CallPermit::allowed(Arc::clone(self))),
            Fallback::Deny => Err(Rejection {
                name: self.name.clone(),
                status: Status::Open,
                reason: DecisionReason::Open,
                retry_after: None,
                fallback: true,
            }),
            Fallback::Local => match self.local.as_ref().map(|l| l.acquire(&self.name)) {
                Some(Ok((permit, trial))) => Ok(CallPermit::local(Arc::clone(self), permit, trial)),
                Some(Err(rejection)) => Err(rejection),
                None => unreachable!("a LOCAL fallback always has its machine"),
            },
        };
        let admitted = decision.is_ok();
        if self.shared.link.first_fallback() {
            tracing::warn!(name = %self.name, fallback = ?self.fallback, admitted, why, "the daemon could not be asked; the fallback decided");
        } else {
            tracing::debug!(name = %self.name, fallback = ?self.fallback, admitted, why, "fallback decision");
        }
        decision
    }
}

impl Protector {
    /// The handle; a cached protector's Watch and flusher start now, after the ensure (a
    /// watch opened before the protector exists would see it created and restart once
    /// for nothing).
    fn started(inner: Arc<Inner>) -> Protector {
        if let Some(reporter) = inner.reporter() {
            start_watch(&inner);
            let task = tokio::spawn(reporter.flush_forever());
            *inner.flusher.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
        }
        Protector { inner }
    }

    /// The protector's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The fallback that decides when the daemon cannot be asked.
    pub fn fallback(&self) -> Fallback {
        self.inner.fallback
    }

    /// How many acquires of this handle (and its clones) the fallback decided.
    pub fn fallback_decisions(&self) -> u64 {
        self.inner.fallback_decisions.load(Ordering::Relaxed)
    }

    /// May a call go ahead? The first step of the two-step API: run the call, then
    /// resolve the permit with its outcome. Answers within the client's acquire
    /// deadline; a rejection carries the status and, when known, when to ask again.
    pub async fn acquire(&self) -> Result<CallPermit, Rejection> {
        if let Some(local) = self.inner.decide_cached() {
            return local;
        }
        self.inner.acquire().await
    }

    /// Whether this protector is in cached mode (see [`ProtectorBuilder::cached`]).
    pub fn is_cached(&self) -> bool {
        self.inner.cache.is_some()
    }

    /// Acquires, runs `f` and reports: `Ok` as SUCCESS, every `Err` as FAILURE.
    pub async fn call<T, E, F, Fut>(&self, f: F) -> Result<T, CallError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run(f, |_| Outcome::Failure).await
    }

    /// Like [`call`](Self::call), with `classify` telling how each error counts
    /// (FAILURE, SUCCESS, or IGNORED: recorded nowhere).
    pub async fn call_classified<T, E, F, Fut, C>(&self, f: F, classify: C) -> Result<T, CallError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Fn(&E) -> Outcome,
    {
        self.run(f, classify).await
    }

    /// Like [`call`](Self::call), with `should_handle` choosing the errors that count
    /// as FAILURE. As in the library this mirrors, an error it does not handle is
    /// reported as SUCCESS (the call reached the service, which answered).
    pub async fn call_handled<T, E, F, Fut, H>(&self, f: F, should_handle: H) -> Result<T, CallError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        H: Fn(&E) -> bool,
    {
        self.run(f, |e| {
            if should_handle(e) {
                Outcome::Failure
            } else {
                Outcome::Success
            }
        })
        .await
    }

    async fn run<T, E, F, Fut, C>(&self, f: F, classify: C) -> Result<T, CallError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: FnOnce(&E) -> Outcome,
    {
        // Held across the call: if this future is dropped midway, the permit's Drop
        // reports IGNORED and frees its trial slot.
        let permit = self.acquire().await.map_err(CallError::Rejected)?;
        let result = f().await;
        let outcome = match &result {
            Ok(_) => Outcome::Success,
            Err(e) => classify(e),
        };
        permit.resolve(outcome).await;
        result.map_err(CallError::Failed)
    }

    /// Calls `callback` on every status transition of this protector, each exactly
    /// once: at once for transitions this client's own reports cause, and from a Watch
    /// stream for the others. The stream is read by one background task per protector
    /// handle family, started by the first callback and stopped when the last handle is
    /// dropped; it resumes after a disconnect. Callbacks run on that task or on the
    /// reporting one: keep them short and non-blocking. Transitions of a LOCAL
    /// fallback's in-process machine are not announced here. A callback that holds a
    /// clone of its own protector keeps the protector, and its watch, alive for good.
    pub fn on_status_change(&self, callback: impl Fn(&StatusChange) + Send + Sync + 'static) {
        self.inner.notifier.subscribe(Arc::new(callback));
        start_watch(&self.inner);
    }
}
