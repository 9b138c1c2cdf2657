//! The flags of a run, and the parsers that check each value's shape and bounds.
//!
//! A malformed or out-of-range value is a usage error, reported by clap before anything
//! connects; the messages read as circuitctl's own value parsers do.

use std::time::Duration;

use clap::ValueEnum;

/// What `bench` drives and how hard.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// unary: Acquire then Report as two calls; session: both pipelined on Session
    /// streams; cached: the client library's protectors in cached mode (local decisions,
    /// batched successes; its baseline is the unary one); library: the client library's
    /// protectors without cached mode, every decision asked of the daemon on the
    /// library's default transport, one Session stream (its baseline is the session one);
    /// echo: the baseline alone (in the unary shape); watch: how long SetStatus takes to
    /// reach --watchers Watch streams.
    #[arg(long, value_enum, default_value_t = Mode::Unary)]
    pub mode: Mode,
    /// Decisions in flight at once, across all connections.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,
    /// HTTP/2 connections (each with one stream in session mode); workers take them in
    /// turn. At most --concurrency are used. Default 1; in watch mode 8, the watchers
    /// spread over them.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub connections: Option<u32>,
    /// Protectors, named bench-0 .. bench-(P-1); worker i of N uses bench-(i + kN mod P).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub protectors: u32,
    /// How long to measure (at most 1h).
    #[arg(long, default_value = "10s", value_parser = measured)]
    pub duration: Duration,
    /// How long to run before measuring (at most 10m).
    #[arg(long, default_value = "1s", value_parser = warmup)]
    pub warmup: Duration,
    /// The share of admitted calls reported as failures, 0.0 to 1.0.
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    pub failure_rate: f64,
    /// Use a policy that trips on every failure and half-opens at once (failure_limit 1/1,
    /// cooldown 0, one trial), so failures drive transitions; without it the policy is
    /// failure_limit 1000/1000 with a 1s cooldown, which only a failure rate near 1 trips.
    #[arg(long)]
    pub trip: bool,
    /// Add the optional rules of proto/SEMANTICS.md section 2a to the policy: a 60s time
    /// window (minimum_calls = the failure limit's d), a slow-call rule (1s, 1/2) and a
    /// streak of 100 consecutive failures, so their cost on Acquire and Report shows
    /// against the same run without them.
    #[arg(long)]
    pub rules: bool,
    /// The bench policy keeps this many recent outcomes for SimulatePolicy (history_size;
    /// 0 = none, at most 1,000,000), so a run fills a protector's what-if history.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub history_size: u32,
    /// Every Report carries this call duration (e.g. 1ms); unset: none, as before the
    /// slow-call rule. The echo baseline's messages are unchanged.
    #[arg(long, value_parser = at_most_an_hour)]
    pub report_duration: Option<Duration>,
    /// Run the echo baseline first, in the same shape, and report the ratio.
    #[arg(long)]
    pub baseline: bool,
    /// With --baseline (unary, session and library modes): cut --duration into this many
    /// equal slices, at least 100ms each, and measure the echo and the daemon in turn, slice
    /// by slice, each after its own --warmup; the figures sum the slices. On a shared
    /// machine whose speed drifts from second to second, both sides then see the same
    /// moments, and the ratio varies far less than with one echo run, then one daemon run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Worker threads of the load generator's own runtime (default: one per core). With
    /// one connection in session mode, 1 keeps the stream's tasks on one thread, so no
    /// wake-up crosses threads: runs vary far less, and the transport (and its echo
    /// baseline) goes faster. The caller builds the runtime (circuitctl does).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub client_threads: Option<u16>,
    /// The seed of the outcome sequences.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Each decision is one Acquire, never reported (unary and session modes): what an
    /// Acquire alone costs. The default policy never trips without failures.
    #[arg(long)]
    pub acquire_only: bool,
    /// Watch mode: Watch streams to open, all on one protector. The daemon serves at most
    /// --max-concurrent-streams (1,024 by default) per connection: the rest wait for one.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub watchers: u32,
    /// Watch mode: SetStatus calls to make, one at a time, alternating OPEN and CLOSED.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub transitions: u32,
    /// Watch mode: keep the streams open this long after the transitions (at most 1h).
    #[arg(long, default_value = "0s", value_parser = at_most_an_hour)]
    pub hold: Duration,
}

/// What a run drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Acquire and Report as unary calls.
    Unary,
    /// Acquire and Report pipelined on Session streams.
    Session,
    /// The client library's cached mode.
    Cached,
    /// The client library, every decision asked of the daemon.
    Library,
    /// The echo baseline only.
    Echo,
    /// Transitions fanned out to Watch streams.
    Watch,
}

impl Mode {
    /// The mode as the command line spells it.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Mode::Unary => "unary",
            Mode::Session => "session",
            Mode::Cached => "cached",
            Mode::Library => "library",
            Mode::Echo => "echo",
            Mode::Watch => "watch",
        }
    }
}

impl Args {
    /// Why these flags cannot run together, if they cannot (beyond each value's own
    /// bounds, which clap checks): a usage error, which [`run`](crate::run) also refuses.
    pub fn conflict(&self) -> Option<String> {
        if self.rounds == 1 {
            return None;
        }
        if !self.baseline {
            return Some("--rounds takes turns with the echo baseline: add --baseline".to_owned());
        }
        if !matches!(self.mode, Mode::Unary | Mode::Session | Mode::Library) {
            return Some(format!(
                "--rounds is for unary, session and library modes, not {}",
                self.mode.word()
            ));
        }
        if self.duration / self.rounds < MIN_SLICE {
            return Some(format!(
                "--duration {} cut into {} rounds leaves slices under {}: measure longer or in fewer rounds",
                humantime::format_duration(self.duration),
                self.rounds,
                humantime::format_duration(MIN_SLICE),
            ));
        }
        None
    }
}

/// The shortest slice `--rounds` may cut: shorter, a slice's decisions are too few to count.
const MIN_SLICE: Duration = Duration::from_millis(100);

/// A human duration such as `30s`, `1m30s` or `250ms`.
fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 30s, 5m, 250ms)"))
}

fn measured(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d.is_zero() || d > Duration::from_secs(3600) {
        return Err("expected more than 0 and at most 1h".to_owned());
    }
    Ok(d)
}

fn warmup(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d > Duration::from_secs(600) {
        return Err("expected at most 10m".to_owned());
    }
    Ok(d)
}

/// A duration of at most 1h (`--hold`, `--report-duration`).
fn at_most_an_hour(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d > Duration::from_secs(3600) {
        return Err("expected at most 1h".to_owned());
    }
    Ok(d)
}

fn rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("expected a number from 0.0 to 1.0, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bounded() {
        assert!(measured("0s").is_err());
        assert!(measured("2h").is_err());
        assert_eq!(measured("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(warmup("0s"), Ok(Duration::ZERO));
        assert!(warmup("11m").is_err());
        assert!(at_most_an_hour("2h").is_err());
        assert_eq!(at_most_an_hour("5s"), Ok(Duration::from_secs(5)));
        for bad in ["-0.1", "1.5", "NaN", "x", ""] {
            assert!(rate(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(rate("0.25"), Ok(0.25));
    }
}
