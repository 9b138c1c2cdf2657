//! What `/metrics` shows, and how it is collected cheaply.
//!
//! Design note. Nothing on the decision path takes a lock or touches a map for metrics:
//! per-protector counts live in the registry's entries, under the guard the operation
//! holds anyway (`registry/stats.rs`), RPC latencies go into preallocated atomic
//! histograms (`metrics/rpc.rs`), journal commit latencies likewise (in the journal).
//! Everything else is read when Prometheus scrapes: the states and their running
//! seconds, the daemon-wide totals (a pass over the entries), watchers and resyncs,
//! the replica's role. The text is encoded by `prometheus-client` (OpenMetrics) from a
//! collector that owns what the scrape read (`metrics/scrape.rs`).
//!
//! Per-protector series exist for the first `--metrics-max-protectors` protectors by
//! name; every protector counts in the daemon-wide series (`circuitd_protectors`,
//! `circuitd_calls_total` and the like), so 100,000 protectors cost a scrape one pass
//! over the entries, not 100,000 sets of series.
//!
//! Crate choice: `prometheus-client` is the Prometheus project's Rust client: typed
//! OpenMetrics encoding and a `Collector` for values computed at scrape time, no global
//! registry and no macros. Its own `Histogram` locks on each observation, so the
//! latencies use [`crate::latency::Histogram`] and are encoded through the same
//! encoder.

mod rpc;
mod scrape;

use std::sync::Arc;

use crate::cluster::{Cluster, Role};

pub use rpc::{RpcLatency, TimeCalls, Timed, TimedBody};
pub use scrape::Format;

/// The daemon's own metrics (the rest is read from the registry at scrape time).
#[derive(Debug, Default)]
pub struct Metrics {
    rpc: Arc<RpcLatency>,
}

impl Metrics {
    /// The RPC latency layer recording into these metrics.
    pub fn time_calls(&self) -> TimeCalls {
        TimeCalls::new(Some(Arc::clone(&self.rpc)))
    }

    /// The text of everything in `format`, with per-protector series for the first
    /// `max_protectors` protectors by name.
    pub fn render(&self, cluster: &Cluster, max_protectors: usize, format: Format) -> String {
        let registry = cluster.registry();
        let role = cluster.role();
        let scrape = scrape::Scrape {
            samples: registry.samples(max_protectors),
            totals: registry.totals(),
            watchers: registry.watchers().count() as u64,
            resyncs: registry.watchers().resyncs(),
            rpc: self.rpc.snapshot(),
            journal: registry.journal().map(|j| j.commit_latency().snapshot()),
            leader: match role {
                Role::Standalone => None,
                Role::Leader { .. } => Some(true),
                Role::Follower { .. } | Role::Unavailable => Some(false),
            },
        };
        scrape.encode(format)
    }
}
