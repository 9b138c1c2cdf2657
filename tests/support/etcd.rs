//! A real etcd for the replicated-mode tests: Debian's `/usr/bin/etcd` (or `$ETCD_BIN`)
//! as child processes on free loopback ports, one member ([`Etcd::single`]) or three
//! ([`Etcd::three`], also spelled [`EtcdCluster::three`]), each with its own client
//! port, peer port and temporary data directory.
//!
//! Readiness is an event, not a sleep: a start (or restart) returns once every running
//! member answers a linearizable read, which etcd serves only with a leader and a quorum.
//! A test can then kill (SIGKILL), freeze (SIGSTOP), thaw (SIGCONT) and restart one
//! member (same name, ports and data directory, so it rejoins as itself), or kill them
//! all. Every member still running is killed by pid when the value drops.
//!
//! etcd keeps its default timing (100 ms heartbeat, 1 s election timeout). Measured
//! here, eight kills of the etcd leader each: a put (retried every 0.5 s) succeeded
//! 1.11 to 1.67 s after the kill with the defaults (median 1.4 s), 0.96 to 1.35 s
//! with a 50 ms heartbeat and 0.5 s election timeout (median 1.1 s). A third of a
//! second is not worth spurious elections on a loaded two-core machine, where the
//! tests compile and run beside etcd and a heartbeat can be late by more than that.
//! A request sent right after the leader died is lost with it: see [`REQUEST_TIMEOUT`]
//! (and circuitd must bound its own etcd requests the same way).
//!
//! Ports are taken free from the kernel and released just before etcd binds them;
//! should another process take one in between, the member exits with "address already
//! in use" and the whole start is retried on new ports.

use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use crate::fixtures::{TempDir, eventually};

mod kv;
pub use kv::REQUEST_TIMEOUT;

/// etcd, one member or several (an alias, so both spellings read naturally).
pub type EtcdCluster = Etcd;

/// How many times a start is retried when a port was taken between finding and binding.
const START_ATTEMPTS: usize = 3;

/// How long one readiness probe may take before the next is sent.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The etcd binary: `$ETCD_BIN` when set, else Debian's `/usr/bin/etcd`, else `etcd` on
/// `PATH`. Fails the test with an install hint when there is none: a test that needs
/// etcd never skips.
pub fn etcd_binary() -> PathBuf {
    if let Some(given) = std::env::var_os("ETCD_BIN").filter(|p| !p.is_empty()) {
        let binary = PathBuf::from(given);
        assert!(
            binary.is_file(),
            "etcd not found: install Debian's etcd-server (apt-get install etcd-server) or set ETCD_BIN \
             (ETCD_BIN={} is no file)",
            binary.display()
        );
        return binary;
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("etcd"));
    std::iter::once(PathBuf::from("/usr/bin/etcd"))
        .chain(on_path)
        .find(|candidate| candidate.is_file())
        .expect("etcd not found: install Debian's etcd-server (apt-get install etcd-server) or set ETCD_BIN")
}

/// One etcd member: its identity, ports and data stay the same across restarts.
#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// Running (possibly frozen by SIGSTOP), or None once killed.
    child: Option<Child>,
    /// Frozen by SIGSTOP: not probed for readiness, not given to clients.
    frozen: bool,
}

impl Member {
    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL ends a frozen process too.
            let _ = child.kill();
            let _ = child.wait();
        }
        self.frozen = false;
    }
}

/// A running etcd of one or more members (see the module docs).
#[derive(Debug)]
pub struct Etcd {
    members: Vec<Member>,
    /// `--initial-cluster`: every member's name and peer URL.
    initial_cluster: String,
    /// Unique per start, so members of two tests' clusters can never join each other.
    token: String,
    /// Holds a `<name>.etcd` data directory and a `<name>.log` per member.
    dir: TempDir,
}

impl Etcd {
    /// One member, ready to serve.
    pub async fn single() -> Etcd {
        Etcd::start(1).await
    }

    /// Three members in one cluster, ready to serve (one may fail and it still serves).
    pub async fn three() -> Etcd {
        Etcd::start(3).await
    }

    /// `members` members in one cluster, ready to serve.
    pub async fn start(members: usize) -> Etcd {
        assert!(members > 0, "an etcd cluster needs a member");
        let binary = etcd_binary();
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut etcd = Etcd::configure(members);
            for i in 0..members {
                etcd.spawn(&binary, i);
            }
            match etcd.wait_ready().await {
                Ok(()) => return etcd,
                Err(failure) if failure.contains("address already in use") => last_failure = failure,
                Err(failure) => panic!("{failure}"),
            }
        }
        panic!("etcd could not bind free ports in {START_ATTEMPTS} attempts:\n{last_failure}")
    }

    /// Names, free ports and a directory for `members` members; nothing started yet.
    fn configure(members: usize) -> Etcd {
        let ports = free_ports(2 * members);
        let members: Vec<Member> = (0..members)
            .map(|i| Member {
                name: format!("member{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                child: None,
                frozen: false,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let dir = TempDir::new("etcd");
        let token = dir.path().file_name().map_or_else(
            || "resilient-circuit".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        Etcd {
            members,
            initial_cluster,
            token,
            dir,
        }
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.log", self.members[i].name))
    }

    /// Starts member `i` (its data directory, once it exists, makes it rejoin as itself:
    /// etcd then ignores the `--initial-*` flags).
    fn spawn(&mut self, binary: &Path, i: usize) {
        let log: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("open the etcd member's log");
        let member = &self.members[i];
        let data_dir = self.dir.path().join(format!("{}.etcd", member.name));
        let mut command = Command::new(binary);
        // etcd reads its settings from ETCD_* variables too; the test's own environment
        // must not change what it runs with.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD_") {
                command.env_remove(key);
            }
        }
        let child = command
            .arg("--name")
            .arg(&member.name)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--listen-client-urls")
            .arg(member.client_url())
            .arg("--advertise-client-urls")
            .arg(member.client_url())
            .arg("--listen-peer-urls")
            .arg(member.peer_url())
            .arg("--initial-advertise-peer-urls")
            .arg(member.peer_url())
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--logger")
            .arg("zap")
            .arg("--log-outputs")
            .arg("stderr")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let member = &mut self.members[i];
        member.child = Some(child);
        member.frozen = false;
    }

    /// Waits until every running, unfrozen member serves a linearizable read (each
    /// within [`DEADLINE`](crate::DEADLINE), else the test fails); a member that exits
    /// first is an `Err` with its status and the members' logs.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let log_files = self.log_files();
        for member in &mut self.members {
            if member.frozen {
                continue;
            }
            let url = member.client_url();
            let name = member.name.clone();
            let Some(child) = member.child.as_mut() else {
                continue;
            };
            let exited = eventually(
                async || match child.try_wait().expect("poll the etcd member") {
                    Some(status) => Ok(Some(status)),
                    None if serves(&url).await => Ok(None),
                    None => Err(()),
                },
                |()| format!("etcd {name} did not serve:\n{}", read_logs(&log_files)),
            )
            .await;
            if let Some(status) = exited {
                member.child = None;
                return Err(format!(
                    "etcd {name} exited before it served ({status}):\n{}",
                    read_logs(&log_files)
                ));
            }
        }
        Ok(())
    }

    /// Each member's name and log file.
    fn log_files(&self) -> Vec<(String, PathBuf)> {
        (0..self.members.len())
            .map(|i| (self.members[i].name.clone(), self.log_path(i)))
            .collect()
    }

    /// The tail of every member's log, for a failure message.
    pub fn logs(&self) -> String {
        read_logs(&self.log_files())
    }

    /// How many members the cluster has (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Never: an etcd has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every member's client URL (`http://127.0.0.1:PORT`), running or not.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].client_url()
    }

    /// The client URLs as circuitd's `--etcd` takes them: `http://127.0.0.1:P1,...`.
    pub fn urls_arg(&self) -> String {
        self.endpoints().join(",")
    }

    /// The client URLs of the members running and not frozen.
    pub fn live_endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.child.is_some() && !m.frozen)
            .map(Member::client_url)
            .collect()
    }

    /// Member `i`'s process id, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// SIGKILL to member `i`, and waits for it to die.
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// SIGKILL to every member.
    pub fn kill_all(&mut self) {
        for member in &mut self.members {
            member.kill();
        }
    }

    /// SIGSTOP to member `i`: it stays alive but neither answers nor votes.
    pub fn freeze(&mut self, i: usize) {
        self.signal(i, "-STOP");
        self.members[i].frozen = true;
    }

    /// SIGCONT to member `i` after [`Etcd::freeze`].
    pub fn thaw(&mut self, i: usize) {
        self.signal(i, "-CONT");
        self.members[i].frozen = false;
    }

    fn signal(&self, i: usize, signal: &str) {
        let pid = self
            .pid(i)
            .unwrap_or_else(|| panic!("etcd member {i} is not running"));
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed: {status}");
    }

    /// Kills member `i` if it runs, starts it again on its ports and data, and waits
    /// until it serves (which needs a quorum: with most members down, use
    /// [`Etcd::restart_all`]).
    pub async fn restart(&mut self, i: usize) {
        self.members[i].kill();
        self.spawn(&etcd_binary(), i);
        if let Err(failure) = self.wait_ready().await {
            panic!("{failure}");
        }
    }

    /// Starts every member that is not running, and waits until all serve.
    pub async fn restart_all(&mut self) {
        let binary = etcd_binary();
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.spawn(&binary, i);
            }
        }
        if let Err(failure) = self.wait_ready().await {
            panic!("{failure}");
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill_all();
    }
}

fn options(timeout: Duration) -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_timeout(timeout)
}

/// The last lines of each log file, under its member's name.
fn read_logs(files: &[(String, PathBuf)]) -> String {
    files
        .iter()
        .map(|(name, path)| {
            let log = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            format!("--- {name} ---\n{tail}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether the member at `url` answers a linearizable read: it has joined and its
/// cluster has a leader and a quorum.
async fn serves(url: &str) -> bool {
    let probe = async {
        let mut client = Client::connect([url], Some(options(PROBE_TIMEOUT))).await.ok()?;
        client.get("/resilient-circuit-tests/ready", None).await.ok()
    };
    tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .ok()
        .flatten()
        .is_some()
}

/// `n` distinct ports free on 127.0.0.1 at the time of the call.
fn free_ports(n: usize) -> Vec<u16> {
    // Held together so the kernel hands out n distinct ports.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}
