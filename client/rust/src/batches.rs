//! A cached protector's batched reports (see "Outcomes" in the `cached` module's note):
//! the flusher that sends the pending successes every [`FLUSH_INTERVAL`], and a
//! FAILURE sent at once after them, whose answer updates the model before the call
//! returns.

use std::sync::Arc;
use std::time::Duration;

use resilient_circuit_api::{convert, v1};
use resilient_circuit_breaker::Outcome;

use crate::cached::{Cache, FLUSH_INTERVAL, outcome_batch};
use crate::transport::{Connection, Stats};
use crate::watcher::{Notifier, StatusChange};

/// The outcome a report sends after the pending successes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Last {
    pub(crate) generation: u64,
    pub(crate) outcome: Outcome,
    /// How long the call took, when measured.
    pub(crate) duration: Option<Duration>,
}

/// What a cached protector's reports need.
#[derive(Debug, Clone)]
pub(crate) struct Reporter {
    pub(crate) name: String,
    pub(crate) connection: Arc<Connection>,
    pub(crate) cache: Arc<Cache>,
    pub(crate) notifier: Arc<Notifier>,
}

impl Reporter {
    /// Sends the pending successes and, if given, one more outcome of `generation`, with
    /// its duration when the call was measured. Answers the result of the last batch,
    /// when the daemon answered it.
    pub(crate) async fn send(&self, last: Option<Last>) -> Option<v1::OutcomeBatchResult> {
        let _sending = self.cache.sending.lock().await;
        let stats = &self.connection.stats;
        let dropped = self.cache.take_dropped();
        if dropped > 0 {
            Stats::add(&stats.batched_lost, dropped);
            tracing::warn!(name = %self.name, outcomes = dropped, "successes of a life of the protector that ended (deleted, or created again) are dropped");
        }
        let mut batches = self.cache.take(&self.name);
        if let Some(Last {
            generation,
            outcome,
            duration,
        }) = last
        {
            let outcome = v1::Outcome::from(outcome) as i32;
            let b = match batches.last_mut().filter(|b| b.generation == generation) {
                Some(b) => b,
                None => {
                    batches.push(outcome_batch(&self.name, generation, 0));
                    batches.last_mut().expect("just pushed")
                }
            };
            // Durations go by position: only when every outcome listed before has one
            // (they are all slow successes, each with its duration).
            if let Some(d) = duration.filter(|_| b.durations.len() == b.outcomes.len()) {
                b.durations.push(convert::duration(d));
            }
            b.outcomes.push(outcome);
        }
        if batches.is_empty() {
            return None;
        }
        let outcomes: u64 = batches
            .iter()
            .map(|b| b.successes + b.outcomes.len() as u64)
            .sum();
        let timeout = self.connection.config.request_timeout;
        let why = if self.connection.link.is_down() {
            "the link to the daemon is down".to_owned()
        } else {
            // Cloned for each replica asked: one, unless the current one cannot be reached.
            let send = self
                .connection
                .ask(timeout, |replica| replica.report_batch(batches.clone()));
            match send.await {
                Ok(answer) => {
                    for r in &answer.results {
                        if let Some(e) = &r.error {
                            tracing::warn!(name = %self.name, code = e.code, message = %e.message, "the daemon refused a batch of outcomes");
                            continue;
                        }
                        Stats::add(&stats.batched_accepted, r.accepted);
                        Stats::add(&stats.batched_stale, r.stale);
                        let transition = r.transition.as_ref().and_then(|t| convert::transition(t).ok());
                        self.cache.answered(r, transition.as_ref());
                        if let Some(t) = transition {
                            let change = StatusChange::announced(&self.name, &t);
                            self.notifier.transition(change, answer.revision);
                        }
                    }
                    return answer.results.into_iter().last();
                }
                Err(why) => why.to_string(),
            }
        };
        Stats::add(&stats.batched_lost, outcomes);
        tracing::warn!(name = %self.name, outcomes, why, "outcomes of locally admitted calls could not reach the daemon");
        None
    }

    /// Sends pending successes every [`FLUSH_INTERVAL`], or at once when a counter reaches `FLUSH_AT`,
    /// until aborted.
    pub(crate) async fn flush_forever(self) {
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.cache.flush_wanted() => {}
            }
            self.send(None).await;
        }
    }
}
