#!/usr/bin/env bash
# Idle Socket.IO connections held by `wschat serve` against the socket.io npm server
# (tests/peers/chat-server.js): server memory per held connection, side by side in one run.
#
#   scripts/bench-idle.sh [TOTAL] [PROCS]        defaults 100000 and 6
#
# 1. One server process each, TOTAL/PROCS idle connections (WebSocket, Socket.IO CONNECT, one
#    join_room), from one `wschat bench --idle` process: wschat serve, then node.
# 2. TOTAL idle connections held by PROCS `wschat serve --reuse-port` processes on one address,
#    from PROCS `wschat bench --idle` processes, each with its own loopback source address. Several
#    processes on each side because the open-files limit of one process (`ulimit -Hn`, 20,000 on
#    the project's machine, not raisable there) caps what one process can hold.
# Memory is VmRSS from /proc: before connecting and while every connection is established
# (counted with `ss`); "per connection" = (held - before) / connections, and total / connections.
# Servers pinned to core 0, generators to core 1. Needs: a release build (built here), node +
# `npm ci` in tests/peers, taskset, ss, jq. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

total=${1:-100000}
procs=${2:-6}
per=$(((total + procs - 1) / procs))
port=${PORT:-39400}
hold=${HOLD:-40s}

cargo build --release --quiet
wschat=${CARGO_TARGET_DIR:-target}/release/wschat
ulimit -n "$(ulimit -Hn)"
out=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT

rss_kb() { # pids... -> summed VmRSS in KB
  local sum=0 p
  for p in "$@"; do sum=$((sum + $(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status"))); done
  echo "$sum"
}
established() { ss -Htn state established "( sport = :$port )" | wc -l; }
wait_listening() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench-idle.sh: nothing listening on port $port" >&2
  exit 2
}
# Waits until `want` connections are established (or the generators ended); prints the count.
wait_established() {
  local want=$1 n=0 last=-1 still=0
  shift
  for _ in $(seq 600); do
    n=$(established)
    [ "$n" -ge "$want" ] && break
    if [ "$n" -eq "$last" ]; then still=$((still + 1)); else still=0; fi
    [ "$still" -ge 20 ] && break # no progress for 10 s
    last=$n
    sleep 0.5
  done
  echo "$n"
}
# One measurement: servers (pids) already listening; runs `gens` generators of `each` clients.
measure() { # label gens each server_pids...
  local label=$1 gens=$2 each=$3 t0 t1 before held n gpids=() i
  shift 3
  wait_listening
  before=$(rss_kb "$@")
  t0=$(date +%s%N)
  for i in $(seq "$gens"); do
    taskset -c 1 "$wschat" bench --url "http://127.0.0.1:$port" --idle --clients "$each" \
      --rooms 50 --connect-concurrency 250 --ramp 0s --duration "$hold" --threads 1 \
      --source "127.0.0.$((i + 1))" --json >"$out/$label-$i.json" 2>"$out/$label-$i.err" &
    gpids+=($!)
  done
  n=$(wait_established $((gens * each)))
  t1=$(date +%s%N)
  held=$(rss_kb "$@")
  for p in "${gpids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${gpids[@]}"; do wait "$p" 2>/dev/null || true; done
  awk -v l="$label" -v s="$#" -v n="$n" -v b="$before" -v h="$held" -v t0="$t0" -v t1="$t1" 'BEGIN {
    printf "%-34s %3d  %7d  %9.1f MB  %9.1f MB  %7.2f KB  %7.2f KB  %6.1f s\n", l, s, n, b / 1024,
      h / 1024, (h - b) / (n ? n : 1), h / (n ? n : 1), (t1 - t0) / 1e9 }'
}
start_wschat() { # count -> pids in $servers
  local i
  servers=()
  for i in $(seq "$1"); do
    taskset -c 0 "$wschat" serve --listen "127.0.0.1:$port" --reuse-port --threads 1 -q \
      >/dev/null 2>>"$out/serve.err" &
    servers+=($!)
    pids+=($!)
  done
}
stop() {
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
  while [ "$(established)" -gt 0 ]; do sleep 0.2; done
}

echo "wschat serve vs socket.io npm: idle Socket.IO connections; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-34s %3s  %7s  %12s  %12s  %10s  %10s  %8s\n' run procs conns "RSS before" "RSS held" \
  "delta/conn" "RSS/conn" "connect"
start_wschat 1
measure "wschat serve, one process" 1 "$per" "${servers[@]}"
stop "${servers[@]}"

(
  cd tests/peers
  exec taskset -c 0 node chat-server.js --port "$port"
) >/dev/null 2>>"$out/node.err" &
node=$!
pids+=($node)
measure "socket.io npm, one process" 1 "$per" "$node"
stop "$node"

start_wschat "$procs"
measure "wschat serve --reuse-port, $procs procs" "$procs" "$per" "${servers[@]}"
stop "${servers[@]}"
for f in "$out"/*.err; do
  [ -s "$f" ] && { echo "--- $(basename "$f")"; tail -n 3 "$f"; }
done
exit 0
