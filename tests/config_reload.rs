//! SIGHUP applies the `[[protectors]]` of `--config` again (the real binary): a changed
//! policy is set, as UpdatePolicy, with a new `policy_revision` and an audit line; an
//! unchanged one is left alone; a new one is created; only an entry marked
//! `delete = true` deletes; a file that does not load is refused and changes nothing.
//! In a cluster (real etcd, real replicas) only the leader applies its file.

use std::time::Duration;

use resilient_circuit_api::v1;
use support::process::Circuitd;
use support::{Etcd, Replicas, TempDir, duration, eventually, policy};

fn entry(name: &str, failure_limit: &str, extra: &str) -> String {
    format!(
        "[[protectors]]\nname = \"{name}\"\ncooldown = \"10s\"\nfailure_limit = \"{failure_limit}\"\n{extra}\n"
    )
}

async fn get(daemon: &Circuitd, name: &str) -> Result<v1::Protector, tonic::Status> {
    daemon
        .protectors()
        .await
        .get_protector(v1::GetProtectorRequest { name: name.into() })
        .await
        .map(|r| r.into_inner().protector.expect("protector"))
}

/// Sends SIGHUP and waits until the daemon has logged the `n`th line holding `marker`.
async fn hangup_until(daemon: &Circuitd, marker: &str, n: usize) {
    daemon.hangup();
    eventually(
        async || {
            let seen = daemon.stderr().matches(marker).count();
            if seen >= n { Ok(()) } else { Err(seen) }
        },
        |seen| format!("{seen} lines with {marker:?}, not {n}:\n{}", daemon.stderr()),
    )
    .await;
}

#[tokio::test]
async fn sighup_applies_the_declared_protectors_and_nothing_else() {
    let dir = TempDir::new("config-reload");
    let file = dir.path().join("circuitd.toml");
    std::fs::write(&file, entry("changed", "1/1", "") + &entry("same", "2/5", "")).expect("write");
    let data = dir.path().join("data");
    let daemon = Circuitd::start(&data, &["--config", file.to_str().expect("utf-8")]).await;
    let before = get(&daemon, "changed").await.expect("created at start");
    let same_before = get(&daemon, "same").await.expect("created at start");
    // One made over the API, and one the file will mark: neither is the file's to delete
    // unless it says so.
    let mut c = daemon.protectors().await;
    for name in ["api-made", "doomed"] {
        c.ensure_protector(v1::EnsureProtectorRequest {
            name: name.into(),
            policy: Some(policy(Duration::from_secs(1), (1, 1), None)),
        })
        .await
        .expect("ensure");
    }

    std::fs::write(
        &file,
        entry("changed", "2/4", "consecutive_failures = 3")
            + &entry("same", "2/5", "")
            + &entry("new", "1/1", "")
            + &entry("doomed", "1/1", "delete = true"),
    )
    .expect("rewrite");
    hangup_until(&daemon, "[[protectors]] applied", 1).await;

    let after = get(&daemon, "changed").await.expect("still there");
    let p = after.policy.expect("policy");
    assert_eq!(
        p.failure_limit.map(|f| (f.numerator, f.denominator)),
        Some((2, 4))
    );
    assert_eq!(p.consecutive_failures, 3);
    assert_eq!(p.cooldown, Some(duration(Duration::from_secs(10))));
    assert!(
        after.policy_revision > before.policy_revision,
        "{} then {}",
        before.policy_revision,
        after.policy_revision
    );
    let same = get(&daemon, "same").await.expect("still there");
    assert_eq!(same.policy_revision, same_before.policy_revision);
    assert_eq!(same.mod_revision, same_before.mod_revision);
    get(&daemon, "new").await.expect("created by the reload");
    get(&daemon, "api-made").await.expect("never deleted unmarked");
    assert_eq!(
        get(&daemon, "doomed").await.expect_err("deleted").code(),
        tonic::Code::NotFound
    );
    let log = daemon.stderr();
    let audited = log
        .lines()
        .find(|l| l.contains("admin change") && l.contains("UpdatePolicy") && l.contains("changed"))
        .unwrap_or_else(|| panic!("no audit line:\n{log}"));
    assert!(audited.contains("config-reload"), "{audited}");
    assert!(log.contains("updated=1"), "{log}");

    // A file that does not load changes nothing.
    std::fs::write(&file, entry("changed", "5/4", "")).expect("break");
    hangup_until(&daemon, "the config file was refused", 1).await;
    let kept = get(&daemon, "changed").await.expect("still there");
    assert_eq!(kept.policy_revision, after.policy_revision);
    assert_eq!(
        kept.policy
            .and_then(|p| p.failure_limit)
            .map(|f| (f.numerator, f.denominator)),
        Some((2, 4))
    );
    // And the daemon goes on: a good file is applied at the next SIGHUP.
    std::fs::write(&file, entry("changed", "2/4", "consecutive_failures = 3")).expect("fix");
    hangup_until(&daemon, "[[protectors]] applied", 2).await;
    daemon.terminate().await;
}

/// The failure limit of `name` as `replica` sees it.
async fn failure_limit(replica: &Circuitd, name: &str) -> Result<(u32, u32), tonic::Status> {
    let p = get(replica, name)
        .await?
        .policy
        .and_then(|p| p.failure_limit)
        .expect("a protector's policy has its failure limit");
    Ok((p.numerator, p.denominator))
}

/// SIGHUP to `replica`, waiting until it has logged one more line holding `marker`.
async fn hangup_once_more(replica: &Circuitd, marker: &str) {
    let before = replica.stderr().matches(marker).count();
    hangup_until(replica, marker, before + 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_only_the_leader_applies_its_file_on_sighup() {
    let dir = TempDir::new("cluster-reload");
    let file = dir.path().join("circuitd.toml");
    std::fs::write(&file, entry("declared", "1/1", "")).expect("write");
    let etcd = Etcd::single().await;
    let replicas = Replicas::start(&etcd, 2, &["--config", file.to_str().expect("utf-8")]).await;
    let leader = replicas.leader().await;
    let follower = 1 - leader;
    // The file as the cluster started: applied by the replica that leads.
    eventually(
        async || failure_limit(replicas.replica(leader), "declared").await,
        |e| format!("the declared protector on the leader: {e}"),
    )
    .await;

    std::fs::write(&file, entry("declared", "2/4", "") + &entry("added", "1/1", "")).expect("rewrite");
    // A follower's SIGHUP says it skips, and changes nothing.
    hangup_once_more(replicas.replica(follower), "this replica does not lead").await;
    for i in [leader, follower] {
        let added = failure_limit(replicas.replica(i), "added").await;
        assert_eq!(
            added.map_err(|e| e.code()),
            Err(tonic::Code::NotFound),
            "replica {i}"
        );
        let declared = failure_limit(replicas.replica(i), "declared").await;
        assert_eq!(declared.map_err(|e| e.code()), Ok((1, 1)), "replica {i}");
    }

    // The leader's applies it, and every replica then sees it.
    hangup_once_more(replicas.replica(leader), "[[protectors]] applied").await;
    for i in [leader, follower] {
        for (name, want) in [("declared", (2, 4)), ("added", (1, 1))] {
            eventually(
                async || match failure_limit(replicas.replica(i), name).await {
                    Ok(got) if got == want => Ok(()),
                    other => Err(other),
                },
                |got| format!("replica {i}: {name} has {got:?}, not {want:?}"),
            )
            .await;
        }
    }
}
