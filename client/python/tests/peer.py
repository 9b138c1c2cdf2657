"""Another process sharing a protector: `python3 peer.py ADDRESS KEY`.

Fails calls of KEY (failure_limit 2/3, cooldown 30 s) until its own report trips the
protector, then prints `tripped <time.monotonic()>` (a clock every process on the machine
shares) and exits."""

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
    )

    @policy
    def fail():
        raise ConnectionError("down")

    for _ in range(1000):
        try:
            fail()
        except ConnectionError:
            pass
        except ProtectedCallError:
            print("rejected before tripping it", flush=True)
            return 1
        if CircuitStatus.OPEN in tripped:
            print(f"tripped {time.monotonic()}", flush=True)
            return 0
    print("never tripped", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
