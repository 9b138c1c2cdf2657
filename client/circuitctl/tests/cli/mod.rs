//! What circuitctl's test files share besides the daemon harness (`support`): the
//! command pointed at a daemon, running it with an expected exit code, and reading a row
//! of a field/value table.
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

/// The value of the `key` row of a field/value table.
#[track_caller]
#[allow(dead_code)] // Not every test file reads tables.
pub fn field<'a>(table: &'a str, key: &str) -> &'a str {
    table
        .lines()
        .find_map(|line| {
            let (k, v) = line.split_once("  ")?;
            (k == key).then(|| v.trim())
        })
        .unwrap_or_else(|| panic!("no {key:?} row in\n{table}"))
}
