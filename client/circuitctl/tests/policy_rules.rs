//! circuitctl and issue 18's policy rules: every rule's flag on `ensure` and
//! `update-policy` reaches the daemon and is shown by `get`; a value the daemon refuses
//! names its field; `report --duration` carries the call's duration; `simulate` prints
//! the timelines of a what-if replay.

mod cli;

use std::time::Duration;

use assert_cmd::Command;
use cli::{circuitctl, field, run};
use serde_json::Value;
use support::BlockingDaemon;

const DEADLINE: Duration = Duration::from_secs(20);

#[track_caller]
fn ctl(d: &BlockingDaemon) -> Command {
    circuitctl(&d.uri(), DEADLINE)
}

#[track_caller]
fn json(d: &BlockingDaemon, args: &[&str]) -> Value {
    let (stdout, _) = run(ctl(d).arg("--json").args(args), 0);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// `acquire NAME`, then `report` its CLOSED permit (generation 1) with `outcome` and
/// `extra` flags, expecting the report to exit `code`.
#[track_caller]
fn call(d: &BlockingDaemon, name: &str, outcome: &str, extra: &[&str], code: i32) {
    run(ctl(d).args(["acquire", name]), 0);
    let report = [
        "report",
        name,
        "--generation",
        "1",
        "--permit",
        "0",
        "--outcome",
        outcome,
    ];
    run(ctl(d).args(report).args(extra), code);
}

const EVERY_RULE: [&str; 20] = [
    "--cooldown",
    "10s",
    "--failure-limit",
    "3/10",
    "--window-duration",
    "1m",
    "--minimum-calls",
    "20",
    "--consecutive-failures",
    "5",
    "--slow-call-duration",
    "250ms",
    "--slow-call-limit",
    "1/2",
    "--cooldown-multiplier",
    "1.5",
    "--max-cooldown",
    "10m",
    "--history-size",
    "1000",
];

#[test]
fn every_rule_flag_reaches_the_daemon_and_get_shows_it() {
    let d = BlockingDaemon::start();
    let (out, _) = run(
        ctl(&d)
            .args(["ensure", "rules.all"])
            .args(EVERY_RULE)
            .arg("--shadow"),
        0,
    );
    assert_eq!(field(&out, "created"), "yes");
    let (get, _) = run(ctl(&d).args(["get", "rules.all"]).env("NO_COLOR", "1"), 0);
    assert_eq!(field(&get, "window duration"), "1m");
    assert_eq!(field(&get, "minimum calls"), "20");
    assert_eq!(field(&get, "consecutive failure limit"), "5");
    assert_eq!(field(&get, "slow calls"), "at or above 250ms, limit 1/2");
    assert_eq!(field(&get, "cooldown multiplier"), "1.5");
    assert_eq!(field(&get, "max cooldown"), "10m");
    assert_eq!(field(&get, "shadow"), "yes: every call is admitted");
    assert_eq!(field(&get, "history size"), "1000");
    assert_eq!(field(&get, "cooldown in force"), "10s");
    assert!(field(&get, "time window").starts_with("0 calls in 1m"), "{get}");
    field(&get, "policy revision");

    let policy = &json(&d, &["get", "rules.all"])["protector"]["policy"];
    assert_eq!(policy["windowDuration"], "60s");
    assert_eq!(policy["minimumCalls"], 20);
    assert_eq!(policy["consecutiveFailures"], 5);
    assert_eq!(policy["slowCallDuration"], "0.250s");
    assert_eq!(policy["slowCallLimit"]["numerator"], 1);
    assert_eq!(policy["cooldownMultiplier"], 1.5);
    assert_eq!(policy["maxCooldown"], "600s");
    assert_eq!(policy["shadow"], true);
    assert_eq!(policy["historySize"], 1000);

    // update-policy takes the same flags; unset ones go back to their defaults.
    run(
        ctl(&d).args(["update-policy", "rules.all", "--consecutive-failures", "2"]),
        0,
    );
    let (get, _) = run(ctl(&d).args(["get", "rules.all"]).env("NO_COLOR", "1"), 0);
    assert_eq!(field(&get, "consecutive failure limit"), "2");
    assert!(!get.contains("window duration"), "{get}");

    // list shows the cooldown in force and the policy revision.
    let (list, _) = run(ctl(&d).args(["list"]).env("NO_COLOR", "1"), 0);
    let header: Vec<&str> = list
        .lines()
        .next()
        .expect("header")
        .split("  ")
        .filter(|c| !c.is_empty())
        .collect();
    assert!(header.iter().any(|c| c.trim() == "COOLDOWN"), "{list}");
    assert!(header.iter().any(|c| c.trim() == "POLICY REV"), "{list}");
}

#[test]
fn a_refused_rule_names_its_field() {
    let d = BlockingDaemon::start();
    for (flags, field) in [
        (
            &["--cooldown-multiplier", "0.5"][..],
            "policy.cooldown_multiplier",
        ),
        (&["--window-duration", "10ms"], "policy.window_duration"),
        (
            &["--cooldown", "1m", "--max-cooldown", "10s"],
            "policy.max_cooldown",
        ),
        (
            &["--slow-call-duration", "1s", "--slow-call-limit", "3/2"],
            "policy.slow_call_limit",
        ),
    ] {
        let (_, err) = run(ctl(&d).args(["ensure", "rules.bad"]).args(flags), 1);
        assert!(err.contains(field), "{flags:?}: {err}");
    }
    // A malformed value never reaches the daemon: a usage error.
    run(
        ctl(&d).args(["ensure", "rules.bad", "--cooldown-multiplier", "double"]),
        2,
    );
    run(
        ctl(&d).args(["ensure", "rules.bad", "--slow-call-duration", "1s"]),
        2,
    );
}

#[test]
fn report_carries_the_calls_duration() {
    let d = BlockingDaemon::start();
    run(
        ctl(&d).args([
            "ensure",
            "rules.slow",
            "--failure-limit",
            "2/2",
            "--slow-call-duration",
            "100ms",
            "--slow-call-limit",
            "2/2",
        ]),
        0,
    );
    for took in ["150ms", "100ms"] {
        call(&d, "rules.slow", "success", &["--duration", took], 0);
    }
    let p = &json(&d, &["get", "rules.slow"])["protector"];
    assert_eq!(p["status"], "STATUS_OPEN", "{p}");
    // A malformed duration is a usage error (the acquire before it is admitted: OPEN
    // with no cooldown moves to HALF_OPEN).
    call(&d, "rules.slow", "success", &["--duration", "soon"], 2);
}

#[test]
fn simulate_prints_both_timelines_and_json() {
    let d = BlockingDaemon::start();
    run(
        ctl(&d).args([
            "ensure",
            "rules.whatif",
            "--failure-limit",
            "3/3",
            "--history-size",
            "10",
        ]),
        0,
    );
    for outcome in ["failure", "failure", "success"] {
        call(&d, "rules.whatif", outcome, &[], 0);
    }
    let (out, _) = run(
        ctl(&d)
            .args([
                "simulate",
                "rules.whatif",
                "--failure-limit",
                "3/3",
                "--cooldown",
                "1h",
                "--consecutive-failures",
                "2",
            ])
            .env("NO_COLOR", "1"),
        0,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("replayed 3 calls, from "), "{out}");
    assert_eq!(lines[2], "candidate: 1 transitions", "{out}");
    let trip: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(
        trip[1..5],
        ["CLOSED→OPEN", "CONSECUTIVE_FAILURES,", "open", "until"],
        "{out}"
    );
    assert_eq!(lines[4].trim(), "admitted 2, rejected 1", "{out}");
    assert_eq!(lines[6], "current: 0 transitions", "{out}");
    assert_eq!(lines[7].trim(), "admitted 3, rejected 0", "{out}");

    let answer = json(
        &d,
        &[
            "simulate",
            "rules.whatif",
            "--failure-limit",
            "3/3",
            "--consecutive-failures",
            "2",
        ],
    );
    assert_eq!(answer["calls"], "3");
    assert_eq!(
        answer["candidate"]["transitions"][0]["reason"],
        "TRANSITION_REASON_CONSECUTIVE_FAILURES"
    );

    // No history: the daemon's FAILED_PRECONDITION, exit 1.
    run(ctl(&d).args(["ensure", "rules.nohistory"]), 0);
    let (_, err) = run(ctl(&d).args(["simulate", "rules.nohistory"]), 1);
    assert!(err.contains("history_size"), "{err}");
}

#[test]
fn acquire_says_would_reject_in_shadow_mode() {
    let d = BlockingDaemon::start();
    run(
        ctl(&d).args(["ensure", "rules.shadow", "--cooldown", "1h", "--shadow"]),
        0,
    );
    call(&d, "rules.shadow", "failure", &[], 0);
    // OPEN, yet admitted: exit 0, and the answer says it would have been rejected.
    let (out, _) = run(ctl(&d).args(["acquire", "rules.shadow"]).env("NO_COLOR", "1"), 0);
    assert_eq!(field(&out, "would reject"), "yes (shadow mode)");
    assert_eq!(field(&out, "reason"), "OPEN");
    field(&out, "policy revision");
    let answer = json(&d, &["acquire", "rules.shadow"]);
    assert_eq!(answer["wouldReject"], true, "{answer}");
}
