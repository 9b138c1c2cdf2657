"""The library's `policy` module: `ProtectionPolicy`, the base every decorator here derives from.

Code written for the library checks `isinstance(p, ProtectionPolicy)` or derives its own
policies from it; both keep working, and a derived policy composes in a `SafetyNet`.
"""

from __future__ import annotations

import abc
from typing import Callable


class ProtectionPolicy(abc.ABC):
    """A decorator that protects the function it is applied to."""

    @abc.abstractmethod
    def __call__(self, func: Callable) -> Callable:
        """`func` under this policy."""
