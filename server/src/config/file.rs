//! The TOML file, as written. Every key is optional except a protector's `name`,
//! `cooldown` and `failure_limit`; an unknown key is an error so that a typo is never
//! silently ignored. Values are only parsed here; range rules are checked in `load`,
//! where the flag and environment layers are known too.

use std::net::SocketAddr;
use std::time::Duration;

use resilient_circuit_breaker::{Multiplier, Rules};
use serde::{Deserialize, Deserializer, de};

use super::types::LogFormat;

/// The whole file. See `circuitd.example.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) listen: Option<SocketAddr>,
    pub(super) admin_listen: Option<SocketAddr>,
    pub(super) http_listen: Option<SocketAddr>,
    pub(super) metrics_max_protectors: Option<usize>,
    pub(super) tokens: Option<std::path::PathBuf>,
    pub(super) log_format: Option<LogFormat>,
    pub(super) worker_threads: Option<usize>,
    pub(super) shutdown_grace: Option<FileDuration>,
    #[serde(default)]
    pub(super) limits: FileLimits,
    #[serde(default)]
    pub(super) watch: FileWatch,
    #[serde(default)]
    pub(super) connections: FileConnections,
    #[serde(default)]
    pub(super) protectors: Vec<FileProtector>,
    #[serde(default)]
    pub(super) store: FileStore,
    #[serde(default)]
    pub(super) cluster: FileCluster,
    #[serde(default)]
    pub(super) tls: FileTls,
}

/// `[tls]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTls {
    pub(super) cert: Option<std::path::PathBuf>,
    pub(super) key: Option<std::path::PathBuf>,
    pub(super) client_ca: Option<std::path::PathBuf>,
    pub(super) peer_ca: Option<std::path::PathBuf>,
}

/// `[cluster]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCluster {
    /// Comma-separated, as the flag.
    pub(super) etcd: Option<String>,
    pub(super) prefix: Option<String>,
    pub(super) advertise: Option<String>,
    pub(super) advertise_admin: Option<String>,
    pub(super) lease_ttl: Option<FileDuration>,
    pub(super) snapshot_bytes: Option<u64>,
}

/// `[store]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileStore {
    pub(super) data_dir: Option<std::path::PathBuf>,
    pub(super) in_memory: Option<bool>,
    pub(super) flush_interval: Option<FileDuration>,
    pub(super) segment_bytes: Option<u64>,
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLimits {
    pub(super) max_protectors: Option<usize>,
    pub(super) max_watchers: Option<usize>,
    pub(super) max_name_len: Option<usize>,
    pub(super) max_message_bytes: Option<usize>,
    pub(super) max_concurrent_streams: Option<u32>,
    pub(super) max_watch_names: Option<usize>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_watchers_per_identity: Option<usize>,
    pub(super) max_sessions_per_identity: Option<usize>,
    pub(super) max_protectors_per_identity: Option<usize>,
    pub(super) max_history_entries: Option<usize>,
}

/// `[connections]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConnections {
    pub(super) http2_keepalive_interval: Option<FileDuration>,
    pub(super) http2_keepalive_timeout: Option<FileDuration>,
    pub(super) tcp_keepalive: Option<FileDuration>,
    pub(super) handshake_timeout: Option<FileDuration>,
    pub(super) idle_timeout: Option<FileDuration>,
}

/// `[watch]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileWatch {
    pub(super) buffer: Option<usize>,
    pub(super) history: Option<usize>,
    pub(super) progress_interval: Option<FileDuration>,
}

/// One `[[protectors]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileProtector {
    pub(super) name: String,
    pub(super) cooldown: FileDuration,
    pub(super) failure_limit: FileFraction,
    pub(super) success_limit: Option<FileFraction>,
    pub(super) trial_permits: Option<u32>,
    pub(super) permit_ttl: Option<FileDuration>,
    #[serde(default)]
    pub(super) auto_half_open: bool,
    // The optional rules of proto/SEMANTICS.md section 2a, as the contract names them.
    pub(super) window_duration: Option<FileDuration>,
    pub(super) minimum_calls: Option<u32>,
    #[serde(default)]
    pub(super) consecutive_failures: u32,
    pub(super) slow_call_duration: Option<FileDuration>,
    pub(super) slow_call_limit: Option<FileFraction>,
    pub(super) cooldown_multiplier: Option<f64>,
    pub(super) max_cooldown: Option<FileDuration>,
    #[serde(default)]
    pub(super) shadow: bool,
    #[serde(default)]
    pub(super) history_size: u32,
    /// Marked for deletion: never created, and deleted by a SIGHUP reload if it exists
    /// (its other keys stay, checked as usual, so marking is adding one line).
    #[serde(default)]
    pub(super) delete: bool,
}

impl FileProtector {
    /// The entry's optional rules, unchecked: `Policy::try_with` checks them. A
    /// multiplier no policy can hold (huge, negative, not a number) becomes one out of
    /// range on the same side, so the policy's own rule names it.
    pub(super) fn rules(&self) -> Rules {
        let cooldown_multiplier = match self.cooldown_multiplier {
            None => Multiplier::ONE,
            Some(m) => Multiplier::from_f64(m).unwrap_or(if m > 1.0 {
                Multiplier::thousandths(u32::MAX)
            } else {
                Multiplier::thousandths(0)
            }),
        };
        Rules {
            window_duration: self.window_duration.map(Into::into),
            minimum_calls: self.minimum_calls,
            consecutive_failures: self.consecutive_failures,
            slow_call_duration: self.slow_call_duration.map(Into::into),
            slow_call_limit: self.slow_call_limit.map(|f| f.0),
            cooldown_multiplier,
            max_cooldown: self.max_cooldown.map(Into::into),
            shadow: self.shadow,
            history_size: self.history_size,
        }
    }
}

/// A duration written the human way: "30s", "500ms", "1h 30m".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileDuration(pub(super) Duration);

impl From<FileDuration> for Duration {
    fn from(FileDuration(d): FileDuration) -> Duration {
        d
    }
}

impl<'de> Deserialize<'de> for FileDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map(FileDuration).map_err(|e| {
            de::Error::custom(format!(
                "invalid duration {text:?}: {e} (write e.g. \"10s\" or \"500ms\")"
            ))
        })
    }
}

/// A fraction written "n/d", kept unreduced because d is the window size. Only its
/// shape is checked here; its range is the policy's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileFraction(pub(super) (u32, u32));

impl<'de> Deserialize<'de> for FileFraction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let parsed = text
            .split_once('/')
            .and_then(|(n, d)| Some((n.trim().parse().ok()?, d.trim().parse().ok()?)));
        parsed.map(FileFraction).ok_or_else(|| {
            de::Error::custom(format!("invalid fraction {text:?} (write \"n/d\", e.g. \"2/5\")"))
        })
    }
}
