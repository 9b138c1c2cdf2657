//! Watch snapshots larger than the watch buffer: while changes keep coming, a watcher
//! still reaches SYNCED (no endless RESYNC loop), holds a consistent view there, and then
//! hears every change in revision order.

use std::collections::BTreeMap;
use std::time::Duration;

use resilient_circuit_api::v1;
use resilient_circuit_api::v1::watch_event::Event;
use support::*;
use tokio::sync::{mpsc, oneshot};

/// More than the transport buffers between the daemon and the watcher, so the daemon
/// cannot finish a snapshot far ahead of the reading.
const PROTECTORS: usize = 5_000;
/// The protectors the writer keeps changing.
const CHURN: usize = 10;
/// The watcher asks for one change per this many snapshot items it reads, so every full
/// snapshot (5,000 items) sees far more changes than the buffer (8) holds.
const ITEMS_PER_CHANGE: usize = 5;

fn name(i: usize) -> String {
    format!("snap.{i:03}")
}

/// A writer task: each request makes one change (the next churned protector flips between
/// OPEN and CLOSED) and is acknowledged once answered, so the changes keep pace with the
/// reading, whatever the machine's speed.
fn writer(mut admin: AdminClient) -> (mpsc::Sender<oneshot::Sender<()>>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<oneshot::Sender<()>>(1);
    let task = tokio::spawn(async move {
        let mut open = [false; CHURN];
        let mut step = 0;
        while let Some(done) = rx.recv().await {
            let i = step % CHURN;
            open[i] = !open[i];
            let to = if open[i] {
                v1::Status::Open
            } else {
                v1::Status::Closed
            };
            set_status(&mut admin, &name(i), to, None).await;
            step += 1;
            let _ = done.send(());
        }
    });
    (tx, task)
}

async fn change(writer: &mpsc::Sender<oneshot::Sender<()>>) {
    let (done, acked) = oneshot::channel();
    writer.send(done).await.expect("writer running");
    acked.await.expect("change made");
}

/// A watcher's view: each protector's status and revision as its latest event says.
#[derive(Default)]
struct View {
    status: BTreeMap<String, i32>,
    /// Each protector's revision in the view: a snapshot's `mod_revision`, or a change's.
    revision: BTreeMap<String, u64>,
    /// Between SYNCED and the next RESYNC.
    synced: bool,
    /// SYNCED's revision, then that of each change after it: changes after SYNCED come
    /// in revision order, each above it. (A change may be below a snapshot item of
    /// *another* protector: the snapshot reads each protector as it reaches it, and a
    /// change already reflected in its own protector's item is not sent again.)
    last: u64,
    resyncs: usize,
    snapshot_items: usize,
}

impl View {
    /// Applies one event; a change after SYNCED must come in revision order, and after
    /// what the view holds of its protector.
    fn apply(&mut self, event: v1::WatchEvent) {
        let revision = event.revision;
        match event.event.expect("event") {
            Event::Snapshot(p) => {
                assert!(!self.synced, "a snapshot after SYNCED without RESYNC");
                self.snapshot_items += 1;
                self.revision.insert(p.name.clone(), revision);
                self.status.insert(p.name, p.status);
            }
            Event::StatusChanged(sc) => {
                assert!(self.synced, "a change before SYNCED");
                assert!(
                    revision > self.last,
                    "change at revision {revision} after SYNCED or a change at {}",
                    self.last
                );
                let held = self.revision.get(&sc.name).copied().unwrap_or(0);
                assert!(
                    revision > held,
                    "change of {} at revision {revision}, which the view already holds at {held}",
                    sc.name
                );
                self.last = revision;
                self.revision.insert(sc.name.clone(), revision);
                let to = sc.transition.expect("transition").to;
                self.status.insert(sc.name, to);
            }
            Event::Synced(_) => {
                self.synced = true;
                self.last = revision;
            }
            // A watcher that cannot keep up after SYNCED is resynced: the snapshot that
            // follows replaces the view.
            Event::Resync(_) => {
                self.resyncs += 1;
                self.synced = false;
                self.last = 0;
                self.status.clear();
                self.revision.clear();
            }
            Event::Progress(_) => {}
            other => panic!("nothing else happens here, got {other:?}"),
        }
    }

    /// Whether the view is synced and holds `p` at its `mod_revision` or later.
    fn holds(&self, p: &v1::Protector) -> bool {
        self.synced && self.revision.get(&p.name).is_some_and(|&r| r >= p.mod_revision)
    }
}

#[tokio::test]
async fn a_snapshot_larger_than_the_buffer_reaches_synced_while_changes_keep_coming() {
    let mut config = circuitd::Config::default();
    config.watch.buffer = 8;
    let long = resilient_circuit_breaker::PolicySpec {
        cooldown: Duration::from_secs(3600),
        ..Default::default()
    };
    config.protectors = (0..PROTECTORS)
        .map(|i| circuitd::config::ProtectorConfig {
            name: name(i),
            policy: long,
        })
        .collect();
    let daemon = Daemon::with_config(config).await;
    let mut client = daemon.protectors().await;
    let (writer, task) = writer(daemon.admin().await);

    // A narrow window: the daemon cannot run far ahead of what the watcher reads.
    let mut narrow = ProtectorClient::new(daemon.narrow_channel().await);
    let mut watcher = Watcher::open(&mut narrow, watch_prefix("snap.")).await;
    let mut view = View::default();
    // Changes keep coming, one per few snapshot items read, until the watcher is synced.
    tokio::time::timeout(DEADLINE, async {
        while !view.synced {
            view.apply(watcher.next().await);
            if !view.synced && view.snapshot_items % ITEMS_PER_CHANGE == 0 {
                change(&writer).await;
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no SYNCED within {DEADLINE:?}: {} snapshot items, {} resyncs",
            view.snapshot_items, view.resyncs
        )
    });
    assert_eq!(
        view.resyncs, 0,
        "a lagging snapshot continues instead of starting over"
    );
    assert!(
        view.snapshot_items > PROTECTORS,
        "the first pass lagged: the stream caught up before SYNCED, rather than sending \
         SYNCED and then RESYNC; {} items",
        view.snapshot_items
    );
    assert_eq!(
        view.status.len(),
        PROTECTORS,
        "every protector in the view at SYNCED"
    );

    // Consistent: once the watcher holds each of these protectors at the revision
    // GetProtector gave, its view equals what GetProtector says. (The transport holds many snapshot items the daemon already
    // sent, and the changes made while the watcher drains them may overflow its small
    // buffer after SYNCED: that is an ordinary RESYNC, handled by the view.)
    // Every churned protector, and some of the others.
    let mut now = Vec::new();
    for i in (0..CHURN).chain((CHURN..PROTECTORS).step_by(250)) {
        now.push(get(&mut client, &name(i)).await);
    }
    while !now.iter().all(|p| view.holds(p)) {
        view.apply(watcher.next().await);
    }
    for p in &now {
        assert_eq!(view.status.get(&p.name), Some(&p.status), "{}", p.name);
    }

    // And every change after that is heard, in order.
    for _ in 0..2 * CHURN {
        change(&writer).await;
        view.apply(watcher.next().await);
        assert!(view.synced);
    }
    drop(writer);
    task.await.expect("writer");
}
