//! `--http-listen` and `/metrics`: the listener prints its address, `/metrics` passes
//! `promtool check metrics`, counters read back after known traffic (a trip and its
//! recovery between two scrapes show in transitions and state seconds), the cap on
//! per-protector series, the tokens on HTTP, and that every series the Grafana dashboard
//! (`docs/grafana/circuitd.json`) queries is exported (`circuitd_leader` by a cluster's
//! replicas, 1 on the leader alone).

use std::process::Stdio;

use resilient_circuit_api::v1;
use support::http;
use support::process::Circuitd;
use support::*;
use tokio::io::AsyncWriteExt;

/// The value of the sample `name` whose labels include every one of `labels`.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, number) = line.rsplit_once(' ')?;
        let (metric, set) = match series.split_once('{') {
            Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let has = |(k, v): &(&str, &str)| set.split(',').any(|pair| pair == format!("{k}=\"{v}\""));
        (metric == name && labels.iter().all(has)).then(|| number.parse().expect("a number"))
    })
}

#[track_caller]
fn expect(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
}

async fn scrape(daemon: &Circuitd) -> String {
    let reply = http::get(daemon.http_addr.expect("the HTTP address"), "/metrics", None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body
}

#[tokio::test]
async fn the_http_listener_prints_its_address_and_answers_healthz() {
    let dir = TempDir::new("http-listen");
    let daemon = Circuitd::start(
        dir.path(),
        &["--admin-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"],
    )
    .await;
    let addr = daemon.http_addr.expect("the HTTP listener's address on stdout");
    assert!(daemon.admin_addr.is_some());
    assert_ne!(addr, daemon.addr);
    let reply = http::get(addr, "/healthz", None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    // The classic text format by default, OpenMetrics when asked for.
    let reply = http::get(addr, "/metrics", None).await;
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(expect(&reply.body, "circuitd_build_info", &[]), 1.0);
    assert!(!reply.body.contains("# EOF"));
    let reply = http::request_with(
        addr,
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
        "",
    )
    .await;
    assert!(
        reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/openmetrics-text")),
        "{reply:?}"
    );
    assert!(reply.body.ends_with("# EOF\n"), "{}", reply.body);
}

#[tokio::test]
async fn a_trip_and_its_recovery_between_two_scrapes_are_counted() {
    let dir = TempDir::new("metrics-trip");
    let daemon = Circuitd::start(dir.path(), &["--http-listen", "127.0.0.1:0"]).await;
    let mut client = daemon.protectors().await;
    let mut admin = daemon.admin().await;
    let hour = std::time::Duration::from_secs(3600);
    ensure(&mut client, "pay", policy(hour, (1, 1), Some((1, 1)))).await;

    let before = scrape(&daemon).await;
    assert_eq!(
        expect(
            &before,
            "circuitd_protector_state",
            &[("protector", "pay"), ("state", "closed")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &before,
            "circuitd_protector_transitions_total",
            &[("protector", "pay")]
        ),
        None
    );

    // Trip: one success, then one failure (1/1 of the window).
    call(&mut client, "pay", v1::Outcome::Success).await;
    call(&mut client, "pay", v1::Outcome::Failure).await;
    let refused = acquire(&mut client, "pay").await;
    assert_eq!(refused.decision, v1::Decision::Rejected as i32);
    // Recover: an operator opens the trial period, and the one trial succeeds.
    admin
        .set_status(v1::SetStatusRequest {
            name: "pay".into(),
            status: v1::Status::HalfOpen as i32,
            open_for: None,
        })
        .await
        .expect("SetStatus");
    let closed = call(&mut client, "pay", v1::Outcome::Success).await;
    assert_eq!(closed.status, v1::Status::Closed as i32, "{closed:?}");

    let after = scrape(&daemon).await;
    let pay = |extra: &[(&'static str, &'static str)]| {
        let mut labels = vec![("protector", "pay")];
        labels.extend_from_slice(extra);
        labels
    };
    for (from, to, reason) in [
        ("closed", "open", "failure_limit"),
        ("open", "half_open", "manual"),
        ("half_open", "closed", "trials_succeeded"),
    ] {
        let kind = [("from", from), ("to", to), ("reason", reason)];
        assert_eq!(
            expect(&after, "circuitd_protector_transitions_total", &pay(&kind)),
            1.0,
            "{kind:?}"
        );
        assert_eq!(
            expect(&after, "circuitd_transitions_total", &kind),
            1.0,
            "{kind:?}"
        );
    }
    for state in ["open", "half_open"] {
        let secs = expect(
            &after,
            "circuitd_protector_state_seconds_total",
            &pay(&[("state", state)]),
        );
        assert!(secs > 0.0, "{state}: {secs}");
    }
    assert_eq!(
        expect(&after, "circuitd_protector_state", &pay(&[("state", "closed")])),
        1.0
    );
    assert_eq!(
        expect(&after, "circuitd_protector_state", &pay(&[("state", "open")])),
        0.0
    );
    assert_eq!(
        expect(
            &after,
            "circuitd_protector_calls_total",
            &pay(&[("outcome", "success")])
        ),
        2.0
    );
    assert_eq!(
        expect(
            &after,
            "circuitd_protector_calls_total",
            &pay(&[("outcome", "failure")])
        ),
        1.0
    );
    assert_eq!(
        expect(
            &after,
            "circuitd_protector_not_permitted_total",
            &pay(&[("reason", "open")])
        ),
        1.0
    );
    assert_eq!(
        expect(&after, "circuitd_protector_trials_in_flight", &pay(&[])),
        0.0
    );
    assert_eq!(
        expect(&after, "circuitd_protectors", &[("status", "closed")]),
        1.0
    );
    assert_eq!(
        expect(&after, "circuitd_calls_total", &[("outcome", "success")]),
        2.0
    );
    // Four Acquires answered OK, each timed; and the journal's commits.
    let acquires = [
        ("method", "resilient_circuit.v1.ProtectorService/Acquire"),
        ("code", "OK"),
    ];
    assert_eq!(
        expect(&after, "circuitd_rpc_duration_seconds_count", &acquires),
        4.0
    );
    assert!(expect(&after, "circuitd_journal_commit_duration_seconds_count", &[]) >= 1.0);
    assert_eq!(expect(&after, "circuitd_watchers", &[]), 0.0);
}

#[tokio::test]
async fn shadow_mode_counts_what_it_would_have_refused_apart_from_refusals() {
    let dir = TempDir::new("metrics-shadow");
    let daemon = Circuitd::start(dir.path(), &["--http-listen", "127.0.0.1:0"]).await;
    let mut client = daemon.protectors().await;
    let hour = std::time::Duration::from_secs(3600);
    let shadow = v1::Policy {
        shadow: true,
        ..policy(hour, (1, 1), None)
    };
    ensure(&mut client, "trial", shadow).await;
    call(&mut client, "trial", v1::Outcome::Failure).await;
    // OPEN now, but in shadow: both Acquires are admitted, each saying it would have been
    // refused.
    for _ in 0..2 {
        let a = acquire(&mut client, "trial").await;
        assert_eq!(a.decision, v1::Decision::Admitted as i32, "{a:?}");
        assert!(a.would_reject, "{a:?}");
    }
    let text = scrape(&daemon).await;
    let open = [("protector", "trial"), ("reason", "open")];
    assert_eq!(expect(&text, "circuitd_protector_would_reject_total", &open), 2.0);
    assert_eq!(
        expect(&text, "circuitd_protector_not_permitted_total", &open),
        0.0
    );
    assert_eq!(
        expect(&text, "circuitd_would_reject_total", &[("reason", "open")]),
        2.0
    );
    assert_eq!(
        expect(&text, "circuitd_not_permitted_total", &[("reason", "open")]),
        0.0
    );
}

#[tokio::test]
async fn per_protector_series_stop_at_the_cap_and_the_rest_count_daemon_wide() {
    let dir = TempDir::new("metrics-cap");
    let daemon = Circuitd::start(
        dir.path(),
        &["--http-listen", "127.0.0.1:0", "--metrics-max-protectors", "2"],
    )
    .await;
    let mut client = daemon.protectors().await;
    let hour = std::time::Duration::from_secs(3600);
    for name in ["c", "a", "b"] {
        ensure(&mut client, name, policy(hour, (1, 1), None)).await;
        call(&mut client, name, v1::Outcome::Success).await;
    }
    let text = scrape(&daemon).await;
    for name in ["a", "b"] {
        assert_eq!(
            expect(
                &text,
                "circuitd_protector_calls_total",
                &[("protector", name), ("outcome", "success")]
            ),
            1.0
        );
    }
    assert_eq!(
        value(&text, "circuitd_protector_state", &[("protector", "c")]),
        None
    );
    assert_eq!(expect(&text, "circuitd_protectors_without_series", &[]), 1.0);
    assert_eq!(
        expect(&text, "circuitd_calls_total", &[("outcome", "success")]),
        3.0
    );
    assert_eq!(expect(&text, "circuitd_protectors", &[("status", "closed")]), 3.0);
}

/// Fails with an install hint when promtool is missing: this test never skips.
fn need_promtool() {
    let found = std::process::Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Err(e) = found {
        panic!(
            "promtool is needed to check /metrics ({e}): install Debian's `prometheus` package (apt-get install prometheus), or run ./run-tests, which installs it"
        );
    }
}

/// A daemon with a journal and `--http-listen`, whose protector `checked` (cooldown 1 h)
/// has tripped on a failure and then refused an Acquire. The directory goes with it.
async fn tripped_daemon(label: &str) -> (TempDir, Circuitd) {
    let dir = TempDir::new(label);
    let daemon = Circuitd::start(dir.path(), &["--http-listen", "127.0.0.1:0"]).await;
    let mut client = daemon.protectors().await;
    ensure(
        &mut client,
        "checked",
        policy(std::time::Duration::from_secs(3600), (1, 1), None),
    )
    .await;
    call(&mut client, "checked", v1::Outcome::Failure).await;
    acquire(&mut client, "checked").await;
    (dir, daemon)
}

#[tokio::test]
async fn metrics_pass_promtool_check_metrics() {
    need_promtool();
    let (_dir, daemon) = tripped_daemon("metrics-promtool").await;
    let text = scrape(&daemon).await;
    assert!(text.contains("circuitd_protector_transitions_total{"), "{text}");

    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(text.as_bytes()).await.expect("feed promtool");
    drop(stdin);
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("promtool finished in time")
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}\n{}{}\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn with_tokens_http_needs_a_token_with_the_read_role() {
    let dir = TempDir::new("metrics-tokens");
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        tokens_file(&[("reader", "r-token", "read"), ("app", "d-token", "data")]),
    )
    .expect("write the tokens file");
    let data = dir.path().join("data");
    let daemon = Circuitd::start(
        &data,
        &[
            "--http-listen",
            "127.0.0.1:0",
            "--tokens",
            tokens.to_str().expect("utf-8"),
        ],
    )
    .await;
    let addr = daemon.http_addr.expect("the HTTP address");
    let none = http::get(addr, "/metrics", None).await;
    assert_eq!(none.status, 401, "{none:?}");
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    let unknown = http::get(addr, "/metrics", Some("nope")).await;
    assert_eq!(unknown.status, 401, "{unknown:?}");
    let reader = http::get(addr, "/metrics", Some("r-token")).await;
    assert_eq!(reader.status, 200, "{reader:?}");
    assert!(reader.body.contains("circuitd_build_info"));
    // /healthz says only whether the daemon serves: probes carry no token.
    assert_eq!(http::get(addr, "/healthz", None).await.status, 200);
}

/// The metric names a PromQL expression (or any text) mentions: `circuitd_` and what
/// follows it of `[a-z0-9_]`.
fn metric_names(text: &str) -> std::collections::BTreeSet<&str> {
    text.match_indices("circuitd_")
        .map(|(at, _)| {
            let rest = &text[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_queries_only_series_the_daemon_exports() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana/circuitd.json");
    let dashboard = std::fs::read_to_string(&path).expect("docs/grafana/circuitd.json");
    let wanted = metric_names(&dashboard);
    assert!(wanted.len() > 10, "{wanted:?}");

    // Every series the dashboard draws has a sample once a protector has tripped and
    // refused a call, the journal has committed, and the daemon has answered RPCs.
    let (_dir, daemon) = tripped_daemon("metrics-grafana").await;
    let standalone = scrape(&daemon).await;
    let mut exported = metric_names(&standalone);

    // And a cluster's replicas (real etcd): `circuitd_leader`, 1 on the leader alone.
    let etcd = Etcd::single().await;
    let replicas = Replicas::start(&etcd, 2, &["--http-listen", "127.0.0.1:0"]).await;
    let leader = replicas.leader().await;
    let mut scrapes = Vec::new();
    for i in 0..replicas.len() {
        let want = if i == leader { 1.0 } else { 0.0 };
        let text = eventually(
            async || {
                let text = scrape(replicas.replica(i)).await;
                match value(&text, "circuitd_leader", &[]) {
                    Some(v) if v == want => Ok(text),
                    other => Err(other),
                }
            },
            |got| format!("replica {i}: circuitd_leader {got:?}, not {want}"),
        )
        .await;
        scrapes.push(text);
    }
    for text in &scrapes {
        exported.extend(metric_names(text));
    }
    let missing: Vec<_> = wanted.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, which /metrics does not export:\n{standalone}"
    );
}
