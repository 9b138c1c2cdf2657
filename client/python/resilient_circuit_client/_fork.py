"""Fork safety: no thread of this client is inside gRPC when the process forks.

Design note. gRPC core (as grpcio builds it) has fork handlers of its own: before a fork
they pause its pollers and thread pools, and in the child they reset them, so the child
can make channels of its own. They run only when no application thread is inside gRPC
at that moment; otherwise they are skipped ("Other threads are currently calling into
gRPC") and the child inherits a poller in the middle of a wait, which aborts (SIGABRT
in ev_epoll1) or hangs the first time the child uses gRPC. That is what a parent deciding
calls on several threads while gunicorn or Celery forks it runs into.

So every RPC of this client runs inside the `gate`: `os.register_at_fork(before=...)`
closes the gate, cancels the long-lived streams (the Watch) and waits for the calls in
flight to end (each is bounded by its deadline, at most REQUEST_TIMEOUT), so gRPC's own
handlers then find nobody inside and do their job. Calls that arrive meanwhile wait at
the gate for the few milliseconds the fork takes. In the parent the gate opens again and
the streams reconnect; in the child the connections and protectors start over (see
`_connection` and `_protector`): new channels and threads, made lazily on first use.
The parent's channels are kept referenced in the child and never used or destroyed
there (destroying one would touch the inherited gRPC state), and every channel has a
subchannel pool of its own, so a child's new channel never picks up the parent's
connection (`_connection.options`). grpc.aio's poller is handled in `_aio`.

Why not GRPC_ENABLE_FORK_SUPPORT: gRPC core's handlers above are on already (the
"skipping" message is theirs); the variable adds grpcio's Python-level handling, which
must be set before anything imports grpc (a library cannot promise that), and with it
but without the gate tests/test_fork.py hangs instead of aborting. Why not close the
channels before each fork: the parent's calls in flight would fail and their callers get
fallback decisions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Any, Callable, Iterator, Protocol, TypeVar

log = logging.getLogger("resilient_circuit_client")

#: The longest a fork waits for this client's calls in flight (their deadlines are at most
#: REQUEST_TIMEOUT, 1 s); past it the fork goes on and gRPC's handlers may be skipped.
DRAIN_TIMEOUT = 3.0


class Cancellable(Protocol):
    def cancel(self) -> Any: ...


C = TypeVar("C", bound=Cancellable)


class Gate:
    """Counts the threads inside an RPC of this client; a fork waits for them to leave."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._inside = 0
        self._forking = False
        self._streams: set[Cancellable] = set()
        self._mine = threading.local()
        #: Forks this process made: a stream cancelled by one reconnects at once.
        self.forks = 0

    def _enter(self) -> None:
        with self._cond:
            while self._forking:
                self._cond.wait()
            self._inside += 1
        self._mine.depth = getattr(self._mine, "depth", 0) + 1

    def _leave(self) -> None:
        self._mine.depth -= 1
        with self._cond:
            self._inside -= 1
            if self._forking:
                self._cond.notify_all()

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        """Around a unary RPC (bounded by its deadline)."""
        self._enter()
        try:
            yield
        finally:
            self._leave()

    @contextlib.contextmanager
    def stream(self, start: Callable[[], C]) -> Iterator[C]:
        """Starts a long-lived stream (`start()`) and yields it to be read; a fork cancels it."""
        self._enter()
        try:
            call = start()
            with self._cond:
                self._streams.add(call)
                # A fork that began after this thread entered did not see the stream.
                late = self._forking
            if late:
                call.cancel()
            try:
                yield call
            finally:
                with self._cond:
                    self._streams.discard(call)
        finally:
            self._leave()

    def before_fork(self) -> None:
        own = getattr(self._mine, "depth", 0)
        with self._cond:
            self._forking = True
            self.forks += 1
            streams = list(self._streams)
        for call in streams:
            call.cancel()
        with self._cond:
            if not self._cond.wait_for(lambda: self._inside <= own, timeout=DRAIN_TIMEOUT):
                log.warning("forking while %d calls to the daemon are in flight", self._inside - own)

    def after_fork_in_parent(self) -> None:
        with self._cond:
            self._forking = False
            self._cond.notify_all()

    def after_fork_in_child(self) -> None:
        # Other threads did not survive the fork, and neither did whatever they held.
        self._cond = threading.Condition()
        self._inside = getattr(self._mine, "depth", 0)
        self._forking = False
        self._streams = set()


gate = Gate()

#: The parent's gRPC objects, in a child: referenced so that they are never destroyed there.
inherited: list[object] = []

os.register_at_fork(
    before=gate.before_fork,
    after_in_parent=gate.after_fork_in_parent,
    after_in_child=gate.after_fork_in_child,
)
