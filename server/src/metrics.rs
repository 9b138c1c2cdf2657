//! The daemon's metrics: counters the decision path bumps (atomics, no lock), and what
//! `/metrics` renders from them and from the registry at scrape time.

use crate::registry::Registry;

/// The daemon-wide metrics.
#[derive(Debug, Default)]
pub struct Metrics {}

impl Metrics {
    /// The OpenMetrics text of every metric.
    pub fn render(&self, registry: &Registry, max_protectors: usize) -> String {
        let _ = (registry, max_protectors);
        format!(
            "# TYPE circuitd_build_info gauge\ncircuitd_build_info{{version=\"{}\"}} 1\n# EOF\n",
            env!("CARGO_PKG_VERSION")
        )
    }
}
