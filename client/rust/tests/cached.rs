//! Cached mode: local decisions while the protector's Watch stream vouches for CLOSED,
//! its own failures and other clients' trips, OPEN and HALF_OPEN, a lost stream, and
//! the batched successes.

mod common;

use std::time::Duration;

use common::{changes, next_change, policy, start_daemon};
use resilient_circuit::{
    CallPermit, Client, DecisionReason, Fallback, PolicySpec, Protector, ProtectorPolicy, Status,
};
use resilient_circuit_api::v1;
use support::{DEADLINE, Daemon};
use tokio::time::Instant;

const COOLDOWN: Duration = Duration::from_secs(60);

async fn cached(
    daemon: &Daemon,
    name: &str,
    policy: ProtectorPolicy,
    fallback: Fallback,
) -> (Client, Protector) {
    let client = Client::builder(daemon.uri())
        .acquire_deadline(Duration::from_secs(2))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(100))
        .build()
        .await
        .expect("client");
    let p = client
        .protector_builder(name)
        .policy(policy)
        .fallback(fallback)
        .cached(true)
        .build()
        .await
        .expect("protector");
    assert!(p.is_cached());
    (client, p)
}

/// The first local permit, once the Watch stream has synced; remote permits before it
/// are ignored.
#[track_caller]
fn until_local(p: &Protector) -> impl Future<Output = CallPermit> + '_ {
    let caller = std::panic::Location::caller();
    async move {
        let give_up = Instant::now() + DEADLINE;
        let mut poll = tokio::time::interval(Duration::from_millis(5));
        loop {
            assert!(Instant::now() < give_up, "{caller}: never admitted locally");
            if let Ok(permit) = p.acquire().await {
                if permit.is_local() {
                    return permit;
                }
                permit.ignore().await;
            }
            poll.tick().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_admits_locally_and_batched_successes_reach_the_daemon() {
    let daemon = start_daemon().await;
    let name = "cached-closed";
    let (client, p) = cached(&daemon, name, policy(COOLDOWN, (5, 10)), Fallback::Deny).await;
    until_local(&p).await.ignore().await;
    let before = daemon.inspect(name).await.counters.expect("counters");

    let before_decisions = p.decisions();
    for _ in 0..2_500 {
        let permit = p.acquire().await.expect("CLOSED admits");
        assert!(permit.is_local() && !permit.is_fallback() && !permit.is_trial());
        assert_eq!(permit.generation(), Some(1));
        let resolved = permit.success().await;
        assert_eq!((resolved.accepted, resolved.status), (true, None));
    }
    let seen = daemon
        .wait_until(name, "given the batched successes", |p| {
            p.counters
                .as_ref()
                .is_some_and(|c| c.successes == before.successes + 2_500)
        })
        .await;
    // Each local decision is counted as the cache's.
    let decisions = p.decisions();
    assert_eq!(decisions.cache, before_decisions.cache + 2_500, "{decisions:?}");
    assert_eq!(decisions.daemon, before_decisions.daemon, "{decisions:?}");
    assert_eq!(decisions.fallback, 0, "{decisions:?}");
    assert_eq!(client.stats().cache_decisions, decisions.cache);
    let counters = seen.counters.expect("counters");
    // Local admissions never asked the daemon.
    assert_eq!(counters.admitted, before.admitted);
    assert_eq!(counters.stale_reports, 0);
    // The daemon applies a batch before its answer reaches the flusher, so the client's
    // own tally may trail the daemon's counters by one round trip.
    let give_up = Instant::now() + DEADLINE;
    let mut poll = tokio::time::interval(Duration::from_millis(5));
    let stats = loop {
        let stats = client.stats();
        if stats.batched_accepted >= 2_500 || Instant::now() >= give_up {
            break stats;
        }
        poll.tick().await;
    };
    assert_eq!(
        (stats.batched_accepted, stats.batched_stale, stats.batched_lost),
        (2_500, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_own_failure_trips_before_the_call_returns_and_open_rejects_locally() {
    let daemon = start_daemon().await;
    let name = "cached-own-trip";
    let (_client, p) = cached(&daemon, name, policy(COOLDOWN, (1, 1)), Fallback::Deny).await;
    let permit = until_local(&p).await;
    let resolved = permit.failure().await;
    assert_eq!((resolved.accepted, resolved.status), (true, Some(Status::Open)));

    // At once, and without asking the daemon.
    let rejected_before = daemon.inspect(name).await.counters.expect("counters").rejected;
    for _ in 0..10 {
        let r = p.acquire().await.expect_err("OPEN rejects");
        assert!(!r.fallback, "{r:?}");
        assert_eq!((r.status, r.reason), (Status::Open, DecisionReason::Open));
        assert!(
            r.retry_after
                .is_some_and(|d| d > COOLDOWN - Duration::from_secs(10) && d <= COOLDOWN),
            "{r:?}"
        );
    }
    let counters = daemon.inspect(name).await.counters.expect("counters");
    assert_eq!(counters.rejected, rejected_before, "the daemon was asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_trip_stops_local_admission() {
    let daemon = start_daemon().await;
    let name = "cached-other-trip";
    let (client, p) = cached(&daemon, name, policy(COOLDOWN, (1, 1)), Fallback::Deny).await;
    let (on_change, mut changes) = changes();
    p.on_status_change(on_change);
    until_local(&p).await.success().await;

    // Another process trips it; until the Watch event arrives, this one may still
    // admit locally (the documented window), with the old generation.
    daemon.raw_call(name, v1::Outcome::Failure).await;
    let tripped = Instant::now();
    let mut in_window = Vec::new();
    let rejection = loop {
        assert!(
            tripped.elapsed() < DEADLINE,
            "still admitting {DEADLINE:?} after the trip"
        );
        match p.acquire().await {
            Ok(permit) => {
                assert!(permit.is_local() && permit.generation() == Some(1), "{permit:?}");
                in_window.push(permit);
            }
            Err(rejection) => break rejection,
        }
        tokio::task::yield_now().await;
    };
    assert!(!rejection.fallback, "{rejection:?}");
    assert_eq!(
        (rejection.status, rejection.reason),
        (Status::Open, DecisionReason::Open)
    );
    assert!(
        rejection.retry_after.is_some_and(|d| d <= COOLDOWN),
        "{rejection:?}"
    );
    let change = next_change(&mut changes).await;
    assert_eq!((change.to, change.generation), (Status::Open, 2), "{change:?}");

    // Their outcomes arrive with generation 1 and are refused as stale.
    let window = in_window.len() as u64;
    for permit in in_window {
        permit.success().await;
    }
    // The success before the trip may still have been waiting for the flusher when the
    // generation ended: then it is stale too (the documented side effect). Either way,
    // every one of the window's successes is stale, and the earlier one is counted once.
    let seen = daemon
        .wait_until(name, "told of the stale successes", |p| {
            p.counters
                .as_ref()
                .is_some_and(|c| c.stale_reports + c.successes == window + 1)
        })
        .await;
    let stale = seen.counters.expect("counters").stale_reports;
    assert!(
        stale == window || stale == window + 1,
        "{stale} stale of {window}"
    );
    let give_up = Instant::now() + DEADLINE;
    while client.stats().batched_stale != stale {
        assert!(Instant::now() < give_up, "{:?}", client.stats());
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_trials_come_from_the_daemon() {
    let daemon = start_daemon().await;
    let name = "cached-half-open";
    let (_client, p) = cached(&daemon, name, policy(COOLDOWN, (1, 1)), Fallback::Deny).await;
    let (on_change, mut changes) = changes();
    p.on_status_change(on_change);
    until_local(&p).await.ignore().await;

    let half_open = daemon.set_status(name, v1::Status::HalfOpen).await;
    while next_change(&mut changes).await.generation != half_open.generation {}
    let admitted_before = daemon.inspect(name).await.counters.expect("counters").admitted;
    let trial = p.acquire().await.expect("a trial");
    assert!(
        trial.is_trial() && !trial.is_local() && !trial.is_fallback(),
        "{trial:?}"
    );
    assert_eq!(trial.generation(), Some(half_open.generation));
    let counters = daemon.inspect(name).await.counters.expect("counters");
    assert_eq!(counters.admitted, admitted_before + 1);

    // Its success closes the protector; the answer alone makes decisions local again.
    let resolved = trial.success().await;
    assert_eq!((resolved.accepted, resolved.status), (true, Some(Status::Closed)));
    let next = p.acquire().await.expect("CLOSED admits");
    assert!(next.is_local(), "{next:?}");
    assert_eq!(next.generation(), Some(half_open.generation + 1));
    next.ignore().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_watch_sends_decisions_to_the_daemon_then_the_fallback() {
    let mut daemon = start_daemon().await;
    let name = "cached-lost-watch";
    let (_client, p) = cached(&daemon, name, policy(COOLDOWN, (5, 10)), Fallback::Deny).await;
    until_local(&p).await.success().await;

    // The stream breaks with the daemon: no local decision after that, and the remote
    // one fails over to the declared fallback.
    daemon.stop_in_place().await;
    let give_up = Instant::now() + DEADLINE;
    let rejection = loop {
        assert!(Instant::now() < give_up, "still deciding locally without a watch");
        match p.acquire().await {
            Ok(permit) => {
                assert!(permit.is_local(), "{permit:?}");
                permit.ignore().await;
            }
            Err(rejection) => break rejection,
        }
        tokio::task::yield_now().await;
    };
    assert!(rejection.fallback, "{rejection:?}");

    // Back (empty): the protector is ensured again and the new stream's SYNCED makes
    // decisions local once more, in the new life's generation.
    daemon.start_again().await;
    let permit = until_local(&p).await;
    assert_eq!(permit.generation(), Some(1));
    permit.success().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_back_without_its_state_is_a_new_history_whatever_the_generations() {
    use support::circuitd::Config;
    use support::circuitd::config::ProtectorConfig;

    let mut daemon = start_daemon().await;
    let name = "cached-new-history";
    let spec = PolicySpec {
        cooldown: COOLDOWN,
        failure_limit: (5, 10),
        ..PolicySpec::default()
    };
    let (_client, p) = cached(
        &daemon,
        name,
        ProtectorPolicy::try_new(spec).expect("policy"),
        Fallback::Deny,
    )
    .await;
    // Generation 5 in the first life.
    for status in [
        v1::Status::Open,
        v1::Status::Closed,
        v1::Status::Open,
        v1::Status::Closed,
    ] {
        daemon.set_status(name, status).await;
    }
    let give_up = Instant::now() + DEADLINE;
    loop {
        assert!(Instant::now() < give_up, "never admitted locally in generation 5");
        let permit = until_local(&p).await;
        let generation = permit.generation();
        permit.success().await;
        if generation == Some(5) {
            break;
        }
    }

    // Back without its state, and already further along its own revisions than this
    // client's resume point (40 protectors created at start), so nothing but the epoch
    // says the history is new. Its generations count from 1 again: the model's 5 must
    // not outrank them.
    daemon.stop_in_place().await;
    let protectors = (0..40)
        .map(|i| format!("filler-{i}"))
        .chain([name.to_owned()])
        .map(|name| ProtectorConfig { name, policy: spec })
        .collect();
    daemon
        .start_again_with(Config {
            protectors,
            shutdown_grace: Duration::from_secs(1),
            ..Config::default()
        })
        .await;
    daemon.set_status(name, v1::Status::Open).await;
    daemon.set_status(name, v1::Status::Closed).await;
    let give_up = Instant::now() + DEADLINE;
    loop {
        assert!(Instant::now() < give_up, "never admitted locally in generation 3");
        let permit = until_local(&p).await;
        let generation = permit.generation();
        permit.ignore().await;
        assert_ne!(generation, Some(5), "admitted in the old history's generation");
        if generation == Some(3) {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_handle_gives_a_cached_one_for_the_same_protector() {
    let daemon = start_daemon().await;
    let name = "cached-from-plain";
    let client = Client::connect(daemon.uri()).await.expect("client");
    let plain = client
        .protector(name, policy(COOLDOWN, (5, 10)))
        .await
        .expect("protector");
    assert!(!plain.is_cached());
    let cached = plain.cached().await.expect("cached handle");
    assert!(cached.is_cached() && !plain.is_cached());
    assert_eq!(cached.name(), plain.name());
    let permit = until_local(&cached).await;
    assert_eq!(permit.generation(), Some(1));
    permit.success().await;
    // The plain handle still asks the daemon.
    let remote = plain.acquire().await.expect("CLOSED admits");
    assert!(!remote.is_local());
    remote.success().await;
    assert!(cached.cached().await.expect("already cached").is_cached());
}
