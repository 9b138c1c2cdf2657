//! ReportBatch on the registry: a batch's outcome list applied in bounded chunks, each
//! under its own hold of the protector's entry guard.

use resilient_circuit_breaker::Outcome;

use super::{BatchReported, Keep, Registry};
use crate::error::Error;

/// Outcomes of one ReportBatch entry applied under one hold of a protector's entry guard:
/// the work per hold is bounded whatever the list's length.
pub const BATCH_CHUNK: usize = 4096;

impl Registry {
    /// Records a batch of outcomes of calls a client admitted locally in `generation`.
    ///
    /// The list is applied `BATCH_CHUNK` outcomes per hold of the entry guard (the
    /// successes with the first chunk, in O(window) whatever their number), releasing it
    /// and yielding between chunks, so an Acquire or Report of the same protector never
    /// waits for a whole batch. The generation fence holds across chunks: the machine
    /// judges every outcome against the batch's generation, so once the protector moved
    /// on, the rest is stale. A protector deleted between chunks makes the rest stale.
    pub async fn report_batch(
        &self,
        name: &str,
        generation: u64,
        successes: u64,
        outcomes: &[Outcome],
    ) -> Result<BatchReported, Error> {
        let mut chunks = outcomes.chunks(BATCH_CHUNK);
        let (mut total, mut seq) =
            self.report_chunk(name, generation, successes, chunks.next().unwrap_or(&[]))?;
        while chunks.len() > 0 {
            #[cfg(test)]
            between_chunks(self, name);
            tokio::task::yield_now().await;
            let Some(chunk) = chunks.next() else { break };
            match self.report_chunk(name, generation, 0, chunk) {
                Ok((reported, chunk_seq)) => {
                    total = BatchReported {
                        accepted: total.accepted.saturating_add(reported.accepted),
                        stale: total.stale.saturating_add(reported.stale),
                        transition: total.transition.or(reported.transition),
                        ..reported
                    };
                    seq = chunk_seq.max(seq);
                }
                Err(Error::NotFound { .. }) => {
                    let rest = chunk.len() + chunks.map(<[Outcome]>::len).sum::<usize>();
                    total.stale = total.stale.saturating_add(rest as u64);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        self.durable(seq).await?;
        Ok(total)
    }

    /// One chunk of a batch under one hold of the entry guard.
    fn report_chunk(
        &self,
        name: &str,
        generation: u64,
        successes: u64,
        outcomes: &[Outcome],
    ) -> Result<(BatchReported, Option<u64>), Error> {
        self.with_entry(name, |entry, now| {
            let result = entry.protector.report_batch(generation, successes, outcomes, now);
            let committed = self.commit_changes(name, entry, &result.changes, Vec::new(), Keep::Batched)?;
            Ok((
                BatchReported {
                    accepted: result.accepted,
                    stale: result.stale,
                    status: entry.protector.status(),
                    generation: entry.protector.generation(),
                    transition: result.transition,
                    revision: committed.revision,
                },
                committed.seq,
            ))
        })
    }
}

#[cfg(test)]
type Hook = Box<dyn FnMut(&Registry, &str)>;

#[cfg(test)]
thread_local! {
    /// What a test runs between two chunks of a batch (on the batch's own thread).
    pub(super) static BETWEEN_CHUNKS: std::cell::RefCell<Option<Hook>> = std::cell::RefCell::new(None);
}

/// Runs the test's hook after the guard is released, before the next chunk.
#[cfg(test)]
fn between_chunks(registry: &Registry, name: &str) {
    BETWEEN_CHUNKS.with(|hook| {
        if let Some(hook) = hook.borrow_mut().as_mut() {
            hook(registry, name);
        }
    });
}
