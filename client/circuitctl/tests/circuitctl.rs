//! circuitctl against a real circuitd started in this process on an ephemeral port.
//!
//! Each test owns its daemon (on a runtime of its own, so the test body can block on the
//! child process) and checks both the table and the `--json` form of every command, the
//! exit codes, and a live `watch` read line by line with a deadline.

mod cli;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use assert_cmd::Command;
use cli::{circuitctl, field, run};
use serde_json::Value;
use support::BlockingDaemon;

/// How long a test waits for something it expects before it fails.
const DEADLINE: Duration = Duration::from_secs(20);

/// circuitctl pointed at `d`, with a clean environment.
#[track_caller]
fn ctl(d: &BlockingDaemon) -> Command {
    let mut cmd = circuitctl(&d.uri(), DEADLINE);
    cmd.env_remove("NO_COLOR");
    cmd
}

/// Runs `circuitctl --json args..`, expecting exit `code`, and parses its stdout.
#[track_caller]
fn json(d: &BlockingDaemon, args: &[&str], code: i32) -> Value {
    let (stdout, _) = run(ctl(d).arg("--json").args(args), code);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn ensure_get_and_list_print_tables_and_json() {
    let d = BlockingDaemon::start();
    let policy = [
        "--cooldown",
        "30s",
        "--failure-limit",
        "2/5",
        "--success-limit",
        "3/5",
        "--trial-permits",
        "2",
        "--permit-ttl",
        "1m",
        "--auto-half-open",
    ];
    let (out, _) = run(ctl(&d).args(["ensure", "db.payments"]).args(policy), 0);
    assert_eq!(field(&out, "created"), "yes");
    assert_eq!(field(&out, "status"), "CLOSED");
    assert_eq!(field(&out, "cooldown"), "30s");
    assert_eq!(field(&out, "failure limit"), "2/5");
    assert_eq!(field(&out, "success limit"), "3/5");
    assert_eq!(field(&out, "trial permits"), "2");
    assert_eq!(field(&out, "permit ttl"), "1m");
    assert_eq!(field(&out, "auto half-open"), "yes");
    assert!(!out.contains('\x1b'), "colour on a pipe:\n{out}");

    let again = json(&d, &["ensure", "db.payments"], 0);
    assert!(again.get("created").is_none(), "{again}");
    assert!(again.get("policyMatches").is_none(), "{again}");
    let same: Vec<&str> = ["ensure", "db.payments"].into_iter().chain(policy).collect();
    assert_eq!(json(&d, &same, 0)["policyMatches"], true);
    run(ctl(&d).args(["ensure", "db.orders"]), 0);
    run(ctl(&d).args(["ensure", "cache.users"]), 0);

    let (out, _) = run(ctl(&d).args(["get", "db.payments"]), 0);
    assert_eq!(field(&out, "name"), "db.payments");
    assert_eq!(field(&out, "generation"), "1");
    assert_eq!(field(&out, "window"), "0 of 5: 0 successes, 0 failures");
    let got = json(&d, &["get", "db.payments"], 0);
    let p = &got["protector"];
    assert_eq!(p["name"], "db.payments");
    assert_eq!(p["status"], "STATUS_CLOSED");
    assert_eq!(p["generation"], "1");
    assert_eq!(p["policy"]["cooldown"], "30s");
    assert_eq!(p["policy"]["permitTtl"], "60s");
    assert_eq!(p["policy"]["failureLimit"]["numerator"], 2);
    assert_eq!(p["policy"]["successLimit"]["denominator"], 5);
    assert_eq!(p["policy"]["autoHalfOpen"], true);

    let (out, _) = run(ctl(&d).args(["list", "--prefix", "db."]), 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("NAME") && lines[0].contains("STATUS"));
    assert!(lines[1].starts_with("db.orders ") && lines[1].contains("CLOSED"));
    assert!(lines[2].starts_with("db.payments ") && lines[2].contains("0/5"));

    let (out, err) = run(ctl(&d).args(["list", "--page-size", "1"]), 0);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(err.contains("--page-token"), "{err}");
    let all = json(&d, &["list", "--page-size", "1", "--all-pages"], 0);
    let names: Vec<&str> = all["protectors"]
        .as_array()
        .expect("protectors")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["cache.users", "db.orders", "db.payments"]);
    assert!(all.get("nextPageToken").is_none(), "{all}");
}

#[test]
fn acquire_and_report_a_failure_trip_the_protector() {
    let d = BlockingDaemon::start();
    run(ctl(&d).args(["ensure", "svc", "--cooldown", "10m"]), 0);
    let (out, _) = run(ctl(&d).args(["acquire", "svc"]), 0);
    assert_eq!(field(&out, "decision"), "ADMITTED");
    assert_eq!(field(&out, "reason"), "CLOSED");
    assert_eq!(field(&out, "permit"), "0");
    assert_eq!(field(&out, "generation"), "1");

    let a = json(&d, &["acquire", "svc"], 0);
    assert_eq!(a["decision"], "DECISION_ADMITTED");
    let generation = a["permit"]["generation"].as_str().expect("generation");
    assert_eq!(generation, "1");
    let report = ["report", "svc", "--permit", "0", "--generation", generation];
    let (out, _) = run(ctl(&d).args(report).args(["--outcome", "failure"]), 0);
    assert_eq!(field(&out, "accepted"), "yes");
    assert_eq!(field(&out, "status"), "OPEN");
    let transition = field(&out, "transition");
    assert!(
        transition.starts_with("CLOSED→OPEN FAILURE_LIMIT, generation 2, open until "),
        "{transition}"
    );

    let stale: Vec<&str> = report.into_iter().chain(["--outcome", "success"]).collect();
    let r = json(&d, &stale, 0);
    assert!(r.get("accepted").is_none(), "a stale report was accepted: {r}");
    assert_eq!(r["status"], "STATUS_OPEN");

    let (out, _) = run(ctl(&d).args(["acquire", "svc"]), 4);
    assert_eq!(field(&out, "decision"), "REJECTED");
    assert_eq!(field(&out, "reason"), "OPEN");
    assert!(field(&out, "retry after").starts_with("9m"), "{out}");
    let rejected = json(&d, &["acquire", "svc"], 4);
    assert_eq!(rejected["reason"], "DECISION_REASON_OPEN");
    assert!(
        rejected["retryAfter"]
            .as_str()
            .expect("retryAfter")
            .ends_with('s')
    );
}

#[test]
fn admin_commands_change_status_override_and_policy() {
    let d = BlockingDaemon::start();
    run(ctl(&d).args(["ensure", "api"]), 0);

    let (out, _) = run(ctl(&d).args(["set-status", "api", "open", "--open-for", "5m"]), 0);
    assert!(field(&out, "transition").starts_with("CLOSED→OPEN MANUAL, generation 2"));
    assert!(field(&out, "open until").contains("(in 4m"), "{out}");
    let s = json(&d, &["set-status", "api", "half-open"], 0);
    assert_eq!(s["transition"]["from"], "STATUS_OPEN");
    assert_eq!(s["transition"]["to"], "STATUS_HALF_OPEN");
    assert_eq!(s["transition"]["reason"], "TRANSITION_REASON_MANUAL");
    run(ctl(&d).args(["set-status", "api", "closed"]), 0);

    let args = ["override", "api", "forced-open", "--expires-after", "10m"];
    let (out, _) = run(ctl(&d).args(args), 0);
    assert!(field(&out, "override").starts_with("FORCED_OPEN until "), "{out}");
    let (out, _) = run(ctl(&d).args(["acquire", "api"]), 4);
    assert_eq!(field(&out, "reason"), "FORCED_OPEN");
    let o = json(&d, &["override", "api", "none"], 0);
    assert_eq!(o["protector"]["override"]["kind"], "OVERRIDE_KIND_NONE");
    run(ctl(&d).args(["acquire", "api"]), 0);

    let (out, _) = run(
        ctl(&d).args(["update-policy", "api", "--failure-limit", "3/10"]),
        0,
    );
    assert_eq!(field(&out, "failure limit"), "3/10");
    assert_eq!(field(&out, "window"), "0 of 10: 0 successes, 0 failures");
    let u = json(&d, &["update-policy", "api", "--cooldown", "1.5s"], 0);
    assert_eq!(u["protector"]["policy"]["cooldown"], "1.500s");

    let (out, _) = run(ctl(&d).args(["delete", "api"]), 0);
    assert!(out.starts_with("deleted api at revision "), "{out}");
    run(ctl(&d).args(["ensure", "api"]), 0);
    let del = json(&d, &["delete", "api"], 0);
    assert!(del["revision"].as_str().is_some(), "{del}");
    run(ctl(&d).args(["get", "api"]), 1);
}

#[test]
fn errors_exit_with_their_codes_and_say_why() {
    let d = BlockingDaemon::start();

    let (_, err) = run(ctl(&d).args(["get", "nosuch"]), 1);
    assert!(err.starts_with("circuitctl: NOT_FOUND: "), "{err}");
    assert!(err.contains("nosuch"), "{err}");

    // Well-formed but out of range: the daemon decides and names the field.
    let (_, err) = run(ctl(&d).args(["ensure", "x", "--failure-limit", "6/5"]), 1);
    assert!(err.starts_with("circuitctl: INVALID_ARGUMENT: "), "{err}");
    assert!(err.contains("\n  field policy.failure_limit"), "{err}");
    // Not a fraction at all: circuitctl's own parsing refuses it.
    let (_, err) = run(ctl(&d).args(["ensure", "x", "--failure-limit", "2-5"]), 2);
    assert!(err.contains("--failure-limit"), "{err}");

    run(ctl(&d).arg("frobnicate"), 2);
    let report = ["report", "x", "--permit", "0", "--generation", "1"];
    run(ctl(&d).args(report).args(["--outcome", "maybe"]), 2);
    run(ctl(&d).args(["set-status", "x", "sideways"]), 2);
    run(ctl(&d).args(["watch", "--count", "0"]), 2);

    // A port that was just free: nothing listens there.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = free.local_addr().expect("addr");
    drop(free);
    let uri = format!("http://{addr}");
    let mut cmd = Command::cargo_bin("circuitctl").expect("circuitctl is built");
    cmd.env("CIRCUIT_ADDR", &uri).arg("list").timeout(DEADLINE);
    let (_, err) = run(&mut cmd, 3);
    assert!(err.contains(&format!("cannot reach circuitd at {uri}")), "{err}");
}

/// A running `circuitctl watch` whose stdout lines arrive on a channel.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn spawn(d: &BlockingDaemon, args: &[&str]) -> Watch {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_circuitctl"))
            .env_remove("NO_COLOR")
            .args(["--addr", &d.uri()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn circuitctl watch");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Watch { child, lines }
    }

    /// The next line, failing the test after [`DEADLINE`].
    #[track_caller]
    fn line(&self) -> String {
        self.lines
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|e| panic!("no watch line within {DEADLINE:?}: {e}"))
    }

    /// The six fields of the next line.
    #[track_caller]
    fn fields(&self) -> Vec<String> {
        self.line().split_whitespace().map(str::to_owned).collect()
    }

    /// Waits for the process to exit (its stdout closes) and returns its exit code.
    #[track_caller]
    fn exit_code(mut self) -> Option<i32> {
        loop {
            match self.lines.recv_timeout(DEADLINE) {
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("watch did not exit"),
            }
        }
        self.child.wait().expect("wait for watch").code()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn watch_prints_one_line_per_event_and_stops_after_count() {
    let d = BlockingDaemon::start();
    run(ctl(&d).args(["ensure", "w.one"]), 0);
    let w = Watch::spawn(
        &d,
        &[
            "watch",
            "--prefix",
            "w.",
            "--count",
            "5",
            "--progress-interval",
            "1h",
        ],
    );
    assert_eq!(w.fields()[2..5], ["SNAPSHOT", "w.one", "CLOSED"]);
    assert_eq!(w.fields()[2], "SYNCED");

    run(ctl(&d).args(["ensure", "w.two"]), 0);
    run(ctl(&d).args(["ensure", "other"]), 0);
    run(ctl(&d).args(["set-status", "w.one", "open"]), 0);
    run(ctl(&d).args(["delete", "w.two"]), 0);
    assert_eq!(w.fields()[2..5], ["CREATED", "w.two", "CLOSED"]);
    let changed = w.fields();
    assert_eq!(changed.len(), 6, "{changed:?}");
    assert_eq!(changed[2..], ["STATUS_CHANGED", "w.one", "CLOSED→OPEN", "MANUAL"]);
    let revision: u64 = changed[1].parse().expect("revision");
    let deleted = w.fields();
    assert_eq!(deleted[2..], ["DELETED", "w.two", "-", "-"]);
    assert!(deleted[1].parse::<u64>().expect("revision") > revision);
    assert_eq!(w.exit_code(), Some(0));
}

#[test]
fn watch_json_replays_and_reports_progress() {
    let d = BlockingDaemon::start();
    run(ctl(&d).args(["ensure", "j"]), 0);
    let created = json(&d, &["get", "j"], 0)["revision"]
        .as_str()
        .expect("revision")
        .to_owned();
    run(ctl(&d).args(["set-status", "j", "open"]), 0);

    let args = [
        "--json",
        "watch",
        "j",
        "--start-revision",
        &created,
        "--progress-interval",
        "100ms",
        "--count",
        "3",
    ];
    let (out, _) = run(ctl(&d).args(args), 0);
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(events.len(), 3, "{out}");
    let change = &events[0]["statusChanged"];
    assert_eq!(change["name"], "j");
    assert_eq!(change["transition"]["to"], "STATUS_OPEN");
    assert!(events[1].get("synced").is_some(), "{}", events[1]);
    assert!(events[2].get("progress").is_some(), "{}", events[2]);
    assert!(events[2]["revision"].as_str().is_some(), "{}", events[2]);
}

#[test]
fn watch_exits_non_zero_when_the_daemon_goes_away() {
    let d = BlockingDaemon::start();
    let w = Watch::spawn(&d, &["watch"]);
    assert_eq!(w.fields()[2], "SYNCED");
    d.stop();
    assert_eq!(w.exit_code(), Some(3));
}
