//! The daemon's settings as values: [`Config`] and its parts, each with its default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use resilient_circuit_breaker::{Policy, PolicyError, PolicySpec, Rules};

/// How the binary writes its logs (to stderr). Not part of [`Config`]: the daemon
/// library does not care how its host logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines. The default.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The daemon's whole configuration. `Config::default()` is what `cargo run --release`
/// starts with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where to listen. Default 127.0.0.1:50051.
    pub listen: SocketAddr,
    /// Where AdminService is served, apart from the data plane: when set, AdminService
    /// is served only there (with health and reflection), so it can be bound to
    /// localhost or a private network. Default: none, AdminService on `listen`.
    pub admin_listen: Option<SocketAddr>,
    /// Where HTTP is served (`/metrics`, the dashboard at `/`), behind the same TLS and
    /// tokens as gRPC. Default: none, no HTTP listener.
    pub http_listen: Option<SocketAddr>,
    /// How many protectors (the first by name) get per-protector series in `/metrics`;
    /// the others count only in the daemon-wide series, so a scrape stays bounded.
    /// Default 1,000.
    pub metrics_max_protectors: usize,
    /// The tokens file (`--tokens`): who may call, each token with its role. Default:
    /// none, the API is open to anyone who can reach it.
    pub tokens: Option<std::path::PathBuf>,
    /// Configured limits; over one, RESOURCE_EXHAUSTED.
    pub limits: Limits,
    /// Watch buffers, history and progress.
    pub watch: WatchConfig,
    /// Keepalives and the timeouts that close silent connections.
    pub connections: ConnectionConfig,
    /// The threads that serve the data listener's connections, each connection on one
    /// of them for its whole life (`crate::connections::threads`), 1 to
    /// [`MAX_WORKER_THREADS`](crate::config::MAX_WORKER_THREADS). Default `None`: one per
    /// core. The binary sets it with `--worker-threads`, and gives its runtime (which the
    /// library runs the rest on) as many workers.
    pub connection_threads: Option<usize>,
    /// How long shutdown may take before open connections are dropped. Default 5 s.
    pub shutdown_grace: Duration,
    /// Protectors to create at start (EnsureProtector semantics: an existing one is
    /// left as it is).
    pub protectors: Vec<ProtectorConfig>,
    /// The optional rules (proto/SEMANTICS.md section 2a) of the `protectors` that set
    /// any, by name. Kept beside them rather than in [`ProtectorConfig`], so that code
    /// building a `ProtectorConfig` field by field keeps compiling.
    pub protector_rules: BTreeMap<String, Rules>,
    /// The `--config` file, whose `[[protectors]]` a SIGHUP applies again
    /// (config/reload.rs); `None` without one.
    pub config_file: Option<std::path::PathBuf>,
    /// Durable state. `None` keeps everything in memory: the library's default, so
    /// tests and embedders opt in. The `circuitd` binary defaults to `./data`.
    pub store: Option<StoreSettings>,
    /// Replicated mode: the etcd cluster that holds the state and elects the leader.
    /// `None` (the default) runs one daemon on its own journal.
    pub cluster: Option<ClusterSettings>,
    /// TLS on both listeners (and mTLS with a client CA). `None` (the default) serves
    /// plaintext.
    pub tls: Option<TlsSettings>,
}

/// TLS (`--tls-cert`, `--tls-key`): the files are read when the daemon starts and again
/// on every SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The server's certificate chain, PEM, leaf first.
    pub cert: std::path::PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
    /// mTLS: clients must present a certificate signed by a CA in this PEM file, or are
    /// refused at the handshake. Default: none, no client certificate asked for.
    pub client_ca: Option<std::path::PathBuf>,
    /// Replicated mode: the CAs a follower trusts when it forwards to the leader over
    /// TLS. Default: `client_ca`.
    pub peer_ca: Option<std::path::PathBuf>,
}

/// Replicated mode (`--etcd`): several replicas share one state in etcd; one leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// etcd client URLs, each `http://host:port`.
    pub etcd: Vec<String>,
    /// The key prefix the cluster lives under; ends with `/`. Default
    /// `/resilient-circuit/`.
    pub prefix: String,
    /// The address clients and other replicas reach this one at. Default: the address
    /// the daemon is bound to (required when it listens on an unspecified address).
    pub advertise: Option<String>,
    /// The address other replicas reach this one's admin listener at (`--admin-listen`),
    /// published with its registration: a follower forwards AdminService calls to the
    /// leader's admin address when it has one. Default: the address the admin listener
    /// is bound to (required when it listens on an unspecified address); none without
    /// an admin listener.
    pub advertise_admin: Option<String>,
    /// The leader lease's time to live: how long a dead leader keeps the lead at most.
    /// Whole seconds, 2 s to 60 s. Default 2 s (etcd's own minimum with its default
    /// election timeout), so failover takes about two seconds.
    pub lease_ttl: Duration,
    /// How many bytes of log the leader writes to etcd before it stores a snapshot and
    /// deletes the log it covers. Default 16 MiB.
    pub snapshot_bytes: u64,
}

impl ClusterSettings {
    /// The default `snapshot_bytes`.
    pub const DEFAULT_SNAPSHOT_BYTES: u64 = 16 * 1024 * 1024;
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "/resilient-circuit/";
    /// The default lease time to live.
    pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(2);
}

/// Where and how state is kept on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// The data directory, created if absent. The binary's default: `data` in the
    /// working directory.
    pub data_dir: std::path::PathBuf,
    /// Truncate a damaged journal at the damage instead of refusing to start.
    pub repair: bool,
    /// How often outcomes that changed no status are written. Default 100 ms: a crash
    /// loses at most the outcomes and counters of the last interval, never a transition.
    pub flush_interval: Duration,
    /// How large a journal segment grows before a snapshot replaces it. Default 64 MiB.
    pub segment_bytes: u64,
    /// Faults to inject into the journal (tests of an in-process daemon only; no flag or
    /// file key sets it).
    pub faults: Option<crate::store::faults::Faults>,
}

impl StoreSettings {
    /// The defaults for `data_dir`.
    pub fn new(data_dir: impl Into<std::path::PathBuf>) -> StoreSettings {
        StoreSettings {
            data_dir: data_dir.into(),
            repair: false,
            flush_interval: Duration::from_millis(100),
            segment_bytes: 64 * 1024 * 1024,
            faults: None,
        }
    }
}

/// Configured limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most protectors at once. Default 100,000.
    pub max_protectors: usize,
    /// Most open Watch streams at once. Default 10,000.
    pub max_watchers: usize,
    /// Longest protector name in bytes. Default 256 (also the contract's maximum).
    pub max_name_len: usize,
    /// Largest request message in bytes. Default 4 MiB.
    pub max_message_bytes: usize,
    /// Most concurrent HTTP/2 streams per connection. Default 1,024.
    pub max_concurrent_streams: u32,
    /// Most names in one Watch filter. Default 1,000.
    pub max_watch_names: usize,
    /// Most client connections open at once. Default 10,000. Past it the daemon stops
    /// accepting (newcomers wait in the kernel's backlog) until one closes.
    pub max_connections: usize,
    /// Most open Watch streams per identity (token, certificate or, with the API open,
    /// client IP address). Default 1,000: a tenth of `max_watchers`, so no one client
    /// can take them all. A `[[token]]` table's `max_watchers` overrides it.
    pub max_watchers_per_identity: usize,
    /// Most open Session streams per identity. Default 1,000.
    pub max_sessions_per_identity: usize,
    /// Most existing protectors one identity may have created. Default 10,000, a tenth
    /// of `max_protectors`.
    pub max_protectors_per_identity: usize,
    /// Most what-if history entries (the policies' `history_size`) of every protector
    /// together. Default 1,000,000 (about 40 MB when full).
    pub max_history_entries: usize,
}

/// How the daemon notices peers that went silent, so that none keeps a place under
/// `max_connections` forever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// How often an HTTP/2 PING is sent on each connection. Default 30 s.
    pub http2_keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is closed. Default 10 s.
    pub http2_keepalive_timeout: Duration,
    /// How long a connection is quiet before the kernel sends TCP keepalive probes (a
    /// peer that vanished without a FIN is found even if HTTP/2 is stuck). Default 60 s.
    pub tcp_keepalive: Duration,
    /// How long a new connection has to send the HTTP/2 client preface. Default 10 s.
    pub handshake_timeout: Duration,
    /// How long a connection may stay open with no request in flight (an open Watch or
    /// Session stream counts as one). Default 1 h, as Envoy's: long enough that a client
    /// calling now and then keeps its connection, short enough that abandoned ones go.
    pub idle_timeout: Duration,
}

/// Watch settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchConfig {
    /// Events a watcher may fall behind before it gets RESYNC. Default 1,024.
    pub buffer: usize,
    /// Events kept for `start_revision` replay. Default 10,000.
    pub history: usize,
    /// PROGRESS interval when a request does not set one. Default 10 s.
    pub progress_interval: Duration,
}

/// A protector created at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectorConfig {
    /// Its name.
    pub name: String,
    /// Its policy (checked when the daemon starts); its optional rules are in
    /// [`Config::protector_rules`].
    pub policy: PolicySpec,
}

impl ProtectorConfig {
    /// The validated policy, with the optional rules `rules` gives it (see
    /// [`Config::protector_rules`]). The file was checked at load, so this only fails
    /// for a config built by hand.
    pub fn checked_policy(&self, rules: &BTreeMap<String, Rules>) -> Result<Policy, PolicyError> {
        Policy::try_with(self.policy, rules.get(&self.name).copied().unwrap_or_default())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            admin_listen: None,
            http_listen: None,
            metrics_max_protectors: 1000,
            tokens: None,
            limits: Limits::default(),
            watch: WatchConfig::default(),
            connections: ConnectionConfig::default(),
            connection_threads: None,
            shutdown_grace: Duration::from_secs(5),
            protectors: Vec::new(),
            protector_rules: BTreeMap::new(),
            config_file: None,
            store: None,
            cluster: None,
            tls: None,
        }
    }
}

/// The default of `--max-history-entries`: 1,000,000 entries (about 40 MB when full),
/// one protector at the largest `history_size` or a hundred at 10,000 (`registry/history.rs`).
pub const DEFAULT_MAX_HISTORY_ENTRIES: usize = 1_000_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_protectors: 100_000,
            max_watchers: 10_000,
            max_name_len: 256,
            max_message_bytes: 4 * 1024 * 1024,
            max_concurrent_streams: 1024,
            max_watch_names: 1000,
            max_connections: 10_000,
            max_watchers_per_identity: 1000,
            max_sessions_per_identity: 1000,
            max_protectors_per_identity: 10_000,
            max_history_entries: DEFAULT_MAX_HISTORY_ENTRIES,
        }
    }
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            buffer: 1024,
            history: 10_000,
            progress_interval: Duration::from_secs(10),
        }
    }
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(10),
            tcp_keepalive: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(3600),
        }
    }
}
