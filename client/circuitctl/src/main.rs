//! circuitctl: the operator's command line for circuitd.
//!
//! Every subcommand but `bench` is one RPC (list may page, watch streams) printed as an
//! aligned table or, with `--json`, as the proto3 JSON mapping of the response. Given
//! several addresses (the replicas of a cluster), a command goes to each in turn until
//! one answers (see `commands::run`). Exit
//! codes: 0 success, 1 the daemon answered with an error, 2 usage error, 3 the daemon
//! cannot be reached, 4 `acquire` was rejected. The requests go through the generated
//! stubs of `resilient-circuit-api`, not the client library, whose calls add deadlines,
//! fallbacks and protector creation an operator's command must not have (see `commands`).
//!
//! `circuitctl bench` is the load generator, a package of its own
//! (`resilient-circuit-loadgen`, in `client/loadgen`): its flags are flattened into this
//! command line, its errors mapped onto the same exit codes, and its eager connection
//! serves every command.
//!
//! Layout:
//! - `cli`: the flags and value parsers; `policy_args`: the policy flags (`ensure`,
//!   `update-policy`, `simulate`) and the duration and fraction parsers.
//! - `commands`: each subcommand's request (`bench` hands over to the load generator).
//! - `session`: the connection, the bounded call, and printing an answer.
//! - `watch`: the change stream, printed live.
//! - `token`: `token new`, a fresh token and its tokens-file table (no daemon involved).
//! - `view`: how each answer looks (`timeline`: `simulate`'s); `render`: tables, colour
//!   and JSON.
//! - `error`: failures and exit codes.
//!
//! Imports point one way: `commands` uses `watch`, which uses `session` and `view`, which
//! use `render`; `cli` uses only `policy_args`, which, like `error`,
//! uses no other module.

mod cli;
mod commands;
mod error;
mod policy_args;
mod render;
mod session;
mod timeline;
mod token;
mod view;
mod watch;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // Flags that clap takes one by one but that cannot run together: usage errors too.
    if let cli::Command::Bench(args) = &cli.command
        && let Some(why) = args.conflict()
    {
        cli::Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, why)
            .exit();
    }
    // The load generator needs every core (unless told otherwise); each other command is
    // a few calls.
    let mut builder = match &cli.command {
        cli::Command::Bench(args) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(threads) = args.client_threads {
                builder.worker_threads(threads.into());
            }
            builder
        }
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("circuitctl: cannot start the async runtime: {e}");
            return ExitCode::from(error::EXIT_ERROR);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        // The reader went away (`circuitctl watch | head`): nothing is left to tell.
        Err(failure) if failure.is_broken_pipe() => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{failure}");
            failure.exit_code()
        }
    }
}
