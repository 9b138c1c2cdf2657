//! The value types of the status machine: what goes in (outcomes, permits, overrides)
//! and what comes out (decisions, transitions, changes, counters).

use std::time::Duration;

use crate::Time;

/// The status of the status machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Every call is admitted.
    Closed,
    /// Calls are rejected until `open_until`.
    Open,
    /// Trial calls decide between CLOSED and OPEN.
    HalfOpen,
}

/// An operator's override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OverrideKind {
    /// Reject every call.
    ForcedOpen,
    /// Admit every call; record outcomes, never trip.
    Disabled,
}

/// An override in force, with its optional expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Override {
    /// Which override.
    pub kind: OverrideKind,
    /// When it ends by itself; `None` = until cleared.
    pub expires_at: Option<Time>,
}

/// How a call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Counted as a success.
    Success,
    /// Counted as a failure.
    Failure,
    /// Recorded nowhere; releases a trial permit.
    Ignored,
}

/// What an admitted call carries back to its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    /// The generation it was issued in.
    pub generation: u64,
    /// Non-zero for a tracked HALF_OPEN trial; 0 otherwise.
    pub id: u64,
    /// When a trial permit expires; `None` for untracked permits.
    pub expires_at: Option<Time>,
}

impl Permit {
    /// The id of every permit that is not a HALF_OPEN trial: CLOSED and DISABLED
    /// admissions are not tracked, so they carry no id.
    pub const UNTRACKED: u64 = 0;

    /// Whether this is a tracked HALF_OPEN trial (a lease that must be reported or
    /// expires as a FAILURE), rather than an untracked CLOSED or DISABLED admission.
    pub fn is_trial(&self) -> bool {
        self.id != Permit::UNTRACKED
    }
}

/// Why a call was admitted or rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecisionReason {
    /// Admitted: CLOSED.
    Closed,
    /// Admitted as a HALF_OPEN trial.
    Trial,
    /// Admitted: a DISABLED override holds.
    Disabled,
    /// Rejected: OPEN before `open_until`.
    Open,
    /// Rejected: HALF_OPEN with every trial permit in flight.
    TrialsExhausted,
    /// Rejected: a FORCED_OPEN override holds.
    ForcedOpen,
}

/// The answer to an acquire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The call may go ahead.
    Admitted {
        /// To send back with the report.
        permit: Permit,
        /// Closed, Trial or Disabled.
        reason: DecisionReason,
    },
    /// The call must not go ahead.
    Rejected {
        /// Open, TrialsExhausted or ForcedOpen.
        reason: DecisionReason,
        /// When asking again may succeed; `None` when no time is known (a FORCED_OPEN
        /// override without expiry).
        retry_after: Option<Duration>,
    },
}

impl Decision {
    /// Whether the call was admitted.
    pub fn is_admitted(&self) -> bool {
        matches!(self, Decision::Admitted { .. })
    }
}

/// Why a status transition happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransitionReason {
    /// CLOSED to OPEN by the trip rule.
    FailureLimit,
    /// OPEN to HALF_OPEN at `open_until`.
    CooldownElapsed,
    /// HALF_OPEN to CLOSED: the full trial window passed.
    TrialsSucceeded,
    /// HALF_OPEN to OPEN: the full trial window failed.
    TrialsFailed,
    /// HALF_OPEN decided by an expired trial permit (counted as a failure).
    PermitExpired,
    /// An operator's SetStatus.
    Manual,
    /// CLOSED to OPEN: `consecutive_failures` FAILUREs in a row (section 2a).
    ConsecutiveFailures,
    /// CLOSED or HALF_OPEN to OPEN: too many slow calls (section 2a).
    SlowCalls,
}

/// One status transition, as published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Status before.
    pub from: Status,
    /// Status after.
    pub to: Status,
    /// Why.
    pub reason: TransitionReason,
    /// The generation entered.
    pub generation: u64,
    /// When `to` is OPEN: when its cooldown ends.
    pub open_until: Option<Time>,
    /// The instant it took effect.
    pub at: Time,
}

/// A change the caller must publish, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A status transition.
    Transition(Transition),
    /// The override of this kind reached its expiry and no longer holds.
    OverrideExpired {
        /// The override that ended.
        kind: OverrideKind,
        /// Its expiry instant.
        at: Time,
    },
}

/// Lifetime counters of one protector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Acquires admitted.
    pub admitted: u64,
    /// Acquires rejected.
    pub rejected: u64,
    /// Successes recorded.
    pub successes: u64,
    /// Failures recorded, expired trials included.
    pub failures: u64,
    /// IGNORED outcomes accepted.
    pub ignored: u64,
    /// Reports refused as stale.
    pub stale_reports: u64,
    /// Trial permits that expired unreported.
    pub expired_permits: u64,
}

/// The result of [`Protector::acquire`](super::Protector::acquire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquireResult {
    /// Admitted or rejected.
    pub decision: Decision,
    /// What changed, in order (expiries due, then the lazy OPEN to HALF_OPEN).
    pub changes: Vec<Change>,
    /// In shadow mode, a call the machine would have rejected is admitted: this is the
    /// reason it would have had (Open or TrialsExhausted), also the decision's reason.
    pub would_reject: Option<DecisionReason>,
}

/// The result of [`Protector::report_batch`](super::Protector::report_batch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchResult {
    /// Outcomes recorded.
    pub accepted: u64,
    /// Outcomes refused as stale.
    pub stale: u64,
    /// The first transition the batch caused, if any.
    pub transition: Option<Transition>,
    /// What changed, in order (expiries due, then `transition`).
    pub changes: Vec<Change>,
}

/// The result of [`Protector::report`](super::Protector::report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportResult {
    /// False when the report was stale and changed nothing.
    pub accepted: bool,
    /// The transition this report's outcome caused, if any (also last in `changes`).
    pub transition: Option<Transition>,
    /// What changed, in order (expiries due, then `transition`).
    pub changes: Vec<Change>,
}
