//! The file-descriptor limit: the real binary, started under a low soft limit, raises it
//! to what its listeners' `max_connections` and its own files need (never past the hard
//! limit), and under a hard limit too low for that it says so and still serves.

use support::process::Circuitd;
use support::*;

/// The soft and hard "Max open files" of process `pid`, from /proc/PID/limits.
fn open_files_limit(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read /proc/PID/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let mut numbers = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .map(|n| n.parse::<u64>().expect("a number"));
    (numbers.next().expect("soft"), numbers.next().expect("hard"))
}

/// Starts the binary with `extra` under the limits `soft` and `hard`, and once it serves
/// (it answered an RPC), reads its limits; then stops it. Its limits, and its stderr.
async fn limits_once_serving(test: &str, extra: &[&str], soft: u64, hard: u64) -> ((u64, u64), String) {
    let dir = TempDir::new(test);
    let daemon = Circuitd::launch_with_nofile(dir.path(), extra, soft, hard)
        .await
        .serving();
    let limits = open_files_limit(daemon.pid());
    let exit = daemon.terminate().await;
    exit.assert_no_panic();
    (limits, exit.stderr)
}

#[tokio::test]
async fn a_low_soft_limit_is_raised_to_what_max_connections_needs() {
    let (limits, stderr) =
        limits_once_serving("descriptors-raised", &["--max-connections", "1000"], 300, 2000).await;
    // One listener of 1,000 connections, and the 256 the daemon keeps for its own files.
    assert_eq!(limits, (1256, 2000));
    assert!(
        stderr.contains("raised the file descriptor limit from 300 to 1256"),
        "{stderr}"
    );
}

#[tokio::test]
async fn each_listener_counts_and_the_hard_limit_caps_the_raise() {
    // Data, admin and HTTP listeners of 1,000 each want 3,256; the hard limit is 2,000.
    let extra = [
        "--max-connections",
        "1000",
        "--admin-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ];
    let (limits, stderr) = limits_once_serving("descriptors-short", &extra, 300, 2000).await;
    assert_eq!(limits, (2000, 2000));
    assert!(
        stderr.contains("the file descriptor limit is 2000, below the 3256 that 3 listener(s)"),
        "{stderr}"
    );
    assert!(stderr.contains("lower max_connections"), "{stderr}");
}

#[tokio::test]
async fn a_limit_already_high_enough_is_left_alone() {
    let (limits, stderr) =
        limits_once_serving("descriptors-enough", &["--max-connections", "100"], 1500, 2000).await;
    assert_eq!(limits, (1500, 2000));
    assert!(!stderr.contains("file descriptor limit"), "{stderr}");
}
