//! A follower's state: the replicated log replayed into a registry that never decides,
//! and the leader's events handed to this replica's watchers with the leader's
//! revisions.

use std::sync::Arc;

use etcd_client::{EventType, GetOptions, KvClient, WatchOptions};
use prost::Message;

use super::keys::{Keys, SnapshotPointer};
use super::shared::Shared;
use crate::registry::Registry;
use crate::store::Replay;
use crate::store::record::{LogEntry, Snapshot};

/// Keys per page of a range read: each value is at most 1 MiB (see `sink`).
const PAGE: i64 = 16;

/// How long one read may take. A request that reached an etcd member as the etcd leader
/// died is answered only after etcd's own request timeout (about 7 s); giving up sooner
/// and asking again (the caller reloads) gets the answer of the new etcd leader.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `kv.get(key, options)` within [`READ_TIMEOUT`].
async fn get(
    kv: &mut KvClient,
    key: Vec<u8>,
    options: Option<GetOptions>,
) -> Result<etcd_client::GetResponse, String> {
    let what = String::from_utf8_lossy(&key).into_owned();
    match tokio::time::timeout(READ_TIMEOUT, kv.get(key, options)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(format!("reading {what}: {e}")),
        Err(_) => Err(format!(
            "reading {what}: etcd did not answer within {READ_TIMEOUT:?}"
        )),
    }
}

/// A KV client that takes pages of up to `PAGE` full values.
fn kv(shared: &Shared) -> KvClient {
    shared
        .client
        .kv_client()
        .max_decoding_message_size(64 * 1024 * 1024)
}

/// Every key and value in `[from, end)` at revision `at`, in key order, read a page at
/// a time.
async fn range(
    kv: &mut KvClient,
    mut from: Vec<u8>,
    end: Vec<u8>,
    at: i64,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, String> {
    let mut all = Vec::new();
    loop {
        let options = GetOptions::new()
            .with_range(end.clone())
            .with_revision(at)
            .with_limit(PAGE);
        let page = get(kv, from.clone(), Some(options)).await?;
        for found in page.kvs() {
            all.push((found.key().to_vec(), found.value().to_vec()));
        }
        match page.kvs().last() {
            Some(last) if page.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok(all),
        }
    }
}

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
    /// Reads the latest snapshot and the log after it, all at one etcd revision, and
    /// replays them; returns the state and that revision (the watch continues after it).
    pub(super) async fn load(shared: &Shared) -> Result<(Follow, i64), String> {
        let mut follow = Follow {
            replay: Replay::default(),
            applied: 0,
            registry: Arc::new(shared.registry(None)),
        };
        let mut kv = kv(shared);
        let pointer = get(&mut kv, shared.keys.snapshot().into_bytes(), None).await?;
        let at = pointer.header().map_or(0, |h| h.revision());
        if let Some(found) = pointer.kvs().first() {
            let pointer = SnapshotPointer::decode(found.value())
                .map_err(|e| format!("the snapshot pointer cannot be decoded: {e}"))?;
            let pieces = shared.keys.snapshot_pieces(pointer.last_seq);
            let end = Keys::end_of(&pieces);
            let mut count = 0;
            for (key, value) in range(&mut kv, pieces.into_bytes(), end, at).await? {
                let piece = Snapshot::decode(value.as_slice()).map_err(|e| {
                    format!(
                        "snapshot piece {} cannot be decoded: {e}",
                        String::from_utf8_lossy(&key)
                    )
                })?;
                for stored in piece.protectors {
                    follow.registry.replicate_put(&stored)?;
                    follow.replay.insert(stored);
                }
                count += 1;
            }
            if count != pointer.pieces {
                return Err(format!(
                    "the snapshot at sequence {} has {count} of its {} pieces",
                    pointer.last_seq, pointer.pieces
                ));
            }
            follow.applied = pointer.last_seq;
            shared.sequencer.advance_to(pointer.revision);
        }
        follow.catch_up(shared, Some(at)).await?;
        Ok((follow, at))
    }

    /// Applies every log entry after the last one applied, read at `at` (or the latest
    /// revision), a page at a time; returns the revision read.
    pub(super) async fn catch_up(&mut self, shared: &Shared, at: Option<i64>) -> Result<i64, String> {
        let mut kv = kv(shared);
        let at = match at {
            Some(at) => at,
            None => get(&mut kv, shared.keys.cluster().into_bytes(), None)
                .await?
                .header()
                .map_or(0, |h| h.revision()),
        };
        let from = shared.keys.log_entry(self.applied + 1).into_bytes();
        let end = Keys::end_of(&shared.keys.log());
        for (key, value) in range(&mut kv, from, end, at).await? {
            self.apply(shared, &key, &value)?;
        }
        Ok(at)
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
        // The follower's registry publishes through `shared.sequencer`.
        self.registry
            .replicate_entry(&mut self.replay, entry, self.applied)?;
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
