"""A process that used protectors forks (gunicorn --preload, Celery prefork): each child
decides through the daemon on channels and threads of its own, built lazily there, and
none of them dies by a signal."""

import asyncio
import os
import signal
import sys
import threading
import time
import traceback
from datetime import timedelta
from typing import Callable

from resilient_circuit_client import CircuitProtectorPolicy

CHILDREN = 50
#: Children alive at once: bounds the memory and CPU the test takes on a small machine.
BATCH = 10
CALLS = 20


def _child(policies) -> int:
    """Runs in a child: every call must be decided by the daemon, none by a fallback."""
    for policy in policies:

        @policy
        def noop():
            return None

        for _ in range(CALLS):
            noop()
        if policy.fallback_decisions:
            return 3
    return 0


def _wait(pid: int, deadline: float) -> int:
    """The raw wait status of child `pid`, killing it if it outlives `deadline`."""
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)  # polling a child's exit (no event to wait on), not synchronisation
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def fork_children(count: int, child: Callable[[], int]) -> list[int]:
    """Forks `count` children, BATCH at a time, each running `child()` and exiting with its
    result (1 if it raised: the traceback goes to stderr); their raw wait statuses."""
    statuses = []
    for first in range(0, count, BATCH):
        pids = []
        for _ in range(min(BATCH, count - first)):
            pid = os.fork()
            if pid == 0:  # the child: never returns into pytest
                code = 1
                try:
                    code = child()
                except BaseException:
                    traceback.print_exc()  # shown with the test's captured stderr
                finally:
                    sys.stderr.flush()
                    os._exit(code)
            pids.append(pid)
        deadline = time.monotonic() + 60
        statuses += [_wait(pid, deadline) for pid in pids]
    return statuses


def exited(statuses: list[int]) -> None:
    """Asserts that every child exited 0, none by a signal."""
    signalled = [os.WTERMSIG(s) for s in statuses if os.WIFSIGNALED(s)]
    assert signalled == [], f"children killed by signals {signalled}"
    codes = [os.WEXITSTATUS(s) for s in statuses]
    assert codes == [0] * len(statuses), f"children's exit codes: {codes}"


def test_children_forked_under_load_decide_through_the_daemon(address, key):
    changes = []
    # Ten children connecting at once on a small machine may take longer than the 50 ms
    # default; what is tested is who decides, so a fallback here means a broken child.
    patient = {"address": address, "failure_limit": (9, 10), "acquire_deadline": timedelta(seconds=10)}
    cached = CircuitProtectorPolicy(resource_key=f"{key}-cached", **patient)
    remote = CircuitProtectorPolicy(
        resource_key=f"{key}-remote",
        **patient,
        cached=False,
        on_status_change=lambda p, old, new: changes.append(new),
    )
    policies = [cached, remote]
    stop = threading.Event()
    errors = []

    def load(policy):
        @policy
        def noop():
            return None

        while not stop.is_set():
            try:
                noop()
            except Exception as e:  # asserted on below
                errors.append(e)

    threads = [threading.Thread(target=load, args=(p,), daemon=True) for p in policies for _ in range(2)]
    for t in threads:
        t.start()
    admitted_before = remote._rt.get().counters.admitted
    try:
        exited(fork_children(CHILDREN, lambda: _child(policies)))
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert errors == [], "the parent's calls during the forks"
    assert remote._rt.get().counters.admitted - admitted_before >= CHILDREN * CALLS
    # The parent goes on deciding through the daemon after the forks.
    fallbacks = sum(p.fallback_decisions for p in policies)

    @remote
    def noop():
        return None

    noop()
    assert sum(p.fallback_decisions for p in policies) == fallbacks
    assert changes == []


def test_children_of_a_parent_that_made_async_calls_decide_through_the_daemon(address, key):
    policy = CircuitProtectorPolicy(
        resource_key=key, address=address, cached=False, acquire_deadline=timedelta(seconds=10)
    )

    @policy
    async def op():
        return "async"

    @policy
    def sync_op():
        return "sync"

    # grpc.aio's poller runs while its channels live: a fork closes them first.
    assert asyncio.run(op()) == "async"

    def child() -> int:
        results = [sync_op(), asyncio.run(op())]
        return 0 if results == ["sync", "async"] and not policy.fallback_decisions else 3

    exited(fork_children(BATCH, child))
    assert (asyncio.run(op()), sync_op(), policy.fallback_decisions) == ("async", "sync", 0)
