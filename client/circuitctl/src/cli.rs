//! The command line: every subcommand, flag and value parser.
//!
//! Values are parsed only for their shape here (a duration, `n/d`, a status word); whether
//! a value is allowed (1 <= n <= d, a cooldown of at most 30 days...) is the daemon's call,
//! so one authority decides and its INVALID_ARGUMENT names the field. A malformed value is
//! a usage error (exit 2); a well-formed but invalid one is the daemon's error (exit 1).

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use resilient_circuit_api::v1;

pub use crate::policy_args::PolicyArgs;
use crate::policy_args::duration;

/// The operator's CLI for circuitd, the daemon that holds every named circuit protector.
///
/// Exit codes: 0 success; 1 the daemon answered with an error; 2 usage error; 3 the daemon
/// cannot be reached (or is shutting down; with several addresses: none of them answered);
/// 4 `acquire` was rejected.
///
/// Values are checked here for their shape only: a malformed duration or fraction is a
/// usage error (2). A well-formed value the daemon refuses, such as `--failure-limit 6/5`,
/// is its INVALID_ARGUMENT, printed with the field at fault (1).
#[derive(Debug, Parser)]
#[command(name = "circuitctl", version)]
pub struct Cli {
    /// The daemon's address. Several, comma-separated, are the replicas of one cluster:
    /// each command tries them in order until one answers (a connection that fails, or
    /// UNAVAILABLE, moves on to the next). `bench` uses the first.
    #[arg(
        long,
        global = true,
        env = "CIRCUIT_ADDR",
        default_value = "http://127.0.0.1:50051",
        value_parser = address,
        value_delimiter = ',',
        value_name = "URI[,URI...]"
    )]
    pub addr: Vec<String>,

    /// The bearer token sent with every request, for a daemon started with --tokens
    /// (`circuitctl token new` makes one).
    #[arg(long, global = true, env = "CIRCUIT_TOKEN", hide_env_values = true, value_name = "TOKEN", value_parser = token)]
    pub token: Option<String>,

    /// TLS: trust the CA certificates in this PEM file for the daemon's certificate
    /// (addresses must then be https://).
    #[arg(long, global = true, env = "CIRCUIT_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,

    /// mTLS: present this certificate chain (PEM) to the daemon; needs --tls-key.
    #[arg(
        long,
        global = true,
        env = "CIRCUIT_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<std::path::PathBuf>,

    /// mTLS: the private key (PEM) of --tls-cert.
    #[arg(
        long,
        global = true,
        env = "CIRCUIT_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<std::path::PathBuf>,

    /// How long to wait for the connection and for each answer (watch: for the stream to start).
    #[arg(long, global = true, default_value = "5s", value_parser = duration)]
    pub timeout: Duration,

    /// Print the proto3 JSON mapping of each response instead of a table (watch: one
    /// object per line).
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// One operation: a request to the daemon, or a load run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One request (a watch: one stream), its answer printed.
    #[command(flatten)]
    Request(Request),
    /// Drive load for a while and print decisions/s and latency (see `bench --help`).
    Bench(resilient_circuit_loadgen::Args),
    /// Make credentials for a daemon's tokens file (nothing is sent to a daemon).
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `circuitctl token ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum TokenCommand {
    /// Print a fresh random token and the `[[token]]` table to paste into the daemon's
    /// tokens file (which holds only the token's SHA-256).
    New {
        /// The token's name, shown in the daemon's audit log.
        name: String,
        /// What it may do: read (Get, List, Watch, health), data (read plus Acquire,
        /// Report, Session, ReportBatch, EnsureProtector) or admin (everything).
        #[arg(long)]
        role: RoleArg,
    },
}

/// A role of the tokens file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Reads and watches.
    Read,
    /// Reads plus the data plane.
    Data,
    /// Everything.
    Admin,
}

/// A request to the daemon (cloned for each address tried).
#[derive(Debug, Clone, Subcommand)]
pub enum Request {
    /// List protectors in name order.
    List {
        /// Only names starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Most protectors per page (0 = the daemon's default of 100).
        #[arg(long, default_value_t = 0)]
        page_size: u32,
        /// Start from this page token (printed on stderr after a partial listing).
        #[arg(long, default_value = "", conflicts_with = "all_pages")]
        page_token: String,
        /// Follow next_page_token until the last page (with --json: one response holding
        /// every page).
        #[arg(long)]
        all_pages: bool,
    },
    /// Show one protector's whole state.
    Get {
        /// The protector's name.
        name: String,
    },
    /// Create a protector if it does not exist (an existing one is never changed).
    Ensure {
        /// The protector's name.
        name: String,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Ask whether a call may go ahead. Exits 0 when admitted, 4 when rejected.
    Acquire {
        /// The protector's name.
        name: String,
    },
    /// Report how an admitted call went, with the permit `acquire` printed.
    Report {
        /// The protector's name.
        name: String,
        /// The permit id (0 for a call admitted in CLOSED or under DISABLED).
        #[arg(long)]
        permit: u64,
        /// The generation the permit was issued in.
        #[arg(long)]
        generation: u64,
        /// How the call went.
        #[arg(long)]
        outcome: OutcomeArg,
        /// How long the call took, for the policy's slow-call rule (unset: never slow).
        #[arg(long, value_parser = duration)]
        duration: Option<Duration>,
    },
    /// Stream changes, one line per event, until ctrl-c or the stream ends.
    ///
    /// Each line: timestamp (a transition's own instant, else when received), revision,
    /// event kind, name, change (status, from→to, or override), reason; `-` where a field
    /// does not apply. Exits 0 on ctrl-c, at the stream's clean end or after --count
    /// messages; non-zero when the stream fails (3 when the daemon goes away).
    Watch(WatchArgs),
    /// Move a protector's status machine by hand (reason MANUAL).
    SetStatus {
        /// The protector's name.
        name: String,
        /// The status to enter; the current one is re-entered.
        status: StatusArg,
        /// Only with open: stay OPEN this long instead of the policy's cooldown.
        #[arg(long, value_parser = duration)]
        open_for: Option<Duration>,
    },
    /// Set or clear an override.
    Override {
        /// The protector's name.
        name: String,
        /// forced-open rejects every call, disabled admits every call, none clears.
        kind: OverrideArg,
        /// The override ends by itself after this long.
        #[arg(long, value_parser = duration)]
        expires_after: Option<Duration>,
    },
    /// Replace a protector's policy (its window starts anew). Unset flags take their defaults.
    UpdatePolicy {
        /// The protector's name.
        name: String,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// What-if: replay the protector's recent outcomes (kept when its policy has
    /// --history-size) through the policy these flags describe, and print, for it and for
    /// the current policy, one line per transition (instant, from -> to, reason) and the
    /// calls admitted and rejected. Changes nothing. Unset flags take their defaults.
    Simulate {
        /// The protector's name.
        name: String,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Delete a protector; its outstanding permits become stale.
    Delete {
        /// The protector's name.
        name: String,
    },
    /// Show the daemon's replicas: each one's address, role, since when the leader leads
    /// and when it started; which replica answered, the etcd prefix, the revision and the
    /// epoch. A daemon that is not replicated is one STANDALONE replica.
    #[command(visible_alias = "status")]
    Cluster,
}

/// What `watch` follows and how.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Watch only these protectors (default: every protector).
    #[arg(conflicts_with = "prefix")]
    pub names: Vec<String>,
    /// Watch the protectors whose names start with this.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Replay the changes after this revision instead of starting with a snapshot.
    #[arg(long)]
    pub start_revision: Option<u64>,
    /// The epoch (from a SYNCED line) that --start-revision belongs to; a daemon with
    /// another history answers RESYNC instead of replaying.
    #[arg(long, value_name = "EPOCH", requires = "start_revision")]
    pub start_epoch: Option<u64>,
    /// How long the stream may be idle before the daemon sends PROGRESS (100ms to 1h).
    #[arg(long, value_parser = duration)]
    pub progress_interval: Option<Duration>,
    /// Exit 0 after printing this many messages (snapshots, SYNCED and PROGRESS count).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

impl WatchArgs {
    /// The Watch request.
    pub fn to_request(&self) -> v1::WatchRequest {
        use v1::watch_request::Filter;
        let filter = match (&self.prefix, self.names.is_empty()) {
            (Some(prefix), _) => Filter::Prefix(prefix.clone()),
            (None, false) => Filter::Names(v1::NameList {
                names: self.names.clone(),
            }),
            (None, true) => Filter::All(true),
        };
        v1::WatchRequest {
            filter: Some(filter),
            start_revision: self.start_revision,
            start_epoch: self.start_epoch,
            progress_interval: self
                .progress_interval
                .map(resilient_circuit_api::convert::duration),
        }
    }
}

/// A status to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    /// CLOSED.
    Closed,
    /// OPEN.
    Open,
    /// HALF_OPEN.
    HalfOpen,
}

impl From<StatusArg> for v1::Status {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Closed => v1::Status::Closed,
            StatusArg::Open => v1::Status::Open,
            StatusArg::HalfOpen => v1::Status::HalfOpen,
        }
    }
}

/// An override to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OverrideArg {
    /// Reject every call.
    ForcedOpen,
    /// Admit every call; outcomes never trip.
    Disabled,
    /// Clear the override.
    None,
}

impl From<OverrideArg> for v1::OverrideKind {
    fn from(k: OverrideArg) -> Self {
        match k {
            OverrideArg::ForcedOpen => v1::OverrideKind::ForcedOpen,
            OverrideArg::Disabled => v1::OverrideKind::Disabled,
            OverrideArg::None => v1::OverrideKind::None,
        }
    }
}

/// A call's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutcomeArg {
    /// The call succeeded.
    Success,
    /// The call failed.
    Failure,
    /// Count it nowhere; only release a trial permit.
    Ignored,
}

impl From<OutcomeArg> for v1::Outcome {
    fn from(o: OutcomeArg) -> Self {
        match o {
            OutcomeArg::Success => v1::Outcome::Success,
            OutcomeArg::Failure => v1::Outcome::Failure,
            OutcomeArg::Ignored => v1::Outcome::Ignored,
        }
    }
}

/// An absolute URI with a scheme and a host, e.g. `http://10.0.0.5:50051`.
fn address(s: &str) -> Result<String, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(s.to_owned()).map_err(|e| e.to_string());
    match endpoint {
        Ok(e) if e.uri().scheme().is_some() && e.uri().authority().is_some() => Ok(s.to_owned()),
        Ok(_) => Err("expected a URI such as http://127.0.0.1:50051".to_owned()),
        Err(e) => Err(format!("{e} (expected a URI such as http://127.0.0.1:50051)")),
    }
}

/// A token that can travel in a header (checked here, so a bad one is a usage error).
fn token(text: &str) -> Result<String, String> {
    resilient_circuit_api::Bearer::new(Some(text))
        .map(|_| text.to_owned())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_addresses_are_comma_separated_and_each_validated() {
        let cli =
            Cli::try_parse_from(["circuitctl", "--addr", "http://a:1,http://b:2", "list"]).expect("parsed");
        assert_eq!(cli.addr, ["http://a:1", "http://b:2"]);
        for bad in ["http://a:1,b:2", "http://a:1,,http://b:2"] {
            assert!(
                Cli::try_parse_from(["circuitctl", "--addr", bad, "list"]).is_err(),
                "{bad:?} accepted"
            );
        }
        let status = Cli::try_parse_from(["circuitctl", "status"]).expect("parsed");
        assert!(matches!(status.command, Command::Request(Request::Cluster)));
    }

    #[test]
    fn addresses_need_a_scheme_and_a_host() {
        assert!(address("http://127.0.0.1:50051").is_ok());
        assert!(address("https://circuitd.internal").is_ok());
        for bad in ["nonsense", "127.0.0.1:50051", "", "http://"] {
            assert!(address(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
