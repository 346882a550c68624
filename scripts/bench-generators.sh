#!/usr/bin/env bash
# Side by side: the efficiency of `wschat bench` against a lean node Engine.IO/Socket.IO load
# generator (tests/peers/bench-node-gen.js: raw `ws` WebSockets, Engine.IO/Socket.IO by hand, the
# same messages, rooms and open-loop schedule). A fresh relay per run is pinned to core 0, the
# generator to core 1; runs alternate node, wschat, node, wschat, ... at each rate.
#
# Usage: scripts/bench-generators.sh [--clients 500] [--rooms 50] [--rates "30 100"]
#            [--duration 8s] [--warmup 2s] [--ramp 1s] [--rounds 3] [--server wschat|node|both]
#            [--out DIR] [--gen-cpu PERCENT] [--only node|wschat]
# --server: the relay the generators load: `wschat serve --threads 1` (default), the socket.io npm
# server (tests/peers/chat-server.js), or both in turn.
# CPU is measured the same way for both generators: user + system time of the whole process
# (/usr/bin/time), divided into every chat message it received (warmup included, as both count
# them). Each generator's own figure (getrusage of its threads / process.cpuUsage()) is printed too.
# --gen-cpu 30: cap each generator at 30% of a core (a cgroup CPU quota, 10 ms period; as root):
# offer more than that allows and each generator's capacity per core shows as received / CPU-s.
# Needs: a release build (built here), node + `npm ci` in tests/peers, taskset, jq, /usr/bin/time.
# Output: a table per relay and rate (medians over the rounds, and the best round), one JSON report
# and one time file per run in DIR (default $CARGO_TARGET_DIR/bench-generators).
set -euo pipefail
cd "$(dirname "$0")/.."

clients=500 rooms=50 rates="30 100" duration=8s warmup=2s ramp=1s rounds=3 servers=wschat out=""
gen_cpu="" gens="node wschat"
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) clients=$2; shift 2 ;;
    --rooms) rooms=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --ramp) ramp=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --server) case "$2" in both) servers="wschat node" ;; wschat|node) servers=$2 ;;
                *) echo "bench-generators.sh: --server must be wschat, node or both" >&2; exit 2 ;; esac
              shift 2 ;;
    --out) out=$2; shift 2 ;;
    --gen-cpu) gen_cpu=$2; shift 2 ;;
    --only) case "$2" in node|wschat) gens=$2 ;;
              *) echo "bench-generators.sh: --only must be node or wschat" >&2; exit 2 ;; esac
            shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "bench-generators.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
for tool in taskset jq node /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench-generators.sh: $tool is required" >&2; exit 2; }
done
[ -d tests/peers/node_modules/ws ] || (cd tests/peers && npm ci --no-audit --no-fund --loglevel=error)

# shellcheck source=scripts/relay-servers.sh
. scripts/relay-servers.sh
bench_setup bench-generators 20000

# run_gen SERVER GEN RATE ROUND -> one TSV line:
# delivered/s  p99_ms  lost  cpu_s(whole process)  received_total  received/cpu_s  self_cpu_s  self_received/cpu_s
# The generator runs inside a CPU-capped cgroup with --gen-cpu (v1 `cpu` controller or v2).
wrap=()
if [ -n "$gen_cpu" ]; then
  quota=$((gen_cpu * 100)) # microseconds per 10 ms period
  if [ -d /sys/fs/cgroup/cpu ] && [ -f /sys/fs/cgroup/cpu/cgroup.procs ]; then
    cg=/sys/fs/cgroup/cpu/wschat-bench-gen
    mkdir -p "$cg"
    echo 10000 >"$cg/cpu.cfs_period_us"
    echo "$quota" >"$cg/cpu.cfs_quota_us"
  elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    cg=/sys/fs/cgroup/wschat-bench-gen
    mkdir -p "$cg"
    echo "$quota 10000" >"$cg/cpu.max"
  else
    echo "bench-generators.sh: --gen-cpu needs a cgroup CPU controller" >&2
    exit 2
  fi
  wrap=(sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg")
  trap 'stop_server; rmdir "$cg" 2>/dev/null || true' EXIT
fi
run_gen() {
  local server=$1 gen=$2 rate=$3 round=$4 base json tfile
  base="$out/$server-$gen-rate$rate-$round"
  json="$base.json" tfile="$base.time"
  start_server "$server"
  case "$gen" in
    node) taskset -c 1 "${wrap[@]}" /usr/bin/time -f '%U %S' -o "$tfile" node tests/peers/bench-node-gen.js \
            --url "http://127.0.0.1:$port" --clients "$clients" --rooms "$rooms" --rate "$rate" \
            --duration "$duration" --warmup "$warmup" --ramp "$ramp" >"$json" 2>>"$base.err" || true ;;
    # --rx-clock read: the node generator's latency ends when it reads a message, so wschat
    # bench's does too here (its default ends at the kernel's receive stamp).
    wschat) taskset -c 1 "${wrap[@]}" /usr/bin/time -f '%U %S' -o "$tfile" "$wschat" bench \
            --url "http://127.0.0.1:$port" --clients "$clients" --rooms "$rooms" --rate "$rate/s" \
            --duration "$duration" --warmup "$warmup" --ramp "$ramp" --threads 1 --rx-clock read \
            --json >"$json" 2>>"$base.err" || true ;;
  esac
  stop_server
  if ! [ -s "$json" ] || ! jq -e '.cpu.received_per_cpu_s' "$json" >/dev/null 2>&1; then
    echo "bench-generators.sh: the $gen run at $rate/s against $server gave no report (see $base.err)" >&2
    printf '0\t0\t?\t0\t0\t0\t0\t0\n'
    return
  fi
  local cpu
  cpu=$(awk '/^[0-9.]+ [0-9.]+$/ {print $1 + $2}' "$tfile" | tail -1)
  # Both count every received receive_message carrying one of the run's ids from the receiver's
  # room, warmup included: node reports it; wschat reports the ratio, so received = ratio x CPU.
  case "$gen" in
    node) jq -r --arg cpu "${cpu:-0}" '[.messages.delivered_per_s, .latency_ms.p99, .messages.missing,
            ($cpu|tonumber), .cpu.received_total, (.cpu.received_total / ($cpu|tonumber)),
            .cpu.generator_s, .cpu.received_per_cpu_s] | @tsv' "$json" ;;
    wschat) jq -r --arg cpu "${cpu:-0}" '(.cpu.received_per_cpu_s * .cpu.generator_s | round) as $n |
            [.messages.delivered_per_s, .latency_ms.p99, .messages.lost, ($cpu|tonumber), $n,
            ($n / ($cpu|tonumber)), .cpu.generator_s, .cpu.received_per_cpu_s] | @tsv' "$json" ;;
  esac
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
results="$out/results.tsv"
: >"$results"
for server in $servers; do
  for rate in $rates; do
    for ((k = 1; k <= rounds; k++)); do
      for gen in $gens; do
        line=$(run_gen "$server" "$gen" "$rate" "$k")
        printf '%s\t%s\t%s\t%s\t%s\n' "$server" "$rate" "$gen" "$k" "$line" >>"$results"
        IFS=$'\t' read -r dps p99 lost cpu n per _ _ <<<"$line"
        printf '  relay %-6s %5s/s per client, round %s, %-6s: delivered %9.0f/s, p99 %8.2f ms, lost %s, CPU %6.2f s, %9.0f received per CPU-second\n' \
          "$server" "$rate" "$k" "$gen" "${dps:-0}" "${p99:-0}" "${lost:-?}" "${cpu:-0}" "${per:-0}" >&2
      done
    done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

echo
echo "$clients clients, $rooms rooms, 64-byte messages, $warmup warmup + $duration measured, $rounds rounds per generator;"
echo "relay pinned to core 0, generator to core 1; reports in $out"
awk -F'\t' '
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
  }
  {
    key = $1 SUBSEP $2 SUBSEP $3
    if (!(($1 SUBSEP $2) in seen)) { seen[$1 SUBSEP $2] = 1; order[++nk] = $1 SUBSEP $2 }
    c = ++cnt[key]
    dps[key, c] = $5; p99[key, c] = $6; cpu[key, c] = $8; per[key, c] = $10
    if (c == 1 || $7 + 0 > lost[key] + 0) lost[key] = $7
    if ($10 + 0 > best[key] + 0) best[key] = $10
  }
  END {
    printf "%-7s %10s %-7s %14s %10s %6s %8s %16s %16s\n", "relay", "rate", "gen", "delivered/s", "p99 ms", "lost", "CPU s", "recv/CPU-s med", "recv/CPU-s best"
    for (o = 1; o <= nk; o++) {
      split(order[o], sr, SUBSEP); split("", med); split("", bst)
      for (g = 1; g <= 2; g++) {
        gen = g == 1 ? "node" : "wschat"; key = order[o] SUBSEP gen; n = cnt[key]
        if (!n) continue
        for (i = 1; i <= n; i++) { A[i] = dps[key, i] } ; md = median(A, n)
        for (i = 1; i <= n; i++) { A[i] = p99[key, i] } ; mp = median(A, n)
        for (i = 1; i <= n; i++) { A[i] = cpu[key, i] } ; mc = median(A, n)
        for (i = 1; i <= n; i++) { A[i] = per[key, i] } ; me = median(A, n)
        med[gen] = me; bst[gen] = best[key]
        printf "%-7s %8s/s %-7s %14.0f %10.2f %6s %8.2f %16.0f %16.0f\n", sr[1], sr[2], gen, md, mp, lost[key], mc, me, best[key]
      }
      if (med["node"] > 0)
        printf "%-7s %8s/s ratio wschat/node: %.2fx (medians), %.2fx (best rounds)\n", sr[1], sr[2], med["wschat"] / med["node"], bst["wschat"] / bst["node"]
    }
  }' "$results"
