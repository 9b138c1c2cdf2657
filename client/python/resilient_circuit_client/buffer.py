"""The library's `buffer` module: the last N items, and their success and failure rates.

`BinaryCircularBuffer` is the type of the library's `execution_log`; here a protector's
`execution_log` is an `ExecutionLog`, a `BinaryCircularBuffer` holding a snapshot of the
daemon's window, so code that reads it (counts, rates, `is_full`, iteration) or checks
its type keeps working. Reads and `add` are safe across threads.
"""

from __future__ import annotations

import threading
from fractions import Fraction
from typing import Generic, Iterator, List, TypeVar

T = TypeVar("T")


class GenericCircularBuffer(Generic[T]):
    """The last `size` items added, oldest first."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("`size` must be positive.")
        self.size = size
        self._items: List[T] = []
        self._lock = threading.RLock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __iter__(self) -> Iterator[T]:
        with self._lock:
            return iter(list(self._items))

    def __str__(self) -> str:
        with self._lock:
            return str(self._items)

    def __repr__(self) -> str:
        with self._lock:
            return f"<{type(self).__name__}(size={self.size}): {self._items}>"

    def add(self, item: T) -> None:
        with self._lock:
            self._items.append(item)
            del self._items[: -self.size]

    @property
    def is_full(self) -> bool:
        return len(self) >= self.size


class BinaryCircularBuffer(GenericCircularBuffer[bool]):
    """Outcomes (True: success, False: failure) with their counts and rates."""

    @property
    def success_count(self) -> int:
        with self._lock:
            return self._items.count(True)

    @property
    def failure_count(self) -> int:
        with self._lock:
            return self._items.count(False)

    @property
    def success_rate(self) -> Fraction:
        return Fraction(self.success_count, len(self))

    @property
    def failure_rate(self) -> Fraction:
        return Fraction(self.failure_count, len(self))
