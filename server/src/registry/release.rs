//! Trial permits whose answer never reached the client.
//!
//! A trial Acquire takes its permit under the entry guard, then waits for the journal
//! before answering. If the caller goes away meanwhile (its deadline passed: tonic drops
//! the handler future when the client resets the stream or its `grpc-timeout` runs out;
//! or its Session stream ended), nobody holds the permit: left alone it would stay in
//! flight until it expires and then count as a FAILURE, so a slow disk would keep a
//! HALF_OPEN protector from ever closing. [`Unanswered`] releases it instead, as an
//! IGNORED report would (recorded nowhere), when the future is dropped before the answer
//! leaves. Drop cannot await: the release is committed like any report (its record
//! appended under the guard) and made durable by the journal in the background.

use std::ops::Deref;

use resilient_circuit_breaker::{Decision, DecisionReason, Outcome, Permit};

use super::{Keep, Registry};

/// Releases the trial permit of an Acquire unless [`answered`](Self::answered) is
/// called first. Borrows the registry and the name (`&Registry`, `&str`) where the wait
/// is awaited in place, or owns them (`Arc<Registry>`, a name) inside a future of its own.
pub(super) struct Unanswered<R: Deref<Target = Registry>, N: Deref<Target = str>> {
    registry: R,
    name: N,
    permit: Option<Permit>,
}

impl<R: Deref<Target = Registry>, N: Deref<Target = str>> Unanswered<R, N> {
    /// Armed only when `decision` hands out a trial permit.
    pub(super) fn new(registry: R, name: N, decision: &Decision) -> Unanswered<R, N> {
        let permit = match *decision {
            Decision::Admitted {
                permit,
                reason: DecisionReason::Trial,
            } => Some(permit),
            _ => None,
        };
        Unanswered {
            registry,
            name,
            permit,
        }
    }

    /// The registry it releases into.
    pub(super) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The answer is on its way: from now on the permit is the client's to report.
    pub(super) fn answered(mut self) {
        self.permit = None;
    }
}

impl<R: Deref<Target = Registry>, N: Deref<Target = str>> Drop for Unanswered<R, N> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.registry.release(&self.name, permit);
        }
    }
}

impl Registry {
    /// Gives back a trial permit nobody will report. Synchronous: called from `Drop`.
    fn release(&self, name: &str, permit: Permit) {
        let released = self.with_entry(name, |entry, now| {
            let result = entry.protector.report(permit, Outcome::Ignored, now);
            // Like an accepted trial report: its record goes out now; nobody waits.
            let keep = if result.accepted { Keep::Now } else { Keep::Batched };
            self.commit_changes(name, entry, &result.changes, Vec::new(), keep)
                .map(|_| result.accepted)
        });
        match released {
            Ok(true) => tracing::debug!(
                name,
                permit = permit.id,
                "released the trial permit of an unanswered Acquire"
            ),
            // Already gone: expired, fenced by a new generation, or the protector deleted.
            Ok(false) | Err(crate::error::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(name, error = %e, "could not release the trial permit of an unanswered Acquire")
            }
        }
    }
}
