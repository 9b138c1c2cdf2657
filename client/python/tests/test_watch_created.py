"""A protector's creation reaching the Watch stream after this process already applied a
later transition (it created the protector itself and, say, assigned OPEN): the creation is
old news and undoes nothing. The stream is driven by hand: no daemon."""

from resilient_circuit_client import CircuitProtectorPolicy, CircuitStatus
from resilient_circuit_client._generated import protector_pb2, types_pb2
from resilient_circuit_client._watch import _apply


def test_a_creation_older_than_an_applied_transition_changes_nothing():
    seen = []
    # Never started: nothing connects to this address.
    policy = CircuitProtectorPolicy(resource_key="late-created", address="127.0.0.1:9")
    policy._on_status_change = lambda p, old, new: seen.append((old, new))
    rt = policy._rt
    # This process's own answers: the protector created (revision 5), then OPEN (revision 6).
    rt.notifier.snapshot("CLOSED", 1, 5, True)
    rt.set_view(types_pb2.STATUS_CLOSED, 1, True, 5, force=True)
    transition = types_pb2.Transition(to=types_pb2.STATUS_OPEN, generation=2)
    setattr(transition, "from", types_pb2.STATUS_CLOSED)
    rt.apply_transition(transition, 6)
    assert seen == [(CircuitStatus.CLOSED, CircuitStatus.OPEN)]

    created = protector_pb2.WatchEvent(
        revision=5, created=types_pb2.Protector(name="late-created", status=types_pb2.STATUS_CLOSED, generation=1)
    )
    state = {"snapshotting": False, "seen": False, "resynced": False}
    _apply(rt, created, 4, 4, None, state, 0.0)
    assert seen == [(CircuitStatus.CLOSED, CircuitStatus.OPEN)], "a synthetic change back to CLOSED"
    assert rt.notifier.status == "OPEN"
    assert rt._view[:2] == (types_pb2.STATUS_OPEN, 2)
