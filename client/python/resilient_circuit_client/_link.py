"""Whether the daemon is worth asking right now, and which replica (the Rust client's
link, ported).

Design note. A connection may know several addresses of the daemon (the replicas of one
cluster). The link asks one of them, the *current* replica, until it fails to answer; it
then moves to the next one at once. Only when every replica failed in turn (a full round)
does the link go down. Moving is keyed by the *turn* a call asked in (the replica and the
link's moves so far), so calls failing on the same replica together move the link on once,
not once each, and a late failure never starts a round the backoff holds back.

After a full round failed the link is *down* for a backoff period
(capped exponential, full jitter: attempt n waits uniformly in [0, min(cap, initial*2^n)]);
while it lasts every caller answers from its fallback at once instead of paying the
acquire deadline again. When the period ends, the first caller to notice becomes the
probe and pushes the next attempt a fresh backoff away before it tries, so concurrent
callers keep answering from the fallback. Any answer from the daemon (an RPC or a Watch
message) marks the link up. The link never gives up: the backoff stops growing at its cap.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import weakref

log = logging.getLogger("resilient_circuit_client")

ASK, PROBE, SKIP = "ask", "probe", "skip"


def backoff_delay(initial: float, cap: float, attempt: int) -> float:
    """Full-jitter capped exponential delay before retry `attempt` (0 = the first)."""
    ceiling = min(cap, initial * (2 ** min(attempt, 20)))
    return random.uniform(0.0, ceiling) if ceiling > 0 else 0.0


class Link:
    """The shared up/down state of one connection."""

    def __init__(self, initial: float = 0.05, cap: float = 5.0, replicas: int = 1) -> None:
        self.initial = initial
        self.cap = max(cap, initial)
        self.replicas = max(1, replicas)
        # The replica to ask, the moves so far, and how many replicas failed in turn since
        # the last answer or round.
        self.current = 0
        self._moves = 0
        self._round = 0
        self._lock = threading.Lock()
        self.down = False
        self._failures = 0
        self._next_try = 0.0
        self._warned = False
        self.downs = 0
        # Told (`link_went_down()`) each time `downs` moves: the protectors whose cached
        # fast path keys its successes by it.
        self.listeners: "weakref.WeakSet" = weakref.WeakSet()

    def attempt(self) -> str:
        if not self.down:
            return ASK
        with self._lock:
            now = time.monotonic()
            if not self.down:
                return ASK
            if now < self._next_try:
                return SKIP
            self._next_try = now + backoff_delay(self.initial, self.cap, self._failures)
            return PROBE

    def up(self) -> None:
        if not self.down and not self._failures and not self._round:
            return
        with self._lock:
            if self.down:
                log.info("the daemon is reachable again after %d failures", self._failures)
            self.down = False
            self._failures = 0
            self._warned = False
            self._round = 0

    def turn(self) -> tuple[int, int]:
        """The replica to ask now, and the moves so far (for `failed`)."""
        with self._lock:
            return self.current, self._moves

    def failed(self, why: str, turn: tuple[int, int] | None = None) -> bool:
        """The replica asked in `turn` (default: the current turn) could not be reached.
        Moves to the next replica; after a full round of failures the link goes down for a
        backoff period. Returns whether the caller may ask the (new) current replica at
        once: False once the round is over."""
        with self._lock:
            if turn is not None and turn != (self.current, self._moves):
                # Another caller already moved on from this turn.
                return not self.down
            failed, self.current = self.current, (self.current + 1) % self.replicas
            self._moves += 1
            self._round += 1
            if self._round < self.replicas:
                log.info("replica %d of the daemon cannot be reached (%s); asking replica %d", failed, why, self.current)
                if self.down:
                    # Probing: the rest of the round goes at once, the backoff is between rounds.
                    self._next_try = time.monotonic()
                return True
            self._round = 0
            delay = backoff_delay(self.initial, self.cap, self._failures)
            self._next_try = time.monotonic() + delay
            self._failures += 1
            went_down = not self.down
            if went_down:
                self.down = True
                self.downs += 1
                log.warning("the daemon cannot be reached (%s); answering from fallbacks for %.3fs", why, delay)
            else:
                log.debug("the daemon is still unreachable (%s); next try in %.3fs", why, delay)
        if went_down:
            for listener in list(self.listeners):
                listener.link_went_down()
        return False

    def first_fallback(self) -> bool:
        """Whether this fallback decision is the first since the link went down."""
        with self._lock:
            first = not self._warned
            self._warned = True
            return first
