"""Without cached mode a call is one round trip: the Acquire. Its SUCCESS goes to the daemon
later, in a batch; a FAILURE (or IGNORED) at once, after the successes before it; a trial's
outcome in a Report of its own. None is lost while the daemon can be reached, none is
reordered, and close() returns once every one was answered. When the daemon is gone they
are dropped and counted, and never sent to the daemon that comes back after an outage.

The daemon's view is read through a stub of the test's own, so no read here flushes the
protector's pending reports for it."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import grpc
import pytest

from daemon import Daemon
from resilient_circuit_client import CircuitProtectorPolicy, CircuitStatus
from resilient_circuit_client._generated import protector_pb2, protector_pb2_grpc, types_pb2

# A busy machine must not turn a slow Acquire into a fallback decision: these tests are
# about reports, not about the acquire deadline.
PATIENT = timedelta(seconds=5)


def daemon_view(address: str, name: str) -> types_pb2.Protector:
    with grpc.insecure_channel(address) as channel:
        stub = protector_pb2_grpc.ProtectorServiceStub(channel)
        return stub.GetProtector(protector_pb2.GetProtectorRequest(name=name), timeout=5).protector


def uncached(address: str, key: str, **kwargs) -> CircuitProtectorPolicy:
    return CircuitProtectorPolicy(resource_key=key, address=address, cached=False, acquire_deadline=PATIENT, **kwargs)


def protected(policy):
    @policy
    def op(fail: bool) -> None:
        if fail:
            raise ConnectionError("down")

    return op


def run(op, fail: bool) -> None:
    try:
        op(fail)
    except ConnectionError:
        assert fail


def test_a_success_costs_one_round_trip_and_is_reported_in_a_batch(address, key):
    policy = uncached(address, key)
    op = protected(policy)
    op(False)
    batches = policy._rt.conn.stats.batches_sent
    for _ in range(200):
        op(False)
    policy.close()
    p = daemon_view(address, key)
    assert (p.counters.admitted, p.counters.successes) == (201, 201)
    # Two hundred successes took far fewer batches than calls (one per flush interval at most).
    assert 0 < policy._rt.conn.stats.batches_sent - batches < 200


def test_many_calls_then_close_the_daemon_counted_every_outcome_in_order(address, key):
    # Window 10, tripping at 3 failures in it; one failure in 6 calls never trips, so every
    # report is accepted, and the window shows the last 10 outcomes in the calls' order (a
    # success sent after the failure that followed it would show up after it).
    policy = uncached(address, key, failure_limit=(3, 10))
    op = protected(policy)
    outcomes = [i % 6 == 5 for i in range(600)]
    for fail in outcomes:
        run(op, fail)
    policy.close()
    p = daemon_view(address, key)
    assert p.status == types_pb2.STATUS_CLOSED
    assert (p.counters.successes, p.counters.failures) == (500, 100)
    assert p.counters.stale_reports == 0
    assert list(p.window.outcomes) == [
        types_pb2.OUTCOME_FAILURE if fail else types_pb2.OUTCOME_SUCCESS for fail in outcomes[-10:]
    ]


def test_calls_from_many_threads_are_all_counted(address, key):
    policy = uncached(address, key, failure_limit=(100, 100))
    op = protected(policy)
    threads, per_thread = 4, 300

    def work() -> None:
        for i in range(per_thread):
            run(op, i % 10 == 9)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert not any(w.is_alive() for w in workers)
    policy.close()
    p = daemon_view(address, key)
    total = threads * per_thread
    assert (p.counters.successes, p.counters.failures, p.counters.stale_reports) == (total * 9 // 10, total // 10, 0)


def test_successes_before_a_tripping_failure_are_counted_before_it(address, key):
    # Window 6 tripping at its first failure: had the failure overtaken the five pending
    # successes, they would arrive in the next generation and be refused as stale.
    policy = uncached(address, key, failure_limit=(1, 6))
    op = protected(policy)
    for _ in range(5):
        op(False)
    with pytest.raises(ConnectionError):
        op(True)
    p = daemon_view(address, key)  # no close: the failure went at once, the successes with it
    assert p.status == types_pb2.STATUS_OPEN
    assert (p.counters.successes, p.counters.failures, p.counters.stale_reports) == (5, 1, 0)


def test_a_trial_is_reported_before_the_call_returns(address, key):
    changes = []
    policy = uncached(address, key, on_status_change=lambda p, old, new: changes.append(new))
    op = protected(policy)
    with pytest.raises(ConnectionError):
        op(True)  # failure_limit 1/1: OPEN; cooldown 0, so the next call is a trial
    assert daemon_view(address, key).status == types_pb2.STATUS_OPEN
    op(False)
    p = daemon_view(address, key)
    assert (p.status, p.trials_in_flight) == (types_pb2.STATUS_CLOSED, 0)
    with pytest.raises(ConnectionError):
        op(True)  # OPEN again
    with pytest.raises(ConnectionError):
        op(True)  # its trial fails: OPEN once more, the permit released
    p = daemon_view(address, key)
    assert (p.status, p.trials_in_flight) == (types_pb2.STATUS_OPEN, 0)
    assert changes[:3] == [CircuitStatus.OPEN, CircuitStatus.HALF_OPEN, CircuitStatus.CLOSED]


def test_an_interrupted_call_is_counted_as_ignored(address, key):
    policy = uncached(address, key)

    @policy
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    p = daemon_view(address, key)
    assert (p.counters.ignored, p.counters.successes, p.counters.failures) == (1, 0, 0)


def ready_on_own_daemon(circuitd_bin, key):
    """A daemon of the test's own, an uncached policy (fallback "allow") on it, and its
    function, called once and flushed: the connection is up, nothing is pending."""
    own = Daemon(circuitd_bin)
    policy = uncached(own.address, key, fallback="allow")
    op = protected(policy)
    op(False)
    policy.close()
    return own, policy, op


def test_successes_pending_when_the_daemon_is_gone_are_dropped_and_counted(circuitd_bin, key):
    # As the library drops a state write its unreachable storage refused: the calls ran,
    # their outcomes reach nobody, and nothing is raised to the caller.
    own, policy, op = ready_on_own_daemon(circuitd_bin, key)
    stats = policy._rt.conn.stats
    lost_before = stats.reports_lost
    with policy._rt.conn.sending:  # the batcher cannot send these before the daemon is gone
        for _ in range(10):
            op(False)
        own.stop()
    policy.close()  # returns once the batcher's attempt is over
    assert stats.reports_lost - lost_before == 10
    op(False)  # the fallback decides, as before
    assert policy.fallback_decisions == 1


def test_successes_pending_across_an_outage_never_reach_the_daemon_that_comes_back(circuitd_bin, key):
    # The daemon restarts without its state on the same address: it counts generations
    # anew, so successes of calls the old one admitted would pass for its own.
    first, policy, op = ready_on_own_daemon(circuitd_bin, key)
    stats = policy._rt.conn.stats
    lost_before = stats.reports_lost
    with policy._rt.conn.sending:  # the batcher cannot send these before the outage
        for _ in range(5):
            op(False)
        first.stop()
        op(False)  # the Acquire fails: the link goes down, the fallback decides
        assert policy._rt.conn.link.down and policy.fallback_decisions == 1
        second = Daemon(circuitd_bin, listen=first.address)
    try:
        # The link comes back on a probe after its backoff: poll, with a generous deadline.
        deadline = time.monotonic() + 30
        while policy._rt.conn.link.down and time.monotonic() < deadline:
            op(False)
            time.sleep(0.01)  # pacing the probes, not synchronisation
        assert not policy._rt.conn.link.down, "the link never came back"
        decided_by_second = policy._rt.get().counters.admitted
        policy.close()
        p = daemon_view(second.address, key)
        assert p.counters.successes == decided_by_second
        assert stats.reports_lost - lost_before == 5
    finally:
        second.stop()
