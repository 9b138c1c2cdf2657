"""The library's `circuit_breaker` module, backed by circuitd: `CircuitProtectorPolicy`.

The decorator keeps the library's signature, status machine and callbacks, and the
protector it guards lives in the daemon, so every process naming the same `resource_key`
shares it. Beyond the library (each with a default that keeps its behaviour):

- `address`: the daemon (else `$RESILIENT_CIRCUIT_ADDRESS`, else 127.0.0.1:50051); a list or a
  comma-separated string names the replicas of a cluster, asked one at a time (see `_connection`).
- `tls_ca`, `tls_cert`, `tls_key`: TLS to the daemon (each a PEM file's path or its bytes;
  else `$RESILIENT_CIRCUIT_TLS_CA`, `$RESILIENT_CIRCUIT_TLS_CERT`, `$RESILIENT_CIRCUIT_TLS_KEY`):
  trust `tls_ca` for the daemon's certificate, and present `tls_cert`/`tls_key` for mTLS.
- `token`: the bearer token of a daemon started with `--tokens` (else `$RESILIENT_CIRCUIT_TOKEN`,
  else none), sent on every call; protectors need a token of the `data` role.
- `fallback`: who decides when the daemon cannot be asked within `acquire_deadline`
  (50 ms): "deny" (the default: reject), "allow" (admit, record nothing) or "local" (an
  in-process status machine with the same policy).
- `cached` (default True): decide calls locally while the daemon says CLOSED (see
  `_protector`); False asks the daemon for every call.
- `trial_permits`, `permit_ttl`: the daemon's HALF_OPEN settings (proto/SEMANTICS.md).
- `watch_staleness`: the cached mode's freshness bound; when unset, `admission_refresh_interval`.
- The optional rules of proto/SEMANTICS.md section 2a, each off unless given (checked
  here, so a bad value fails at construction naming its argument): `window_duration`
  (timedelta, 1 s to 1 h) with `minimum_calls`, `consecutive_failures`,
  `slow_call_duration` (timedelta) with `slow_call_limit` (a Fraction or an (n, d) pair),
  `cooldown_multiplier` (1 to 100) with `max_cooldown`, `shadow`, `history_size`. The
  Report of a daemon's permit carries the call's duration; batched and cached outcomes
  carry it only while the daemon's policy has a slow-call rule (see `_protector`).

The 0.8.x line's arguments (see `_compat`): `storage` is accepted and superseded (one
warning per process), `namespace` becomes the name prefix `namespace/`, and
`admission_refresh_interval` (default 1 s) is the cached mode's freshness bound, None or
zero turning the cached mode off. `resource_key` stays the key as given; `name` is the
protector's name in the daemon.

Documented differences from the library:

- A success_limit of 1/1 means unset, as in the original library (HALF_OPEN then uses the
  failure rule over a window of failure_limit's denominator); 0.8.2 and later read it as
  "one success closes". The default is None (unset) in both.
- Without `resource_key` the protector gets a unique name ("anonymous-" and a random hex
  id), not one derived from a memory address, which another process could reuse.
- Async functions are awaited before the outcome is reported (the library counted the
  coroutine object as a success); a cancelled one is reported IGNORED (see `_aio`).
- A `ProtectedCallError` raised by an inner protector is reported as IGNORED (the call
  never reached the service); a `RetryLimitReached` counts as its last exception.
- `on_status_change(policy, old, new)` fires once per transition: at once for transitions
  this process's own reports or status assignments cause, and from the Watch stream for
  the others. Transitions of a LOCAL fallback's in-process machine are not announced.
- A late success does not end a cooldown early: the daemon fences reports by generation.
- As in 0.8.x, a returned object with both `success` and `error` attributes (an external
  bulkhead's ExecutionResult) counts as a FAILURE when `success` is false, unless its
  `error` is set and `should_handle(error)` is false; coroutine functions alike.
"""

from __future__ import annotations

import functools
import inspect
import time
import uuid
from datetime import timedelta
from time import perf_counter
from fractions import Fraction
from typing import Callable, Optional, Sequence, Union

from . import _aio, _compat
from ._compat import DEFAULT_ADMISSION_REFRESH_INTERVAL
from ._connection import PemSource
from ._generated import types_pb2
from ._protector import CACHED, Runtime
from .buffer import BinaryCircularBuffer
from ._wire import STATUS_NAMES, STATUS_VALUES, LimitLike, policy as wire_policy, took_since as _took
from .exceptions import ProtectedCallError, ProtectionException, last_error
from .policy import ProtectionPolicy
from .status_enum import CircuitStatus
from .storage import CircuitBreakerStorage, create_storage, warn_superseded

FALLBACKS = ("deny", "allow", "local")


def _status(wire: int) -> Optional[CircuitStatus]:
    name = STATUS_NAMES.get(wire)
    return CircuitStatus(name) if name in CircuitStatus.__members__ else None


class ExecutionLog(BinaryCircularBuffer):
    """The protector's window of recent outcomes, as the daemon held it when read.

    Items are True for a success and False for a failure, oldest first, as in the library.
    """

    def __init__(self, size: int, items: list[bool]) -> None:
        super().__init__(max(1, size))
        self._items = items


class CircuitProtectorPolicy(ProtectionPolicy):
    DEFAULT_THRESHOLD = Fraction(1, 1)

    def __init__(
        self,
        *,
        resource_key: Optional[str] = None,
        storage: Optional[CircuitBreakerStorage] = None,
        namespace: Optional[str] = None,
        cooldown: timedelta = timedelta(0),
        failure_limit: LimitLike = DEFAULT_THRESHOLD,
        success_limit: Optional[LimitLike] = None,
        should_handle: Callable[[Exception], bool] = lambda e: True,
        on_status_change: Optional[Callable[["CircuitProtectorPolicy", CircuitStatus, CircuitStatus], None]] = None,
        admission_refresh_interval: Optional[timedelta] = DEFAULT_ADMISSION_REFRESH_INTERVAL,
        address: Optional[Union[str, Sequence[str]]] = None,
        fallback: str = "deny",
        cached: bool = True,
        acquire_deadline: timedelta = timedelta(milliseconds=50),
        watch_staleness: Optional[timedelta] = None,
        trial_permits: Optional[int] = None,
        permit_ttl: Optional[timedelta] = None,
        tls_ca: Optional[PemSource] = None,
        tls_cert: Optional[PemSource] = None,
        tls_key: Optional[PemSource] = None,
        token: Optional[str] = None,
        window_duration: Optional[timedelta] = None,
        minimum_calls: Optional[int] = None,
        consecutive_failures: int = 0,
        slow_call_duration: Optional[timedelta] = None,
        slow_call_limit: Optional[LimitLike] = None,
        cooldown_multiplier: Optional[float] = None,
        max_cooldown: Optional[timedelta] = None,
        shadow: bool = False,
        history_size: int = 0,
    ) -> None:
        from ._connection import resolve_address, resolve_tls, resolve_token

        if fallback not in FALLBACKS:
            raise ValueError(f"`fallback` must be one of {FALLBACKS}, got {fallback!r}")
        self.resource_key = resource_key or f"anonymous-{uuid.uuid4().hex}"
        if storage is not None:
            warn_superseded(storage)
        self.name = _compat.protector_name(self.resource_key, _compat.namespace_of(namespace, storage))
        #: The storage the 0.8.x line would have used; never read or written here.
        self.storage = storage if storage is not None else create_storage(namespace=namespace)
        self.admission_refresh_interval = admission_refresh_interval
        cached, staleness = _compat.freshness(admission_refresh_interval, watch_staleness, cached)
        self.cooldown = cooldown
        self.failure_limit = failure_limit
        self.success_limit = success_limit
        self.should_consider_failure = should_handle
        self._on_status_change = on_status_change
        self.address = resolve_address(address)
        self._rt = Runtime(
            name=self.name,
            address=self.address,
            tls=resolve_tls(tls_ca, tls_cert, tls_key),
            token=resolve_token(token),
            policy=wire_policy(
                cooldown=cooldown,
                failure_limit=failure_limit,
                success_limit=success_limit,
                trial_permits=trial_permits,
                permit_ttl=permit_ttl,
                window_duration=window_duration,
                minimum_calls=minimum_calls,
                consecutive_failures=consecutive_failures,
                slow_call_duration=slow_call_duration,
                slow_call_limit=slow_call_limit,
                cooldown_multiplier=cooldown_multiplier,
                max_cooldown=max_cooldown,
                shadow=shadow,
                history_size=history_size,
            ),
            fallback=fallback,
            cached=cached,
            acquire_deadline=acquire_deadline.total_seconds(),
            watch_staleness=staleness,
            fire=self._fire,
            status_of=_status,
        )
        if on_status_change is not None:
            self._rt.has_callback = True
            self._rt.start()

    @property
    def fallback(self) -> str:
        return self._rt.fallback

    @property
    def fallback_decisions(self) -> int:
        """How many calls the fallback decided because the daemon could not be asked."""
        return self._rt.fallback_decisions

    @property
    def decisions(self) -> dict[str, int]:
        """How many calls each source decided: ``daemon`` (an Acquire answered), ``cache``
        (admitted locally in cached mode) and ``fallback`` (the daemon could not be asked).
        `resilient_circuit_client.prometheus` exports the same counts."""
        rt = self._rt
        return {"daemon": rt.daemon_decisions, "cache": rt.cache_decisions, "fallback": rt.fallback_decisions}

    def _fire(self, old: str, new: str) -> None:
        self.on_status_change(CircuitStatus(old), CircuitStatus(new))

    def on_status_change(self, current: CircuitStatus, new: CircuitStatus) -> None:
        """Called once per transition of the protector (see the module notes)."""
        if self._on_status_change is not None:
            self._on_status_change(self, current, new)

    @property
    def status(self) -> CircuitStatus:
        """The daemon's status, after this process's pending reports. When the daemon
        cannot be reached: the LOCAL fallback's status, else the last one known."""
        try:
            return _status(self._rt.get().status)
        except Exception as error:
            rt = self._rt
            if rt.local is not None:
                return CircuitStatus(rt.local.status)
            if rt.notifier.status in CircuitStatus.__members__:
                return CircuitStatus(rt.notifier.status)
            raise ProtectionException(f"the status of {self.name!r} is unknown: {error}") from error

    @status.setter
    def status(self, new_status: CircuitStatus) -> None:
        try:
            self._rt.set_status(STATUS_VALUES[CircuitStatus(new_status).value])
        except ProtectionException:
            raise
        except Exception as error:
            raise ProtectionException(f"could not set the status of {self.name!r}: {error}") from error

    @property
    def execution_log(self) -> ExecutionLog:
        """The daemon's window of recent outcomes, after this process's pending reports."""
        try:
            window = self._rt.get().window
        except Exception as error:
            raise ProtectionException(f"the execution log of {self.name!r} is unknown: {error}") from error
        items = [o == types_pb2.OUTCOME_SUCCESS for o in window.outcomes]
        return ExecutionLog(window.size, items)

    def close(self) -> None:
        """Stops this protector's watch and sends its pending reports."""
        self._rt.close()

    def _outcome(self, error: BaseException) -> str:
        if not isinstance(error, Exception):
            return "IGNORED"
        last = last_error(error)
        if isinstance(last, ProtectedCallError):
            return "IGNORED"
        return "FAILURE" if self.should_consider_failure(last) else "SUCCESS"

    def _result_outcome(self, result: object) -> str:
        """The outcome of a call that returned `result`, as 0.8.x judges it: an object with
        both `success` and `error` attributes (an external bulkhead's ExecutionResult)
        carries its outcome in them. A false `success` is a FAILURE, unless its `error`
        is set and `should_handle(error)` says otherwise; anything else is a SUCCESS."""
        if result is None or not (hasattr(result, "success") and hasattr(result, "error")):
            return "SUCCESS"
        if result.success:
            return "SUCCESS"
        if result.error:
            return "FAILURE" if self.should_consider_failure(result.error) else "SUCCESS"
        return "FAILURE"

    def __call__(self, func: Callable) -> Callable:
        rt = self._rt
        outcome_of = self._outcome
        result_outcome = self._result_outcome

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def decorated_async(*args, **kwargs):
                return await _aio.call(rt, func, args, kwargs, outcome_of, result_outcome)

            return decorated_async

        monotonic = time.monotonic

        @functools.wraps(func)
        def decorated(*args, **kwargs):
            # The cached fast path, with Runtime.fast_generation and count_success
            # inlined: a method call costs as much as the rest of the decision.
            # Past the checkpoint (every TURN), give_way checks freshness and lets a waiting
            # Watch reader apply its event first.
            key = rt._fast_key
            if key is not None and (monotonic() < rt._check_at or (key := rt.give_way()) is not None):
                rt.cache_decisions += 1
                # The clock is read on the fast path only while the daemon's policy
                # judges durations (a slow-call rule).
                start = perf_counter() if rt.slow_call else None
                try:
                    result = func(*args, **kwargs)
                except BaseException as error:
                    rt.resolve((CACHED, key[0]), outcome_of(error), _took(start))
                    raise
                ok = result is None or result_outcome(result) == "SUCCESS"
                if ok and start is not None:
                    rt.pending_success(key[0], _took(start))
                elif ok:
                    rt._pend.append(key)
                    if not rt._pend_woken:
                        rt._pend_woken = True
                        rt.conn.wake(rt)
                else:
                    rt.resolve((CACHED, key[0]), "FAILURE", _took(start))
                return result
            ticket = rt.acquire()
            start = perf_counter()
            try:
                result = func(*args, **kwargs)
            except BaseException as error:
                rt.resolve(ticket, outcome_of(error), perf_counter() - start)
                raise
            rt.resolve(ticket, result_outcome(result), perf_counter() - start)
            return result

        return decorated
