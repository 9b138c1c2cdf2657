//! One scrape: what was read, encoded as OpenMetrics text by `prometheus-client`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::latency::Snapshot;
use crate::registry::{REJECTIONS, Sample, State, Totals, TransitionKind, reason_label, status_label};

/// Outcomes of calls, in the order of [`Totals::calls`].
const OUTCOMES: [&str; 3] = ["success", "failure", "ignored"];

/// Everything one scrape read, owned so the collector needs nothing else.
#[derive(Debug)]
pub(super) struct Scrape {
    pub(super) samples: Vec<Sample>,
    pub(super) totals: Totals,
    pub(super) watchers: u64,
    pub(super) resyncs: u64,
    pub(super) rpc: Vec<(&'static str, &'static str, Snapshot)>,
    pub(super) journal: Option<Snapshot>,
    /// `None` standalone; in replicated mode, whether this replica leads.
    pub(super) leader: Option<bool>,
}

impl Scrape {
    /// The OpenMetrics text, `# EOF` last; or the classic text format.
    pub(super) fn encode(self, format: Format) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(self));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        match format {
            Format::OpenMetrics => text,
            Format::Classic => classic(&text),
        }
    }
}

/// Which text format a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 (`application/openmetrics-text`): what Prometheus asks for.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4 (`text/plain`): what `curl`, older
    /// scrapers and `promtool check metrics` read.
    Classic,
}

/// The classic format of `openmetrics`, which differs in what this daemon emits only
/// in two ways: a counter's HELP and TYPE name its samples' `_total` name, and there
/// is no `# EOF`. (`prometheus-client` encodes OpenMetrics alone.)
fn classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len() + 256);
    let mut lines = openmetrics.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ")
            && let Some((name, help)) = rest.split_once(' ')
            && lines.peek() == Some(&format!("# TYPE {name} counter").as_str())
        {
            out.push_str(&format!(
                "# HELP {name}_total {help}\n# TYPE {name}_total counter\n"
            ));
            lines.next();
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

type Result = std::result::Result<(), std::fmt::Error>;

/// A sample's counts by reason, in [`REJECTIONS`] order.
type ByReason = fn(&Sample) -> [u64; 3];

fn counter(m: &mut MetricEncoder<'_>, labels: &impl EncodeLabelSet, value: u64) -> Result {
    m.encode_family(labels)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn counter_f64(m: &mut MetricEncoder<'_>, labels: &impl EncodeLabelSet, value: f64) -> Result {
    m.encode_family(labels)?
        .encode_counter::<NoLabelSet, _, f64>(&value, None)
}

fn gauge(m: &mut MetricEncoder<'_>, labels: &impl EncodeLabelSet, value: f64) -> Result {
    m.encode_family(labels)?.encode_gauge(&value)
}

fn histogram(m: &mut MetricEncoder<'_>, labels: &impl EncodeLabelSet, h: &Snapshot) -> Result {
    m.encode_family(labels)?
        .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)
}

fn transition_labels<'a>(kind: &TransitionKind) -> [(&'a str, &'static str); 3] {
    [
        ("from", status_label(kind.0)),
        ("to", status_label(kind.1)),
        ("reason", reason_label(kind.2)),
    ]
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result {
        self.per_protector(&mut e)?;
        self.daemon_wide(&mut e)
    }
}

impl Scrape {
    fn per_protector(&self, e: &mut DescriptorEncoder<'_>) -> Result {
        let mut m = e.encode_descriptor(
            "circuitd_protector_state",
            "1 for the protector's current state (an override in force counts as its state), 0 for the others",
            None,
            MetricType::Gauge,
        )?;
        for s in &self.samples {
            for state in State::ALL {
                let labels = [("protector", s.name.as_str()), ("state", state.as_str())];
                gauge(&mut m, &labels, if s.state == state { 1.0 } else { 0.0 })?;
            }
        }
        let mut m = e.encode_descriptor(
            "circuitd_protector_transitions",
            "Status transitions, by from, to and reason",
            None,
            MetricType::Counter,
        )?;
        for s in &self.samples {
            for (kind, n) in &s.transitions {
                let [from, to, reason] = transition_labels(kind);
                counter(&mut m, &[("protector", s.name.as_str()), from, to, reason], *n)?;
            }
        }
        let mut m = e.encode_descriptor(
            "circuitd_protector_state_seconds",
            "Seconds spent in each state since the daemon started or the protector was created",
            None,
            MetricType::Counter,
        )?;
        for s in &self.samples {
            for (state, secs) in State::ALL.iter().zip(s.seconds) {
                counter_f64(
                    &mut m,
                    &[("protector", s.name.as_str()), ("state", state.as_str())],
                    secs,
                )?;
            }
        }
        let mut m = e.encode_descriptor(
            "circuitd_protector_calls",
            "Outcomes reported, by outcome (expired trial permits count as failures)",
            None,
            MetricType::Counter,
        )?;
        for s in &self.samples {
            let c = &s.counters;
            for (outcome, n) in OUTCOMES.iter().zip([c.successes, c.failures, c.ignored]) {
                counter(&mut m, &[("protector", s.name.as_str()), ("outcome", outcome)], n)?;
            }
        }
        // Refusals, and what a shadow policy would have refused: the same reasons.
        let by_reason: [(&str, &str, ByReason); 2] = [
            (
                "circuitd_protector_not_permitted",
                "Acquires refused, by reason",
                |s| s.rejected,
            ),
            (
                "circuitd_protector_would_reject",
                "Acquires admitted in shadow mode that the policy would have refused, by reason",
                |s| s.would_reject,
            ),
        ];
        for (name, help, counts) in by_reason {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
            for s in &self.samples {
                for (reason, n) in REJECTIONS.iter().zip(counts(s)) {
                    counter(&mut m, &[("protector", s.name.as_str()), ("reason", reason)], n)?;
                }
            }
        }
        let mut m = e.encode_descriptor(
            "circuitd_protector_failure_rate",
            "Failures over outcomes in the current window (0 when it is empty)",
            None,
            MetricType::Gauge,
        )?;
        for s in &self.samples {
            gauge(&mut m, &[("protector", s.name.as_str())], s.failure_rate)?;
        }
        let mut m = e.encode_descriptor(
            "circuitd_protector_trials_in_flight",
            "HALF_OPEN trial permits in flight",
            None,
            MetricType::Gauge,
        )?;
        for s in &self.samples {
            gauge(
                &mut m,
                &[("protector", s.name.as_str())],
                f64::from(s.trials_in_flight),
            )?;
        }
        let mut m = e.encode_descriptor(
            "circuitd_protector_expired_permits",
            "Trial permits that expired unreported",
            None,
            MetricType::Counter,
        )?;
        for s in &self.samples {
            counter(
                &mut m,
                &[("protector", s.name.as_str())],
                s.counters.expired_permits,
            )?;
        }
        let mut m = e.encode_descriptor(
            "circuitd_protector_stale_reports",
            "Reports refused as stale (their permit's generation had passed)",
            None,
            MetricType::Counter,
        )?;
        for s in &self.samples {
            counter(
                &mut m,
                &[("protector", s.name.as_str())],
                s.counters.stale_reports,
            )?;
        }
        Ok(())
    }

    fn daemon_wide(&self, e: &mut DescriptorEncoder<'_>) -> Result {
        let t = &self.totals;
        let mut m = e.encode_descriptor(
            "circuitd_protectors",
            "Protectors in each status (an override in force counts as its status)",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in State::ALL.iter().zip(t.states) {
            gauge(&mut m, &[("status", state.as_str())], n as f64)?;
        }
        let all: u64 = t.states.iter().sum();
        let mut m = e.encode_descriptor(
            "circuitd_protectors_without_series",
            "Protectors past --metrics-max-protectors: counted only in the daemon-wide series",
            None,
            MetricType::Gauge,
        )?;
        m.encode_gauge(&all.saturating_sub(self.samples.len() as u64))?;
        let mut m = e.encode_descriptor(
            "circuitd_calls",
            "Outcomes reported to every protector, by outcome",
            None,
            MetricType::Counter,
        )?;
        for (outcome, n) in OUTCOMES.iter().zip(t.calls) {
            counter(&mut m, &[("outcome", *outcome)], n)?;
        }
        for (name, help, counts) in [
            (
                "circuitd_not_permitted",
                "Acquires refused by every protector, by reason",
                t.rejected,
            ),
            (
                "circuitd_would_reject",
                "Acquires admitted in shadow mode that every protector's policy would have refused, by reason",
                t.would_reject,
            ),
        ] {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (reason, n) in REJECTIONS.iter().zip(counts) {
                counter(&mut m, &[("reason", *reason)], n)?;
            }
        }
        let mut m = e.encode_descriptor(
            "circuitd_transitions",
            "Status transitions of every protector, by from, to and reason",
            None,
            MetricType::Counter,
        )?;
        for (kind, n) in t.transitions.values() {
            counter(&mut m, &transition_labels(kind), *n)?;
        }
        let mut m = e.encode_descriptor(
            "circuitd_expired_permits",
            "Trial permits of every protector that expired unreported",
            None,
            MetricType::Counter,
        )?;
        m.encode_counter::<NoLabelSet, _, u64>(&t.expired_permits, None)?;
        let mut m = e.encode_descriptor(
            "circuitd_stale_reports",
            "Reports to every protector refused as stale",
            None,
            MetricType::Counter,
        )?;
        m.encode_counter::<NoLabelSet, _, u64>(&t.stale_reports, None)?;
        let mut m =
            e.encode_descriptor("circuitd_watchers", "Open Watch streams", None, MetricType::Gauge)?;
        m.encode_gauge(&self.watchers)?;
        let mut m = e.encode_descriptor(
            "circuitd_watch_resyncs",
            "RESYNC events sent to Watch streams (a watcher fell behind or asked for compacted history)",
            None,
            MetricType::Counter,
        )?;
        m.encode_counter::<NoLabelSet, _, u64>(&self.resyncs, None)?;
        let mut m = e.encode_descriptor(
            "circuitd_rpc_duration_seconds",
            "gRPC calls from request to the end of the response, by method and code (streams: their life)",
            None,
            MetricType::Histogram,
        )?;
        for (method, code, h) in &self.rpc {
            histogram(&mut m, &[("method", *method), ("code", *code)], h)?;
        }
        if let Some(journal) = &self.journal {
            let mut m = e.encode_descriptor(
                "circuitd_journal_commit_duration_seconds",
                "Time to make one group of journal records durable (write and fsync)",
                None,
                MetricType::Histogram,
            )?;
            m.encode_histogram::<NoLabelSet>(journal.sum, journal.count, &journal.buckets, None)?;
        }
        if let Some(leader) = self.leader {
            let mut m = e.encode_descriptor(
                "circuitd_leader",
                "1 while this replica leads its cluster, 0 otherwise",
                None,
                MetricType::Gauge,
            )?;
            m.encode_gauge(&u64::from(leader))?;
        }
        // A gauge of 1, as Prometheus's own `prometheus_build_info`: OpenMetrics' info
        // type is not understood by the classic text parser (`promtool check metrics`).
        let mut m = e.encode_descriptor(
            "circuitd_build_info",
            "The daemon's version, as a label; always 1",
            None,
            MetricType::Gauge,
        )?;
        gauge(&mut m, &[("version", env!("CARGO_PKG_VERSION"))], 1.0)
    }
}
