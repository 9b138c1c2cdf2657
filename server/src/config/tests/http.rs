//! `--http-listen` and `--metrics-max-protectors`.

use super::{load_err, load_ok};

#[test]
fn the_http_listener_is_off_unless_set_and_a_third_address() {
    let defaults = load_ok(&[], &[], None).config;
    assert_eq!(defaults.http_listen, None);
    assert_eq!(defaults.metrics_max_protectors, 1000);

    let flag = load_ok(&["--http-listen", "127.0.0.1:9464"], &[], None).config;
    assert_eq!(flag.http_listen, Some("127.0.0.1:9464".parse().unwrap()));
    let env = load_ok(&[], &[("CIRCUITD_HTTP_LISTEN", "127.0.0.1:9465")], None).config;
    assert_eq!(env.http_listen, Some("127.0.0.1:9465".parse().unwrap()));
    let file = "http_listen = \"127.0.0.1:9466\"\nmetrics_max_protectors = 50\n";
    let from_file = load_ok(&["--config", "c.toml"], &[], Some(file)).config;
    assert_eq!(from_file.http_listen, Some("127.0.0.1:9466".parse().unwrap()));
    assert_eq!(from_file.metrics_max_protectors, 50);
    let flag_wins = load_ok(
        &["--config", "c.toml", "--metrics-max-protectors", "7"],
        &[],
        Some(file),
    );
    assert_eq!(flag_wins.config.metrics_max_protectors, 7);

    for clash in [
        ["--listen", "127.0.0.1:7000", "--http-listen", "127.0.0.1:7000"],
        [
            "--admin-listen",
            "127.0.0.1:7001",
            "--http-listen",
            "127.0.0.1:7001",
        ],
    ] {
        let (_, message) = load_err(&clash, &[], None);
        assert!(
            message.contains("--http-listen") && message.contains("must differ"),
            "{message}"
        );
    }
    // Port 0 is a port of the OS's choosing each time.
    load_ok(
        &["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"],
        &[],
        None,
    );
    let (_, message) = load_err(&["--http-listen", "nowhere"], &[], None);
    assert!(message.contains("--http-listen"), "{message}");
}
