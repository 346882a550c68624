#!/usr/bin/env bash
# Does the host's speed decide a run's p99? Alternates the host probe of scripts/bench-relay.sh (the
# relay's CPU per delivery at a light load, 20/s per client) with a run at a fixed rate, N times,
# then prints each pair and the correlation between the probe and the p99 (Pearson r).
#
# Usage: scripts/bench-host-pairs.sh [--rate 256] [--node-rate R] [--pairs 12] [--clients 500]
#            [--rooms 50] [--duration 6s] [--out DIR]
# --node-rate R also runs the socket.io npm server (tests/peers/chat-server.js) at R after each
# wschat run, so both servers' p99 can be set against the same probe.
# The relay is pinned to core 0 and the generator (`wschat bench --threads 1`) to core 1; every run
# gets a fresh server. Needs: a release build (built here), taskset, jq; node + `npm ci` in
# tests/peers for --node-rate. Output: one JSON report per run in DIR (default
# target/bench-host-pairs), the pairs on stdout as they come.
set -euo pipefail
cd "$(dirname "$0")/.."

rate=256 node_rate="" pairs=12 clients=500 rooms=50 duration=6s out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate=$2; shift 2 ;;
    --node-rate) node_rate=$2; shift 2 ;;
    --pairs) pairs=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --rooms) rooms=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "bench-host-pairs.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
for tool in taskset jq; do
  command -v "$tool" >/dev/null || { echo "bench-host-pairs.sh: $tool is required" >&2; exit 2; }
done
if [ -n "$node_rate" ]; then
  command -v node >/dev/null || { echo "bench-host-pairs.sh: node is required for --node-rate" >&2; exit 2; }
  [ -d tests/peers/node_modules/socket.io ] || (cd tests/peers && npm ci --no-audit --no-fund --loglevel=error)
fi

# shellcheck source=scripts/relay-servers.sh
. scripts/relay-servers.sh
bench_setup bench-host-pairs

header="pair  time      probe_us  wschat_p50  wschat_p99  lag_p50  lag_p99"
[ -n "$node_rate" ] && header+="  node_p99"
echo "# $(machine_line)"
echo "# wschat at $rate/s per client${node_rate:+, npm at $node_rate/s}; $clients clients, $rooms rooms; p50/p99 in ms"
echo "$header"
rows=""
for ((i = 1; i <= pairs; i++)); do
  probe_us=$(host_probe "$out/probe-$i.json")
  chat_run wschat "$rate" "$out/wschat-$i.json" 2s "$duration" 1s
  row="$probe_us"$'\t'$(jq -r '[(.latency_ms.p50 // 1e9), (.latency_ms.p99 // 1e9),
      (.send_lag_ms.p50 // 0), (.send_lag_ms.p99 // 0)] | @tsv' "$out/wschat-$i.json")
  if [ -n "$node_rate" ]; then
    chat_run node "$node_rate" "$out/node-$i.json" 2s "$duration" 1s
    row+=$'\t'$(jq -r '.latency_ms.p99 // 1e9' "$out/node-$i.json")
  fi
  rows+="$row"$'\n'
  printf '%-5s %s  %s\n' "$i" "$(date -u +%H:%M:%S)" "$(tr '\t' ' ' <<<"$row" | awk '{for (i = 1; i <= NF; i++) printf "%-11s", $i; print ""}')"
done

# Pearson r between the probe (column 1) and a p99 column.
corr() {
  printf '%s' "$rows" | awk -F'\t' -v c="$1" 'NF {
      n++; x += $1; y += $c; xx += $1 * $1; yy += $c * $c; xy += $1 * $c }
    END { d = (n * xx - x * x) * (n * yy - y * y)
      if (n > 2 && d > 0) printf "%.2f", (n * xy - x * y) / sqrt(d); else printf "n/a" }'
}
echo "r(probe, wschat p99) = $(corr 3)"
[ -n "$node_rate" ] && echo "r(probe, node p99) = $(corr 6)"
exit 0
