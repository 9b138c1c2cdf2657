//! What circuitctl's test files share besides the daemon harness (`support`): the
//! command pointed at a daemon, and running it with an expected exit code.
//!
//! Every test file declares `mod cli;`.

use std::time::Duration;

use assert_cmd::Command;

/// `circuitctl --addr <uri>`, with `CIRCUIT_ADDR` and `CIRCUIT_TOKEN` removed from its environment, killed
/// (failing the test) after `deadline`.
#[track_caller]
pub fn circuitctl(uri: &str, deadline: Duration) -> Command {
    let mut cmd = Command::cargo_bin("circuitctl").expect("circuitctl is built");
    cmd.env_remove("CIRCUIT_ADDR")
        .env_remove("CIRCUIT_TOKEN")
        .arg("--addr")
        .arg(uri)
        .timeout(deadline);
    cmd
}

/// Runs `cmd`, asserts its exit code, and returns (stdout, stderr).
#[track_caller]
pub fn run(cmd: &mut Command, code: i32) -> (String, String) {
    let out = cmd.output().expect("run circuitctl");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let stderr = String::from_utf8(out.stderr).expect("utf-8 stderr");
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit status\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}
