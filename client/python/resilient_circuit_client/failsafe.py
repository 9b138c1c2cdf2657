"""Composing policies (the library's `failsafe` module).

`SafetyNet(policies=(outer, ..., inner))` decorates a function with every policy, the first
outermost: `SafetyNet(policies=(retry, protector))` is `retry(protector(func))`, so each
retry asks the protector again. As in the library, a function that always fails then runs
once, opens the protector, and the retries that follow are rejected until they run out:
the caller gets `RetryLimitReached` whose `__cause__` is the `ProtectedCallError`. The same
policy object twice is refused with ValueError; `policies` is kept as given.

Beyond the library: `honour_retry_after=True` turns on the retry-after-aware mode of every
`RetryWithBackoffPolicy` in the net (see `retry`), without changing the policy objects: an
open protector's rejection is then re-raised at once, as `ProtectedCallError`, unless its
`retry_after` fits the next backoff wait. Code that catches `RetryLimitReached` must then
catch `ProtectedCallError` too, which is why it is not the default.
"""

from __future__ import annotations

from typing import Callable, Sequence

from .retry import RetryWithBackoffPolicy


class SafetyNet:
    """Decorates a function with `policies`, the first outermost."""

    def __init__(
        self,
        *,
        policies: Sequence[Callable[[Callable], Callable]],
        honour_retry_after: bool = False,
    ) -> None:
        if len({id(p) for p in policies}) != len(policies):
            raise ValueError("All policies must be unique.")
        self.policies = policies
        self.honour_retry_after = honour_retry_after

    def __call__(self, func: Callable) -> Callable:
        for policy in reversed(self.policies):
            if self.honour_retry_after and isinstance(policy, RetryWithBackoffPolicy):
                func = policy.wrap(func, honour_retry_after=True)
            else:
                func = policy(func)
        return func
