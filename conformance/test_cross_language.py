"""The cross-language test (conformance/README.md, section 3): one circuitd, one agent per
language on one protector; each agent in turn trips it, and every agent must announce the
trip (the tripper from its own report, the others from their Watch), then the operator's
reset, exactly once and in order.

    python3 -m pytest -q conformance/test_cross_language.py

CONFORMANCE_AGENTS=rust,python plays a subset (default: all four). An agent asked for whose
program is missing FAILS the test with the command that makes it."""

from __future__ import annotations

import os
import pathlib
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "client" / "python"))
sys.path.insert(0, str(ROOT / "client" / "python" / "tests"))

from daemon import Daemon, circuitd_binary  # noqa: E402
from resilient_circuit_client._generated import admin_pb2, admin_pb2_grpc, types_pb2  # noqa: E402

ALL = ("rust", "python", "go", "node")
# Generous: an agent's start includes its runtime's (a JIT, an interpreter), and every wait
# below is for an event, never a measured delay.
DEADLINE = 60.0
NAME = "cross-language"


def run(args: list[str], cwd: pathlib.Path, hint: str) -> None:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"`{' '.join(args)}` in {cwd} failed ({done.returncode}): {hint}\n{done.stdout}\n{done.stderr}")


def need(command: str, hint: str) -> None:
    if shutil.which(command) is None:
        pytest.fail(f"`{command}` is not on PATH: {hint}")


def agent_command(language: str, scratch: pathlib.Path) -> list[str]:
    """The command line of `language`'s agent (without its arguments), built first."""
    if language == "rust":
        # With the whole workspace selected, features resolve as for `cargo test --workspace`
        # (./run-tests runs it first), whose build of the example is then reused as it is.
        run(
            ["cargo", "build", "--quiet", "--workspace", "--example", "conformance_agent"],
            ROOT,
            "the Rust agent is client/rust/examples/conformance_agent.rs",
        )
        target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        return [str(target / "debug" / "examples" / "conformance_agent")]
    if language == "python":
        return [sys.executable, str(ROOT / "client" / "python" / "conformance_agent.py")]
    if language == "go":
        go = ROOT / "client" / "go"
        if not (go / "cmd" / "conformance-agent").is_dir():
            pytest.fail(f"the Go agent is missing: {go}/cmd/conformance-agent (conformance/README.md, section 3)")
        # Go's own installer puts it in /usr/local/go, off PATH (./run-tests's Go suite looks there too).
        toolchain = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)
        if toolchain is None:
            pytest.fail("`go` is not on PATH: install Go (./run-tests does), or set CONFORMANCE_AGENTS without go")
        binary = scratch / "go-conformance-agent"
        run([toolchain, "build", "-o", str(binary), "./cmd/conformance-agent"], go, "the Go agent does not build")
        return [str(binary)]
    if language == "node":
        ts = ROOT / "client" / "ts"
        if not (ts / "package.json").is_file():
            pytest.fail(f"the Node agent is missing: {ts}/package.json (conformance/README.md, section 3)")
        need("node", "install Node.js 20+ (./run-tests does), or set CONFORMANCE_AGENTS without node")
        if not (ts / "dist" / "agent.js").is_file():
            if not (ts / "node_modules").is_dir():
                run(["npm", "ci", "--no-audit", "--no-fund"], ts, "the TypeScript client's packages")
            run(["npm", "run", "build"], ts, "the TypeScript client does not build")
        if not (ts / "dist" / "agent.js").is_file():
            pytest.fail(f"`npm run build` in {ts} made no dist/agent.js (conformance/README.md, section 3)")
        return ["node", str(ts / "dist" / "agent.js")]
    pytest.fail(f"CONFORMANCE_AGENTS: unknown agent {language!r} (known: {', '.join(ALL)})")


class Agent:
    """A running agent: its stdout read line by line on a thread of its own."""

    def __init__(self, language: str, command: list[str], address: str, scratch: pathlib.Path) -> None:
        self.language = language
        self.stderr_path = scratch / f"{language}.stderr"
        self.stderr = open(self.stderr_path, "w")
        self.process = subprocess.Popen(
            [*command, address, NAME],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        # `ok` lines read while waiting for something else (an agent may announce its own
        # trip after answering the command that caused it).
        self.answered: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def send(self, command: str) -> None:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def expect(self, wanted: str) -> None:
        """Reads lines until `wanted`; `ok` lines are passed over, any other line (an event
        out of order or repeated, an error) fails the test."""
        if wanted in self.answered:
            self.answered.remove(wanted)
            return
        give_up = time.monotonic() + DEADLINE
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, give_up - time.monotonic()))
            except queue.Empty:
                self.fail(f"no `{wanted}` within {DEADLINE}s")
            if line is None:
                self.fail(f"exited ({self.process.wait()}) before `{wanted}`")
            self.seen.append(line)
            if line == wanted:
                return
            if not line.startswith("ok "):
                self.fail(f"`{line}` where `{wanted}` was expected")
            self.answered.append(line)

    def fail(self, why: str) -> None:
        self.stderr.flush()
        pytest.fail(
            f"{self.language} agent: {why}\nits lines: {self.seen}\nits stderr:\n{self.stderr_path.read_text()[-4000:]}"
        )

    def stop(self) -> int:
        if self.process.poll() is None:
            try:
                self.send("quit")
                self.process.stdin.close()
            except OSError:
                pass
            try:
                return self.process.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.stderr.close()
        return self.process.wait()


def agents_asked() -> list[str]:
    given = os.environ.get("CONFORMANCE_AGENTS", "").strip()
    return [a.strip() for a in given.split(",") if a.strip()] if given else list(ALL)


def test_a_trip_caused_by_any_agent_is_seen_by_every_other():
    languages = agents_asked()
    assert len(languages) >= 2, f"CONFORMANCE_AGENTS: at least two agents, got {languages}"
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="cross-language-"))
    commands = {language: agent_command(language, scratch) for language in languages}
    daemon = Daemon(circuitd_binary())
    agents: list[Agent] = []
    try:
        channel = grpc.insecure_channel(daemon.address)
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        for language in languages:
            agents.append(Agent(language, commands[language], daemon.address, scratch))
        for agent in agents:
            agent.expect("ready")
        for tripper in agents:
            tripper.send("fail 2")
            for agent in agents:
                agent.expect("event CLOSED OPEN")
            tripper.expect("ok fail 2")
            admin.SetStatus(admin_pb2.SetStatusRequest(name=NAME, status=types_pb2.STATUS_CLOSED), timeout=DEADLINE)
            for agent in agents:
                agent.expect("event OPEN CLOSED")
        for agent in agents:
            status = agent.stop()
            if status != 0:
                agent.fail(f"exited {status} after quit")
        channel.close()
    finally:
        for agent in agents:
            agent.stop()
        daemon.stop()
        shutil.rmtree(scratch, ignore_errors=True)
