"""Two processes share one protector: failures in one trip it, and the other, never
restarted, is rejected and told through its on_status_change. How soon is a benchmark's
question (`client/python/bench.py`), not a test's: here it is ordering and liveness."""

import pathlib
import subprocess
import sys
import threading
import time
from datetime import timedelta
from fractions import Fraction

from resilient_circuit_client import CircuitProtectorPolicy, CircuitStatus, ProtectedCallError

PEER = pathlib.Path(__file__).resolve().parent / "peer.py"


def test_failures_in_another_process_trip_this_one(address, key):
    told = threading.Event()
    changes = []

    def on_change(policy, old, new):
        changes.append((old, new))
        told.set()

    policy = CircuitProtectorPolicy(
        resource_key=key,
        address=address,
        failure_limit=Fraction(2, 3),
        cooldown=timedelta(seconds=30),
        on_status_change=on_change,
    )

    @policy
    def work():
        return None

    work()
    assert policy._rt.synced.wait(5), "the watch never synced"
    peer = subprocess.Popen([sys.executable, str(PEER), address, key], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        rejected_at = None
        while time.monotonic() < deadline:
            try:
                work()
            except ProtectedCallError as e:
                rejected_at = time.monotonic()
                assert (e.status, e.reason, e.fallback) == (CircuitStatus.OPEN, "OPEN", False)
                break
        out, _ = peer.communicate(timeout=20)
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait()
    assert peer.returncode == 0, out
    assert rejected_at is not None, "this process was never rejected"
    tripped_at = float(out.split()[-1])
    assert rejected_at >= tripped_at, "rejected before the peer's trip"
    assert told.wait(10)
    assert changes == [(CircuitStatus.CLOSED, CircuitStatus.OPEN)]
    assert policy.status is CircuitStatus.OPEN
