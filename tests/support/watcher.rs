//! Watch streams read with a deadline: [`Watcher`] and the requests and event readers
//! the tests open and read them with.

use resilient_circuit_api::v1;
use resilient_circuit_api::v1::watch_event::Event;

use crate::fixtures::{DEADLINE, ProtectorClient};

/// A Watch stream and helpers to read it with a deadline.
#[derive(Debug)]
pub struct Watcher {
    stream: tonic::Streaming<v1::WatchEvent>,
}

impl Watcher {
    /// Opens a Watch with `request`.
    pub async fn open(client: &mut ProtectorClient, request: v1::WatchRequest) -> Watcher {
        let stream = client.watch(request).await.expect("Watch").into_inner();
        Watcher { stream }
    }

    /// A Watch of `name` alone, read past its snapshot.
    pub async fn past_snapshot(client: &mut ProtectorClient, name: &str) -> Watcher {
        let mut watcher = Watcher::open(client, watch_names(&[name])).await;
        watcher.snapshot().await;
        watcher
    }

    /// The next event, failing the test after [`DEADLINE`].
    pub async fn next(&mut self) -> v1::WatchEvent {
        match tokio::time::timeout(DEADLINE, self.stream.message()).await {
            Ok(Ok(Some(event))) => event,
            Ok(Ok(None)) => panic!("watch stream ended"),
            Ok(Err(status)) => panic!("watch stream failed: {status:?}"),
            Err(_) => panic!("no watch event within {DEADLINE:?}"),
        }
    }

    /// The next item as the transport gives it: an event, the end, or an error status.
    pub async fn next_raw(&mut self) -> Result<Option<v1::WatchEvent>, tonic::Status> {
        tokio::time::timeout(DEADLINE, self.stream.message())
            .await
            .unwrap_or_else(|_| panic!("nothing on the watch stream within {DEADLINE:?}"))
    }

    /// The next event, which must be a STATUS_CHANGED; returns its revision and
    /// transition.
    pub async fn next_transition(&mut self) -> (u64, v1::Transition) {
        let event = self.next().await;
        match event.event {
            Some(Event::StatusChanged(s)) => (event.revision, s.transition.expect("transition")),
            other => panic!("expected STATUS_CHANGED, got {other:?}"),
        }
    }

    /// Skips snapshots; returns the SYNCED event (or whatever else came first).
    pub async fn next_until_synced(&mut self) -> Option<Event> {
        loop {
            match self.next().await.event {
                Some(Event::Snapshot(_)) => continue,
                other => return other,
            }
        }
    }

    /// Reads the initial snapshot up to SYNCED; returns the snapshots and SYNCED's revision.
    pub async fn snapshot(&mut self) -> (Vec<v1::Protector>, u64) {
        let mut protectors = Vec::new();
        loop {
            let event = self.next().await;
            match event.event.expect("event") {
                Event::Snapshot(p) => protectors.push(p),
                Event::Synced(_) => return (protectors, event.revision),
                other => panic!("expected snapshot or SYNCED, got {other:?}"),
            }
        }
    }
}

/// A Watch request for every protector.
pub fn watch_all() -> v1::WatchRequest {
    v1::WatchRequest {
        filter: Some(v1::watch_request::Filter::All(true)),
        ..Default::default()
    }
}

/// A Watch request for the protectors named in `list`.
pub fn watch_names(list: &[&str]) -> v1::WatchRequest {
    v1::WatchRequest {
        filter: Some(v1::watch_request::Filter::Names(v1::NameList {
            names: list.iter().map(|n| (*n).to_owned()).collect(),
        })),
        ..Default::default()
    }
}

/// A Watch request for the protectors whose names start with `p`.
pub fn watch_prefix(p: &str) -> v1::WatchRequest {
    v1::WatchRequest {
        filter: Some(v1::watch_request::Filter::Prefix(p.into())),
        ..Default::default()
    }
}

/// The protector a change event concerns; fails the test on anything but a change.
#[track_caller]
pub fn name_of(event: &v1::WatchEvent) -> &str {
    match event.event.as_ref().expect("event") {
        Event::Created(p) => &p.name,
        Event::StatusChanged(s) => &s.name,
        Event::Deleted(d) => &d.name,
        Event::PolicyUpdated(p) => &p.name,
        Event::OverrideChanged(o) => &o.name,
        other => panic!("expected a change, got {other:?}"),
    }
}

/// The epoch a fresh Watch's SYNCED carries: the identity of the daemon's history.
pub async fn synced_epoch(client: &mut ProtectorClient) -> u64 {
    let mut watcher = Watcher::open(client, watch_all()).await;
    match watcher.next_until_synced().await {
        Some(Event::Synced(s)) => s.epoch,
        other => panic!("expected SYNCED, got {other:?}"),
    }
}
