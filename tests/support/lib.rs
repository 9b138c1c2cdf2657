//! The end-to-end harness: a real `circuitd` on `127.0.0.1:0` and real gRPC clients.
//!
//! The package `resilient-circuit-tests` exposes it as the library `support`; each test
//! file uses what it needs.
//!
//! Layout: this file the in-process daemon and the request helpers, [`process`] the real
//! binary as a child process.

pub mod process;

use std::net::SocketAddr;
use std::time::Duration;

use circuitd::{Config, ServeError};
use resilient_circuit_api::v1;
use resilient_circuit_api::v1::admin_service_client::AdminServiceClient;
use resilient_circuit_api::v1::protector_service_client::ProtectorServiceClient;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// How long a test waits for something it expects before it fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A daemon running in this process on an ephemeral loopback port.
#[derive(Debug)]
pub struct Daemon {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl Daemon {
    /// Starts a daemon on the default configuration.
    pub async fn start() -> Daemon {
        Daemon::with_config(Config::default()).await
    }

    /// Starts a daemon on `config` (its `listen` is ignored: the port is ephemeral).
    pub async fn with_config(config: Config) -> Daemon {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(circuitd::serve(listener, config, async move {
            let _ = stopped.await;
        }));
        Daemon {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
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
            .expect("connect to the daemon")
    }

    /// A data-plane client on a new connection.
    pub async fn protectors(&self) -> ProtectorServiceClient<Channel> {
        ProtectorServiceClient::new(self.channel().await)
    }

    /// A control-plane client on a new connection.
    pub async fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel().await)
    }

    /// Asks the daemon to shut down and waits for `serve` to return.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("running");
        task.await.expect("serve task")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A policy message: cooldown, failure limit n/d, optional success limit.
pub fn policy(cooldown: Duration, failure: (u32, u32), success: Option<(u32, u32)>) -> v1::Policy {
    v1::Policy {
        cooldown: Some(duration(cooldown)),
        failure_limit: Some(v1::Fraction {
            numerator: failure.0,
            denominator: failure.1,
        }),
        success_limit: success.map(|(numerator, denominator)| v1::Fraction {
            numerator,
            denominator,
        }),
        ..Default::default()
    }
}

/// A protobuf duration.
pub fn duration(d: Duration) -> prost_types::Duration {
    resilient_circuit_api::convert::duration(d)
}

/// Creates `name` with `policy`, asserting it was created.
pub async fn ensure(
    client: &mut ProtectorServiceClient<Channel>,
    name: &str,
    policy: v1::Policy,
) -> v1::Protector {
    let resp = client
        .ensure_protector(v1::EnsureProtectorRequest {
            name: name.into(),
            policy: Some(policy),
        })
        .await
        .expect("EnsureProtector")
        .into_inner();
    assert!(resp.created, "{name} already existed");
    resp.protector.expect("protector")
}

/// Acquires on `name`, expecting OK.
pub async fn acquire(client: &mut ProtectorServiceClient<Channel>, name: &str) -> v1::AcquireResponse {
    client
        .acquire(v1::AcquireRequest { name: name.into() })
        .await
        .expect("Acquire")
        .into_inner()
}

/// Reports `outcome` for `permit` on `name`, expecting OK.
pub async fn report(
    client: &mut ProtectorServiceClient<Channel>,
    name: &str,
    permit: v1::Permit,
    outcome: v1::Outcome,
) -> v1::ReportResponse {
    client
        .report(v1::ReportRequest {
            name: name.into(),
            permit: Some(permit),
            outcome: outcome as i32,
        })
        .await
        .expect("Report")
        .into_inner()
}

/// Acquires and reports `outcome` in one go; panics if the acquire was rejected.
pub async fn call(
    client: &mut ProtectorServiceClient<Channel>,
    name: &str,
    outcome: v1::Outcome,
) -> v1::ReportResponse {
    let a = acquire(client, name).await;
    assert_eq!(
        a.decision,
        v1::Decision::Admitted as i32,
        "acquire on {name} rejected: {a:?}"
    );
    report(client, name, a.permit.expect("permit"), outcome).await
}

/// A Watch stream and helpers to read it with a deadline.
#[derive(Debug)]
pub struct Watcher {
    stream: tonic::Streaming<v1::WatchEvent>,
}

impl Watcher {
    /// Opens a Watch with `request`.
    pub async fn open(client: &mut ProtectorServiceClient<Channel>, request: v1::WatchRequest) -> Watcher {
        let stream = client.watch(request).await.expect("Watch").into_inner();
        Watcher { stream }
    }

    /// The next event, failing the test after [`DEADLINE`].
    pub async fn next(&mut self) -> v1::WatchEvent {
        match tokio::time::timeout(DEADLINE, self.stream.message()).await {
            Ok(Ok(Some(event))) => event,
            Ok(Ok(None)) => panic!("watch stream ended"),
            Ok(Err(status)) => panic!("watch stream failed: {status:?}"),
            Err(_) => panic!("no watch event within {DEADLINE:?}"),
        }
    }

    /// The next item as the transport gives it: an event, the end, or an error status.
    pub async fn next_raw(&mut self) -> Result<Option<v1::WatchEvent>, tonic::Status> {
        tokio::time::timeout(DEADLINE, self.stream.message())
            .await
            .unwrap_or_else(|_| panic!("nothing on the watch stream within {DEADLINE:?}"))
    }

    /// Skips snapshots; returns the SYNCED event (or whatever else came first).
    pub async fn next_until_synced(&mut self) -> Option<v1::watch_event::Event> {
        loop {
            match self.next().await.event {
                Some(v1::watch_event::Event::Snapshot(_)) => continue,
                other => return other,
            }
        }
    }

    /// Reads the initial snapshot up to SYNCED; returns the snapshots and SYNCED's revision.
    pub async fn snapshot(&mut self) -> (Vec<v1::Protector>, u64) {
        let mut protectors = Vec::new();
        loop {
            let event = self.next().await;
            match event.event.expect("event") {
                v1::watch_event::Event::Snapshot(p) => protectors.push(p),
                v1::watch_event::Event::Synced(_) => return (protectors, event.revision),
                other => panic!("expected snapshot or SYNCED, got {other:?}"),
            }
        }
    }
}

/// A Watch request for every protector.
pub fn watch_all() -> v1::WatchRequest {
    v1::WatchRequest {
        filter: Some(v1::watch_request::Filter::All(true)),
        ..Default::default()
    }
}

/// The real `circuitd` binary of this checkout, built (or found up to date) by cargo
/// first, so a process-level test never runs a stale build. It sits beside this test's
/// own executable (`<target>/<profile>/deps/<test>`).
pub fn circuitd_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from <target>/<profile>/deps");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build
        .args(["build", "--quiet", "-p", "circuitd", "--bin", "circuitd"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "cargo build -p circuitd failed: {status}");
    let binary = profile_dir.join(format!("circuitd{}", std::env::consts::EXE_SUFFIX));
    assert!(binary.exists(), "no binary at {}", binary.display());
    binary
}

/// A new, empty directory under the system's temporary directory, unique to this call;
/// removed when the returned guard drops.
#[derive(Debug)]
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// Creates it; `label` makes it recognisable.
    pub fn new(label: &str) -> TempDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let unique = format!(
            "resilient-circuit-{label}-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let path = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
