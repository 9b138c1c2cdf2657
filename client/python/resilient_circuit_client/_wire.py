"""Conversions between the library's values and the contract's messages."""

from __future__ import annotations

from datetime import timedelta
from time import perf_counter
from fractions import Fraction
from typing import Optional, Union

from ._generated import types_pb2
from ._machine import Limit

STATUS_NAMES = {
    types_pb2.STATUS_UNSPECIFIED: "UNSPECIFIED",
    types_pb2.STATUS_CLOSED: "CLOSED",
    types_pb2.STATUS_OPEN: "OPEN",
    types_pb2.STATUS_HALF_OPEN: "HALF_OPEN",
}
STATUS_VALUES = {name: value for value, name in STATUS_NAMES.items()}

LimitLike = Union[Fraction, tuple[int, int]]


def reason_name(reason: int) -> str:
    return types_pb2.DecisionReason.Name(reason).removeprefix("DECISION_REASON_")


def seconds_of(d) -> timedelta:
    return timedelta(seconds=d.seconds, microseconds=d.nanos // 1000)


def duration(value: timedelta, field: str):
    from google.protobuf import duration_pb2

    if value < timedelta(0):
        raise ValueError(f"`{field}` must not be negative, got {value}")
    d = duration_pb2.Duration()
    d.FromTimedelta(value)
    return d


def limit_of(value: LimitLike, field: str) -> Limit:
    """A Fraction (reduced, as the library's are) or an (n, d) pair kept unreduced."""
    if isinstance(value, tuple):
        n, d = value
    else:
        value = Fraction(value)
        n, d = value.numerator, value.denominator
    try:
        return Limit(int(n), int(d))
    except ValueError as e:
        raise ValueError(f"`{field}`: {e}") from None


def policy(
    *,
    cooldown: timedelta,
    failure_limit: LimitLike,
    success_limit: Optional[LimitLike],
    trial_permits: Optional[int],
    permit_ttl: Optional[timedelta],
    window_duration: Optional[timedelta] = None,
    minimum_calls: Optional[int] = None,
    consecutive_failures: int = 0,
    slow_call_duration: Optional[timedelta] = None,
    slow_call_limit: Optional[LimitLike] = None,
    cooldown_multiplier: Optional[float] = None,
    max_cooldown: Optional[timedelta] = None,
    shadow: bool = False,
    history_size: int = 0,
) -> types_pb2.Policy:
    """The wire policy. The optional rules of proto/SEMANTICS.md section 2a are off unless
    given; their ranges are checked here too, so a bad value fails at construction,
    naming its argument, rather than at the first call (the daemon checks them again)."""
    f = limit_of(failure_limit, "failure_limit")
    p = types_pb2.Policy(
        cooldown=duration(cooldown, "cooldown"),
        failure_limit=types_pb2.Fraction(numerator=f.numerator, denominator=f.denominator),
    )
    # The library treats a success_limit of 1/1 as unset.
    if success_limit is not None and limit_of(success_limit, "success_limit") != Limit(1, 1):
        s = limit_of(success_limit, "success_limit")
        p.success_limit.CopyFrom(types_pb2.Fraction(numerator=s.numerator, denominator=s.denominator))
    if trial_permits is not None:
        if not 0 <= trial_permits <= 10_000:
            raise ValueError(f"`trial_permits` must be 0 to 10000, got {trial_permits}")
        p.trial_permits = trial_permits
    if permit_ttl is not None:
        p.permit_ttl.CopyFrom(duration(permit_ttl, "permit_ttl"))
    _rules(
        p,
        cooldown=cooldown,
        window_duration=window_duration,
        minimum_calls=minimum_calls,
        consecutive_failures=consecutive_failures,
        slow_call_duration=slow_call_duration,
        slow_call_limit=slow_call_limit,
        cooldown_multiplier=cooldown_multiplier,
        max_cooldown=max_cooldown,
        shadow=shadow,
        history_size=history_size,
    )
    return p


def _within(value: timedelta, low: timedelta, high: timedelta, field: str, range_text: str) -> None:
    if not low <= value <= high:
        raise ValueError(f"`{field}` must be {range_text}, got {value}")


def _rules(p: types_pb2.Policy, *, cooldown: timedelta, **rules) -> None:
    """Sets the optional rules on `p` (see `policy`), in the semantics' table order."""
    window = rules["window_duration"]
    if window is not None:
        _within(window, timedelta(seconds=1), timedelta(hours=1), "window_duration", "1s to 1h")
        p.window_duration.CopyFrom(duration(window, "window_duration"))
    minimum = rules["minimum_calls"]
    if minimum is not None:
        if window is None:
            raise ValueError("`minimum_calls` needs `window_duration`")
        if not 1 <= minimum <= 1_000_000:
            raise ValueError(f"`minimum_calls` must be 1 to 1000000, got {minimum}")
        p.minimum_calls = minimum
    streak = rules["consecutive_failures"]
    if not 0 <= streak <= 10_000:
        raise ValueError(f"`consecutive_failures` must be 0 to 10000, got {streak}")
    p.consecutive_failures = streak
    slow, slow_limit = rules["slow_call_duration"], rules["slow_call_limit"]
    if (slow is None) != (slow_limit is None):
        raise ValueError("`slow_call_duration` and `slow_call_limit` go together: set both or neither")
    if slow is not None:
        _within(slow, timedelta(milliseconds=1), timedelta(hours=1), "slow_call_duration", "1ms to 1h")
        p.slow_call_duration.CopyFrom(duration(slow, "slow_call_duration"))
        s = limit_of(slow_limit, "slow_call_limit")
        p.slow_call_limit.CopyFrom(types_pb2.Fraction(numerator=s.numerator, denominator=s.denominator))
    multiplier = rules["cooldown_multiplier"]
    if multiplier is not None:
        if not 1.0 <= float(multiplier) <= 100.0:
            raise ValueError(f"`cooldown_multiplier` must be 1 to 100, got {multiplier}")
        # 1 is the default, and the daemon sends it back unset.
        if float(multiplier) != 1.0:
            p.cooldown_multiplier = float(multiplier)
    cap = rules["max_cooldown"]
    if cap is not None:
        _within(cap, max(cooldown, timedelta(milliseconds=1)), timedelta(days=30), "max_cooldown",
                "at least `cooldown` (and 1ms), at most 30 days")
        p.max_cooldown.CopyFrom(duration(cap, "max_cooldown"))
    p.shadow = bool(rules["shadow"])
    history = rules["history_size"]
    if not 0 <= history <= 1_000_000:
        raise ValueError(f"`history_size` must be 0 to 1000000, got {history}")
    p.history_size = history


def slow_call_seconds(p: types_pb2.Policy) -> float:
    """The policy's slow-call threshold in seconds, or 0.0 when it has no slow-call rule."""
    if p.HasField("slow_call_duration") and p.HasField("slow_call_limit"):
        return max(p.slow_call_duration.ToNanoseconds() / 1e9, 1e-9)
    return 0.0


def duration_of_seconds(seconds: float):
    """A call's measured duration (seconds, from `time.perf_counter`) on the wire."""
    from google.protobuf import duration_pb2

    d = duration_pb2.Duration()
    d.FromNanoseconds(max(0, int(seconds * 1e9)))
    return d


def machine_settings(p: types_pb2.Policy) -> dict:
    """The LOCAL fallback machine's settings for a wire policy (defaults filled in)."""
    fl = p.failure_limit if p.HasField("failure_limit") else types_pb2.Fraction(numerator=1, denominator=1)
    return {
        "cooldown": p.cooldown.ToTimedelta().total_seconds(),
        "failure_limit": Limit(fl.numerator, fl.denominator),
        "success_limit": (
            Limit(p.success_limit.numerator, p.success_limit.denominator) if p.HasField("success_limit") else None
        ),
        "trial_permits": p.trial_permits if p.HasField("trial_permits") else None,
        "permit_ttl": p.permit_ttl.ToTimedelta().total_seconds() if p.HasField("permit_ttl") else 30.0,
        "consecutive_limit": p.consecutive_failures,
    }


def took_since(start: Optional[float]) -> Optional[float]:
    """Seconds since `start` (a `perf_counter` reading), or None when not measured."""
    return None if start is None else perf_counter() - start
