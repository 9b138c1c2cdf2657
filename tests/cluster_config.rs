//! Replicated mode's configuration: a replica that cannot be one of a sound cluster
//! refuses to start, exits non-zero and says why, naming what is wrong (the etcd URL,
//! the prefix, the address, the flag). And the etcd harness itself: a three-member
//! etcd keeps serving with one member killed, and takes it back.

use std::net::TcpListener;

use support::process::{Circuitd, Exit};
use support::*;

/// Starts the binary with `args`, expects it to refuse within [`DEADLINE`] with a
/// non-zero exit and no panic, and returns how it exited.
async fn refuses(args: &[&str]) -> Exit {
    // Built (or found) first: the first build must not count against the bound.
    support::process::binary();
    let exit = tokio::time::timeout(DEADLINE, Circuitd::launch_args(args))
        .await
        .unwrap_or_else(|_| panic!("circuitd {args:?} neither served nor exited within {DEADLINE:?}"))
        .refused();
    exit.assert_no_panic();
    assert!(
        !exit.status.success(),
        "circuitd {args:?} exited with success:\n{}",
        exit.stderr
    );
    // A binary without replicated mode refuses the flags too, but for the wrong reason.
    assert!(
        !exit.stderr.contains("unexpected argument"),
        "circuitd does not know replicated mode's flags (built without the etcd feature?):\n{}",
        exit.stderr
    );
    exit
}

/// A replica's flags: etcd at `urls`, the cluster under `prefix`, on a free port,
/// then `extra`.
fn replica<'a>(urls: &'a str, prefix: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--etcd", urls, "--etcd-prefix", prefix, "--listen", "127.0.0.1:0"];
    args.extend(extra);
    args
}

/// Fails the test unless `stderr` contains every one of `words` (ignoring case).
#[track_caller]
fn assert_says(stderr: &str, words: &[&str]) {
    let lower = stderr.to_lowercase();
    for word in words {
        assert!(
            lower.contains(&word.to_lowercase()),
            "expected {word:?} in circuitd's message:\n{stderr}"
        );
    }
}

/// A loopback URL nothing listens on (the port was free a moment ago).
fn closed_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn an_unreachable_etcd_is_refused_naming_the_url() {
    let url = closed_url();
    let prefix = unique_prefix("unreachable");
    let exit = refuses(&replica(&url, &prefix, &[])).await;
    assert_says(&exit.stderr, &["unreachable", &url]);
}

#[tokio::test]
async fn a_prefix_holding_foreign_data_is_refused_naming_the_prefix() {
    let etcd = Etcd::single().await;
    let prefix = unique_prefix("foreign");
    etcd.put(&format!("{prefix}config/app.yaml"), "replicas: 3").await;
    let exit = refuses(&replica(&etcd.urls_arg(), &prefix, &[])).await;
    assert_says(&exit.stderr, &["not a resilient-circuit cluster", &prefix]);
    // Refusing must leave the foreign data as it was.
    assert_eq!(
        etcd.entries(&prefix).await,
        vec![(format!("{prefix}config/app.yaml"), b"replicas: 3".to_vec())]
    );
}

#[tokio::test]
async fn a_second_replica_advertising_the_same_address_is_refused_naming_it() {
    let etcd = Etcd::single().await;
    let replicas = Replicas::start(&etcd, 1, &[]).await;
    let taken = replicas.addr(0).to_string();
    let exit = refuses(&replica(
        &etcd.urls_arg(),
        replicas.prefix(),
        &["--advertise", &taken],
    ))
    .await;
    assert_says(&exit.stderr, &["already advertised", &taken]);
    // The first replica is not disturbed.
    assert!(replicas.role(0).await.is_some(), "{}", replicas.stderrs());
}

#[tokio::test]
async fn etcd_with_a_data_dir_is_refused_naming_both_flags() {
    let dir = TempDir::new("etcd-and-data-dir");
    let url = closed_url();
    let data_dir = dir.path().to_str().expect("a UTF-8 temporary path");
    let exit = refuses(&["--etcd", &url, "--data-dir", data_dir, "--listen", "127.0.0.1:0"]).await;
    assert_says(&exit.stderr, &["--etcd", "--data-dir"]);
}

#[tokio::test]
async fn a_malformed_etcd_url_or_prefix_is_refused_naming_the_flag() {
    let url = closed_url();
    let cases: [(&[&str], &str); 4] = [
        (&["--etcd", "not a url"], "--etcd"),
        (&["--etcd", "ftp://127.0.0.1:2379"], "--etcd"),
        (
            &["--etcd", &url, "--etcd-prefix", "/no-trailing-slash"],
            "--etcd-prefix",
        ),
        (&["--etcd", &url, "--etcd-prefix", ""], "--etcd-prefix"),
    ];
    for (flags, named) in cases {
        let mut args = flags.to_vec();
        args.extend(["--listen", "127.0.0.1:0"]);
        let exit = refuses(&args).await;
        assert_says(&exit.stderr, &[named]);
    }
}

/// The harness's own promise, which the failover tests rely on: a three-member etcd
/// serves reads and writes with one member killed, and the member rejoins on restart.
#[tokio::test]
async fn etcd_harness_three_members_survive_one_killed_and_take_it_back() {
    let mut etcd = EtcdCluster::three().await;
    assert_eq!(etcd.endpoints().len(), 3);
    assert_eq!(etcd.urls_arg().split(',').count(), 3);
    let prefix = unique_prefix("harness");
    etcd.put(&format!("{prefix}a"), "1").await;
    assert_eq!(etcd.get(&format!("{prefix}a")).await, Some(b"1".to_vec()));

    // The etcd leader each time: the member whose loss costs an election.
    for round in 0..3 {
        let victim = etcd.leader().await;
        etcd.kill(victim);
        assert_eq!(etcd.live_endpoints().len(), 2);
        let key = format!("{prefix}round-{round}");
        etcd.put(&key, "2").await;
        assert_eq!(etcd.get(&key).await, Some(b"2".to_vec()));

        // Back on its ports and data: it serves, and has what was written without it.
        etcd.restart(victim).await;
        assert_eq!(etcd.get_from(victim, &key).await, Some(b"2".to_vec()));
    }
    assert_eq!(etcd.keys(&prefix).await.len(), 4);

    // Frozen, a member neither answers nor holds the others back.
    etcd.freeze(1);
    etcd.put(&format!("{prefix}frozen"), "3").await;
    etcd.thaw(1);
    etcd.kill_all();
    assert!(etcd.live_endpoints().is_empty());
}
