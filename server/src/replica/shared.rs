//! What every part of a replica shares.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;

use super::keys::{Keys, MemberRecord};
use crate::clock::Clock;
use crate::cluster::{Cluster, Fence};
use crate::registry::Registry;
use crate::sequencer::Sequencer;
use crate::store::Journal;
use crate::watch::Watchers;

/// What every part of a replica shares.
pub(super) struct Shared {
    pub(super) client: Client,
    pub(super) keys: Keys,
    pub(super) cluster: Arc<Cluster>,
    pub(super) sequencer: Arc<Sequencer>,
    pub(super) watchers: Watchers,
    pub(super) max_protectors: usize,
    pub(super) max_history_entries: usize,
    pub(super) flush_interval: Duration,
    pub(super) ttl: Duration,
    pub(super) snapshot_bytes: u64,
    /// The configured protectors, ensured by each new leader (EnsureProtector
    /// semantics: an existing one is left as it is).
    pub(super) protectors: Vec<crate::config::ProtectorConfig>,
    /// Their optional rules, by name.
    pub(super) protector_rules: std::collections::BTreeMap<String, resilient_circuit_breaker::Rules>,
    pub(super) max_name_len: usize,
    pub(super) me: MemberRecord,
    pub(super) fence: Arc<Fence>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("prefix", &self.keys.prefix())
            .field("me", &self.me.advertise)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// A registry over this replica's sequencer: a follower's (no journal) or a leader's.
    pub(super) fn registry(&self, journal: Option<Arc<Journal>>) -> Registry {
        let registry = Registry::new(
            self.max_protectors,
            Arc::clone(&self.sequencer),
            self.watchers.clone(),
            Clock::new(),
            journal,
        );
        registry
            .with_fence(Arc::clone(&self.fence))
            .with_max_history(self.max_history_entries)
    }
}
