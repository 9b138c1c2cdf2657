use axum::http::{HeaderMap, HeaderValue, StatusCode, header};

use super::check;
use crate::auth::{Guard, Role, sha256_hex};

fn guard() -> (Guard, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("circuitd-http-tokens-{}.toml", std::process::id()));
    let file: String = [("reader", "r-token", "read"), ("ops", "a-token", "admin")]
        .iter()
        .map(|(name, token, role)| {
            format!(
                "[[token]]\nname = \"{name}\"\nsha256 = \"{}\"\nrole = \"{role}\"\n",
                sha256_hex(token.as_bytes())
            )
        })
        .collect();
    std::fs::write(&path, file).expect("write the tokens file");
    (Guard::load(&path).expect("a good tokens file"), path)
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("a header value");
    headers.insert(header::AUTHORIZATION, value);
    headers
}

#[test]
fn http_requests_are_checked_like_grpc_calls() {
    let (guard, path) = guard();
    let refused =
        check(Some(&guard), &HeaderMap::new(), None, Role::Read, "GET /metrics").expect_err("no token");
    assert_eq!(refused.code, StatusCode::UNAUTHORIZED);
    let refused =
        check(Some(&guard), &bearer("nope"), None, Role::Read, "GET /metrics").expect_err("unknown token");
    assert_eq!(refused.code, StatusCode::UNAUTHORIZED);
    let reader = check(Some(&guard), &bearer("r-token"), None, Role::Read, "GET /metrics")
        .expect("the read role reads");
    assert_eq!(reader.map(|i| i.role), Some(Role::Read));
    let refused = check(
        Some(&guard),
        &bearer("r-token"),
        None,
        Role::Admin,
        "POST /force-open",
    )
    .expect_err("the read role is not admin");
    assert_eq!(refused.code, StatusCode::FORBIDDEN);
    assert!(
        refused.message.contains("POST /force-open needs the admin role"),
        "{}",
        refused.message
    );
    let ops = check(
        Some(&guard),
        &bearer("a-token"),
        None,
        Role::Admin,
        "POST /force-open",
    )
    .expect("admin acts");
    assert_eq!(ops.map(|i| i.role), Some(Role::Admin));
    // No tokens configured: open, like the gRPC API.
    assert_eq!(
        check(None, &HeaderMap::new(), None, Role::Admin, "POST /x"),
        Ok(None)
    );
    let _ = std::fs::remove_file(path);
}
