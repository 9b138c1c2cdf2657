//! A trial permit nobody reports expires at `permit_ttl` and counts as a failure, at its
//! own instant: the protector is never stuck in HALF_OPEN, and the expired permit's late
//! report is stale.

use std::time::Duration;

use resilient_circuit_api::v1;
use support::*;

const HOUR: Duration = Duration::from_secs(3600);

#[track_caller]
fn trial(a: &v1::AcquireResponse) -> v1::Permit {
    assert_eq!(a.decision, v1::Decision::Admitted as i32, "{a:?}");
    assert_eq!(a.reason, v1::DecisionReason::Trial as i32, "{a:?}");
    let permit = a.permit.expect("permit");
    assert_ne!(permit.id, 0);
    permit
}

/// TRIALS_EXHAUSTED, returning the announced wait for the earliest permit's expiry.
#[track_caller]
fn exhausted(a: &v1::AcquireResponse, ttl: Duration) -> Duration {
    assert_eq!(a.decision, v1::Decision::Rejected as i32, "{a:?}");
    assert_eq!(a.reason, v1::DecisionReason::TrialsExhausted as i32, "{a:?}");
    let retry = a.retry_after.expect("retry_after");
    let retry = Duration::new(retry.seconds as u64, retry.nanos as u32);
    assert!(retry <= ttl, "{retry:?}");
    retry
}

fn policy_with(
    cooldown: Duration,
    ttl: Duration,
    success: Option<(u32, u32)>,
    trials: Option<u32>,
    auto: bool,
) -> v1::Policy {
    let mut p = policy(cooldown, (1, 1), success);
    p.permit_ttl = Some(duration(ttl));
    p.trial_permits = trials;
    p.auto_half_open = auto;
    p
}

#[tokio::test]
async fn an_unreported_trial_expires_as_a_failure_and_auto_half_open_recovers() {
    const NAME: &str = "expiry.auto";
    const COOLDOWN: Duration = Duration::from_millis(100);
    const TTL: Duration = Duration::from_millis(200);
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, NAME, policy_with(COOLDOWN, TTL, None, None, true)).await;
    let mut watcher = Watcher::past_snapshot(&mut client, NAME).await;
    use v1::Status::{Closed, HalfOpen, Open};
    use v1::TransitionReason as R;

    let tripped = call(&mut client, NAME, v1::Outcome::Failure).await;
    let trip = *tripped.transition.expect("trip");
    assert_eq!(watcher.next_transition().await.1, trip);
    assert_transition(&trip, Closed, Open, R::FailureLimit, 2);

    // The daemon itself moves to HALF_OPEN, at open_until exactly.
    let half_open = watcher.next_transition().await.1;
    assert_transition(&half_open, Open, HalfOpen, R::CooldownElapsed, 3);
    assert_eq!(half_open.at, trip.open_until);
    assert_eq!(half_open.open_until, None);

    let permit = trial(&acquire(&mut client, NAME).await);
    assert_eq!(permit.generation, 3);
    let expires_at = permit.expires_at.expect("a trial permit expires");

    let expired = watcher.next_transition().await.1;
    assert_transition(&expired, HalfOpen, Open, R::PermitExpired, 4);
    assert_eq!(
        expired.at,
        Some(expires_at),
        "the expiry takes effect at its own instant"
    );
    assert_eq!(expired.open_until, Some(plus(&expires_at, COOLDOWN)));
    let after_expiry = get(&mut client, NAME).await;
    let c = after_expiry.counters.expect("counters");
    assert_eq!((c.expired_permits, c.failures, c.successes), (1, 2, 0));
    assert_eq!(after_expiry.trials_in_flight, 0);

    // Never stuck: the cooldown after the expiry ends by itself too.
    let again = watcher.next_transition().await.1;
    assert_transition(&again, Open, HalfOpen, R::CooldownElapsed, 5);
    assert_eq!(again.at, expired.open_until);

    let late = report(&mut client, NAME, permit, v1::Outcome::Success).await;
    assert!(!late.accepted, "the expired permit's report is stale: {late:?}");
    assert_eq!(late.transition, None);

    let closed = call(&mut client, NAME, v1::Outcome::Success).await;
    assert!(closed.accepted);
    let close = *closed.transition.expect("a trial success closes");
    assert_transition(&close, HalfOpen, Closed, R::TrialsSucceeded, 6);
    assert_eq!(watcher.next_transition().await.1, close);
    let state = get(&mut client, NAME).await;
    assert_eq!(state.status, Closed as i32);
    let c = state.counters.expect("counters");
    assert_eq!(
        (c.expired_permits, c.failures, c.successes, c.stale_reports),
        (1, 2, 1, 1)
    );
}

#[tokio::test]
async fn an_acquire_after_the_expiry_sees_its_consequences() {
    const NAME: &str = "expiry.lazy";
    const TTL: Duration = Duration::from_millis(200);
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, NAME, policy_with(HOUR, TTL, None, None, false)).await;
    let mut watcher = Watcher::past_snapshot(&mut client, NAME).await;
    use v1::Status::{Closed, HalfOpen, Open};
    use v1::TransitionReason as R;

    let manual = set_status(&mut daemon.admin().await, NAME, Open, Some(Duration::ZERO))
        .await
        .transition
        .expect("transition");
    assert_transition(&manual, Closed, Open, R::Manual, 2);
    assert_eq!(watcher.next_transition().await.1, manual);

    let permit = trial(&acquire(&mut client, NAME).await);
    assert_eq!(permit.generation, 3);
    let expires_at = permit.expires_at.expect("a trial permit expires");
    let half_open = watcher.next_transition().await.1;
    assert_transition(&half_open, Open, HalfOpen, R::CooldownElapsed, 3);

    // The daemon announces when the slot frees; waiting for that instant is the contract.
    let wait = exhausted(&acquire(&mut client, NAME).await, TTL);
    tokio::time::sleep(wait).await;

    let rejected = acquire(&mut client, NAME).await;
    assert_eq!(rejected.decision, v1::Decision::Rejected as i32, "{rejected:?}");
    assert_eq!(rejected.reason, v1::DecisionReason::Open as i32);
    assert_eq!(rejected.status, Open as i32);
    let retry = rejected.retry_after.expect("retry_after");
    assert!(retry.seconds >= 3500 && retry.seconds < 3600, "{retry:?}");

    let state = get(&mut client, NAME).await;
    assert_eq!(state.status, Open as i32);
    assert_eq!(state.generation, 4);
    assert_eq!(state.open_until, Some(plus(&expires_at, HOUR)));
    assert_eq!(state.trials_in_flight, 0);
    let window = state.window.clone().expect("window");
    assert_eq!(window.outcomes, vec![v1::Outcome::Failure as i32]);
    let c = state.counters.expect("counters");
    assert_eq!(
        (c.expired_permits, c.failures, c.admitted, c.rejected),
        (1, 1, 1, 2)
    );

    let expired = watcher.next_transition().await.1;
    assert_transition(&expired, HalfOpen, Open, R::PermitExpired, 4);
    assert_eq!(expired.at, Some(expires_at));
    assert_eq!(expired.open_until, state.open_until);

    let late = report(&mut client, NAME, permit, v1::Outcome::Success).await;
    assert!(!late.accepted, "{late:?}");
    assert_eq!(late.status, Open as i32);
    let after = get(&mut client, NAME).await;
    assert_eq!(after.counters.expect("counters").stale_reports, 1);
    assert_eq!((after.generation, after.window), (4, Some(window)));
}

#[tokio::test]
async fn an_expired_trial_is_stale_even_in_its_own_generation() {
    const NAME: &str = "expiry.same-generation";
    const TTL: Duration = Duration::from_millis(200);
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    // A HALF_OPEN window of two and one trial at a time: one expiry decides nothing.
    ensure(
        &mut client,
        NAME,
        policy_with(HOUR, TTL, Some((2, 2)), Some(1), false),
    )
    .await;
    use v1::Status::{HalfOpen, Open};

    let manual = daemon.set_status(NAME, HalfOpen).await;
    assert_eq!(manual.generation, 2);
    let first = trial(&acquire(&mut client, NAME).await);
    let wait = exhausted(&acquire(&mut client, NAME).await, TTL);
    tokio::time::sleep(wait).await;
    let second = trial(&acquire(&mut client, NAME).await);
    assert_eq!((first.generation, second.generation), (2, 2));
    assert!(second.id > first.id);

    let late = report(&mut client, NAME, first, v1::Outcome::Success).await;
    assert!(!late.accepted, "{late:?}");
    assert_eq!(late.status, HalfOpen as i32);
    let state = get(&mut client, NAME).await;
    assert_eq!(state.generation, 2);
    assert_eq!(state.trials_in_flight, 1);
    assert_eq!(
        state.window.expect("window").outcomes,
        vec![v1::Outcome::Failure as i32]
    );
    let c = state.counters.expect("counters");
    assert_eq!((c.expired_permits, c.stale_reports, c.failures), (1, 1, 1));

    // The expiry's failure stays in the trial window: a success now fills it short of 2/2.
    let decided = report(&mut client, NAME, second, v1::Outcome::Success).await;
    assert!(decided.accepted);
    let t = decided.transition.expect("the full window decides");
    assert_transition(&t, HalfOpen, Open, v1::TransitionReason::TrialsFailed, 3);
}

#[tokio::test]
async fn one_success_and_one_expiry_fill_the_trial_window_and_reopen() {
    const NAME: &str = "expiry.mixed";
    // Long enough for the reported trial to be reported in time on a loaded machine.
    const TTL: Duration = Duration::from_millis(500);
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    ensure(
        &mut client,
        NAME,
        policy_with(HOUR, TTL, Some((2, 2)), Some(2), false),
    )
    .await;
    let mut watcher = Watcher::past_snapshot(&mut client, NAME).await;
    use v1::Status::{Closed, HalfOpen, Open};
    use v1::TransitionReason as R;

    let manual = daemon.set_status(NAME, HalfOpen).await;
    assert_transition(&manual, Closed, HalfOpen, R::Manual, 2);
    assert_eq!(watcher.next_transition().await.1, manual);
    let reported = trial(&acquire(&mut client, NAME).await);
    let abandoned = trial(&acquire(&mut client, NAME).await);
    let ok = report(&mut client, NAME, reported, v1::Outcome::Success).await;
    assert!(ok.accepted && ok.transition.is_none(), "{ok:?}");
    assert_eq!(ok.status, HalfOpen as i32);

    let expired = watcher.next_transition().await.1;
    assert_transition(&expired, HalfOpen, Open, R::PermitExpired, 3);
    let at = abandoned.expires_at.expect("a trial permit expires");
    assert_eq!(expired.at, Some(at));
    assert_eq!(expired.open_until, Some(plus(&at, HOUR)));

    let state = get(&mut client, NAME).await;
    assert_eq!(state.status, Open as i32);
    let window = state.window.expect("window");
    assert_eq!(
        window.outcomes,
        vec![v1::Outcome::Success as i32, v1::Outcome::Failure as i32],
        "OPEN keeps the trial window it reopened with"
    );
    assert_eq!((window.size, window.successes, window.failures), (2, 1, 1));
    let c = state.counters.expect("counters");
    assert_eq!((c.expired_permits, c.successes, c.failures), (1, 1, 1));
}
