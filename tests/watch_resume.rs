//! Resuming a Watch from a revision (replay from the history, SYNCED at once, or RESYNC
//! COMPACTED and a snapshot), and snapshots that stay consistent while writers run.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use resilient_circuit_api::v1;
use resilient_circuit_api::v1::watch_event::Event;
use support::*;

fn from(request: v1::WatchRequest, start_revision: u64) -> v1::WatchRequest {
    v1::WatchRequest {
        start_revision: Some(start_revision),
        ..request
    }
}

/// Creates `x.a` and `y.b`, then flips each between OPEN and CLOSED `flips` times,
/// alternating; returns every change as an all-watcher saw it.
async fn history(daemon: &Daemon, flips: usize) -> Vec<v1::WatchEvent> {
    let mut client = daemon.protectors().await;
    let mut admin = daemon.admin().await;
    let mut all = Watcher::open(&mut client, watch_all()).await;
    let (_, base) = all.snapshot().await;
    assert_eq!(base, 0);
    let long = policy(Duration::from_secs(60), (1, 1), None);
    ensure(&mut client, "x.a", long).await;
    ensure(&mut client, "y.b", long).await;
    for i in 0..flips {
        let status = if i % 4 < 2 {
            v1::Status::Open
        } else {
            v1::Status::Closed
        };
        set_status(&mut admin, if i % 2 == 0 { "x.a" } else { "y.b" }, status, None).await;
    }
    let mut events = Vec::new();
    for revision in 1..=(2 + flips as u64) {
        let event = all.next().await;
        assert_eq!(event.revision, revision);
        events.push(event);
    }
    events
}

#[tokio::test]
async fn a_start_inside_the_history_replays_the_matching_changes_after_it() {
    let daemon = Daemon::start().await;
    let seen = history(&daemon, 10).await;
    let current = 12;
    let mut client = daemon.protectors().await;
    for start in [0, 1, 5, 11] {
        let mut watcher = Watcher::open(&mut client, from(watch_prefix("x."), start)).await;
        let want: Vec<v1::WatchEvent> = seen
            .iter()
            .filter(|e| e.revision > start && name_of(e) == "x.a")
            .cloned()
            .collect();
        let mut got = Vec::new();
        let synced = loop {
            let event = watcher.next().await;
            match event.event {
                Some(Event::Synced(_)) => break event.revision,
                _ => got.push(event),
            }
        };
        assert_eq!(got, want, "replay after {start}");
        assert_eq!(synced, current, "replay after {start}");
    }

    // After the replay, live changes follow, and only the matching ones.
    let mut watcher = Watcher::open(&mut client, from(watch_prefix("y."), 10)).await;
    let replayed = watcher.next().await;
    assert_eq!(replayed, seen[11], "revision 12 is y.b's");
    assert!(matches!(watcher.next().await.event, Some(Event::Synced(_))));
    let mut admin = daemon.admin().await;
    assert_eq!(
        set_status(&mut admin, "x.a", v1::Status::HalfOpen, None)
            .await
            .revision,
        13
    );
    assert_eq!(
        set_status(&mut admin, "y.b", v1::Status::HalfOpen, None)
            .await
            .revision,
        14
    );
    let live = watcher.next().await;
    assert_eq!((live.revision, name_of(&live)), (14, "y.b"));
    daemon.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_start_at_the_current_revision_is_synced_at_once() {
    let daemon = Daemon::start().await;
    history(&daemon, 3).await;
    let mut client = daemon.protectors().await;
    let mut watcher = Watcher::open(&mut client, from(watch_all(), 5)).await;
    let synced = watcher.next().await;
    assert_eq!(synced.revision, 5);
    assert!(
        matches!(synced.event, Some(Event::Synced(v1::Synced { epoch })) if epoch != 0),
        "{synced:?}"
    );
    let mut admin = daemon.admin().await;
    assert_eq!(
        set_status(&mut admin, "y.b", v1::Status::Open, None)
            .await
            .revision,
        6
    );
    let live = watcher.next().await;
    assert_eq!((live.revision, name_of(&live)), (6, "y.b"));
    daemon.stop().await.expect("clean stop");
}

/// Reads RESYNC COMPACTED, a snapshot of `x.a` and `y.b` as they are, and SYNCED, all at
/// revision `current`.
async fn expect_compacted(daemon: &Daemon, start: u64, current: u64) {
    let mut client = daemon.protectors().await;
    let mut watcher = Watcher::open(&mut client, from(watch_all(), start)).await;
    let resync = watcher.next().await;
    assert_eq!(
        resync,
        v1::WatchEvent {
            revision: current,
            event: Some(Event::Resync(v1::Resync {
                reason: v1::ResyncReason::Compacted as i32,
            })),
        },
        "start {start}"
    );
    let (snapshot, synced) = watcher.snapshot().await;
    assert_eq!(
        snapshot,
        vec![daemon.inspect("x.a").await, daemon.inspect("y.b").await]
    );
    assert_eq!(synced, current);
}

#[tokio::test]
async fn a_start_older_than_the_history_is_compacted() {
    let mut config = circuitd::Config::default();
    config.watch.history = 8;
    let daemon = Daemon::with_config(config).await;
    let seen = history(&daemon, 18).await;
    assert_eq!(seen.len(), 20);
    // The history holds revisions 13..=20: a start at 12 still needs nothing older.
    let mut client = daemon.protectors().await;
    let mut watcher = Watcher::open(&mut client, from(watch_all(), 12)).await;
    for want in &seen[12..] {
        assert_eq!(&watcher.next().await, want);
    }
    assert!(matches!(watcher.next().await.event, Some(Event::Synced(_))));
    for start in [0, 2, 11] {
        expect_compacted(&daemon, start, 20).await;
    }
    daemon.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_start_newer_than_the_current_revision_is_compacted() {
    let daemon = Daemon::start().await;
    history(&daemon, 2).await;
    expect_compacted(&daemon, 5, 4).await;
    expect_compacted(&daemon, u64::MAX, 4).await;
    daemon.stop().await.expect("clean stop");
}

/// What a watcher believes about one protector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    status: i32,
    generation: u64,
    mod_revision: u64,
}

/// Applies one watch event to `local`; returns false once the marker protector appears.
fn apply(local: &mut HashMap<String, Known>, event: v1::WatchEvent, resyncs: &mut u32) -> bool {
    match event.event.expect("event") {
        Event::Snapshot(p) => {
            local.insert(
                p.name.clone(),
                Known {
                    status: p.status,
                    generation: p.generation,
                    mod_revision: p.mod_revision,
                },
            );
        }
        Event::Resync(_) => {
            *resyncs += 1;
            local.clear();
        }
        Event::Synced(_) | Event::Progress(_) => {}
        Event::Created(p) if p.name == "zz.done" => return false,
        Event::StatusChanged(s) => {
            let known = local
                .get_mut(&s.name)
                .expect("a change to a protector it has a snapshot of");
            if event.revision > known.mod_revision {
                let t = s.transition.expect("transition");
                assert_eq!(
                    (t.from, t.generation),
                    (known.status, known.generation + 1),
                    "{} at {}: no change missed",
                    s.name,
                    event.revision
                );
                *known = Known {
                    status: t.to,
                    generation: t.generation,
                    mod_revision: event.revision,
                };
            }
        }
        other => panic!("unexpected {other:?}"),
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_taken_while_writers_run_add_up_to_the_daemon_state() {
    const PROTECTORS: usize = 20;
    const WATCHERS: usize = 10;
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    let names: Vec<String> = (0..PROTECTORS).map(|i| format!("p{i:02}")).collect();
    for name in &names {
        ensure(&mut client, name, policy(Duration::ZERO, (1, 1), None)).await;
    }

    // Each round moves every protector CLOSED -> OPEN -> HALF_OPEN -> CLOSED.
    let stop = Arc::new(AtomicBool::new(false));
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let writer = {
        let mut client = daemon.protectors().await;
        let names = names.clone();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut started_tx = Some(started_tx);
            let mut rounds = 0u32;
            // A few rounds at least, so that changes keep coming after every watcher synced.
            while rounds < 5 || !stop.load(Ordering::Acquire) {
                for name in &names {
                    let tripped = call(&mut client, name, v1::Outcome::Failure).await;
                    assert_eq!(tripped.status, v1::Status::Open as i32);
                    let closed = call(&mut client, name, v1::Outcome::Success).await;
                    assert_eq!(closed.status, v1::Status::Closed as i32);
                    if let Some(tx) = started_tx.take() {
                        let _ = tx.send(());
                    }
                }
                rounds += 1;
            }
        })
    };
    started.await.expect("the writer runs");

    let (synced_tx, mut synced_rx) = tokio::sync::mpsc::channel(WATCHERS);
    let mut readers = Vec::new();
    for _ in 0..WATCHERS {
        let mut watcher = Watcher::open(&mut client, watch_all()).await;
        let synced_tx = synced_tx.clone();
        readers.push(tokio::spawn(async move {
            let mut local = HashMap::new();
            let mut resyncs = 0;
            loop {
                let event = watcher.next().await;
                let is_synced = matches!(event.event, Some(Event::Synced(_)));
                if !apply(&mut local, event, &mut resyncs) {
                    break;
                }
                if is_synced {
                    let _ = synced_tx.try_send(());
                }
            }
            (local, resyncs)
        }));
    }
    for _ in 0..WATCHERS {
        synced_rx.recv().await.expect("a watcher synced");
    }
    stop.store(true, Ordering::Release);
    writer.await.expect("writer");
    ensure(&mut client, "zz.done", v1::Policy::default()).await;

    let mut truth = HashMap::new();
    for name in &names {
        let p = daemon.inspect(name).await;
        truth.insert(
            name.clone(),
            Known {
                status: p.status,
                generation: p.generation,
                mod_revision: p.mod_revision,
            },
        );
    }
    for reader in readers {
        let (local, resyncs) = reader.await.expect("reader");
        assert_eq!(local, truth, "after {resyncs} resyncs");
    }
    daemon.stop().await.expect("clean stop");
}

/// A start revision from another history (another epoch) is never compared with this
/// daemon's revisions: RESYNC, snapshot, SYNCED; the daemon's own epoch resumes.
#[tokio::test]
async fn a_start_revision_from_another_epoch_is_resynced() {
    let daemon = Daemon::start().await;
    history(&daemon, 3).await;
    let mut client = daemon.protectors().await;
    let mut first = Watcher::open(&mut client, watch_all()).await;
    let epoch = match first.next_until_synced().await {
        Some(Event::Synced(v1::Synced { epoch })) => epoch,
        other => panic!("expected SYNCED, got {other:?}"),
    };
    let mut same = Watcher::open(
        &mut client,
        v1::WatchRequest {
            start_epoch: Some(epoch),
            ..from(watch_all(), 5)
        },
    )
    .await;
    assert!(matches!(same.next().await.event, Some(Event::Synced(_))));
    let mut other = Watcher::open(
        &mut client,
        v1::WatchRequest {
            start_epoch: Some(epoch.wrapping_add(1)),
            ..from(watch_all(), 5)
        },
    )
    .await;
    match other.next().await.event {
        Some(Event::Resync(r)) => assert_eq!(r.reason, v1::ResyncReason::Compacted as i32),
        e => panic!("expected RESYNC, got {e:?}"),
    }
    daemon.stop().await.expect("clean stop");
}
