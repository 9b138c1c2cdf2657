//! The registry's read side: single reads, pages in name order from the name index, and
//! Watch streams with the snapshots they start from. Nothing here changes a protector.

use std::ops::Bound;
use std::sync::Arc;

use futures_util::Stream;
use resilient_circuit_api::v1;

use super::{Registry, View, view};
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

    /// One protector as it is now.
    pub fn get(&self, name: &str) -> Result<View, Error> {
        self.map
            .get(name)
            .map(|e| view(name, &e))
            .ok_or_else(|| Error::not_found(name))
    }

    /// A page of at most `page_size` protectors whose names start with `prefix` and sort
    /// after `after`, in name order, and whether more follow.
    pub fn list(&self, prefix: &str, page_size: usize, after: Option<&str>) -> (Vec<View>, bool) {
        let names = self.names_from(prefix, after, page_size + 1);
        let more = names.len() > page_size;
        let page = names
            .iter()
            .take(page_size)
            .filter_map(|n| self.map.get(n.as_str()).map(|e| view(n, &e)))
            .collect();
        (page, more)
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
    fn names(&self, filter: &Filter) -> Vec<String> {
        let mut names: Vec<String> = match filter {
            Filter::Names(names) => names
                .iter()
                .filter(|n| self.map.contains_key(n.as_str()))
                .cloned()
                .collect(),
            Filter::Prefix(prefix) => self.names_from(prefix, None, usize::MAX),
        };
        names.sort_unstable();
        names
    }

    fn snapshot(&self, name: &str) -> Option<v1::Protector> {
        self.get(name).ok().map(|v| v.to_proto())
    }
}
