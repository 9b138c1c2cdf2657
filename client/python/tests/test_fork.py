"""A process that used protectors forks (gunicorn --preload, Celery prefork): each child
decides through the daemon on channels and threads of its own, built lazily there, and
none of them dies by a signal."""

import os
import signal
import sys
import threading
import time
import traceback
from datetime import timedelta

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
            except Exception as e:  # recorded, asserted on below
                errors.append(e)

    threads = [threading.Thread(target=load, args=(p,), daemon=True) for p in policies for _ in range(2)]
    for t in threads:
        t.start()
    admitted_before = remote._rt.get().counters.admitted
    statuses = []
    try:
        for first in range(0, CHILDREN, BATCH):
            pids = []
            for _ in range(min(BATCH, CHILDREN - first)):
                pid = os.fork()
                if pid == 0:  # the child: never returns into pytest
                    code = 1
                    try:
                        code = _child(policies)
                    except BaseException:
                        traceback.print_exc()  # shown with the test's captured stderr
                    finally:
                        sys.stderr.flush()
                        os._exit(code)
                pids.append(pid)
            deadline = time.monotonic() + 60
            statuses += [_wait(pid, deadline) for pid in pids]
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    signalled = [os.WTERMSIG(s) for s in statuses if os.WIFSIGNALED(s)]
    assert signalled == [], f"children killed by signals {signalled}"
    codes = [os.WEXITSTATUS(s) for s in statuses]
    assert codes == [0] * CHILDREN, f"children's exit codes: {codes}"
    assert remote._rt.get().counters.admitted - admitted_before >= CHILDREN * CALLS
    # The parent goes on deciding through the daemon after the forks.
    fallbacks = sum(p.fallback_decisions for p in policies)

    @remote
    def noop():
        return None

    noop()
    assert sum(p.fallback_decisions for p in policies) == fallbacks
    assert changes == []
