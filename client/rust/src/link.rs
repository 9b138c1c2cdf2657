//! Whether the daemon is worth asking right now.
//!
//! Design note. After a failure to reach the daemon the link is *down* for a backoff
//! period (capped exponential, full jitter); while it lasts every caller answers from its
//! fallback at once instead of paying the acquire deadline again. When the period ends,
//! the first caller to notice becomes the probe: it pushes the next attempt a fresh
//! backoff away before it tries, so concurrent callers keep answering from the fallback,
//! and a probe future that is dropped midway cannot leave the link stuck. Any answer from
//! the daemon (an RPC or a Watch message) marks the link up again. The link never gives
//! up: the backoff stops growing at its cap.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::ExponentialDelay;
use crate::sync::lock;

/// The reconnect backoff: the [`ExponentialDelay`] schedule doubling from `initial` up
/// to `cap`, with full jitter in place of its own: attempt `n` (from 0) waits a
/// uniformly random time in `[0, min(cap, initial * 2^n)]`.
#[derive(Debug, Clone)]
pub(crate) struct Reconnect {
    schedule: ExponentialDelay,
}

impl Reconnect {
    /// From `initial` up to `cap` (raised to `initial` if below it).
    pub(crate) fn new(initial: Duration, cap: Duration) -> Reconnect {
        let schedule = ExponentialDelay::try_new(initial, cap.max(initial), 2.0, 0.0)
            .expect("doubling without jitter, up to a cap no lower than the start, is valid");
        Reconnect { schedule }
    }

    /// The delay before attempt `attempt` (0 = the first retry).
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        // The growth stops after 20 doublings even below the cap.
        let ceiling = self.schedule.base_delay(attempt.min(20) + 1);
        if ceiling.is_zero() {
            return ceiling;
        }
        Duration::from_nanos(rand::random_range(
            0..=ceiling.as_nanos().min(u128::from(u64::MAX)) as u64,
        ))
    }
}

/// What a caller should do about the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The link is up: ask the daemon.
    Ask,
    /// The link is down but its backoff ended: this caller probes.
    Probe,
    /// The link is down: answer from the fallback without the network.
    Skip,
}

#[derive(Debug)]
struct LinkState {
    down: bool,
    /// Failures since the link was last up; drives the backoff.
    failures: u32,
    next_try: Instant,
    /// Whether a fallback decision was already announced at warn level since going down.
    warned: bool,
}

/// The shared up/down state of one client's connection.
#[derive(Debug)]
pub(crate) struct Link {
    backoff: Reconnect,
    state: Mutex<LinkState>,
    downs: AtomicU64,
}

impl Link {
    pub(crate) fn new(backoff: Reconnect) -> Link {
        Link {
            backoff,
            state: Mutex::new(LinkState {
                down: false,
                failures: 0,
                next_try: Instant::now(),
                warned: false,
            }),
            downs: AtomicU64::new(0),
        }
    }

    /// Whether to ask the daemon now (see the module note).
    pub(crate) fn attempt(&self) -> Attempt {
        let mut s = lock(&self.state);
        if !s.down {
            return Attempt::Ask;
        }
        let now = Instant::now();
        if now < s.next_try {
            return Attempt::Skip;
        }
        s.next_try = now + self.backoff.delay(s.failures);
        Attempt::Probe
    }

    /// The daemon answered.
    pub(crate) fn up(&self) {
        let mut s = lock(&self.state);
        if s.down {
            tracing::info!(failures = s.failures, "the daemon is reachable again");
        }
        s.down = false;
        s.failures = 0;
        s.warned = false;
    }

    /// The daemon could not be reached; `why` is logged when this takes the link down.
    pub(crate) fn failed(&self, why: &dyn std::fmt::Display) {
        let mut s = lock(&self.state);
        let delay = self.backoff.delay(s.failures);
        s.next_try = Instant::now() + delay;
        s.failures = s.failures.saturating_add(1);
        if !s.down {
            s.down = true;
            self.downs.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %why, retry_in = ?delay, "the daemon cannot be reached; answering from fallbacks");
        } else {
            tracing::debug!(error = %why, retry_in = ?delay, failures = s.failures, "the daemon is still unreachable");
        }
    }

    /// Whether this fallback decision is the first since the link went down (it is then
    /// announced at warn level, the rest at debug).
    pub(crate) fn first_fallback(&self) -> bool {
        let mut s = lock(&self.state);
        !std::mem::replace(&mut s.warned, true)
    }

    /// Whether the link is currently down.
    pub(crate) fn is_down(&self) -> bool {
        lock(&self.state).down
    }

    /// How many times the link went down.
    pub(crate) fn downs(&self) -> u64 {
        self.downs.load(Ordering::Relaxed)
    }

    /// Runs one RPC with `timeout`, noting on the link how it went: up on any answer,
    /// failed when the daemon could not be reached (a transport-level status, or no
    /// answer in time). An error comes back as the sentence to log.
    pub(crate) async fn ask<T>(
        &self,
        timeout: Duration,
        call: impl std::future::Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(answer)) => {
                self.up();
                Ok(answer)
            }
            Ok(Err(status)) => {
                let why = format!("{}: {}", status.code(), status.message());
                if unreachable(&status) {
                    self.failed(&why);
                }
                Err(why)
            }
            Err(_) => {
                let why = format!("no answer within {timeout:?}");
                self.failed(&why);
                Err(why)
            }
        }
    }

    /// The backoff the link uses, for other reconnecting loops of the same client.
    pub(crate) fn backoff(&self) -> &Reconnect {
        &self.backoff
    }
}

/// Whether a status means the daemon could not be reached (rather than that it refused).
pub(crate) fn unreachable(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Internal
            | Code::Aborted
    )
}
