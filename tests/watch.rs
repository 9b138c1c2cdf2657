//! Watch streams: every watcher gets its snapshot, SYNCED, then exactly the changes
//! matching its filter, in revision order and without gaps; a watcher that stops reading
//! is resynced instead of slowing anyone down; an idle stream hears PROGRESS.

use std::time::Duration;

use resilient_circuit_api::v1;
use resilient_circuit_api::v1::watch_event::Event;
use support::*;

/// The protector a change event concerns, and what kind of change it is.
fn about(event: &v1::WatchEvent) -> (String, &'static str) {
    match event.event.as_ref().expect("event") {
        Event::Created(p) => (p.name.clone(), "created"),
        Event::StatusChanged(s) => (s.name.clone(), "status_changed"),
        Event::Deleted(d) => (d.name.clone(), "deleted"),
        Event::PolicyUpdated(p) => (p.name.clone(), "policy_updated"),
        Event::OverrideChanged(o) => (o.name.clone(), "override_changed"),
        other => panic!("expected a change, got {other:?}"),
    }
}

/// A transition's (from, to, reason).
fn transition(event: &v1::WatchEvent) -> (i32, i32, i32) {
    match event.event.as_ref() {
        Some(Event::StatusChanged(s)) => {
            let t = s.transition.as_ref().expect("transition");
            (t.from, t.to, t.reason)
        }
        other => panic!("expected STATUS_CHANGED, got {other:?}"),
    }
}

#[tokio::test]
async fn filtered_watchers_see_exactly_their_part_of_every_change_in_order() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    let mut admin = daemon.admin().await;
    let long = policy(Duration::from_secs(60), (1, 1), None);
    for name in ["pay.eu", "pay.us", "search", "ship"] {
        ensure(&mut client, name, long).await;
    }
    let mut before = Vec::new();
    for name in ["pay.eu", "pay.us", "search", "ship"] {
        before.push(get(&mut client, name).await);
    }
    let pick = |wanted: &[&str]| -> Vec<v1::Protector> {
        before
            .iter()
            .filter(|p| wanted.contains(&p.name.as_str()))
            .cloned()
            .collect()
    };

    let mut all = Watcher::open(&mut client, watch_all()).await;
    let mut pay = Watcher::open(&mut client, watch_prefix("pay.")).await;
    let mut listed = Watcher::open(&mut client, watch_names(&["pay.eu", "search"])).await;
    let (snapshot, base) = all.snapshot().await;
    assert_eq!(base, 4, "four creations so far");
    assert_eq!(snapshot, before);
    let (snapshot, synced) = pay.snapshot().await;
    assert_eq!(synced, base);
    assert_eq!(snapshot, pick(&["pay.eu", "pay.us"]));
    let (snapshot, synced) = listed.snapshot().await;
    assert_eq!(synced, base);
    assert_eq!(snapshot, pick(&["pay.eu", "search"]));

    // Each step returns the revision its RPC answered with and the protector it changed.
    let mut script: Vec<(u64, &str)> = Vec::new();
    script.push((ensure(&mut client, "pay.jp", long).await.mod_revision, "pay.jp"));
    script.push((
        call(&mut client, "pay.eu", v1::Outcome::Failure).await.revision,
        "pay.eu",
    ));
    script.push((
        set_status(&mut admin, "pay.eu", v1::Status::HalfOpen, None)
            .await
            .revision,
        "pay.eu",
    ));
    script.push((
        call(&mut client, "pay.eu", v1::Outcome::Success).await.revision,
        "pay.eu",
    ));
    script.push((
        set_override(&mut admin, "search", v1::OverrideKind::ForcedOpen, None)
            .await
            .revision,
        "search",
    ));
    script.push((
        set_override(&mut admin, "search", v1::OverrideKind::None, None)
            .await
            .revision,
        "search",
    ));
    let updated = update_policy(&mut admin, "ship", policy(Duration::from_secs(30), (2, 4), None)).await;
    script.push((updated.revision, "ship"));
    script.push((
        call(&mut client, "search", v1::Outcome::Failure).await.revision,
        "search",
    ));
    let opened = set_status(
        &mut admin,
        "pay.us",
        v1::Status::Open,
        Some(Duration::from_secs(10)),
    )
    .await;
    script.push((opened.revision, "pay.us"));
    let deleted = delete(&mut admin, "pay.eu").await;
    script.push((deleted.revision, "pay.eu"));
    script.push((
        set_override(&mut admin, "ship", v1::OverrideKind::Disabled, None)
            .await
            .revision,
        "ship",
    ));
    script.push((ensure(&mut client, "searchx", long).await.mod_revision, "searchx"));
    script.push((
        set_status(&mut admin, "search", v1::Status::Closed, None)
            .await
            .revision,
        "search",
    ));
    let answered: Vec<u64> = script.iter().map(|(r, _)| *r).collect();
    let expected: Vec<u64> = (base + 1..=base + script.len() as u64).collect();
    assert_eq!(answered, expected, "every change takes the next revision");

    let mut seen = Vec::new();
    for (revision, name) in &script {
        let event = all.next().await;
        assert_eq!(event.revision, *revision);
        assert_eq!(about(&event).0, *name, "event {event:?}");
        seen.push(event);
    }
    let kinds: Vec<&str> = seen.iter().map(|e| about(e).1).collect();
    assert_eq!(
        kinds,
        [
            "created",
            "status_changed",
            "status_changed",
            "status_changed",
            "override_changed",
            "override_changed",
            "policy_updated",
            "status_changed",
            "status_changed",
            "deleted",
            "override_changed",
            "created",
            "status_changed",
        ]
    );
    use v1::{Status as S, TransitionReason as R};
    let expected_transitions = [
        (1, S::Closed, S::Open, R::FailureLimit),
        (2, S::Open, S::HalfOpen, R::Manual),
        (3, S::HalfOpen, S::Closed, R::TrialsSucceeded),
        (7, S::Closed, S::Open, R::FailureLimit),
        (8, S::Closed, S::Open, R::Manual),
        (12, S::Open, S::Closed, R::Manual),
    ];
    for (i, from, to, reason) in expected_transitions {
        assert_eq!(
            transition(&seen[i]),
            (from as i32, to as i32, reason as i32),
            "event {i}: {:?}",
            seen[i]
        );
    }

    // A change that every filter matches: whatever a filtered watcher reads before it is
    // the whole of what it was sent.
    let last = ensure(&mut client, "pay.eu", long).await.mod_revision;
    assert_eq!(last, base + script.len() as u64 + 1);
    let final_event = all.next().await;
    assert_eq!(
        (final_event.revision, about(&final_event)),
        (last, ("pay.eu".to_string(), "created"))
    );

    for (watcher, filter) in [
        (
            &mut pay,
            &(|n: &str| n.starts_with("pay.")) as &dyn Fn(&str) -> bool,
        ),
        (&mut listed, &|n: &str| n == "pay.eu" || n == "search"),
    ] {
        let mut got = Vec::new();
        loop {
            let event = watcher.next().await;
            if event.revision == last {
                assert_eq!(event, final_event);
                break;
            }
            got.push(event);
        }
        let want: Vec<v1::WatchEvent> = seen.iter().filter(|e| filter(&about(e).0)).cloned().collect();
        assert_eq!(got, want);
    }
    daemon.stop().await.expect("clean stop");
}

/// One data-plane step on a protector with cooldown 0 and failure limit 1/1, cycling
/// CLOSED -> OPEN -> HALF_OPEN -> CLOSED; returns whether it made a change.
async fn cycle_step(
    client: &mut ProtectorClient,
    name: &str,
    step: usize,
    permit: &mut Option<v1::Permit>,
) -> bool {
    match step % 4 {
        0 | 2 => {
            let a = acquire(client, name).await;
            assert_eq!(a.decision, v1::Decision::Admitted as i32, "{a:?}");
            *permit = a.permit;
            step % 4 == 2
        }
        _ => {
            let outcome = if step % 4 == 1 {
                v1::Outcome::Failure
            } else {
                v1::Outcome::Success
            };
            let r = report(client, name, permit.take().expect("permit"), outcome).await;
            assert!(r.accepted, "{r:?}");
            assert!(r.transition.is_some(), "{r:?}");
            true
        }
    }
}

#[tokio::test]
async fn a_watcher_that_never_reads_is_resynced_while_everyone_else_gets_everything() {
    const CHANGES: u64 = 500;
    let mut config = circuitd::Config::default();
    config.watch.buffer = 16;
    let daemon = Daemon::with_config(config).await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, "hot", policy(Duration::ZERO, (1, 1), None)).await;

    let mut reader = Watcher::open(&mut client, watch_all()).await;
    let (_, base) = reader.snapshot().await;
    assert_eq!(base, 1);
    let reading = tokio::spawn(async move {
        let mut events = Vec::new();
        for _ in 0..CHANGES {
            events.push(reader.next().await);
        }
        (reader, events)
    });
    let mut idle_client = ProtectorClient::new(daemon.narrow_channel().await);
    let mut idle = Watcher::open(&mut idle_client, watch_all()).await;

    let mut changes = 0;
    let mut revision = base;
    let mut permit = None;
    let mut step = 0;
    while changes < CHANGES {
        if cycle_step(&mut client, "hot", step, &mut permit).await {
            changes += 1;
            revision += 1;
        }
        step += 1;
    }
    let now = client
        .get_protector(v1::GetProtectorRequest { name: "hot".into() })
        .await
        .expect("GetProtector")
        .into_inner();
    assert_eq!(now.revision, base + CHANGES, "every change was acknowledged");
    assert_eq!(revision, base + CHANGES);

    let (mut reader, events) = reading.await.expect("reader");
    let revisions: Vec<u64> = events.iter().map(|e| e.revision).collect();
    assert_eq!(revisions, (base + 1..=base + CHANGES).collect::<Vec<_>>());
    assert!(
        events
            .iter()
            .all(|e| matches!(e.event, Some(Event::StatusChanged(_))))
    );

    let (snapshot, synced) = idle.snapshot().await;
    assert_eq!((snapshot.len(), synced), (1, base));
    let mut expected = base + 1;
    let resync = loop {
        let event = idle.next().await;
        match event.event {
            Some(Event::Resync(r)) => break (event.revision, r.reason),
            _ => {
                assert_eq!(event, events[(expected - base - 1) as usize], "before the gap");
                expected += 1;
            }
        }
    };
    assert!(
        expected - base - 1 < CHANGES - 16,
        "it read {} changes, so it never fell behind",
        expected - base - 1
    );
    assert_eq!(resync, (base + CHANGES, v1::ResyncReason::Lagged as i32));
    let (snapshot, synced) = idle.snapshot().await;
    assert_eq!(snapshot, vec![now.protector.expect("protector")]);
    assert_eq!(synced, base + CHANGES);

    // 500 changes end HALF_OPEN with one trial out; its success closes the protector.
    let trial = permit.take().expect("a trial permit is outstanding");
    let live = report(&mut client, "hot", trial, v1::Outcome::Success).await;
    assert_eq!(live.revision, base + CHANGES + 1);
    let event = idle.next().await;
    assert_eq!(event.revision, live.revision);
    assert_eq!(transition(&event).1, v1::Status::Closed as i32);
    assert_eq!(reader.next().await, event);
    daemon.stop().await.expect("clean stop");
}

/// Reads PROGRESS events until one carries `revision`; any before it must carry `stale`.
async fn next_progress_at(watcher: &mut Watcher, stale: u64, revision: u64) {
    loop {
        let event = watcher.next().await;
        assert!(matches!(event.event, Some(Event::Progress(_))), "{event:?}");
        if event.revision == revision {
            return;
        }
        assert_eq!(event.revision, stale, "{event:?}");
    }
}

/// The next event that is not a PROGRESS at `stale`.
async fn next_change(watcher: &mut Watcher, stale: u64) -> v1::WatchEvent {
    loop {
        let event = watcher.next().await;
        if event.revision == stale && matches!(event.event, Some(Event::Progress(_))) {
            continue;
        }
        return event;
    }
}

#[tokio::test]
async fn progress_carries_the_revision_accounted_for_and_changes_delay_it() {
    const INTERVAL: Duration = Duration::from_millis(200);
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    let mut admin = daemon.admin().await;
    ensure(
        &mut client,
        "a.one",
        policy(Duration::from_secs(60), (1, 1), None),
    )
    .await;
    ensure(
        &mut client,
        "b.two",
        policy(Duration::from_secs(60), (1, 1), None),
    )
    .await;

    let opened = tokio::time::Instant::now();
    let mut watcher = Watcher::open(
        &mut client,
        v1::WatchRequest {
            progress_interval: Some(duration(INTERVAL)),
            ..watch_prefix("a.")
        },
    )
    .await;
    let (_, base) = watcher.snapshot().await;
    assert_eq!(base, 2);
    let idle = watcher.next().await;
    assert_eq!(
        idle,
        v1::WatchEvent {
            revision: 2,
            event: Some(Event::Progress(v1::Progress {})),
        }
    );
    assert!(
        opened.elapsed() >= INTERVAL,
        "PROGRESS after {:?}",
        opened.elapsed()
    );

    // A change the filter drops still counts as accounted for, without being sent. (A
    // PROGRESS already due may still say 2, if the change took a whole interval.)
    let other = set_status(&mut admin, "b.two", v1::Status::Open, None)
        .await
        .revision;
    assert_eq!(other, 3);
    next_progress_at(&mut watcher, 2, 3).await;

    // A change it sends restarts the idle clock: the next PROGRESS comes a full interval
    // after the change, never sooner.
    let changed = tokio::time::Instant::now();
    let mine = set_status(&mut admin, "a.one", v1::Status::Open, None)
        .await
        .revision;
    assert_eq!(mine, 4);
    let event = next_change(&mut watcher, 3).await;
    assert_eq!(event.revision, 4);
    assert_eq!(about(&event), ("a.one".to_string(), "status_changed"));
    let idle = watcher.next().await;
    assert_eq!(idle.revision, 4);
    assert!(matches!(idle.event, Some(Event::Progress(_))), "{idle:?}");
    assert!(
        changed.elapsed() >= INTERVAL,
        "PROGRESS only {:?} after a change",
        changed.elapsed()
    );
    daemon.stop().await.expect("clean stop");
}
