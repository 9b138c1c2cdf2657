"""How long a retry waits before its next attempt (the library's `backoff` module).

`ExponentialDelay(min_delay, max_delay, factor=2, jitter=None)`: attempt n (from 1) waits
`min_delay * factor**(n-1)`, the growth capped at `max_delay` step by step (so no attempt
number overflows), then spread by `jitter` (a fraction: uniform in `[d*(1-jitter),
d*(1+jitter)]`) and kept within `[min_delay, max_delay]`. `FixedDelay(delay)` waits the same
every time. `for_attempt(n)` answers in seconds. As in the library, `factor` below 1,
`max_delay` below `min_delay` and `jitter` outside [0, 1] are refused with ValueError.

Beyond the library: `rng`, a `random.Random` for reproducible jitter (None = the module's).
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
    factor: int = 2
    jitter: Optional[float] = None
    rng: Optional[random.Random] = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.jitter is not None and not 0 <= self.jitter <= 1:
            raise ValueError("`jitter` must be in range [0, 1].")
        if self.factor < 1:
            raise ValueError("`factor` must be >= 1.")
        if self.max_delay < self.min_delay:
            raise ValueError("`max_delay` must be >= `min_delay`.")

    def for_attempt(self, attempt: int) -> float:
        """The wait in seconds after failed attempt `attempt` (1 = the first)."""
        if attempt < 1:
            raise ValueError("`attempt` must be positive.")
        floor = self.min_delay.total_seconds()
        cap = self.max_delay.total_seconds()
        # Multiplied step by step, as the library does, so recorded delays match its
        # float for float; the loop ends at the cap, so a huge attempt costs nothing.
        delay = floor
        for _ in range(attempt - 1):
            if delay >= cap:
                break
            delay = min(delay * float(self.factor), cap)
        if self.jitter is not None:
            spread = delay * self.jitter
            delay += (self.rng or random).uniform(-spread, spread)
        return max(floor, min(delay, cap))


class FixedDelay(ExponentialDelay):
    """The same wait after every attempt."""

    def __init__(self, delay: timedelta) -> None:
        super().__init__(min_delay=delay, max_delay=delay, factor=1)
