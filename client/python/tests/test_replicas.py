"""Several daemon addresses (the replicas of one cluster): the client asks one at a time
and moves to the next when it cannot be reached, for its calls and its Watch.

The daemons here are two standalone in-memory ones, not a cluster: their states differ,
which is what lets a test tell which one answered."""

import queue
import socket
from datetime import timedelta

import pytest

from daemon import Daemon
from resilient_circuit_client import CircuitProtectorPolicy, CircuitStatus
from resilient_circuit_client._connection import resolve_address

# Far above any deadline the client has: only a hang runs into it.
LIVENESS = 10.0
# The deadline of tests that assert the daemon, not the fallback, decided: a loaded machine
# may answer a call later than the default 50 ms, and that is not what they test.
PATIENT = timedelta(seconds=LIVENESS / 2)


@pytest.fixture
def two_daemons(circuitd_bin):
    a, b = Daemon(circuitd_bin), Daemon(circuitd_bin)
    yield a, b
    a.stop()
    b.stop()


def dead_address() -> str:
    """A loopback port nothing listens on (bound, then closed): connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def ran(policy):
    @policy
    def op():
        return "ran"

    return op


def test_addresses_are_a_list_or_comma_separated_and_validated():
    assert resolve_address(["127.0.0.1:1", "127.0.0.1:2"]) == "127.0.0.1:1,127.0.0.1:2"
    assert resolve_address("127.0.0.1:1,127.0.0.1:2") == "127.0.0.1:1,127.0.0.1:2"
    for bad in ["127.0.0.1:1,,127.0.0.1:2", "127.0.0.1:1, 127.0.0.1:2", ["127.0.0.1:1", ""]]:
        with pytest.raises(ValueError):
            CircuitProtectorPolicy(address=bad)


@pytest.mark.parametrize("cached", [False, True])
def test_a_dead_first_address_is_passed_over(daemon, key, cached):
    policy = CircuitProtectorPolicy(
        resource_key=key,
        address=[dead_address(), daemon.address],
        fallback="deny",
        cached=cached,
        acquire_deadline=PATIENT,
    )
    op = ran(policy)
    for _ in range(5):
        assert op() == "ran"
    assert policy.fallback_decisions == 0
    assert policy._rt.conn.replica.address == daemon.address
    assert policy._rt.conn.link.downs == 0


def test_the_second_replica_answers_once_the_first_stopped(two_daemons, key):
    a, b = two_daemons
    policy = CircuitProtectorPolicy(
        resource_key=key,
        address=f"{a.address},{b.address}",
        fallback="deny",
        cached=False,
        failure_limit=(5, 5),
        acquire_deadline=PATIENT,
    )
    op = ran(policy)
    assert op() == "ran"
    assert policy._rt.conn.replica.address == a.address
    assert a.stop() == 0
    for _ in range(5):
        assert op() == "ran"
    assert policy.fallback_decisions == 0, "B answered: no fallback decided"
    assert policy._rt.conn.replica.address == b.address
    # B holds the protector now (ensured there on first use), with B's own counters.
    assert policy.status == CircuitStatus.CLOSED
    assert policy.execution_log.success_count == 5


def test_the_watch_moves_to_the_next_replica_and_resyncs(two_daemons, key):
    a, b = two_daemons
    changes: "queue.Queue[tuple[CircuitStatus, CircuitStatus]]" = queue.Queue()
    watched = CircuitProtectorPolicy(
        resource_key=key,
        address=[a.address, b.address],
        cooldown=timedelta(seconds=60),
        on_status_change=lambda p, old, new: changes.put((old, new)),
    )
    on_a = CircuitProtectorPolicy(resource_key=key, address=a.address, cooldown=timedelta(seconds=60))
    on_b = CircuitProtectorPolicy(resource_key=key, address=b.address, cooldown=timedelta(seconds=60))
    # B's history: the protector OPEN, which A's watchers never saw.
    on_b.status = CircuitStatus.OPEN
    assert ran(watched)() == "ran"

    # The watch on A is live once it carries another process's transition.
    on_a.status = CircuitStatus.OPEN
    assert changes.get(timeout=LIVENESS) == (CircuitStatus.CLOSED, CircuitStatus.OPEN)
    on_a.status = CircuitStatus.CLOSED
    assert changes.get(timeout=LIVENESS) == (CircuitStatus.OPEN, CircuitStatus.CLOSED)

    # A stops: the stream resumes on B with A's revision and epoch, B answers RESYNC and
    # its snapshot, and the OPEN status it shows is reconciled as a change.
    assert a.stop() == 0
    assert changes.get(timeout=LIVENESS) == (CircuitStatus.CLOSED, CircuitStatus.OPEN)
    # And the stream goes on with B's transitions.
    on_b.status = CircuitStatus.CLOSED
    assert changes.get(timeout=LIVENESS) == (CircuitStatus.OPEN, CircuitStatus.CLOSED)
    assert watched._rt.conn.replica.address == b.address


def test_the_link_moves_round_robin_and_backs_off_only_after_a_full_round():
    from resilient_circuit_client._link import ASK, SKIP, Link

    link = Link(initial=60.0, cap=60.0, replicas=3)
    first = link.turn()
    assert link.failed("refused", first) and link.current == 1 and link.attempt() == ASK
    assert link.failed("refused", first), "a turn already left moves nothing"
    assert link.current == 1 and not link.down
    assert link.failed("refused") and link.current == 2
    assert not link.failed("refused"), "the round is over"
    assert link.down and link.downs == 1 and link.current == 0
    assert not link.failed("refused", first), "a late failure starts no round"
    assert link.attempt() == SKIP and link.current == 0
    link.up()
    assert link.failed("refused") and not link.down, "an answer starts a new round"
