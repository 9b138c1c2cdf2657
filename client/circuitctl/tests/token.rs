//! `circuitctl token new` and `--token` / `CIRCUIT_TOKEN` against a real `circuitd`
//! started with the table `token new` printed.

mod cli;

use std::time::Duration;

use cli::{circuitctl, run};
use support::TempDir;
use support::process::Circuitd;

const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn a_new_token_pasted_into_the_file_lets_its_holder_in() {
    let (printed, _) = run(
        assert_cmd::Command::cargo_bin("circuitctl")
            .expect("circuitctl is built")
            .args(["token", "new", "deploy-bot", "--role", "admin"]),
        0,
    );
    let (token, table) = printed.split_once('\n').expect("the token, then the table");
    assert_eq!(token.len(), 64, "32 bytes in hex: {printed}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{printed}");
    assert!(
        !table.contains(token),
        "the table holds the digest, not the token:\n{printed}"
    );
    let (again, _) = run(
        assert_cmd::Command::cargo_bin("circuitctl")
            .expect("circuitctl is built")
            .args(["token", "new", "deploy-bot", "--role", "admin"]),
        0,
    );
    assert_ne!(again.lines().next(), Some(token), "each token is fresh");

    let dir = TempDir::new("circuitctl-token");
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, table).expect("paste the table");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let daemon = runtime.block_on(Circuitd::start(
        &dir.path().join("data"),
        &["--tokens", tokens.to_str().expect("UTF-8")],
    ));
    let uri = daemon.uri();

    run(
        circuitctl(&uri, DEADLINE).args(["--token", token, "ensure", "guarded"]),
        0,
    );
    run(
        circuitctl(&uri, DEADLINE)
            .env("CIRCUIT_TOKEN", token)
            .args(["set-status", "guarded", "open"]),
        0,
    );
    let (_, refused) = run(circuitctl(&uri, DEADLINE).args(["get", "guarded"]), 1);
    assert!(refused.contains("no credential"), "{refused}");
    let (_, wrong) = run(
        circuitctl(&uri, DEADLINE).args(["--token", "not-it", "get", "guarded"]),
        1,
    );
    assert!(wrong.contains("unknown token"), "{wrong}");
    let exit = runtime.block_on(daemon.terminate());
    assert!(exit.stderr.contains("identity=\"deploy-bot\""), "{}", exit.stderr);
}
