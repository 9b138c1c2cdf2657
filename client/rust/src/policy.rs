//! The composition trait shared by every policy, and the protector as a policy.
//!
//! Design note: a [`Policy`] runs an attempt function as many times as it sees fit (a
//! retry), or wraps each run (a protector), and may answer without running it at all (a
//! rejection). The attempt function already speaks [`CallError`], so policies nest: the
//! inner policy's whole execution is one attempt of the outer one
//! ([`crate::safety_net::SafetyNet`]).
//!
//! A [`Protector`] is a policy through [`Protector::acquire`] and
//! [`crate::protector::CallPermit::resolve`] alone. How an attempt's result counts:
//!
//! | result | outcome |
//! |---|---|
//! | `Ok` | SUCCESS |
//! | `Failed(_)` | FAILURE (use [`Classified`] to decide per error) |
//! | `Rejected(_)` from an inner policy | IGNORED: the call never reached the service |
//! | `RetryLimitReached { last, .. }` | as `last` |
//!
//! An execution dropped before its attempt finishes drops the permit, which reports IGNORED.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use resilient_circuit_breaker::Outcome;

use crate::error::CallError;
use crate::protector::Protector;

/// A resilience policy that runs attempts of a call.
pub trait Policy<E>: Send + Sync {
    /// Runs `f` under this policy: zero, one or several times.
    fn execute<'a, T, F, Fut>(&'a self, f: F) -> impl Future<Output = Result<T, CallError<E>>> + Send + 'a
    where
        T: Send + 'a,
        E: Send + 'a,
        F: FnMut() -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, CallError<E>>> + Send + 'a;
}

impl<E, P: Policy<E> + ?Sized> Policy<E> for &P {
    fn execute<'a, T, F, Fut>(&'a self, f: F) -> impl Future<Output = Result<T, CallError<E>>> + Send + 'a
    where
        T: Send + 'a,
        E: Send + 'a,
        F: FnMut() -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, CallError<E>>> + Send + 'a,
    {
        (**self).execute(f)
    }
}

impl<E, P: Policy<E> + ?Sized> Policy<E> for Arc<P> {
    fn execute<'a, T, F, Fut>(&'a self, f: F) -> impl Future<Output = Result<T, CallError<E>>> + Send + 'a
    where
        T: Send + 'a,
        E: Send + 'a,
        F: FnMut() -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, CallError<E>>> + Send + 'a,
    {
        (**self).execute(f)
    }
}

/// Runs `f`, whose errors are the call's own, under `policy`: the `call` of every
/// policy type.
pub(crate) async fn call<P, T, E, F, Fut>(policy: &P, mut f: F) -> Result<T, CallError<E>>
where
    P: Policy<E> + ?Sized,
    T: Send,
    E: Send,
    F: FnMut() -> Fut + Send,
    Fut: Future<Output = Result<T, E>> + Send,
{
    policy
        .execute(move || {
            let attempt = f();
            async move { attempt.await.map_err(CallError::Failed) }
        })
        .await
}

/// Every `Failed` counts as a FAILURE.
impl<E> Policy<E> for Protector {
    fn execute<'a, T, F, Fut>(&'a self, f: F) -> impl Future<Output = Result<T, CallError<E>>> + Send + 'a
    where
        T: Send + 'a,
        E: Send + 'a,
        F: FnMut() -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, CallError<E>>> + Send + 'a,
    {
        self.guard(f, |_: &E| Outcome::Failure)
    }
}

/// A protector that counts the call's own errors with `classify`, as
/// [`Protector::call_classified`] does (for instance `Outcome::Success` for an error the
/// library's `should_handle` would decline).
#[derive(Clone)]
pub struct Classified<C> {
    protector: Protector,
    classify: C,
}

impl<C> Classified<C> {
    /// `protector`, counting each `Failed(e)` as `classify(&e)`.
    pub fn new(protector: Protector, classify: C) -> Self {
        Self { protector, classify }
    }

    /// The protector underneath.
    pub fn protector(&self) -> &Protector {
        &self.protector
    }
}

impl<E, C> Policy<E> for Classified<C>
where
    C: Fn(&E) -> Outcome + Send + Sync,
{
    fn execute<'a, T, F, Fut>(&'a self, f: F) -> impl Future<Output = Result<T, CallError<E>>> + Send + 'a
    where
        T: Send + 'a,
        E: Send + 'a,
        F: FnMut() -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, CallError<E>>> + Send + 'a,
    {
        self.protector.guard(f, &self.classify)
    }
}

impl<C> fmt::Debug for Classified<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classified")
            .field("protector", &self.protector)
            .finish_non_exhaustive()
    }
}
