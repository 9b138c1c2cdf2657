//! The resilient-circuit load generator, run as `circuitctl bench`: how many decisions a
//! second circuitd takes, how long one takes, and how long a transition takes to reach
//! its watchers, measured from a client as an application would see it.
//!
//! A run drives decisions (an Acquire, then a Report when admitted) at a fixed number in
//! flight for a fixed time, after a warmup, and prints decisions per second and the
//! latency of one whole decision. With `--baseline` it first drives the same shape
//! against an echo service it serves itself on 127.0.0.1:0 (two Echo calls per decision,
//! or two messages on an EchoStream), so the figure is also a ratio to what the transport
//! alone manages on this machine at this moment; with `--rounds N` the two take turns in N
//! slices of the window, so both see the same moments of a machine whose speed drifts.
//! Everything is bounded: the run ends after warmup + duration (and a warmup before each
//! slice with `--rounds`), and answers still missing `--timeout` later are abandoned.
//! What it measured on which machine is in BENCHMARKS.md, never here.
//!
//! The caller parses [`Args`] with clap (they are a `clap::Args` to flatten into its own
//! command line) and calls [`run`], which prints the summary on stdout, as text or one
//! JSON object, and notes on stderr. A failed run is an [`Error`] that tells a daemon
//! that cannot be reached apart from an error status it answered and from anything else.
//!
//! Layout:
//! - [`args`]: [`Args`], the flags, and [`Mode`], what a run drives.
//! - [`error`]: [`Error`], why a run failed.
//! - [`daemon`]: [`connect`], the eager connection, and setup calls bounded by the timeout.
//! - `plan`: one run: connecting, preparing the protectors, opening the streams, counting
//!   the daemon's transitions.
//! - `tally`: the measured window, the counters and latencies, the workload.
//! - `unary`, `pipeline` and `library`: the shapes of decisions (`library`: through the
//!   client library, cached or not).
//! - `watch`: the fan-out of transitions to watchers, with figures of its own.
//! - `baseline`: the echo server; [`echo`], its generated code.
//! - `report`: how a run's result looks.

pub mod args;
mod baseline;
pub mod daemon;
pub mod error;
mod library;
mod pipeline;
mod plan;
mod report;
mod tally;
mod unary;
mod watch;

use std::time::Duration;

pub use args::{Args, Mode};
pub use daemon::{Credentials, Transport, connect, connect_with};
pub use error::Error;

/// The benchmark baseline (package `resilient_circuit.bench.v1`): an echo service that
/// the load generator serves itself, never circuitd, so a figure can be read as a ratio
/// to what the transport alone manages.
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic,
    rustdoc::all
)]
pub mod echo {
    tonic::include_proto!("resilient_circuit.bench.v1");
}

/// Runs the benchmark `args` describe against the daemon at `addr` (not contacted in echo
/// mode) and prints the result, as one JSON object with `json`; `timeout` bounds
/// connecting, each setup call, and the wait for answers after the run.
pub async fn run(args: &Args, addr: &str, timeout: Duration, json: bool) -> Result<(), Error> {
    run_with(args, addr, timeout, json, None, Credentials::default()).await
}

/// [`run`], reaching the daemon over TLS with `tls` when given and sending `credentials`
/// with every call (unary and session modes; the echo baseline stays plaintext and
/// gets no token).
pub async fn run_with(
    args: &Args,
    addr: &str,
    timeout: Duration,
    json: bool,
    tls: Option<tonic::transport::ClientTlsConfig>,
    credentials: Credentials,
) -> Result<(), Error> {
    if tls.is_some() && matches!(args.mode, Mode::Watch | Mode::Cached | Mode::Library) {
        return Err(Error::other(format!(
            "bench --mode {} does not speak TLS yet: use unary or session, or a plaintext listener",
            args.mode.word()
        )));
    }
    if credentials.is_set() && matches!(args.mode, Mode::Watch | Mode::Cached | Mode::Library) {
        return Err(Error::other(format!(
            "bench --mode {} does not send a token yet: use unary or session, or a daemon without --tokens",
            args.mode.word()
        )));
    }
    if let Some(why) = args.conflict() {
        return Err(Error::other(why));
    }
    if args.mode == Mode::Watch {
        return watch::run(args, addr, timeout, json).await;
    }
    let mut plan = plan::Plan::new(args, timeout);
    plan.tls = tls;
    plan.credentials = credentials;
    let (measured, baseline) = if args.mode == Mode::Echo {
        (plan.against_echo(args.mode).await?, None)
    } else if args.baseline {
        // In turns, echo first (`conflict` allows several rounds only here).
        let mut echo = plan.against_echo(args.mode).await?;
        let mut daemon = plan.against_daemon(args.mode, addr).await?;
        for _ in 1..args.rounds {
            echo.add(plan.against_echo(args.mode).await?);
            daemon.add(plan.against_daemon(args.mode, addr).await?);
        }
        (daemon, Some(echo))
    } else {
        (plan.against_daemon(args.mode, addr).await?, None)
    };
    let summary = report::Summary {
        args,
        connections: plan.connections(),
        measured: &measured,
        baseline: baseline.as_ref(),
    };
    let text = if json { summary.json() } else { summary.text() };
    print!("{text}");
    if let Some(why) = &measured.tally.first_error {
        eprintln!(
            "{}: {} request(s) failed in the window; the first: {why}",
            report::NOTE,
            measured.tally.errors
        );
    }
    if measured.tally.decisions() == 0 {
        return Err(Error::other("no decision completed in the measured window"));
    }
    Ok(())
}
