//! The `[connections]` settings: keepalives and the handshake and idle timeouts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{load_err, load_ok};
use crate::config::{Config, ConfigError, ConnectionConfig, Settings};

const FILE: &str = r#"
[connections]
http2_keepalive_interval = "45s"
http2_keepalive_timeout = "5s"
tcp_keepalive = "2m"
handshake_timeout = "3s"
idle_timeout = "10m"
"#;

#[test]
fn defaults_are_sane() {
    let d = ConnectionConfig::default();
    assert_eq!(d.http2_keepalive_interval, Duration::from_secs(30));
    assert_eq!(d.http2_keepalive_timeout, Duration::from_secs(10));
    assert_eq!(d.tcp_keepalive, Duration::from_secs(60));
    assert_eq!(d.handshake_timeout, Duration::from_secs(10));
    assert_eq!(d.idle_timeout, Duration::from_secs(3600));
    assert_eq!(load_ok(&[], &[], None).config.connections, d);
}

#[test]
fn the_example_file_states_the_defaults() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("circuitd.example.toml");
    let argv = ["circuitd".into(), "--config".into(), path.into_os_string()];
    let s = Settings::load(argv, &HashMap::new()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.config.connections, Config::default().connections);
}

#[test]
fn from_the_file_the_environment_and_flags() {
    let s = load_ok(&["--config", "c.toml"], &[], Some(FILE));
    let want = ConnectionConfig {
        http2_keepalive_interval: Duration::from_secs(45),
        http2_keepalive_timeout: Duration::from_secs(5),
        tcp_keepalive: Duration::from_secs(120),
        handshake_timeout: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(600),
    };
    assert_eq!(s.config.connections, want);

    let env = [
        ("CIRCUITD_IDLE_TIMEOUT", "90s"),
        ("CIRCUITD_HANDSHAKE_TIMEOUT", "250ms"),
        ("CIRCUITD_TCP_KEEPALIVE", "30s"),
    ];
    let argv = [
        "--config",
        "c.toml",
        "--handshake-timeout",
        "1s",
        "--http2-keepalive-interval=20s",
        "--http2-keepalive-timeout=2s",
    ];
    let c = load_ok(&argv, &env, Some(FILE)).config.connections;
    assert_eq!(c.idle_timeout, Duration::from_secs(90), "from the environment");
    assert_eq!(c.handshake_timeout, Duration::from_secs(1), "the flag wins");
    assert_eq!(c.tcp_keepalive, Duration::from_secs(30), "from the environment");
    assert_eq!(c.http2_keepalive_interval, Duration::from_secs(20));
    assert_eq!(c.http2_keepalive_timeout, Duration::from_secs(2));
}

/// Flags, environment, file, what the error must name, and the rule it must state.
type Case<'a> = (
    &'a [&'a str],
    &'a [(&'a str, &'a str)],
    Option<&'a str>,
    &'a str,
    &'a str,
);

#[test]
fn zero_and_absurd_values_are_refused_naming_the_setting() {
    let cases: [Case<'_>; 9] = [
        (&["--idle-timeout", "0s"], &[], None, "--idle-timeout", "got 0s"),
        (
            &["--handshake-timeout=0ms"],
            &[],
            None,
            "--handshake-timeout",
            "got 0s",
        ),
        (
            &["--http2-keepalive-timeout=0s"],
            &[],
            None,
            "--http2-keepalive-timeout",
            "got 0s",
        ),
        (
            &["--http2-keepalive-interval=10ms"],
            &[],
            None,
            "--http2-keepalive-interval",
            "between 1s and 1day",
        ),
        (
            &["--idle-timeout=400days"],
            &[],
            None,
            "--idle-timeout",
            "between 1ms and 1day",
        ),
        (
            &[],
            &[("CIRCUITD_TCP_KEEPALIVE", "0s")],
            None,
            "CIRCUITD_TCP_KEEPALIVE",
            "between 1s and",
        ),
        (&["--tcp-keepalive=10h"], &[], None, "--tcp-keepalive", "9h 6m 7s"),
        (
            &["--tcp-keepalive=1500ms"],
            &[],
            None,
            "--tcp-keepalive",
            "whole seconds",
        ),
        (
            &["--config", "c.toml"],
            &[],
            Some("[connections]\nhandshake_timeout = \"0s\"\n"),
            "connections.handshake_timeout",
            "got 0s",
        ),
    ];
    for (argv, env, file, names, rule) in cases {
        let (err, message) = load_err(argv, env, file);
        assert!(matches!(err, ConfigError::Invalid { .. }), "{argv:?}: {err:?}");
        assert!(message.contains(names), "{argv:?}: {message}");
        assert!(message.contains(rule), "{argv:?}: {message}");
    }
}

#[test]
fn an_unknown_connections_key_is_refused() {
    let (_, message) = load_err(
        &["--config", "c.toml"],
        &[],
        Some("[connections]\nidle = \"5m\"\n"),
    );
    assert!(message.contains("idle"), "{message}");
}
