//! The daemon in this process: [`Daemon`] on the test's own runtime, and
//! [`BlockingDaemon`] on a runtime of its own for synchronous tests (a test body that
//! blocks on a child process while the daemon answers it).
//!
//! Both listen on an ephemeral loopback port. [`Daemon::stop_in_place`] and
//! [`Daemon::start_again`] take a daemon down and bring a fresh (empty: it is in memory)
//! one back on the same address, for clients that must ride out an outage.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use circuitd::{Config, ServeError};
use resilient_circuit_api::v1;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::fixtures::{AdminClient, DEADLINE, ProtectorClient};
use crate::requests::{call, get, set_status};

/// A daemon running in this process on an ephemeral loopback port. Dropping it asks it
/// to shut down.
#[derive(Debug)]
pub struct Daemon {
    /// Where it listens.
    pub addr: SocketAddr,
    config: Config,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl Daemon {
    /// Starts a daemon on the default configuration.
    pub async fn start() -> Daemon {
        Daemon::with_config(Config::default()).await
    }

    /// Starts a daemon on the default configuration but for its shutdown grace: a short
    /// one lets [`Daemon::stop_in_place`] return soon although clients keep streams open.
    pub async fn with_shutdown_grace(grace: Duration) -> Daemon {
        Daemon::with_config(Config {
            shutdown_grace: grace,
            ..Config::default()
        })
        .await
    }

    /// Starts a daemon on `config` (its `listen` is ignored: the port is ephemeral).
    pub async fn with_config(config: Config) -> Daemon {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let mut daemon = Daemon {
            addr,
            config,
            stop: None,
            task: None,
        };
        daemon.serve(listener);
        daemon
    }

    fn serve(&mut self, listener: TcpListener) {
        let (stop, stopped) = oneshot::channel::<()>();
        self.task = Some(tokio::spawn(circuitd::serve(
            listener,
            self.config.clone(),
            async move {
                let _ = stopped.await;
            },
        )));
        self.stop = Some(stop);
    }

    /// The daemon's URI.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A new connection.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.uri())
            .expect("uri")
            .connect_timeout(DEADLINE)
            .connect()
            .await
            .unwrap_or_else(|e| {
                // A serve that ended at start (recovery refused the data dir, say) drops
                // the listener: say so, since a reset connection alone does not.
                let ended = self.task.as_ref().is_some_and(|t| t.is_finished());
                panic!("connect to the daemon: {e:?} (its serve task has ended: {ended})")
            })
    }

    /// A new connection whose per-stream receive window is tiny (1 KiB, not adaptive),
    /// so that a stream the client does not read stops the daemon from pulling more
    /// after a few kilobytes.
    pub async fn narrow_channel(&self) -> Channel {
        Channel::from_shared(self.uri())
            .expect("uri")
            .initial_stream_window_size(1024)
            .http2_adaptive_window(false)
            .connect_timeout(DEADLINE)
            .connect()
            .await
            .expect("connect to the daemon")
    }

    /// A data-plane client on a new connection.
    pub async fn protectors(&self) -> ProtectorClient {
        ProtectorClient::new(self.channel().await)
    }

    /// A control-plane client on a new connection.
    pub async fn admin(&self) -> AdminClient {
        AdminClient::new(self.channel().await)
    }

    /// Asks the daemon to shut down and waits for `serve` to return.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        self.halt().await.expect("running")
    }

    /// Shuts the daemon down, waits until it stopped serving (its listener closed) and
    /// fails the test unless it stopped cleanly; the address stays for
    /// [`Daemon::start_again`].
    pub async fn stop_in_place(&mut self) {
        if let Some(result) = self.halt().await {
            result.expect("serve");
        }
    }

    async fn halt(&mut self) -> Option<Result<(), ServeError>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        Some(self.task.take()?.await.expect("serve task"))
    }

    /// Starts a fresh daemon (empty: it is in memory) on the same address and
    /// configuration. Tokio's listener sets SO_REUSEADDR, so the port is free again at
    /// once.
    pub async fn start_again(&mut self) {
        assert!(self.task.is_none(), "the daemon is still running");
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("bind the same address again");
        self.serve(listener);
    }

    /// Like [`Daemon::start_again`], on another configuration from now on (its
    /// `listen` is ignored: the address stays).
    pub async fn start_again_with(&mut self, config: Config) {
        self.config = config;
        self.start_again().await;
    }

    /// An operator's SetStatus on `name` (no `open_for`); returns the transition it
    /// performed.
    pub async fn set_status(&self, name: &str, status: v1::Status) -> v1::Transition {
        set_status(&mut self.admin().await, name, status, None)
            .await
            .transition
            .expect("transition")
    }

    /// One call on `name` through the raw API, as another process would make it:
    /// Acquire (which must be admitted), then Report `outcome`.
    pub async fn raw_call(&self, name: &str, outcome: v1::Outcome) -> v1::ReportResponse {
        call(&mut self.protectors().await, name, outcome).await
    }

    /// The daemon's view of `name`.
    pub async fn inspect(&self, name: &str) -> v1::Protector {
        get(&mut self.protectors().await, name).await
    }

    /// Waits until the daemon's view of `name` satisfies `check`, failing after
    /// [`DEADLINE`]. Polls: the daemon has no event for every field.
    #[track_caller]
    pub fn wait_until(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&v1::Protector) -> bool,
    ) -> impl Future<Output = v1::Protector> {
        let (name, what) = (name.to_owned(), what.to_owned());
        let caller = std::panic::Location::caller();
        async move {
            let mut raw = self.protectors().await;
            let give_up = tokio::time::Instant::now() + DEADLINE;
            loop {
                let p = get(&mut raw, &name).await;
                if check(&p) {
                    return p;
                }
                assert!(
                    tokio::time::Instant::now() < give_up,
                    "{caller}: {name}: not {what} within {DEADLINE:?}: {p:?}"
                );
                tokio::task::yield_now().await;
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A [`Daemon`] served by a runtime of its own (one worker thread), for synchronous
/// tests: the test thread may block (on a child process, say) while the daemon answers.
#[derive(Debug)]
pub struct BlockingDaemon {
    // Declared first so it drops (and asks the daemon to stop) before the runtime.
    daemon: Daemon,
    runtime: Runtime,
}

impl BlockingDaemon {
    /// Starts a daemon on the default configuration.
    pub fn start() -> BlockingDaemon {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let daemon = runtime.block_on(Daemon::start());
        BlockingDaemon { daemon, runtime }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.daemon.addr
    }

    /// The daemon's URI.
    pub fn uri(&self) -> String {
        self.daemon.uri()
    }

    /// Runs `f` against the daemon on its runtime, blocking this thread until it ends.
    pub fn block_on<'a, F: Future>(&'a self, f: impl FnOnce(&'a Daemon) -> F) -> F::Output {
        self.runtime.block_on(f(&self.daemon))
    }

    /// The daemon's view of `name`.
    pub fn inspect(&self, name: &str) -> v1::Protector {
        self.block_on(|d| d.inspect(name))
    }

    /// Shuts the daemon down and waits for `serve` to return; fails the test unless it
    /// stopped cleanly.
    pub fn stop(self) {
        let BlockingDaemon { daemon, runtime } = self;
        runtime.block_on(daemon.stop()).expect("serve");
    }
}
