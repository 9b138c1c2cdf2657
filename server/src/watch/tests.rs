//! The snapshot walk, against a fleet of names in memory and a real sequencer, with no
//! transport in between: a watcher holds its place, not the names, and a snapshot that
//! lags catches up and reaches SYNCED instead of starting over.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use super::*;
use crate::config::WatchConfig;

/// Protectors by name with their `mod_revision`; counts the steps it was asked for.
#[derive(Default)]
struct Fleet {
    protectors: Mutex<BTreeMap<String, u64>>,
    steps: AtomicUsize,
}

impl Fleet {
    fn with(count: usize) -> Arc<Fleet> {
        let fleet = Fleet::default();
        fleet
            .protectors
            .lock()
            .unwrap()
            .extend((0..count).map(|i| (format!("n{i:05}"), 0)));
        Arc::new(fleet)
    }

    /// A change to `name`, committed as the registry does: under the fleet's lock.
    fn change(&self, sequencer: &Sequencer, name: &str) -> u64 {
        let mut protectors = self.protectors.lock().unwrap();
        let event: crate::sequencer::EventFn<'_> = Box::new(|_| {
            Event::PolicyUpdated(v1::PolicyUpdated {
                name: name.to_owned(),
                policy: None,
            })
        });
        let revision = sequencer.commit(name, vec![event], None).unwrap().revision;
        protectors.insert(name.to_owned(), revision);
        revision
    }

    fn delete(&self, sequencer: &Sequencer, name: &str) {
        let mut protectors = self.protectors.lock().unwrap();
        let event: crate::sequencer::EventFn<'_> = Box::new(|_| {
            Event::Deleted(v1::Deleted {
                name: name.to_owned(),
            })
        });
        sequencer.commit(name, vec![event], None).unwrap();
        protectors.remove(name);
    }
}

impl SnapshotSource for Fleet {
    fn next_name(&self, filter: &Filter, after: Option<&str>) -> Option<String> {
        self.steps.fetch_add(1, Ordering::Relaxed);
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let protectors = self.protectors.lock().unwrap();
        protectors
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(name, _)| name)
            .find(|name| filter.matches(name))
            .cloned()
    }

    fn mod_revision(&self, name: &str) -> Option<u64> {
        self.protectors.lock().unwrap().get(name).copied()
    }

    fn snapshot(&self, name: &str) -> Option<(v1::Protector, Option<u64>)> {
        let protectors = self.protectors.lock().unwrap();
        protectors.get(name).map(|&mod_revision| {
            let p = v1::Protector {
                name: name.to_owned(),
                mod_revision,
                ..Default::default()
            };
            (p, None)
        })
    }

    async fn durable(&self, _: Option<u64>) -> Result<(), tonic::Status> {
        Ok(())
    }
}

fn sequencer(buffer: usize) -> Arc<Sequencer> {
    let config = WatchConfig {
        buffer,
        ..WatchConfig::default()
    };
    Arc::new(Sequencer::new(&config, 0, 1, false))
}

fn watch_all() -> WatchParams {
    WatchParams {
        filter: Filter::Prefix(String::new()),
        start_revision: None,
        start_epoch: None,
        progress_interval: Duration::from_secs(3600),
    }
}

async fn next<S: SnapshotSource>(watcher: &mut Watcher<S>) -> v1::WatchEvent {
    watcher.next().await.expect("stream open").expect("no error")
}

#[tokio::test]
async fn a_snapshot_holds_its_place_not_the_names() {
    let fleet = Fleet::with(10_000);
    let sequencer = sequencer(8);
    let watchers = Watchers::new(1, CancellationToken::new());
    let mut watcher = watchers
        .start(&sequencer, Arc::clone(&fleet), watch_all())
        .unwrap();
    for _ in 0..3 {
        next(&mut watcher).await;
    }
    // Asked one name per item sent, never for the whole range.
    assert_eq!(fleet.steps.load(Ordering::Relaxed), 3);
    let place = watcher.snapshot.as_ref().and_then(|pass| pass.after.as_deref());
    assert_eq!(place, Some("n00002"));
}

/// A view built from snapshot items, DELETED and changes: name to `mod_revision`.
fn apply(view: &mut BTreeMap<String, u64>, event: &v1::WatchEvent) {
    match event.event.as_ref().expect("event") {
        Event::Snapshot(p) => {
            view.insert(p.name.clone(), p.mod_revision);
        }
        Event::PolicyUpdated(p) => {
            view.insert(p.name.clone(), event.revision);
        }
        Event::Deleted(d) => {
            view.remove(&d.name);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_snapshot_that_lags_catches_up_and_syncs_instead_of_starting_over() {
    const NAMES: usize = 500;
    let fleet = Fleet::with(NAMES);
    let sequencer = sequencer(8);
    let watchers = Watchers::new(1, CancellationToken::new());
    let mut watcher = watchers
        .start(&sequencer, Arc::clone(&fleet), watch_all())
        .unwrap();
    let churn = |step: usize| format!("n{:05}", step % 10);

    // One change per 5 items sent: 100 changes during the first pass, far more than the
    // buffer of 8; and a protector already sent is deleted meanwhile.
    let mut view = BTreeMap::new();
    let (mut items, mut changes) = (0, 0);
    let synced = loop {
        let event = next(&mut watcher).await;
        assert!(
            watcher.seen.len() <= watcher.seen_cap,
            "seen stays within the buffer"
        );
        match event.event.as_ref().expect("event") {
            Event::Synced(_) => break event.revision,
            Event::Resync(_) => panic!("a lagging snapshot started over after {items} items"),
            _ => apply(&mut view, &event),
        }
        items += 1;
        if items % 5 == 0 {
            fleet.change(&sequencer, &churn(changes));
            changes += 1;
        }
        if items == 100 {
            fleet.delete(&sequencer, "n00050");
        }
        assert!(items < 2 * NAMES, "no SYNCED after {items} items");
    };
    assert!(
        items > NAMES,
        "the first pass lagged and a catch-up pass followed"
    );
    assert!(
        !view.contains_key("n00050"),
        "the deletion was told before SYNCED"
    );

    // After SYNCED: every change, in order, no RESYNC; the view ends equal to the fleet.
    let mut last = synced;
    for _ in 0..20 {
        let revision = fleet.change(&sequencer, &churn(changes));
        changes += 1;
        while last < revision {
            let event = next(&mut watcher).await;
            assert!(event.revision > last, "{} after {last}", event.revision);
            if let Some(Event::Resync(_)) = event.event {
                panic!("RESYNC after SYNCED");
            }
            last = event.revision;
            apply(&mut view, &event);
        }
    }
    assert_eq!(view, *fleet.protectors.lock().unwrap());
}
