"""Cached mode (the default): CLOSED decided locally from the Watch stream, successes
batched, failures reported at once with their answer applied before the call returns,
every trial from the daemon, reads that see this process's own writes."""

import time
from datetime import timedelta

import grpc
import pytest

from resilient_circuit_client import CircuitProtectorPolicy, CircuitStatus, ProtectedCallError
from resilient_circuit_client._generated import admin_pb2, admin_pb2_grpc, types_pb2


def synced(policy, fn):
    """Calls `fn` once (which starts the watch) and waits for the stream to sync."""
    fn()
    assert policy._rt.synced.wait(5), "the watch never synced"


def counters(policy):
    return policy._rt.get().counters


def noop_of(policy):
    @policy
    def noop():
        return None

    return noop


def test_closed_calls_are_decided_locally_and_their_successes_batched(address, key):
    policy = CircuitProtectorPolicy(resource_key=key, address=address, failure_limit=(10, 10))
    noop = noop_of(policy)
    synced(policy, noop)
    before = counters(policy)
    for _ in range(500):
        noop()
    after = counters(policy)
    assert after.admitted == before.admitted, "no Acquire for a cached call"
    assert after.successes - before.successes == 500, "a read sees this process's own successes"
    assert policy._rt.conn.stats.batches_sent >= 1


def test_a_failure_reaches_the_daemon_before_the_call_returns(address, key):
    policy = CircuitProtectorPolicy(resource_key=key, address=address, failure_limit=(4, 4))
    observer = CircuitProtectorPolicy(resource_key=key, address=address, failure_limit=(4, 4), cached=False)

    @policy
    def op(fail):
        if fail:
            raise ConnectionError

    synced(policy, lambda: op(False))
    before = len(policy.execution_log)  # flushes the first call's report, whichever path it took
    op(False)
    with pytest.raises(ConnectionError):
        op(True)
    # The observer has no pending reports of its own: it reads the daemon as it is.
    log = list(observer.execution_log)
    assert log[-2:] == [True, False] and len(log) == before + 2, "the success went first, in one batch"


def test_a_trip_this_process_causes_is_seen_before_the_call_returns(address, key):
    changes = []
    policy = CircuitProtectorPolicy(
        resource_key=key,
        address=address,
        cooldown=timedelta(seconds=30),
        on_status_change=lambda p, old, new: changes.append(new),
    )

    @policy
    def op(fail):
        if fail:
            raise ConnectionError

    synced(policy, lambda: op(False))
    with pytest.raises(ConnectionError):
        op(True)
    assert changes == [CircuitStatus.OPEN]
    with pytest.raises(ProtectedCallError) as raised:
        op(False)
    assert raised.value.reason == "OPEN" and not raised.value.fallback


def test_every_trial_is_the_daemons(address, key):
    changes = []
    policy = CircuitProtectorPolicy(
        resource_key=key, address=address, on_status_change=lambda p, old, new: changes.append(new)
    )

    @policy
    def op(fail):
        if fail:
            raise ConnectionError

    synced(policy, lambda: op(False))
    with pytest.raises(ConnectionError):
        op(True)
    before = counters(policy)
    op(False)  # cooldown 0: a HALF_OPEN trial, which closes it
    after = counters(policy)
    assert after.admitted == before.admitted + 1
    assert changes == [CircuitStatus.OPEN, CircuitStatus.HALF_OPEN, CircuitStatus.CLOSED]


def test_without_cached_mode_every_call_asks_the_daemon(address, key):
    policy = CircuitProtectorPolicy(resource_key=key, address=address, cached=False)
    noop = noop_of(policy)
    noop()
    before = counters(policy)
    for _ in range(50):
        noop()
    after = counters(policy)
    assert (after.admitted - before.admitted, after.successes - before.successes) == (50, 50)


def test_an_override_takes_calls_off_the_fast_path(address, key):
    policy = CircuitProtectorPolicy(resource_key=key, address=address)
    noop = noop_of(policy)
    synced(policy, noop)
    admin = admin_pb2_grpc.AdminServiceStub(grpc.insecure_channel(address))
    admin.SetOverride(admin_pb2.SetOverrideRequest(name=key, kind=types_pb2.OVERRIDE_KIND_FORCED_OPEN), timeout=5)
    deadline = time.monotonic() + 5
    rejection = None
    while rejection is None and time.monotonic() < deadline:
        try:
            noop()
        except ProtectedCallError as e:
            rejection = e
    assert rejection is not None and rejection.reason == "FORCED_OPEN"
    admin.SetOverride(admin_pb2.SetOverrideRequest(name=key, kind=types_pb2.OVERRIDE_KIND_NONE), timeout=5)
    assert policy.status is CircuitStatus.CLOSED


def test_a_burst_of_noop_calls_is_decided_locally_and_every_success_counted(address, key):
    # Throughput is measured by bench.py (see BENCHMARKS.md), not by a timed test; this
    # checks what makes it fast: no call asks the daemon, and no outcome is lost.
    policy = CircuitProtectorPolicy(resource_key=key, address=address)
    noop = noop_of(policy)
    synced(policy, noop)
    admitted_before = counters(policy).admitted
    calls = 20_000
    for _ in range(calls):
        noop()
    after = counters(policy)
    assert after.admitted == admitted_before, "a cached call asked the daemon"
    assert after.successes == calls + 1


def test_successes_pending_at_exit_reach_the_daemon(address, key):
    import pathlib
    import subprocess
    import sys

    source = pathlib.Path(__file__).resolve().parents[1]
    script = (
        f"import sys; sys.path.insert(0, {str(source)!r})\n"
        "from resilient_circuit_client import CircuitProtectorPolicy\n"
        f"p = CircuitProtectorPolicy(resource_key={key!r}, address={address!r})\n"
        "f = p(lambda: None)\n"
        "f()\n"
        "assert p._rt.synced.wait(5)\n"
        "for _ in range(777): f()\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
    observer = CircuitProtectorPolicy(resource_key=key, address=address, cached=False)
    assert counters(observer).successes == 778


def test_another_daemon_history_drops_pending_successes_and_starts_lives_over(address, key):
    policy = CircuitProtectorPolicy(resource_key=key, address=address)
    noop = noop_of(policy)
    synced(policy, noop)
    rt = policy._rt
    with rt.conn.sending:  # the batcher takes nothing meanwhile
        rt.life_ends(900)  # a life of the old history, at its revision 900
        lost = rt.conn.stats.reports_lost
        for _ in range(3):
            noop()
        # A RESYNC to older revisions: the successes pending name the old history's lives.
        rt.new_history()
        assert (len(rt._pend), rt.conn.stats.reports_lost) == (0, lost + 3)
        # The new history's revisions start over: a creation at its revision 4 is a new
        # life, which drops what was counted before it.
        noop()
        rt.life_ends(4)
        assert (len(rt._pend), rt.conn.stats.reports_lost) == (0, lost + 4)
    policy.close()
