//! What every part of the harness and every test shares: the deadline, the raw client
//! types, the real binary, and temporary directories.

use std::time::Duration;

use resilient_circuit_api::v1::admin_service_client::AdminServiceClient;
use resilient_circuit_api::v1::protector_service_client::ProtectorServiceClient;
use tonic::transport::Channel;

/// How long a test waits for something it expects before it fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How often [`eventually`] asks again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Asks `probe` until it answers `Ok`, every [`POLL_INTERVAL`] for at most [`DEADLINE`],
/// and returns the answer: for what a test cannot be told about, only observe (another
/// process's role, an etcd member's readiness). Fails the test with `failure` made of
/// the last `Err`.
pub async fn eventually<T, E>(
    mut probe: impl AsyncFnMut() -> Result<T, E>,
    failure: impl FnOnce(E) -> String,
) -> T {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        match probe().await {
            Ok(found) => return found,
            Err(last) if tokio::time::Instant::now() >= until => {
                panic!("not within {DEADLINE:?}: {}", failure(last))
            }
            Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

/// A raw data-plane client.
pub type ProtectorClient = ProtectorServiceClient<Channel>;

/// A raw control-plane client.
pub type AdminClient = AdminServiceClient<Channel>;

/// The real `circuitd` binary: `$CIRCUITD_BIN` when set (`./run-tests` builds the binary
/// once with the test build's features and hands it to every suite this way), else the
/// binary of this checkout, built (or found up to date) by cargo first, so a
/// process-level test never runs a stale build. That one sits beside this test's own
/// executable (`<target>/<profile>/deps/<test>`).
///
/// Why `./run-tests` hands it over: cargo resolves features for `cargo build -p circuitd`
/// without the workspace's dev-dependencies, so building it here inside a
/// `cargo test --workspace` compiles much of its dependency tree a second time.
pub fn circuitd_binary() -> std::path::PathBuf {
    if let Some(given) = std::env::var_os("CIRCUITD_BIN").filter(|p| !p.is_empty()) {
        let binary = std::path::PathBuf::from(given);
        assert!(binary.exists(), "CIRCUITD_BIN: no binary at {}", binary.display());
        return binary;
    }
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from <target>/<profile>/deps");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build
        // With replicated mode, as this package depends on it, so the cluster tests
        // can pass `--etcd`.
        .args([
            "build",
            "--quiet",
            "-p",
            "circuitd",
            "--features",
            "etcd",
            "--bin",
            "circuitd",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build");
    assert!(
        status.success(),
        "cargo build -p circuitd --features etcd failed: {status}"
    );
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
