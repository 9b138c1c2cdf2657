"""Retrying a call with a backoff between attempts (the library's `retry` module).

`RetryWithBackoffPolicy(*, backoff=None, max_retries=3, should_handle=lambda e: True)`
decorates a function (sync or async) and runs it up to `max_retries + 1` times. An
exception `should_handle` declines is re-raised at once; running out of attempts raises
`RetryLimitReached` from the last exception. Without a backoff there is no wait.

Where it deliberately differs from the library, which had two bugs:

- **No wait after the final attempt.** The library slept once more after the last failure
  before giving up; here the give-up is immediate, so the total wait is the sum of the
  delays *between* attempts.
- **A rejection is not retried blindly.** An open protector answers at once, so retrying
  its `ProtectedCallError` on the backoff schedule only burns attempts. A rejection is
  retried only when it carries a `retry_after` no longer than the next backoff delay, and
  then after exactly `retry_after`; otherwise it is re-raised at once, as itself.
- A `RetryLimitReached` from an inner policy is judged by its last exception.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from typing import Awaitable, Callable, Optional

from .backoff import ExponentialDelay
from .exceptions import ProtectedCallError, RetryLimitReached, last_error

_RETRY = "retry"
_RAISE = "raise"
_GIVE_UP = "give up"


class RetryWithBackoffPolicy:
    """Retries failed calls, waiting per `backoff` between attempts."""

    def __init__(
        self,
        *,
        backoff: Optional[ExponentialDelay] = None,
        max_retries: int = 3,
        should_handle: Callable[[Exception], bool] = lambda e: True,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_retries < 0:
            raise ValueError("`max_retries` must not be negative.")
        self.max_attempts = max_retries + 1
        self.backoff = backoff
        self.should_consider_failure = should_handle
        self._sleep = sleep
        self._async_sleep = async_sleep

    def _next_step(self, error: Exception, attempt: int) -> tuple[str, float]:
        """What to do after failed attempt `attempt` (from 1), and how long to wait."""
        if not self.should_consider_failure(error):
            return _RAISE, 0.0
        if attempt >= self.max_attempts:
            return _GIVE_UP, 0.0
        delay = self.backoff.for_attempt(attempt) if self.backoff else 0.0
        last = last_error(error)
        if isinstance(last, ProtectedCallError):
            after = last.retry_after
            if after is not None and after.total_seconds() <= delay:
                return _RETRY, after.total_seconds()
            return _RAISE, 0.0
        return _RETRY, delay

    def __call__(self, func: Callable) -> Callable:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def decorated_async(*args, **kwargs):
                attempt = 1
                while True:
                    try:
                        return await func(*args, **kwargs)
                    except Exception as error:
                        step, delay = self._next_step(error, attempt)
                        if step == _RAISE:
                            raise
                        if step == _GIVE_UP:
                            raise RetryLimitReached(attempts=attempt) from error
                    if delay > 0:
                        await self._async_sleep(delay)
                    attempt += 1

            return decorated_async

        @functools.wraps(func)
        def decorated(*args, **kwargs):
            attempt = 1
            while True:
                try:
                    return func(*args, **kwargs)
                except Exception as error:
                    step, delay = self._next_step(error, attempt)
                    if step == _RAISE:
                        raise
                    if step == _GIVE_UP:
                        raise RetryLimitReached(attempts=attempt) from error
                if delay > 0:
                    self._sleep(delay)
                attempt += 1

        return decorated
