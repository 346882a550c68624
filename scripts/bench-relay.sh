#!/usr/bin/env bash
# Side by side: `wschat serve` vs the socket.io npm server (tests/peers/chat-server.js), with the
# original app's events. Each server is pinned to core 0 and the load generator (`wschat bench`) to
# core 1. For each server it searches the highest per-client rate whose p99 latency stays at or
# below the limit with no message lost, then measures idle memory per connection.
#
# Usage: scripts/bench-relay.sh [--clients 500] [--rooms 50] [--p99 15ms] [--duration 10s]
#            [--tries 3] [--start 2] [--idle-clients 5000] [--only wschat|node|node-tasks] [--out DIR]
#            [--probe-steps] [--peer-task-each]
# The search doubles the rate from --start until a rate fails, then bisects five times. Each rate
# is run --tries times, each against a fresh server, and passes when most of its runs pass (p99 at
# or below the limit and nothing lost): the median run decides, so neither a lucky run nor a
# neighbour's burst moves the result. The two servers are searched in lockstep and their runs
# alternate (wschat, node, wschat, node, ...), so both see the same machine.
# Needs: a release build (built here), node + `npm ci` in tests/peers, taskset, jq.
# Output: one JSON report per run in DIR (default target/bench-relay), every run's figures as it
# goes (stderr), a summary table and the ratio, and a host probe before and after the search (the
# relay's CPU per delivery at a light load: it moves when the host's speed does). With --probe-steps
# the probe also runs before every rate step and is printed with it, so a step can be read against
# the host's speed at that moment (scripts/bench-host-pairs.sh: it moves a run's p99).
# With --peer-task-each the npm server is searched a second time in the same lockstep, as the lane
# node-tasks: the generator then gives each connection its own task (--task-per-connection), which
# sends less on time and can give the npm server a higher knee. The ratio is then also given
# against the better of its two knees. --only node-tasks searches that lane alone.
# GEN_ARGS (environment): more words for the generator, e.g. GEN_ARGS=--task-per-connection.
set -euo pipefail
cd "$(dirname "$0")/.."

clients=500 rooms=50 p99=15ms duration=10s warmup=3s tries=3 start=2 idle_clients=5000 only="" out=""
probe_steps="" peer_task_each=""
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) clients=$2; shift 2 ;;
    --rooms) rooms=$2; shift 2 ;;
    --p99) p99=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --tries) tries=$2; shift 2 ;;
    --start) start=$2; shift 2 ;;
    --idle-clients) idle_clients=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --probe-steps) probe_steps=1; shift ;;
    --peer-task-each) peer_task_each=1; shift ;;
    -h|--help) sed -n '2,/^# GEN_ARGS/p' "$0"; exit 0 ;;
    *) echo "bench-relay.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
for tool in taskset jq node; do
  command -v "$tool" >/dev/null || { echo "bench-relay.sh: $tool is required" >&2; exit 2; }
done
[ -d tests/peers/node_modules/socket.io ] || (cd tests/peers && npm ci --no-audit --no-fund --loglevel=error)

# shellcheck source=scripts/relay-servers.sh
. scripts/relay-servers.sh
bench_setup bench-relay

# run_at LANE RATE RUN -> prints "p99 lost delivered/s server-us/msg generator-busy", writes the
# JSON report. Each run gets a fresh server, so an overloaded run cannot spoil the next one. The
# lane node-tasks is the npm server with a task per connection in the generator.
run_at() {
  local file="$out/$1-rate-$2-run-$3.json"
  if [ "$1" = node-tasks ]; then
    GEN_ARGS="${GEN_ARGS:-} --task-per-connection" chat_run node "$2" "$file" "$warmup" "$duration" 2s
  else
    chat_run "$1" "$2" "$file" "$warmup" "$duration" 2s
  fi
  jq -r '[(.latency_ms.p99 // 1e9), (.messages.lost // 1e9), (.messages.delivered_per_s // 0),
          (.cpu.server_us_per_delivery // 0), (.cpu.generator_busy // 0)] | @tsv' "$file"
}

limit_ms=$(jq -n --arg d "$p99" '$d | if endswith("ms") then (.[:-2]|tonumber) elif endswith("s") then (.[:-1]|tonumber*1000) else tonumber end')

passes() { awk -v p="$1" -v l="$limit_ms" -v x="$2" 'BEGIN{exit !(p<=l && x==0)}'; }

# The search state of each server: the highest passing rate (lo, and its median run's line), the
# lowest failing one (hi, empty until a rate fails), the rate under test, bisections left.
declare -A lo hi rate left best done_
servers=()
lanes=(wschat node)
{ [ -n "$peer_task_each" ] || [ "$only" = node-tasks ]; } && lanes+=(node-tasks)
for name in "${lanes[@]}"; do
  [ -n "$only" ] && [ "$only" != "$name" ] && continue
  servers+=("$name")
  lo[$name]=0 hi[$name]="" rate[$name]=$start left[$name]=5 best[$name]="" done_[$name]=""
done

# step: run every active server's current rate --tries times (alternating servers run by run),
# decide each by the majority of its runs, and move its search on. Prints the runs as they go.
step() {
  local k name line p99 lost n pass_n median
  declare -A lines=()
  if [ -n "$probe_steps" ]; then
    steps=$((steps + 1))
    echo "  host probe before step $steps: $(probe "step-$steps") us" >&2
  fi
  for ((k = 1; k <= tries; k++)); do
    for name in "$@"; do
      line=$(run_at "$name" "${rate[$name]}" "$k"); read -r p99 lost _ <<<"$line"
      printf '  %-10s rate %7s/s per client, run %d/%d: p99 %8.2f ms, lost %s, delivered %s/s\n' \
        "$name" "${rate[$name]}" "$k" "$tries" "$p99" "$lost" "$(cut -f3 <<<"$line")" >&2
      lines[$name]+="$line"$'\n'
    done
  done
  for name in "$@"; do
    # The deciding run: the (n/2 + 1)-th best by p99 (a run that lost messages sorts as failing),
    # so the rate passes exactly when that run does. With an odd n it is the median.
    n=0 pass_n=0
    while IFS= read -r line; do
      [ -n "$line" ] || continue
      read -r p99 lost _ <<<"$line"
      n=$((n + 1))
      passes "$p99" "$lost" && pass_n=$((pass_n + 1))
    done <<<"${lines[$name]}"
    median=$(printf '%s' "${lines[$name]}" | awk -F'\t' 'NF { if ($2 > 0) $1 = 1e9; print }' OFS='\t' |
      sort -t$'\t' -k1,1g | sed -n "$((n / 2 + 1))p")
    if ((2 * pass_n > n)); then
      lo[$name]=${rate[$name]} best[$name]=$median
      echo "  $name ${rate[$name]}/s: passes ($pass_n of $n runs)" >&2
    else
      hi[$name]=${rate[$name]}
      echo "  $name ${rate[$name]}/s: fails ($pass_n of $n runs pass)" >&2
    fi
    if [ -z "${hi[$name]}" ]; then
      # Doubling until a rate fails.
      rate[$name]=$(awk -v r="${rate[$name]}" 'BEGIN{print r*2}')
      if awk -v r="${rate[$name]}" 'BEGIN{exit !(r>4096)}'; then done_[$name]=1; fi
    elif ((left[$name] > 0)); then
      rate[$name]=$(awk -v a="${lo[$name]}" -v b="${hi[$name]}" 'BEGIN{printf "%.2f", (a+b)/2}')
      left[$name]=$((left[$name] - 1))
    else
      done_[$name]=1
    fi
  done
}

# probe TAG: the host probe (host_probe in relay-servers.sh), its report in $out/probe-TAG.json.
probe() { host_probe "$out/probe-$1.json"; }

probe_before="" steps=0
[ -z "$only" ] || [ "$only" = wschat ] && probe_before=$(probe before)
[ -n "$probe_before" ] && echo "== host probe: the relay's CPU per delivery at 20/s per client: $probe_before us" >&2
echo "== $(machine_line)" >&2
echo "== searching (servers on core 0, generator on core 1, $tries runs per rate)" >&2
while :; do
  active=()
  for name in "${servers[@]}"; do
    [ -z "${done_[$name]}" ] && active+=("$name")
  done
  [ ${#active[@]} -gt 0 ] || break
  step "${active[@]}"
done

idle_memory() {
  local name=$1 file="$out/$1-idle.json"
  start_server "$name"
  taskset -c 1 "$wschat" bench --url "http://127.0.0.1:$port" --idle --clients "$idle_clients" \
    --connect-concurrency 250 --ramp 0s --duration 3s --threads 1 --json >"$file" 2>>"$out/$name-bench.log" || true
  stop_server
  jq -r '[(.memory.per_connection_bytes // 0), (.connections.connect_phase_s // 0), (.connections.connected // 0)] | @tsv' "$file"
}

declare -A idle
for name in "${servers[@]}"; do
  # node-tasks is the npm server again: its idle memory is node's.
  [ "$name" = node-tasks ] || idle[$name]=$(idle_memory "$name")
done

probe_after=""
[ -n "$probe_before" ] && probe_after=$(probe after)

echo
echo "$clients clients, $rooms rooms, 64-byte messages, p99 <= $p99, no loss; reports in $out"
machine_line
[ -n "$probe_before" ] && echo "host probe (relay CPU per delivery at 20/s per client, light load): $probe_before us before the search, $probe_after us after"
printf '%-10s %12s %16s %10s %14s %12s %16s %14s\n' server "rate/client" "delivered msg/s" "p99 ms" "server us/msg" "gen busy" "idle B/conn" "connect s"
for name in "${lanes[@]}"; do
  [ -n "${best[$name]:-}${idle[$name]:-}" ] || continue
  IFS=$'\t' read -r p99 _lost dps us busy <<<"${best[$name]:-}"
  # No idle figures (--idle-clients 0, or the idle run failed): the rate figures still print.
  per_conn="-" phase="-"
  if [ -n "${idle[$name]:-}" ]; then
    IFS=$'\t' read -r per_conn phase connected <<<"${idle[$name]}"
    per_conn=$(printf '%.0f' "${per_conn:-0}") phase=$(printf '%.2f' "${phase:-0}")
  fi
  printf '%-10s %12s %16.0f %10.2f %14.2f %11.0f%% %16s %14s\n' "$name" "${lo[$name]}" "${dps:-0}" "${p99:-0}" "${us:-0}" \
    "$(awk -v b="${busy:-0}" 'BEGIN{print b*100}')" "$per_conn" "$phase"
done
# The ratio against each npm lane that found a knee, and with both lanes, against the better one.
if [ -n "${best[wschat]:-}" ]; then
  awk -v w="$(cut -f3 <<<"${best[wschat]}")" -v n="$(cut -f3 <<<"${best[node]:-}")" \
    -v t="$(cut -f3 <<<"${best[node-tasks]:-}")" 'BEGIN {
      if (n > 0) printf "wschat / npm delivered msgs/s at p99 <= limit: %.1fx\n", w / n
      if (t > 0) {
        printf "wschat / npm with a task per connection in the generator: %.1fx\n", w / t
        printf "wschat / npm at the better of its two knees: %.1fx\n", w / (n > t ? n : t)
      }
    }'
fi
