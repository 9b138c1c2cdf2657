"""Another process sharing a protector: `python3 peer.py ADDRESS KEY`.

Fails calls of KEY (failure_limit 2/3, cooldown 30 s) until its own reports trip the
protector, then prints `tripped <time.monotonic()>` (a clock every process on the machine
shares: the start of the last call that failed, so no later than the trip) and exits. It
learns of the trip from its on_status_change or, when its next call is decided before
that callback ran, from that call's rejection: nobody else fails calls of KEY."""

import pathlib
import sys
import time
from datetime import timedelta
from fractions import Fraction

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from resilient_circuit_client import CircuitProtectorPolicy, CircuitStatus, ProtectedCallError  # noqa: E402


def main(address: str, key: str) -> int:
    tripped = []
    policy = CircuitProtectorPolicy(
        resource_key=key,
        address=address,
        failure_limit=Fraction(2, 3),
        cooldown=timedelta(seconds=30),
        on_status_change=lambda p, old, new: tripped.append(new),
        # A busy machine must not let the fallback reject a call: this peer trips the
        # protector by its reports, and a rejection means it did.
        acquire_deadline=timedelta(seconds=10),
    )

    @policy
    def fail():
        raise ConnectionError("down")

    last_failed = None
    for _ in range(1000):
        started = time.monotonic()
        try:
            fail()
        except ConnectionError:
            last_failed = started
        except ProtectedCallError as e:
            if last_failed is None or e.status is not CircuitStatus.OPEN:
                print("rejected before tripping it", flush=True)
                return 1
            print(f"tripped {last_failed}", flush=True)
            return 0
        if CircuitStatus.OPEN in tripped:
            print(f"tripped {last_failed}", flush=True)
            return 0
    print("never tripped", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
