#!/usr/bin/env python3
"""Replicated mode's benchmarks, all in one run (BENCHMARKS.md, "Replicated mode").

Starts a one-member etcd (Debian's etcd-server) on free loopback ports, then:
  1. decisions/s, unary and Session, 64 in flight, `circuitctl bench` against
     a single-node journal daemon (--data-dir), the leader of a three-replica
     cluster, and one of its followers; and transitions/s (--trip) against the
     single node and the leader. Ratios are to the single node of the same run.
  2. failover: kill -9 of the leader, N times; the time from the kill to the
     first decision answered by a survivor (Acquire, through the survivors in
     turn, 2 ms apart), p50 and p99; the killed replica is started again
     before the next kill.

Usage: cluster_bench.py [--kills 20] [--duration 10s] [--runs 1]
Needs target/release/circuitd built with `--features etcd` and
target/release/circuitctl (cargo build --release -p circuitd --features etcd -p circuitctl).
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "client", "python"))

import grpc  # noqa: E402
from resilient_circuit_client._generated import (  # noqa: E402
    admin_pb2,
    admin_pb2_grpc,
    protector_pb2,
    protector_pb2_grpc,
)

CIRCUITD = os.path.join(ROOT, "target", "release", "circuitd")
CIRCUITCTL = os.path.join(ROOT, "target", "release", "circuitctl")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, what, deadline=30.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.01)
    raise SystemExit(f"timed out waiting for {what}")


class Proc:
    def __init__(self, argv, log):
        self.log = log
        self.argv = argv
        self.start()

    def start(self):
        self.out = open(self.log, "a")
        self.p = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self.out, text=True)

    def listening(self):
        line = self.p.stdout.readline()
        m = re.match(r"listening on (\S+)", line)
        if not m:
            raise SystemExit(f"{self.argv[0]} did not start: {open(self.log).read()[-2000:]}")
        return m.group(1)

    def kill(self, sig=signal.SIGKILL):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            self.p.wait()

    def role(self):
        """Its own role as GetCluster says, or None when it does not answer."""
        if self.p.poll() is not None:
            return None
        try:
            stub = admin_pb2_grpc.AdminServiceStub(grpc.insecure_channel(self.addr))
            answer = stub.GetCluster(admin_pb2.GetClusterRequest(), timeout=0.5)
        except grpc.RpcError:
            return None
        own = [r for r in answer.replicas if r.advertise == self.addr]
        return own[0].role if own else None


def bench(addr, mode, duration, extra=()):
    argv = [CIRCUITCTL, "--json", "--addr", f"http://{addr}", "bench", "--mode", mode,
            "--concurrency", "64", "--duration", duration, *extra]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def rate(report, key):
    if key not in report:
        raise SystemExit(f"no {key} in {report}")
    return float(report[key])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--duration", default="10s")
    args = ap.parse_args()
    if not shutil.which("etcd"):
        raise SystemExit("etcd not found: apt-get install etcd-server")
    work = tempfile.mkdtemp(prefix="cluster-bench-")
    client_port, peer_port = free_port(), free_port()
    etcd = Proc(["etcd", "--data-dir", f"{work}/etcd", "--name", "b",
                 "--listen-client-urls", f"http://127.0.0.1:{client_port}",
                 "--advertise-client-urls", f"http://127.0.0.1:{client_port}",
                 "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                 "--initial-cluster", f"b=http://127.0.0.1:{peer_port}"], f"{work}/etcd.log")
    url = f"http://127.0.0.1:{client_port}"

    def etcd_up():
        try:
            socket.create_connection(("127.0.0.1", client_port), 0.2).close()
            return True
        except OSError:
            return False

    wait_for(etcd_up, "etcd")
    procs = []
    try:
        single = Proc([CIRCUITD, "--listen", "127.0.0.1:0", "--data-dir", f"{work}/single"], f"{work}/single.log")
        procs.append(single)
        single_addr = single.listening()
        replicas = []
        for i in range(3):
            port = free_port()
            r = Proc([CIRCUITD, "--etcd", url, "--listen", f"127.0.0.1:{port}"], f"{work}/r{i}.log")
            r.addr = r.listening()
            replicas.append(r)
            procs.append(r)
        def the_leader():
            leaders = [r for r in replicas if r.role() == admin_pb2.REPLICA_ROLE_LEADER]
            return leaders[0] if len(leaders) == 1 else None

        wait_for(lambda: the_leader() is not None, "a leader")
        leader = the_leader()
        follower = next(r for r in replicas if r is not leader)
        results = {}
        for mode, extra in [("unary", ()), ("session", ()),
                            ("unary-trip", ("--trip", "--failure-rate", "1.0", "--protectors", "64"))]:
            real = "unary" if mode.startswith("unary") else mode
            targets = [("single", single_addr), ("leader", leader.addr)]
            if mode != "unary-trip":
                targets.append(("follower", follower.addr))
            for name, addr in targets:
                report = bench(addr, real, args.duration, extra)
                results[(mode, name)] = report
                print(f"{mode:11} {name:9} {json.dumps(report)}", flush=True)
        print()
        for mode in ("unary", "session", "unary-trip"):
            key = "transitions_per_sec" if mode == "unary-trip" else "decisions_per_sec"
            base = rate(results[(mode, "single")], key)
            for name in ("leader", "follower"):
                if (mode, name) in results:
                    got = rate(results[(mode, name)], key)
                    print(f"{mode:11} {name:9} {key} {got:10.0f}  {got / base:.3f} of single-node ({base:.0f})")

        # Failover.
        channels = {r.addr: protector_pb2_grpc.ProtectorServiceStub(grpc.insecure_channel(r.addr)) for r in replicas}
        stub = channels[leader.addr]
        stub.EnsureProtector(protector_pb2.EnsureProtectorRequest(name="failover"))
        times = []
        for k in range(args.kills):
            wait_for(lambda: the_leader() is not None, "a leader")
            leader = the_leader()
            survivors = [r for r in replicas if r is not leader]
            t0 = time.monotonic()
            leader.kill()
            answered = None
            while answered is None:
                for r in survivors:
                    try:
                        channels[r.addr].Acquire(protector_pb2.AcquireRequest(name="failover"), timeout=0.5)
                        answered = time.monotonic() - t0
                        break
                    except grpc.RpcError:
                        pass
                    time.sleep(0.002)
                if time.monotonic() - t0 > 30:
                    raise SystemExit("no decision within 30 s of the kill")
            times.append(answered)
            print(f"kill {k + 1:2}: first decision after {answered * 1000:.0f} ms", flush=True)
            # Bring it back as a follower before the next kill.
            leader.argv[leader.argv.index("--listen") + 1] = leader.addr
            leader.start()
            leader.listening()
            wait_for(lambda: the_leader() in survivors, "a new leader among the survivors")
        times.sort()
        p50 = statistics.median(times)
        p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
        print(f"failover over {len(times)} kills: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms")
    finally:
        for p in procs:
            p.kill(signal.SIGTERM)
        etcd.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
