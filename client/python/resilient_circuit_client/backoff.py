"""How long a retry waits before its next attempt (the library's `backoff` module).

`ExponentialDelay(min_delay, max_delay, factor=2, jitter=None)`: attempt n (from 1) waits
`min_delay * factor**(n-1)`, spread by `jitter` (a fraction: uniform in
`[d*(1-jitter), d*(1+jitter)]`), and never more than `max_delay`. `FixedDelay(delay)` waits
the same every time. `for_attempt(n)` answers in seconds, as in the library.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Optional


@dataclass(frozen=True)
class ExponentialDelay:
    """Delays growing by `factor` from `min_delay`, capped at `max_delay`, with jitter."""

    min_delay: timedelta
    max_delay: timedelta
    factor: float = 2
    jitter: Optional[float] = None
    #: A generator for the jitter, for reproducible tests; None = the module's.
    rng: Optional[random.Random] = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.jitter is not None and not 0 <= self.jitter <= 1:
            raise ValueError("`jitter` must be in range [0, 1].")

    def for_attempt(self, attempt: int) -> float:
        """The wait in seconds after failed attempt `attempt` (1 = the first)."""
        if attempt < 1:
            raise ValueError("`attempt` must be positive.")
        cap = self.max_delay.total_seconds()
        try:
            delay = self.min_delay.total_seconds() * pow(self.factor, attempt - 1)
        except OverflowError:
            return cap
        if self.jitter:
            spread = delay * self.jitter
            delay += (self.rng or random).uniform(-spread, spread)
        return max(0.0, min(delay, cap))


class FixedDelay(ExponentialDelay):
    """The same wait after every attempt."""

    def __init__(self, delay: timedelta) -> None:
        super().__init__(min_delay=delay, max_delay=delay, factor=1)
