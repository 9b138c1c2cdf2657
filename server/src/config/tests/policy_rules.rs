//! The optional rules of a `[[protectors]]` entry (proto/SEMANTICS.md section 2a): read
//! under the contract's names, kept in `Config::protector_rules`, and a broken one
//! refuses the start naming the protector and the field.

use std::time::Duration;

use resilient_circuit_breaker::{Multiplier, Rules};

use super::*;

#[test]
fn rules_are_read_under_the_contracts_names() {
    let extra = r#"
window_duration = "30s"
minimum_calls = 20
consecutive_failures = 5
slow_call_duration = "250ms"
slow_call_limit = "1/2"
cooldown_multiplier = 2.5
max_cooldown = "10m"
shadow = true
history_size = 1000
"#;
    let file = protector("plain", "") + &protector("rich", extra);
    let config = load_ok(&["--config", "r.toml"], &[], Some(&file)).config;
    let rules = Rules {
        window_duration: Some(Duration::from_secs(30)),
        minimum_calls: Some(20),
        consecutive_failures: 5,
        slow_call_duration: Some(Duration::from_millis(250)),
        slow_call_limit: Some((1, 2)),
        cooldown_multiplier: Multiplier::thousandths(2_500),
        max_cooldown: Some(Duration::from_secs(600)),
        shadow: true,
        history_size: 1000,
    };
    assert_eq!(config.protector_rules.get("rich"), Some(&rules));
    assert_eq!(config.protector_rules.get("plain"), None, "no rules, no entry");
    let rich = &config.protectors[1];
    let policy = rich.checked_policy(&config.protector_rules).expect("valid");
    assert_eq!(policy.rules(), rules);
}

#[test]
fn a_broken_rule_names_the_protector_and_the_field() {
    for (extra, field) in [
        ("window_duration = \"0s\"", "window_duration"),
        ("minimum_calls = 3", "minimum_calls"),
        ("consecutive_failures = 10001", "consecutive_failures"),
        ("slow_call_duration = \"1s\"", "slow_call_duration"),
        ("slow_call_limit = \"1/2\"", "slow_call_limit"),
        ("cooldown_multiplier = 0.5", "cooldown_multiplier"),
        ("cooldown_multiplier = 1e300", "cooldown_multiplier"),
        ("cooldown_multiplier = -3.0", "cooldown_multiplier"),
        ("max_cooldown = \"500ms\"", "max_cooldown"),
        ("history_size = 1000001", "history_size"),
    ] {
        let file = protector("orders", extra);
        let (err, msg) = load_err(&["--config", "p.toml"], &[], Some(&file));
        let ConfigError::Policy { name, error, .. } = &err else {
            panic!("{extra}: {err:?}")
        };
        assert_eq!((name.as_str(), error.field()), ("orders", field), "{extra}");
        assert!(msg.contains("\"orders\"") && msg.contains(field), "{msg}");
    }
}
