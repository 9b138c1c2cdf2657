"""The Watch stream of one protector, read by a background thread for as long as it lives.

Design note. The stream feeds the notifier (status-change callbacks) and the view the
cached fast path decides from. It reconnects with the link's capped, fully jittered
backoff and resumes after the last revision it applied, sending the `epoch` of the
SYNCED that revision came from: a daemon that restarted without its state has another
epoch and answers with RESYNC and a fresh snapshot. The stream is *live* from SYNCED
until it breaks, a RESYNC arrives, or nothing (not even PROGRESS, asked for at a third
of the staleness limit) came for `watch_staleness`. A snapshot phase that ends without
a snapshot of this protector means the daemon does not have it: the view is forgotten,
so calls take the remote path, which ensures it again.

A replica that cannot be reached hands the stream to the next one at once (the backoff is
between full rounds, see `_link`), resuming with the same revision and epoch: another
replica of the same cluster resumes without a resync; a daemon of another history answers
RESYNC, and the snapshot after it is taken as the truth.
"""

from __future__ import annotations

import logging
import time

import grpc

from ._fork import gate
from ._generated import protector_pb2
from ._link import backoff_delay
from ._notifier import Notifier
from ._wire import STATUS_NAMES, duration

log = logging.getLogger("resilient_circuit_client")


def run(rt) -> None:
    from datetime import timedelta

    progress = min(3600.0, max(0.1, rt.watch_staleness / 3))
    resume = None
    epoch = None
    failures = 0
    while not rt._closed.is_set():
        conn = rt.conn
        if rt._watch_restart:
            rt._watch_restart = False
            resume = None
        request = protector_pb2.WatchRequest(
            names=protector_pb2.NameList(names=[rt.name]),
            progress_interval=duration(timedelta(seconds=progress), "progress_interval"),
        )
        if resume is not None:
            request.start_revision = resume
            if epoch is not None:
                request.start_epoch = epoch
        turn, replica = conn.turn()
        started_from = resume
        # Whether a snapshot phase is under way, and whether it held this protector.
        state = {"snapshotting": resume is None, "seen": False, "resynced": False}
        why = "the stream ended"
        next_now = False
        forks = gate.forks
        try:
            with gate.stream(lambda: replica.protectors.Watch(request)) as call:
                rt._watch_call = call
                for event in call:
                    now = time.monotonic()
                    rt.touch(now + rt.watch_staleness)
                    conn.link.up()
                    failures = 0
                    resume, epoch = _apply(rt, event, started_from, resume, epoch, state, now)
        except grpc.RpcError as e:
            why = f"{e.code().name}: {e.details()}"
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                next_now = conn.link.failed(why, turn)
        finally:
            rt._watch_call = None
            rt.set_live(False)
        if rt._closed.is_set():
            return
        if next_now or gate.forks != forks:
            # A fork in this process cancelled the stream: nothing failed.
            delay = 0.0
        else:
            delay = 0.0 if rt._watch_restart else backoff_delay(conn.link.initial, conn.link.cap, failures)
            failures += 1
        log.debug("watch of %r interrupted (%s); reconnecting in %.3fs from %s", rt.name, why, delay, resume)
        # A reconnect delay, not synchronisation: the stream is gone.
        rt._closed.wait(delay)


def _apply(rt, event, started_from, resume, epoch, state, now):
    notifier: Notifier = rt.notifier
    revision = event.revision
    kind = event.WhichOneof("event")
    if kind == "snapshot":
        p = event.snapshot
        rt.learn_policy(p.policy)
        state["seen"] = True
        # After a RESYNC the snapshot is the truth, whatever revisions came before (the
        # daemon may have started a new history with smaller ones).
        fresh = state["resynced"]
        notifier.snapshot(STATUS_NAMES[p.status], p.generation, revision, fresh)
        rt.set_view(p.status, p.generation, p.override.kind in (0, 1), revision, force=True)
        return resume, epoch
    if kind == "created":
        p = event.created
        rt.learn_policy(p.policy)
        # This process's own answers (its EnsureProtector, a transition it caused) may be
        # ahead of the stream: then the creation is old news, not a new life to start over
        # from. (A new history comes after a RESYNC, which resets the notifier.)
        fresh = revision >= notifier.revision
        rt.life_ends(revision)
        notifier.snapshot(STATUS_NAMES[p.status], p.generation, revision, fresh)
        rt.set_view(p.status, p.generation, p.override.kind in (0, 1), revision, force=fresh)
        rt.ensured = True
    elif kind == "policy_updated":
        rt.learn_policy(event.policy_updated.policy)
    elif kind == "status_changed":
        rt.apply_transition(event.status_changed.transition, revision)
    elif kind == "deleted":
        rt.life_ends(revision)
        notifier.deleted(revision)
        rt.ensured = False
        rt.forget_view(revision)
    elif kind == "override_changed":
        rt.set_override(event.override_changed.override.kind in (0, 1), revision)
    elif kind == "resync":
        rt.set_live(False)
        if started_from is not None and revision < started_from:
            log.info("the daemon's history started over (watch of %r)", rt.name)
            rt.new_history()
        state["snapshotting"], state["seen"], state["resynced"] = True, False, True
        return resume, epoch
    elif kind == "synced":
        epoch = event.synced.epoch
        if state["snapshotting"] and not state["seen"]:
            rt.ensured = False
            rt.forget_view(revision)
        state["snapshotting"], state["resynced"] = False, False
        rt.set_live(True, now + rt.watch_staleness)
    return revision, epoch
