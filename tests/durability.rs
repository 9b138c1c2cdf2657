//! A restart forgets nothing: the real binary, killed with SIGKILL or stopped with
//! SIGTERM, comes back on the same data directory with every acknowledged change, its
//! cooldowns ending at the instants it announced, and its revision continuing.

use std::time::Duration;

use circuitd::store::record::{Body, Record, Snapshot, StoredProtector};
use circuitd::store::{self, StoreConfig};
use resilient_circuit_api::v1;
use resilient_circuit_api::v1::watch_event::Event;
use resilient_circuit_breaker::{self as breaker, Decision, Outcome, PolicySpec, Protector};
use support::process::Circuitd;
use support::*;

/// Sleeps until the wall clock reads `at` (an instant the daemon announced).
async fn sleep_until(at: Duration) {
    tokio::time::sleep(at.saturating_sub(wall_now())).await;
}

/// Waits, past the usual deadline, until `open_until` + 2 s for `name`'s next
/// STATUS_CHANGED; returns it and the wall-clock instant it arrived.
async fn next_transition(
    stream: &mut tonic::Streaming<v1::WatchEvent>,
    open_until: Duration,
) -> (v1::Transition, u64, Duration) {
    let give_up = open_until + Duration::from_secs(2);
    loop {
        let left = give_up.saturating_sub(wall_now());
        let event = tokio::time::timeout(left, stream.message())
            .await
            .expect("no STATUS_CHANGED by open_until + 2 s")
            .expect("the watch stream failed")
            .expect("the watch stream ended");
        match event.event.expect("event") {
            Event::Progress(_) => {}
            Event::StatusChanged(s) => {
                return (s.transition.expect("transition"), event.revision, wall_now());
            }
            other => panic!("expected STATUS_CHANGED, got {other:?}"),
        }
    }
}

/// A lazy protector after its restart: rejected just before `open_until`, admitted as a
/// trial just after, in the generation after `generation`.
async fn lazy_half_open(mut client: ProtectorClient, name: &str, open_until: Duration, generation: u64) {
    sleep_until(open_until - Duration::from_millis(500)).await;
    let before = acquire(&mut client, name).await;
    assert_eq!(
        before.decision,
        v1::Decision::Rejected as i32,
        "{name}: {before:?}"
    );
    assert_eq!(
        before.reason,
        v1::DecisionReason::Open as i32,
        "{name}: {before:?}"
    );
    let retry = std_duration(before.retry_after);
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_millis(500),
        "{name}: retry_after {retry:?} just before open_until"
    );
    sleep_until(open_until + Duration::from_millis(50)).await;
    let still = get(&mut client, name).await;
    assert_eq!(
        still.status,
        v1::Status::Open as i32,
        "{name}: no Acquire yet, still OPEN"
    );
    let after = acquire(&mut client, name).await;
    assert_eq!(after.decision, v1::Decision::Admitted as i32, "{name}: {after:?}");
    assert_eq!(
        after.reason,
        v1::DecisionReason::Trial as i32,
        "{name}: {after:?}"
    );
    assert_eq!(after.status, v1::Status::HalfOpen as i32, "{name}: {after:?}");
    let permit = after.permit.expect("permit");
    assert_eq!(permit.generation, generation + 1, "{name}");
    assert_ne!(permit.id, 0, "{name}: a trial permit has an id");
}

#[tokio::test]
async fn cooldowns_survive_kill_9_and_end_at_their_announced_instant() {
    let dir = TempDir::new("durable-cooldown");
    let first = Circuitd::start(dir.path(), &[]).await;
    let mut client = first.protectors().await;
    // What is asserted does not depend on the length: the cooldown only has to outlast
    // a restart of the binary with room to spare.
    let cooldown = Duration::from_secs(8);
    let killed_after = Duration::from_secs(3);
    let names = ["auto", "lazy-a", "lazy-b"];
    for name in names {
        let p = v1::Policy {
            auto_half_open: name == "auto",
            ..policy(cooldown, (1, 1), None)
        };
        ensure(&mut client, name, p).await;
    }
    let mut tripped = Vec::new();
    for name in names {
        let report = call(&mut client, name, v1::Outcome::Failure).await;
        let t = report.transition.expect("the failure trips it");
        assert_eq!(t.to, v1::Status::Open as i32);
        let open_until = instant(t.open_until);
        assert_eq!(open_until, instant(t.at) + cooldown);
        tripped.push((name, open_until, t.generation));
    }
    let latest = tripped.iter().map(|t| t.1).max().expect("three protectors");

    // Three seconds into the cooldown, by the clock the daemon announced it with.
    sleep_until(latest - (cooldown - killed_after)).await;
    first.kill().await;
    let second = Circuitd::start(dir.path(), &[]).await;
    let mut client = second.protectors().await;
    let mut watch = client
        .watch(watch_names(&["auto"]))
        .await
        .expect("Watch")
        .into_inner();
    for &(name, open_until, generation) in &tripped {
        let p = get(&mut client, name).await;
        assert_eq!(p.status, v1::Status::Open as i32, "{name}");
        assert_eq!(p.generation, generation, "{name}");
        assert_eq!(instant(p.open_until), open_until, "{name}: the deadline moved");
        let rejected = acquire(&mut client, name).await;
        assert_eq!(rejected.decision, v1::Decision::Rejected as i32, "{name}");
        assert_eq!(rejected.reason, v1::DecisionReason::Open as i32, "{name}");
        let retry = std_duration(rejected.retry_after);
        assert!(
            retry.abs_diff(cooldown - killed_after) <= Duration::from_secs(1),
            "{name}: retry_after {retry:?} {killed_after:?} into a {cooldown:?} cooldown"
        );
    }

    let (_, auto_until, auto_generation) = tripped[0];
    let auto = async {
        let first = watch.message().await.expect("watch").expect("snapshot");
        assert!(matches!(first.event, Some(Event::Snapshot(ref p)) if p.status == v1::Status::Open as i32));
        let synced = watch.message().await.expect("watch").expect("SYNCED");
        assert!(matches!(synced.event, Some(Event::Synced(_))), "{synced:?}");
        let (t, revision, seen_at) = next_transition(&mut watch, auto_until).await;
        assert_eq!(revision, synced.revision + 1);
        assert_eq!(
            (t.from, t.to),
            (v1::Status::Open as i32, v1::Status::HalfOpen as i32)
        );
        assert_eq!(t.reason, v1::TransitionReason::CooldownElapsed as i32);
        assert_eq!(t.generation, auto_generation + 1);
        assert_eq!(
            instant(t.at),
            auto_until,
            "the transition takes effect at open_until"
        );
        assert!(
            seen_at.abs_diff(auto_until) <= Duration::from_secs(1),
            "STATUS_CHANGED arrived {seen_at:?}, open_until {auto_until:?}"
        );
    };
    let (_, a_until, a_generation) = tripped[1];
    let (_, b_until, b_generation) = tripped[2];
    tokio::join!(
        auto,
        lazy_half_open(client.clone(), "lazy-a", a_until, a_generation),
        lazy_half_open(client.clone(), "lazy-b", b_until, b_generation),
    );
    second.terminate().await;
}

/// A policy with every field set away from its default.
fn custom_policy() -> v1::Policy {
    v1::Policy {
        trial_permits: Some(2),
        permit_ttl: Some(duration(Duration::from_secs(45))),
        ..policy(Duration::from_secs(5), (3, 5), Some((2, 3)))
    }
}

#[tokio::test]
async fn acknowledged_changes_and_the_revision_survive_kill_9() {
    let dir = TempDir::new("durable-acks");
    let first = Circuitd::start(dir.path(), &[]).await;
    let mut client = first.protectors().await;
    let mut admin = first.admin().await;
    let hour = Duration::from_secs(3600);

    ensure(&mut client, "created", custom_policy()).await;
    ensure(&mut client, "policy", Default::default()).await;
    update_policy(&mut admin, "policy", custom_policy()).await;
    ensure(&mut client, "forced", Default::default()).await;
    let forced = set_override(&mut admin, "forced", v1::OverrideKind::ForcedOpen, Some(hour)).await;
    let forced_expiry = forced
        .protector
        .expect("protector")
        .r#override
        .expect("override")
        .expires_at;
    assert!(forced_expiry.is_some());
    ensure(&mut client, "disabled", Default::default()).await;
    set_override(&mut admin, "disabled", v1::OverrideKind::Disabled, None).await;
    ensure(&mut client, "manual", Default::default()).await;
    set_status(&mut admin, "manual", v1::Status::Open, Some(hour)).await;
    ensure(&mut client, "tripped", policy(hour, (2, 3), None)).await;
    for outcome in [v1::Outcome::Success, v1::Outcome::Failure, v1::Outcome::Failure] {
        call(&mut client, "tripped", outcome).await;
    }
    ensure(&mut client, "trial", Default::default()).await;
    set_status(&mut admin, "trial", v1::Status::HalfOpen, None).await;
    let trial = acquire(&mut client, "trial").await;
    assert_eq!(trial.reason, v1::DecisionReason::Trial as i32);
    let trial_permit = trial.permit.expect("permit");
    ensure(&mut client, "deleted", Default::default()).await;
    delete(&mut admin, "deleted").await;
    ensure(&mut client, "batched", policy(hour, (5, 5), None)).await;
    set_status(&mut admin, "batched", v1::Status::Closed, None).await;
    let durable_batched = get(&mut client, "batched").await;
    for _ in 0..4 {
        call(&mut client, "batched", v1::Outcome::Success).await;
    }
    let exact = [
        "created", "policy", "forced", "disabled", "manual", "tripped", "trial",
    ];
    let mut before = Vec::new();
    for name in exact {
        before.push(get(&mut client, name).await);
    }
    let (acked_batched, revision) = get_at(&mut client, "batched").await;
    let epoch = synced_epoch(&mut client).await;
    first.kill().await;

    let second = Circuitd::start(dir.path(), &[]).await;
    let mut client = second.protectors().await;
    let mut admin = second.admin().await;
    for expected in &before {
        let (got, got_revision) = get_at(&mut client, &expected.name).await;
        assert_eq!(&got, expected, "{} changed across kill -9", expected.name);
        assert_eq!(got_revision, revision, "the revision did not survive");
    }
    let missing = client
        .get_protector(v1::GetProtectorRequest {
            name: "deleted".into(),
        })
        .await
        .expect_err("an acknowledged delete survives");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // Outcomes in CLOSED are batched: the promise is everything but the window and the
    // counters, which hold at least what was durable and at most what was acknowledged.
    let got = get(&mut client, "batched").await;
    let without_batch = |p: &v1::Protector| v1::Protector {
        window: None,
        counters: None,
        consecutive_failures: 0,
        ..p.clone()
    };
    assert_eq!(without_batch(&got), without_batch(&acked_batched));
    let counters = |p: &v1::Protector| {
        let c = p.counters.expect("counters");
        [c.admitted, c.successes, c.failures, c.rejected]
    };
    for i in 0..4 {
        assert!(
            (counters(&durable_batched)[i]..=counters(&acked_batched)[i]).contains(&counters(&got)[i]),
            "batched counters {:?} outside {:?}..={:?}",
            got.counters,
            durable_batched.counters,
            acked_batched.counters
        );
    }

    // Resuming watchers: from before the restart (RESYNC COMPACTED or the exact
    // continuation) and from the recovered revision itself (SYNCED at once).
    let mut old = Watcher::open(
        &mut client,
        v1::WatchRequest {
            start_revision: Some(revision - 3),
            start_epoch: Some(epoch),
            ..watch_all()
        },
    )
    .await;
    let mut current = Watcher::open(
        &mut client,
        v1::WatchRequest {
            start_revision: Some(revision),
            start_epoch: Some(epoch),
            ..watch_all()
        },
    )
    .await;
    let synced = current.next().await;
    assert_eq!(
        synced.event,
        Some(Event::Synced(v1::Synced { epoch })),
        "the epoch survives"
    );
    assert_eq!(synced.revision, revision);
    let opening = old.next().await;
    match opening.event.as_ref().expect("event") {
        Event::Resync(r) => {
            assert_eq!(r.reason, v1::ResyncReason::Compacted as i32);
            let (snapshot, synced) = old.snapshot().await;
            assert_eq!(synced, revision);
            let mut names: Vec<_> = snapshot.iter().map(|p| p.name.as_str()).collect();
            names.sort_unstable();
            let mut expected: Vec<_> = exact.iter().copied().chain(["batched"]).collect();
            expected.sort_unstable();
            assert_eq!(names, expected);
        }
        _ => {
            // An exact continuation: revision - 2, - 1, revision, then SYNCED.
            assert_eq!(opening.revision, revision - 2, "{opening:?}");
            assert_eq!(old.next().await.revision, revision - 1);
            assert_eq!(old.next().await.revision, revision);
            let synced = old.next().await;
            assert!(matches!(synced.event, Some(Event::Synced(_))), "{synced:?}");
        }
    }

    // The revision continues; both watchers hear the next change.
    let next = set_status(&mut admin, "created", v1::Status::Open, None).await;
    assert_eq!(next.revision, revision + 1);
    for watcher in [&mut old, &mut current] {
        let event = watcher.next().await;
        assert_eq!(event.revision, revision + 1);
        assert!(matches!(event.event, Some(Event::StatusChanged(_))), "{event:?}");
    }
    // The trial permit handed out before the kill is still the one in flight.
    let reported = report(&mut client, "trial", trial_permit, v1::Outcome::Success).await;
    assert!(reported.accepted, "the durable trial permit was forgotten");
    let t = reported.transition.expect("the single trial closes it");
    assert_eq!(t.to, v1::Status::Closed as i32);
    assert_eq!(reported.revision, revision + 2);
    second.terminate().await;
}

#[tokio::test]
async fn sigterm_keeps_every_counter_and_outcome_exactly() {
    let dir = TempDir::new("durable-sigterm");
    let first = Circuitd::start(dir.path(), &[]).await;
    let mut client = first.protectors().await;
    let mut admin = first.admin().await;
    let hour = Duration::from_secs(3600);
    ensure(&mut client, "busy", policy(hour, (3, 4), None)).await;
    ensure(&mut client, "quiet", custom_policy()).await;
    ensure(&mut client, "open", policy(hour, (1, 1), None)).await;
    for outcome in [v1::Outcome::Success, v1::Outcome::Failure, v1::Outcome::Success] {
        call(&mut client, "busy", outcome).await;
    }
    let a = acquire(&mut client, "busy").await;
    report(
        &mut client,
        "busy",
        a.permit.expect("permit"),
        v1::Outcome::Ignored,
    )
    .await;
    call(&mut client, "open", v1::Outcome::Failure).await;
    let rejected = acquire(&mut client, "open").await;
    assert_eq!(rejected.decision, v1::Decision::Rejected as i32);
    set_override(&mut admin, "quiet", v1::OverrideKind::Disabled, Some(hour)).await;
    call(&mut client, "quiet", v1::Outcome::Failure).await;
    let before = list_all(&mut client).await;
    first.terminate().await;

    let second = Circuitd::start(dir.path(), &[]).await;
    let mut client = second.protectors().await;
    assert_eq!(list_all(&mut client).await, before);
    second.terminate().await;
}

#[tokio::test]
async fn a_wall_clock_that_went_backwards_never_lengthens_a_cooldown() {
    let dir = TempDir::new("durable-skew");
    let cooldown = Duration::from_secs(60);
    // The protector tripped "an hour from now": the clock it ran by was an hour ahead.
    let ahead = wall_now() + Duration::from_secs(3600);
    let mut protector = Protector::new(
        breaker::Policy::try_new(PolicySpec {
            cooldown,
            ..PolicySpec::default()
        })
        .expect("a valid policy"),
    );
    let Decision::Admitted { permit, .. } = protector.acquire(ahead).decision else {
        panic!("a new protector admits");
    };
    protector.report(permit, Outcome::Failure, ahead);
    assert_eq!(protector.open_until(), Some(ahead + cooldown));
    let recovered = store::open(&StoreConfig {
        dir: dir.path().to_owned(),
        repair: false,
        segment_bytes: 64 * 1024 * 1024,
        faults: None,
    })
    .expect("open an empty store");
    recovered
        .journal
        .append(|seq| Record {
            seq,
            revision: 2,
            body: Some(Body::Put(StoredProtector::new("skewed", &protector, 2, seq))),
        })
        .expect("append");
    recovered.journal.close();
    drop(recovered);

    let daemon = Circuitd::start(dir.path(), &[]).await;
    let mut client = daemon.protectors().await;
    let started = wall_now();
    let rejected = acquire(&mut client, "skewed").await;
    assert_eq!(rejected.decision, v1::Decision::Rejected as i32);
    assert_eq!(rejected.reason, v1::DecisionReason::Open as i32);
    let retry = std_duration(rejected.retry_after);
    assert!(
        retry <= cooldown,
        "retry_after {retry:?} is longer than the 60 s cooldown"
    );
    let (p, revision) = get_at(&mut client, "skewed").await;
    assert_eq!(revision, 2);
    let open_until = instant(p.open_until);
    assert!(
        open_until <= wall_now() + cooldown && open_until + Duration::from_secs(5) >= started + cooldown,
        "open_until {open_until:?} is not about now + 60 s (now {started:?})"
    );
    daemon.terminate().await;
}

#[tokio::test]
async fn a_change_made_right_after_a_snapshot_survives_the_next_restart() {
    // What compaction leaves behind: a snapshot whose state is versioned at the journal's
    // last sequence number, and a new, empty segment (the daemon stopped before anything
    // else was written). Built with the store's own calls, as the daemon makes it.
    let dir = TempDir::new("durable-after-snapshot");
    let protector = Protector::new(breaker::Policy::try_new(PolicySpec::default()).expect("a valid policy"));
    let recovered = store::open(&StoreConfig {
        dir: dir.path().to_owned(),
        repair: false,
        segment_bytes: 64 * 1024 * 1024,
        faults: None,
    })
    .expect("open an empty store");
    let mut version = 0;
    for revision in 1..=5 {
        version = recovered
            .journal
            .append(|seq| Record {
                seq,
                revision,
                body: Some(Body::Put(StoredProtector::new("x", &protector, revision, seq))),
            })
            .expect("append");
    }
    let segment = recovered.journal.rotate().expect("rotate");
    let snapshot = Snapshot {
        revision: 5,
        first_segment: segment,
        protectors: vec![StoredProtector::new("x", &protector, 5, version)],
        last_seq: recovered.journal.last_seq(),
    };
    store::write_snapshot(dir.path(), &snapshot).expect("write the snapshot");
    recovered.journal.close();
    drop(recovered);

    let first = Circuitd::start(dir.path(), &[]).await;
    let mut admin = first.admin().await;
    let changed = set_status(&mut admin, "x", v1::Status::Open, None).await;
    assert_eq!(changed.revision, 6);
    let acknowledged = changed.protector.expect("protector");
    first.terminate().await;

    let second = Circuitd::start(dir.path(), &[]).await;
    let mut client = second.protectors().await;
    let (got, revision) = get_at(&mut client, "x").await;
    assert_eq!(revision, 6);
    assert_eq!(got, acknowledged, "the acknowledged SetStatus was lost");
    second.terminate().await;
}
