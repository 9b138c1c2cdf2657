"""Decisions/s of a no-op protected function against the peer circuitd replaces, in one run.

    sudo apt-get install redis-server     # Debian's; the script starts its own on a free loopback port
    pip install pybreaker redis            # for this benchmark only: not dependencies of the client
    cargo build --release -p circuitd
    CIRCUITD_BIN=target/release/circuitd python3 client/python/bench_peers.py --start

Contenders, each a loop of calls to a decorated function that does nothing, on one thread:
ours with `cached=False` (an Acquire per call), ours cached (the default), and pybreaker
with its Redis state storage (`CircuitRedisStorage`). They take turns for `--rounds`
rounds, so load from elsewhere on the machine falls on all of them alike; the median of
each is printed with its ratio to pybreaker. `--transports` also compares, bare, the ways
an uncached call could ask the daemon from Python: grpcio's unary Acquire; an Acquire on
grpcio's Session stream, read by a thread that hands each answer to its caller (the only
way to honour the call's deadline on a stream from grpcio's synchronous API); and the
Session stream the client uses (`_session`: HTTP/2 over a socket the caller reads).
"""

from __future__ import annotations

import argparse
import itertools
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import Callable

from bench import daemon_arguments, daemon_of, measure  # bench also puts the client and its tests on sys.path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """A redis-server of our own, persistence off, on a free loopback port."""

    def __init__(self, startup_deadline: float = 10.0) -> None:
        import redis

        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server not found: apt-get install redis-server")
        self.port = free_port()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        self.client = redis.Redis(host="127.0.0.1", port=self.port)
        end = time.monotonic() + startup_deadline
        while True:
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > end:
                    self.stop()
                    raise SystemExit("redis-server did not answer a PING") from None
                time.sleep(0.05)  # polling its start-up, with a deadline

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def loop(call: Callable[[], object], seconds: float, warmup: int) -> float:
    for _ in range(warmup):
        call()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(100):
            call()
        calls += 100
    return calls / elapsed


def pybreaker_redis(redis_client, seconds: float, warmup: int) -> float:
    import pybreaker

    storage = pybreaker.CircuitRedisStorage(
        pybreaker.STATE_CLOSED, redis_client, namespace=f"bench-{uuid.uuid4().hex[:8]}"
    )
    breaker = pybreaker.CircuitBreaker(state_storage=storage)

    @breaker
    def noop() -> None:
        return None

    return loop(noop, seconds, warmup)


def transports(address: str, seconds: float) -> dict[str, float]:
    """Acquires/s of a bare unary Acquire and of an Acquire on a Session stream."""
    import grpc

    from resilient_circuit_client._generated import protector_pb2, protector_pb2_grpc, types_pb2

    channel = grpc.insecure_channel(address)
    stub = protector_pb2_grpc.ProtectorServiceStub(channel)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    stub.EnsureProtector(protector_pb2.EnsureProtectorRequest(name=name, policy=types_pb2.Policy()), timeout=5)
    acquire = protector_pb2.AcquireRequest(name=name)

    requests: queue.SimpleQueue = queue.SimpleQueue()
    responses = stub.Session(iter(requests.get, None))
    waiting: dict[int, list] = {}

    def read() -> None:
        try:
            for r in responses:
                w = waiting.pop(r.id)
                w[1] = r
                w[0].release()
        except grpc.RpcError:
            pass  # the channel closed at the end of the measure

    threading.Thread(target=read, daemon=True).start()
    ids = itertools.count(1)

    def on_session() -> object:
        i, ready = next(ids), threading.Lock()
        ready.acquire()
        w = waiting[i] = [ready, None]
        requests.put(protector_pb2.SessionRequest(id=i, acquire=acquire))
        if not ready.acquire(timeout=1.0):
            raise SystemExit("a Session Acquire took over 1 s")
        return w[1]

    from resilient_circuit_client import _session

    raw = _session.Stream(*_session.host_port(address), address, None, 5.0)
    field = _session.acquire_field(name)
    rates = {
        "unary Acquire (bare)": loop(lambda: stub.Acquire(acquire, timeout=1.0), seconds, 500),
        "Session Acquire, grpcio, reader thread (bare)": loop(on_session, seconds, 500),
        "Session Acquire, socket read by the caller (bare)": loop(lambda: raw.acquire(field, name, 1.0), seconds, 500),
    }
    raw.close()
    requests.put(None)
    channel.close()
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description="ours against pybreaker on Redis, decisions/s")
    daemon_arguments(parser)
    parser.add_argument("--seconds", type=float, default=2.0, help="per contender and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--transports", action="store_true", help="also unary against Session Acquire")
    args = parser.parse_args()
    daemon, address = daemon_of(args)
    redis = None
    rates: dict[str, list[float]] = {}
    extra: dict[str, list[float]] = {}
    try:
        redis = Redis()
        contenders: dict[str, Callable[[], float]] = {
            "ours, cached=False": lambda: measure(address, args.seconds, cached=False, warmup=1_000),
            "ours, cached=True": lambda: measure(address, args.seconds, cached=True, warmup=1_000),
            "pybreaker, CircuitRedisStorage": lambda: pybreaker_redis(redis.client, args.seconds, 1_000),
        }
        for _ in range(args.rounds):
            for name, run in contenders.items():
                rates.setdefault(name, []).append(run())
        if args.transports:
            for _ in range(args.rounds):
                for name, rate in transports(address, args.seconds).items():
                    extra.setdefault(name, []).append(rate)
    finally:
        if redis is not None:
            redis.stop()
        if daemon is not None:
            daemon.stop()
    peer = statistics.median(rates["pybreaker, CircuitRedisStorage"])
    print(f"| contender | decisions/s (median of {args.rounds}) | rounds | ratio to pybreaker on Redis |")
    print("|---|---:|---|---:|")
    for name, values in {**rates, **extra}.items():
        m = statistics.median(values)
        each = ", ".join(f"{v:,.0f}" for v in values)
        print(f"| {name} | {m:,.0f} | {each} | {m / peer:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
