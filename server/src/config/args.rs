//! The command line and its environment variables.
//!
//! Every flag has an environment variable (`--max-protectors` and
//! `CIRCUITD_MAX_PROTECTORS`). The environment comes in as a map rather than being read
//! by clap, so tests never depend on the process environment: the command is built with
//! clap's own environment lookup switched off, and each variable whose flag is absent is
//! handed to clap as if it were that flag.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};

use super::error::ConfigError;
use super::types::LogFormat;

/// The `circuitd` command line. No field has a clap default: an absent flag must fall
/// through to the environment, then the file, then [`Config::default`](super::Config).
#[derive(Debug, Clone, Default, PartialEq, Parser)]
#[command(
    name = "circuitd",
    version,
    about = "The resilient-circuit daemon: one authority for every named circuit protector.",
    after_help = "Precedence: flag, then environment variable, then config file, then default."
)]
pub struct Args {
    /// Address to listen on [default: 127.0.0.1:50051]
    #[arg(long, env = "CIRCUITD_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Serve AdminService only on this separate address (e.g. 127.0.0.1:50052), not on
    /// --listen [default: none, AdminService on --listen]
    #[arg(long, env = "CIRCUITD_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Serve HTTP here: /metrics (Prometheus) and the live dashboard at /, behind the
    /// same TLS and tokens as gRPC (e.g. 127.0.0.1:9090) [default: none, no HTTP]
    #[arg(long, env = "CIRCUITD_HTTP_LISTEN", value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
    /// Per-protector series in /metrics for at most this many protectors, the first by
    /// name; the rest count only in the daemon-wide series [default: 1000]
    #[arg(long, env = "CIRCUITD_METRICS_MAX_PROTECTORS", value_name = "N")]
    pub metrics_max_protectors: Option<usize>,
    /// Tokens file: `[[token]]` tables of name, sha256 and role (read, data, admin);
    /// callers send `authorization: Bearer <token>`; re-read on SIGHUP [default: none,
    /// the API is open to anyone who can reach it]
    #[arg(long, env = "CIRCUITD_TOKENS", value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// TOML config file; a named file that is missing is an error [default: none]
    #[arg(long, env = "CIRCUITD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format on stderr [default: text]
    #[arg(long, env = "CIRCUITD_LOG_FORMAT", value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Threads that serve client connections (each connection on one for its whole life),
    /// and workers of the runtime that runs the rest, 1 to 1024 [default: one per core]
    #[arg(long, env = "CIRCUITD_WORKER_THREADS", value_name = "N")]
    pub worker_threads: Option<usize>,
    /// Most protectors at once [default: 100000]
    #[arg(long, env = "CIRCUITD_MAX_PROTECTORS", value_name = "N")]
    pub max_protectors: Option<usize>,
    /// Most open Watch streams at once [default: 10000]
    #[arg(long, env = "CIRCUITD_MAX_WATCHERS", value_name = "N")]
    pub max_watchers: Option<usize>,
    /// Longest protector name in bytes, 1 to 256 [default: 256]
    #[arg(long, env = "CIRCUITD_MAX_NAME_LEN", value_name = "N")]
    pub max_name_len: Option<usize>,
    /// Largest request message in bytes [default: 4194304]
    #[arg(long, env = "CIRCUITD_MAX_MESSAGE_BYTES", value_name = "N")]
    pub max_message_bytes: Option<usize>,
    /// Most concurrent HTTP/2 streams per connection [default: 1024]
    #[arg(long, env = "CIRCUITD_MAX_CONCURRENT_STREAMS", value_name = "N")]
    pub max_concurrent_streams: Option<u32>,
    /// Most names in one Watch filter [default: 1000]
    #[arg(long, env = "CIRCUITD_MAX_WATCH_NAMES", value_name = "N")]
    pub max_watch_names: Option<usize>,
    /// Most open Watch streams per identity (token, certificate, or client IP with the
    /// API open) [default: 1000]
    #[arg(long, env = "CIRCUITD_MAX_WATCHERS_PER_IDENTITY", value_name = "N")]
    pub max_watchers_per_identity: Option<usize>,
    /// Most open Session streams per identity [default: 1000]
    #[arg(long, env = "CIRCUITD_MAX_SESSIONS_PER_IDENTITY", value_name = "N")]
    pub max_sessions_per_identity: Option<usize>,
    /// Most existing protectors one identity may have created (EnsureProtector)
    /// [default: 10000]
    #[arg(long, env = "CIRCUITD_MAX_PROTECTORS_PER_IDENTITY", value_name = "N")]
    pub max_protectors_per_identity: Option<usize>,
    /// Most what-if history entries (policy history_size) of every protector together,
    /// about 40 bytes each; a policy past it is refused [default: 1000000]
    #[arg(long, env = "CIRCUITD_MAX_HISTORY_ENTRIES", value_name = "N")]
    pub max_history_entries: Option<usize>,
    /// Most client connections open at once; past it, newcomers wait [default: 10000]
    #[arg(long, env = "CIRCUITD_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Interval between HTTP/2 PINGs on each connection, 1s to 1d [default: 30s]
    #[arg(long, env = "CIRCUITD_HTTP2_KEEPALIVE_INTERVAL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub http2_keepalive_interval: Option<Duration>,
    /// How long a PING may go unanswered before the connection is closed, 1ms to 1d
    /// [default: 10s]
    #[arg(long, env = "CIRCUITD_HTTP2_KEEPALIVE_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub http2_keepalive_timeout: Option<Duration>,
    /// Quiet time before TCP keepalive probes, whole seconds from 1s to 32767s
    /// [default: 60s]
    #[arg(long, env = "CIRCUITD_TCP_KEEPALIVE", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub tcp_keepalive: Option<Duration>,
    /// How long a new connection has to send the HTTP/2 preface, 1ms to 1d [default: 10s]
    #[arg(long, env = "CIRCUITD_HANDSHAKE_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Option<Duration>,
    /// How long a connection may stay open with no call in flight (an open Watch or
    /// Session counts as one), 1ms to 1d [default: 1h]
    #[arg(long, env = "CIRCUITD_IDLE_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Events a watcher may fall behind before it gets RESYNC [default: 1024]
    #[arg(long, env = "CIRCUITD_WATCH_BUFFER", value_name = "N")]
    pub watch_buffer: Option<usize>,
    /// Events kept for start_revision replay [default: 10000]
    #[arg(long, env = "CIRCUITD_WATCH_HISTORY", value_name = "N")]
    pub watch_history: Option<usize>,
    /// PROGRESS interval when a Watch does not set one, e.g. 10s or 500ms [default: 10s]
    #[arg(long, env = "CIRCUITD_PROGRESS_INTERVAL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub progress_interval: Option<Duration>,
    /// How long shutdown may take before connections are dropped [default: 5s]
    #[arg(long, env = "CIRCUITD_SHUTDOWN_GRACE", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Option<Duration>,
    /// Where durable state lives (created if absent). Default: `data` in the working
    /// directory.
    #[arg(long, env = "CIRCUITD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep everything in memory: a restart forgets every protector.
    #[arg(long, env = "CIRCUITD_IN_MEMORY", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub in_memory: Option<bool>,
    /// Truncate a damaged journal at the damage instead of refusing to start (every
    /// change recorded after the damage is lost).
    #[arg(long, env = "CIRCUITD_REPAIR", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub repair: Option<bool>,
    /// How often outcomes that changed no status are written (default 100ms).
    #[arg(long, env = "CIRCUITD_FLUSH_INTERVAL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub flush_interval: Option<Duration>,
    /// How large a journal segment grows before a snapshot replaces it (default 67108864).
    #[arg(long, env = "CIRCUITD_SEGMENT_BYTES", value_name = "N")]
    pub segment_bytes: Option<u64>,
    /// Replicated mode: etcd client URLs, comma-separated (http://host:port,...); state
    /// lives in etcd and one replica leads [default: none, one daemon on its journal]
    #[arg(long, env = "CIRCUITD_ETCD", value_name = "URL[,URL...]")]
    pub etcd: Option<String>,
    /// The etcd key prefix of this cluster, ending in '/' [default: /resilient-circuit/]
    #[arg(long, env = "CIRCUITD_ETCD_PREFIX", value_name = "PREFIX")]
    pub etcd_prefix: Option<String>,
    /// The address clients and other replicas use to reach this replica [default: the
    /// bound listen address]
    #[arg(long, env = "CIRCUITD_ADVERTISE", value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// With --admin-listen: the address other replicas reach this one's admin listener
    /// at, so a follower forwards AdminService calls there when this replica leads
    /// [default: the bound --admin-listen address]
    #[arg(long, env = "CIRCUITD_ADVERTISE_ADMIN", value_name = "HOST:PORT")]
    pub advertise_admin: Option<String>,
    /// Time to live of the leader's lease, whole seconds, 2s to 60s [default: 2s]
    #[arg(long, env = "CIRCUITD_ETCD_LEASE_TTL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub etcd_lease_ttl: Option<Duration>,
    /// Bytes of log the leader writes to etcd before a snapshot replaces them
    /// [default: 16777216]
    #[arg(long, env = "CIRCUITD_ETCD_SNAPSHOT_BYTES", value_name = "N")]
    pub etcd_snapshot_bytes: Option<u64>,
    /// Serve TLS on both listeners with this certificate chain (PEM); needs --tls-key.
    /// Re-read on SIGHUP [default: none, plaintext]
    #[arg(long, env = "CIRCUITD_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM). Re-read on SIGHUP [default: none]
    #[arg(long, env = "CIRCUITD_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// mTLS: refuse at the handshake every client without a certificate signed by a CA
    /// in this PEM file. Re-read on SIGHUP [default: none]
    #[arg(long, env = "CIRCUITD_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Replicated mode with TLS: the CAs (PEM) a follower trusts when it forwards to the
    /// leader [default: --tls-client-ca]
    #[arg(long, env = "CIRCUITD_TLS_PEER_CA", value_name = "FILE")]
    pub tls_peer_ca: Option<PathBuf>,
}

/// Parsed flags plus, for each setting taken from the environment, its variable, keyed
/// by the clap id (the field name), so errors can name where a value came from.
#[derive(Debug, Clone, Default)]
pub(super) struct Parsed {
    pub(super) args: Args,
    pub(super) from_env: HashMap<String, String>,
}

/// Parses `argv` (program name first) with `env` standing in for the process
/// environment. An empty variable counts as unset.
pub(super) fn parse<I, T>(argv: I, env: &HashMap<String, String>) -> Result<Parsed, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut vars = Vec::new();
    let cmd = Args::command().mut_args(|arg| {
        let Some(var) = arg.get_env().and_then(|v| v.to_str()).map(str::to_owned) else {
            return arg;
        };
        let help = format!(
            "{} [env: {var}]",
            arg.get_help().map(ToString::to_string).unwrap_or_default()
        );
        vars.push((arg.get_id().to_string(), arg.get_long().map(str::to_owned), var));
        arg.env(None).help(help)
    });
    let mut argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let given = cmd
        .clone()
        .try_get_matches_from(&argv)
        .map_err(ConfigError::Args)?;

    let mut from_env = HashMap::new();
    for (id, long, var) in vars {
        let (Some(long), Some(value)) = (long, env.get(&var).filter(|v| !v.is_empty())) else {
            continue;
        };
        if given.value_source(&id).is_some() {
            continue;
        }
        let flag = OsString::from(format!("--{long}={value}"));
        // Checked alone first, so a bad value is blamed on its variable rather than on
        // a flag the user never typed.
        if let Err(e) = cmd
            .clone()
            .try_get_matches_from([OsString::from("circuitd"), flag.clone()])
        {
            return Err(ConfigError::Env {
                var,
                message: clap_message(&e),
            });
        }
        argv.push(flag);
        from_env.insert(id, var);
    }
    let matches = cmd.try_get_matches_from(argv).map_err(ConfigError::Args)?;
    let args = Args::from_arg_matches(&matches).map_err(ConfigError::Args)?;
    Ok(Parsed { args, from_env })
}

/// The first line of a clap error, without its "error: " prefix.
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}
