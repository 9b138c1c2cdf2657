"""`InMemoryStorage`: the 0.8.x line's process-local store, kept working but not used.

It behaves as the library's does when called directly (a write never replaces a live
OPEN; at most `max_entries` keys, the least recently used non-OPEN one evicted first), so
code that reads or writes it still runs. No protector reads or writes it: their state is
the daemon's (see the package notes).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, List, Optional

from .base import CircuitBreakerStorage, State, fields


def _live_open(state: Optional[State]) -> bool:
    return state is not None and state.get("state") == "OPEN" and float(state.get("open_until", 0)) > time.time()


def _copy(state: Optional[State]) -> Optional[State]:
    if state is None:
        return None
    out = dict(state)
    if out.get("execution_log") is not None:
        out["execution_log"] = list(out["execution_log"])
    return out


class InMemoryStorage(CircuitBreakerStorage):
    """Protector states in this process, at most `max_entries` keys (None: no bound)."""

    backend_name = "in-memory"

    def __init__(self, max_entries: Optional[int] = 8192) -> None:
        if max_entries is not None and max_entries < 1:
            raise ValueError("`max_entries` must be positive (or None for unbounded).")
        self.max_entries = max_entries
        self._states: "OrderedDict[str, State]" = OrderedDict()
        self._lock = threading.Lock()

    def get_state(self, resource_key: str) -> Optional[State]:
        with self._lock:
            if resource_key in self._states:
                self._states.move_to_end(resource_key)
            return _copy(self._states.get(resource_key))

    def _put(self, key: str, state: str, failure_count: int, open_until: float, log: Optional[List[bool]]) -> None:
        new: State = {"state": state, "failure_count": failure_count, "open_until": open_until}
        old = self._states.get(key)
        if log is not None:
            new["execution_log"] = list(log)
        elif old is not None and "execution_log" in old:
            new["execution_log"] = old["execution_log"]
        if old is None and self.max_entries is not None:
            # A live OPEN is never evicted, even past the bound: losing it would admit
            # calls the breaker meant to stop.
            victims = [k for k, s in self._states.items() if not _live_open(s)]
            for victim in victims[: max(0, len(self._states) + 1 - self.max_entries)]:
                del self._states[victim]
        self._states[key] = new
        self._states.move_to_end(key)

    def set_state(
        self,
        resource_key: str,
        state: str,
        failure_count: int,
        open_until: float,
        execution_log: Optional[List[bool]] = None,
    ) -> bool:
        with self._lock:
            if _live_open(self._states.get(resource_key)):
                return False
            self._put(resource_key, state, failure_count, open_until, execution_log)
            return True

    def update_state(self, resource_key: str, mutator: Callable[[Optional[State]], Optional[State]]) -> Optional[State]:
        with self._lock:
            current = _copy(self._states.get(resource_key))
            new = mutator(current)
            if new is None:
                return current
            self._put(resource_key, *fields(new))
            return _copy(self._states[resource_key])

    def delete_state(self, resource_key: str) -> bool:
        with self._lock:
            return self._states.pop(resource_key, None) is not None
