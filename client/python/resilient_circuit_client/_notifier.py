"""Status-change notifications: exactly once per transition, from two sources.

Design note (the Rust client's notifier, ported). A transition reaches a protector either
in the answer to this process's own report (fired at once, on the reporting thread) or on
the Watch stream a background thread reads. Both feed one Notifier, which fires each
generation once: a generation is unique within one life of a protector, so the notifier
keeps the generations fired above a floor and drops repeats. A protector deleted and
created again, or re-created by a daemon that restarted without its state, starts again
at generation 1: the notifier resets on CREATED, after DELETED, on a snapshot whose
generation moved other than by a transition it saw, and when the daemon's history
started over. After a reset, a snapshot whose status differs from the last one known
fires a synthetic change. A snapshot older (by revision) than what was applied is ignored.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Optional

log = logging.getLogger("resilient_circuit_client")

# The most generations remembered above the floor; older ones count as fired.
MAX_REMEMBERED = 256

Fire = Callable[[str, str], None]


class Notifier:
    def __init__(self, name: str, fire: Fire) -> None:
        self.name = name
        self._fire = fire
        self._lock = threading.Lock()
        # Held from taking a transition to the end of its callback: a transition both a
        # report's answer and the Watch thread bring is fired by whichever took it first,
        # and the other waits until that is done, so a report returns once the callback of
        # the transition it caused has run. Callbacks run one at a time, in the order taken.
        # Reentrant: a callback may call into its own protector on the same thread.
        self._firing = threading.RLock()
        self._floor = 0
        self._fired: set[int] = set()
        self.status: Optional[str] = None
        self.revision = 0

    def _highest(self) -> int:
        return max(self._fired, default=self._floor) if self._fired else self._floor

    def _call(self, before: str, after: str) -> None:
        try:
            self._fire(before, after)
        except Exception:  # a user's callback must not break the watch or the call
            log.exception("on_status_change of %s raised", self.name)

    def transition(self, before: str, after: str, generation: int, revision: int) -> None:
        with self._firing:
            with self._lock:
                if generation <= self._floor or generation in self._fired:
                    return
                self._fired.add(generation)
                if generation == self._highest():
                    self.status = after
                self.revision = max(self.revision, revision)
                while self._fired and (self._floor + 1 in self._fired or len(self._fired) > MAX_REMEMBERED):
                    lowest = min(self._fired)
                    self._fired.discard(lowest)
                    self._floor = lowest
            log.debug("%s: %s -> %s (generation %d)", self.name, before, after, generation)
            self._call(before, after)

    def entered(self, generation: int, status: str, revision: int) -> None:
        """The protector is known to be in `status` at `generation` (an Acquire's answer):
        when the generation before it is the last one known, the transition between them
        is known too, and fires now rather than when the Watch brings it, so callbacks
        keep the order of the transitions."""
        with self._lock:
            before = self.status
            known = self._highest() == generation - 1
        if before is not None and known:
            self.transition(before, status, generation, revision)

    def snapshot(self, status: str, generation: int, revision: int, created: bool) -> None:
        with self._firing:
            with self._lock:
                if not created and revision < self.revision:
                    return
                self.revision = revision
                synthetic = created or generation != self._highest()
                if synthetic:
                    self._floor = generation
                    self._fired.clear()
                before = self.status
                self.status = status
            if synthetic and before is not None and before != status:
                log.debug("%s: status reconciled from a snapshot: %s -> %s", self.name, before, status)
                self._call(before, status)

    def knows_status(self) -> bool:
        return self.status is not None

    def deleted(self, revision: int) -> None:
        with self._lock:
            self._floor = 0
            self._fired.clear()
            self.status = None
            self.revision = revision

    def new_history(self) -> None:
        with self._lock:
            self._floor = 0
            self._fired.clear()
            self.revision = 0
