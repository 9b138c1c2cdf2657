#!/bin/bash
# Where a Session decision's CPU goes, against its echo twin (one `--baseline` run): the client's
# CPU per decision in each phase, the echo server's, and the daemon's. On a machine where client and
# server share the cores, the ratio to the echo twin is about the ratio of these totals, so this
# says which side a change must cut. The load generator is sampled with perf (its echo server's
# threads are named echo-server); the daemon's CPU is read from /proc when the run ends.
# Needs perf and release builds (cargo build --release -p circuitd -p circuitctl); R=DIR for others.
# Usage: session_cpu_split.sh [IN_FLIGHT (default 256)] [SECONDS (default 5)]
set -eu
cd "$(dirname "$0")/../../.."
R=${R:-target/release}
N=${1:-256}
S=${2:-5}
T=$(mktemp -d)
exec 9>/tmp/bench.lock
flock 9
trap 'rm -rf $T' EXIT
. client/loadgen/scripts/lib.sh
need_binaries $R
start_daemon $R
perf record -q -F 999 -o $T/perf.data $R/circuitctl --addr http://$ADDR --json bench --mode session \
  --concurrency $N --connections 1 --duration ${S}s --warmup 0s --baseline > $T/bench.json 2>/dev/null
DAEMON_TICKS=$(awk '{print $14 + $15}' /proc/$PID/stat)
kill $PID; wait $PID 2>/dev/null || true
perf script -i $T/perf.data -F comm,time 2>/dev/null > $T/samples.txt
python3 - "$T" "$S" "$DAEMON_TICKS" "$(getconf CLK_TCK)" <<'PY'
import json, re, sys
t, seconds, ticks, hz_ticks = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
bench = json.load(open(f"{t}/bench.json"))
session = bench["decisions"]
echo = bench["baseline_decisions_per_sec"] * seconds
samples = []
for line in open(f"{t}/samples.txt"):
    m = re.match(r"\s*(\S.*?)\s+(\d+\.\d+):", line)
    if m:
        samples.append((m.group(1), float(m.group(2))))
end = max(at for comm, at in samples if comm.startswith("echo-server"))
count = {"client, echo phase": 0, "echo server": 0, "client, session phase": 0}
for comm, at in samples:
    if comm.startswith("echo-server"):
        count["echo server"] += 1
    elif at <= end:
        count["client, echo phase"] += 1
    else:
        count["client, session phase"] += 1
us = lambda n, decisions: n / 999 / decisions * 1e6
ce, es = us(count["client, echo phase"], echo), us(count["echo server"], echo)
cs, ds = us(count["client, session phase"], session), ticks / hz_ticks / session * 1e6
print(f"in flight {bench.get('concurrency', '?')}: session {session / seconds:,.0f}/s, echo {echo / seconds:,.0f}/s, ratio {bench['ratio_to_baseline']:.3f}")
print(f"CPU per decision (µs): echo twin: client {ce:.2f} + server {es:.2f} = {ce + es:.2f}")
print(f"                       session:   client {cs:.2f} + daemon {ds:.2f} = {cs + ds:.2f}")
print(f"ratio of the totals {(ce + es) / (cs + ds):.3f}")
PY
