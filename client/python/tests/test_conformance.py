"""The Python player of the shared conformance vectors (conformance/vectors.json; the format
and this client's mapping are in conformance/README.md): one test per vector, each against a
circuitd of its own on a durable data directory, so it can be restarted, frozen and thawed.

The decorator has no two-step API: `acquire` and `report` use the runtime the decorator
itself calls (`policy._rt.acquire()` / `resolve()`), and its report answers no verdict, so a
report's `expect.accepted` is left to the vector's next `inspect`."""

from __future__ import annotations

import json
import pathlib
import queue
import shutil
import tempfile
import time
from datetime import timedelta

import grpc
import pytest

from daemon import Daemon
from resilient_circuit_client import CircuitProtectorPolicy, ProtectedCallError
from resilient_circuit_client._connection import REQUEST_TIMEOUT
from resilient_circuit_client._generated import admin_pb2, admin_pb2_grpc, protector_pb2, protector_pb2_grpc, types_pb2

VECTORS = pathlib.Path(__file__).resolve().parents[3] / "conformance" / "vectors.json"
FILE = json.loads(VECTORS.read_text())
assert FILE["format"] == 1, f"{VECTORS}: a format this player does not know"
DEADLINE = FILE["deadline_ms"] / 1000
# Between two attempts of `acquire_until` and two reads of `inspect`: a poll interval.
POLL = 0.02
OUTCOMES = {"success": "SUCCESS", "failure": "FAILURE", "ignore": "IGNORED"}
KEYS = {
    "vector": {"name", "description", "daemon", "client", "steps"},
    "protector": {"op", "id", "name", "policy", "fallback", "cached", "staleness_ms", "watch"},
    "acquire": {"op", "protector", "permit", "expect"},
    "acquire_until": {"op", "protector", "permit", "expect"},
    "report": {"op", "permit", "outcome", "expect"},
    "execute": {"op", "protector", "result", "times", "expect"},
    "change": {"op", "protector", "from", "to", "reason"},
    "no_change": {"op", "protector"},
    "admin": {"op", "action", "name", "status", "kind"},
    "inspect": {"op", "name", "expect"},
    "stop_daemon": {"op"},
    "start_daemon": {"op"},
    "freeze_daemon": {"op"},
    "thaw_daemon": {"op"},
}
EXPECT_KEYS = {"decision", "trial", "source", "reason", "status", "fallback", "retry_after"}


class Failed(Exception):
    """The error of a function that fails (`result: fail`)."""


def known(what: str, obj: dict, keys: set) -> None:
    unknown = set(obj) - keys
    assert not unknown, f"{what}: unknown keys {sorted(unknown)} (a typo would turn a check off)"


def ms(value) -> timedelta:
    return timedelta(milliseconds=value)


class Player:
    """One vector being played: its daemon, its handles, the changes they heard, kept permits."""

    def __init__(self, circuitd_bin: pathlib.Path, vector: dict) -> None:
        self.binary = circuitd_bin
        self.dir = tempfile.mkdtemp(prefix=f"conformance-{vector['name']}-")
        self.flags = tuple(vector.get("daemon", {}).get("flags", ()))
        self.daemon: Daemon | None = Daemon(circuitd_bin, extra=("--data-dir", self.dir, *self.flags), in_memory=False)
        self.address = self.daemon.address
        self.acquire_deadline = ms(vector.get("client", {}).get("acquire_deadline_ms", 2000))
        self.handles: dict[str, CircuitProtectorPolicy] = {}
        self.changes: dict[str, queue.Queue] = {}
        self.permits: dict[str, tuple] = {}
        self.channel = grpc.insecure_channel(self.address)
        self.wait_serving()

    def wait_serving(self) -> None:
        stub = protector_pb2_grpc.ProtectorServiceStub(self.channel)
        stub.ListProtectors(protector_pb2.ListProtectorsRequest(page_size=1), timeout=DEADLINE, wait_for_ready=True)

    def rpc(self, call, request):
        """An RPC of the harness, retried while the daemon answers UNAVAILABLE (still starting)."""
        give_up = time.monotonic() + DEADLINE
        while True:
            try:
                return call(request, timeout=DEADLINE, wait_for_ready=True)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > give_up:
                    raise
            time.sleep(POLL)

    # -- client operations -----------------------------------------------------------------

    def protector(self, step: dict) -> None:
        policy = step.get("policy", {})
        known("policy", policy, {"cooldown_ms", "failure_limit", "success_limit", "trial_permits", "permit_ttl_ms"})
        changes: queue.Queue = queue.Queue()
        on_change = (lambda _policy, old, new: changes.put((old.value, new.value))) if step.get("watch") else None
        handle = CircuitProtectorPolicy(
            resource_key=step["name"],
            address=self.address,
            cooldown=ms(policy.get("cooldown_ms", 0)),
            failure_limit=tuple(policy.get("failure_limit", (1, 1))),
            success_limit=tuple(policy["success_limit"]) if "success_limit" in policy else None,
            trial_permits=policy.get("trial_permits"),
            permit_ttl=ms(policy["permit_ttl_ms"]) if "permit_ttl_ms" in policy else None,
            fallback=step.get("fallback", "deny"),
            cached=step.get("cached", False),
            watch_staleness=ms(step["staleness_ms"]) if "staleness_ms" in step else None,
            acquire_deadline=self.acquire_deadline,
            on_status_change=on_change,
        )
        # The constructor never waits for the daemon; the ensure makes "the daemon has it and
        # the client knows its status" true now, as the other clients' constructors do.
        handle._rt.start()
        handle._rt.ensure(REQUEST_TIMEOUT)
        self.handles[step["id"]] = handle
        self.changes[step["id"]] = changes

    def acquire(self, handle: CircuitProtectorPolicy) -> tuple[dict, tuple | None]:
        try:
            ticket = handle._rt.acquire()
        except ProtectedCallError as e:
            answer = {
                "decision": "rejected",
                "trial": False,
                "source": "fallback" if e.fallback else "daemon",
                "reason": e.reason,
                "status": getattr(e.status, "value", e.status),
                "fallback": e.fallback,
                "retry_after": e.retry_after is not None,
            }
            return answer, None
        kind, data = ticket
        source = {"cached": "cache", "daemon": "daemon"}.get(kind, "fallback")
        answer = {
            "decision": "admitted",
            "trial": kind in ("daemon", "local") and data.id != 0,
            "source": source,
            "reason": None,
            "status": None,
            "fallback": source == "fallback",
            "retry_after": False,
        }
        return answer, ticket

    @staticmethod
    def matches(expect: dict, answer: dict) -> bool:
        known("expect", expect, EXPECT_KEYS)
        return all(answer[key] == want for key, want in expect.items())

    def step(self, step: dict) -> None:
        op = step["op"]
        assert op in KEYS, f"unknown op {op!r}"
        known(op, step, KEYS[op])
        getattr(self, f"op_{op}")(step)

    def op_protector(self, step: dict) -> None:
        self.protector(step)

    def op_acquire(self, step: dict) -> None:
        answer, ticket = self.acquire(self.handles[step["protector"]])
        if ticket is not None:
            if "permit" not in step:
                self.handles[step["protector"]]._rt.resolve(ticket, "IGNORED")
                raise AssertionError(f"a permit was admitted with no name to keep it under: {answer}")
            self.permits[step["permit"]] = (step["protector"], ticket)
        expect = step.get("expect", {})
        assert self.matches(expect, answer), f"expected {expect}, got {answer}"

    def op_acquire_until(self, step: dict) -> None:
        handle = self.handles[step["protector"]]
        give_up = time.monotonic() + DEADLINE
        last = None
        while True:
            assert time.monotonic() < give_up, f"no answer matched {step['expect']} within {DEADLINE}s; the last was {last}"
            answer, ticket = self.acquire(handle)
            if self.matches(step["expect"], answer):
                if ticket is not None and "permit" in step:
                    self.permits[step["permit"]] = (step["protector"], ticket)
                elif ticket is not None:
                    handle._rt.resolve(ticket, "IGNORED")
                return
            if ticket is not None:
                handle._rt.resolve(ticket, "IGNORED")
            last = answer
            time.sleep(POLL)

    def op_report(self, step: dict) -> None:
        # `expect.accepted` is not checked: resolve() answers no verdict (the next inspect does).
        protector, ticket = self.permits.pop(step["permit"])
        self.handles[protector]._rt.resolve(ticket, OUTCOMES[step["outcome"]])

    def op_execute(self, step: dict) -> None:
        expect = step["expect"]
        ok = step["result"] == "ok"

        def function():
            if not ok:
                raise Failed()
            return "value"

        decorated = self.handles[step["protector"]](function)
        times = step.get("times", 1)
        for call in range(1, times + 1):
            what = f"call {call} of {times}: expected {expect}"
            try:
                got = decorated()
            except Failed:
                assert expect["outcome"] == "ran" and not ok, f"{what}, got the function's error"
            except ProtectedCallError as e:
                assert expect["outcome"] == "rejected", f"{what}, got {e!r}"
                assert expect.get("reason", e.reason) == e.reason, f"{what}, got reason {e.reason}"
                assert expect.get("fallback", e.fallback) == e.fallback, f"{what}, got fallback {e.fallback}"
            else:
                assert expect["outcome"] == "ran" and ok and got == "value", f"{what}, got {got!r}"

    def op_change(self, step: dict) -> None:
        # `reason` is not checked: on_status_change(policy, old, new) gives none.
        try:
            got = self.changes[step["protector"]].get(timeout=DEADLINE)
        except queue.Empty:
            raise AssertionError(f"no status change within {DEADLINE}s") from None
        assert got == (step["from"], step["to"]), f"expected {step['from']} -> {step['to']}, got {got}"

    def op_no_change(self, step: dict) -> None:
        changes = self.changes[step["protector"]]
        assert changes.empty(), f"an unexpected (or repeated) status change: {changes.get_nowait()}"

    # -- harness operations ----------------------------------------------------------------

    def op_admin(self, step: dict) -> None:
        admin = admin_pb2_grpc.AdminServiceStub(self.channel)
        name, action = step["name"], step["action"]
        if action == "set_status":
            status = types_pb2.Status.Value(f"STATUS_{step['status']}")
            self.rpc(admin.SetStatus, admin_pb2.SetStatusRequest(name=name, status=status))
        elif action == "set_override":
            kind = types_pb2.OverrideKind.Value(f"OVERRIDE_KIND_{step['kind']}")
            self.rpc(admin.SetOverride, admin_pb2.SetOverrideRequest(name=name, kind=kind))
        elif action == "delete":
            self.rpc(admin.DeleteProtector, admin_pb2.DeleteProtectorRequest(name=name))
        else:
            raise AssertionError(f"unknown admin action {action!r}")

    def op_inspect(self, step: dict) -> None:
        stub = protector_pb2_grpc.ProtectorServiceStub(self.channel)
        give_up = time.monotonic() + DEADLINE
        while True:
            p = self.rpc(stub.GetProtector, protector_pb2.GetProtectorRequest(name=step["name"])).protector
            fields = {
                "status": types_pb2.Status.Name(p.status).removeprefix("STATUS_"),
                "generation": p.generation,
                "trials_in_flight": p.trials_in_flight,
                "consecutive_failures": p.consecutive_failures,
                **{key: getattr(p.counters, key) for key in ("admitted", "rejected", "successes", "failures", "ignored", "stale_reports", "expired_permits")},
            }
            known("inspect", step["expect"], set(fields))
            wrong = [f"{k}: expected {v}, got {fields[k]}" for k, v in step["expect"].items() if fields[k] != v]
            if not wrong:
                return
            assert time.monotonic() < give_up, f"{step['name']} within {DEADLINE}s: {'; '.join(wrong)}"
            time.sleep(POLL)

    def op_stop_daemon(self, step: dict) -> None:
        assert self.daemon is not None, "the daemon is stopped already"
        status = self.daemon.stop(deadline=DEADLINE)
        self.daemon = None
        assert status == 0, f"circuitd did not stop cleanly: exit {status}"

    def op_start_daemon(self, step: dict) -> None:
        assert self.daemon is None, "the daemon is running"
        extra = ("--data-dir", self.dir, *self.flags)
        self.daemon = Daemon(self.binary, listen=self.address, extra=extra, in_memory=False)
        self.wait_serving()

    def op_freeze_daemon(self, step: dict) -> None:
        self.daemon.freeze(deadline=DEADLINE)

    def op_thaw_daemon(self, step: dict) -> None:
        self.daemon.thaw()

    def finish(self) -> None:
        for protector, ticket in self.permits.values():
            self.handles[protector]._rt.resolve(ticket, "IGNORED")
        for handle in self.handles.values():
            handle.close()
        self.channel.close()
        if self.daemon is not None:
            # A frozen daemon would hold its SIGTERM: thaw it first.
            self.daemon.thaw()
            self.daemon.stop(deadline=DEADLINE)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.mark.parametrize("vector", FILE["vectors"], ids=[v["name"] for v in FILE["vectors"]])
def test_vector(circuitd_bin, vector):
    known(vector["name"], vector, KEYS["vector"])
    player = Player(circuitd_bin, vector)
    try:
        for index, step in enumerate(vector["steps"]):
            try:
                player.step(step)
            except AssertionError as e:
                raise AssertionError(f"vector {vector['name']}, step {index} {step}: {e}") from None
    finally:
        player.finish()
