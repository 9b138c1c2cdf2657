//! The client test harness: a real `circuitd` in this process on `127.0.0.1:0`, which
//! can be stopped and started again on the same port, plus helpers to build clients,
//! inspect the daemon over the raw API and wait for things with a deadline.
//!
//! Every test file declares `mod support;` and uses what it needs, so not every helper
//! is used by every file.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use resilient_circuit::{Client, PolicySpec, ProtectorPolicy, StatusChange};
use resilient_circuit_api::v1;
use resilient_circuit_api::v1::admin_service_client::AdminServiceClient;
use resilient_circuit_api::v1::protector_service_client::ProtectorServiceClient;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long a test waits for something it expects before it fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A daemon running in this process; it keeps its port across [`Daemon::stop`] and
/// [`Daemon::start_again`].
pub struct Daemon {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), circuitd::ServeError>>>,
}

impl Daemon {
    /// Starts a daemon on an ephemeral loopback port with the default configuration.
    pub async fn start() -> Daemon {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let mut daemon = Daemon {
            addr,
            stop: None,
            task: None,
        };
        daemon.serve(listener);
        daemon
    }

    fn serve(&mut self, listener: TcpListener) {
        let (stop, stopped) = oneshot::channel::<()>();
        let config = circuitd::Config {
            shutdown_grace: Duration::from_secs(1),
            ..circuitd::Config::default()
        };
        self.task = Some(tokio::spawn(circuitd::serve(listener, config, async move {
            let _ = stopped.await;
        })));
        self.stop = Some(stop);
    }

    /// The daemon's URI.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Shuts the daemon down and waits until it stopped serving (its listener closed).
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("serve task").expect("serve");
        }
    }

    /// Starts a fresh daemon (empty: it is in memory) on the same address. Tokio's
    /// listener sets SO_REUSEADDR, so the port is free again at once.
    pub async fn start_again(&mut self) {
        assert!(self.task.is_none(), "the daemon is still running");
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("bind the same address again");
        self.serve(listener);
    }

    /// A raw data-plane client on a new connection, for inspecting the daemon.
    pub async fn raw(&self) -> ProtectorServiceClient<tonic::transport::Channel> {
        ProtectorServiceClient::connect(self.uri())
            .await
            .expect("connect to the daemon")
    }

    /// An operator's SetStatus on `name`; returns the transition it performed.
    pub async fn set_status(&self, name: &str, status: v1::Status) -> v1::Transition {
        AdminServiceClient::connect(self.uri())
            .await
            .expect("connect to the daemon")
            .set_status(v1::SetStatusRequest {
                name: name.into(),
                status: status as i32,
                open_for: None,
            })
            .await
            .expect("SetStatus")
            .into_inner()
            .transition
            .expect("transition")
    }

    /// One call on `name` through the raw API, as another process would make it:
    /// Acquire (which must be admitted), then Report `outcome`.
    pub async fn raw_call(&self, name: &str, outcome: v1::Outcome) -> v1::ReportResponse {
        let mut raw = self.raw().await;
        let a = raw
            .acquire(v1::AcquireRequest { name: name.into() })
            .await
            .expect("Acquire")
            .into_inner();
        assert_eq!(a.decision, v1::Decision::Admitted as i32, "rejected: {a:?}");
        raw.report(v1::ReportRequest {
            name: name.into(),
            permit: a.permit,
            outcome: outcome as i32,
        })
        .await
        .expect("Report")
        .into_inner()
    }

    /// The daemon's view of `name`.
    pub async fn inspect(&self, name: &str) -> v1::Protector {
        self.raw()
            .await
            .get_protector(v1::GetProtectorRequest { name: name.into() })
            .await
            .expect("GetProtector")
            .into_inner()
            .protector
            .expect("protector")
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
            let mut raw = self.raw().await;
            let give_up = tokio::time::Instant::now() + DEADLINE;
            loop {
                let p = raw
                    .get_protector(v1::GetProtectorRequest { name: name.clone() })
                    .await
                    .expect("GetProtector")
                    .into_inner()
                    .protector
                    .expect("protector");
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

/// A client of `daemon` with a generous acquire deadline, for tests that expect every
/// decision to come from the daemon even on a loaded machine.
pub async fn patient_client(daemon: &Daemon) -> Client {
    Client::builder(daemon.uri())
        .acquire_deadline(DEADLINE)
        .request_timeout(DEADLINE)
        .build()
        .await
        .expect("client")
}

/// A policy: cooldown, failure limit n/d; everything else the default.
pub fn policy(cooldown: Duration, failure_limit: (u32, u32)) -> ProtectorPolicy {
    ProtectorPolicy::try_new(PolicySpec {
        cooldown,
        failure_limit,
        ..PolicySpec::default()
    })
    .expect("valid policy")
}

/// A channel fed by `on_status_change`, and the callback to register.
pub fn changes() -> (
    impl Fn(&StatusChange) + Send + Sync + 'static,
    mpsc::UnboundedReceiver<StatusChange>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    (move |c: &StatusChange| drop(tx.send(c.clone())), rx)
}

/// The next status change, failing the test after [`DEADLINE`].
#[track_caller]
pub fn next_change(
    rx: &mut mpsc::UnboundedReceiver<StatusChange>,
) -> impl Future<Output = StatusChange> + '_ {
    let caller = std::panic::Location::caller();
    async move {
        match tokio::time::timeout(DEADLINE, rx.recv()).await {
            Ok(Some(change)) => change,
            Ok(None) => panic!("{caller}: the status-change channel closed"),
            Err(_) => panic!("{caller}: no status change within {DEADLINE:?}"),
        }
    }
}

/// Waits until the watch behind each of `receivers` is live: a watch that opens after
/// a CLOSED to CLOSED transition reconciles silently (the status did not move), so
/// operator transitions are made until every receiver heard one. Returns the generation
/// of the last one, which every receiver has taken: nothing earlier is left queued.
pub async fn until_watching(
    daemon: &Daemon,
    name: &str,
    receivers: &mut [&mut mpsc::UnboundedReceiver<StatusChange>],
) -> u64 {
    let give_up = tokio::time::Instant::now() + DEADLINE;
    let mut live = vec![false; receivers.len()];
    while live.contains(&false) {
        assert!(
            tokio::time::Instant::now() < give_up,
            "{name}: the watches never went live"
        );
        daemon.set_status(name, v1::Status::Closed).await;
        for (rx, live) in receivers.iter_mut().zip(&mut live) {
            // A poll with a deadline: each round gives the stream a moment to answer.
            if !*live
                && tokio::time::timeout(Duration::from_millis(100), rx.recv())
                    .await
                    .is_ok()
            {
                *live = true;
            }
        }
    }
    let last = daemon.set_status(name, v1::Status::Closed).await.generation;
    for rx in receivers.iter_mut() {
        while next_change(rx).await.generation != last {}
    }
    last
}

/// Asserts that no status change is queued (every one expected was already taken).
#[track_caller]
pub fn assert_no_more_changes(rx: &mut mpsc::UnboundedReceiver<StatusChange>) {
    if let Ok(extra) = rx.try_recv() {
        panic!("an unexpected (or repeated) status change: {extra:?}");
    }
}
