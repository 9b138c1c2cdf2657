//! What decides when the daemon cannot be asked.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use resilient_circuit_breaker::{self as breaker, Decision, Outcome, Time};
use tokio::time::Instant;

use crate::error::Rejection;
use crate::sync::lock;

/// Who decides an Acquire when the daemon cannot be asked in time (it is down, slow,
/// or the link is in its backoff period).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fallback {
    /// Admit every call; their outcomes are recorded nowhere.
    Allow,
    /// Reject every call with a [`Rejection`] whose `fallback` is set (reason Open, no
    /// `retry_after`). The behaviour of a protector without a declared fallback.
    #[default]
    Deny,
    /// An in-process protector with the same policy decides, and the permits it gives
    /// out report to it. It starts CLOSED and keeps its state across outages.
    Local,
}

/// The in-process status machine of a LOCAL fallback: the very code the daemon runs.
#[derive(Debug)]
pub(crate) struct LocalMachine {
    machine: Mutex<breaker::Protector>,
    /// The wall-clock time at `start`; the machine's clock then follows Tokio's, so it
    /// never goes backwards and can be paused in tests.
    epoch: Time,
    start: Instant,
}

impl LocalMachine {
    pub(crate) fn new(policy: breaker::Policy) -> LocalMachine {
        LocalMachine {
            machine: Mutex::new(breaker::Protector::new(policy)),
            epoch: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO),
            start: Instant::now(),
        }
    }

    fn now(&self) -> Time {
        self.epoch + self.start.elapsed()
    }

    /// The machine's decision: a permit, or a rejection marked as the fallback's.
    pub(crate) fn acquire(&self, name: &str) -> Result<breaker::Permit, Rejection> {
        let mut machine = lock(&self.machine);
        let result = machine.acquire(self.now());
        match result.decision {
            Decision::Admitted { permit, .. } => Ok(permit),
            Decision::Rejected { reason, retry_after } => Err(Rejection {
                name: name.to_owned(),
                status: machine.status(),
                reason,
                retry_after,
                fallback: true,
            }),
        }
    }

    /// Whether the report was accepted. `duration`, the call's, feeds the policy's
    /// slow-call rule as the daemon's does.
    pub(crate) fn report(
        &self,
        permit: breaker::Permit,
        outcome: Outcome,
        duration: Option<Duration>,
    ) -> bool {
        let now = self.now();
        lock(&self.machine)
            .report_timed(permit, outcome, duration, now)
            .accepted
    }

    /// Takes the daemon's policy when it differs from the one asked for.
    pub(crate) fn adopt(&self, policy: breaker::Policy) {
        let mut machine = lock(&self.machine);
        if *machine.policy() != policy {
            machine.update_policy(policy, self.now());
        }
    }
}
