"""Throughput of a no-op protected function in one Python process.

    python3 client/python/bench.py --start            # builds and starts a release circuitd
    python3 client/python/bench.py --address HOST:PORT

Prints calls/s for a CircuitProtectorPolicy in cached mode (the default), or asking the
daemon for every call with --uncached. The goal is at least 40,000 calls/s cached.
Calls a busy machine left to the fallback (an Acquire past its 50 ms deadline) are
counted apart and not in the rate. bench_peers.py compares with pybreaker on Redis.
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


def measure(address: str, seconds: float, cached: bool, warmup: int = 10_000) -> float:
    # fallback "allow": on a busy machine an Acquire may miss its 50 ms deadline; such a
    # call runs unrecorded (counted below) instead of ending the run with a rejection.
    policy = CircuitProtectorPolicy(
        resource_key=f"bench-{uuid.uuid4().hex[:8]}", address=address, cached=cached, fallback="allow"
    )

    @policy
    def noop() -> None:
        return None

    noop()
    if cached and not policy._rt.synced.wait(5):
        raise SystemExit("the watch did not sync within 5 s")
    for _ in range(warmup):
        noop()
    calls, before, start = 0, policy.fallback_decisions, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(1_000):
            noop()
        calls += 1_000
    # A fallback decision costs next to nothing: only the daemon's decisions are counted.
    decided = calls - (policy.fallback_decisions - before)
    # The successes reached the daemon: a read flushes this process's pending reports.
    recorded = policy._rt.get().counters.successes
    expected = calls + warmup + 1 - policy.fallback_decisions
    if recorded != expected:
        raise SystemExit(f"the daemon recorded {recorded} successes, expected {expected}")
    if policy.fallback_decisions:
        print(f"({policy.fallback_decisions} calls decided by the fallback: the daemon missed the deadline)")
    policy.close()
    return decided / elapsed


def daemon_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="a running circuitd (default: $RESILIENT_CIRCUIT_ADDRESS or 127.0.0.1:50051)")
    parser.add_argument("--start", action="store_true", help="start circuitd ($CIRCUITD_BIN, else a release build)")


def daemon_of(args: argparse.Namespace):
    """The daemon started for the run (None with --address) and the address to use."""
    if not args.start:
        return None, args.address
    from daemon import Daemon, circuitd_binary

    daemon = Daemon(circuitd_binary("release"))
    return daemon, daemon.address


def main() -> int:
    parser = argparse.ArgumentParser(description="calls/s of a no-op protected function")
    daemon_arguments(parser)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--uncached", action="store_true", help="ask the daemon for every call")
    args = parser.parse_args()
    daemon, address = daemon_of(args)
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
