"""Coroutine functions go through grpc.aio, and a cancelled call never leaks a HALF_OPEN
trial permit: it is reported IGNORED, so the daemon's trials in flight fall back to 0 long
before the permit's time to live (60 s here) would have expired it as a failure."""

import asyncio
import threading
import time
from datetime import timedelta

import grpc
import pytest

from resilient_circuit_client import CircuitProtectorPolicy, CircuitStatus
from resilient_circuit_client._generated import protector_pb2, protector_pb2_grpc, types_pb2

#: How long the daemon may take to see a release: a liveness bound, far below permit_ttl.
SETTLE = 10.0


@pytest.fixture
def protectors(address):
    channel = grpc.insecure_channel(address)
    yield protector_pb2_grpc.ProtectorServiceStub(channel)
    channel.close()


def half_open(address, key, cached):
    # A deadline no busy machine misses: an Acquire that timed out on the client after the
    # daemon admitted it would hold its trial until permit_ttl, which is not under test.
    policy = CircuitProtectorPolicy(
        resource_key=key,
        address=address,
        cached=cached,
        acquire_deadline=timedelta(seconds=10),
        cooldown=timedelta(seconds=30),
        trial_permits=1,
        permit_ttl=timedelta(seconds=60),
    )
    policy.status = CircuitStatus.HALF_OPEN
    return policy


def settled(protectors, key, admitted):
    """The daemon's protector once `admitted` Acquires were admitted and no trial is in
    flight (polled: the release is reported in the background)."""
    end = time.monotonic() + SETTLE
    while True:
        p = protectors.GetProtector(protector_pb2.GetProtectorRequest(name=key), timeout=5).protector
        if (p.counters.admitted, p.trials_in_flight) == (admitted, 0) or time.monotonic() > end:
            return p
        time.sleep(0.01)  # polling the daemon's state, with a deadline


def counters(protectors, key):
    return protectors.GetProtector(protector_pb2.GetProtectorRequest(name=key), timeout=5).protector.counters


@pytest.mark.parametrize("cached", [True, False])
@pytest.mark.parametrize("timeout", [0.001, 0.2], ids=["during-the-acquire", "during-the-function"])
def test_a_wait_for_timeout_reports_the_trial_ignored(address, key, protectors, cached, timeout):
    policy = half_open(address, key, cached)
    before = counters(protectors, key)

    @policy
    async def hangs():
        await asyncio.Event().wait()

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(hangs(), timeout)
        # The loop goes on (as a server's does) while an Acquire's answer may arrive.
        return await asyncio.to_thread(settled, protectors, key, before.admitted + 1)

    p = asyncio.run(main())
    assert (p.counters.admitted, p.trials_in_flight) == (before.admitted + 1, 0)
    assert p.counters.ignored == before.ignored + 1
    assert (p.status, p.counters.failures) == (types_pb2.STATUS_HALF_OPEN, before.failures)
    assert policy.status is CircuitStatus.HALF_OPEN


@pytest.mark.parametrize("cached", [True, False])
def test_a_task_cancelled_while_its_acquire_is_in_flight_releases_the_trial(address, key, protectors, cached):
    policy = half_open(address, key, cached)
    before = counters(protectors, key)
    ran = threading.Event()

    @policy
    async def op():
        ran.set()

    async def main():
        task = asyncio.ensure_future(op())
        await asyncio.sleep(0)  # one turn of the loop: the task starts and sends its Acquire
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The loop goes on (as a server's does) while the Acquire's answer arrives.
        return await asyncio.to_thread(settled, protectors, key, before.admitted + 1)

    p = asyncio.run(main())
    assert not ran.is_set()
    assert (p.counters.admitted, p.trials_in_flight) == (before.admitted + 1, 0)
    assert p.counters.failures == before.failures
    assert policy.status is CircuitStatus.HALF_OPEN


@pytest.mark.parametrize("cached", [True, False])
def test_a_task_cancelled_while_the_function_runs_reports_ignored_and_the_next_trial_goes(
    address, key, protectors, cached
):
    policy = half_open(address, key, cached)
    before = counters(protectors, key)

    @policy
    async def op(started, finish):
        started.set()
        await finish.wait()
        return "done"

    async def main():
        started, finish = asyncio.Event(), asyncio.Event()
        task = asyncio.ensure_future(op(started, finish))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        task.cancel()  # a second cancellation, once the release is under way, changes nothing

    asyncio.run(main())
    p = settled(protectors, key, before.admitted + 1)
    assert (p.counters.admitted, p.trials_in_flight) == (before.admitted + 1, 0)
    assert p.counters.ignored == before.ignored + 1

    async def next_trial():
        finish = asyncio.Event()
        finish.set()
        return await op(asyncio.Event(), finish)

    assert asyncio.run(next_trial()) == "done", "the permit was released: the next trial is admitted"
    assert policy.status is CircuitStatus.CLOSED


def test_coroutine_calls_start_no_thread(address, key):
    policy = CircuitProtectorPolicy(resource_key=key, address=address, cached=False)

    @policy
    async def op():
        return threading.current_thread()

    async def main():
        await op()  # the first call may start the connection's threads
        before = threading.active_count()
        threads = await asyncio.gather(*(op() for _ in range(50)))
        return before, threading.active_count(), threads

    before, after, threads = asyncio.run(main())
    assert all(t is threading.main_thread() for t in threads)
    assert after <= before, "a thread per call"
    assert policy.fallback_decisions == 0
