//! The cached model's unit tests: lives, histories, slow calls and the clock's schedule.

use std::time::Duration;

use resilient_circuit_api::v1;

use super::{CLOCK_EVERY, Cache, clock_due};

fn pending(cache: &Cache) -> Vec<(u64, u64)> {
    cache
        .take("p")
        .iter()
        .map(|b| (b.generation, b.successes))
        .collect()
}

/// The protector as created at `mod_revision`: CLOSED, generation 1.
fn created(mod_revision: u64) -> v1::Protector {
    v1::Protector {
        generation: 1,
        status: v1::Status::Closed as i32,
        mod_revision,
        ..v1::Protector::default()
    }
}

#[test]
fn successes_of_a_life_that_ended_are_dropped_whichever_news_comes_first() {
    let cache = Cache::new(Duration::from_secs(2));
    cache.snapshot(&created(1), true);
    // Deleted at revision 5, the stream says so first: the old life's successes go.
    (0..3).for_each(|_| assert!(cache.success_timed(1, None)));
    cache.deleted(5);
    assert_eq!(pending(&cache), vec![]);
    // Created again at 6 (an EnsureProtector's answer); a success of the new life.
    cache.snapshot(&created(6), true);
    assert!(cache.success_timed(1, None));
    // The stream's news of revisions the model has passed changes nothing.
    cache.deleted(5);
    cache.snapshot(&created(6), true);
    assert_eq!(pending(&cache), vec![(1, 1)]);
    // Deleted at 7 and created at 8: the answer re-creating it comes before the
    // stream's DELETED, which must not take the new life's success with it.
    assert!(cache.success_timed(1, None));
    cache.snapshot(&created(8), true);
    assert!(cache.success_timed(1, None));
    cache.deleted(7);
    assert_eq!(pending(&cache), vec![(1, 1)], "the new life's success stays");
    assert_eq!(cache.take_dropped(), 4);
}

#[test]
fn another_daemon_history_drops_pending_successes_and_starts_lives_over() {
    let cache = Cache::new(Duration::from_secs(2));
    cache.synced(1);
    cache.snapshot(&created(900), true);
    (0..3).for_each(|_| assert!(cache.success_timed(1, None)));
    // The daemon restarted without its state: SYNCED of another history. Its
    // generation 1 is not the old one's: the pending successes go.
    cache.synced(2);
    assert_eq!(pending(&cache), vec![]);
    assert_eq!(cache.take_dropped(), 3);
    // Its revisions start over: a creation at revision 4 (below the old life's 900)
    // is a new life, which drops what was counted before it.
    assert!(cache.success_timed(1, None));
    cache.snapshot(&created(4), true);
    assert_eq!(pending(&cache), vec![]);
    assert_eq!(cache.take_dropped(), 1, "one more dropped");
    // The same history again changes nothing.
    assert!(cache.success_timed(1, None));
    cache.synced(2);
    assert_eq!(pending(&cache), vec![(1, 1)]);
}

#[test]
fn slow_successes_of_a_life_that_ended_are_counted_lost_too() {
    let cache = Cache::new(Duration::from_secs(2));
    cache.learn_policy(Some(&v1::Policy {
        slow_call_duration: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
        slow_call_limit: Some(v1::Fraction {
            numerator: 1,
            denominator: 2,
        }),
        ..v1::Policy::default()
    }));
    cache.snapshot(&created(1), true);
    // Two quick successes are counted, two slow ones listed with their durations.
    for took in [1, 2, 1500, 3000] {
        assert!(cache.success_timed(1, Some(Duration::from_millis(took))));
    }
    cache.deleted(2);
    assert!(cache.take("p").is_empty(), "nothing of the old life is sent");
    assert_eq!(cache.take_dropped(), 4);
}

#[test]
fn the_clock_is_read_for_each_protector_however_a_thread_interleaves_them() {
    // Runs of one protector, strict alternation, and uneven mixes: per protector, no
    // more than CLOCK_EVERY - 1 admissions go by without a clock read.
    let patterns: [&dyn Fn(u32) -> usize; 3] = [&|i| (i / 100) as usize % 2, &|i| i as usize % 2, &|i| {
        usize::from(i % 3 == 0)
    }];
    for (p, pick) in patterns.iter().enumerate() {
        let mut unchecked = [0u32; 2];
        for i in 0..20 * CLOCK_EVERY {
            let which = pick(i);
            // Two distinct addresses stand for two protectors.
            if clock_due(0x1000 + which * 64) {
                unchecked[which] = 0;
            } else {
                unchecked[which] += 1;
            }
            assert!(unchecked[which] < CLOCK_EVERY, "pattern {p}, admission {i}");
        }
    }
}
