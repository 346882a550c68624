#!/usr/bin/env bash
# Benchmark `wschat decode --json` against tshark with the same fields on a synthetic capture of
# small Socket.IO chat frames (not committed: generated in $TMPDIR). Release build; run on an idle
# machine. Each tool runs RUNS times, alternating; the best (minimum) wall time of each is compared,
# with its CPU time and peak RSS (`/usr/bin/time`, package `time`). Then peak memory of
# `wschat decode --json` on a capture a quarter of the size shows that memory does not grow with
# the capture.
#   scripts/bench-decode.sh [MEGABYTES] [RUNS]     defaults 40 and 5
# WSCHAT_BIN=path/to/wschat measures that binary instead of building this tree (before/after).
# `--json` renders on a second thread for inputs of 1 MB and more; the "1 thread" line measures
# it with WSCHAT_DECODE_THREADS=1, for comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-40}
runs=${2:-5}
small=$(((mb + 3) / 4))
dir=${TMPDIR:-/tmp}
cap=$dir/wschat-bench-$mb.pcap
cap_small=$dir/wschat-bench-$small.pcap
[ -f "$cap" ] || python3 scripts/pcaptool.py bench "$cap" "$mb"
[ -f "$cap_small" ] || python3 scripts/pcaptool.py bench "$cap_small" "$small"
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install -y time)" >&2; exit 2; }
if [ -n "${WSCHAT_BIN:-}" ]; then
  bin=$WSCHAT_BIN
else
  cargo build --release --quiet
  bin=${CARGO_TARGET_DIR:-target}/release/wschat
fi
times=$(mktemp)
trap 'rm -f "$times"' EXIT

# One timed run: prints "wall user sys peak_kb" (wall to the millisecond: `time` rounds to 10 ms).
measure() {
  local t0 t1
  t0=$(date +%s%N)
  /usr/bin/time -o "$times" -f "%U %S %M" "$@" > /dev/null 2>&1
  t1=$(date +%s%N)
  echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }') $(tail -n 1 "$times")"
}
# Best of $runs runs (by wall time): prints "wall user sys peak_kb".
best() {
  local out=""
  for _ in $(seq "$runs"); do
    out+="$(measure "$@")"$'\n'
  done
  printf '%s' "$out" | sort -n -k1,1 | head -n 1
}
show() { # label "wall user sys kb"
  read -r w u s k <<< "$2"
  printf '%-24s %6.3f s wall  %6.2f s user  %5.2f s sys  %7d KB peak RSS\n' "$1" "$w" "$u" "$s" "$k"
}

wschat_json=("$bin" decode --ws-port 3001 --json)
tshark_fields=(tshark -d tcp.port==3001,websocket -Y websocket -T fields
  -e frame.number -e tcp.stream -e websocket.fin -e websocket.opcode -e websocket.mask
  -e websocket.masking_key -e websocket.payload_length -e websocket.payload.text -r)

echo "capture: $cap ($(stat -c %s "$cap") bytes), best of $runs runs; load: $(cut -d' ' -f1-3 /proc/loadavg)"
# Alternate the tools so that changing load hits both alike.
ws_all="" ts_all=""
for _ in $(seq "$runs"); do
  ws_all+="$(measure "${wschat_json[@]}" "$cap")"$'\n'
  ts_all+="$(measure "${tshark_fields[@]}" "$cap")"$'\n'
done
ws=$(printf '%s' "$ws_all" | sort -n -k1,1 | head -n 1)
ts=$(printf '%s' "$ts_all" | sort -n -k1,1 | head -n 1)
show "wschat decode --json:" "$ws"
show "tshark -T fields:" "$ts"
read -r ws_w ws_u ws_s _ <<< "$ws"
read -r ts_w ts_u ts_s _ <<< "$ts"
awk -v a="$ts_w" -v b="$ws_w" -v c="$ts_u" -v d="$ts_s" -v e="$ws_u" -v f="$ws_s" 'BEGIN {
  if (b > 0) printf "ratio (tshark / wschat): %.1fx wall", a / b; else printf "ratio: wschat under the timer resolution";
  if (e + f > 0) printf ", %.1fx CPU (user+sys)", (c + d) / (e + f);
  printf "\n" }'
show "wschat --json, 1 thread:" "$(best env WSCHAT_DECODE_THREADS=1 "${wschat_json[@]}" "$cap")"
show "wschat decode --stats:" "$(best "$bin" decode "$cap" --ws-port 3001 --stats)"
echo "memory does not grow with the capture (wschat decode --json, peak RSS):"
show "  $(stat -c %s "$cap_small") bytes:" "$(best "${wschat_json[@]}" "$cap_small")"
show "  $(stat -c %s "$cap") bytes:" "$ws"
