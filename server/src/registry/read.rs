//! The registry's read side: single reads, pages in name order from the name index, and
//! Watch streams with the snapshots they start from. Nothing here changes a protector.

use std::ops::Bound;
use std::sync::Arc;

use futures_util::Stream;
use resilient_circuit_api::v1;

use super::{Registry, View, stats, view};
use crate::error::Error;
use crate::watch::{Filter, SnapshotSource, WatchError, WatchParams};

impl Registry {
    /// Opens a Watch stream of the changes to the protectors `params` names, with
    /// snapshots read from this registry; counted against `max_watchers`.
    pub fn watch(
        self: &Arc<Self>,
        params: WatchParams,
    ) -> Result<impl Stream<Item = Result<v1::WatchEvent, tonic::Status>> + Send + 'static, WatchError> {
        self.watchers.open(&self.sequencer, Arc::clone(self), params)
    }

    /// One protector as it is now, once its state is durable: no answer shows a state
    /// that a crash could take back.
    pub async fn get(&self, name: &str) -> Result<View, Error> {
        let (view, version) = self
            .map
            .get(name)
            .map(|e| (view(name, &e), e.version))
            .ok_or_else(|| Error::not_found(name))?;
        self.durable(self.stored(version)).await?;
        Ok(view)
    }

    /// A page of at most `page_size` protectors whose names start with `prefix` and sort
    /// after `after`, in name order, and whether more follow; once every state in it is
    /// durable.
    pub async fn list(
        &self,
        prefix: &str,
        page_size: usize,
        after: Option<&str>,
    ) -> Result<(Vec<View>, bool), Error> {
        let names = self.names_from(prefix, after, page_size + 1);
        let more = names.len() > page_size;
        let mut latest = 0;
        let page = names
            .iter()
            .take(page_size)
            .filter_map(|n| {
                self.map.get(n.as_str()).map(|e| {
                    latest = latest.max(e.version);
                    view(n, &e)
                })
            })
            .collect();
        self.durable(self.stored(latest)).await?;
        Ok((page, more))
    }

    /// The journal sequence number that makes a state of `version` durable, if the
    /// daemon has a store and the state was ever written.
    pub(super) fn stored(&self, version: u64) -> Option<u64> {
        self.store.as_ref().map(|_| version).filter(|&v| v > 0)
    }

    /// Up to `limit` names starting with `prefix` and sorting after `after`, in order:
    /// a range of the index, so a page costs its own size, not the fleet's.
    pub(super) fn names_from(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<String> {
        let index = self.names.read().unwrap_or_else(|e| e.into_inner());
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        index
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|n| n.starts_with(prefix))
            .take(limit)
            .cloned()
            .collect()
    }

    pub(super) fn index_insert(&self, name: &str) {
        self.names
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned());
    }

    pub(super) fn index_remove(&self, name: &str) {
        self.names.write().unwrap_or_else(|e| e.into_inner()).remove(name);
    }
}

impl SnapshotSource for Registry {
    fn next_name(&self, filter: &Filter, after: Option<&str>) -> Option<String> {
        match filter {
            Filter::Names(names) => {
                let start = after.map_or(Bound::Unbounded, Bound::Excluded);
                names
                    .range::<str, _>((start, Bound::Unbounded))
                    .find(|n| self.map.contains_key(n.as_str()))
                    .cloned()
            }
            Filter::Prefix(prefix) => self.names_from(prefix, after, 1).pop(),
        }
    }

    fn mod_revision(&self, name: &str) -> Option<u64> {
        self.map.get(name).map(|e| e.mod_revision)
    }

    fn snapshot(&self, name: &str) -> Option<(v1::Protector, Option<u64>)> {
        self.map
            .get(name)
            .map(|e| (view(name, &e).to_proto(), self.stored(e.version)))
    }

    async fn durable(&self, seq: Option<u64>) -> Result<(), tonic::Status> {
        Registry::durable(self, seq).await.map_err(tonic::Status::from)
    }
}

/// What `/metrics` reads (see `stats.rs`).
impl Registry {
    /// The series of the first `max` protectors by name.
    pub fn samples(&self, max: usize) -> Vec<stats::Sample> {
        let now = self.clock.now();
        self.names_from("", None, max)
            .into_iter()
            .filter_map(|name| {
                let entry = self.map.get(name.as_str())?;
                Some(stats::sample(name.clone(), &entry.protector, &entry.stats, now))
            })
            .collect()
    }

    /// Every protector's counts summed, plus those of protectors deleted since start.
    pub fn totals(&self) -> stats::Totals {
        let mut totals = self
            .deleted_totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for entry in &self.map {
            totals.states[stats::State::of_protector(&entry.protector) as usize] += 1;
            totals.add(&entry.protector, &entry.stats);
        }
        totals
    }

    /// Keeps a deleted protector's counts in the totals (under its entry's guard).
    pub(super) fn forget(&self, entry: &super::Entry) {
        self.deleted_totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(&entry.protector, &entry.stats);
    }
}
