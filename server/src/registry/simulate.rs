//! SimulatePolicy's work (proto/SEMANTICS.md section 2a, what-if): the protector's
//! history, copied out under its entry guard, replayed through the candidate policy and
//! through the current one, each in a fresh pure machine. Nothing is changed.

use resilient_circuit_breaker::{Policy, replay};

use super::{Registry, Simulated};
use crate::error::Error;

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use resilient_circuit_breaker::{Decision, HistoryEntry, Outcome, Policy, PolicySpec, Rules, replay};
    use tokio_util::sync::CancellationToken;

    use super::Registry;
    use crate::clock::Clock;
    use crate::config::WatchConfig;
    use crate::error::Error;
    use crate::sequencer::Sequencer;
    use crate::watch::Watchers;

    const T0: Duration = Duration::from_secs(1_700_000_000);

    fn policy(cooldown: u64, failure_limit: (u32, u32), rules: Rules) -> Policy {
        let spec = PolicySpec {
            cooldown: Duration::from_secs(cooldown),
            failure_limit,
            ..PolicySpec::default()
        };
        Policy::try_with(spec, rules).expect("policy")
    }

    /// An in-memory registry whose clock starts at [`T0`] (tokio's, so paused time moves it).
    fn registry() -> Registry {
        let sequencer = Arc::new(Sequencer::new(&WatchConfig::default(), 0, 1, false));
        let watchers = Watchers::new(1, CancellationToken::new());
        Registry::new(10, sequencer, watchers, Clock::starting_at(T0), None).with_max_history(1_000)
    }

    /// Acquires and reports `outcome`, if admitted.
    async fn call(registry: &Registry, outcome: Outcome, took: Duration) {
        let acquired = registry.acquire("p").await.expect("acquire");
        if let Decision::Admitted { permit, .. } = acquired.decision {
            registry
                .report_timed("p", permit, outcome, Some(took))
                .await
                .expect("report");
        }
    }

    /// Calls a second apart, so a candidate's cooldown ends within the history: the
    /// answer is exactly a direct replay of what the daemon kept, instants included.
    #[tokio::test(start_paused = true)]
    async fn the_answer_is_a_direct_replay_of_the_history_at_its_instants() {
        let registry = registry();
        let keeping = Rules {
            history_size: 100,
            ..Rules::default()
        };
        registry
            .ensure("p", policy(3600, (5, 5), keeping))
            .await
            .expect("ensure");
        let mut kept = Vec::new();
        for i in 0..40u64 {
            let outcome = if i % 5 < 2 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            let took = Duration::from_millis(100 * (i % 4));
            call(&registry, outcome, took).await;
            kept.push(HistoryEntry {
                at: T0 + Duration::from_secs(i),
                outcome,
                duration: Some(took),
            });
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // A candidate that trips on 2 failures in a row, waits 3 s, and tries again.
        let candidate = policy(
            3,
            (5, 5),
            Rules {
                consecutive_failures: 2,
                ..Rules::default()
            },
        );
        let done = registry.simulate("p", candidate).await.expect("simulate");
        assert_eq!(done.calls, 40);
        assert_eq!(done.span, Some((T0, T0 + Duration::from_secs(39))));
        let expected = replay(candidate, &kept);
        assert!(expected.transitions.len() > 4, "{expected:?}");
        assert_eq!(done.candidate, expected);
        let (current, _) = registry.history("p").expect("history");
        assert_eq!(done.current, replay(current, &kept));
    }

    #[tokio::test]
    async fn without_a_history_there_is_nothing_to_simulate() {
        let registry = registry();
        registry
            .ensure("p", policy(1, (1, 1), Rules::default()))
            .await
            .expect("ensure");
        let candidate = policy(1, (1, 1), Rules::default());
        assert!(matches!(
            registry.simulate("p", candidate).await,
            Err(Error::FailedPrecondition { .. })
        ));
        assert!(matches!(
            registry.simulate("q", candidate).await,
            Err(Error::NotFound { .. })
        ));
    }
}
