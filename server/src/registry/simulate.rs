//! SimulatePolicy's work (proto/SEMANTICS.md section 2a, what-if): the protector's
//! history, copied out under its entry guard, replayed through the candidate policy and
//! through the current one, each in a fresh pure machine. Nothing is changed.

use resilient_circuit_breaker::{Policy, Replay, Time, replay};

use super::Registry;
use crate::error::Error;

/// What a what-if found.
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

impl Registry {
    /// Replays `name`'s history through `candidate` and through its current policy.
    /// NOT_FOUND for an unknown protector; FAILED_PRECONDITION when its policy keeps no
    /// history (`history_size` 0), since there is nothing to judge a candidate on.
    pub async fn simulate(&self, name: &str, candidate: Policy) -> Result<Simulated, Error> {
        // Read first: the history copied after it reflects every change up to it.
        let revision = self.revision();
        let (current, history) = self.history(name)?;
        if current.rules().history_size == 0 {
            return Err(Error::failed_precondition(
                name,
                format!(
                    "protector {name:?} keeps no history to simulate on: give its policy a \
                     history_size (UpdatePolicy, or [[protectors]] in --config), then let outcomes come in"
                ),
            ));
        }
        // Two replays of up to 1,000,000 outcomes take tens of milliseconds: on a
        // blocking thread, so the runtime's workers keep serving calls meanwhile.
        let replayed = tokio::task::spawn_blocking(move || {
            let span = history.first().zip(history.last()).map(|(a, b)| (a.at, b.at));
            Simulated {
                calls: history.len() as u64,
                span,
                candidate: replay(candidate, &history),
                current: replay(current, &history),
                revision,
            }
        });
        replayed
            .await
            .map_err(|e| Error::internal(format!("the what-if replay failed: {e}")))
    }
}
