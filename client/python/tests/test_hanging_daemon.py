"""A daemon that accepts connections and never answers: constructing a protector never
waits for it, and a call waits no longer than its acquire deadline before the fallback
decides. Bounds are the deadline plus a generous margin (a loaded machine), well under
the request timeout (1 s) that start-up used to wait."""

import asyncio
import socket
import threading
import time
from datetime import timedelta

import pytest

from resilient_circuit_client import CircuitProtectorPolicy, ProtectedCallError

#: Added to every deadline checked: scheduling on a busy machine, never a second.
MARGIN = 0.4


@pytest.fixture
def silent():
    """The address of a listener that accepts connections, then neither reads nor writes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted = []

    def accept():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # the listener was shut down
                return
            accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield "127.0.0.1:%d" % listener.getsockname()[1]
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    thread.join(5)
    for conn in accepted:
        conn.close()


def timed(fn):
    start = time.monotonic()
    try:
        return fn(), time.monotonic() - start
    except Exception as error:
        return error, time.monotonic() - start


@pytest.mark.parametrize("cached", [True, False])
def test_construction_with_a_callback_does_not_wait_for_the_daemon(silent, key, cached):
    policy, took = timed(
        lambda: CircuitProtectorPolicy(
            resource_key=key, address=silent, cached=cached, on_status_change=lambda p, old, new: None
        )
    )
    assert isinstance(policy, CircuitProtectorPolicy)
    assert took < MARGIN, f"the constructor waited {took:.3f}s for a daemon that never answers"


@pytest.mark.parametrize("cached", [True, False])
@pytest.mark.parametrize("callback", [True, False])
def test_the_first_call_honours_the_acquire_deadline_then_the_fallback_decides(silent, key, cached, callback):
    deadline = 0.05  # the default
    extra = {"on_status_change": lambda p, old, new: None} if callback else {}
    policy = CircuitProtectorPolicy(resource_key=key, address=silent, cached=cached, **extra)

    @policy
    def op():
        return "ran"

    error, took = timed(op)
    assert isinstance(error, ProtectedCallError) and error.fallback, error
    assert took < deadline + MARGIN, f"the first call took {took:.3f}s"
    assert policy.fallback_decisions == 1


def test_a_longer_acquire_deadline_is_honoured_too_with_the_allow_fallback(silent, key):
    deadline = 0.3
    policy = CircuitProtectorPolicy(
        resource_key=key, address=silent, fallback="allow", acquire_deadline=timedelta(seconds=deadline)
    )

    @policy
    def op():
        return "ran"

    result, took = timed(op)
    assert result == "ran"
    assert took < deadline + MARGIN, f"the first call took {took:.3f}s"
    # While the link is down, later calls answer from the fallback without waiting.
    for _ in range(3):
        result, took = timed(op)
        assert result == "ran" and took < deadline + MARGIN
    assert policy.fallback_decisions >= 1


def test_a_coroutine_function_honours_the_acquire_deadline_too(silent, key):
    policy = CircuitProtectorPolicy(resource_key=key, address=silent, cached=False, fallback="allow")

    @policy
    async def op():
        return "ran"

    async def main():
        start = time.monotonic()
        result = await op()
        return result, time.monotonic() - start

    result, took = asyncio.run(main())
    assert result == "ran" and policy.fallback_decisions == 1
    assert took < 0.05 + MARGIN, f"the first call took {took:.3f}s"


def test_a_batch_being_sent_holds_no_call_past_its_deadline(address, key):
    # The batcher holds the connection's `sending` lock while a ReportBatch is under way
    # (up to the request timeout when the daemon hangs); a call that must ensure its
    # protector first waits for that lock no longer than its own deadline.
    policy = CircuitProtectorPolicy(resource_key=key, address=address, cached=False, fallback="deny")

    @policy
    def noop():
        return None

    noop()
    rt = policy._rt
    rt.ensured = False  # as after a daemon that forgot the protector
    holding, done = threading.Event(), threading.Event()

    def batcher():
        with rt.conn.sending:
            holding.set()
            done.wait(30)

    threading.Thread(target=batcher, daemon=True).start()
    assert holding.wait(10)
    outcome = []

    def call():
        try:
            noop()
            outcome.append("admitted")
        except ProtectedCallError:
            outcome.append("denied by the fallback")

    caller = threading.Thread(target=call, daemon=True)
    try:
        caller.start()
        caller.join(10)
        assert outcome == ["denied by the fallback"], "the call waited for the batch, past its deadline"
    finally:
        done.set()
        caller.join(10)
    policy.close()
