#!/bin/bash
# Issue 17's figures, each RUNS times (3 by default; median in BENCHMARKS.md), the 1-minute load average with each run:
#  - Session vs its echo twin (--baseline, same invocation) at 64 and 256 in flight on one connection;
#  - cached Rust decisions, 64 tasks on one protector (p50/p99 of acquire + success);
#  - Python cached decisions/s (client/python/bench.py) and the trip-to-stop time (bench_trip.py).
# Needs release builds: cargo build --release -p circuitd -p circuitctl (and python3 with grpcio).
# R=DIR picks other binaries (e.g. a copy of an older build); SECONDS_PER_RUN (default 10) the window;
# PARTS (default "session cached python") which sets to run; RUNS (default 3, at most 9) how many
# runs of each shape. BEFORE=DIR interleaves the Session runs with the daemon in DIR (e.g. a copy of
# an older build), each logged as inflight=N/before, so a comparison sees the same machine state.
# ROUNDS=N runs each Session set with `bench --rounds N`: the echo and the daemon take turns in N slices
# of the window, each after its own 1 s warmup, so both see the same moments of the machine (unset: one
# echo run, then one daemon run, as every set before the tenth pass).
# PARTS may also name "library": the Rust client library's uncached path (`bench --mode library`, every
# decision asked of the daemon on the library's Session stream) against the Session echo, 64 in flight,
# not one of the issue's targets (BENCHMARKS.md, eleventh pass); ROUNDS applies to it too.
# CLIENT_THREADS=N runs the Session sets with `bench --client-threads N` (1: the steadier instrument of the
# fifth pass; unset: one worker per core, as every earlier set).
# SLICE=NS asks Linux's EEVDF scheduler for a slice of NS nanoseconds (0.1 to 100 ms) for the daemon's
# connection threads and the echo server's threads alike (sched_slice.py; BENCHMARKS.md, fourteenth pass):
# an experiment on how the two servers share a core with the client, not how circuitd runs by default.
# Coordinates with other benchmarks through /tmp/bench.lock, as the earlier sets did.
# Tables and medians of its output: python3 client/loadgen/scripts/fast_paths_summary.py LOG
set -u
cd "$(dirname "$0")/../../.."
R=${R:-target/release}
S=client/loadgen/scripts
D=${SECONDS_PER_RUN:-10}
T=$(mktemp -d)
exec 9>/tmp/bench.lock
flock 9
RUNS=${RUNS:-3}
. $S/lib.sh
need_binaries $R
[ -z "${BEFORE:-}" ] || need_binaries $BEFORE circuitd
PARTS=${PARTS:-session cached python}
part() { [[ " $PARTS " == *" $1 "* ]]; }
echo "date $(date -u +%FT%TZ)  host $(nproc) cores  binaries $R${SLICE:+  slice ${SLICE} ns}"
bench() { # $1: the daemon's directory, $2: the line's label; the rest: bench's arguments. One daemon per run.
  local dir=$1 label=$2
  shift 2
  start_daemon "$dir"
  [ -n "${SLICE:-}" ] && { python3 $S/sched_slice.py $PID $SLICE circuitd-conn- > /dev/null || { kill $PID; exit 2; }; }
  load=$(cut -d' ' -f1 /proc/loadavg)
  $R/circuitctl --addr http://$ADDR --json bench --duration ${D}s --warmup 1s "$@" > $T/bench.json 2>$T/bench.err &
  local client=$! watcher=
  if [ -n "${SLICE:-}" ]; then
    # The echo server's threads start anew for each slice of a run: followed until the client exits.
    python3 $S/sched_slice.py $client $SLICE echo-server- --watch > /dev/null &
    watcher=$!
  fi
  wait $client || { echo "$label: circuitctl bench failed: $(cat $T/bench.err)" >&2; kill $PID; exit 1; }
  # A slice refused for the echo server's threads stops the set, as one refused for the daemon's.
  [ -z "$watcher" ] || wait $watcher || { kill $PID; exit 2; }
  echo "$label load=$load $(cat $T/bench.json)"
  kill $PID; wait $PID 2>/dev/null
}
session() { # $1: in flight, $2: run, $3: the daemon's directory, $4: the label's suffix
  bench "$3" "SESSION inflight=$1$4 run=$2" --mode session --concurrency $1 --connections 1 --baseline \
    ${CLIENT_THREADS:+--client-threads $CLIENT_THREADS} ${ROUNDS:+--rounds $ROUNDS}
}
part session && for inflight in 64 256; do
  for run in $(seq $RUNS); do
    [ -n "${BEFORE:-}" ] && session $inflight $run "$BEFORE" /before
    session $inflight $run $R ""
  done
done
part library && for run in $(seq $RUNS); do
  bench $R "LIBRARY inflight=64 run=$run" --mode library --concurrency 64 --connections 1 --baseline \
    ${ROUNDS:+--rounds $ROUNDS}
done
part cached && for run in $(seq $RUNS); do
  bench $R "CACHED tasks=64 run=$run" --mode cached --concurrency 64
done
part python && for run in $(seq $RUNS); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  echo "PYTHON run=$run load=$load $(CIRCUITD_BIN=$R/circuitd python3 client/python/bench.py --start 2>&1 | tail -1)"
done
part python && load=$(cut -d' ' -f1 /proc/loadavg) &&
  echo "PYTHON_TRIP load=$load $(CIRCUITD_BIN=$R/circuitd python3 client/python/bench_trip.py --start --trips 200 2>&1 | tail -1)"
rm -rf $T
