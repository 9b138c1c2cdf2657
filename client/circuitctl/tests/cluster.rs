//! `circuitctl cluster` (alias `status`) and several `--addr` addresses, against real
//! daemons started in this process on ephemeral ports, and against a real cluster (a real
//! etcd and two `circuitd` replicas, the harness's `Etcd` and `Replicas`).

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
        // ADMIN is "-": AdminService is served at the advertised address.
        assert_eq!(
            &fields[..5],
            ["*", advertise.as_str(), "-", "STANDALONE", "-"],
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

#[tokio::test]
async fn cluster_shows_the_leader_and_the_follower_of_a_real_cluster() {
    use resilient_circuit_api::v1::ReplicaRole;
    use support::{Etcd, Replicas};

    let etcd = Etcd::single().await;
    let replicas = Replicas::start(&etcd, 2, &[]).await;
    let leader = replicas.leader().await;
    let follower = 1 - leader;
    // Each replica learns its own role from the election and the others' entries from
    // their registrations, a separate etcd watch: a follower can know it follows before
    // its view lists the leader. Wait for a whole view, then ask circuitctl.
    support::eventually(
        async || match replicas.cluster(follower).await {
            Ok(view) if view.replicas.len() == 2 => Ok(()),
            other => Err(other),
        },
        |view| format!("the follower's view never listed both replicas: {view:?}"),
    )
    .await;
    // Asked of the follower first: it answers for the whole cluster.
    let uris = format!("{},{}", replicas.uris()[follower], replicas.uris()[leader]);
    let (out, _) =
        tokio::task::spawn_blocking(move || run(circuitctl(&uris, DEADLINE).args(["--json", "cluster"]), 0))
            .await
            .expect("circuitctl ran");
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["answeredBy"], replicas.addr(follower).to_string(), "{json}");
    assert_eq!(json["prefix"], replicas.prefix(), "{json}");
    let listed = json["replicas"].as_array().expect("replicas");
    assert_eq!(listed.len(), 2, "{json}");
    assert_eq!(
        listed[0]["role"],
        ReplicaRole::Leader.as_str_name(),
        "the leader first: {json}"
    );
    assert_eq!(
        listed[0]["advertise"],
        replicas.addr(leader).to_string(),
        "{json}"
    );
    assert!(listed[0]["leaderSince"].is_string(), "{json}");
    assert_eq!(listed[1]["role"], ReplicaRole::Follower.as_str_name(), "{json}");
    assert!(listed[1].get("leaderSince").is_none(), "{json}");
}
