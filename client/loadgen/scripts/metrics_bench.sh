#!/bin/bash
# Interleaved metrics off/on runs of unary Acquire+Report, then the scrape time of 1,000 protectors.
# Needs release builds: cargo build --release -p circuitd -p circuitctl; and curl.
set -u
cd "$(dirname "$0")/../../.."
R=target/release
T=$(mktemp -d)
. client/loadgen/scripts/lib.sh
need_binaries $R
start() { start_daemon $R "$@"; } # $@: extra flags; sets ADDR, HTTP, PID
for round in 1 2 3; do
  for kind in off on; do
    if [ $kind = on ]; then start --http-listen 127.0.0.1:0; else start; fi
    scraper=
    if [ $kind = on ]; then
      ( while kill -0 $PID 2>/dev/null; do curl -s -o /dev/null -H 'Accept: application/openmetrics-text' http://$HTTP/metrics; sleep 1; done ) &
      scraper=$!
    fi
    load=$(cut -d' ' -f1 /proc/loadavg)
    out=$($R/circuitctl --addr http://$ADDR --json bench --mode unary --concurrency 64 --connections 1 --duration 5s --warmup 1s 2>/dev/null)
    echo "RUN $round $kind load=$load $out"
    kill $PID; wait $PID 2>/dev/null
    [ -n "$scraper" ] && { kill $scraper 2>/dev/null; wait $scraper 2>/dev/null; }
  done
done
# Scrape time with 1,000 protectors (each with traffic).
start --http-listen 127.0.0.1:0
$R/circuitctl --addr http://$ADDR --json bench --mode unary --protectors 1000 --concurrency 64 --duration 2s --warmup 1s --failure-rate 0.01 >/dev/null 2>&1
curl -s http://$HTTP/metrics | grep -c '^circuitd_protector_state{' | sed 's/^/state series: /'
curl -s http://$HTTP/metrics | wc -c | sed 's/^/bytes: /'
for i in $(seq 50); do curl -s -o /dev/null -w '%{time_total}\n' -H 'Accept: application/openmetrics-text' http://$HTTP/metrics; done | sort -n > $T/scrapes.txt
echo "scrape seconds: min $(head -1 $T/scrapes.txt) median $(sed -n 25p $T/scrapes.txt) p90 $(sed -n 45p $T/scrapes.txt) max $(tail -1 $T/scrapes.txt)"
kill $PID; wait $PID 2>/dev/null
