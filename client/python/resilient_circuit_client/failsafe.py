"""Composing policies (the library's `failsafe` module).

`SafetyNet(policies=(outer, ..., inner))` decorates a function with every policy, the first
outermost: `SafetyNet(policies=(retry, protector))` is `retry(protector(func))`, so each
retry asks the protector again and an open protector stops the retries (see `retry`).
The same policy object twice is refused with ValueError, as in the library.
"""

from __future__ import annotations

from typing import Callable, Sequence


class SafetyNet:
    """Decorates a function with `policies`, the first outermost."""

    def __init__(self, *, policies: Sequence[Callable[[Callable], Callable]]) -> None:
        if len({id(p) for p in policies}) != len(policies):
            raise ValueError("All policies must be unique.")
        self.policies = tuple(policies)

    def __call__(self, func: Callable) -> Callable:
        for policy in reversed(self.policies):
            func = policy(func)
        return func
