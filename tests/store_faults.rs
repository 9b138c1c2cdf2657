//! A journal that fails while serving (a full disk, an I/O error, a write cut short, an
//! fsync that fails): the change whose record could not be made durable is seen by
//! nobody (its answer, later answers, Get, List, watchers, new Watch snapshots), the
//! daemon stops deciding (health NOT_SERVING, calls UNAVAILABLE, so clients use their
//! fallback) and `serve` ends with an error naming the journal file; a restart on the
//! same data directory has every acknowledged change and nothing else.
//!
//! Faults are injected through the store's seam (`circuitd::store::faults`); the test
//! against a real full filesystem is in `store_disk_full.rs`.

use std::time::Duration;

use circuitd::config::StoreSettings;
use circuitd::store::faults::{Faults, WriteFault};
use circuitd::{Config, ServeError};
use resilient_circuit_api::v1;
use support::*;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const NAME: &str = "payments";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Write(WriteFault),
    FsyncOnce,
}

fn config(dir: &std::path::Path, faults: Option<Faults>) -> Config {
    Config {
        store: Some(StoreSettings {
            faults,
            // Only what this test does is written: no batch flush interferes.
            flush_interval: Duration::from_secs(3600),
            ..StoreSettings::new(dir)
        }),
        ..Config::default()
    }
}

/// The call was not answered: UNAVAILABLE from the daemon, or, once it has closed the
/// connection on its way out, the transport's own failure. Either way the client uses
/// its fallback and sees nothing of the change.
#[track_caller]
fn assert_unavailable<T: std::fmt::Debug>(what: &str, got: Result<T, tonic::Status>) {
    use tonic::Code::{Cancelled, Internal, Unavailable, Unknown};
    match got {
        Err(status) => assert!(
            matches!(status.code(), Unavailable | Unknown | Internal | Cancelled),
            "{what}: {status:?}"
        ),
        Ok(answer) => panic!("{what} answered after the journal failed: {answer:?}"),
    }
}

#[tokio::test]
async fn a_change_that_cannot_be_made_durable_is_seen_by_nobody_and_stops_the_daemon() {
    for fault in [
        Fault::Write(WriteFault::DiskFull),
        Fault::Write(WriteFault::Io),
        Fault::Write(WriteFault::Short),
        Fault::FsyncOnce,
    ] {
        let dir = TempDir::new("store-faults");
        let faults = Faults::new();
        let daemon = Daemon::with_config(config(dir.path(), Some(faults.clone()))).await;
        let mut client = daemon.protectors().await;
        let created = ensure(&mut client, NAME, policy(Duration::from_secs(60), (1, 1), None)).await;
        assert_eq!(created.generation, 1);
        let mut watcher = Watcher::open(&mut client, watch_all()).await;
        assert!(
            matches!(
                watcher.next_until_synced().await,
                Some(v1::watch_event::Event::Synced(_))
            ),
            "{fault:?}"
        );
        let mut health = HealthClient::new(daemon.channel().await)
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("health Watch")
            .into_inner();
        let serving = health.message().await.expect("health").expect("a status");
        assert_eq!(serving.status(), ServingStatus::Serving, "{fault:?}");

        match fault {
            Fault::Write(w) => faults.fail_writes(w),
            Fault::FsyncOnce => faults.fail_next_sync(),
        }
        // CLOSED admits from durable state; the failure trips, and the trip's record
        // is what the disk refuses.
        let admitted = acquire(&mut client, NAME).await;
        assert_eq!(admitted.decision, v1::Decision::Admitted as i32, "{fault:?}");
        let trip = client
            .report(v1::ReportRequest {
                name: NAME.into(),
                permit: admitted.permit,
                outcome: v1::Outcome::Failure as i32,
                ..Default::default()
            })
            .await;
        assert_unavailable("the tripping Report", trip);

        // Nobody sees the trip: every later answer is UNAVAILABLE, never OPEN.
        assert_unavailable(
            "Acquire",
            client.acquire(v1::AcquireRequest { name: NAME.into() }).await,
        );
        assert_unavailable(
            "GetProtector",
            client
                .get_protector(v1::GetProtectorRequest { name: NAME.into() })
                .await,
        );
        assert_unavailable(
            "ListProtectors",
            client.list_protectors(v1::ListProtectorsRequest::default()).await,
        );
        // The watcher hears no change; its stream ends.
        loop {
            match watcher.next_raw().await {
                Ok(Some(event)) => assert!(
                    !matches!(event.event, Some(v1::watch_event::Event::StatusChanged(_))),
                    "{fault:?}: a watcher heard of a change that is not durable: {event:?}"
                ),
                Ok(None) => break,
                Err(status) => {
                    assert_unavailable::<()>("the watch stream", Err(status));
                    break;
                }
            }
        }
        // Health turns NOT_SERVING (or the server is gone before it could be told).
        let mut last = ServingStatus::Serving;
        while let Ok(Some(update)) = tokio::time::timeout(DEADLINE, health.message())
            .await
            .expect("health within the deadline")
        {
            last = update.status();
            if last != ServingStatus::Serving {
                break;
            }
        }
        assert_ne!(last, ServingStatus::Serving, "{fault:?}");
        drop((health, watcher, client));

        // serve ends with the failure, naming the journal file.
        match daemon.stop().await {
            Err(ServeError::JournalFailed(why)) => {
                assert!(why.contains("journal-"), "{fault:?}: {why}");
                let message = ServeError::JournalFailed(why).to_string();
                assert!(message.contains("start circuitd again"), "{message}");
            }
            other => panic!("{fault:?}: serve ended with {other:?}"),
        }

        // Recovery: the disk takes writes again and a restart has every acknowledged
        // change. A write that never reached the disk leaves the protector as it was;
        // after an fsync that failed, the kernel may still have written the record, and
        // the trip may be there: it was never acknowledged, nor seen, either way.
        faults.clear();
        // The stopped daemon's last connection tasks may still hold its store (and with it
        // the data directory's LOCK) for a moment after serve returned; a process's exit
        // releases it at once, an in-process daemon only when those tasks are gone.
        let lock = dir.path().join("LOCK");
        eventually(
            async || {
                let file = std::fs::File::open(&lock).map_err(|e| e.to_string())?;
                file.try_lock().map_err(|e| format!("{e:?}"))
            },
            |why| {
                format!(
                    "{fault:?}: the stopped daemon still holds {}: {why}",
                    lock.display()
                )
            },
        )
        .await;
        let again = Daemon::with_config(config(dir.path(), None)).await;
        let mut client = again.protectors().await;
        let got = client
            .get_protector(v1::GetProtectorRequest { name: NAME.into() })
            .await;
        let got = match got {
            Ok(got) => got,
            // Say why the restarted daemon stopped answering: its serve's own result.
            Err(status) => panic!(
                "{fault:?}: GetProtector after the restart: {status:?}; serve: {:?}",
                again.stop().await
            ),
        };
        let p = got.into_inner().protector.expect("protector");
        match fault {
            Fault::Write(_) => assert_eq!((p.status(), p.generation), (v1::Status::Closed, 1), "{fault:?}"),
            Fault::FsyncOnce => assert!(
                matches!(
                    (p.status(), p.generation),
                    (v1::Status::Closed, 1) | (v1::Status::Open, 2)
                ),
                "{fault:?}: {p:?}"
            ),
        }
        // And it decides again.
        let decided = acquire(&mut client, NAME).await;
        assert_ne!(decided.decision, v1::Decision::Unspecified as i32);
        again.stop().await.expect("a clean stop");
    }
}

#[tokio::test]
async fn reads_wait_for_the_state_they_show_to_be_durable() {
    let dir = TempDir::new("store-visible");
    let faults = Faults::new();
    let daemon = Daemon::with_config(config(dir.path(), Some(faults.clone()))).await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, NAME, policy(Duration::from_secs(60), (1, 1), None)).await;
    let admitted = acquire(&mut client, NAME).await;

    // The trip's fsync waits at the gate, and will fail: the trip never becomes durable.
    faults.hold_syncs();
    faults.fail_next_sync();
    let trip = tokio::spawn({
        let mut client = client.clone();
        async move {
            client
                .report(v1::ReportRequest {
                    name: NAME.into(),
                    permit: admitted.permit,
                    outcome: v1::Outcome::Failure as i32,
                    ..Default::default()
                })
                .await
        }
    });
    let held = {
        let faults = faults.clone();
        tokio::task::spawn_blocking(move || faults.wait_until_held(1, DEADLINE))
            .await
            .expect("join")
    };
    assert!(held, "the trip's fsync never reached the gate");

    // Every read made while the trip is in memory but not on disk.
    let reads = {
        let mut c = client.clone();
        let get = tokio::spawn(async move {
            c.get_protector(v1::GetProtectorRequest { name: NAME.into() })
                .await
        });
        let mut c = client.clone();
        let list = tokio::spawn(async move { c.list_protectors(v1::ListProtectorsRequest::default()).await });
        let mut c = client.clone();
        let ensure = tokio::spawn(async move {
            c.ensure_protector(v1::EnsureProtectorRequest {
                name: NAME.into(),
                policy: None,
            })
            .await
        });
        let mut c = client.clone();
        let snapshot = tokio::spawn(async move {
            let mut stream = c.watch(watch_all()).await?.into_inner();
            let mut events = Vec::new();
            while let Some(event) = stream.message().await? {
                events.push(event);
            }
            Ok::<_, tonic::Status>(events)
        });
        (get, list, ensure, snapshot)
    };
    faults.release_syncs();

    assert_unavailable("the tripping Report", trip.await.expect("join"));
    let (get, list, ensure, snapshot) = reads;
    assert_unavailable("GetProtector", get.await.expect("join"));
    assert_unavailable("ListProtectors", list.await.expect("join"));
    assert_unavailable(
        "EnsureProtector of the existing protector",
        ensure.await.expect("join"),
    );
    match snapshot.await.expect("join") {
        Err(status) => assert_unavailable::<()>("the Watch snapshot", Err(status)),
        Ok(events) => panic!("a Watch snapshot ended without an error: {events:?}"),
    }
    drop(client);
    assert!(matches!(daemon.stop().await, Err(ServeError::JournalFailed(_))));
}
