#!/bin/bash
# Issue 18's costs: Acquire+Report with section 2a's time window, slow-call and streak rules on, against the
# count window, interleaved in one invocation (unary and Session); then SimulatePolicy over 100,000 outcomes.
# Needs release builds: cargo build --release -p circuitd -p circuitctl.
set -u
cd "$(dirname "$0")/../../.."
R=target/release
T=$(mktemp -d)
exec 9>/tmp/bench.lock
flock 9
. client/loadgen/scripts/lib.sh
need_binaries $R
start() { start_daemon $R "$@"; } # sets ADDR, PID
# Each call gives its own --duration (clap takes the flag once).
bench() { $R/circuitctl --addr http://$ADDR --json bench --concurrency 64 --connections 1 --warmup 1s "$@" 2>/dev/null; }
for round in 1 2 3; do
  for mode in unary session; do
    for kind in count rules; do
      start
      flags="--mode $mode --duration 5s --report-duration 1ms"
      [ $kind = rules ] && flags="$flags --rules"
      load=$(cut -d' ' -f1 /proc/loadavg)
      echo "RUN $round $mode $kind load=$load $(bench $flags)"
      kill $PID; wait $PID 2>/dev/null
    done
  done
done
# SimulatePolicy over 100,000 outcomes: a protector keeping 100,000, filled by a Session bench with 5% failures.
start
C="$R/circuitctl --addr http://$ADDR"
bench --mode session --duration 3s --failure-rate 0.05 --history-size 100000 > /dev/null ||
  { echo "the history fill failed" >&2; exit 1; }
$C get bench-0 | grep -i history
for i in 1 2 3 4 5; do
  s=$(date +%s.%N)
  $C --json simulate bench-0 --failure-limit 5/100 --cooldown 100ms --consecutive-failures 5 > $T/sim.json
  e=$(date +%s.%N)
  echo "simulate wall seconds (circuitctl process included): $(echo "$e - $s" | bc)"
done
python3 -c "import json,sys; d=json.load(open('$T/sim.json')); print('calls', d.get('calls'), 'candidate transitions', len(d.get('candidate',{}).get('transitions',[])), 'rejected', d.get('candidate',{}).get('rejected'))"
kill $PID; wait $PID 2>/dev/null
