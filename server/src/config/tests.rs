use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use resilient_circuit_breaker::PolicySpec;

use super::*;

/// Loads with `argv` after the program name, `env` as the environment, and `file` as the
/// contents of whatever file `--config` names (none: reading it fails as missing).
#[track_caller]
fn load(argv: &[&str], env: &[(&str, &str)], file: Option<&str>) -> Result<Settings, ConfigError> {
    let argv = std::iter::once("circuitd").chain(argv.iter().copied());
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Settings::load_with(argv, &env, |_| match file {
        Some(text) => Ok(text.to_owned()),
        None => Err(io::Error::from(io::ErrorKind::NotFound)),
    })
}

#[track_caller]
fn load_ok(argv: &[&str], env: &[(&str, &str)], file: Option<&str>) -> Settings {
    load(argv, env, file).unwrap_or_else(|e| panic!("expected Ok, got: {e}"))
}

#[track_caller]
fn load_err(argv: &[&str], env: &[(&str, &str)], file: Option<&str>) -> (ConfigError, String) {
    match load(argv, env, file) {
        Ok(s) => panic!("expected an error, got {s:?}"),
        Err(e) => {
            let message = e.to_string();
            (e, message)
        }
    }
}

const CUSTOM: &str = r#"
listen = "0.0.0.0:7000"
log_format = "json"
shutdown_grace = "750ms"
[limits]
max_protectors = 11
max_watchers = 12
max_name_len = 13
max_message_bytes = 14
max_concurrent_streams = 15
max_watch_names = 16
max_watchers_per_identity = 19
max_sessions_per_identity = 20
max_protectors_per_identity = 21
[watch]
buffer = 17
history = 18
progress_interval = "2m"
"#;

#[test]
fn defaults_without_any_source() {
    let s = load_ok(&[], &[], None);
    assert_eq!(
        s,
        Settings {
            config: binary_defaults(),
            log_format: LogFormat::Text,
        }
    );
}

#[test]
fn worker_threads_from_each_source_and_out_of_range_refused_naming_it() {
    // flag over variable over file; unset, the runtime's default (one per core).
    let file = "worker_threads = 3\n";
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], Option<usize>);
    let cases: [Case; 4] = [
        (
            &["--worker-threads", "1"],
            &[("CIRCUITD_WORKER_THREADS", "2")],
            Some(1),
        ),
        (
            &["--config", "w.toml"],
            &[("CIRCUITD_WORKER_THREADS", "2")],
            Some(2),
        ),
        (&["--config", "w.toml"], &[], Some(3)),
        (&[], &[], None),
    ];
    for (argv, env, want) in cases {
        let with_file = argv.contains(&"--config").then_some(file);
        let settings = load_ok(argv, env, with_file);
        assert_eq!(settings.config.connection_threads, want, "{argv:?} {env:?}");
    }
    for bad in ["0", "1025"] {
        let (err, msg) = load_err(&["--worker-threads", bad], &[], None);
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    setting: "worker_threads",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(msg.starts_with("--worker-threads must be 1 to 1024"), "{msg}");
        assert!(msg.contains(&format!("got {bad}")), "{msg}");
    }
    let (_, msg) = load_err(&["--config", "w.toml"], &[], Some("worker_threads = 0\n"));
    assert!(msg.contains("w.toml") && msg.contains("worker_threads"), "{msg}");
    let (_, msg) = load_err(&["--worker-threads", "many"], &[], None);
    assert!(msg.contains("many"), "{msg}");
}

#[test]
fn the_example_file_parses_and_states_the_defaults() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("circuitd.example.toml");
    let argv = ["circuitd".into(), "--config".into(), path.into_os_string()];
    let s = Settings::load(argv, &HashMap::new()).unwrap_or_else(|e| panic!("{e}"));
    let defaults = Config::default();
    assert_eq!(s.log_format, LogFormat::Text);
    assert_eq!(s.config.listen, defaults.listen);
    assert_eq!(s.config.limits, defaults.limits);
    assert_eq!(s.config.watch, defaults.watch);
    assert_eq!(s.config.shutdown_grace, defaults.shutdown_grace);
    let payments = ProtectorConfig {
        name: "payments".into(),
        policy: PolicySpec {
            cooldown: Duration::from_secs(30),
            failure_limit: (2, 5),
            success_limit: Some((3, 5)),
            trial_permits: Some(3),
            permit_ttl: Duration::from_secs(30),
            auto_half_open: false,
        },
    };
    let search = ProtectorConfig {
        name: "search".into(),
        policy: PolicySpec {
            cooldown: Duration::from_secs(5),
            ..PolicySpec::default()
        },
    };
    assert_eq!(s.config.protectors, vec![payments, search]);
}

#[test]
fn file_values_replace_defaults() {
    let s = load_ok(&["--config", "c.toml"], &[], Some(CUSTOM));
    assert_eq!(s.log_format, LogFormat::Json);
    let c = s.config;
    assert_eq!(c.listen, "0.0.0.0:7000".parse().unwrap());
    assert_eq!(c.shutdown_grace, Duration::from_millis(750));
    let limits = Limits {
        max_protectors: 11,
        max_watchers: 12,
        max_name_len: 13,
        max_message_bytes: 14,
        max_concurrent_streams: 15,
        max_watch_names: 16,
        max_connections: 10_000,
        max_watchers_per_identity: 19,
        max_sessions_per_identity: 20,
        max_protectors_per_identity: 21,
        max_history_entries: 1_000_000,
    };
    assert_eq!(c.limits, limits);
    let watch = WatchConfig {
        buffer: 17,
        history: 18,
        progress_interval: Duration::from_secs(120),
    };
    assert_eq!(c.watch, watch);
}

#[test]
fn environment_overrides_the_file_and_the_file_fills_the_rest() {
    let env = [
        ("CIRCUITD_CONFIG", "c.toml"),
        ("CIRCUITD_LISTEN", "127.0.0.1:9000"),
        ("CIRCUITD_LOG_FORMAT", "text"),
        ("CIRCUITD_MAX_PROTECTORS", "21"),
        ("CIRCUITD_MAX_CONCURRENT_STREAMS", "25"),
        ("CIRCUITD_WATCH_BUFFER", "27"),
        ("CIRCUITD_PROGRESS_INTERVAL", "500ms"),
        ("CIRCUITD_SHUTDOWN_GRACE", "1s"),
    ];
    let s = load_ok(&[], &env, Some(CUSTOM));
    assert_eq!(s.log_format, LogFormat::Text);
    assert_eq!(s.config.listen, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(s.config.limits.max_protectors, 21);
    assert_eq!(s.config.limits.max_concurrent_streams, 25);
    assert_eq!(s.config.limits.max_watchers, 12, "from the file");
    assert_eq!(s.config.watch.buffer, 27);
    assert_eq!(s.config.watch.history, 18, "from the file");
    assert_eq!(s.config.watch.progress_interval, Duration::from_millis(500));
    assert_eq!(s.config.shutdown_grace, Duration::from_secs(1));
}

#[test]
fn flags_override_the_environment() {
    let env = [
        ("CIRCUITD_MAX_PROTECTORS", "21"),
        ("CIRCUITD_MAX_WATCH_NAMES", "26"),
        ("CIRCUITD_LOG_FORMAT", "text"),
    ];
    let argv = [
        "--config",
        "c.toml",
        "--max-protectors",
        "31",
        "--log-format",
        "json",
        "--watch-history=38",
    ];
    let s = load_ok(&argv, &env, Some(CUSTOM));
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(s.config.limits.max_protectors, 31);
    assert_eq!(s.config.limits.max_watch_names, 26, "from the environment");
    assert_eq!(s.config.watch.history, 38);
    assert_eq!(s.config.watch.buffer, 17, "from the file");
}

#[test]
fn an_empty_variable_counts_as_unset() {
    let s = load_ok(
        &[],
        &[("CIRCUITD_MAX_WATCHERS", ""), ("CIRCUITD_CONFIG", "")],
        None,
    );
    assert_eq!(s.config, binary_defaults());
}

#[test]
fn a_missing_file_named_explicitly_is_an_error() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("no-such-circuitd.toml");
    let argv = [
        "circuitd".into(),
        "--config".into(),
        path.clone().into_os_string(),
    ];
    let err = Settings::load(argv, &HashMap::new()).unwrap_err();
    assert!(
        matches!(&err, ConfigError::ReadFile { path: p, .. } if *p == path),
        "{err:?}"
    );
    assert!(err.to_string().contains("no-such-circuitd.toml"), "{err}");
}

#[test]
fn zero_is_refused_for_every_limit_naming_its_source() {
    let cases = [
        ("max-protectors", "limits.max_protectors"),
        ("max-watchers", "limits.max_watchers"),
        ("max-name-len", "limits.max_name_len"),
        ("max-message-bytes", "limits.max_message_bytes"),
        ("max-concurrent-streams", "limits.max_concurrent_streams"),
        ("max-watch-names", "limits.max_watch_names"),
        ("max-connections", "limits.max_connections"),
        ("max-watchers-per-identity", "limits.max_watchers_per_identity"),
        ("max-sessions-per-identity", "limits.max_sessions_per_identity"),
        (
            "max-protectors-per-identity",
            "limits.max_protectors_per_identity",
        ),
        ("watch-buffer", "watch.buffer"),
        ("watch-history", "watch.history"),
    ];
    for (flag, key) in cases {
        let flag_arg = format!("--{flag}=0");
        let (err, msg) = load_err(&[&flag_arg], &[], None);
        assert!(
            matches!(err, ConfigError::Invalid { setting, .. } if setting == key),
            "{err:?}"
        );
        assert!(msg.starts_with(&format!("--{flag} must be")), "{msg}");

        let var = format!("CIRCUITD_{}", flag.replace('-', "_").to_uppercase());
        let (_, msg) = load_err(&[], &[(&var, "0")], None);
        assert!(msg.contains(&var), "{msg}");

        let (section, name) = key.split_once('.').unwrap();
        let file = format!("[{section}]\n{name} = 0\n");
        let (_, msg) = load_err(&["--config", "z.toml"], &[], Some(&file));
        assert!(
            msg.contains("z.toml") && msg.contains(key) && msg.contains("got 0"),
            "{msg}"
        );
    }
}

#[test]
fn max_name_len_is_bounded_by_the_contract() {
    let (_, msg) = load_err(&["--max-name-len", "257"], &[], None);
    assert!(
        msg.contains("--max-name-len") && msg.contains("between 1 and 256"),
        "{msg}"
    );
    assert_eq!(
        load_ok(&["--max-name-len", "256"], &[], None)
            .config
            .limits
            .max_name_len,
        256
    );
}

#[test]
fn a_zero_progress_interval_is_refused() {
    let (err, msg) = load_err(&[], &[("CIRCUITD_PROGRESS_INTERVAL", "0s")], None);
    assert!(
        matches!(
            err,
            ConfigError::Invalid {
                setting: "watch.progress_interval",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(msg.contains("CIRCUITD_PROGRESS_INTERVAL"), "{msg}");
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    for (var, value) in [
        ("CIRCUITD_MAX_WATCHERS", "many"),
        ("CIRCUITD_LISTEN", "localhost"),
        ("CIRCUITD_LOG_FORMAT", "xml"),
        ("CIRCUITD_SHUTDOWN_GRACE", "5 parsecs"),
    ] {
        let (err, msg) = load_err(&[], &[(var, value)], None);
        assert!(
            matches!(&err, ConfigError::Env { var: v, .. } if v == var),
            "{err:?}"
        );
        assert!(msg.contains(var) && msg.contains(value), "{msg}");
    }
}

#[test]
fn bad_flags_are_clap_errors() {
    let (err, _) = load_err(&["--max-watchers", "-3"], &[], None);
    assert!(matches!(err, ConfigError::Args(_)), "{err:?}");
    let (err, _) = load_err(&["--no-such-flag"], &[], None);
    assert!(matches!(err, ConfigError::Args(_)), "{err:?}");
}

#[test]
fn help_lists_each_environment_variable() {
    let (err, _) = load_err(&["--help"], &[], None);
    let ConfigError::Args(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
    let help = e.render().to_string();
    for var in [
        "CIRCUITD_LISTEN",
        "CIRCUITD_CONFIG",
        "CIRCUITD_MAX_WATCH_NAMES",
        "CIRCUITD_SHUTDOWN_GRACE",
    ] {
        assert!(help.contains(var), "{var} missing from:\n{help}");
    }
}

#[test]
fn unknown_keys_are_refused_everywhere() {
    for (file, key) in [
        ("lisen = \"127.0.0.1:1\"\n", "lisen"),
        ("[limits]\nmax_protector = 3\n", "max_protector"),
        ("[watch]\nbuffers = 3\n", "buffers"),
        (
            "[[protectors]]\nname = \"a\"\ncooldown = \"1s\"\nfailure_limit = \"1/1\"\ncolor = 1\n",
            "color",
        ),
    ] {
        let (err, msg) = load_err(&["--config", "u.toml"], &[], Some(file));
        assert!(matches!(err, ConfigError::ParseFile { .. }), "{err:?}");
        assert!(msg.contains("u.toml") && msg.contains(key), "{msg}");
    }
}

#[test]
fn malformed_values_in_the_file_are_refused() {
    for (file, needle) in [
        ("shutdown_grace = \"soon\"\n", "invalid duration"),
        ("[watch]\nprogress_interval = 10\n", "progress_interval"),
        ("log_format = \"xml\"\n", "log_format"),
        ("[limits]\nmax_watchers = -1\n", "max_watchers"),
        (
            "[limits]\nmax_sessions_per_identity = \"many\"\n",
            "max_sessions_per_identity",
        ),
        (
            "[limits]\nmax_protectors_per_identity = -2\n",
            "max_protectors_per_identity",
        ),
        (
            "[[protectors]]\nname = \"a\"\ncooldown = \"1s\"\nfailure_limit = \"half\"\n",
            "invalid fraction",
        ),
        (
            "[[protectors]]\nname = \"a\"\nfailure_limit = \"1/2\"\n",
            "cooldown",
        ),
    ] {
        let (err, msg) = load_err(&["--config", "m.toml"], &[], Some(file));
        assert!(matches!(err, ConfigError::ParseFile { .. }), "{err:?}");
        assert!(msg.contains(needle), "{needle:?} not in {msg}");
    }
}

/// One `[[protectors]]` entry with a valid policy plus `extra` lines.
fn protector(name: &str, extra: &str) -> String {
    protector_with(name, "1s", "1/2", extra)
}

fn protector_with(name: &str, cooldown: &str, failure_limit: &str, extra: &str) -> String {
    // The TOML encoder escapes what a Rust debug string would not (control characters).
    let name = toml::Value::String(name.to_owned());
    format!(
        "[[protectors]]\nname = {name}\ncooldown = {cooldown:?}\nfailure_limit = {failure_limit:?}\n{extra}\n"
    )
}

#[test]
fn an_invalid_policy_names_the_protector_and_the_field() {
    for (cooldown, failure_limit, extra, field) in [
        ("1s", "6/5", "", "failure_limit"),
        ("1s", "1/2", "success_limit = \"0/5\"", "success_limit"),
        ("31days", "1/2", "", "cooldown"),
        ("1s", "1/2", "trial_permits = 10001", "trial_permits"),
        ("1s", "1/2", "permit_ttl = \"2h\"", "permit_ttl"),
    ] {
        let file = protector("ok", "") + &protector_with("orders", cooldown, failure_limit, extra);
        let (err, msg) = load_err(&["--config", "p.toml"], &[], Some(&file));
        let ConfigError::Policy {
            index, name, error, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!((*index, name.as_str(), error.field()), (1, "orders", field));
        assert!(msg.contains("\"orders\"") && msg.contains(field), "{msg}");
    }
}

#[test]
fn protector_names_follow_the_daemon_rules() {
    for name in ["", "has space", "tab\there", "bell\u{7}", "nbsp\u{a0}x"] {
        let (err, _) = load_err(&["--config", "n.toml"], &[], Some(&protector(name, "")));
        assert!(
            matches!(err, ConfigError::ProtectorName { index: 0, .. }),
            "{name:?}: {err:?}"
        );
    }
    let (err, msg) = load_err(
        &["--config", "n.toml", "--max-name-len", "4"],
        &[],
        Some(&protector("abcde", "")),
    );
    assert!(matches!(err, ConfigError::ProtectorName { .. }), "{err:?}");
    assert!(msg.contains("protectors[0].name \"abcde\": is too long"), "{msg}");
    let s = load_ok(
        &["--config", "n.toml", "--max-name-len", "5"],
        &[],
        Some(&protector("abcde", "")),
    );
    assert_eq!(s.config.protectors[0].name, "abcde");
    // Bytes, not characters, count; any letter is fine.
    let file = protector("über-ñ", "");
    load_ok(&["--config", "n.toml", "--max-name-len", "8"], &[], Some(&file));
    load_err(&["--config", "n.toml", "--max-name-len", "7"], &[], Some(&file));
}

#[test]
fn duplicate_protector_names_are_refused() {
    let file = format!(
        "{}{}{}",
        protector("a", ""),
        protector("b", ""),
        protector("a", "")
    );
    let (err, msg) = load_err(&["--config", "d.toml"], &[], Some(&file));
    assert!(
        matches!(&err, ConfigError::DuplicateProtector { name, first: 0, second: 2, .. } if name == "a"),
        "{err:?}"
    );
    assert!(msg.contains("d.toml"), "{msg}");
}

#[test]
fn more_protectors_than_the_limit_are_refused() {
    let file = format!("{}{}", protector("a", ""), protector("b", ""));
    let (err, _) = load_err(&["--config", "t.toml", "--max-protectors", "1"], &[], Some(&file));
    assert!(
        matches!(err, ConfigError::TooManyProtectors { count: 2, max: 1, .. }),
        "{err:?}"
    );
    assert_eq!(
        load_ok(&["--config", "t.toml", "--max-protectors", "2"], &[], Some(&file))
            .config
            .protectors
            .len(),
        2
    );
}

/// The binary persists by default, to `data` in the working directory; everything else
/// is the library's default.
fn binary_defaults() -> Config {
    Config {
        store: Some(crate::config::StoreSettings::new("data")),
        ..Config::default()
    }
}

#[test]
fn store_settings_from_flags_env_and_file() {
    let file = r#"
[store]
data_dir = "/var/lib/circuitd"
flush_interval = "250ms"
segment_bytes = 1048576
"#;
    let s = load_ok(&["--config", "c.toml"], &[], Some(file));
    let store = s.config.store.expect("durable");
    assert_eq!(store.data_dir, std::path::PathBuf::from("/var/lib/circuitd"));
    assert_eq!(store.flush_interval, std::time::Duration::from_millis(250));
    assert_eq!(store.segment_bytes, 1_048_576);
    assert!(!store.repair);

    let s = load_ok(
        &["--config", "c.toml", "--data-dir", "/tmp/x", "--repair"],
        &[],
        Some(file),
    );
    let store = s.config.store.expect("durable");
    assert_eq!(store.data_dir, std::path::PathBuf::from("/tmp/x"));
    assert!(store.repair);

    assert_eq!(
        load_ok(&["--config", "c.toml", "--in-memory"], &[], Some(file))
            .config
            .store,
        None
    );
    assert_eq!(
        load_ok(&[], &[("CIRCUITD_IN_MEMORY", "true")], None).config.store,
        None
    );
    assert!(load_ok(&["--in-memory=false"], &[], None).config.store.is_some());
}

mod cluster;
mod connections;
mod http;
mod identity_limits;
mod policy_rules;
mod tls;
mod tokens;
