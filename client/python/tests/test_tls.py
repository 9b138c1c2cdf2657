"""TLS and mTLS to a real circuitd, with certificates made by the `openssl` command for
each test session: `tls_ca=` (a path or bytes), `tls_cert=`/`tls_key=`, or the
`RESILIENT_CIRCUIT_TLS_*` variables. With `fallback="deny"`, a call that runs proves the
daemon was reached over TLS; one the daemon refused at the handshake is rejected."""

from __future__ import annotations

import asyncio
import pathlib
import subprocess

import pytest

from daemon import Daemon
from resilient_circuit_client import CircuitProtectorPolicy, ProtectedCallError


def openssl(*args: str, cwd: pathlib.Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def new_key_and_request(name: str, subject: str, cwd: pathlib.Path) -> None:
    openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={subject}",
        cwd=cwd,
    )  # fmt: skip


def sign(name: str, cwd: pathlib.Path) -> None:
    (cwd / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "1", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
        cwd=cwd,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> pathlib.Path:
    """A CA, a certificate for the daemon at 127.0.0.1 and one for this client."""
    d = tmp_path_factory.mktemp("pki")
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=python test CA", "-days", "1",
        cwd=d,
    )  # fmt: skip
    for name, subject in (("server", "circuitd"), ("client", "python-client")):
        new_key_and_request(name, subject, d)
        sign(name, d)
    return d


@pytest.fixture(scope="module")
def mtls_daemon(circuitd_bin, pki):
    d = Daemon(
        circuitd_bin,
        extra=(
            "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
            "--tls-client-ca", str(pki / "ca.pem"),
        ),
    )  # fmt: skip
    yield d
    d.stop()


def run_once(policy: CircuitProtectorPolicy) -> str:
    @policy
    def op() -> str:
        return "ran"

    return op()


def uncached(daemon: Daemon, key: str, **tls) -> CircuitProtectorPolicy:
    """A protector asking `daemon` for every call, rejecting when it cannot."""
    return CircuitProtectorPolicy(resource_key=key, address=daemon.address, fallback="deny", cached=False, **tls)


def test_with_the_ca_and_a_client_certificate_calls_reach_the_daemon(mtls_daemon, pki, key):
    # Each kind of source: a Path, a str path, the bytes.
    policy = uncached(
        mtls_daemon,
        key,
        tls_ca=pki / "ca.pem",
        tls_cert=str(pki / "client.pem"),
        tls_key=(pki / "client.key").read_bytes(),
    )
    for _ in range(3):
        assert run_once(policy) == "ran"


def test_async_calls_speak_tls_too(mtls_daemon, pki, key):
    policy = uncached(
        mtls_daemon, key, tls_ca=pki / "ca.pem", tls_cert=pki / "client.pem", tls_key=pki / "client.key"
    )

    @policy
    async def op() -> str:
        return "ran"

    async def twice() -> list[str]:
        return [await op(), await op()]

    assert asyncio.run(twice()) == ["ran", "ran"]


def test_the_environment_gives_the_tls_files(mtls_daemon, pki, key, monkeypatch):
    monkeypatch.setenv("RESILIENT_CIRCUIT_TLS_CA", str(pki / "ca.pem"))
    monkeypatch.setenv("RESILIENT_CIRCUIT_TLS_CERT", str(pki / "client.pem"))
    monkeypatch.setenv("RESILIENT_CIRCUIT_TLS_KEY", str(pki / "client.key"))
    assert run_once(uncached(mtls_daemon, key)) == "ran"


def test_without_a_client_certificate_the_daemon_refuses(mtls_daemon, pki, key):
    with pytest.raises(ProtectedCallError):
        run_once(uncached(mtls_daemon, key, tls_ca=pki / "ca.pem"))


def test_a_certificate_without_its_key_is_refused(pki, key):
    with pytest.raises(ValueError, match="tls_cert and tls_key"):
        CircuitProtectorPolicy(resource_key=key, tls_ca=pki / "ca.pem", tls_cert=pki / "client.pem")
    with pytest.raises(ValueError, match="cannot read it"):
        CircuitProtectorPolicy(resource_key=key, tls_ca=pki / "missing.pem")
