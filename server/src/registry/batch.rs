//! ReportBatch on the registry: a batch's outcome list applied in bounded chunks, each
//! under its own hold of the protector's entry guard.

use std::time::Duration;

use resilient_circuit_breaker::{HistoryEntry, Outcome, Time};

use super::{BatchReported, Entry, Keep, Registry};
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
        self.report_batch_timed(name, generation, successes, outcomes, &[])
            .await
    }

    /// [`Registry::report_batch`] with the durations of the first `durations.len()`
    /// outcomes (at most one each; the rest have none, never slow), for the slow-call
    /// rule. The `successes` are calls that were not slow.
    pub async fn report_batch_timed(
        &self,
        name: &str,
        generation: u64,
        successes: u64,
        outcomes: &[Outcome],
        durations: &[Duration],
    ) -> Result<BatchReported, Error> {
        let timed = |start: usize, len: usize| {
            let start = start.min(durations.len());
            &durations[start..(start + len).min(durations.len())]
        };
        let mut chunks = outcomes.chunks(BATCH_CHUNK);
        let first = chunks.next().unwrap_or(&[]);
        let (mut total, mut seq) =
            self.report_chunk(name, generation, successes, first, timed(0, first.len()))?;
        let mut start = first.len();
        while chunks.len() > 0 {
            #[cfg(test)]
            between_chunks(self, name);
            tokio::task::yield_now().await;
            let Some(chunk) = chunks.next() else { break };
            let chunk_durations = timed(start, chunk.len());
            start += chunk.len();
            match self.report_chunk(name, generation, 0, chunk, chunk_durations) {
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

    /// One chunk of a batch under one hold of the entry guard; `durations` are those of
    /// the chunk's first outcomes.
    fn report_chunk(
        &self,
        name: &str,
        generation: u64,
        successes: u64,
        outcomes: &[Outcome],
        durations: &[Duration],
    ) -> Result<(BatchReported, Option<u64>), Error> {
        self.with_entry(name, |entry, now| {
            let result = if durations.is_empty() {
                entry.protector.report_batch(generation, successes, outcomes, now)
            } else {
                let timed: Vec<(Outcome, Option<Duration>)> = outcomes
                    .iter()
                    .enumerate()
                    .map(|(i, &o)| (o, durations.get(i).copied()))
                    .collect();
                entry
                    .protector
                    .report_batch_timed(generation, successes, &timed, now)
            };
            note_batch(entry, now, successes, outcomes, durations, result.accepted);
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

/// Notes a chunk's accepted outcomes in the entry's history. They are a prefix: the
/// successes (accepted or refused together, first) then the listed outcomes up to the
/// first refused one, since the fence only closes (a transition moves the generation on).
/// The successes cost O(min(successes, history_size)).
fn note_batch(
    entry: &mut Entry,
    now: Time,
    successes: u64,
    outcomes: &[Outcome],
    durations: &[Duration],
    accepted: u64,
) {
    if entry.history.is_none() || accepted == 0 {
        return;
    }
    let listed = accepted.saturating_sub(successes);
    if let Some(h) = &mut entry.history {
        h.push_many(
            HistoryEntry {
                at: now,
                outcome: Outcome::Success,
                duration: None,
            },
            successes,
        );
    }
    for (i, &outcome) in outcomes.iter().enumerate().take(listed as usize) {
        entry.note(now, outcome, durations.get(i).copied());
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
