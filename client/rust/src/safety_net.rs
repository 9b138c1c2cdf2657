//! Composing policies, the first outermost.
//!
//! Design note: `SafetyNet::new(outer, inner)` runs the call as
//! `outer.execute(|| inner.execute(call))`, as the library's `SafetyNet(policies=(outer,
//! inner))` does: every attempt the outer policy makes is a whole execution of the inner
//! one. `.then(next)` adds `next` inside everything so far; composition is associative, so
//! `SafetyNet::new(a, b).then(c)` runs `a(b(c(call)))`.
//!
//! The usual order is a retry outside a protector: each retry asks the protector again, so
//! an open protector stops the retries (see [`crate::retry`]) instead of every attempt
//! reaching a failing service. With the protector outside, the whole retry sequence is one
//! call to the protector and counts once.

use std::future::Future;
use std::sync::Mutex;

use crate::error::CallError;
use crate::policy::{self, Policy};
use crate::sync::lock;

/// Two policies, `outer` wrapping `inner`; itself a [`Policy`], so nets nest.
#[derive(Debug, Clone)]
pub struct SafetyNet<O, I> {
    outer: O,
    inner: I,
}

impl<O, I> SafetyNet<O, I> {
    /// `outer` around `inner`.
    pub fn new(outer: O, inner: I) -> Self {
        Self { outer, inner }
    }

    /// `next` inside every policy so far.
    pub fn then<N>(self, next: N) -> SafetyNet<Self, N> {
        SafetyNet::new(self, next)
    }

    /// The outermost policy given to [`SafetyNet::new`].
    pub fn outer(&self) -> &O {
        &self.outer
    }

    /// The policy given to [`SafetyNet::new`] as inner.
    pub fn inner(&self) -> &I {
        &self.inner
    }

    /// Runs `f`, whose errors are the call's own, under every policy of the net.
    pub async fn call<T, E, F, Fut>(&self, f: F) -> Result<T, CallError<E>>
    where
        Self: Policy<E>,
        T: Send,
        E: Send,
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T, E>> + Send,
    {
        policy::call(self, f).await
    }
}

impl<E, O, I> Policy<E> for SafetyNet<O, I>
where
    O: Policy<E>,
    I: Policy<E>,
{
    async fn execute<'a, T, F, Fut>(&'a self, f: F) -> Result<T, CallError<E>>
    where
        T: Send + 'a,
        E: Send + 'a,
        F: FnMut() -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, CallError<E>>> + Send + 'a,
    {
        // Each outer attempt hands the inner policy a fresh attempt function, while the
        // caller's function is one `FnMut`; the lock lends it out one attempt at a time
        // (attempts never overlap, so it is never contended) and is not held while an
        // attempt runs.
        let shared = Mutex::new(f);
        let shared = &shared;
        let attempt = move || {
            let mut f = lock(shared);
            (*f)()
        };
        let inner = &self.inner;
        self.outer.execute(move || inner.execute(attempt)).await
    }
}
