"""Conversions between the library's values and the contract's messages."""

from __future__ import annotations

from datetime import timedelta
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
) -> types_pb2.Policy:
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
    return p


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
    }
