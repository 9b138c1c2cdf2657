"""The 0.8.x line's storage contract, kept so code that subclasses it still constructs.

A subclass passed to a protector is superseded like the library's own backends: the
daemon holds the state, so `get_state`/`set_state` are never called by this package.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any, Callable, Dict, List, Optional

log = logging.getLogger("resilient_circuit_client")

State = Dict[str, Any]


class CircuitBreakerStorage(ABC):
    """A store of protector states by resource key (superseded: see the package notes)."""

    #: Which backend this is ("in-memory", "postgres", ...).
    backend_name: str = "unknown"

    @abstractmethod
    def get_state(self, resource_key: str) -> Optional[State]:
        """The stored state (keys state, failure_count, open_until, execution_log), or None."""

    @abstractmethod
    def set_state(
        self,
        resource_key: str,
        state: str,
        failure_count: int,
        open_until: float,
        execution_log: Optional[List[bool]] = None,
    ) -> bool:
        """Stores a state unless a live OPEN is stored; True when written."""

    def delete_state(self, resource_key: str) -> bool:
        """Removes a stored state; a backend that cannot answers False."""
        log.warning("%s cannot delete states; %r left in place", type(self).__name__, resource_key)
        return False

    def update_state(self, resource_key: str, mutator: Callable[[Optional[State]], Optional[State]]) -> Optional[State]:
        """Read, `mutator`, write (not atomic here; backends override it). None from the
        mutator leaves the state as it is."""
        current = self.get_state(resource_key)
        new = mutator(dict(current) if current is not None else None)
        if new is None:
            return current
        self.set_state(resource_key, *fields(new))
        return new


def fields(state: State) -> tuple[str, int, float, Optional[List[bool]]]:
    """A mutator's state as `set_state`'s arguments after the key."""
    return state["state"], int(state.get("failure_count", 0)), float(state.get("open_until", 0)), state.get("execution_log")
