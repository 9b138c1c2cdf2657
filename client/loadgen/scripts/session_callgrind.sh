#!/bin/bash
# The daemon's instructions per Session decision, counted by callgrind (repeatable on a busy machine).
# Runs the daemon under valgrind twice, with a session bench of 2 s and of 8 s (64 in flight, one
# connection, no warmup), and divides the difference in the daemon's instructions by the difference
# in decisions, so start-up and set-up cancel out (on a busy machine the longer run may decide few more: check the
# difference in decisions is in the tens of thousands). A decision is two messages each way.
# Needs valgrind and release builds (cargo build --release -p circuitd -p circuitctl); R=DIR for others.
set -u
cd "$(dirname "$0")/../../.."
R=${R:-target/release}
T=$(mktemp -d)
exec 9>/tmp/bench.lock
flock 9
run() { # $1: duration; prints "instructions decisions"
  valgrind --tool=callgrind --callgrind-out-file=$T/cg.$1 $R/circuitd --listen 127.0.0.1:0 --in-memory \
    > $T/d.out 2>$T/vg.err &
  local pid=$! addr=
  for i in $(seq 600); do addr=$(awk '/^listening on/{print $3}' $T/d.out); [ -n "$addr" ] && break; sleep 0.1; done
  local decisions
  decisions=$($R/circuitctl --addr http://$addr --json bench --mode session --concurrency 64 --connections 1 \
    --duration $1 --warmup 0s | python3 -c 'import json,sys; print(json.load(sys.stdin)["decisions"])')
  kill -INT $pid; wait $pid
  echo "$(callgrind_annotate $T/cg.$1 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}') $decisions"
}
read i2 d2 < <(run 2s)
read i8 d8 < <(run 8s)
echo "2 s: $i2 instructions, $d2 decisions; 8 s: $i8 instructions, $d8 decisions"
echo "per decision: $(( (i8 - i2) / (d8 - d2) )) instructions (two messages)"
echo "profiles: $T/cg.2s $T/cg.8s (callgrind_annotate --inclusive=no)"
