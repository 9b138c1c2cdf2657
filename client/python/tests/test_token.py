"""`token=` (or $RESILIENT_CIRCUIT_TOKEN) against a circuitd started with --tokens: the
token goes with every call, the Watch stream included; without it the daemon refuses."""

import asyncio
import hashlib
from datetime import timedelta

import pytest

from daemon import Daemon
from resilient_circuit_client import CircuitProtectorPolicy, ProtectionException

TOKEN = "py-test-token"
#: Long enough that the daemon decides, never the fallback, on a busy machine.
PATIENT = timedelta(seconds=10)


@pytest.fixture(scope="module")
def guarded(circuitd_bin, tmp_path_factory):
    tokens = tmp_path_factory.mktemp("tokens") / "tokens.toml"
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    tokens.write_text(f'[[token]]\nname = "py-app"\nsha256 = "{digest}"\nrole = "data"\n')
    d = Daemon(circuitd_bin, extra=("--tokens", str(tokens)))
    yield d
    d.stop()


def test_a_protector_with_the_token_is_served_and_watched(guarded, key):
    policy = CircuitProtectorPolicy(resource_key=key, address=guarded.address, acquire_deadline=PATIENT, token=TOKEN)

    @policy
    def op():
        return "ok"

    assert op() == "ok"
    # The cached mode's Watch stream carries the token too.
    assert policy._rt.synced.wait(10), "the Watch stream did not start with the token"
    assert op() == "ok"


def test_the_token_comes_from_the_environment(guarded, key, monkeypatch):
    monkeypatch.setenv("RESILIENT_CIRCUIT_TOKEN", TOKEN)
    policy = CircuitProtectorPolicy(resource_key=key, address=guarded.address, acquire_deadline=PATIENT, cached=False)

    @policy
    def op():
        return "ok"

    assert op() == "ok"


def test_without_a_token_the_daemon_refuses(guarded, key, monkeypatch):
    monkeypatch.delenv("RESILIENT_CIRCUIT_TOKEN", raising=False)
    policy = CircuitProtectorPolicy(resource_key=key, address=guarded.address, acquire_deadline=PATIENT, cached=False)

    @policy
    def op():
        return "ok"

    with pytest.raises(ProtectionException, match="no credential"):
        op()


def test_coroutine_calls_send_the_token(guarded, key):
    policy = CircuitProtectorPolicy(resource_key=key, address=guarded.address, acquire_deadline=PATIENT, token=TOKEN, cached=False)

    @policy
    async def op():
        return "ok"

    assert asyncio.run(op()) == "ok"
