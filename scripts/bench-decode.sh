#!/usr/bin/env bash
# Benchmark `wschat decode --json` against tshark with the same fields on a synthetic capture of
# small Socket.IO chat frames (not committed: generated here). Release build; run on an idle machine.
#   scripts/bench-decode.sh [MEGABYTES]     default 40
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-40}
cap=${TMPDIR:-/tmp}/wschat-bench-$mb.pcap
[ -f "$cap" ] || python3 scripts/pcaptool.py bench "$cap" "$mb"
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/wschat
times=$(mktemp)
trap 'rm -f "$times"' EXIT
run() {
  /usr/bin/time -o "$times" -f "%e s wall, %U s user, %S s sys, %M KB peak" "$@" > /dev/null 2>&1
  cat "$times"
}
echo "capture: $cap ($(stat -c %s "$cap") bytes)"
echo -n "wschat decode --json:  "; run "$bin" decode "$cap" --ws-port 3001 --json
echo -n "wschat decode --stats: "; run "$bin" decode "$cap" --ws-port 3001 --stats
echo -n "tshark -T fields:      "; run tshark -r "$cap" -d tcp.port==3001,websocket -Y websocket -T fields \
  -e frame.number -e tcp.stream -e websocket.fin -e websocket.opcode -e websocket.mask \
  -e websocket.masking_key -e websocket.payload_length -e websocket.payload.text
