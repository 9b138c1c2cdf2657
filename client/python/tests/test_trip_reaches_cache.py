"""Another client's trip reaches a busy cached process through its Watch stream, as an
event: nothing polls (no timer, no Acquire), and the event needs the GIL once, the
Watch reader's own (bench_trip.py measures the time: within the switch interval plus
about a millisecond)."""

import threading
from datetime import timedelta

import grpc

from resilient_circuit_client import CircuitProtectorPolicy, ProtectedCallError
from resilient_circuit_client._generated import admin_pb2, admin_pb2_grpc, types_pb2

DEADLINE = 10.0


def test_a_trip_stops_the_cached_path_of_a_busy_thread_as_the_event_arrives(address, key):
    # A staleness of an hour: no PROGRESS and no freshness deadline can end the cached
    # path during the test; only the trip's event can.
    policy = CircuitProtectorPolicy(
        resource_key=key, address=address, watch_staleness=timedelta(hours=1), fallback="allow"
    )

    @policy
    def noop():
        return None

    noop()
    rt = policy._rt
    assert rt.synced.wait(DEADLINE), "the watch never synced"
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
