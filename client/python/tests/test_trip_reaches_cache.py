"""Another client's trip reaches a busy cached process through its Watch stream, as an
event: nothing polls (no timer, no Acquire), and the event needs the GIL once, the
Watch reader's own, which a busy fast path gives away at its checkpoint every `TURN`
(bench_trip.py measures the time: about a millisecond and a half)."""

import threading
from datetime import timedelta

import grpc
import pytest

from resilient_circuit_client import CircuitProtectorPolicy, ProtectedCallError
from resilient_circuit_client import _protector
from resilient_circuit_client._generated import admin_pb2, admin_pb2_grpc, types_pb2

DEADLINE = 10.0


def _synced_noop(address, key):
    policy = CircuitProtectorPolicy(
        resource_key=key, address=address, watch_staleness=timedelta(hours=1), fallback="allow"
    )

    @policy
    def noop():
        return None

    noop()
    assert policy._rt.synced.wait(DEADLINE), "the watch never synced"
    return policy, noop


def test_a_trip_stops_the_cached_path_of_a_busy_thread_as_the_event_arrives(address, key):
    # A staleness of an hour: no PROGRESS and no freshness deadline can end the cached
    # path during the test; only the trip's event can.
    policy, noop = _synced_noop(address, key)
    rt = policy._rt
    # The stream is read by the thread that iterates it (see `_connection.sync_options`):
    # one GIL acquisition between the event's arrival and the cached path's end.
    assert type(rt._watch_call).__name__ == "_SingleThreadedRendezvous"

    busy_until_stopped = threading.Event()
    calls = []

    def busy():
        # A thread deciding without pause, holding the GIL as a busy service does.
        n = 0
        try:
            while rt._fast_key is not None:
                noop()
                n += 1
        except ProtectedCallError:
            pass  # the path ended between the test and the call: that call asked the daemon
        calls.append(n)
        busy_until_stopped.set()

    worker = threading.Thread(target=busy, daemon=True)
    worker.start()
    daemon_decisions = rt.daemon_decisions
    admin = admin_pb2_grpc.AdminServiceStub(grpc.insecure_channel(address))
    request = admin_pb2.SetStatusRequest(name=key, status=types_pb2.STATUS_OPEN)
    request.open_for.seconds = 3600
    admin.SetStatus(request, timeout=DEADLINE)

    assert busy_until_stopped.wait(DEADLINE), "the trip never reached the cached path"
    worker.join(DEADLINE)
    assert calls and calls[0] > 0, "the thread was deciding locally until the event came"
    # Stopped by the stream's event, not by asking the daemon (at most the one call that
    # began as the event was applied asked it).
    assert rt.daemon_decisions - daemon_decisions <= 1
    assert rt._view is not None and rt._view[0] == types_pb2.STATUS_OPEN
    assert rt.synced.is_set(), "the stream stayed live: the event, not a reconnect, stopped it"
    policy.close()


@pytest.fixture
def turns(monkeypatch):
    """The fast path's GIL hand-offs, listed instead of made."""
    given = []
    monkeypatch.setattr(_protector, "_give_way", given.append)
    return given


def test_the_fast_path_gives_the_gil_away_at_its_checkpoint_and_stays_local(address, key, turns):
    policy, noop = _synced_noop(address, key)
    rt = policy._rt
    rt._check_at = 0.0  # the checkpoint has passed
    local, remote = rt.cache_decisions, rt.daemon_decisions
    noop()
    assert turns == [0], "the call past the checkpoint gave the GIL away once"
    assert (rt.cache_decisions, rt.daemon_decisions) == (local + 1, remote), "and was decided locally"
    # The next checkpoint is set, and never past the stream's own deadline.
    assert 0 < rt._check_at <= rt._fresh_until
    # fast_generation (asyncio, explicit acquire) takes the same checkpoint.
    rt._check_at = 0.0
    assert rt.fast_generation() == rt._fast_gen > 0
    assert turns == [0, 0]
    policy.close()


def test_past_the_streams_deadline_the_checkpoint_sends_the_call_to_the_daemon(address, key, turns):
    policy, noop = _synced_noop(address, key)
    rt = policy._rt
    # The stream stopped vouching (as if nothing came for watch_staleness).
    rt._fresh_until = rt._check_at = 0.0
    local, remote = rt.cache_decisions, rt.daemon_decisions
    noop()
    assert turns == [], "a stale stream is not waited for"
    assert (rt.cache_decisions, rt.daemon_decisions) == (local, remote + 1)
    policy.close()


def test_an_event_applied_while_the_gil_was_given_away_decides_that_call(address, key, monkeypatch):
    policy, noop = _synced_noop(address, key)
    rt = policy._rt

    def trip_meanwhile(_):
        # What the Watch reader does with the GIL it was given: the cached path ends.
        rt.set_view(types_pb2.STATUS_OPEN, rt._fast_gen + 1, True, rt._view_rev + 1)

    monkeypatch.setattr(_protector, "_give_way", trip_meanwhile)
    rt._check_at = 0.0
    local = rt.cache_decisions
    try:
        noop()
    except ProtectedCallError:
        pass  # the daemon (CLOSED in truth) may admit it: either way it was asked
    assert rt.cache_decisions == local, "the call was not admitted in the generation just left"
    policy.close()
