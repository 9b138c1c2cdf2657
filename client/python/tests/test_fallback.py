"""The daemon unreachable: the declared fallback decides within the acquire deadline, and
the daemon takes over again once it is back. Each test runs its own daemon to stop."""

import socket
import threading
import time
from datetime import timedelta

import pytest

from daemon import Daemon
from resilient_circuit_client import CircuitProtectorPolicy, CircuitStatus, ProtectedCallError


@pytest.fixture
def own_daemon(circuitd_bin):
    d = Daemon(circuitd_bin)
    yield d
    d.stop()


def protected(policy, calls):
    @policy
    def op(fail=False):
        calls.append(1)
        if fail:
            raise ConnectionError
        return "ran"

    return op


def timed(fn, *args):
    start = time.monotonic()
    try:
        return fn(*args), time.monotonic() - start
    except Exception as e:  # noqa: BLE001 - the caller inspects it
        return e, time.monotonic() - start


def test_deny_rejects_at_once_when_the_daemon_is_gone(own_daemon, key):
    calls = []
    policy = CircuitProtectorPolicy(resource_key=key, address=own_daemon.address, fallback="deny")
    op = protected(policy, calls)
    assert op() == "ran"
    assert own_daemon.stop() == 0
    for _ in range(5):
        result, took = timed(op)
        assert isinstance(result, ProtectedCallError) and result.fallback, result
        assert (result.status, result.reason) == (CircuitStatus.OPEN, "OPEN")
        assert took < 0.2
    assert len(calls) == 1 and policy.fallback_decisions == 5


def test_allow_runs_every_call_when_the_daemon_is_gone(own_daemon, key):
    calls = []
    policy = CircuitProtectorPolicy(resource_key=key, address=own_daemon.address, fallback="allow")
    op = protected(policy, calls)
    op()
    own_daemon.stop()
    for _ in range(3):
        with pytest.raises(ConnectionError):
            op(fail=True)
    assert op() == "ran"
    assert len(calls) == 5 and policy.fallback_decisions == 4


def test_local_runs_the_status_machine_in_process(own_daemon, key):
    calls = []
    policy = CircuitProtectorPolicy(
        resource_key=key, address=own_daemon.address, fallback="local", failure_limit=(2, 2), cooldown=timedelta(seconds=30)
    )
    op = protected(policy, calls)
    op()
    own_daemon.stop()
    for _ in range(2):
        with pytest.raises(ConnectionError):
            op(fail=True)
    with pytest.raises(ProtectedCallError) as raised:
        op()
    assert raised.value.fallback and raised.value.reason == "OPEN"
    assert raised.value.retry_after > timedelta(seconds=25)
    assert policy.status is CircuitStatus.OPEN, "the local machine's status"
    assert len(calls) == 3


def test_a_protector_made_while_the_daemon_is_down_uses_its_fallback(circuitd_bin, key):
    gone = Daemon(circuitd_bin)
    gone.stop()
    calls = []
    op = protected(CircuitProtectorPolicy(resource_key=key, address=gone.address, fallback="allow"), calls)
    assert op() == "ran"
    with pytest.raises(ProtectedCallError):
        protected(CircuitProtectorPolicy(resource_key=key, address=gone.address), calls)()


def test_a_daemon_that_never_answers_costs_each_call_at_most_the_deadline(key):
    # Accepts connections and says nothing: every RPC runs into its deadline.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    try:
        address = "%s:%d" % server.getsockname()
        policy = CircuitProtectorPolicy(resource_key=key, address=address, fallback="allow", cached=False)
        calls = []
        op = protected(policy, calls)
        _, first = timed(op)
        assert first < 1.5, "connecting counts against the request timeout (1 s)"
        slowest = max(timed(op)[1] for _ in range(30))
        assert slowest < 0.15, f"a call took {slowest:.3f}s"
        assert len(calls) == 31 and policy.fallback_decisions == 31
    finally:
        stop.set()
        for conn in held:
            conn.close()
        server.close()


def test_the_daemon_takes_over_again_once_it_is_back(circuitd_bin, key):
    first = Daemon(circuitd_bin)
    policy = CircuitProtectorPolicy(resource_key=key, address=first.address, fallback="local", failure_limit=(5, 5))
    calls = []
    op = protected(policy, calls)
    op()
    assert policy._rt.synced.wait(5)
    first.stop()
    assert policy._rt.unsynced.wait(5)
    op()
    decided = policy.fallback_decisions
    assert decided >= 1
    # The same address, a new daemon without the old state.
    second = Daemon(circuitd_bin, listen=first.address)
    try:
        assert policy._rt.synced.wait(15), "the watch did not come back"
        op()
        op()
        assert policy.fallback_decisions == decided
        assert policy.status is CircuitStatus.CLOSED
        assert len(policy.execution_log) == 2, "the protector was created again"
    finally:
        second.stop()
