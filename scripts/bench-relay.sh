#!/usr/bin/env bash
# Side by side: `wschat serve` vs the socket.io npm server (tests/peers/chat-server.js), with the
# original app's events. Each server is pinned to core 0 and the load generator (`wschat bench`) to
# core 1. For each server it searches the highest per-client rate whose p99 latency stays at or
# below the limit with no message lost, then measures idle memory per connection.
#
# Usage: scripts/bench-relay.sh [--clients 500] [--rooms 50] [--p99 15ms] [--duration 10s]
#                               [--tries 2] [--idle-clients 5000] [--only wschat|node] [--out DIR]
# A rate passes when one of --tries runs (each against a fresh server) meets the limit: on a shared
# machine a neighbour's burst can spoil a single run.
# Needs: a release build (built here), node + `npm ci` in tests/peers, taskset, jq.
# Output: one JSON report per run in DIR (default target/bench-relay), and a summary table.
set -euo pipefail
cd "$(dirname "$0")/.."

clients=500 rooms=50 p99=15ms duration=10s warmup=3s tries=2 idle_clients=5000 only="" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) clients=$2; shift 2 ;;
    --rooms) rooms=$2; shift 2 ;;
    --p99) p99=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --tries) tries=$2; shift 2 ;;
    --idle-clients) idle_clients=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "bench-relay.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
for tool in taskset jq node; do
  command -v "$tool" >/dev/null || { echo "bench-relay.sh: $tool is required" >&2; exit 2; }
done
[ -d tests/peers/node_modules/socket.io ] || (cd tests/peers && npm ci --no-audit --no-fund --loglevel=error)

target_dir=${CARGO_TARGET_DIR:-target}
out=${out:-$target_dir/bench-relay}
mkdir -p "$out"
cargo build --release --quiet
wschat="$target_dir/release/wschat"
ulimit -n 65536 2>/dev/null || true

server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap stop_server EXIT

# start_server NAME -> sets server_pid and port
start_server() {
  local log="$out/$1-serve.out"
  : >"$log"
  case "$1" in
    wschat) taskset -c 0 "$wschat" serve --listen 127.0.0.1:0 --threads 1 >"$log" 2>"$out/$1-serve.err" & ;;
    node) taskset -c 0 node tests/peers/chat-server.js --port 0 >"$log" 2>"$out/$1-serve.err" & ;;
  esac
  server_pid=$!
  port=""
  for _ in $(seq 100); do
    # wschat: "wschat relay listening on http://127.0.0.1:PORT/ ..."; node: "listening PORT"
    port=$(grep -m1 -oE 'http://127\.0\.0\.1:[0-9]+|^listening [0-9]+' "$log" | grep -oE '[0-9]+$' || true)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "bench-relay.sh: $1 server did not start (see $out/$1-serve.err)" >&2; exit 1; }
}

# run_at NAME RATE -> prints "p99 lost delivered/s server-us/msg generator-busy", writes the JSON
# report. Each run gets a fresh server, so an overloaded run cannot spoil the next one.
run_at() {
  local name=$1 rate=$2 file="$out/$1-rate-$2.json"
  start_server "$name"
  taskset -c 1 "$wschat" bench --url "http://127.0.0.1:$port" --clients "$clients" --rooms "$rooms" \
    --rate "$rate/s" --warmup "$warmup" --duration "$duration" --ramp 2s --threads 1 --json \
    >"$file" 2>>"$out/$name-bench.log" || true
  stop_server
  jq -r '[(.latency_ms.p99 // 1e9), (.messages.lost // 1e9), (.messages.delivered_per_s // 0),
          (.cpu.server_us_per_delivery // 0), (.cpu.generator_busy // 0)] | @tsv' "$file"
}

limit_ms=$(jq -n --arg d "$p99" '$d | if endswith("ms") then (.[:-2]|tonumber) elif endswith("s") then (.[:-1]|tonumber*1000) else tonumber end')

passes() { awk -v p="$1" -v l="$limit_ms" -v x="$2" 'BEGIN{exit !(p<=l && x==0)}'; }

# try_rate NAME RATE -> the first passing run's line, else the last run's line
try_rate() {
  local name=$1 rate=$2 line p99 lost
  for ((k = 1; k <= tries; k++)); do
    line=$(run_at "$name" "$rate"); read -r p99 lost _ <<<"$line"
    printf '  %-6s rate %7s/s per client: p99 %8.2f ms, lost %s, delivered %s/s\n' "$name" "$rate" "$p99" "$lost" "$(cut -f3 <<<"$line")" >&2
    passes "$p99" "$lost" && break
  done
  echo "$line"
}

# search NAME -> highest rate (msgs/s per client, 2 decimals) with p99 <= limit and no loss
search() {
  local name=$1 lo=0 hi="" rate=2 best_line="" line p99 lost
  # Double until the limit is crossed, then bisect five times.
  while :; do
    line=$(try_rate "$name" "$rate"); read -r p99 lost _ <<<"$line"
    if passes "$p99" "$lost"; then
      lo=$rate; best_line=$line
      rate=$(awk -v r="$rate" 'BEGIN{print r*2}')
      awk -v r="$rate" 'BEGIN{exit !(r>4096)}' && break
    else
      hi=$rate; break
    fi
  done
  if [ -n "$hi" ]; then
    for _ in 1 2 3 4 5; do
      rate=$(awk -v a="$lo" -v b="$hi" 'BEGIN{printf "%.2f", (a+b)/2}')
      line=$(try_rate "$name" "$rate"); read -r p99 lost _ <<<"$line"
      if passes "$p99" "$lost"; then
        lo=$rate; best_line=$line
      else
        hi=$rate
      fi
    done
  fi
  echo "$lo	$best_line"
}

idle_memory() {
  local name=$1 file="$out/$1-idle.json"
  start_server "$name"
  taskset -c 1 "$wschat" bench --url "http://127.0.0.1:$port" --idle --clients "$idle_clients" \
    --connect-concurrency 250 --ramp 0s --duration 3s --threads 1 --json >"$file" 2>>"$out/$name-bench.log" || true
  stop_server
  jq -r '[(.memory.per_connection_bytes // 0), (.connections.connect_phase_s // 0), (.connections.connected // 0)] | @tsv' "$file"
}

declare -A result idle
for name in wschat node; do
  [ -n "$only" ] && [ "$only" != "$name" ] && continue
  echo "== $name (server on core 0, generator on core 1)" >&2
  result[$name]=$(search "$name")
  idle[$name]=$(idle_memory "$name")
done

echo
echo "$clients clients, $rooms rooms, 64-byte messages, p99 <= $p99, no loss; reports in $out"
printf '%-8s %12s %16s %10s %14s %12s %16s %14s\n' server "rate/client" "delivered msg/s" "p99 ms" "server us/msg" "gen busy" "idle B/conn" "connect s"
for name in wschat node; do
  [ -n "${result[$name]:-}" ] || continue
  IFS=$'\t' read -r rate p99 _lost dps us busy <<<"${result[$name]}"
  IFS=$'\t' read -r per_conn phase connected <<<"${idle[$name]}"
  printf '%-8s %12s %16.0f %10.2f %14.2f %11.0f%% %16.0f %14.2f\n' "$name" "$rate" "${dps:-0}" "${p99:-0}" "${us:-0}" \
    "$(awk -v b="${busy:-0}" 'BEGIN{print b*100}')" "${per_conn:-0}" "${phase:-0}"
done
