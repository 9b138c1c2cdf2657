//! Retrying a call with a backoff between attempts.
//!
//! Design note: [`RetryWithBackoff`] keeps the library's `RetryWithBackoffPolicy` settings
//! (`max_retries` 3, so up to 4 attempts; `should_handle` accepting every error; no
//! backoff, i.e. `FixedDelay(Duration::ZERO)`, as the library does not wait when given
//! none) and does better where the library was wrong:
//!
//! - **No wait after the final attempt.** The library slept once more after the last
//!   failure before giving up; here the give-up is immediate, so the total wait is the sum
//!   of the delays *between* attempts.
//! - **A rejection is not retried blindly.** An open protector answers at once, so retrying
//!   it on the backoff schedule only burns attempts. A [`CallError::Rejected`] is retried
//!   only when it carries a `retry_after` that fits within the next backoff delay, and then
//!   after exactly `retry_after` (the protector said when to come back); otherwise the
//!   rejection is returned at once, as itself.
//! - **An error `should_handle` declines is returned at once** as [`CallError::Failed`]
//!   (the library re-raised it too), never wrapped.
//! - Running out of attempts gives [`CallError::RetryLimitReached`] with the number of
//!   attempts and the last error, whichever kind it was.
//! - A [`CallError::RetryLimitReached`] from an inner policy is judged by its last error.
//!
//! Waiting uses tokio's clock, so tests can pause and advance time.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::backoff::{Backoff, FixedDelay};
use crate::error::CallError;
use crate::policy::{self, Policy};

type ShouldHandle<E> = Arc<dyn Fn(&E) -> bool + Send + Sync>;

/// Retries failed calls, waiting per a [`Backoff`] between attempts.
///
/// ```
/// use std::time::Duration;
/// use resilient_circuit::backoff::ExponentialDelay;
/// use resilient_circuit::retry::RetryWithBackoff;
///
/// let retry = RetryWithBackoff::<std::io::Error>::new()
///     .max_retries(2)
///     .backoff(ExponentialDelay::new(Duration::from_millis(100), Duration::from_secs(2)).unwrap())
///     .should_handle(|e| e.kind() == std::io::ErrorKind::TimedOut);
/// # let _ = retry;
/// ```
pub struct RetryWithBackoff<E> {
    max_retries: u32,
    backoff: Arc<dyn Backoff>,
    should_handle: ShouldHandle<E>,
}

impl<E> RetryWithBackoff<E> {
    /// The default number of retries, as in the library.
    pub const DEFAULT_MAX_RETRIES: u32 = 3;

    /// Three retries, no wait between attempts, every error retried.
    pub fn new() -> Self {
        Self {
            max_retries: Self::DEFAULT_MAX_RETRIES,
            backoff: Arc::new(FixedDelay(Duration::ZERO)),
            should_handle: Arc::new(|_| true),
        }
    }

    /// Retries after the first attempt (so at most `max_retries + 1` attempts).
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// The wait between attempts.
    pub fn backoff(mut self, backoff: impl Backoff + 'static) -> Self {
        self.backoff = Arc::new(backoff);
        self
    }

    /// Which errors are worth retrying; others are returned at once.
    pub fn should_handle(mut self, should_handle: impl Fn(&E) -> bool + Send + Sync + 'static) -> Self {
        self.should_handle = Arc::new(should_handle);
        self
    }

    /// The configured number of retries.
    pub fn retries(&self) -> u32 {
        self.max_retries
    }

    /// Runs `f`, whose errors are the call's own, under this policy.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, CallError<E>>
    where
        T: Send,
        E: Send,
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T, E>> + Send,
    {
        policy::call(self, f).await
    }

    /// What to do after failed attempt `attempt`.
    fn next_step(&self, error: &CallError<E>, attempt: u32) -> Step {
        let last = error.last();
        if matches!(last, CallError::Failed(e) if !(self.should_handle)(e)) {
            return Step::Return;
        }
        if attempt > self.max_retries {
            return Step::GiveUp;
        }
        match last {
            CallError::Rejected(rejection) => match rejection.retry_after {
                Some(after) if after <= self.backoff.delay(attempt) => Step::Wait(after),
                _ => Step::Return,
            },
            _ => Step::Wait(self.backoff.delay(attempt)),
        }
    }
}

/// The decision after a failed attempt.
enum Step {
    /// Retry after this long.
    Wait(Duration),
    /// Return the error as it is.
    Return,
    /// Out of attempts.
    GiveUp,
}

impl<E> Policy<E> for RetryWithBackoff<E> {
    async fn execute<'a, T, F, Fut>(&'a self, mut f: F) -> Result<T, CallError<E>>
    where
        T: Send + 'a,
        E: Send + 'a,
        F: FnMut() -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, CallError<E>>> + Send + 'a,
    {
        let mut attempt: u32 = 1;
        loop {
            let error = match f().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            match self.next_step(&error, attempt) {
                Step::Return => return Err(error),
                Step::GiveUp => {
                    return Err(CallError::RetryLimitReached {
                        attempts: attempt,
                        last: Box::new(error),
                    });
                }
                Step::Wait(delay) => {
                    tracing::debug!(attempt, ?delay, "retrying after a failed attempt");
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    attempt += 1;
                }
            }
        }
    }
}

impl<E> Default for RetryWithBackoff<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> Clone for RetryWithBackoff<E> {
    fn clone(&self) -> Self {
        Self {
            max_retries: self.max_retries,
            backoff: Arc::clone(&self.backoff),
            should_handle: Arc::clone(&self.should_handle),
        }
    }
}

impl<E> fmt::Debug for RetryWithBackoff<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryWithBackoff")
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}
