# Sourced by the benchmark scripts beside it: finding the binaries and starting one daemon.
# Expects T (a scratch directory) to be set; every failure names what is wrong and exits.

# need_binaries DIR [BINARY...]: DIR holds each BINARY executable (by default circuitd and circuitctl), or
# the script stops (exit 2).
need_binaries() {
  local dir=$1 b
  shift
  [ $# -gt 0 ] || set -- circuitd circuitctl
  for b in "$@"; do
    [ -x "$dir/$b" ] || {
      echo "no executable $dir/$b: build it (cargo build --release -p circuitd -p circuitctl) or point the script at a directory that holds it" >&2
      exit 2
    }
  done
}

# start_daemon DIR [FLAGS...]: starts DIR/circuitd in memory on a free loopback port, with FLAGS, and
# waits until it says where it listens; sets PID, ADDR, and HTTP when it also serves HTTP. WRAP=CMD runs
# it under CMD (valgrind, say), WAIT=S waits that many seconds (default 10). A daemon that exits or
# does not say where it listens in time stops the script (exit 1), its error output shown.
start_daemon() {
  local dir=$1 i
  shift
  rm -f "$T/d.out"
  ${WRAP:-} "$dir/circuitd" --listen 127.0.0.1:0 --in-memory "$@" > "$T/d.out" 2> "$T/d.err" &
  PID=$! ADDR= HTTP=
  for i in $(seq $((${WAIT:-10} * 20))); do
    ADDR=$(awk '/^listening on/{print $3}' "$T/d.out" 2> /dev/null)
    [ -n "$ADDR" ] && break
    kill -0 $PID 2> /dev/null || break
    sleep 0.05
  done
  if [ -z "$ADDR" ]; then
    echo "circuitd ($dir/circuitd $*) did not start listening; its error output:" >&2
    tail -20 "$T/d.err" >&2
    kill $PID 2> /dev/null
    exit 1
  fi
  HTTP=$(awk '/^http listening on/{print $4}' "$T/d.out")
}
