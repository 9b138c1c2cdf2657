//! The real `circuitd` binary as a child process: start it on a data directory (or, as a
//! replica, with flags of the caller's alone), learn its address from the
//! `listening on ADDR` line, stop it with SIGTERM, kill it with SIGKILL, freeze and thaw
//! it with SIGSTOP and SIGCONT, make it reload with SIGHUP, and read what it wrote to
//! stderr.
//!
//! The binary prints its address once bound, which is before it recovers its store, so
//! the line alone does not prove it serves: [`Circuitd::launch`] also waits for one
//! answered RPC, and a binary that refuses to start (and exits) is reported as
//! [`Launch::Refused`] with its exit status and stderr.

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use resilient_circuit_api::v1;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::fixtures::{AdminClient, ProtectorClient, circuitd_binary};

/// How long a launch, a stop or a single RPC may take before the test fails.
pub const PROCESS_DEADLINE: Duration = Duration::from_secs(10);

/// The binary, built once per test executable (every test of a file shares it).
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(circuitd_binary)
}

/// The RPC whose answer proves a started binary serves.
#[derive(Debug, Clone, Copy)]
enum Probe {
    /// A standalone daemon: answered once its store is recovered.
    ListProtectors,
    /// A replica: answered by every replica itself, whatever its role.
    GetCluster,
    /// None: the `listening on` line, printed once the daemon is prepared, is taken as
    /// proof (a TLS daemon cannot be probed over the harness's plaintext channel).
    Listening,
}

/// The arguments of a daemon on `127.0.0.1:0` and `data_dir`, then `extra`.
fn on_loopback(data_dir: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        data_dir.into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    args
}

/// A running `circuitd` child process.
#[derive(Debug)]
pub struct Circuitd {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where AdminService listens apart, when started with `--admin-listen`.
    pub admin_addr: Option<SocketAddr>,
    /// Where HTTP (`/metrics`, the dashboard) listens, when started with `--http-listen`.
    pub http_addr: Option<SocketAddr>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
}

/// How a process ended.
#[derive(Debug)]
pub struct Exit {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Exit {
    /// The lines it logged on the tracing target `target` (e.g. `circuitd::audit`).
    pub fn logged(&self, target: &str) -> Vec<&str> {
        self.stderr.lines().filter(|l| l.contains(target)).collect()
    }

    /// Fails the test if the process panicked (message or exit code 101).
    #[track_caller]
    pub fn assert_no_panic(&self) {
        assert!(
            !self.stderr.contains("panicked"),
            "circuitd panicked:\n{}",
            self.stderr
        );
        assert_ne!(
            self.status.code(),
            Some(101),
            "circuitd panicked:\n{}",
            self.stderr
        );
    }
}

/// What starting the binary came to.
#[derive(Debug)]
pub enum Launch {
    /// It answered an RPC.
    Serving(Box<Circuitd>),
    /// It exited without serving.
    Refused(Exit),
}

impl Launch {
    /// The running daemon; fails the test if it refused to start.
    #[track_caller]
    pub fn serving(self) -> Circuitd {
        match self {
            Launch::Serving(d) => *d,
            Launch::Refused(exit) => panic!("circuitd refused to start ({}):\n{}", exit.status, exit.stderr),
        }
    }

    /// How it exited; fails the test if it serves.
    #[track_caller]
    pub fn refused(self) -> Exit {
        match self {
            Launch::Refused(exit) => exit,
            Launch::Serving(d) => panic!(
                "circuitd started although it should have refused:\n{}",
                d.stderr()
            ),
        }
    }
}

impl Circuitd {
    /// Starts the binary on `data_dir` with `extra` flags; fails the test if it does
    /// not serve.
    pub async fn start(data_dir: &Path, extra: &[&str]) -> Circuitd {
        Circuitd::launch(data_dir, extra).await.serving()
    }

    /// Starts the binary on `data_dir` (on `127.0.0.1:0`) with `extra` flags and waits
    /// until it serves or exits.
    pub async fn launch(data_dir: &Path, extra: &[&str]) -> Launch {
        Circuitd::spawn(&on_loopback(data_dir, extra), Probe::ListProtectors).await
    }

    /// Starts the binary on `data_dir` (on `127.0.0.1:0`) with `extra` flags and waits
    /// for its `listening on` line (or its exit) only, without probing it over
    /// plaintext: for a daemon serving TLS.
    pub async fn launch_listening(data_dir: &Path, extra: &[&str]) -> Launch {
        Circuitd::spawn(&on_loopback(data_dir, extra), Probe::Listening).await
    }

    /// Starts the binary with exactly `args` and waits for its `listening on` line only
    /// (see [`Circuitd::launch_listening`]): a replica serving TLS.
    pub async fn launch_args_listening<S: AsRef<OsStr>>(args: &[S]) -> Launch {
        let args: Vec<OsString> = args.iter().map(|a| a.as_ref().to_owned()).collect();
        Circuitd::spawn(&args, Probe::Listening).await
    }

    /// Starts the binary with exactly `args` (no `--listen` or `--data-dir` of the
    /// harness: a replica takes `--etcd` instead) and waits until it answers GetCluster
    /// or exits. Every replica answers GetCluster itself whatever its role, so this
    /// proves the process serves, not that it leads or follows yet.
    pub async fn launch_args<S: AsRef<OsStr>>(args: &[S]) -> Launch {
        let args: Vec<OsString> = args.iter().map(|a| a.as_ref().to_owned()).collect();
        Circuitd::spawn(&args, Probe::GetCluster).await
    }

    /// Starts the binary on `data_dir` (on `127.0.0.1:0`) with `extra` flags, under a
    /// file-descriptor limit of `soft` and `hard` (set by `sh`'s `ulimit` before it execs
    /// the binary, which keeps the process id), and waits until it serves or exits.
    pub async fn launch_with_nofile(data_dir: &Path, extra: &[&str], soft: u64, hard: u64) -> Launch {
        let mut args: Vec<OsString> = vec![
            "-c".into(),
            r#"ulimit -S -n "$1" && ulimit -H -n "$2" && shift 2 && exec "$@""#.into(),
            "sh".into(),
            soft.to_string().into(),
            hard.to_string().into(),
            binary().into(),
        ];
        args.extend(on_loopback(data_dir, extra));
        Circuitd::spawn_program(Path::new("sh"), &args, Probe::ListProtectors).await
    }

    async fn spawn(args: &[OsString], probe: Probe) -> Launch {
        Circuitd::spawn_program(binary(), args, probe).await
    }

    async fn spawn_program(program: &Path, args: &[OsString], probe: Probe) -> Launch {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG")
            .kill_on_drop(true);
        // The binary reads its settings from CIRCUITD_* variables too; the test's own
        // environment must not change what it runs with.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CIRCUITD_") {
                command.env_remove(key);
            }
        }
        let mut child = command.spawn().expect("spawn circuitd");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_reader = {
            let mut pipe = child.stderr.take().expect("piped stderr");
            let sink = Arc::clone(&stderr);
            tokio::spawn(async move {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&chunk[..n]);
                }
            })
        };
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = tokio::time::timeout(PROCESS_DEADLINE, lines.next_line())
                .await
                .expect("circuitd printed nothing on stdout in time")
                .expect("read circuitd's stdout");
            match line {
                Some(line) => {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        break Some(addr.trim().parse::<SocketAddr>().expect("a socket address"));
                    }
                }
                None => break None,
            }
        };
        // With --admin-listen and --http-listen, the next lines (written with the first,
        // in that order) name those listeners.
        let mut admin_addr = None;
        let mut http_addr = None;
        for (flag, prefix, found) in [
            ("--admin-listen", "admin listening on ", &mut admin_addr),
            ("--http-listen", "http listening on ", &mut http_addr),
        ] {
            if addr.is_none() || !args.iter().any(|a| a == flag) {
                continue;
            }
            let line = tokio::time::timeout(PROCESS_DEADLINE, lines.next_line())
                .await
                .expect("circuitd printed no second address in time")
                .expect("read circuitd's stdout");
            *found = line
                .as_deref()
                .and_then(|l| l.strip_prefix(prefix))
                .map(|a| a.trim().parse::<SocketAddr>().expect("a socket address"));
        }
        let daemon = Circuitd {
            child,
            admin_addr,
            http_addr,
            addr: addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
            stderr,
            stderr_reader: Some(stderr_reader),
        };
        if addr.is_some() && daemon.answers(probe).await {
            // Later lines (none are expected) must not fill the pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Launch::Serving(Box::new(daemon));
        }
        Launch::Refused(daemon.wait().await)
    }

    /// Whether the probe's RPC is answered (false once the process is gone).
    async fn answers(&self, probe: Probe) -> bool {
        if matches!(probe, Probe::Listening) {
            return true;
        }
        let call = async {
            let channel = self.channel().await.ok()?;
            match probe {
                Probe::ListProtectors => answered(
                    ProtectorClient::new(channel)
                        .list_protectors(v1::ListProtectorsRequest {
                            page_size: 1,
                            ..Default::default()
                        })
                        .await,
                ),
                Probe::GetCluster => answered(
                    AdminClient::new(channel)
                        .get_cluster(v1::GetClusterRequest {})
                        .await,
                ),
                Probe::Listening => Some(()),
            }
        };
        tokio::time::timeout(PROCESS_DEADLINE, call)
            .await
            .expect("circuitd neither answered nor exited in time")
            .is_some()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// The daemon's URI.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A new connection.
    pub async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        Channel::from_shared(self.uri())
            .expect("uri")
            .connect_timeout(PROCESS_DEADLINE)
            .timeout(PROCESS_DEADLINE)
            .connect()
            .await
    }

    /// A data-plane client on a new connection.
    pub async fn protectors(&self) -> ProtectorClient {
        ProtectorClient::new(self.channel().await.expect("connect to circuitd"))
    }

    /// A control-plane client on a new connection.
    pub async fn admin(&self) -> AdminClient {
        AdminClient::new(self.channel().await.expect("connect to circuitd"))
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(signal)
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed: {status}");
    }

    /// SIGHUP: the daemon re-reads its tokens file and its TLS files.
    pub fn hangup(&self) {
        self.signal("-HUP");
    }

    /// SIGSTOP: the process freezes where it is, its sockets open but unanswered.
    pub fn freeze(&self) {
        self.signal("-STOP");
        // kill(2) only queues the stop: wait until every thread has stopped, so that
        // nothing sent after freeze() can be answered before thaw().
        let until = std::time::Instant::now() + crate::DEADLINE;
        while !stopped_all(self.pid()) {
            assert!(
                std::time::Instant::now() < until,
                "circuitd (pid {}) did not stop on SIGSTOP",
                self.pid()
            );
            std::thread::yield_now();
        }
    }

    /// SIGCONT after [`Circuitd::freeze`].
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// SIGKILL: the process dies at once, wherever it was.
    pub async fn kill(self) -> Exit {
        self.signal("-KILL");
        self.wait().await
    }

    /// SIGTERM: a clean shutdown; fails the test unless it exits with success.
    pub async fn terminate(self) -> Exit {
        self.terminate_within(PROCESS_DEADLINE).await
    }

    /// SIGTERM; fails the test unless it exits with success within `limit`.
    pub async fn terminate_within(self, limit: Duration) -> Exit {
        self.signal("-TERM");
        let exit = self.wait_for(limit).await;
        assert!(
            exit.status.success(),
            "circuitd did not stop cleanly ({}):\n{}",
            exit.status,
            exit.stderr
        );
        exit
    }

    /// Waits for the process to exit on its own (within the deadline).
    pub async fn exited(self) -> Exit {
        self.wait().await
    }

    async fn wait(self) -> Exit {
        self.wait_for(PROCESS_DEADLINE).await
    }

    async fn wait_for(mut self, limit: Duration) -> Exit {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("circuitd did not exit within {limit:?}"))
            .expect("wait for circuitd");
        if let Some(reader) = self.stderr_reader.take() {
            let _ = tokio::time::timeout(PROCESS_DEADLINE, reader).await;
        }
        Exit {
            status,
            stderr: self.stderr(),
        }
    }
}

/// Whether a probe's call was answered: with its answer, or refused for want of a token
/// (a daemon started with `--tokens` serves, but not the harness's probe).
fn answered<T>(result: Result<T, tonic::Status>) -> Option<()> {
    match result {
        Ok(_) => Some(()),
        Err(status) if status.code() == tonic::Code::Unauthenticated => Some(()),
        Err(_) => None,
    }
}

/// Copies every file of `from` into `to` (a flat directory, as a data directory is).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the data directory") {
        let entry = entry.expect("a directory entry");
        if entry.file_type().expect("file type").is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy a file");
        }
    }
}

/// The journal segments of `dir`, oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the data directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("journal-") && n.ends_with(".log"))
        })
        .collect();
    found.sort();
    found
}

/// Whether every thread of process `pid` is stopped (state T in /proc/PID/task/TID/stat).
fn stopped_all(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            stat.rfind(')')
                .and_then(|i| stat.get(i + 2..i + 3))
                .is_some_and(|state| state == "T")
        })
    })
}
