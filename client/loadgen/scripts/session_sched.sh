#!/bin/bash
# How the kernel shares the cores during one Session run with its echo twin (BENCHMARKS.md, fourteenth
# pass): `perf record -a` of the scheduler's switch events, then each server thread's context switches
# (involuntary: preempted while running; voluntary: went to sleep), per decision, and which threads
# preempted which. The daemon's connection threads are circuitd-conn-*, the echo server's echo-server-*,
# the load generator's tokio-rt-worker.
# Needs perf with tracepoints (run as root) and release builds (cargo build --release -p circuitd -p
# circuitctl); R=DIR for others. SLICE=NS first asks for that EEVDF slice for the daemon's connection
# threads alone (sched_slice.py).
# Usage: session_sched.sh [IN_FLIGHT (64)] [SECONDS (5)]
set -u
cd "$(dirname "$0")/../../.."
R=${R:-target/release}
N=${1:-64}
S=${2:-5}
command -v perf > /dev/null || { echo "perf is missing (Debian: apt-get install linux-perf)" >&2; exit 2; }
T=$(mktemp -d)
exec 9>/tmp/bench.lock
flock 9
. client/loadgen/scripts/lib.sh
need_binaries $R
start_daemon $R
[ -n "${SLICE:-}" ] && { python3 client/loadgen/scripts/sched_slice.py $PID $SLICE circuitd-conn- > /dev/null || { kill $PID; exit 2; }; }
perf record -q -a -e sched:sched_switch -o $T/sched.data 2> $T/perf.err &
PERF=$!
$R/circuitctl --addr http://$ADDR --json bench --mode session --concurrency $N --connections 1 \
  --duration ${S}s --warmup 0s --baseline > $T/bench.json 2> /dev/null
kill -INT $PERF
wait $PERF
kill $PID
wait $PID 2> /dev/null
perf script -i $T/sched.data -F trace 2> /dev/null > $T/sched.txt
python3 - "$T/bench.json" "$T/sched.txt" "$S" <<'PY'
import collections, json, re, sys
bench = json.load(open(sys.argv[1]))
daemon, echo = bench["decisions"], bench["baseline_decisions_per_sec"] * float(sys.argv[3])
print(f"ratio {bench['ratio_to_baseline']}  daemon {daemon} decisions  echo {round(echo)}")
switches, preempted = collections.Counter(), collections.Counter()
for line in open(sys.argv[2]):
    m = re.search(r"prev_comm=(\S+) .*prev_state=(\S+) ==> next_comm=(\S+)", line)
    if not m:
        continue
    prev, state, nxt = m.groups()
    kind = "voluntary" if state in ("S", "D", "I") else "involuntary"
    switches[(prev, kind)] += 1
    if kind == "involuntary":
        preempted[(prev, nxt)] += 1
for (thread, kind), n in sorted(switches.items()):
    if thread.startswith("circuitd-conn-"):
        print(f"{thread:18} {kind:11} {n:8} {n / daemon:.4f} a decision")
    elif thread.startswith("echo-server-"):
        print(f"{thread:18} {kind:11} {n:8} {n / echo:.4f} a decision")
print("preempted (thread, by): count")
for (thread, by), n in preempted.most_common():
    if n >= 100 and not thread.startswith("swapper"):
        print(f"  {thread} by {by}: {n}")
PY
rm -rf $T
