//! `--tls-ca`, `--tls-cert` and `--tls-key` against the real binary serving mTLS, with
//! certificates made at test time.

mod cli;

use std::time::Duration;

use cli::{circuitctl, run};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use support::TempDir;
use support::process::Circuitd;

/// How long a test waits for something it expects before it fails.
const DEADLINE: Duration = Duration::from_secs(20);

/// A leaf certificate for 127.0.0.1 signed by `ca`, and its key, as PEM.
fn leaf(ca: &CertifiedIssuer<'static, KeyPair>, subject: &str) -> (String, String) {
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    params.distinguished_name.push(DnType::CommonName, subject);
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, ca).expect("sign");
    (cert.pem(), key.serialize_pem())
}

#[test]
fn circuitctl_speaks_mtls_with_its_tls_flags() {
    let dir = TempDir::new("circuitctl-tls");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "circuitctl test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
    let path = |name: &str| dir.path().join(name).display().to_string();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
    let (server_cert, server_key) = leaf(&ca, "circuitd");
    let (client_cert, client_key) = leaf(&ca, "operator");
    write("ca.pem", &ca.pem());
    write("server.pem", &server_cert);
    write("server-key.pem", &server_key);
    write("client.pem", &client_cert);
    write("client-key.pem", &client_key);

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let data = dir.path().join("data");
    let flags = [
        "--tls-cert".to_owned(),
        path("server.pem"),
        "--tls-key".to_owned(),
        path("server-key.pem"),
        "--tls-client-ca".to_owned(),
        path("ca.pem"),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let daemon = runtime
        .block_on(Circuitd::launch_listening(&data, &flags))
        .serving();
    let uri = format!("https://{}", daemon.addr);

    let ctl = || {
        let mut cmd = circuitctl(&uri, DEADLINE);
        cmd.env_remove("CIRCUIT_TLS_CA")
            .env_remove("CIRCUIT_TLS_CERT")
            .env_remove("CIRCUIT_TLS_KEY");
        cmd
    };
    // circuitctl with the CA and the client's certificate and key as flags.
    let mtls = || {
        let mut cmd = ctl();
        cmd.args(["--tls-ca", &path("ca.pem")]).args([
            "--tls-cert",
            &path("client.pem"),
            "--tls-key",
            &path("client-key.pem"),
        ]);
        cmd
    };
    let (out, _) = run(
        mtls().args([
            "ensure",
            "over-tls",
            "--cooldown",
            "30s",
            "--failure-limit",
            "1/1",
        ]),
        0,
    );
    assert!(out.contains("over-tls"), "{out}");
    // The same through the environment.
    let (out, _) = run(
        ctl()
            .env("CIRCUIT_TLS_CA", path("ca.pem"))
            .env("CIRCUIT_TLS_CERT", path("client.pem"))
            .env("CIRCUIT_TLS_KEY", path("client-key.pem"))
            .arg("list"),
        0,
    );
    assert!(out.contains("over-tls"), "{out}");
    // Without a client certificate the handshake is refused. With TLS 1.3 the client
    // learns it only once it sends its first request (the server checks the certificate
    // after the client has finished), so the failure is the call's: CANCELLED, exit 1.
    let refused = ctl()
        .args(["--tls-ca", &path("ca.pem"), "list"])
        .output()
        .expect("run");
    assert!(!refused.status.success(), "listed without a client certificate");
    // bench over mTLS, unary and session; the cached and watch modes say they cannot.
    for mode in ["unary", "session"] {
        let (out, _) = run(
            mtls().args(["--json", "bench", "--mode", mode]).args([
                "--duration",
                "300ms",
                "--warmup",
                "0s",
                "--concurrency",
                "2",
            ]),
            0,
        );
        assert!(out.contains("\"decisions\""), "{mode}: {out}");
    }
    let (_, err) = run(
        ctl().args(["--tls-ca", &path("ca.pem"), "bench", "--mode", "cached"]),
        1,
    );
    assert!(err.contains("does not speak TLS"), "{err}");
    // A key without its certificate is a usage error.
    run(
        ctl().args([
            "--tls-ca",
            &path("ca.pem"),
            "--tls-key",
            &path("client-key.pem"),
            "list",
        ]),
        2,
    );
    runtime.block_on(daemon.terminate()).assert_no_panic();
}
