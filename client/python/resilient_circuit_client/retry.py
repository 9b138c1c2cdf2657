"""Retrying a call with a backoff between attempts (the library's `retry` module).

`RetryWithBackoffPolicy(*, backoff=None, max_retries=3, should_handle=lambda e: True)`
decorates a function (sync or async) and runs it up to `max_retries + 1` times, exactly as
the library does: an exception `should_handle` declines is re-raised at once; after every
failed attempt, the last one included, it waits `backoff.for_attempt(n)` when a backoff is
set; running out of attempts raises `RetryLimitReached` from the last exception. A
`ProtectedCallError` is an exception like any other, so `SafetyNet(retry, protector)` around
a failing function ends in `RetryLimitReached` whose `__cause__` is the open protector's
rejection, as in the library.

The waits go through this module's `sleep` (sync) and `asyncio_sleep` (async), looked up
at each wait, so a test's `monkeypatch.setattr(retry_module, "sleep", fake)` records them as
it did against the library.

Beyond the library (each off or unset by default):

- `honour_retry_after=True`: a rejection is retried only when its `retry_after` is no
  longer than the wait the backoff would make, and then after exactly `retry_after`;
  otherwise it is re-raised at once, as itself, instead of burning the remaining attempts
  on a protector that will still be OPEN. `SafetyNet(..., honour_retry_after=True)` turns
  it on for the retries it composes.
- `sleep=` / `async_sleep=`: waits for this policy alone, instead of the module's.
- `RetryLimitReached.attempts`: how many attempts were made.
- A negative `max_retries` is refused with ValueError (the library then never ran the
  function and raised RetryLimitReached from nothing).
"""

from __future__ import annotations

import functools
import inspect
from asyncio import sleep as asyncio_sleep
from time import sleep
from typing import Awaitable, Callable, Optional

from .backoff import ExponentialDelay
from .exceptions import ProtectedCallError, RetryLimitReached, last_error
from .policy import ProtectionPolicy

__all__ = ["RetryWithBackoffPolicy", "asyncio_sleep", "sleep"]


class RetryWithBackoffPolicy(ProtectionPolicy):
    """Retries failed calls, waiting per `backoff` after each failed attempt."""

    def __init__(
        self,
        *,
        backoff: Optional[ExponentialDelay] = None,
        max_retries: int = 3,
        should_handle: Callable[[Exception], bool] = lambda e: True,
        honour_retry_after: bool = False,
        sleep: Optional[Callable[[float], None]] = None,
        async_sleep: Optional[Callable[[float], Awaitable[None]]] = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("`max_retries` must not be negative.")
        self.max_attempts = max_retries + 1
        self.backoff = backoff
        self.should_consider_failure = should_handle
        self.honour_retry_after = honour_retry_after
        self._sleep = sleep
        self._async_sleep = async_sleep

    def _wait_after(self, error: Exception, attempt: int, honour: bool) -> Optional[float]:
        """The wait after failed attempt `attempt` (from 1), or None to re-raise `error`."""
        if not self.should_consider_failure(error):
            return None
        wait = self.backoff.for_attempt(attempt) if self.backoff is not None else 0.0
        if honour:
            rejection = last_error(error)
            if isinstance(rejection, ProtectedCallError):
                after = rejection.retry_after
                if after is None or after.total_seconds() > wait:
                    return None
                wait = after.total_seconds()
        return wait

    def __call__(self, func: Callable) -> Callable:
        return self.wrap(func, honour_retry_after=self.honour_retry_after)

    def wrap(self, func: Callable, *, honour_retry_after: bool) -> Callable:
        """`func` under this policy, with `honour_retry_after` as given (see the module notes)."""
        honour = honour_retry_after
        # The library waits only when a backoff is set (then even a wait of 0 is made);
        # without one, a rejection honoured here has a retry_after of 0: nothing to wait.
        waits = self.backoff is not None

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def decorated_async(*args, **kwargs):
                attempt = 0
                last = None
                while attempt < self.max_attempts:
                    try:
                        return await func(*args, **kwargs)
                    except Exception as error:
                        wait = self._wait_after(error, attempt + 1, honour)
                        if wait is None:
                            raise
                        last = error
                    attempt += 1
                    if waits:
                        await (self._async_sleep or asyncio_sleep)(wait)
                raise RetryLimitReached(attempts=attempt) from last

            return decorated_async

        @functools.wraps(func)
        def decorated(*args, **kwargs):
            attempt = 0
            last = None
            while attempt < self.max_attempts:
                try:
                    return func(*args, **kwargs)
                except Exception as error:
                    wait = self._wait_after(error, attempt + 1, honour)
                    if wait is None:
                        raise
                    last = error
                attempt += 1
                if waits:
                    (self._sleep or sleep)(wait)
            raise RetryLimitReached(attempts=attempt) from last

        return decorated
