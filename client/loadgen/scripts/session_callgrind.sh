#!/bin/bash
# Instructions per Session decision, counted by callgrind (repeatable on a busy machine), on either side
# of issue 17's comparison (64 in flight, one connection, no warmup):
#  - daemon (the default): the daemon under valgrind, driven by `circuitctl bench --mode session`;
#  - echo: the load generator under valgrind (--separate-threads=yes) running the same bench with
#    --baseline against a daemon started for it; counts the echo server's threads (the ones running h2's
#    server side) and the echo's decisions.
# Two runs, of 2 s and of 8 s; the difference in instructions divided by the difference in decisions, so
# start-up and set-up cancel out (on a busy machine the longer run may decide few more: check the
# difference in decisions is in the tens of thousands). A decision is two messages each way.
# Needs valgrind and release builds (cargo build --release -p circuitd -p circuitctl); R=DIR for others.
# Usage: session_callgrind.sh [daemon|echo]
set -u
cd "$(dirname "$0")/../../.."
R=${R:-target/release}
SIDE=${1:-daemon}
case $SIDE in
  daemon | echo) ;;
  *) echo "usage: $0 [daemon|echo] (not '$SIDE')" >&2; exit 2 ;;
esac
T=$(mktemp -d)
exec 9>/tmp/bench.lock
flock 9
. client/loadgen/scripts/lib.sh
need_binaries $R
command -v valgrind > /dev/null || { echo "valgrind is missing (Debian: apt-get install valgrind)" >&2; exit 2; }
# $1: a command to run the daemon with (empty or valgrind's, which starts it slowly); sets PID and ADDR
start() { WRAP=$1 WAIT=60 start_daemon $R; }
total() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}'; }
bench() { # $1: duration, $2: a command to run circuitctl with, $3: more arguments; prints its JSON
  $2 $R/circuitctl --addr http://$ADDR --json bench --mode session --concurrency 64 --connections 1 \
    --duration $1 --warmup 0s $3 2>>$T/d.err
}
run() { # $1: duration; prints "instructions decisions"
  if [ "$SIDE" = echo ]; then
    local out i=0 f
    out=$(bench $1 "valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=$T/cg.$1.%p" --baseline)
    for f in $T/cg.$1.*; do
      callgrind_annotate $f 2>/dev/null | grep -q 'h2::server' && i=$((i + $(total $f)))
    done
    echo "$i $(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(round(j["baseline_decisions_per_sec"]*j["duration_s"]))' "$out")"
  else
    start "valgrind --tool=callgrind --callgrind-out-file=$T/cg.$1"
    local decisions
    decisions=$(bench $1 "" "" | python3 -c 'import json,sys; print(json.load(sys.stdin)["decisions"])')
    kill -INT $PID; wait $PID
    echo "$(total $T/cg.$1) $decisions"
  fi
}
[ "$SIDE" = echo ] && start ""
read i2 d2 < <(run 2s)
read i8 d8 < <(run 8s)
[ "$SIDE" = echo ] && { kill -INT $PID; wait $PID; }
echo "$SIDE: 2 s: $i2 instructions, $d2 decisions; 8 s: $i8 instructions, $d8 decisions"
echo "per decision: $(( (i8 - i2) / (d8 - d2) )) instructions in the $SIDE (two messages)"
echo "profiles: $T/cg.* (callgrind_annotate --inclusive=no)"
