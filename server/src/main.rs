//! The `circuitd` binary: load the settings, start logging, raise the file-descriptor
//! limit for the listeners' connections, bind, serve until SIGINT or SIGTERM. Everything
//! else lives in the `circuitd` library.
//!
//! Logs go to stderr. Once bound, the binary also prints `listening on ADDR` (the bound
//! address, so `--listen 127.0.0.1:0` reveals its port) as one line on stdout, for
//! whoever started it, then `admin listening on ADDR` and `http listening on ADDR` for
//! the listeners configured, in that order, in the same write.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use circuitd::config::{ConfigError, LogFormat, Settings};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

fn main() -> ExitCode {
    let settings = match Settings::from_process() {
        Ok(settings) => settings,
        // clap prints help, version and usage errors itself, with the right exit code.
        Err(ConfigError::Args(e)) => e.exit(),
        Err(e) => {
            eprintln!("circuitd: {e}");
            return ExitCode::from(2);
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    // The same count as the connection threads: the runtime runs the rest.
    if let Some(n) = settings.config.connection_threads {
        runtime.worker_threads(n);
    }
    let run = runtime
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(run(settings)));
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("circuitd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    init_tracing(settings.log_format)?;
    let mut config = settings.config;
    // Each listener may hold max_connections: the descriptor limit must allow them all.
    let listeners =
        1 + usize::from(config.admin_listen.is_some()) + usize::from(config.http_listen.is_some());
    circuitd::connections::descriptors::ensure(config.limits.max_connections, listeners);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let bound = listener.local_addr().context("cannot read the bound address")?;
    if let Some(cluster) = config.cluster.as_mut()
        && cluster.advertise.is_none()
    {
        anyhow::ensure!(
            !bound.ip().is_unspecified(),
            "listening on {bound}, which other replicas cannot dial: set --advertise HOST:PORT"
        );
        cluster.advertise = Some(bound.to_string());
    }
    let admin = match config.admin_listen {
        None => None,
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--admin-listen)"))?,
        ),
    };
    if let (Some(cluster), Some(admin)) = (config.cluster.as_mut(), &admin)
        && cluster.advertise_admin.is_none()
    {
        let bound = admin
            .local_addr()
            .context("cannot read the admin listener's address")?;
        anyhow::ensure!(
            !bound.ip().is_unspecified(),
            "the admin listener is on {bound}, which other replicas cannot dial: set --advertise-admin HOST:PORT"
        );
        cluster.advertise_admin = Some(bound.to_string());
    }
    let http = match config.http_listen {
        None => None,
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--http-listen)"))?,
        ),
    };
    let shutdown = shutdown_signal()?;
    // Recover first: `listening on` promises that the daemon can answer.
    let connection_threads = circuitd::connections::threads::count_of(config.connection_threads);
    let prepared = circuitd::prepare(config).await?;
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    tracing::info!(
        "circuitd listening on {bound} (worker threads: {workers}, connection threads: {connection_threads})"
    );
    let mut stdout = std::io::stdout().lock();
    // Both lines in one write: a reader that stops after the first must not make the
    // second fail on a closed pipe.
    let mut lines = format!("listening on {bound}\n");
    if let Some(admin) = &admin {
        let addr = admin
            .local_addr()
            .context("cannot read the admin listener's address")?;
        tracing::info!("circuitd admin listening on {addr}");
        lines.push_str(&format!("admin listening on {addr}\n"));
    }
    if let Some(http) = &http {
        let addr = http
            .local_addr()
            .context("cannot read the HTTP listener's address")?;
        tracing::info!("circuitd http listening on {addr}");
        lines.push_str(&format!("http listening on {addr}\n"));
    }
    stdout
        .write_all(lines.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write the bound address to stdout")?;
    drop(stdout);
    prepared.serve_apart(listener, admin, http, shutdown).await?;
    Ok(())
}

/// Level from RUST_LOG (default "info"); a RUST_LOG that does not parse is an error
/// rather than silently ignored.
fn init_tracing(format: LogFormat) -> anyhow::Result<()> {
    let directives = match std::env::var("RUST_LOG") {
        Ok(directives) => directives,
        Err(std::env::VarError::NotPresent) => String::new(),
        Err(e) => anyhow::bail!("invalid RUST_LOG: {e}"),
    };
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse(&directives)
        .with_context(|| format!("invalid RUST_LOG {directives:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only help a person at a terminal; in a file they are noise.
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
    .map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))
}

/// Completes on the first SIGINT (ctrl-c) or SIGTERM. The handlers are installed before
/// this returns, so a signal that arrives while the daemon starts is not lost.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!("{name} received, shutting down");
    })
}
