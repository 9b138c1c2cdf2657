"""How fast another client's trip stops a cached Python process that is busy deciding.

    python3 client/python/bench_trip.py --start            # builds and starts a release circuitd
    python3 client/python/bench_trip.py --address HOST:PORT [--trips 200] [--switch-interval-ms 5]

The main thread calls a decorated no-op in a tight loop, holding the GIL, as a busy
service would. A helper process (another client) sets the protector OPEN with SetStatus;
the time runs from just before it sends the call (its CLOCK_MONOTONIC, shared by every
process of the host) to the first call of the loop that no longer takes the cached path.
The Watch thread must get the GIL to apply the event: the interpreter takes it from a busy
thread every switch interval (`sys.getswitchinterval()`, 5 ms by default), and the cached
fast path gives it away sooner, at its checkpoint every `TURN` (1 ms, see `_protector`).
The target is the switch interval plus 1 ms. Prints the percentiles in ms and the switch
interval.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid

from bench import HERE, daemon_arguments, daemon_of

from resilient_circuit_client import CircuitProtectorPolicy, ProtectedCallError  # noqa: E402

# The other client: reads "OPEN"/"CLOSED" lines, answers each with the monotonic instant
# just before its SetStatus went out.
HELPER = r"""
import sys, time
sys.path.insert(0, sys.argv[3])
import grpc
from resilient_circuit_client._generated import admin_pb2, admin_pb2_grpc, types_pb2
stub = admin_pb2_grpc.AdminServiceStub(grpc.insecure_channel(sys.argv[1]))
name = sys.argv[2]
for line in sys.stdin:
    status = types_pb2.STATUS_OPEN if line.strip() == "OPEN" else types_pb2.STATUS_CLOSED
    request = admin_pb2.SetStatusRequest(name=name, status=status)
    if status == types_pb2.STATUS_OPEN:
        request.open_for.seconds = 3600
    sent = time.monotonic()
    stub.SetStatus(request, timeout=10)
    print(sent, flush=True)
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def measure(address: str, trips: int) -> list[float]:
    name = f"bench-trip-{uuid.uuid4().hex[:8]}"
    policy = CircuitProtectorPolicy(resource_key=name, address=address, cached=True, fallback="allow")

    @policy
    def noop() -> None:
        return None

    noop()
    rt = policy._rt
    if not rt.synced.wait(5):
        raise SystemExit("the watch did not sync within 5 s")
    helper = subprocess.Popen(
        [sys.executable, "-c", HELPER, address, name, str(HERE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    latencies = []
    try:
        for _ in range(trips):
            helper.stdin.write("OPEN\n")
            helper.stdin.flush()
            # Busy, as a service is: each turn one cached call, until the path is gone.
            try:
                while rt._fast_key is not None:
                    noop()
            except ProtectedCallError:
                pass  # the path went between the test and the call: the daemon said OPEN
            stopped = time.monotonic()
            line = helper.stdout.readline()
            if not line:
                raise SystemExit("the helper's SetStatus failed (see its error above)")
            sent = float(line)
            latencies.append((stopped - sent) * 1000)
            helper.stdin.write("CLOSED\n")
            helper.stdin.flush()
            helper.stdout.readline()
            deadline = time.monotonic() + 10
            while rt._fast_key is None:
                if time.monotonic() > deadline:
                    raise SystemExit("the protector did not come back to CLOSED within 10 s")
                time.sleep(0.001)
    finally:
        helper.stdin.close()
        helper.wait()
        policy.close()
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description="trip-to-stop time of a busy cached Python process")
    daemon_arguments(parser)
    parser.add_argument("--trips", type=int, default=200)
    parser.add_argument(
        "--switch-interval-ms",
        type=float,
        default=None,
        help="sys.setswitchinterval for this process (default: the interpreter's, 5 ms)",
    )
    args = parser.parse_args()
    if args.switch_interval_ms is not None:
        if not 0 < args.switch_interval_ms <= 1000:
            parser.error("--switch-interval-ms must be above 0 and at most 1000")
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    daemon, address = daemon_of(args)
    try:
        latencies = measure(address, args.trips)
    finally:
        if daemon is not None:
            daemon.stop()
    figures = ", ".join(f"p{p} {percentile(latencies, p):.2f}" for p in (50, 90, 99))
    print(
        f"trip to stop, ms: {figures}, max {max(latencies):.2f} ({len(latencies)} trips);"
        f" switch interval {sys.getswitchinterval() * 1000:g} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
