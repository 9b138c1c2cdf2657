//! The tokens file's rules, the method table, the check and the refusal rate limit.

use std::path::Path;

use prost::Message;
use tokio::time::Instant;

use super::*;
use crate::subject::Subject;

const FILE: &str = "/etc/circuitd/tokens.toml";

fn entry(name: &str, sha256: &str, role: &str) -> String {
    format!("[[token]]\nname = {name:?}\nsha256 = {sha256:?}\nrole = {role:?}\n")
}

fn parse(text: &str) -> Result<Tokens, TokensError> {
    Tokens::parse(Path::new(FILE), text)
}

fn refused(text: &str) -> String {
    let e = parse(text).expect_err("the file should be refused");
    let message = e.to_string();
    assert!(message.starts_with(&format!("tokens file {FILE}: ")), "{message}");
    message
}

fn guard(text: &str) -> Guard {
    Guard {
        path: FILE.into(),
        mtls: true,
        loaded: ArcSwap::from_pointee(Loaded {
            tokens: parse(text).expect("valid"),
            cache: TokenCache::default(),
        }),
        refusals: Refusals::default(),
    }
}

fn certificate(subject: &str, role: &str, extra: &str) -> String {
    format!("[[certificate]]\nsubject = {subject:?}\nrole = {role:?}\n{extra}")
}

#[test]
fn a_valid_file_yields_its_tokens_and_finds_them_by_the_token() {
    let text = [
        entry("reader", &sha256_hex(b"r-token"), "read"),
        entry("app", &sha256_hex(b"d-token").to_uppercase(), "data"),
        entry("ops", &sha256_hex(b"a-token"), "admin"),
    ]
    .concat();
    let tokens = parse(&text).expect("valid");
    assert_eq!(tokens.len(), 3);
    let found = |t: &[u8]| tokens.find(t).map(|t| (t.name.to_string(), t.role));
    assert_eq!(found(b"r-token"), Some(("reader".into(), Role::Read)));
    assert_eq!(found(b"d-token"), Some(("app".into(), Role::Data)));
    assert_eq!(found(b"a-token"), Some(("ops".into(), Role::Admin)));
    assert_eq!(found(b"a-tokeN"), None);
    assert_eq!(found(b""), None);
}

#[test]
fn each_broken_rule_names_the_file_and_the_entry() {
    let good = entry("ok", &sha256_hex(b"x"), "read");
    let cases = [
        (
            format!("{good}{}", entry("ok", &sha256_hex(b"y"), "read")),
            "token[1] \"ok\": the name is already used by token[0]",
        ),
        (
            entry("bot", &"ab".repeat(31), "read"),
            "token[0] \"bot\": sha256 must be 64 hex digits",
        ),
        (
            entry("bot", &"zz".repeat(32), "read"),
            "token[0] \"bot\": sha256 must be 64 hex digits",
        ),
        (
            entry("bot", &sha256_hex(b"x"), "writer"),
            "token[0] \"bot\": unknown role \"writer\"",
        ),
        (
            format!("{good}{}", entry("twin", &sha256_hex(b"x"), "admin")),
            "token[1] \"twin\": the same token (sha256) as token[0] \"ok\"",
        ),
        (
            entry(" ", &sha256_hex(b"x"), "read"),
            "token[0] \" \": the name is empty",
        ),
        (String::new(), "no [[token]] or [[certificate]] table"),
    ];
    for (text, expected) in cases {
        let message = refused(&text);
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }
}

#[test]
fn unknown_keys_and_missing_ones_are_refused_by_name() {
    let good = entry("ok", &sha256_hex(b"y"), "read");
    let typo = format!(
        "{good}{}rol = \"read\"\n",
        entry("bot", &sha256_hex(b"x"), "read")
    );
    let message = refused(&typo);
    assert!(
        message.contains("token[1] \"bot\": unknown key \"rol\""),
        "{message}"
    );
    let top = format!("tokens = 1\n{good}");
    assert!(refused(&top).contains("tokens"), "{}", refused(&top));
    let missing = "[[token]]\nname = \"bot\"\nrole = \"read\"\n";
    assert!(
        refused(missing).contains("token[0] \"bot\": missing sha256"),
        "{}",
        refused(missing)
    );
    let number = "[[token]]\nname = \"bot\"\nsha256 = 1\nrole = \"read\"\n";
    assert!(
        refused(number).contains("sha256 must be a string (got integer)"),
        "{}",
        refused(number)
    );
}

#[test]
fn a_missing_file_is_named() {
    let e = Tokens::load(Path::new("/nonexistent/tokens.toml")).expect_err("missing");
    assert!(
        e.to_string().contains("/nonexistent/tokens.toml: cannot read it"),
        "{e}"
    );
}

#[test]
fn every_rpc_of_the_contract_is_in_the_table_and_nothing_else_is() {
    let set = prost_types::FileDescriptorSet::decode(resilient_circuit_api::DESCRIPTOR_SET)
        .expect("descriptor set");
    let mut contract = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                contract.push(format!(
                    "/{}.{}/{}",
                    file.package(),
                    service.name(),
                    method.name()
                ));
            }
        }
    }
    assert!(contract.len() >= 13, "{contract:?}");
    for path in &contract {
        assert!(
            METHODS.iter().any(|(m, _)| m == path),
            "{path} is not in auth::METHODS: classify it"
        );
    }
    for (method, _) in METHODS {
        let ours = method.starts_with("/resilient_circuit.");
        assert!(
            !ours || contract.contains(&(*method).to_owned()),
            "{method} is no RPC of the contract"
        );
    }
    assert_eq!(
        required("/resilient_circuit.v1.AdminService/SomethingNew"),
        Role::Admin
    );
    assert_eq!(required("/nowhere"), Role::Admin);
}

#[test]
fn the_check_tells_unauthenticated_from_permission_denied() {
    let g = guard(
        &[
            entry("reader", &sha256_hex(b"r"), "read"),
            entry("ops", &sha256_hex(b"a"), "admin"),
        ]
        .concat(),
    );
    let set_status = "/resilient_circuit.v1.AdminService/SetStatus";
    let get = "/resilient_circuit.v1.ProtectorService/GetProtector";
    let code = |path: &str, auth: Option<&[u8]>| g.check(path, auth, None).map_err(|(r, s)| (r, s.code()));
    assert_eq!(
        code(get, None),
        Err((Reason::Missing, tonic::Code::Unauthenticated))
    );
    assert_eq!(
        code(get, Some(b"Basic cg==")),
        Err((Reason::Malformed, tonic::Code::Unauthenticated))
    );
    assert_eq!(
        code(get, Some(b"Bearer ")),
        Err((Reason::Malformed, tonic::Code::Unauthenticated))
    );
    assert_eq!(
        code(get, Some(b"Bearer nope")),
        Err((Reason::Unknown, tonic::Code::Unauthenticated))
    );
    let reader = g.check(get, Some(b"bearer r"), None).expect("read may get");
    assert_eq!((&*reader.name, reader.role), ("reader", Role::Read));
    let (reason, status) = g
        .check(set_status, Some(b"Bearer r"), None)
        .expect_err("read may not set");
    assert_eq!(
        (reason, status.code()),
        (Reason::Forbidden, tonic::Code::PermissionDenied)
    );
    assert_eq!(
        status.message(),
        "SetStatus needs the admin role; token \"reader\" has the read role"
    );
    assert_eq!(
        g.check(set_status, Some(b"Bearer a"), None).expect("admin").role,
        Role::Admin
    );
}

#[test]
fn a_reload_that_fails_keeps_the_tokens_in_force() {
    let dir = std::env::temp_dir().join(format!("circuitd-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("tokens.toml");
    std::fs::write(&path, entry("old", &sha256_hex(b"old"), "read")).expect("write");
    let g = Guard::load(&path, false).expect("valid");
    std::fs::write(&path, entry("new", &sha256_hex(b"new"), "read")).expect("write");
    assert_eq!(g.reload().expect("valid"), 1);
    let get = "/resilient_circuit.v1.ProtectorService/GetProtector";
    assert!(g.check(get, Some(b"Bearer new"), None).is_ok());
    assert!(g.check(get, Some(b"Bearer old"), None).is_err());
    std::fs::write(&path, "[[token]]\nname = \"broken\"\n").expect("write");
    assert!(g.reload().is_err());
    assert!(
        g.check(get, Some(b"Bearer new"), None).is_ok(),
        "the old tokens stay"
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn refusals_log_once_a_second_per_reason_with_the_count_suppressed() {
    let r = Refusals::default();
    let t0 = Instant::now();
    let ms = |n| t0 + std::time::Duration::from_millis(n);
    assert_eq!(r.admit(Reason::Unknown, t0), Some(0));
    assert_eq!(r.admit(Reason::Unknown, ms(10)), None);
    assert_eq!(r.admit(Reason::Unknown, ms(999)), None);
    // Another reason has its own second.
    assert_eq!(r.admit(Reason::Missing, ms(500)), Some(0));
    assert_eq!(r.admit(Reason::Unknown, ms(1000)), Some(2));
    assert_eq!(r.admit(Reason::Unknown, ms(1500)), None);
    assert_eq!(r.admit(Reason::Unknown, ms(2000)), Some(1));
    assert_eq!(r.admit(Reason::Missing, ms(1499)), None);
    assert_eq!(r.admit(Reason::Missing, ms(1500)), Some(1));
}

#[test]
fn certificate_tables_and_limits_are_checked_naming_the_entry() {
    let token = entry("bot", &sha256_hex(b"x"), "read");
    let cases = [
        (
            certificate("CN=billing", "data", "max_watchers = -1\n"),
            "certificate[0] \"CN=billing\": max_watchers must be 0 or more (got -1)",
        ),
        (
            format!("{token}max_sessions = \"many\"\n"),
            "token[0] \"bot\": max_sessions must be an integer (got string)",
        ),
        (
            certificate("billing", "data", ""),
            "certificate[0] \"billing\": subject: \"billing\" is not TYPE=value",
        ),
        (
            certificate("CN=a", "root", ""),
            "certificate[0] \"CN=a\": unknown role \"root\"",
        ),
        (
            format!("{token}{}", certificate("CN=a", "read", "name = \"bot\"\n")),
            "certificate[0] \"bot\": the name is already used by token[0]",
        ),
        (
            [
                certificate("CN=a,O=x", "read", ""),
                certificate("O=x, CN=a", "data", ""),
            ]
            .concat(),
            "certificate[1] \"O=x, CN=a\": the same subject as certificate[0] \"CN=a,O=x\"",
        ),
        (
            certificate("CN=a", "read", "sha256 = \"00\"\n"),
            "certificate[0] \"CN=a\": unknown key \"sha256\"",
        ),
        (
            "[[certificate]]\nrole = \"read\"\n".to_owned(),
            "certificate[0] \"\": missing subject",
        ),
    ];
    for (text, expected) in cases {
        let message = refused(&text);
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }
    let tokens = parse(&certificate(
        "CN=billing,O=acme",
        "data",
        "name = \"billing\"\nmax_sessions = 0\n",
    ))
    .expect("valid");
    let e = tokens.require_mtls(Path::new(FILE), false).expect_err("no mTLS");
    assert!(
        e.to_string()
            .contains("certificate[0] \"billing\": certificate roles need mTLS: set --tls-client-ca"),
        "{e}"
    );
    tokens.require_mtls(Path::new(FILE), true).expect("with mTLS");
    let found = tokens
        .certificate(&Subject::parse("O=acme,CN=billing").unwrap())
        .expect("mapped");
    assert_eq!(
        (&*found.name, found.role, found.limits.max_sessions),
        ("billing", Role::Data, Some(0))
    );
}

#[test]
fn a_presented_token_decides_and_a_mapped_certificate_serves_without_one() {
    let g = guard(
        &[
            entry("reader", &sha256_hex(b"r"), "read"),
            certificate(
                "CN=billing,O=acme",
                "data",
                "name = \"billing\"\nmax_watchers = 7\n",
            ),
        ]
        .concat(),
    );
    let acquire = "/resilient_circuit.v1.ProtectorService/Acquire";
    let billing = Subject::parse("CN=billing,O=acme").unwrap();
    let stranger = Subject::parse("CN=stranger").unwrap();
    let who = g
        .check(acquire, None, Some(&billing))
        .expect("the certificate's role");
    assert_eq!(
        (who.to_string(), who.key(), who.role, who.limits.max_watchers),
        (
            "certificate \"billing\"".into(),
            "certificate:billing".into(),
            Role::Data,
            Some(7)
        )
    );
    let (reason, status) = g
        .check(acquire, Some(b"Bearer bad"), Some(&billing))
        .expect_err("a bad token");
    assert_eq!(
        (reason, status.code()),
        (Reason::Unknown, tonic::Code::Unauthenticated)
    );
    let (_, status) = g
        .check(acquire, Some(b"Bearer r"), Some(&billing))
        .expect_err("the token's role");
    assert_eq!(
        status.message(),
        "Acquire needs the data role; token \"reader\" has the read role"
    );
    let (reason, status) = g.check(acquire, None, Some(&stranger)).expect_err("unmapped");
    assert_eq!(reason, Reason::Missing);
    assert!(
        status
            .message()
            .contains("subject \"CN=stranger\" maps to no role"),
        "{}",
        status.message()
    );
    let open = Identity::open(Some("10.1.2.3:4567".parse().unwrap()));
    assert_eq!(
        (open.to_string(), open.key(), open.role),
        ("address 10.1.2.3".into(), "address:10.1.2.3".into(), Role::Admin)
    );
}

#[test]
fn found_tokens_are_cached_and_a_reload_forgets_them() {
    let dir = std::env::temp_dir().join(format!("circuitd-auth-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("tokens.toml");
    std::fs::write(&path, entry("old", &sha256_hex(b"old"), "read")).expect("write");
    let g = Guard::load(&path, false).expect("valid");
    let get = "/resilient_circuit.v1.ProtectorService/GetProtector";
    assert!(g.check(get, Some(b"Bearer nope"), None).is_err());
    assert_eq!(g.loaded.load().cache.len(), 0, "a bad token is not cached");
    assert_eq!(
        &*g.check(get, Some(b"Bearer old"), None).expect("valid").name,
        "old"
    );
    assert_eq!(g.loaded.load().cache.len(), 1);
    assert_eq!(
        &*g.check(get, Some(b"Bearer old"), None).expect("cached").name,
        "old"
    );
    std::fs::write(&path, entry("new", &sha256_hex(b"new"), "read")).expect("write");
    g.reload().expect("valid");
    assert!(
        g.check(get, Some(b"Bearer old"), None).is_err(),
        "the rotated token is gone"
    );
    std::fs::write(&path, certificate("CN=a", "read", "")).expect("write");
    assert!(g.reload().is_err(), "certificate roles without mTLS");
    assert!(
        g.check(get, Some(b"Bearer new"), None).is_ok(),
        "the old tokens stay"
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}
