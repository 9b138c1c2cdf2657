"""Protected coroutine functions: the daemon asked with grpc.aio, no thread per call.

Design note. A decorated `async def` decides exactly as a synchronous call does (cached,
daemon, fallback; see `_protector`), and only the I/O differs: the Acquire (with the
EnsureProtector it may need), the one round trip of an uncached call, is a grpc.aio call
on channels of the running event loop, one per replica address and loop (an aio channel
belongs to the loop it was made in), made lazily and dropped with the loop. Failing over
between replicas and the link's state are the connection's, shared with the synchronous
calls of the process. Outcomes follow `Runtime.resolve`: a success of a CLOSED permit is
counted for the batcher in place; a report sent at once (a failure, a trial's outcome)
goes through a worker thread, as it did before.

Cancellation (`task.cancel()`, an `asyncio.wait_for` timeout) never leaks a permit:
- while the Acquire is in flight, it runs on as a task of its own (shielded), and a
  permit it brings is released (reported IGNORED) once it arrives;
- while the function runs, the call is reported IGNORED (CancelledError is not an
  Exception), on a thread when that means a report, so that neither a second
  cancellation nor the loop's end (asyncio.run cancels what is left) can drop it;
- while the outcome's report is in flight, its worker thread finishes it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import time
import weakref
from typing import Awaitable, Callable, Optional

import grpc
import grpc.aio

from ._connection import Connection, Tls, Tries, options
from ._fork import inherited
from ._generated import protector_pb2, protector_pb2_grpc
from ._protector import CACHED, Runtime
from ._wire import took_since as _took

log = logging.getLogger("resilient_circuit_client")

Ticket = tuple[str, object]


class AioBearer(grpc.aio.UnaryUnaryClientInterceptor):
    """`_connection._Bearer` for the grpc.aio channels of coroutine calls (Acquire and Report)."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    async def intercept_unary_unary(self, continuation, details, request):
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(*self._header)
        return await continuation(details._replace(metadata=metadata), request)


class AioReplica:
    """One address of the daemon on one event loop."""

    def __init__(self, address: str, tls: Optional[Tls] = None, token: str | None = None) -> None:
        interceptors = [AioBearer(token)] if token is not None else None
        if tls is None:
            self.channel = grpc.aio.insecure_channel(address, options=options(), interceptors=interceptors)
        else:
            self.channel = grpc.aio.secure_channel(
                address, tls.credentials(), options=options(), interceptors=interceptors
            )
        self.protectors = protector_pb2_grpc.ProtectorServiceStub(self.channel)

    def close(self) -> None:
        """Closes the channel at once, from outside its loop (its calls end CANCELLED)."""
        # grpc.aio's own close() is a coroutine of a loop that may be gone; its __del__
        # closes the same way, through the Cython channel.
        core = getattr(self.channel, "_channel", None)
        if core is not None:
            core.close()


# Per event loop, per connection: its replicas' aio channels (in the connection's order).
_channels: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, Optional[Tls], str | None], list[AioReplica]]]"
_channels = weakref.WeakKeyDictionary()


def _replicas(conn: Connection) -> list[AioReplica]:
    per_loop = _channels.setdefault(asyncio.get_running_loop(), {})
    key = (conn.address, conn.tls, conn.token)
    replicas = per_loop.get(key)
    if replicas is None:
        replicas = per_loop[key] = [AioReplica(r.address, conn.tls, conn.token) for r in conn.replicas]
    return replicas


async def ask(conn: Connection, call: Callable[[AioReplica, Callable[[], float]], Awaitable], timeout: float):
    """`Connection.ask` for grpc.aio calls: the same replicas, link and failover."""
    replicas = _replicas(conn)
    tries = Tries(conn, timeout)
    for index in tries:
        try:
            return tries.answered(await call(replicas[index], tries.left))
        except grpc.RpcError as e:
            tries.failed(e)


async def _ask(rt: Runtime, replica: AioReplica, left: Callable[[], float]) -> protector_pb2.AcquireResponse:
    # As Runtime._ask: ensure first when needed, and once more if the daemon forgot it.
    request = protector_pb2.AcquireRequest(name=rt.name)
    for attempt in range(2):
        if not rt.ensured:
            rt.ensured_by(await replica.protectors.EnsureProtector(rt.ensure_request(), timeout=left()))
        try:
            return await replica.protectors.Acquire(request, timeout=left())
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND or attempt:
                raise
        rt.ensured = False


async def acquire(rt: Runtime) -> Ticket:
    """`Runtime.acquire` over grpc.aio."""
    ticket = rt.before_acquire()
    if ticket is not None:
        return ticket
    try:
        response = await ask(rt.conn, lambda replica, left: _ask(rt, replica, left), rt.acquire_deadline)
    except grpc.RpcError as e:
        return rt.acquire_failed(e)
    return rt.admitted(response)


def release(rt: Runtime, ticket: Ticket) -> None:
    """Reports a cancelled call IGNORED: in place when that sends nothing, else on a thread
    of its own (see the module notes)."""
    if rt.resolves_at_once(ticket, "IGNORED"):
        rt.resolve(ticket, "IGNORED")
    else:
        threading.Thread(target=rt.resolve, args=(ticket, "IGNORED"), name="resilient-circuit-release").start()


async def _acquire_shielded(rt: Runtime) -> Ticket:
    task = asyncio.ensure_future(acquire(rt))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(lambda t: _release_result(rt, t))
        raise


def _release_result(rt: Runtime, task: "asyncio.Future[Ticket]") -> None:
    if not task.cancelled() and task.exception() is None:
        release(rt, task.result())


async def resolve(rt: Runtime, ticket: Ticket, outcome: str, took: Optional[float] = None) -> None:
    if rt.resolves_at_once(ticket, outcome):
        rt.resolve(ticket, outcome, took)
    else:
        # A report sent now (a failure, a trial's outcome): on a worker thread, which
        # finishes it even if this task is cancelled meanwhile.
        await asyncio.to_thread(rt.resolve, ticket, outcome, took)


async def call(
    rt: Runtime,
    func,
    args,
    kwargs,
    outcome_of: Callable[[BaseException], str],
    result_outcome: Callable[[object], str],
):
    """Runs the coroutine function `func` under the protector `rt`; `outcome_of` judges
    what it raised, `result_outcome` what it returned."""
    gen = rt.fast_generation() if rt.started else 0
    ticket: Ticket = (CACHED, gen) if gen else await _acquire_shielded(rt)
    # Measured on the cached path only while the daemon's policy has a slow-call rule.
    start = time.perf_counter() if not gen or rt.slow_call else None
    try:
        result = await func(*args, **kwargs)
    except asyncio.CancelledError:
        release(rt, ticket)
        raise
    except BaseException as error:
        await resolve(rt, ticket, outcome_of(error), _took(start))
        raise
    await resolve(rt, ticket, result_outcome(result), _took(start))
    return result


def _close_before_fork() -> None:
    """Closes the aio channels a fork can close safely: while any exists, grpc.aio's
    poller thread is inside gRPC and gRPC's fork handlers are skipped (see `_fork`), so a
    child aborts once it uses gRPC. They are made again on the next call."""
    try:
        current = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    closed = False
    for loop, per_loop in list(_channels.items()):
        if loop.is_running() and loop is not current:
            # Closing another thread's loop's channel under its feet is not safe.
            log.warning("forking while an event loop on another thread uses the daemon: its children must not")
            continue
        for replicas in per_loop.values():
            for replica in replicas:
                replica.close()
        del _channels[loop]
        closed = True
    if closed:
        # The channels' last references may sit in cycles: gRPC shuts its poller down
        # only once they are gone.
        gc.collect()


def _forget_after_fork() -> None:
    # What is left belongs to the parent's loops and its gRPC state: never used in a child.
    global _channels
    inherited.append(_channels)
    _channels = weakref.WeakKeyDictionary()


os.register_at_fork(before=_close_before_fork, after_in_child=_forget_after_fork)
