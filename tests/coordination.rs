//! Many clients, one protector: the daemon is the single authority, so the trip point,
//! the fencing of stale reports and the number of trials admitted at the instant
//! HALF_OPEN begins follow the rules exactly, however the calls interleave.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use resilient_circuit_api::v1;
use support::*;
use tokio::sync::Barrier;

const CLIENTS: usize = 50;
const HOUR: Duration = Duration::from_secs(3600);
/// What every client holds after acquiring in the first CLOSED.
const GENERATION_ONE: v1::Permit = v1::Permit {
    generation: 1,
    id: 0,
    expires_at: None,
};

/// Runs `f` once per client, each in its own task, all released together by one barrier
/// so the daemon sees the calls as concurrently as the machine allows. Returns the
/// clients with the results, in client order.
async fn on_all<T, F, Fut>(clients: Vec<ProtectorClient>, f: F) -> Vec<(ProtectorClient, T)>
where
    T: Send + 'static,
    F: Fn(usize, ProtectorClient) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = (ProtectorClient, T)> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(clients.len()));
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let (barrier, f) = (Arc::clone(&barrier), f.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                f(i, client).await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("client task"));
    }
    out
}

fn counters(p: &v1::Protector) -> v1::Counters {
    p.counters.expect("counters")
}

/// 50 clients on 50 connections, each acquires once concurrently; every permit is a
/// CLOSED one of generation 1.
async fn fifty_admitted(daemon: &Daemon, name: &'static str) -> Vec<ProtectorClient> {
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        clients.push(daemon.protectors().await);
    }
    let admitted = on_all(clients, move |_, mut c| async move {
        let a = acquire(&mut c, name).await;
        (c, a)
    })
    .await;
    admitted
        .into_iter()
        .map(|(c, a)| {
            assert_eq!(a.decision, v1::Decision::Admitted as i32, "{a:?}");
            assert_eq!(a.reason, v1::DecisionReason::Closed as i32);
            assert_eq!(a.permit, Some(GENERATION_ONE));
            c
        })
        .collect()
}

/// After the trip: every client is rejected, and every client's generation-1 permit,
/// reported again, is stale. Returns the clients.
async fn everyone_is_fenced_out(clients: Vec<ProtectorClient>, name: &'static str) -> Vec<ProtectorClient> {
    let answered = on_all(clients, move |_, mut c| async move {
        let a = acquire(&mut c, name).await;
        (c, a)
    })
    .await;
    let clients: Vec<ProtectorClient> = answered
        .into_iter()
        .map(|(c, a)| {
            assert_eq!(a.decision, v1::Decision::Rejected as i32, "{a:?}");
            assert_eq!(a.reason, v1::DecisionReason::Open as i32);
            assert_eq!(a.status, v1::Status::Open as i32);
            assert_eq!(a.permit, None);
            let retry = a.retry_after.expect("retry_after while OPEN");
            assert!(retry.seconds > 3000 && retry.seconds <= 3600, "{retry:?}");
            c
        })
        .collect();
    let reported = on_all(clients, move |_, mut c| async move {
        let r = report(&mut c, name, GENERATION_ONE, v1::Outcome::Failure).await;
        (c, r)
    })
    .await;
    reported
        .into_iter()
        .map(|(c, r)| {
            assert!(!r.accepted, "{r:?}");
            assert_eq!(r.status, v1::Status::Open as i32);
            assert_eq!(r.transition, None);
            c
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_trip_on_exactly_the_fifth_failure_after_a_window_of_successes() {
    const NAME: &str = "coordination.ordered";
    let daemon = Daemon::start().await;
    let mut admin_view = daemon.protectors().await;
    ensure(&mut admin_view, NAME, policy(HOUR, (5, 10), None)).await;
    let mut watcher = Watcher::open(&mut admin_view, watch_all()).await;
    let (_, synced) = watcher.snapshot().await;

    let mut first = fifty_admitted(&daemon, NAME).await;
    let rest = first.split_off(10);

    // Ten successes fill the window first, so the order of the failures cannot matter.
    let successes = on_all(first, move |_, mut c| async move {
        let r = report(&mut c, NAME, GENERATION_ONE, v1::Outcome::Success).await;
        (c, r)
    })
    .await;
    for (_, r) in &successes {
        assert!(r.accepted && r.transition.is_none(), "{r:?}");
        assert_eq!(r.status, v1::Status::Closed as i32);
    }
    let full = get(&mut admin_view, NAME).await;
    assert_eq!(
        full.window.as_ref().map(|w| (w.successes, w.failures)),
        Some((10, 0))
    );

    // 40 failures race; the window rule trips on the fifth one recorded, whichever it is.
    let failures = on_all(rest, move |_, mut c| async move {
        let r = report(&mut c, NAME, GENERATION_ONE, v1::Outcome::Failure).await;
        (c, r)
    })
    .await;
    let accepted: Vec<&v1::ReportResponse> = failures.iter().map(|(_, r)| r).filter(|r| r.accepted).collect();
    assert_eq!(
        accepted.len(),
        5,
        "exactly five failures recorded before the trip"
    );
    let tripping: Vec<&v1::ReportResponse> = accepted
        .iter()
        .copied()
        .filter(|r| r.transition.is_some())
        .collect();
    assert_eq!(tripping.len(), 1);
    for r in accepted.iter().filter(|r| r.transition.is_none()) {
        assert_eq!(r.status, v1::Status::Closed as i32, "{r:?}");
    }
    for (_, r) in failures.iter().filter(|(_, r)| !r.accepted) {
        assert_eq!(r.status, v1::Status::Open as i32);
        assert_eq!(r.transition, None);
    }
    let trip = tripping[0].transition.as_deref().copied().expect("transition");
    assert_eq!(
        (trip.from, trip.to, trip.reason, trip.generation),
        (
            v1::Status::Closed as i32,
            v1::Status::Open as i32,
            v1::TransitionReason::FailureLimit as i32,
            2
        )
    );
    let at = trip.at.expect("at");
    assert_eq!(trip.open_until, Some(plus(&at, HOUR)));

    let tripped = get(&mut admin_view, NAME).await;
    use v1::Outcome::{Failure as F, Success as S};
    let window = tripped.window.clone().expect("window");
    assert_eq!(
        window.outcomes,
        [S, S, S, S, S, F, F, F, F, F].map(|o| o as i32).to_vec(),
        "OPEN keeps the window it tripped with"
    );
    assert_eq!((window.size, window.successes, window.failures), (10, 5, 5));
    assert_eq!(tripped.status, v1::Status::Open as i32);
    assert_eq!(tripped.generation, 2);
    assert_eq!(tripped.consecutive_failures, 5);
    assert_eq!(tripped.open_until, trip.open_until);
    assert_eq!(tripped.mod_revision, tripping[0].revision);
    let c = counters(&tripped);
    assert_eq!(
        (c.admitted, c.rejected, c.successes, c.failures, c.stale_reports),
        (50, 0, 10, 5, 35)
    );

    let (revision, event) = watcher.next_transition().await;
    assert_eq!(revision, synced + 1);
    assert_eq!(revision, tripping[0].revision);
    assert_eq!(event, trip);

    let everyone = successes.into_iter().chain(failures).map(|(c, _)| c).collect();
    let clients = everyone_is_fenced_out(everyone, NAME).await;
    assert_eq!(clients.len(), CLIENTS);
    let after = get(&mut admin_view, NAME).await;
    let c = counters(&after);
    assert_eq!((c.admitted, c.rejected, c.stale_reports), (50, 50, 85));
    assert_eq!(after.window, tripped.window);
    assert_eq!(after.mod_revision, revision);

    // Nothing else was published for the protector: the next event is the marker's.
    ensure(&mut admin_view, "coordination.marker", v1::Policy::default()).await;
    let marker = watcher.next().await;
    assert_eq!(marker.revision, revision + 1);
    assert!(
        matches!(marker.event, Some(v1::watch_event::Event::Created(_))),
        "{marker:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_racing_mixed_outcomes_trip_at_the_first_failing_window() {
    const NAME: &str = "coordination.mixed";
    let daemon = Daemon::start().await;
    let mut admin_view = daemon.protectors().await;
    ensure(&mut admin_view, NAME, policy(HOUR, (5, 10), None)).await;
    let mut watcher = Watcher::open(&mut admin_view, watch_all()).await;
    let (_, synced) = watcher.snapshot().await;

    // 30 failures and 20 successes in one race. Whatever the order, some full window
    // ending in a failure holds 5 of them (positions 11..=50 hold at least 20 failures,
    // so one of their four blocks of ten holds 5), so the protector must trip.
    let admitted = fifty_admitted(&daemon, NAME).await;
    let outcome_of = |i: usize| {
        if i % 5 < 3 {
            v1::Outcome::Failure
        } else {
            v1::Outcome::Success
        }
    };
    let reported = on_all(admitted, move |i, mut c| async move {
        let r = report(&mut c, NAME, GENERATION_ONE, outcome_of(i)).await;
        (c, r)
    })
    .await;

    let tripping: Vec<(usize, &v1::ReportResponse)> = reported
        .iter()
        .enumerate()
        .filter(|(_, (_, r))| r.transition.is_some())
        .map(|(i, (_, r))| (i, r))
        .collect();
    assert_eq!(tripping.len(), 1, "exactly one report trips");
    let (tripper, trip_report) = tripping[0];
    assert_eq!(
        outcome_of(tripper),
        v1::Outcome::Failure,
        "only a failure checks the rule"
    );
    let trip = trip_report.transition.as_deref().copied().expect("transition");
    assert_eq!(trip.reason, v1::TransitionReason::FailureLimit as i32);
    assert_eq!(
        (trip.from, trip.to, trip.generation),
        (v1::Status::Closed as i32, v1::Status::Open as i32, 2)
    );

    let accepted = reported.iter().filter(|(_, r)| r.accepted).count() as u64;
    for (_, r) in reported
        .iter()
        .filter(|(_, r)| r.accepted && r.transition.is_none())
    {
        assert_eq!(
            r.status,
            v1::Status::Closed as i32,
            "accepted before the trip: {r:?}"
        );
    }
    let tripped = get(&mut admin_view, NAME).await;
    let c = counters(&tripped);
    assert_eq!(
        c.successes + c.failures,
        accepted,
        "every accepted report was recorded"
    );
    assert_eq!(c.stale_reports, CLIENTS as u64 - accepted);
    assert_eq!(tripped.generation, 2);

    // The window OPEN kept is the last ten recorded outcomes, ending with the tripping
    // failure. No earlier failure may have met the rule: for a failure at position i of
    // the kept window, the window it was judged by held at least the failures in
    // outcomes[..=i], and was full when at least ten outcomes had been recorded by then.
    let window = tripped.window.expect("window");
    let failed: Vec<bool> = window
        .outcomes
        .iter()
        .map(|o| *o == v1::Outcome::Failure as i32)
        .collect();
    assert_eq!(failed.len(), 10);
    assert_eq!(window.failures, failed.iter().filter(|f| **f).count() as u32);
    assert!(window.failures >= 5, "{window:?}");
    assert!(failed[9], "the last outcome recorded is the tripping failure");
    for i in 0..9 {
        let recorded_then = accepted - (9 - i as u64);
        let seen = failed[..=i].iter().filter(|f| **f).count();
        if failed[i] && recorded_then >= 10 {
            assert!(
                seen < 5,
                "the failure at window position {i} should already have tripped: {window:?}"
            );
        }
    }

    let (revision, event) = watcher.next_transition().await;
    assert_eq!(revision, synced + 1);
    assert_eq!(revision, trip_report.revision);
    assert_eq!(event, trip);

    let clients = everyone_is_fenced_out(reported.into_iter().map(|(c, _)| c).collect(), NAME).await;
    assert_eq!(clients.len(), CLIENTS);
    let after = get(&mut admin_view, NAME).await;
    assert_eq!(counters(&after).stale_reports, c.stale_reports + CLIENTS as u64);
    assert_eq!(after.mod_revision, revision);
}

const CONNECTIONS: usize = 8;
const PER_CONNECTION: usize = 125;

/// Resets to OPEN with `open_for` 0, so the next Acquire begins HALF_OPEN; returns the
/// generation of that OPEN.
async fn reopen_now(daemon: &Daemon, name: &str) -> u64 {
    let mut admin = daemon.admin().await;
    let resp = set_status(&mut admin, name, v1::Status::Open, Some(Duration::ZERO)).await;
    let t = resp.transition.expect("transition");
    assert_eq!(
        (t.to, t.reason),
        (v1::Status::Open as i32, v1::TransitionReason::Manual as i32)
    );
    assert_eq!(t.open_until, t.at, "open_for 0 ends the cooldown at once");
    t.generation
}

/// 1,000 Acquires over 8 connections, all released by one barrier.
async fn thousand_acquires(connections: &[ProtectorClient], name: &'static str) -> Vec<v1::AcquireResponse> {
    let barrier = Arc::new(Barrier::new(CONNECTIONS * PER_CONNECTION));
    let mut tasks = Vec::with_capacity(CONNECTIONS * PER_CONNECTION);
    for conn in connections {
        for _ in 0..PER_CONNECTION {
            let (mut c, barrier) = (conn.clone(), Arc::clone(&barrier));
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                acquire(&mut c, name).await
            }));
        }
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("acquire task"));
    }
    out
}

async fn half_open_admits_exactly(trial_permits: u32, name: &'static str) {
    const TTL: Duration = Duration::from_secs(60);
    let daemon = Daemon::start().await;
    let mut view = daemon.protectors().await;
    let mut p = policy(HOUR, (1, 1), None);
    p.trial_permits = Some(trial_permits);
    p.permit_ttl = Some(duration(TTL));
    ensure(&mut view, name, p).await;
    let mut watcher = Watcher::past_snapshot(&mut view, name).await;
    let mut connections = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        connections.push(daemon.protectors().await);
    }

    let n = trial_permits as usize;
    let total = CONNECTIONS * PER_CONNECTION;
    let mut generation = reopen_now(&daemon, name).await;
    let (mut last_revision, _) = watcher.next_transition().await;
    for run in 1..=5u64 {
        let answers = thousand_acquires(&connections, name).await;
        let admitted: Vec<v1::Permit> = answers
            .iter()
            .filter(|a| a.decision == v1::Decision::Admitted as i32)
            .map(|a| {
                assert_eq!(a.reason, v1::DecisionReason::Trial as i32, "{a:?}");
                assert_eq!(a.status, v1::Status::HalfOpen as i32);
                a.permit.expect("permit")
            })
            .collect();
        assert_eq!(admitted.len(), n, "run {run}: admitted trials");
        let ids: HashSet<u64> = admitted.iter().map(|p| p.id).collect();
        assert_eq!(ids.len(), n, "trial ids are distinct");
        for permit in &admitted {
            assert_ne!(permit.id, 0);
            assert_eq!(permit.generation, generation + 1);
            assert!(permit.expires_at.is_some());
        }
        for a in answers
            .iter()
            .filter(|a| a.decision != v1::Decision::Admitted as i32)
        {
            assert_eq!(a.decision, v1::Decision::Rejected as i32);
            assert_eq!(a.reason, v1::DecisionReason::TrialsExhausted as i32, "{a:?}");
            assert_eq!(a.status, v1::Status::HalfOpen as i32);
            let retry = a.retry_after.expect("retry_after: the earliest permit's expiry");
            assert!(retry.seconds >= 50 && retry.seconds <= 60, "{retry:?}");
        }

        let (revision, t) = watcher.next_transition().await;
        assert_eq!(revision, last_revision + 1);
        assert_eq!(
            (t.from, t.to, t.reason, t.generation),
            (
                v1::Status::Open as i32,
                v1::Status::HalfOpen as i32,
                v1::TransitionReason::CooldownElapsed as i32,
                generation + 1
            )
        );
        let state = get(&mut view, name).await;
        assert_eq!(state.status, v1::Status::HalfOpen as i32);
        assert_eq!(state.trials_in_flight, trial_permits);
        let c = counters(&state);
        assert_eq!(
            (c.admitted, c.rejected),
            (run * n as u64, run * (total - n) as u64)
        );

        // The reset is the very next change: only one HALF_OPEN was entered in the race.
        generation = reopen_now(&daemon, name).await;
        let (revision, t) = watcher.next_transition().await;
        assert_eq!(revision, last_revision + 2);
        assert_eq!(
            (t.from, t.to),
            (v1::Status::HalfOpen as i32, v1::Status::Open as i32)
        );
        last_revision = revision;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_acquires_at_half_open_admit_exactly_one_trial() {
    half_open_admits_exactly(1, "coordination.trials.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_acquires_at_half_open_admit_exactly_three_trials() {
    half_open_admits_exactly(3, "coordination.trials.3").await;
}
