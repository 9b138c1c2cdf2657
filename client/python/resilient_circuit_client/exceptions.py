"""The library's exceptions, with what a daemon-backed protector knows added as attributes.

Every class keeps the library's name, base and no-argument constructor, so
`except ProtectedCallError:` and `raise RetryLimitReached` work unchanged.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Optional


class ProtectionException(Exception):
    """Base of every exception the policies raise themselves."""


class RetryLimitReached(ProtectionException):
    """A retry policy ran out of attempts; `__cause__` is the last attempt's exception."""

    def __init__(self, *args: object, attempts: Optional[int] = None) -> None:
        super().__init__(*args)
        #: Attempts made, the first included (None when raised by user code).
        self.attempts = attempts


class SchemaNotReady(ProtectionException):
    """The 0.8.x line's error for a PostgreSQL table not ready for use. Never raised here:
    the daemon holds the state, so there is no table (kept so `except SchemaNotReady:`
    still names a class)."""


class ProtectedCallError(ProtectionException):
    """A protector rejected the call; the function did not run.

    Beyond the library: `name` (the protector), `status` (a CircuitStatus), `reason` (the
    daemon's DecisionReason name, e.g. "OPEN", "TRIALS_EXHAUSTED", "FORCED_OPEN"),
    `retry_after` (a timedelta, when asking again may succeed, if known) and `fallback`
    (True when the daemon could not be asked and the declared fallback decided).
    """

    def __init__(
        self,
        *args: object,
        name: Optional[str] = None,
        status: object = None,
        reason: Optional[str] = None,
        retry_after: Optional[timedelta] = None,
        fallback: bool = False,
    ) -> None:
        if not args and name is not None:
            after = f", retry after {retry_after}" if retry_after is not None else ""
            by = " (fallback)" if fallback else ""
            args = (f"protector {name!r} rejected the call{by}: {reason}{after}",)
        super().__init__(*args)
        self.name = name
        self.status = status
        self.reason = reason
        self.retry_after = retry_after
        self.fallback = fallback


def last_error(error: BaseException) -> BaseException:
    """The exception that decided a RetryLimitReached, through any number of levels."""
    seen = 0
    while isinstance(error, RetryLimitReached) and error.__cause__ is not None and seen < 64:
        error = error.__cause__
        seen += 1
    return error
