//! `circuitctl cluster` (alias `status`) and several `--addr` addresses, against real
//! daemons started in this process on ephemeral ports.

mod cli;

use std::time::Duration;

use assert_cmd::Command;
use cli::{circuitctl, run};
use serde_json::Value;
use support::{BlockingDaemon, dead_uri};

/// How long a test waits for something it expects before it fails.
const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn cluster_shows_a_standalone_daemon_as_one_replica() {
    let d = BlockingDaemon::start();
    let advertise = d.addr().to_string();
    for command in ["cluster", "status"] {
        let (out, _) = run(circuitctl(&d.uri(), DEADLINE).arg(command), 0);
        let row = |key: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
                .unwrap_or_else(|| panic!("no {key:?} row in\n{out}"))
        };
        assert_eq!(row("answered by"), advertise, "{out}");
        assert_eq!(row("prefix"), "- (standalone)", "{out}");
        let replicas: Vec<&str> = out.lines().filter(|l| l.contains("STANDALONE")).collect();
        assert_eq!(replicas.len(), 1, "{out}");
        let fields: Vec<&str> = replicas[0].split_whitespace().collect();
        assert_eq!(
            &fields[..4],
            ["*", advertise.as_str(), "STANDALONE", "-"],
            "{out}"
        );
    }

    let (out, _) = run(circuitctl(&d.uri(), DEADLINE).args(["--json", "cluster"]), 0);
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["answeredBy"], advertise.as_str(), "{json}");
    assert!(json.get("prefix").is_none(), "empty fields are left out: {json}");
    assert!(json["epoch"].is_string(), "uint64 is a JSON string: {json}");
    let replicas = json["replicas"].as_array().expect("replicas");
    assert_eq!(replicas.len(), 1, "{json}");
    assert_eq!(replicas[0]["role"], "REPLICA_ROLE_STANDALONE", "{json}");
    assert_eq!(replicas[0]["advertise"], advertise.as_str(), "{json}");
    assert!(replicas[0].get("leaderSince").is_none(), "{json}");
    assert!(replicas[0]["started"].is_string(), "{json}");
}

#[test]
fn a_dead_address_is_passed_over_for_the_next() {
    let d = BlockingDaemon::start();
    let dead = dead_uri();
    let both = format!("{dead},{}", d.uri());
    let (out, err) = run(
        circuitctl(&both, DEADLINE).args(["ensure", "failover", "--failure-limit", "1/1"]),
        0,
    );
    assert!(out.contains("created"), "{out}");
    assert!(
        err.contains(&format!("cannot reach circuitd at {dead}"))
            && err.contains(&format!("trying {}", d.uri())),
        "{err}"
    );
    // The environment variable takes the same list.
    let mut cmd = Command::cargo_bin("circuitctl").expect("circuitctl is built");
    cmd.env("CIRCUIT_ADDR", &both).timeout(DEADLINE);
    let (out, _) = run(cmd.args(["--json", "get", "failover"]), 0);
    assert!(out.contains("\"name\": \"failover\""), "{out}");
}

#[test]
fn every_address_dead_exits_unreachable_naming_the_last() {
    let (first, last) = (dead_uri(), dead_uri());
    let (out, err) = run(circuitctl(&format!("{first},{last}"), DEADLINE).arg("cluster"), 3);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&format!("cannot reach circuitd at {first}")),
        "{err}"
    );
    assert!(err.contains(&format!("cannot reach circuitd at {last}")), "{err}");
}
