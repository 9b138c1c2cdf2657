//! Replicated mode's settings (`--etcd` and its companions), and the admin listener.

use std::time::Duration;

use super::*;

#[test]
fn without_etcd_there_is_no_cluster() {
    assert_eq!(load_ok(&[], &[], None).config.cluster, None);
}

#[test]
fn etcd_urls_are_normalised_and_the_defaults_apply() {
    let settings = load_ok(&["--etcd", "127.0.0.1:2379, http://10.0.0.2:2379/"], &[], None);
    let cluster = settings.config.cluster.expect("replicated mode");
    assert_eq!(cluster.etcd, ["http://127.0.0.1:2379", "http://10.0.0.2:2379"]);
    assert_eq!(cluster.prefix, "/resilient-circuit/");
    assert_eq!(cluster.advertise, None);
    assert_eq!(cluster.lease_ttl, Duration::from_secs(2));
    assert_eq!(cluster.snapshot_bytes, 16 * 1024 * 1024);
    // The state lives in etcd: no data directory.
    assert_eq!(settings.config.store, None);
}

#[test]
fn the_environment_and_the_file_set_replicated_mode_too() {
    let env = [
        ("CIRCUITD_ETCD", "http://e1:2379"),
        ("CIRCUITD_ADVERTISE", "10.0.0.9:50051"),
    ];
    let cluster = load_ok(&[], &env, None).config.cluster.unwrap();
    assert_eq!(cluster.advertise.as_deref(), Some("10.0.0.9:50051"));
    let file = "[cluster]\netcd = \"e1:2379,e2:2379\"\nprefix = \"/blue/\"\nlease_ttl = \"5s\"\n";
    let cluster = load_ok(&["--config", "c.toml"], &[], Some(file))
        .config
        .cluster
        .unwrap();
    assert_eq!(cluster.etcd, ["http://e1:2379", "http://e2:2379"]);
    assert_eq!(
        (cluster.prefix.as_str(), cluster.lease_ttl),
        ("/blue/", Duration::from_secs(5))
    );
}

#[test]
fn bad_cluster_settings_are_refused_naming_the_setting() {
    let cases: &[(&[&str], &str)] = &[
        (&["--etcd", "https://e1:2379"], "--etcd"),
        (&["--etcd", "e1"], "not host:port"),
        (&["--etcd", "e1:2379,"], "--etcd"),
        (
            &["--etcd", "e1:2379", "--etcd-prefix", "/no-slash"],
            "--etcd-prefix",
        ),
        (
            &["--etcd", "e1:2379", "--etcd-prefix", "relative/"],
            "must start and end with '/'",
        ),
        (&["--etcd", "e1:2379", "--advertise", "nowhere"], "--advertise"),
        (
            &["--etcd", "e1:2379", "--etcd-lease-ttl", "1s"],
            "--etcd-lease-ttl",
        ),
        (
            &["--etcd", "e1:2379", "--etcd-lease-ttl", "2500ms"],
            "whole seconds",
        ),
        (&["--etcd", "e1:2379", "--data-dir", "d"], "--data-dir"),
        (&["--etcd", "e1:2379", "--in-memory"], "--in-memory"),
        (
            &["--etcd", "e1:2379", "--etcd-snapshot-bytes", "0"],
            "--etcd-snapshot-bytes",
        ),
    ];
    for (argv, expected) in cases {
        let (_, message) = load_err(argv, &[], None);
        assert!(message.contains(expected), "{argv:?}: {message}");
    }
}

#[test]
fn an_admin_listener_is_a_second_address() {
    let settings = load_ok(&["--admin-listen", "127.0.0.1:50052"], &[], None);
    assert_eq!(
        settings.config.admin_listen,
        Some("127.0.0.1:50052".parse().unwrap())
    );
    assert_eq!(load_ok(&[], &[], None).config.admin_listen, None);
    let (_, message) = load_err(
        &["--listen", "127.0.0.1:7000", "--admin-listen", "127.0.0.1:7000"],
        &[],
        None,
    );
    assert!(
        message.contains("--admin-listen") && message.contains("must differ"),
        "{message}"
    );
    // Port 0 twice is two different ports.
    load_ok(
        &["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        &[],
        None,
    );
}

#[test]
fn the_admin_address_is_advertised_only_with_an_admin_listener() {
    let admin = ["--admin-listen", "127.0.0.1:7001"];
    let flag = [
        &admin[..],
        &["--etcd", "e1:2379", "--advertise-admin", "10.0.0.9:7001"],
    ]
    .concat();
    let cluster = load_ok(&flag, &[], None).config.cluster.unwrap();
    assert_eq!(cluster.advertise_admin.as_deref(), Some("10.0.0.9:7001"));
    let env = [
        ("CIRCUITD_ETCD", "e1:2379"),
        ("CIRCUITD_ADMIN_LISTEN", "127.0.0.1:7001"),
        ("CIRCUITD_ADVERTISE_ADMIN", "admin.local:7001"),
    ];
    let cluster = load_ok(&[], &env, None).config.cluster.unwrap();
    assert_eq!(cluster.advertise_admin.as_deref(), Some("admin.local:7001"));
    let file = "admin_listen = \"127.0.0.1:7001\"\n[cluster]\netcd = \"e1:2379\"\nadvertise_admin = \"10.0.0.9:7001\"\n";
    let cluster = load_ok(&["--config", "c.toml"], &[], Some(file))
        .config
        .cluster
        .unwrap();
    assert_eq!(cluster.advertise_admin.as_deref(), Some("10.0.0.9:7001"));
    // Unset: the binary fills in the bound admin address.
    let cluster = load_ok(&[&admin[..], &["--etcd", "e1:2379"]].concat(), &[], None)
        .config
        .cluster
        .unwrap();
    assert_eq!(cluster.advertise_admin, None);

    let cases: &[(&[&str], &str)] = &[
        (
            &["--etcd", "e1:2379", "--advertise-admin", "10.0.0.9:7001"],
            "needs an admin listener (--admin-listen)",
        ),
        (
            &[
                "--etcd",
                "e1:2379",
                "--admin-listen",
                "127.0.0.1:7001",
                "--advertise-admin",
                "nowhere",
            ],
            "--advertise-admin",
        ),
    ];
    for (argv, expected) in cases {
        let (_, message) = load_err(argv, &[], None);
        assert!(message.contains(expected), "{argv:?}: {message}");
    }
}
