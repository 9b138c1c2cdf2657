//! `circuitctl bench` against a real circuitd served in this process on an ephemeral port.
//!
//! Each test owns its daemon on a runtime of its own, so the test body can block on the
//! child process while the daemon answers. Runs are short (300 ms, no warmup): these
//! tests check that the load generator works and reports what it promises, not how fast
//! anything is.

mod cli;

use std::time::Duration;

use assert_cmd::Command;
use cli::{circuitctl, run};
use resilient_circuit_api::v1;
use serde_json::Value;
use support::BlockingDaemon;

/// How long one circuitctl run may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

/// `circuitctl --addr <daemon> bench args..`.
fn bench(served: &BlockingDaemon, args: &[&str]) -> Command {
    let mut cmd = circuitctl(&served.uri(), DEADLINE);
    cmd.arg("bench").args(args);
    cmd
}

/// Runs a bench with `--json`, expecting success, and parses its one object.
#[track_caller]
fn bench_json(served: &BlockingDaemon, args: &[&str]) -> Value {
    let (stdout, _) = run(bench(served, args).arg("--json"), 0);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[track_caller]
fn positive(report: &Value, field: &str) -> f64 {
    let x = report[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number in {report:#}"));
    assert!(x > 0.0, "{field} = {x} in {report:#}");
    x
}

const SHORT: [&str; 6] = ["--duration", "300ms", "--warmup", "0s", "--concurrency", "4"];

#[track_caller]
fn check_short_run_with_baseline(report: &Value, mode: &str) {
    assert_eq!(report["mode"], mode);
    assert_eq!(report["concurrency"], 4);
    assert_eq!(report["connections"], 1);
    assert_eq!(report["protectors"], 1);
    assert_eq!(report["duration_s"], 0.3);
    assert_eq!(report["errors"], 0, "{report:#}");
    for field in [
        "decisions_per_sec",
        "p50_us",
        "p99_us",
        "p999_us",
        "baseline_decisions_per_sec",
        "ratio_to_baseline",
    ] {
        positive(report, field);
    }
    assert!(
        report["p50_us"].as_f64() <= report["p99_us"].as_f64(),
        "{report:#}"
    );
    assert!(
        report["p99_us"].as_f64() <= report["p999_us"].as_f64(),
        "{report:#}"
    );
    let rate = report["decisions_per_sec"].as_f64().expect("a number");
    let decisions = report["decisions"].as_f64().expect("a number");
    assert!((rate * 0.3 - decisions).abs() < 1.0, "{report:#}");
}

#[test]
fn unary_reports_its_figures_and_the_baseline_ratio() {
    let served = BlockingDaemon::start();
    let mut args = vec!["--mode", "unary", "--baseline"];
    args.extend(SHORT);
    let report = bench_json(&served, &args);
    check_short_run_with_baseline(&report, "unary");
    assert_eq!(report["admitted"], report["decisions"], "{report:#}");
    assert!(
        report.get("transitions").is_none(),
        "no failures, no count: {report:#}"
    );
    let p = served.inspect("bench-0");
    let limit = p.policy.and_then(|p| p.failure_limit).expect("a failure limit");
    assert_eq!((limit.numerator, limit.denominator), (1000, 1000));
    assert!(
        p.counters.expect("counters").successes >= report["decisions"].as_u64().expect("a count"),
        "the daemon saw fewer reports than the bench counted"
    );
}

#[test]
fn session_reports_its_figures_and_the_baseline_ratio() {
    let served = BlockingDaemon::start();
    let mut args = vec!["--mode", "session", "--baseline"];
    args.extend(SHORT);
    let report = bench_json(&served, &args);
    check_short_run_with_baseline(&report, "session");
    assert_eq!(report["admitted"], report["decisions"], "{report:#}");
}

#[test]
fn rounds_take_turns_with_the_echo_and_sum_the_slices() {
    let served = BlockingDaemon::start();
    for mode in ["session", "unary", "library"] {
        let mut args = vec!["--mode", mode, "--baseline", "--rounds", "3"];
        args.extend(SHORT);
        let report = bench_json(&served, &args);
        // Three slices of 100 ms each side, summed: the same window as one run.
        check_short_run_with_baseline(&report, mode);
        assert_eq!(report["rounds"], 3, "{report:#}");
        if mode == "library" {
            // The library's counters sum over the slices; the clock's floor is one reading.
            assert_eq!(report["fallback_decisions"], 0, "{report:#}");
            assert_eq!(report["batched_accepted"], 0, "{report:#}");
            positive(&report, "timer_floor_p50_ns");
        }
    }
    let mut args = vec!["--mode", "session", "--baseline"];
    args.extend(SHORT);
    assert_eq!(bench_json(&served, &args)["rounds"], 1);
    let (stdout, _) = run(
        bench(&served, &["--mode", "session", "--baseline", "--rounds", "2"]).args(SHORT),
        0,
    );
    assert!(
        stdout.contains("echo and daemon in turns, 150ms slices each"),
        "{stdout}"
    );
}

#[test]
fn rounds_that_cannot_take_turns_are_usage_errors() {
    let served = BlockingDaemon::start();
    let rows: [(&[&str], &str); 4] = [
        (&["--mode", "session", "--rounds", "2"], "add --baseline"),
        (
            &["--mode", "cached", "--baseline", "--rounds", "2"],
            "unary, session and library modes, not cached",
        ),
        (
            &["--mode", "echo", "--baseline", "--rounds", "2"],
            "unary, session and library modes, not echo",
        ),
        (
            &["--mode", "session", "--baseline", "--rounds", "4"],
            "cut into 4 rounds leaves slices under 100ms",
        ),
    ];
    for (bad, expected) in rows {
        let (_, stderr) = run(bench(&served, bad).args(SHORT), 2);
        assert!(stderr.contains(expected), "{bad:?}: {stderr}");
    }
    let (_, stderr) = run(&mut bench(&served, &["--rounds", "0"]), 2);
    assert!(stderr.contains("--rounds"), "{stderr}");
}

#[test]
fn client_threads_sets_the_load_generators_runtime() {
    let served = BlockingDaemon::start();
    let mut args = vec!["--mode", "session", "--baseline", "--client-threads", "1"];
    args.extend(SHORT);
    let report = bench_json(&served, &args);
    check_short_run_with_baseline(&report, "session");
    assert_eq!(report["client_threads"], 1, "{report:#}");
}

#[test]
fn the_summary_names_rate_latency_and_ratio() {
    let served = BlockingDaemon::start();
    let mut args = vec!["--mode", "session", "--baseline", "--connections", "2"];
    args.extend(SHORT);
    let (stdout, _) = run(&mut bench(&served, &args), 0);
    for expected in [
        "bench session: 4 in flight on 2 connections, 1 protector",
        "decisions/s",
        "latency µs",
        "p999",
        "echo baseline",
        "ratio",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in\n{stdout}");
    }
}

#[test]
fn a_tripping_workload_counts_the_daemons_transitions() {
    let served = BlockingDaemon::start();
    let mut args = vec![
        "--mode",
        "unary",
        "--trip",
        "--failure-rate",
        "1.0",
        "--protectors",
        "4",
    ];
    args.extend(SHORT);
    let report = bench_json(&served, &args);
    positive(&report, "transitions_per_sec");
    let transitions = positive(&report, "transitions");
    let generations: u64 = (0..4)
        .map(|i| served.inspect(&format!("bench-{i}")).generation)
        .sum();
    assert!(generations as f64 >= transitions, "{generations} < {transitions}");
    assert!(report.get("ratio_to_baseline").is_none(), "{report:#}");
}

/// A short run of `mode` (cached or library) on a daemon of its own, checked for what
/// both report; the daemon stays up for the caller to inspect.
fn library_run(mode: &str) -> (BlockingDaemon, Value) {
    let served = BlockingDaemon::start();
    let mut args = vec!["--mode", mode];
    args.extend(SHORT);
    let report = bench_json(&served, &args);
    assert_eq!(report["mode"], mode);
    assert_eq!(report["errors"], 0, "{report:#}");
    for field in ["decisions_per_sec", "p50_us", "p99_us", "p999_us"] {
        positive(&report, field);
    }
    (served, report)
}

#[test]
fn cached_mode_decides_in_the_client_library() {
    let (_served, report) = library_run("cached");
    assert!(report["batched_accepted"].is_u64(), "{report:#}");
    // What the clock adds to each figure, reported beside them.
    positive(&report, "timer_floor_p50_ns");
}

#[test]
fn library_mode_asks_the_daemon_through_the_client_library() {
    let (served, report) = library_run("library");
    // Every decision was the daemon's: none batched, none left to a fallback.
    assert_eq!(report["batched_accepted"], 0, "{report:#}");
    assert_eq!(report["fallback_decisions"], 0, "{report:#}");
    let decisions = positive(&report, "decisions");
    // The daemon admitted each of them itself (in cached mode it would have seen none).
    let counters = served.inspect("bench-0").counters.expect("counters");
    assert!(
        counters.admitted as f64 >= decisions,
        "{counters:?} for {decisions} decisions"
    );
}

#[test]
fn acquire_only_decisions_are_never_reported() {
    let served = BlockingDaemon::start();
    let mut args = vec!["--mode", "unary", "--acquire-only"];
    args.extend(SHORT);
    let report = bench_json(&served, &args);
    assert_eq!(report["acquire_only"], true, "{report:#}");
    assert!(report.get("transitions").is_none(), "not counted: {report:#}");
    assert_eq!(report["errors"], 0, "{report:#}");
    assert_eq!(report["admitted"], report["decisions"], "{report:#}");
    for field in ["decisions_per_sec", "p50_us", "p99_us", "p999_us"] {
        positive(&report, field);
    }
    let counters = served.inspect("bench-0").counters.expect("counters");
    assert!(
        counters.admitted >= report["decisions"].as_u64().expect("a count"),
        "{counters:?}"
    );
    assert_eq!(
        (counters.successes, counters.failures),
        (0, 0),
        "a report was sent"
    );
}

#[test]
fn watch_mode_times_every_delivery_of_every_transition() {
    let served = BlockingDaemon::start();
    let args = [
        "--mode",
        "watch",
        "--watchers",
        "5",
        "--transitions",
        "3",
        "--connections",
        "2",
    ];
    let report = bench_json(&served, &args);
    assert_eq!(report["mode"], "watch");
    assert_eq!(report["watchers"], 5);
    assert_eq!(report["connections"], 2);
    assert_eq!(report["deliveries"], 15, "{report:#}");
    assert_eq!(report["unmatched"], 0, "{report:#}");
    let field = |name: &str| positive(&report, name);
    assert!(field("p50_us") <= field("p99_us"), "{report:#}");
    assert!(field("p99_us") <= field("p999_us"), "{report:#}");
    assert!(field("p999_us") <= field("max_us") * 1.001, "{report:#}");
    assert!(
        field("last_watcher_p50_us") <= field("last_watcher_p99_us"),
        "{report:#}"
    );
    assert!(
        field("last_watcher_p99_us") <= field("max_us") * 1.001,
        "{report:#}"
    );
    let p = served.inspect("bench-watch");
    assert_eq!(p.generation, 4, "generation 1 and three transitions: {p:?}");
    assert_eq!(p.status, v1::Status::Open as i32, "OPEN, CLOSED, OPEN: {p:?}");
}

#[test]
fn echo_mode_needs_no_daemon() {
    let mut cmd = Command::cargo_bin("circuitctl").expect("circuitctl is built");
    cmd.env_remove("CIRCUIT_ADDR")
        .args([
            "--addr",
            "http://127.0.0.1:9",
            "--json",
            "bench",
            "--mode",
            "echo",
        ])
        .args(SHORT)
        .timeout(DEADLINE);
    let (stdout, _) = run(&mut cmd, 0);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["mode"], "echo");
    positive(&report, "decisions_per_sec");
    assert!(report.get("transitions").is_none(), "{report:#}");
}

#[test]
fn malformed_flags_are_usage_errors() {
    let served = BlockingDaemon::start();
    for bad in [
        &["--mode", "nonsense"][..],
        &["--concurrency", "0"],
        &["--client-threads", "0"],
        &["--failure-rate", "1.5"],
        &["--duration", "0s"],
        &["--duration", "2h"],
        &["--no-such-flag"],
    ] {
        let (_, stderr) = run(&mut bench(&served, bad), 2);
        assert!(!stderr.is_empty(), "{bad:?} printed no usage error");
    }
}
