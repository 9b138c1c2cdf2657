//! [`Protector`]: the handle, and how each Acquire is decided: by the cached model, by
//! the daemon, or by the fallback.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use resilient_circuit_api::{convert, v1};
use resilient_circuit_breaker::{Decision, DecisionReason, Outcome, Status};

use super::fallback::Fallback;
use super::permit::CallPermit;
use super::state::{Hold, Inner, Stripes, stripes};
use crate::cached::Local;
use crate::error::{CallError, Rejection};
use crate::link::Attempt;
use crate::stripe;
use crate::sync::lock;
use crate::transport::Stats;
use crate::watcher::StatusChange;

/// How many acquires each source decided (see [`Protector::decisions`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decisions {
    /// Answered by the daemon.
    pub daemon: u64,
    /// Answered by a cached protector's local model.
    pub cache: u64,
    /// Answered by the fallback, because the daemon could not be asked.
    pub fallback: u64,
}

/// A handle on one named protector of the daemon. Cheap to clone; the clones share
/// everything, the status-change watch included.
#[derive(Clone)]
pub struct Protector {
    pub(super) inner: Arc<Inner>,
    /// A cached protector's references for its local permits (see `Hold`).
    stripes: Option<Stripes>,
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

impl Protector {
    /// The handle; a cached protector's Watch and flusher start now, after the ensure (a
    /// watch opened before the protector exists would see it created and restart once
    /// for nothing).
    pub(super) fn started(inner: Arc<Inner>) -> Protector {
        if let Some(reporter) = inner.reporter() {
            inner.start_watch();
            let task = tokio::spawn(reporter.flush_forever());
            *lock(&inner.flusher) = Some(task.abort_handle());
        }
        let stripes = stripes(&inner);
        Protector { inner, stripes }
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

    /// How many acquires of this handle (and its clones) were decided by each source:
    /// the daemon, the cached model, the fallback.
    pub fn decisions(&self) -> Decisions {
        let inner = &self.inner;
        Decisions {
            daemon: inner.daemon_decisions.load(Ordering::Relaxed),
            cache: inner.cache.as_ref().map_or(0, |c| c.decisions().get()),
            fallback: inner.fallback_decisions.load(Ordering::Relaxed),
        }
    }

    /// May a call go ahead? The first step of the two-step API: run the call, then
    /// resolve the permit with its outcome. Answers within the client's acquire
    /// deadline; a rejection carries the status and, when known, when to ask again.
    pub fn acquire(&self) -> Acquire<'_> {
        Acquire {
            state: Asking::Start(self),
        }
    }

    /// Asks the daemon (or, when it cannot be asked, the fallback).
    async fn ask_daemon(&self) -> Result<CallPermit, Rejection> {
        let link = &self.inner.connection.link;
        let why = match link.attempt() {
            Attempt::Skip => "the link to the daemon is down".to_owned(),
            Attempt::Ask | Attempt::Probe => {
                let connection = &self.inner.connection;
                let deadline = connection.config.acquire_deadline;
                match connection.ask(deadline, |replica| self.inner.ask(replica)).await {
                    Ok(response) => match self.answer(response) {
                        Ok(decision) => {
                            self.inner.daemon_decisions.fetch_add(1, Ordering::Relaxed);
                            Stats::bump(&self.inner.connection.stats.daemon_decisions);
                            return decision;
                        }
                        Err(why) => why,
                    },
                    Err(why) => why.to_string(),
                }
            }
        };
        self.decide_locally(&why)
    }

    /// Whether this protector is in cached mode (see [`ProtectorBuilder::cached`]).
    ///
    /// [`ProtectorBuilder::cached`]: crate::ProtectorBuilder::cached
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
        self.guard(
            move || async move { f().await.map_err(CallError::Failed) },
            classify,
        )
        .await
    }

    /// Acquires, runs one attempt and reports how it went: `Ok` as SUCCESS, `Failed(e)`
    /// as `classify(e)`, a rejection by a policy inside as IGNORED (the call never
    /// reached the service), a retry's give-up as its last error. The one place a
    /// protector wraps a call, whether through [`call`](Self::call) or as a
    /// [`Policy`](crate::policy::Policy).
    pub(crate) async fn guard<T, E, F, Fut, C>(&self, f: F, classify: C) -> Result<T, CallError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, CallError<E>>>,
        C: FnOnce(&E) -> Outcome,
    {
        // Held across the call: if this future is dropped midway, the permit's Drop
        // reports IGNORED and frees its trial slot.
        let permit = self.acquire().await.map_err(CallError::Rejected)?;
        let result = f().await;
        let outcome = match result.as_ref().map_err(CallError::last) {
            Ok(_) => Outcome::Success,
            Err(CallError::Failed(e)) => classify(e),
            Err(_) => Outcome::Ignored,
        };
        // A report the daemon refuses or never receives is the protector's business (it
        // logs and counts it); the caller's result stands either way.
        let _resolved = permit.resolve(outcome).await;
        result
    }

    /// Calls `callback` on every status transition of this protector, each exactly
    /// once: at once for transitions this client's own reports cause, and from a Watch
    /// stream for the others. The stream is read by one background task per protector
    /// handle family, started by the first callback and stopped when the last handle is
    /// dropped; it resumes after a disconnect. Callbacks run on that task or on the
    /// reporting one, one at a time (a report that caused a transition returns once its
    /// callbacks have run, whichever path ran them): keep them short and non-blocking. Transitions of a LOCAL
    /// fallback's in-process machine are not announced here. A callback that holds a
    /// clone of its own protector keeps the protector, and its watch, alive for good.
    pub fn on_status_change(&self, callback: impl Fn(&StatusChange) + Send + Sync + 'static) {
        self.inner.notifier.subscribe(Arc::new(callback));
        self.inner.start_watch();
    }

    /// A cached protector's local decision, if it can take one.
    #[inline]
    fn decide_cached(&self) -> Option<Result<CallPermit, Rejection>> {
        let inner = &self.inner;
        let cache = inner.cache.as_ref()?;
        let local = cache.decide();
        if local != Local::Remote {
            // Striped: threads sharing this protector count on lines of their own.
            cache.decisions().bump();
            inner.connection.stats.cache_decisions.bump();
        }
        match local {
            Local::Admit(generation) => {
                let hold = match &self.stripes {
                    Some(stripes) => Hold::Stripe(Arc::clone(&stripes[stripe::index()])),
                    None => Hold::Whole(Arc::clone(inner)),
                };
                Some(Ok(CallPermit::cached(hold, generation)))
            }
            Local::Reject(retry_after) => Some(Err(Rejection {
                name: inner.name.clone(),
                status: Status::Open,
                reason: DecisionReason::Open,
                retry_after: Some(retry_after),
                fallback: false,
            })),
            Local::Remote => None,
        }
    }

    /// The daemon's answer as a permit or a rejection; `Err` when it makes no sense.
    fn answer(&self, a: v1::AcquireResponse) -> Result<Result<CallPermit, Rejection>, String> {
        let inner = &self.inner;
        // Announce the transition this acquire caused (OPEN to HALF_OPEN) before the
        // trial's own report can announce the next one.
        if let Some(t) = &a.transition {
            inner.learned(t, a.revision);
        }
        match convert::decision(&a).map_err(|e| e.to_string())? {
            Decision::Admitted { permit, .. } => {
                let wire = a.permit.unwrap_or_default();
                Ok(Ok(CallPermit::daemon(
                    Hold::Whole(Arc::clone(inner)),
                    wire,
                    permit.is_trial(),
                )))
            }
            Decision::Rejected { reason, retry_after } => Ok(Err(Rejection {
                name: inner.name.clone(),
                status: Status::try_from(a.status()).map_err(|e| format!("status: {e}"))?,
                reason,
                retry_after,
                fallback: false,
            })),
        }
    }

    fn decide_locally(&self, why: &str) -> Result<CallPermit, Rejection> {
        let inner = &self.inner;
        inner.fallback_decisions.fetch_add(1, Ordering::Relaxed);
        Stats::bump(&inner.connection.stats.fallback_decisions);
        let decision = match inner.fallback {
            Fallback::Allow => Ok(CallPermit::allowed(Hold::Whole(Arc::clone(inner)))),
            Fallback::Deny => Err(Rejection {
                name: inner.name.clone(),
                status: Status::Open,
                reason: DecisionReason::Open,
                retry_after: None,
                fallback: true,
            }),
            Fallback::Local => match inner.local.as_ref().map(|l| l.acquire(&inner.name)) {
                Some(Ok(permit)) => Ok(CallPermit::local(Hold::Whole(Arc::clone(inner)), permit)),
                Some(Err(rejection)) => Err(rejection),
                None => unreachable!("a LOCAL fallback always has its machine"),
            },
        };
        let admitted = decision.is_ok();
        if inner.connection.link.first_fallback() {
            tracing::warn!(name = %inner.name, fallback = ?inner.fallback, admitted, why, "the daemon could not be asked; the fallback decided");
        } else {
            tracing::debug!(name = %inner.name, fallback = ?inner.fallback, admitted, why, "fallback decision");
        }
        decision
    }
}

/// The future of [`Protector::acquire`]. Like any future it does nothing until polled.
///
/// On its first poll a cached protector decides in this process when it can, and the
/// future is ready at once. Asking the daemon runs in a boxed future of its own, so that
/// this one stays a few words long: a cached decision costs nanoseconds, and moving a
/// future the size of the whole gRPC exchange would cost more than the decision.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Acquire<'a> {
    state: Asking<'a>,
}

type Answer = Result<CallPermit, Rejection>;

enum Asking<'a> {
    Start(&'a Protector),
    Daemon(Pin<Box<dyn Future<Output = Answer> + Send + 'a>>),
    Done,
}

impl std::fmt::Debug for Acquire<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            Asking::Start(_) => "not polled",
            Asking::Daemon(_) => "asking the daemon",
            Asking::Done => "done",
        };
        f.debug_struct("Acquire").field("state", &state).finish()
    }
}

impl Future for Acquire<'_> {
    type Output = Answer;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let this = &mut *self;
        if let Asking::Start(protector) = this.state {
            if let Some(local) = protector.decide_cached() {
                this.state = Asking::Done;
                return Poll::Ready(local);
            }
            this.state = Asking::Daemon(Box::pin(protector.ask_daemon()));
        }
        let Asking::Daemon(asking) = &mut this.state else {
            panic!("`Acquire` polled after it completed");
        };
        let answer = std::task::ready!(asking.as_mut().poll(cx));
        this.state = Asking::Done;
        Poll::Ready(answer)
    }
}

#[cfg(test)]
mod tests {
    use resilient_circuit_api::v1;
    use resilient_circuit_breaker::Outcome;

    use super::super::permit::report_to_daemon;
    use crate::{Client, Fallback};

    /// The futures that ask the daemon are boxed on every Acquire and Report. Within
    /// 1 KiB, glibc serves them from its per-thread cache; an ensure's or a unary call's
    /// future carried inline made them 3 KB, and the allocation and the copy cost an
    /// uncached client a sixth of its decisions a second.
    #[tokio::test]
    async fn the_futures_that_ask_the_daemon_stay_small() {
        let client = Client::connect("http://127.0.0.1:9")
            .await
            .expect("a lazy client");
        let p = client
            .protector_builder("small")
            .fallback(Fallback::Allow)
            .build()
            .await
            .expect("the fallback builds it");
        let acquire = std::mem::size_of_val(&p.ask_daemon());
        let report = std::mem::size_of_val(&report_to_daemon(
            &p.inner,
            v1::Permit::default(),
            Outcome::Success,
            None,
        ));
        assert!(acquire <= 1024, "asking the daemon to Acquire is {acquire} bytes");
        assert!(report <= 1024, "reporting to the daemon is {report} bytes");
    }
}
