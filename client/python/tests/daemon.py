"""Starting and stopping a real circuitd for the tests (and bench.py)."""

from __future__ import annotations

import os
import pathlib
import queue
import signal
import subprocess
import threading
import time

WORKSPACE = pathlib.Path(__file__).resolve().parents[3]


def circuitd_binary(profile: str = "debug") -> pathlib.Path:
    """$CIRCUITD_BIN, else the workspace's binary, built with cargo first."""
    given = os.environ.get("CIRCUITD_BIN")
    if given:
        return pathlib.Path(given)
    # With replicated mode, as ./run-tests builds it: the cluster tests start replicas.
    args = ["cargo", "build", "--quiet", "-p", "circuitd", "--features", "etcd"]
    if profile == "release":
        args.append("--release")
    subprocess.run(args, cwd=WORKSPACE, check=True)
    return WORKSPACE / "target" / profile / "circuitd"


class Daemon:
    """A circuitd with in-memory state (on a port the OS picks unless `listen` is given,
    e.g. the address of a daemon that stopped), started with `extra` flags too; `address`
    once it listens. `in_memory=False` leaves the state to `extra` (`--data-dir DIR`)."""

    def __init__(
        self,
        binary: pathlib.Path,
        *,
        listen: str = "127.0.0.1:0",
        startup_deadline: float = 30.0,
        extra: tuple[str, ...] = (),
        in_memory: bool = True,
    ) -> None:
        memory = ("--in-memory",) if in_memory else ()
        self.process = subprocess.Popen(
            [str(binary), "--listen", listen, *memory, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            for line in self.process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        try:
            while True:
                line = lines.get(timeout=startup_deadline)
                if line is None:
                    raise RuntimeError(f"circuitd exited with {self.process.wait()} before listening")
                if line.startswith("listening on "):
                    self.address = line.removeprefix("listening on ").strip()
                    break
        except queue.Empty:
            self.process.kill()
            raise RuntimeError(f"circuitd did not print `listening on` within {startup_deadline}s") from None
        except BaseException:
            self.process.kill()
            raise

    def freeze(self, deadline: float = 10.0) -> None:
        """SIGSTOP, then waits until every thread has stopped: kill(2) only queues the stop,
        and a request sent before that could still be answered."""
        pid = self.process.pid
        self.process.send_signal(signal.SIGSTOP)
        until = time.monotonic() + deadline
        while not _stopped_all(pid):
            assert time.monotonic() < until, f"circuitd (pid {pid}) did not stop on SIGSTOP"

    def thaw(self) -> None:
        """SIGCONT: a frozen daemon goes on."""
        self.process.send_signal(signal.SIGCONT)

    def stop(self, deadline: float = 10.0) -> int:
        """SIGTERM, then the exit status (killed if it outlives `deadline`)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def _stopped_all(pid: int) -> bool:
    """Whether every thread of process `pid` is stopped (state T in /proc/PID/task/TID/stat)."""
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
            if stat[stat.rindex(")") + 2] != "T":
                return False
    except (OSError, ValueError, IndexError):
        return False
    return True
