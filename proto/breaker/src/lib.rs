//! The protector status machine: pure, std only, with time passed in.
//!
//! Both the daemon (for the whole fleet) and the clients (for their LOCAL fallback) run
//! this code, so it does no I/O, reads no clock and spawns nothing. Every operation takes
//! `now` (a [`Time`]: the duration since the Unix epoch) and returns the [`Change`]s the
//! caller must publish, in the order they happened.
//!
//! The rules are proto/SEMANTICS.md section 2:
//!
//! - CLOSED admits every call; outcomes go into a count window of `failure_limit.d`
//!   slots; only a recorded FAILURE checks the trip rule (window full and
//!   failures/len >= failure_limit).
//! - OPEN rejects until `open_until`; the first Acquire at or after it (or the machine
//!   itself with `auto_half_open`) moves to HALF_OPEN with reason COOLDOWN_ELAPSED.
//! - HALF_OPEN admits at most `trial_permits` trials in flight. Trials are leases: each
//!   is tracked by id until reported or expired, and an expiry counts as a FAILURE at
//!   its own instant. When the trial window is full it decides CLOSED or OPEN.
//! - Every transition adds one to the generation; a permit carries its generation and
//!   a report from another generation is stale and changes nothing.
//! - Overrides (FORCED_OPEN, DISABLED) hold the machine still: outcomes are recorded
//!   but no transition is evaluated until an outcome is recorded after the override ends.
//!
//! - The optional rules of section 2a ([`Rules`], all off by default): a time window with
//!   `minimum_calls`, consecutive failures, slow calls (durations come with
//!   [`Protector::report_timed`] and [`Protector::report_batch_timed`]), cooldown backoff
//!   ([`Protector::cooldown_in_force`]), shadow mode ([`AcquireResult::would_reject`]); and
//!   [`replay()`], the what-if of a policy over a [`History`].
//!
//! Layout (dependencies point one way, `machine -> policy` and `machine -> window`; no
//! module imports one that imports it back):
//! - [`policy`]: the validated rules ([`Policy::try_new`], one message per rule;
//!   [`Policy::try_with`] adds the [`rules`] of section 2a). `fraction` holds [`Fraction`].
//! - [`window`]: the count window and the time window.
//! - [`mod@replay`]: the what-if replay and the bounded history; it uses the machine, never the
//!   other way round.
//! - [`machine`]: the status machine itself; it only declares and re-exports its parts:
//!   `machine/types.rs` the values operations take and return, `machine/protector.rs`
//!   the [`Protector`] and its operations, `machine/judge.rs` recording and judging
//!   outcomes and the transitions, `machine/state.rs` its plain-data form for
//!   persistence ([`ProtectorState`]), `machine/trials.rs` the trial permits in flight,
//!   indexed by id and by expiry ([`TrialPermits`]).

mod fraction;
pub mod machine;
pub mod policy;
pub mod replay;
pub mod rules;
pub mod window;

#[cfg(test)]
mod tests;

pub use machine::{
    AcquireResult, BatchResult, Change, Counters, Decision, DecisionReason, InvalidState, Outcome, Override,
    OverrideKind, Permit, Protector, ProtectorState, ReportResult, Status, Transition, TransitionReason,
    TrialPermits,
};
pub use policy::{Fraction, InvalidFraction, InvalidPolicy, Policy, PolicyError, PolicySpec};
pub use replay::{History, HistoryEntry, Replay, replay};
pub use rules::{InvalidRules, Multiplier, Rules};
pub use window::{Bucket, TimeWindow, TimeWindowState, Window};

/// An instant, as the duration since the Unix epoch (UTC). The daemon derives it from a
/// monotonic clock anchored to the wall clock at start, so it never goes backwards while
/// the process lives; the machine still tolerates a `now` earlier than one it has seen.
pub type Time = std::time::Duration;
