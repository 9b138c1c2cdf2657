//! A follower's state: the replicated log replayed into a registry that never decides,
//! and the leader's events handed to this replica's watchers with the leader's
//! revisions.

use std::sync::Arc;

use etcd_client::{EventType, GetOptions, WatchOptions};
use prost::Message;

use super::Shared;
use crate::registry::Registry;
use crate::sequencer::Published;
use crate::store::Replay;
use crate::store::record::{Body, LogEntry};

/// What a follower has replayed.
#[derive(Debug)]
pub(super) struct Follow {
    pub(super) replay: Replay,
    /// The last sequence number applied.
    pub(super) applied: u64,
    /// The registry reads are served from.
    pub(super) registry: Arc<Registry>,
}

impl Follow {
    /// Reads the whole log and replays it; returns the state and the etcd revision it
    /// reflects (the watch continues after it).
    pub(super) async fn load(shared: &Shared) -> Result<(Follow, i64), String> {
        let mut follow = Follow {
            replay: Replay::default(),
            applied: 0,
            registry: Arc::new(shared.registry(None)),
        };
        let revision = follow.catch_up(shared, None).await?;
        Ok((follow, revision))
    }

    /// Applies every log entry after the last one applied, read at `at` (or the latest
    /// revision); returns the revision read.
    pub(super) async fn catch_up(&mut self, shared: &Shared, at: Option<i64>) -> Result<i64, String> {
        let mut kv = shared.client.kv_client();
        let from = shared.keys.log_entry(self.applied + 1);
        let end = format!("{}~", shared.keys.log());
        let mut options = GetOptions::new().with_range(end);
        if let Some(at) = at {
            options = options.with_revision(at);
        }
        let answer = kv
            .get(from, Some(options))
            .await
            .map_err(|e| format!("reading the replicated log: {e}"))?;
        let revision = answer.header().map_or(0, |h| h.revision());
        for entry in answer.kvs() {
            self.apply(shared, entry.key(), entry.value())?;
        }
        Ok(revision)
    }

    /// Applies one `P/log/<seq>` entry: its records to the state, then its events to the
    /// watchers (so a watcher that reads after an event sees at least that state).
    pub(super) fn apply(&mut self, shared: &Shared, key: &[u8], value: &[u8]) -> Result<(), String> {
        let Some(seq) = shared.keys.log_seq(key) else {
            return Ok(());
        };
        if seq <= self.applied {
            return Ok(());
        }
        let entry = LogEntry::decode(value).map_err(|e| {
            format!(
                "log entry {}: cannot decode it: {e}",
                String::from_utf8_lossy(key)
            )
        })?;
        for record in entry.records {
            if record.seq <= self.applied {
                continue;
            }
            let name = match &record.body {
                Some(Body::Put(p)) => p.name.clone(),
                Some(Body::Trial(t)) => t.state.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
                Some(Body::Delete(name)) => name.clone(),
                None => continue,
            };
            self.replay.apply(record)?;
            match self.replay.get(&name) {
                Some(stored) => self.registry.replicate_put(&stored)?,
                None => self.registry.replicate_delete(&name),
            }
        }
        for logged in entry.events {
            if let Some(event) = logged.event {
                shared.sequencer.replicate(Published {
                    name: logged.name,
                    event,
                });
            }
        }
        self.applied = seq;
        Ok(())
    }

    /// Follows the log from etcd revision `after` + 1 until the watch fails (the caller
    /// reloads) or `stop` resolves (Ok).
    pub(super) async fn follow(
        &mut self,
        shared: &Shared,
        after: i64,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), String> {
        let mut client = shared.client.clone();
        let options = WatchOptions::new().with_prefix().with_start_revision(after + 1);
        let mut stream = client
            .watch(shared.keys.log(), Some(options))
            .await
            .map_err(|e| format!("watching the replicated log: {e}"))?;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return Ok(()),
                message = stream.message() => {
                    let answer = match message {
                        Ok(Some(answer)) => answer,
                        Ok(None) => return Err("the log watch ended".into()),
                        Err(e) => return Err(format!("the log watch failed: {e}")),
                    };
                    if answer.canceled() || answer.compact_revision() > 0 {
                        return Err(format!(
                            "the log watch was cancelled ({}); reloading",
                            answer.cancel_reason()
                        ));
                    }
                    for event in answer.events() {
                        if event.event_type() == EventType::Put
                            && let Some(kv) = event.kv()
                        {
                            self.apply(shared, kv.key(), kv.value())?;
                        }
                    }
                }
            }
        }
    }
}
