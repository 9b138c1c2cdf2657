"""The daemon side of one protector: acquire, report, cached decisions and the watch.

Design note. Every call is decided by the daemon or, in cached mode (the default), from
what the Watch stream says about the daemon:

- **Cached fast path.** While the Watch stream is synced and fresh, the protector is
  CLOSED and no override holds, a call is admitted locally in the generation the stream
  announced. Its SUCCESS is counted and sent with others in one ReportBatch by the
  connection's batcher; its FAILURE is sent at once (after this protector's pending
  successes, in one ReportBatch) and the answer, a trip included, is applied before the
  call returns, so a process sees its own trips. Calls admitted in a generation the
  daemon has left are judged stale there, exactly as CLOSED permits of that generation.
- **Remote path.** Otherwise (not cached, OPEN, HALF_OPEN, an override, the stream not
  live) each call is an Acquire under the acquire deadline (50 ms): the call's one round
  trip, on the replica's Session stream when one is open (`_session`), else unary. The
  outcome of a permit admitted in CLOSED (or under DISABLED) goes the cached path's way,
  a SUCCESS counted for the batcher, a FAILURE (or IGNORED) sent at once
  after the pending successes. Every HALF_OPEN trial is the daemon's; its outcome is a
  Report of its own (only a Report releases a trial), after the pending successes.
- **Fallback.** When the daemon cannot be asked in time, or the link is in its backoff
  period, the declared fallback decides: "allow" admits (outcomes recorded nowhere),
  "deny" rejects, "local" asks an in-process status machine with the same policy.

- **Durations.** A call's duration goes with its outcome, for the daemon's slow-call
  rule and its what-if history: every Report of a daemon permit carries it, and, while
  the daemon's policy has a slow-call rule (learned from the ensure answer and the
  Watch stream), a SUCCESS at or above `slow_call_duration` is not counted with the
  batched successes but listed in its batch's `outcomes` with its duration (at most
  `MAX_SLOW_PENDING` wait for the batcher; past that they are lost and counted so). The
  cached fast path reads the clock only while such a rule is known.

- **Giving way.** A thread busy on the fast path holds the GIL, and the interpreter
  takes it away only every switch interval (`sys.getswitchinterval()`, 5 ms by default):
  an event the Watch reader received (a trip) would wait that long before it could be
  applied. So the fast path has a checkpoint every `TURN` (1 ms): the call that passes it
  checks freshness against the stream's deadline and gives the GIL away (`time.sleep(0)`),
  so a waiting reader applies its event within about `TURN` of its arrival. The clock the
  fast path already reads tells when; between checkpoints a call costs nothing more, and
  a checkpoint costs one system call a millisecond.

State the watch thread and callers share is guarded by `_lock`; the fast path reads
`_fast_key`, `_fast_gen`, `_check_at` and `slow_call` without it (each is replaced whole).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from typing import Callable, Optional

import grpc

from . import _connection
from ._connection import REQUEST_TIMEOUT, Connection, Replica, T, unreachable
from ._generated import protector_pb2, types_pb2
from ._link import SKIP
from ._machine import Machine, Permit
from ._notifier import Notifier
from ._session import Broken, SessionRpcError, acquire_field
from ._wire import STATUS_NAMES, duration_of_seconds, machine_settings, reason_name, seconds_of, slow_call_seconds
from .exceptions import ProtectedCallError, ProtectionException

log = logging.getLogger("resilient_circuit_client")

CLOSED = types_pb2.STATUS_CLOSED
CACHED, DAEMON, LOCAL, ALLOWED = "cached", "daemon", "local", "allowed"
OUTCOMES = {"SUCCESS": types_pb2.OUTCOME_SUCCESS, "FAILURE": types_pb2.OUTCOME_FAILURE, "IGNORED": types_pb2.OUTCOME_IGNORED}
NO_OVERRIDE = (types_pb2.OVERRIDE_KIND_UNSPECIFIED, types_pb2.OVERRIDE_KIND_NONE)
#: Slow successes (each listed with its duration) waiting for the batcher, at most.
MAX_SLOW_PENDING = 10_000
#: How often a thread deciding on the cached fast path gives the GIL away, at most
#: (seconds; see "Giving way" above).
TURN = 0.001

#: How the fast path's checkpoint gives the GIL away: `time.sleep(0)` releases it, and a
#: thread waiting for it (the Watch reader with an event) takes it.
_give_way = time.sleep

_runtimes: "weakref.WeakSet[Runtime]" = weakref.WeakSet()


class Runtime:
    def __init__(
        self,
        *,
        name: str,
        address: str,
        policy: types_pb2.Policy,
        fallback: str,
        cached: bool,
        acquire_deadline: float,
        watch_staleness: float,
        fire: Callable[[str, str], None],
        status_of: Callable[[int], object],
        tls: Optional[_connection.Tls] = None,
        token: Optional[str] = None,
    ) -> None:
        self.name = name
        self.address = address
        self.tls = tls
        self.token = token
        self.policy = policy
        self.fallback = fallback
        self.cached = cached
        self.acquire_deadline = acquire_deadline
        self.watch_staleness = watch_staleness
        self.status_of = status_of
        self._acquire_field = acquire_field(name)
        self.local = Machine(**machine_settings(policy)) if fallback == "local" else None
        self._local_lock = threading.Lock()
        self.notifier = Notifier(name, fire)
        # Acquires decided by each source (read by `decisions` and the Prometheus collector).
        self.fallback_decisions = 0
        self.daemon_decisions = 0
        self.cache_decisions = 0
        self.has_callback = False
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        _runtimes.add(self)
        self._reset()

    def _reset(self) -> None:
        self.conn: Optional[Connection] = None
        self.started = False
        self.ensured = False
        # (status, generation, no override) as last known, and the revision it reflects.
        self._view: Optional[tuple[int, int, bool]] = None
        self._view_rev = 0
        self._live = False
        # Until when the stream vouches for the view (PROGRESS and events move it on).
        self._fresh_until = 0.0
        # The fast path's next checkpoint, never past `_fresh_until` (see give_way).
        self._check_at = 0.0
        # The generation cached calls are admitted in; 0 = take the remote path.
        self._fast_gen = 0
        # The key cached successes are counted under, (generation, link outages so far),
        # or None for the remote path: the fast path reads this one attribute.
        self._fast_key: Optional[tuple[int, int]] = None
        # Successes not yet sent, one key each (see `_take`), appended without a lock
        # (`list.append` is atomic); `_pend_woken` says the batcher was woken for them.
        self._pend: list[tuple[int, int]] = []
        self._pend_woken = False
        # The revision of the newest creation or deletion of the protector learned: the
        # start or end of the life the pending successes belong to (see life_ends).
        self._life = 0
        # Slow successes not yet sent: ((generation, link outages so far), seconds).
        self._slow_pend: list[tuple[tuple[int, int], float]] = []
        #: The daemon's slow-call threshold in seconds; 0.0 while its policy has no
        #: slow-call rule (or is not known yet).
        self.slow_call = 0.0
        self._watch_call = None
        self._watch_restart = False
        self._closed = threading.Event()
        # Set while the Watch stream is live / not live, for whoever must wait for either.
        self.synced = threading.Event()
        self.unsynced = threading.Event()
        self.unsynced.set()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Takes the connection and starts the watch; never waits for the daemon (a daemon
        that accepts and never answers must not hold up a constructor or a first call
        beyond its acquire deadline). The protector is ensured by the first call that asks
        the daemon, within its deadline; the watch learns of it from the stream. (Ensuring
        it from the watch thread as well would race the caller's own ensure: a late
        "created" answer would undo a transition the caller already applied.)"""
        if self.started:
            return
        with self._start_lock:
            if self.started:
                return
            self.conn = _connection.connection(self.address, self.tls, self.token)
            self.conn.link.listeners.add(self)
            if self.cached or self.has_callback:
                self.start_watch()
            self.started = True

    def start_watch(self) -> None:
        with self._lock:
            if getattr(self, "_watch_thread_started", False) and not self._closed.is_set():
                return
            self._watch_thread_started = True
        from ._watch import run

        thread = threading.Thread(target=run, args=(self,), name=f"resilient-circuit-watch {self.name}", daemon=True)
        thread.start()

    def close(self) -> None:
        """Stops the watch and sends pending successes."""
        self._closed.set()
        call = self._watch_call
        if call is not None:
            call.cancel()
        if self.conn is not None:
            self.conn.send([self])

    # -- the view the fast path reads --------------------------------------------------

    def _recompute(self) -> None:
        v = self._view
        ok = self.cached and self._live and v is not None and v[0] == CLOSED and v[2]
        self._fast_gen = v[1] if ok else 0
        conn = self.conn
        self._fast_key = (v[1], conn.link.downs) if ok and conn is not None else None

    def link_went_down(self) -> None:
        """The link's outage count moved: successes counted from now on carry the new one."""
        with self._lock:
            self._recompute()

    def set_view(self, status: int, generation: int, no_override: Optional[bool], revision: int, force: bool = False) -> None:
        with self._lock:
            if not force and revision < self._view_rev:
                return
            if no_override is None:
                no_override = self._view[2] if self._view is not None else True
            self._view = (status, generation, no_override)
            self._view_rev = revision
            self._recompute()

    def forget_view(self, revision: int) -> None:
        with self._lock:
            self._view = None
            self._view_rev = revision
            self._recompute()

    def set_override(self, no_override: bool, revision: int) -> None:
        with self._lock:
            if self._view is not None and revision >= self._view_rev:
                self._view = (self._view[0], self._view[1], no_override)
                self._view_rev = revision
                self._recompute()

    def set_live(self, live: bool, fresh_until: float = 0.0) -> None:
        with self._lock:
            self._live = live
            self._fresh_until = fresh_until
            self._check_at = 0.0
            self._recompute()
        if live:
            self.unsynced.clear()
            self.synced.set()
        else:
            self.synced.clear()
            self.unsynced.set()

    def touch(self, fresh_until: float) -> None:
        self._fresh_until = fresh_until

    def new_history(self) -> None:
        """The daemon's history started over (a RESYNC to older revisions): its revisions
        start again, so the lives learned mean nothing there, and successes still pending
        name generations of a life it does not have: they are dropped and counted lost."""
        with self._lock:
            self._view_rev = 0
            self._life = 0
            lost = self._drop_pending()
        if lost:
            self.batch_lost(lost, "the daemon's history started over after these calls")
        self.notifier.new_history()

    def fast_generation(self) -> int:
        """The generation to admit a call in locally, or 0 for the remote path (the
        decorator inlines this with `count_success`)."""
        gen = self._fast_gen
        if gen and time.monotonic() >= self._check_at:
            key = self.give_way()
            gen = key[0] if key is not None else 0
        if gen:
            # Every caller admits the call locally when this is non-zero.
            self.cache_decisions += 1
        return gen

    def give_way(self) -> Optional[tuple[int, int]]:
        """The fast path's checkpoint, for a call that found `_check_at` passed: the key
        to admit it locally under, or None when the stream no longer vouches for the view
        (the call takes the remote path, which sees the stream is stale). Gives the GIL
        away first, so an event waiting for it (a trip) is applied before this call is
        decided; the next checkpoint is `TURN` later, never past the stream's deadline."""
        if time.monotonic() >= self._fresh_until:
            return None
        _give_way(0)
        # Read after the turn: the event applied meanwhile is taken into account.
        fresh, key = self._fresh_until, self._fast_key
        now = time.monotonic()
        if key is None or now >= fresh:
            return None
        self._check_at = min(fresh, now + TURN)
        return key

    # -- daemon RPCs ---------------------------------------------------------------------

    def ensure(self, timeout: float, replica: Optional[Replica] = None) -> None:
        replica = replica or self.conn.replica
        # Not while a batch is being sent: one taken before a deletion lands before the
        # protector is created again, and successes still pending are dropped by the answer
        # (life_ends) before a batch can take them for the new life. The wait is part of
        # the call's deadline (a batch to a hanging daemon holds the lock for its own).
        started = time.monotonic()
        if not self.conn.sending.acquire(timeout=max(0.0, timeout)):
            raise SessionRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "a batch of outcomes was still being sent")
        try:
            left = max(0.0, timeout - (time.monotonic() - started))
            self.ensured_by(replica.protectors.EnsureProtector(self.ensure_request(), timeout=left))
        finally:
            self.conn.sending.release()

    def ensure_request(self) -> protector_pb2.EnsureProtectorRequest:
        return protector_pb2.EnsureProtectorRequest(name=self.name, policy=self.policy)

    def learn_policy(self, policy: types_pb2.Policy) -> None:
        """Takes in the daemon's policy (an answer, a snapshot, an event): only its
        slow-call rule matters here."""
        self.slow_call = slow_call_seconds(policy)

    def ensured_by(self, response: protector_pb2.EnsureProtectorResponse) -> None:
        """Applies an EnsureProtector's answer (from either transport)."""
        p = response.protector
        self.learn_policy(p.policy)
        if not response.policy_matches:
            log.warning("protector %r exists on the daemon with another policy; the daemon's applies", self.name)
            if self.local is not None:
                with self._local_lock:
                    self.local.update_policy(**machine_settings(p.policy))
        if response.created and self.notifier.knows_status():
            log.info("protector %r was created again (deleted, or the daemon restarted)", self.name)
            self.restart_watch()
        if response.created:
            # Just created, its last change is its creation.
            self.life_ends(p.mod_revision)
        self.notifier.snapshot(STATUS_NAMES[p.status], p.generation, p.mod_revision, response.created)
        self.set_view(p.status, p.generation, p.override.kind in NO_OVERRIDE, response.revision, force=response.created)
        self.ensured = True

    def restart_watch(self) -> None:
        self._watch_restart = True
        call = self._watch_call
        if call is not None:
            call.cancel()

    def _ask(self, replica: Replica, left: Callable[[], float]) -> protector_pb2.AcquireResponse:
        if not self.ensured:
            self.ensure(left(), replica)
        try:
            return self._acquire_on(replica, left)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
        self.ensured = False
        log.info("the daemon does not know protector %r; ensuring it again", self.name)
        self.ensure(left(), replica)
        return self._acquire_on(replica, left)

    def _acquire_on(self, replica: Replica, left: Callable[[], float]) -> protector_pb2.AcquireResponse:
        """One Acquire on the replica's Session stream, else (no stream, or it broke) by the
        unary call, which then says why the daemon could not be asked."""
        sessions = replica.sessions
        stream = sessions.live() if sessions is not None else None
        if stream is not None:
            try:
                return stream.acquire(self._acquire_field, self.name, left())
            except Broken:
                pass
        response = replica.protectors.Acquire(protector_pb2.AcquireRequest(name=self.name), timeout=left())
        if sessions is not None:
            sessions.open(max(left(), self.acquire_deadline))
        return response

    def acquire(self) -> tuple[str, object]:
        """A ticket to resolve with the call's outcome, or ProtectedCallError."""
        ticket = self.before_acquire()
        if ticket is not None:
            return ticket
        try:
            response = self.conn.ask(self._ask, self.acquire_deadline)
        except grpc.RpcError as e:
            return self.acquire_failed(e)
        return self.admitted(response)

    def before_acquire(self) -> Optional[tuple[str, object]]:
        """The ticket of a call decided without asking the daemon (cached, or the link is
        down), else None: the daemon is to be asked (by either transport)."""
        self.start()
        gen = self.fast_generation()
        if gen:
            return CACHED, gen
        call = self._watch_call
        if self._live and call is not None and time.monotonic() >= self._fresh_until:
            # A silent stream is a dead one: the watch thread reopens it.
            self.set_live(False)
            call.cancel()
        if self.conn.link.attempt() == SKIP:
            return self._decide_locally("the link to the daemon is down")
        return None

    def acquire_failed(self, e: grpc.RpcError) -> tuple[str, object]:
        """The ticket (from the fallback) when the Acquire failed with `e`, or the refusal."""
        why = f"{e.code().name}: {e.details()}"
        if not unreachable(e):
            raise ProtectionException(f"the daemon refused an Acquire of {self.name!r}: {why}") from e
        return self._decide_locally(why)

    def admitted(self, response: protector_pb2.AcquireResponse) -> tuple[str, object]:
        """The ticket of an Acquire's answer, or ProtectedCallError."""
        self.daemon_decisions += 1
        if response.decision == types_pb2.DECISION_ADMITTED:
            if response.reason == types_pb2.DECISION_REASON_CLOSED:
                self.set_view(CLOSED, response.permit.generation, True, response.revision)
            elif response.reason == types_pb2.DECISION_REASON_TRIAL:
                if response.HasField("transition"):
                    # This Acquire ended the cooldown (the lazy OPEN -> HALF_OPEN): the
                    # daemon says so, and it fires before the trial's own outcome can
                    # announce the next transition.
                    self.apply_transition(response.transition, response.revision)
                else:
                    # A daemon that does not say: infer it from the generation.
                    self.set_view(response.status, response.permit.generation, None, response.revision)
                    self.notifier.entered(response.permit.generation, "HALF_OPEN", response.revision)
            return DAEMON, response.permit
        raise ProtectedCallError(
            name=self.name,
            status=self.status_of(response.status),
            reason=reason_name(response.reason),
            retry_after=seconds_of(response.retry_after) if response.HasField("retry_after") else None,
        )

    def _decide_locally(self, why: str) -> tuple[str, object]:
        self.fallback_decisions += 1
        self.conn.stats.fallback_decisions += 1
        level = logging.WARNING if self.conn.link.first_fallback() else logging.DEBUG
        log.log(level, "protector %r: the daemon could not be asked (%s); fallback %s decides", self.name, why, self.fallback)
        if self.fallback == "allow":
            return ALLOWED, None
        if self.fallback == "local":
            with self._local_lock:
                decision, _ = self.local.acquire(time.monotonic())
                status = self.local.status
            if isinstance(decision, Permit):
                return LOCAL, decision
            raise ProtectedCallError(
                name=self.name,
                status=self.status_of(status),
                reason=decision.reason,
                retry_after=None if decision.retry_after is None else _timedelta(decision.retry_after),
                fallback=True,
            )
        raise ProtectedCallError(name=self.name, status=self.status_of(types_pb2.STATUS_OPEN), reason="OPEN", fallback=True)

    def resolve(self, ticket: tuple[str, object], outcome: str, took: Optional[float] = None) -> None:
        """Reports `outcome` of the call `ticket` admitted, which took `took` seconds
        (None: not measured)."""
        kind, data = ticket
        if kind == CACHED:
            if outcome == "SUCCESS":
                self.pending_success(data, took)
            elif outcome == "FAILURE":
                self.report_now(data, outcome, took)
        elif kind == DAEMON:
            if data.id:
                self._report(data, outcome, took)
            elif outcome == "SUCCESS":
                self.pending_success(data.generation, took)
            else:
                # A FAILURE may trip the protector: the caller's next call must see it. An
                # IGNORED is rare (the call was interrupted) and the daemon counts it.
                self.report_now(data.generation, outcome, took)
        elif kind == LOCAL:
            with self._local_lock:
                self.local.report(data, outcome, time.monotonic())
        else:
            self.conn.stats.reports_dropped += 1

    def resolves_at_once(self, ticket: tuple[str, object], outcome: str) -> bool:
        """Whether `resolve(ticket, outcome)` returns without waiting for the daemon (a
        success left to the batcher, a fallback's outcome): callers that must not block
        (an event loop) send the others from a worker thread."""
        kind, data = ticket
        if kind == CACHED:
            return outcome != "FAILURE"
        if kind == DAEMON:
            return outcome == "SUCCESS" and not data.id
        return True

    def _report(self, permit: types_pb2.Permit, outcome: str, took: Optional[float] = None) -> None:
        conn = self.conn
        # Outcomes of calls that ended before this one go first.
        self.flush()
        if conn.link.down:
            self.batch_lost(1, "the link to the daemon is down")
            return
        request = protector_pb2.ReportRequest(name=self.name, permit=permit, outcome=OUTCOMES[outcome])
        if took is not None:
            request.duration.CopyFrom(duration_of_seconds(took))
        try:
            r = conn.ask(lambda replica, left: replica.protectors.Report(request, timeout=left()), REQUEST_TIMEOUT)
        except grpc.RpcError as e:
            self.batch_lost(1, f"{e.code().name}: {e.details()}")
            return
        if r.HasField("transition"):
            self.apply_transition(r.transition, r.revision)

    def apply_transition(self, t: types_pb2.Transition, revision: int) -> None:
        self.set_view(t.to, t.generation, None, revision)
        self.notifier.transition(STATUS_NAMES[getattr(t, "from")], STATUS_NAMES[t.to], t.generation, revision)

    # -- pending successes (CLOSED calls, cached or not) and immediate failures ------------

    def pending_success(self, gen: int, took: Optional[float] = None) -> None:
        # Keyed by the link's outages too: see _take.
        key = (gen, self.conn.link.downs)
        slow = self.slow_call
        if slow and took is not None and took >= slow:
            with self._lock:
                full = len(self._slow_pend) >= MAX_SLOW_PENDING
                if not full:
                    self._slow_pend.append((key, took))
            if full:
                self.batch_lost(1, "too many slow calls wait for the batcher")
            else:
                self.conn.wake(self)
            return
        self.count_success(key)

    def count_success(self, key: tuple[int, int]) -> None:
        """Counts one success under `key` for the batcher (the decorator inlines this)."""
        self._pend.append(key)
        if not self._pend_woken:
            self._pend_woken = True
            self.conn.wake(self)

    def _take(self) -> list[tuple[int, int, list[float]]]:
        """The pending successes as (generation, count, slow ones' durations), oldest
        first.

        Successes still pending when the link to the daemon went down are dropped (counted
        in reports_lost): whoever answers next may be a daemon that restarted without its
        state, where the generation they carry names another life of the protector. The
        library drops the state write its unreachable storage refused in the same way.

        Exactly once without a lock on the counting side: the flag is lowered before the
        list is read, so a success appended after the read finds it lowered and wakes the
        batcher again; `del pend[:n]` removes exactly the `n` read (appends go after them)."""
        with self._lock:
            self._pend_woken = False
            pend = self._pend
            n = len(pend)
            taken = pend[:n]
            del pend[:n]
            slow, self._slow_pend = self._slow_pend, []
        counts: dict[tuple[int, int], int] = {}
        if n:
            first = taken[0]
            # Nearly always one key: `count` compares by identity first, in C.
            same = taken.count(first)
            if same == n:
                counts[first] = n
            else:
                for key in taken:
                    counts[key] = counts.get(key, 0) + 1
        downs = self.conn.link.downs
        items = list(counts.items())
        lost = sum(c for (_, d), c in items if d != downs) + sum(1 for (_, d), _ in slow if d != downs)
        if lost:
            self.batch_lost(lost, "the link to the daemon went down after these calls")
        by_generation: dict[int, tuple[int, list[float]]] = {}
        for (g, d), c in items:
            if d == downs:
                count, durations = by_generation.get(g, (0, []))
                by_generation[g] = (count + c, durations)
        for (g, d), took in slow:
            if d == downs:
                by_generation.setdefault(g, (0, []))[1].append(took)
        return [(g, c, durations) for g, (c, durations) in by_generation.items()]

    def _batch(self, gen: int, successes: int, slow: list[float], last: Optional[tuple[str, Optional[float]]] = None):
        """One OutcomeBatch: the counted successes, each slow one listed with its
        duration, then `last` (an outcome and its duration, if measured)."""
        batch = protector_pb2.OutcomeBatch(name=self.name, generation=gen, successes=successes)
        for took in slow:
            batch.outcomes.append(types_pb2.OUTCOME_SUCCESS)
            batch.durations.append(duration_of_seconds(took))
        if last is not None:
            outcome, took = last
            batch.outcomes.append(OUTCOMES[outcome])
            # Durations go by position: every outcome before this one has its own.
            if took is not None and self.slow_call:
                batch.durations.append(duration_of_seconds(took))
        return batch

    def life_ends(self, revision: int) -> None:
        """The protector was created or deleted at `revision`: successes still pending belong
        to a life that ended (its generations start again at 1 in the next one, which would
        take them for its own), so they are dropped and counted lost, unless a newer creation
        or deletion was learned already (the Watch stream lagging behind an answer: the
        pending successes are the new life's)."""
        with self._lock:
            if revision <= self._life:
                return
            self._life = revision
            lost = self._drop_pending()
        if lost:
            self.batch_lost(lost, "the protector was deleted or created again after these calls")

    def _drop_pending(self) -> int:
        """Drops the pending successes, slow ones too (the caller holds `_lock`): how many."""
        # As in _take: exactly the successes read are removed; later appends stay.
        pend = self._pend
        lost = len(pend) + len(self._slow_pend)
        del pend[: len(pend)]
        self._slow_pend = []
        return lost

    def take_pending(self) -> list[protector_pb2.OutcomeBatch]:
        return [self._batch(g, n, slow) for g, n, slow in self._take()]

    def report_now(self, gen: int, outcome: str, took: Optional[float] = None) -> None:
        """Sends this protector's pending successes, then `outcome`, and applies the answer."""
        with self.conn.sending:
            items = self._take()
            batches = [self._batch(g, n, slow) for g, n, slow in items if g != gen]
            own = [(n, slow) for g, n, slow in items if g == gen]
            n, slow = own[0] if own else (0, [])
            batches.append(self._batch(gen, n, slow, (outcome, took)))
            self.conn.report_batch([self] * len(batches), batches)

    def apply_batch_result(self, result: protector_pb2.OutcomeBatchResult, revision: int) -> None:
        if result.HasField("error"):
            if result.error.code == grpc.StatusCode.NOT_FOUND.value[0]:
                self.ensured = False
                self.forget_view(revision)
            log.warning("protector %r: a batch of reports failed: %s", self.name, result.error.message)
            return
        if result.HasField("transition"):
            self.apply_transition(result.transition, revision)
        else:
            self.set_view(result.status, result.generation, None, revision)

    def batch_lost(self, count: int, why: Optional[str]) -> None:
        self.conn.stats.reports_lost += count
        log.debug("protector %r: %d reports could not reach the daemon (%s)", self.name, count, why)

    def flush(self) -> None:
        """Sends this process's pending reports now, so a read sees them."""
        if self.conn is not None:
            self.conn.send([self])

    def get(self) -> types_pb2.Protector:
        """The daemon's protector, after this process's pending reports."""
        self.start()
        self.flush()
        request = protector_pb2.GetProtectorRequest(name=self.name)
        response = self.conn.ask(
            lambda replica, left: self._ensured(replica, left, lambda: replica.protectors.GetProtector(request, timeout=left())),
            REQUEST_TIMEOUT,
        )
        p = response.protector
        self.set_view(p.status, p.generation, p.override.kind in NO_OVERRIDE, response.revision)
        return p

    def set_status(self, status: int) -> None:
        from ._generated import admin_pb2

        self.start()
        self.flush()
        request = admin_pb2.SetStatusRequest(name=self.name, status=status)
        response = self.conn.ask(
            lambda replica, left: self._ensured(replica, left, lambda: replica.admin.SetStatus(request, timeout=left())),
            REQUEST_TIMEOUT,
        )
        self.apply_transition(response.transition, response.revision)

    def _ensured(self, replica: Replica, left: Callable[[], float], call: Callable[[], T]) -> T:
        """`call()` on `replica`, once more after ensuring the protector if it answered
        NOT_FOUND (the replica does not know it)."""
        try:
            return call()
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
        self.ensure(left(), replica)
        return call()


def _timedelta(seconds: float):
    from datetime import timedelta

    return timedelta(seconds=seconds)


def _reset_after_fork() -> None:
    for runtime in list(_runtimes):
        runtime._lock = threading.Lock()
        runtime._start_lock = threading.Lock()
        runtime._local_lock = threading.Lock()
        runtime.notifier._lock = threading.Lock()
        runtime._watch_thread_started = False
        runtime._reset()


os.register_at_fork(after_in_child=_reset_after_fork)


def _flush_at_exit() -> None:
    # The batcher is a daemon thread: successes still pending when the interpreter
    # exits would be lost without this last send.
    for runtime in list(_runtimes):
        if runtime.conn is not None and not runtime._closed.is_set():
            runtime.flush()


atexit.register(_flush_at_exit)
