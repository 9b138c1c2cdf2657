"""The client on a real cluster: a real etcd (Debian's etcd-server) and two real circuitd
replicas, the client given both addresses. When the leader is killed (SIGKILL), calls
go on through the survivor once it leads, answered by the daemon, not the fallback."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from datetime import timedelta

import pytest

from resilient_circuit_client import CircuitProtectorPolicy

# Far above any failover (the lease is 2 s): only a hang runs into it.
LIVENESS = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def etcd_binary() -> str:
    found = os.environ.get("ETCD_BIN") or shutil.which("etcd") or "/usr/bin/etcd"
    if not pathlib.Path(found).exists():
        pytest.fail("etcd not found: install Debian's etcd-server (apt-get install etcd-server) or set ETCD_BIN")
    return found


def wait_until(predicate, what: str) -> None:
    end = time.monotonic() + LIVENESS
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"not within {LIVENESS}s: {what}")
        time.sleep(0.02)


class Process:
    """A child process whose stderr goes to a file (read back for its log lines)."""

    def __init__(self, argv: list[str], log: pathlib.Path) -> None:
        self.log = log
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)

    def listening(self) -> str:
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            raise AssertionError(f"did not start: {self.log.read_text()[-2000:]}")
        return line.removeprefix("listening on ").strip()

    def leads(self) -> bool:
        return "role: leader" in self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def cluster(circuitd_bin):
    work = pathlib.Path(tempfile.mkdtemp(prefix="py-cluster-"))
    client_port, peer_port = free_port(), free_port()
    etcd = Process(
        [
            etcd_binary(),
            "--name", "py", "--data-dir", str(work / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{client_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{client_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"py=http://127.0.0.1:{peer_port}",
        ],
        work / "etcd.log",
    )
    replicas: list[Process] = []
    try:
        def etcd_up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", client_port), 0.2).close()
                return True
            except OSError:
                return False

        wait_until(etcd_up, "etcd listens")
        prefix = f"/py-{uuid.uuid4().hex[:8]}/"
        for i in range(2):
            r = Process(
                [str(circuitd_bin), "--etcd", f"http://127.0.0.1:{client_port}", "--etcd-prefix", prefix,
                 "--listen", "127.0.0.1:0"],
                work / f"r{i}.log",
            )
            replicas.append(r)
            r.address = r.listening()
        wait_until(lambda: any(r.leads() for r in replicas), "a leader")
        yield replicas
    finally:
        for r in replicas:
            r.stop(signal.SIGKILL)
        etcd.stop(signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)


def test_calls_go_on_through_the_survivor_when_the_leader_is_killed(cluster, key):
    leader = next(r for r in cluster if r.leads())
    survivor = next(r for r in cluster if r is not leader)
    policy = CircuitProtectorPolicy(
        resource_key=key,
        address=[leader.address, survivor.address],
        fallback="allow",
        cached=False,
        # Patient: a loaded machine answering late must not count as a fallback decision.
        acquire_deadline=timedelta(seconds=5),
    )

    @policy
    def op():
        return "ran"

    for _ in range(5):
        assert op() == "ran"
    assert policy.fallback_decisions == 0

    leader.stop(signal.SIGKILL)
    # Every call still runs (the fallback allows while no replica leads) ...
    wait_until(survivor.leads, "the survivor leads")
    # ... and then the daemon decides again: five calls in a row with no fallback.
    def answered_by_the_daemon() -> bool:
        before = policy.fallback_decisions
        for _ in range(5):
            assert op() == "ran"
        return policy.fallback_decisions == before

    wait_until(answered_by_the_daemon, "the survivor decides")
