#!/usr/bin/env python3
"""Asks Linux's EEVDF scheduler (6.6 and later; a slice of one's own from 6.12) for a
shorter slice for some threads of a running process: the experiment of BENCHMARKS.md's
fourteenth pass, for issue 17's Session figures (fast_paths.sh's SLICE=NS).

A thread's slice is the `sched_runtime` of sched_setattr(2) under SCHED_OTHER; the kernel
clamps it to 0.1 to 100 ms (the default here was 1.4 ms, `se.slice` in
/proc/PID/task/TID/sched). A thread with a shorter slice gets an earlier deadline when it
wakes, so it preempts a thread that has run longer, and is preempted sooner when it runs
long itself. No privilege is needed to set one's own threads' slices. circuitd does not
set it itself: the workspace forbids `unsafe`, and no maintained crate wraps the call for
SCHED_OTHER (see the pass).

Usage: sched_slice.py PID NANOSECONDS PREFIX... [--watch]
  Sets the slice of PID's threads whose names start with one of the PREFIXes (e.g.
  circuitd-conn-, echo-server-) and prints each one set. With --watch it keeps doing so for
  threads started later, until PID exits (the load generator starts its echo server anew
  for each slice of a run). Exits 1 when no thread matched (without --watch), 2 on bad
  arguments or when the call is refused.
"""

import ctypes
import os
import platform
import struct
import sys
import time

# sched_setattr's number on the architectures this project builds for.
SYSCALL = {"x86_64": 314, "aarch64": 274}
SCHED_OTHER = 0
SHORTEST, LONGEST = 100_000, 100_000_000


def fail(message, code=2):
    print(f"sched_slice.py: {message}", file=sys.stderr)
    sys.exit(code)


def set_slice(libc, number, tid, slice_ns):
    # struct sched_attr (VER1, 56 bytes): size, policy, flags, nice, priority, runtime,
    # deadline, period, util_min, util_max.
    attr = struct.pack("IIQiIQQQII", 56, SCHED_OTHER, 0, 0, 0, slice_ns, 0, 0, 0, 0)
    if libc.syscall(number, tid, ctypes.create_string_buffer(attr), 0) != 0:
        return os.strerror(ctypes.get_errno())
    return None


def matching(pid, prefixes):
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue  # the thread ended meanwhile
        if name.startswith(prefixes):
            yield int(tid), name


def main(argv):
    watch = "--watch" in argv
    args = [a for a in argv if a != "--watch"]
    if len(args) < 3:
        fail("usage: sched_slice.py PID NANOSECONDS PREFIX... [--watch]")
    try:
        pid, slice_ns = int(args[0]), int(args[1])
    except ValueError:
        fail(f"PID and NANOSECONDS must be integers, not {args[0]!r} and {args[1]!r}")
    if not SHORTEST <= slice_ns <= LONGEST:
        fail(f"NANOSECONDS must be between {SHORTEST} and {LONGEST} (the kernel's range), not {slice_ns}")
    if sys.platform != "linux":
        fail(f"Linux only (this is {sys.platform})")
    number = SYSCALL.get(platform.machine())
    if number is None:
        fail(f"no sched_setattr number known for {platform.machine()}")
    if not os.path.isdir(f"/proc/{pid}"):
        fail(f"no process {pid}")
    libc = ctypes.CDLL(None, use_errno=True)
    prefixes = tuple(args[2:])
    done = set()
    while True:
        for tid, name in matching(pid, prefixes):
            if tid in done:
                continue
            done.add(tid)
            refused = set_slice(libc, number, tid, slice_ns)
            if refused is None:
                print(f"{name} {tid} slice {slice_ns} ns", flush=True)
            elif os.path.isdir(f"/proc/{pid}/task/{tid}"):
                fail(f"sched_setattr refused for {name} ({tid}): {refused}")
        if not watch:
            break
        if not os.path.isdir(f"/proc/{pid}"):
            break
        time.sleep(0.01)
    if not done and not watch:
        fail(f"no thread of {pid} is named {' or '.join(prefixes)}*", code=1)


if __name__ == "__main__":
    main(sys.argv[1:])
