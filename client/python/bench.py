"""Throughput of a no-op protected function in one Python process.

    python3 client/python/bench.py --start            # builds and starts a release circuitd
    python3 client/python/bench.py --address HOST:PORT

Prints calls/s for a CircuitProtectorPolicy in cached mode (the default), or asking the
daemon for every call with --uncached. The goal is at least 40,000 calls/s cached.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
import uuid

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "tests"))

from resilient_circuit_client import CircuitProtectorPolicy  # noqa: E402


def measure(address: str, seconds: float, cached: bool) -> float:
    policy = CircuitProtectorPolicy(resource_key=f"bench-{uuid.uuid4().hex[:8]}", address=address, cached=cached)

    @policy
    def noop() -> None:
        return None

    noop()
    if cached and not policy._rt.synced.wait(5):
        raise SystemExit("the watch did not sync within 5 s")
    for _ in range(10_000):  # warm-up
        noop()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(1_000):
            noop()
        calls += 1_000
    # The successes reached the daemon: a read flushes this process's pending reports.
    recorded = policy._rt.get().counters.successes
    if recorded != calls + 10_001:
        raise SystemExit(f"the daemon recorded {recorded} successes, expected {calls + 10_001}")
    policy.close()
    return calls / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description="calls/s of a no-op protected function")
    parser.add_argument("--address", help="a running circuitd (default: $RESILIENT_CIRCUIT_ADDRESS or 127.0.0.1:50051)")
    parser.add_argument("--start", action="store_true", help="build and start a release circuitd for the run")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--uncached", action="store_true", help="ask the daemon for every call")
    args = parser.parse_args()
    daemon = None
    address = args.address
    if args.start:
        from daemon import Daemon, circuitd_binary

        daemon = Daemon(circuitd_binary("release"))
        address = daemon.address
    try:
        rate = measure(address, args.seconds, cached=not args.uncached)
    finally:
        if daemon is not None:
            daemon.stop()
    mode = "uncached" if args.uncached else "cached"
    print(f"{rate:.0f} calls/s ({mode}, {args.seconds:g} s, one process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
