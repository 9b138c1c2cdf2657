//! A cluster of real `circuitd` replicas on one etcd: N child processes started with
//! `--etcd URLS --etcd-prefix PREFIX --listen 127.0.0.1:0` (and the test's own flags),
//! each a [`Circuitd`] of [`crate::process`].
//!
//! A test kills (SIGKILL), freezes (SIGSTOP), thaws (SIGCONT) and restarts one replica,
//! and learns roles through the GetCluster RPC, which every replica answers itself:
//! [`Replicas::leader`] waits until the live replicas agree on one leader.
//!
//! A replica advertises its bound address (no `--advertise`), so the harness maps an
//! advertised address back to the replica's index. [`Replicas::restart`] brings a replica
//! back on the address it had: until the killed run's registration expires with its
//! lease, circuitd refuses a second replica advertising that address ("already
//! advertised"), so the restart tries again until [`DEADLINE`](crate::DEADLINE), the way an operator's
//! supervisor would.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use resilient_circuit_api::v1;
use resilient_circuit_api::v1::ReplicaRole;

use crate::etcd::Etcd;
use crate::fixtures::{AdminClient, ProtectorClient, eventually};
use crate::process::{Circuitd, Exit, Launch};

/// How long one GetCluster may take while the harness polls roles.
const ROLE_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// An etcd key prefix no other test (or earlier run on the same etcd) uses:
/// `/resilient-circuit-test-LABEL-PID-N/`.
pub fn unique_prefix(label: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "/resilient-circuit-test-{label}-{}-{}/",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[derive(Debug)]
struct Replica {
    /// None once killed or terminated.
    process: Option<Circuitd>,
    /// Where it listened last; a restart listens there again.
    addr: SocketAddr,
    /// Stopped by SIGSTOP: skipped by role polls.
    frozen: bool,
}

/// N `circuitd` replicas of one cluster (see the module docs).
#[derive(Debug)]
pub struct Replicas {
    etcd_urls: String,
    prefix: String,
    extra: Vec<String>,
    replicas: Vec<Replica>,
}

impl Replicas {
    /// Starts `n` replicas on `etcd` under a fresh [`unique_prefix`], each with `extra`
    /// flags, and waits until each answers GetCluster (not for a leader: see
    /// [`Replicas::leader`]). Fails the test if one refuses to start.
    pub async fn start(etcd: &Etcd, n: usize, extra: &[&str]) -> Replicas {
        Replicas::start_on(&etcd.urls_arg(), &unique_prefix("cluster"), n, extra).await
    }

    /// Starts `n` replicas on the etcd at `etcd_urls` (comma-separated) under `prefix`.
    pub async fn start_on(etcd_urls: &str, prefix: &str, n: usize, extra: &[&str]) -> Replicas {
        let mut replicas = Replicas {
            etcd_urls: etcd_urls.to_owned(),
            prefix: prefix.to_owned(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            replicas: Vec::with_capacity(n),
        };
        for _ in 0..n {
            replicas.add().await;
        }
        replicas
    }

    /// The flags replica runs get: etcd, prefix, where to listen, the test's extras.
    fn args(&self, listen: &str) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--etcd".into(),
            self.etcd_urls.clone().into(),
            "--etcd-prefix".into(),
            self.prefix.clone().into(),
            "--listen".into(),
            listen.into(),
        ];
        args.extend(self.extra.iter().map(OsString::from));
        args
    }

    /// Starts one more replica on a new port; returns its index.
    pub async fn add(&mut self) -> usize {
        let process = Circuitd::launch_args(&self.args("127.0.0.1:0")).await.serving();
        self.replicas.push(Replica {
            addr: process.addr,
            process: Some(process),
            frozen: false,
        });
        self.replicas.len() - 1
    }

    /// The etcd key prefix of this cluster.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How many replicas were started (running or not).
    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    /// Whether none was started.
    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    /// Replica `i`'s process; fails the test if it is not running.
    #[track_caller]
    pub fn replica(&self, i: usize) -> &Circuitd {
        self.replicas[i]
            .process
            .as_ref()
            .unwrap_or_else(|| panic!("replica {i} is not running"))
    }

    /// Whether replica `i` runs (frozen or not).
    pub fn is_running(&self, i: usize) -> bool {
        self.replicas[i].process.is_some()
    }

    /// Where replica `i` listens (or listened last): its advertised address.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.replicas[i].addr
    }

    /// Every replica's address, by index.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.replicas.iter().map(|r| r.addr).collect()
    }

    /// Every replica's URI (`http://127.0.0.1:PORT`), by index: what a client given
    /// several addresses takes.
    pub fn uris(&self) -> Vec<String> {
        self.replicas
            .iter()
            .map(|r| format!("http://{}", r.addr))
            .collect()
    }

    /// The replica advertising `advertise`, if it is one of these.
    pub fn index_of(&self, advertise: &str) -> Option<usize> {
        self.replicas.iter().position(|r| r.addr.to_string() == advertise)
    }

    /// What replica `i` wrote to stderr in its current run (empty if not running).
    pub fn stderr(&self, i: usize) -> String {
        self.replicas[i]
            .process
            .as_ref()
            .map(Circuitd::stderr)
            .unwrap_or_default()
    }

    /// A data-plane client of replica `i` on a new connection.
    pub async fn protectors(&self, i: usize) -> ProtectorClient {
        self.replica(i).protectors().await
    }

    /// A control-plane client of replica `i` on a new connection.
    pub async fn admin(&self, i: usize) -> AdminClient {
        self.replica(i).admin().await
    }

    /// Replica `i`'s answer to GetCluster.
    pub async fn cluster(&self, i: usize) -> Result<v1::GetClusterResponse, tonic::Status> {
        let mut admin = self.admin(i).await;
        admin
            .get_cluster(v1::GetClusterRequest {})
            .await
            .map(tonic::Response::into_inner)
    }

    /// Replica `i`'s own role as it reports it, or None if it does not answer within a
    /// second (or is not running, or is frozen).
    pub async fn role(&self, i: usize) -> Option<ReplicaRole> {
        let replica = &self.replicas[i];
        let process = replica.process.as_ref().filter(|_| !replica.frozen)?;
        let probe = async {
            let channel = process.channel().await.ok()?;
            AdminClient::new(channel)
                .get_cluster(v1::GetClusterRequest {})
                .await
                .ok()
                .map(tonic::Response::into_inner)
        };
        let answer = tokio::time::timeout(ROLE_PROBE_TIMEOUT, probe)
            .await
            .ok()
            .flatten()?;
        own_entry(&answer, replica.addr).map(|r| r.role())
    }

    /// Every replica's own role (None: down, frozen or silent), by index, polled at once.
    pub async fn roles(&self) -> Vec<Option<ReplicaRole>> {
        futures_util::future::join_all((0..self.len()).map(|i| self.role(i))).await
    }

    /// Waits until one running replica reports itself LEADER and every other running,
    /// unfrozen one reports itself FOLLOWER; returns the leader's index. Fails the test
    /// after [`DEADLINE`](crate::DEADLINE) with the roles last seen.
    pub async fn leader(&self) -> usize {
        self.wait_for(agreed_leader).await
    }

    /// Like [`Replicas::leader`], but the leader must not be `old` (after `old` was
    /// killed, frozen or deposed).
    pub async fn new_leader(&self, old: usize) -> usize {
        self.wait_for(|roles| agreed_leader(roles).filter(|&i| i != old))
            .await
    }

    /// Waits until replica `i` reports `role`.
    pub async fn wait_for_role(&self, i: usize, role: ReplicaRole) {
        self.wait_for(|roles| (roles[i] == Some(role)).then_some(()))
            .await;
    }

    /// Polls [`Replicas::roles`] until `done` returns a value, and returns it; fails
    /// the test after [`DEADLINE`](crate::DEADLINE) with the roles last seen.
    pub async fn wait_for<T>(&self, mut done: impl FnMut(&[Option<ReplicaRole>]) -> Option<T>) -> T {
        eventually(
            async || {
                let roles = self.roles().await;
                done(&roles).ok_or(roles)
            },
            |roles| {
                format!(
                    "the replicas' roles, last seen {roles:?}, are not the awaited ones\n{}",
                    self.stderrs()
                )
            },
        )
        .await
    }

    /// Every running replica's stderr, for a failure message.
    pub fn stderrs(&self) -> String {
        (0..self.len())
            .filter(|&i| self.is_running(i))
            .map(|i| format!("--- replica {i} ({}) ---\n{}", self.addr(i), self.stderr(i)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until replica `i`'s stderr contains `needle` (e.g. "role: leader").
    pub async fn wait_for_log(&self, i: usize, needle: &str) {
        eventually(
            async || {
                let stderr = self.stderr(i);
                if stderr.contains(needle) {
                    Ok(())
                } else {
                    Err(stderr)
                }
            },
            |stderr| format!("replica {i} did not log {needle:?}:\n{stderr}"),
        )
        .await;
    }

    fn take(&mut self, i: usize) -> Circuitd {
        self.replicas[i].frozen = false;
        self.replicas[i]
            .process
            .take()
            .unwrap_or_else(|| panic!("replica {i} is not running"))
    }

    /// SIGKILL to replica `i`; returns how it ended.
    pub async fn kill(&mut self, i: usize) -> Exit {
        self.take(i).kill().await
    }

    /// SIGTERM to replica `i`; fails the test unless it stops cleanly.
    pub async fn terminate(&mut self, i: usize) -> Exit {
        self.take(i).terminate().await
    }

    /// SIGSTOP to replica `i`: it keeps its sockets but answers nothing, and its etcd
    /// lease runs out.
    pub fn freeze(&mut self, i: usize) {
        self.replica(i).freeze();
        self.replicas[i].frozen = true;
    }

    /// SIGCONT to replica `i` after [`Replicas::freeze`].
    pub fn thaw(&mut self, i: usize) {
        self.replica(i).thaw();
        self.replicas[i].frozen = false;
    }

    /// Kills replica `i` if it runs, then starts it again on its address with the same
    /// flags, and waits until it answers GetCluster; retries while circuitd refuses
    /// because the killed run still holds the address in etcd (see the module docs).
    pub async fn restart(&mut self, i: usize) {
        if self.is_running(i) {
            self.kill(i).await;
        }
        let args = self.args(&self.replicas[i].addr.to_string());
        let addr = self.replicas[i].addr;
        let process = eventually(
            async || match Circuitd::launch_args(&args).await {
                Launch::Serving(process) => Ok(process),
                Launch::Refused(exit) => {
                    let transient = exit.stderr.contains("already advertised")
                        || exit.stderr.to_lowercase().contains("address already in use")
                        || exit.stderr.contains("Address in use");
                    assert!(
                        transient,
                        "replica {i} did not restart on {addr} ({}):\n{}",
                        exit.status, exit.stderr
                    );
                    Err(exit)
                }
            },
            |exit| {
                format!(
                    "replica {i} did not restart on {addr} ({}):\n{}",
                    exit.status, exit.stderr
                )
            },
        )
        .await;
        self.replicas[i].process = Some(*process);
    }
}

/// The replica that answers: its own entry in its GetCluster answer (by `answered_by`,
/// which names an id or an address, else by its address).
pub fn own_entry(answer: &v1::GetClusterResponse, addr: SocketAddr) -> Option<&v1::Replica> {
    let me = addr.to_string();
    answer
        .replicas
        .iter()
        .find(|r| {
            !answer.answered_by.is_empty()
                && (r.id == answer.answered_by || r.advertise == answer.answered_by)
        })
        .or_else(|| answer.replicas.iter().find(|r| r.advertise == me))
}

/// The one replica reporting LEADER while every other that answers reports FOLLOWER.
fn agreed_leader(roles: &[Option<ReplicaRole>]) -> Option<usize> {
    let mut leader = None;
    for (i, role) in roles.iter().enumerate() {
        match role {
            None | Some(ReplicaRole::Follower) => {}
            Some(ReplicaRole::Leader) if leader.is_none() => leader = Some(i),
            Some(_) => return None,
        }
    }
    leader
}
