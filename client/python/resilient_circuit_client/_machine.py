"""The in-process status machine of a LOCAL fallback: proto/SEMANTICS.md section 2, ported.

Design note. The daemon's rules, less what a single process has no use for (overrides,
counters, revisions): CLOSED admits and trips only when a FAILURE is recorded into a full
window whose failure rate reaches `failure_limit`, or (section 2a) when
`consecutive_failures` FAILUREs came in a row (FAILURE_LIMIT's reason wins when one
FAILURE meets both, as the daemon's does); OPEN rejects until `open_until`, and
the first acquire at or after it enters HALF_OPEN as a trial; HALF_OPEN admits up to
`trial_permits` trials into a fresh window of `success_limit`'s denominator (else
`failure_limit`'s) and decides once it is full. A permit carries its generation, so a
report from another generation is stale. A trial permit unreported after `permit_ttl`
counts as a FAILURE at its own expiry instant. The other rules of section 2a (time windows,
slow calls, cooldown backoff, shadow) are the daemon's alone, as in the Go and TypeScript
clients' fallbacks: a fallback is a stopgap. Time is passed in (seconds on any monotonic
scale), so tests drive it.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Optional

CLOSED, OPEN, HALF_OPEN = "CLOSED", "OPEN", "HALF_OPEN"
SUCCESS, FAILURE, IGNORED = "SUCCESS", "FAILURE", "IGNORED"


@dataclass(frozen=True)
class Limit:
    """A fraction n/d kept unreduced: d is also the size of the window it judges."""

    numerator: int
    denominator: int

    def __post_init__(self) -> None:
        if not 1 <= self.numerator <= self.denominator <= 10_000:
            raise ValueError(f"a limit needs 1 <= n <= d <= 10000, got {self.numerator}/{self.denominator}")

    def reached_by(self, count: int, length: int) -> bool:
        return length > 0 and count * self.denominator >= self.numerator * length


@dataclass(frozen=True)
class Transition:
    """One status transition; `generation` is the one entered."""

    before: str
    after: str
    reason: str
    generation: int
    open_until: Optional[float]


@dataclass(frozen=True)
class Permit:
    generation: int
    #: 0 for a CLOSED call, else the trial's id.
    id: int


@dataclass(frozen=True)
class Rejected:
    reason: str
    retry_after: Optional[float]


class Machine:
    """One protector's status machine (not thread-safe: the caller holds a lock)."""

    def __init__(
        self,
        *,
        cooldown: float = 0.0,
        failure_limit: Limit = Limit(1, 1),
        success_limit: Optional[Limit] = None,
        trial_permits: Optional[int] = None,
        permit_ttl: float = 30.0,
        consecutive_limit: int = 0,
    ) -> None:
        self.cooldown = cooldown
        #: FAILUREs in a row that trip CLOSED at once; 0: off.
        self.consecutive_limit = consecutive_limit
        self.failure_limit = failure_limit
        self.success_limit = success_limit
        self.trial_permits = trial_permits
        self.permit_ttl = permit_ttl
        self.status = CLOSED
        self.generation = 1
        self.open_until: Optional[float] = None
        self.consecutive_failures = 0
        # True = FAILURE, oldest first.
        self.window: collections.deque[bool] = collections.deque(maxlen=failure_limit.denominator)
        self._trials: dict[int, float] = {}
        self._next_id = 1

    def update_policy(self, **settings) -> None:
        """Takes another policy; the window starts anew at the size it gives the status."""
        for key, value in settings.items():
            setattr(self, key, value)
        size = self._half_open_window() if self.status == HALF_OPEN else self.failure_limit.denominator
        self.window = collections.deque(maxlen=size)

    def _half_open_window(self) -> int:
        return (self.success_limit or self.failure_limit).denominator

    def _trial_limit(self) -> Optional[int]:
        if self.trial_permits is None:
            return self._half_open_window()
        return self.trial_permits or None

    def acquire(self, now: float) -> tuple[Permit | Rejected, list[Transition]]:
        """A permit, or why not; plus the transitions this caused (in order)."""
        changes = self._expire(now)
        if self.status == CLOSED:
            return Permit(self.generation, 0), changes
        if self.status == OPEN:
            until = self.open_until if self.open_until is not None else now
            if now < until:
                return Rejected("OPEN", until - now), changes
            changes.append(self._enter(HALF_OPEN, "COOLDOWN_ELAPSED", now))
        limit = self._trial_limit()
        if limit is not None and len(self._trials) >= limit:
            earliest = min(self._trials.values())
            return Rejected("TRIALS_EXHAUSTED", max(0.0, earliest - now)), changes
        trial = self._next_id
        self._next_id += 1
        self._trials[trial] = now + self.permit_ttl
        return Permit(self.generation, trial), changes

    def report(self, permit: Permit, outcome: str, now: float) -> tuple[bool, list[Transition]]:
        """Whether the report was accepted; plus the transitions it caused."""
        changes = self._expire(now)
        if permit.generation != self.generation:
            return False, changes
        if permit.id == 0:
            valid = self.status == CLOSED
        else:
            valid = self._trials.pop(permit.id, None) is not None
        if not valid:
            return False, changes
        self._record(outcome)
        transition = self._evaluate(outcome, now, expired=False)
        if transition is not None:
            changes.append(transition)
        return True, changes

    def set_status(self, status: str, now: float) -> list[Transition]:
        """An operator's transition (reason MANUAL); the current status is re-entered."""
        changes = self._expire(now)
        changes.append(self._enter(status, "MANUAL", now))
        return changes

    def _expire(self, now: float) -> list[Transition]:
        changes = []
        while self.status == HALF_OPEN and self._trials:
            trial, expires_at = min(self._trials.items(), key=lambda t: t[1])
            if expires_at > now:
                break
            del self._trials[trial]
            self._record(FAILURE)
            transition = self._evaluate(FAILURE, expires_at, expired=True)
            if transition is not None:
                changes.append(transition)
        return changes

    def _record(self, outcome: str) -> None:
        if outcome == SUCCESS:
            self.window.append(False)
            self.consecutive_failures = 0
        elif outcome == FAILURE:
            self.window.append(True)
            self.consecutive_failures += 1

    def _evaluate(self, outcome: str, at: float, *, expired: bool) -> Optional[Transition]:
        if outcome == IGNORED:
            return None
        full = len(self.window) >= self.window.maxlen
        length = len(self.window)
        if self.status == CLOSED:
            # When one FAILURE meets both rules, the older rule's reason wins
            # (proto/SEMANTICS.md, "Which reason wins").
            if outcome != FAILURE:
                return None
            if full and self.failure_limit.reached_by(sum(self.window), length):
                return self._enter(OPEN, "FAILURE_LIMIT", at)
            if self.consecutive_limit and self.consecutive_failures >= self.consecutive_limit:
                return self._enter(OPEN, "CONSECUTIVE_FAILURES", at)
            return None
        if self.status != HALF_OPEN or not full:
            return None
        failures = sum(self.window)
        if self.success_limit is not None:
            close = self.success_limit.reached_by(length - failures, length)
        else:
            close = not self.failure_limit.reached_by(failures, length)
        if expired:
            reason = "PERMIT_EXPIRED"
        else:
            reason = "TRIALS_SUCCEEDED" if close else "TRIALS_FAILED"
        return self._enter(CLOSED if close else OPEN, reason, at)

    def _enter(self, status: str, reason: str, at: float) -> Transition:
        before = self.status
        self.status = status
        self.generation += 1
        self._trials.clear()
        if status == OPEN:
            self.open_until = at + self.cooldown
        else:
            self.open_until = None
            size = self._half_open_window() if status == HALF_OPEN else self.failure_limit.denominator
            self.window = collections.deque(maxlen=size)
            if status == CLOSED:
                self.consecutive_failures = 0
        return Transition(before, status, reason, self.generation, self.open_until)
