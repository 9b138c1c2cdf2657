//! What the registry answers: a protector as read, and each operation's result with the
//! revision it reflects.

use resilient_circuit_api::{convert, v1};
use resilient_circuit_breaker::{Decision, Protector, Replay, Status, Time, Transition};

/// A protector as read: its name, state and the revision of its last change.
#[derive(Debug, Clone)]
pub struct View {
    /// The protector's name.
    pub name: String,
    /// Its state.
    pub protector: Protector,
    /// The revision of its last change.
    pub mod_revision: u64,
    /// The revision at which its policy was last set.
    pub policy_revision: u64,
    /// Outcomes its what-if history holds.
    pub history_len: u32,
}

impl View {
    /// The wire form.
    pub fn to_proto(&self) -> v1::Protector {
        v1::Protector {
            policy_revision: self.policy_revision,
            history_len: self.history_len,
            ..convert::protector(&self.name, &self.protector, self.mod_revision)
        }
    }
}

/// The answer to [`Registry::ensure`](super::Registry::ensure).
#[derive(Debug, Clone)]
pub struct Ensured {
    /// The protector as it is now.
    pub view: View,
    /// Whether this call created it.
    pub created: bool,
    /// The revision the answer reflects.
    pub revision: u64,
}

/// An answer decided under a protector's guard that may leave only once the state it
/// rests on is durable: `seq` is the journal record to wait for, if any
/// ([`Registry::is_durable`](super::Registry::is_durable)).
#[derive(Debug, Clone, Copy)]
pub struct Decided<T> {
    /// The answer.
    pub value: T,
    pub(super) seq: Option<u64>,
}

/// The answer to [`Registry::acquire`](super::Registry::acquire).
#[derive(Debug, Clone, Copy)]
pub struct Acquired {
    /// Admitted or rejected.
    pub decision: Decision,
    /// The status after the decision.
    pub status: Status,
    /// The last transition the acquire caused (or applied, for an expiry due), if any.
    pub transition: Option<Transition>,
    /// The revision the answer reflects.
    pub revision: u64,
    /// Shadow mode: admitted, but the live machine would have rejected it (`decision`
    /// carries that reason).
    pub would_reject: bool,
    /// The revision at which the policy that decided was set.
    pub policy_revision: u64,
}

/// The answer to [`Registry::report`](super::Registry::report).
#[derive(Debug, Clone, Copy)]
pub struct Reported {
    /// False when stale.
    pub accepted: bool,
    /// The status after the report.
    pub status: Status,
    /// The transition the report caused, if any.
    pub transition: Option<Transition>,
    /// The revision the answer reflects: with a transition, exactly its revision.
    pub revision: u64,
}

/// The answer to [`Registry::report_batch`](super::Registry::report_batch).
#[derive(Debug, Clone, Copy)]
pub struct BatchReported {
    /// Outcomes recorded.
    pub accepted: u64,
    /// Outcomes refused as stale.
    pub stale: u64,
    /// The status after the batch.
    pub status: Status,
    /// The generation after the batch.
    pub generation: u64,
    /// The first transition the batch caused, if any.
    pub transition: Option<Transition>,
    /// The revision the answer reflects.
    pub revision: u64,
}

/// The answer to [`Registry::simulate`](super::Registry::simulate).
#[derive(Debug, Clone)]
pub struct Simulated {
    /// Calls replayed: the history's entries.
    pub calls: u64,
    /// The instants of the first and the last call replayed; `None` when there was none.
    pub span: Option<(Time, Time)>,
    /// The candidate policy's replay.
    pub candidate: Replay,
    /// The current policy's replay of the same calls.
    pub current: Replay,
    /// The daemon-wide revision the history reflects at least.
    pub revision: u64,
}
