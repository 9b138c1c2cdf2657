"""The daemon unreachable: the declared fallback decides instead of the daemon, and the
daemon takes over again once it is back. Each test runs its own daemon to stop.

No test here asserts how long a decision takes (that is a benchmark's job): a call that
must not hang is given a generous deadline, `LIVENESS`, and what is asserted is which
path decided it (the fallback counter, the error's `fallback` flag)."""

import socket
import threading
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


# Far above any deadline the client has: only a hang runs into it.
LIVENESS = 10.0


def finishes(fn, *args):
    """Runs fn(*args) on a thread and returns its result or exception; fails the test
    if it has not returned within LIVENESS seconds (it hangs)."""
    box = []

    def run():
        try:
            box.append(fn(*args))
        except Exception as e:  # noqa: BLE001 - the caller inspects it
            box.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(LIVENESS)
    assert not t.is_alive(), f"the call did not return within {LIVENESS} s"
    return box[0]


def gone_noticed(policy) -> None:
    """Waits until the cached mode's Watch stream noticed that the daemon left: until then
    a CLOSED call is still decided locally, by design (within the freshness bound)."""
    assert policy._rt.unsynced.wait(LIVENESS), "the watch never noticed that the daemon left"


def test_deny_rejects_at_once_when_the_daemon_is_gone(own_daemon, key):
    calls = []
    policy = CircuitProtectorPolicy(resource_key=key, address=own_daemon.address, fallback="deny")
    op = protected(policy, calls)
    assert op() == "ran"
    assert own_daemon.stop() == 0
    gone_noticed(policy)
    for _ in range(5):
        result = finishes(op)
        assert isinstance(result, ProtectedCallError) and result.fallback, result
        assert (result.status, result.reason) == (CircuitStatus.OPEN, "OPEN")
    assert len(calls) == 1 and policy.fallback_decisions == 5


def test_allow_runs_every_call_when_the_daemon_is_gone(own_daemon, key):
    calls = []
    policy = CircuitProtectorPolicy(resource_key=key, address=own_daemon.address, fallback="allow")
    op = protected(policy, calls)
    op()
    own_daemon.stop()
    gone_noticed(policy)
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


def test_a_daemon_that_never_answers_hands_every_call_to_the_fallback(key):
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
        for i in range(31):
            assert finishes(op) == "ran", f"call {i}"
        assert len(calls) == 31 and policy.fallback_decisions == 31
    finally:
        stop.set()
        for conn in held:
            conn.close()
        server.close()


def test_the_daemon_takes_over_again_once_it_is_back(circuitd_bin, key):
    first = Daemon(circuitd_bin)
    # A patient deadline: once the daemon is back, no call may be handed to the fallback
    # because a loaded machine answered the first call after the reconnect late.
    policy = CircuitProtectorPolicy(
        resource_key=key,
        address=first.address,
        fallback="local",
        failure_limit=(5, 5),
        acquire_deadline=timedelta(seconds=LIVENESS / 2),
    )
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
