//! The what-if replay (proto/SEMANTICS.md section 2a) against a direct step-by-step
//! replay through the reference model, and the bounded history.

use proptest::prelude::*;

use super::model::Model;
use super::props::{config, inputs};
use super::*;
use crate::{History, HistoryEntry, replay};

/// Replays `entries` through the reference model, one call each, as section 2a says.
fn direct(spec: PolicySpec, rules: Rules, entries: &[HistoryEntry]) -> (Vec<Transition>, u64) {
    let mut m = Model::new(spec, rules);
    let (mut all, mut rejected) = (Vec::new(), 0);
    for e in entries {
        let (decision, changes, would_reject) = m.acquire(e.at);
        all.extend(transitions(&changes));
        match decision {
            Decision::Admitted { permit, .. } if would_reject.is_none() => {
                let (_, _, changes) = m.report(permit, e.outcome, e.duration, e.at);
                all.extend(transitions(&changes));
            }
            _ => rejected += 1,
        }
    }
    (all, rejected)
}

fn entries() -> impl Strategy<Value = Vec<HistoryEntry>> {
    let outcome = prop_oneof![
        4 => Just(Outcome::Success),
        4 => Just(Outcome::Failure),
        1 => Just(Outcome::Ignored)
    ];
    let took = prop::option::of((0u64..=80).prop_map(ms));
    let step = prop_oneof![3 => 0u64..=50, 1 => 50u64..=3_000];
    prop::collection::vec((step, outcome, took), 0..200).prop_map(|calls| {
        let mut now = T0;
        calls
            .into_iter()
            .map(|(step, outcome, duration)| {
                now += ms(step);
                HistoryEntry {
                    at: now,
                    outcome,
                    duration,
                }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn a_replay_is_the_direct_replay((spec, rules) in inputs(), history in entries()) {
        let policy = Policy::try_with(spec, rules).expect("generated policies are valid");
        let got = replay(policy, &history);
        let (expected, rejected) = direct(spec, rules, &history);
        prop_assert_eq!(&got.transitions, &expected);
        prop_assert_eq!(got.rejected, rejected);
        prop_assert_eq!(got.admitted + got.rejected, history.len() as u64);
    }
}

#[test]
fn a_replay_answers_transitions_with_instants_and_rejections() {
    let policy = policy(|s| {
        s.failure_limit = (2, 2);
        s.cooldown = secs(1);
    });
    let entry = |n, outcome| HistoryEntry {
        at: at(n),
        outcome,
        duration: None,
    };
    let history = [
        entry(0, Outcome::Failure),
        entry(10, Outcome::Failure),
        entry(20, Outcome::Success),
        entry(500, Outcome::Success),
        entry(1_010, Outcome::Success),
        entry(1_020, Outcome::Success),
    ];
    let r = replay(policy, &history);
    let seen: Vec<_> = r.transitions.iter().map(|t| (t.to, t.at)).collect();
    assert_eq!(
        seen,
        vec![
            (Status::Open, at(10)),
            (Status::HalfOpen, at(1_010)),
            (Status::Closed, at(1_020)),
        ]
    );
    assert_eq!((r.rejected, r.admitted), (2, 4));
}

#[test]
fn a_history_keeps_only_its_newest_entries() {
    let mut h = History::new(3);
    for n in 0..5 {
        h.push(HistoryEntry {
            at: at(n),
            outcome: Outcome::Success,
            duration: None,
        });
    }
    let kept: Vec<_> = h.iter().map(|e| e.at).collect();
    assert_eq!(kept, vec![at(2), at(3), at(4)]);
    let mut off = History::new(0);
    off.push(h.iter().next().copied().unwrap());
    assert!(off.is_empty());
}

#[test]
fn a_resized_history_keeps_its_newest_entries() {
    let entry = |n| HistoryEntry {
        at: at(n),
        outcome: Outcome::Success,
        duration: None,
    };
    let mut h = History::new(4);
    for n in 0..4 {
        h.push(entry(n));
    }
    h.resize(2);
    assert_eq!(h.iter().map(|e| e.at).collect::<Vec<_>>(), vec![at(2), at(3)]);
    h.resize(3);
    h.push(entry(4));
    h.push(entry(5));
    assert_eq!(
        h.iter().map(|e| e.at).collect::<Vec<_>>(),
        vec![at(3), at(4), at(5)]
    );
    // A batch's successes cost at most the capacity, however many it claims.
    h.push_many(entry(6), u64::MAX);
    assert_eq!(h.iter().map(|e| e.at).collect::<Vec<_>>(), vec![at(6); 3]);
    assert_eq!(h.capacity(), 3);
}
