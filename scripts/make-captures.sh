#!/usr/bin/env bash
# Regenerate the sample captures in captures/ (run once, as root, on a machine with dumpcap and node;
# the results are committed). Each scenario of tests/peers/scenarios.js runs on loopback port 3001
# while dumpcap records it; derived captures are rewritten with scripts/pcaptool.py.
#   scripts/make-captures.sh            all captures
#   scripts/make-captures.sh chat       one scenario
set -euo pipefail
cd "$(dirname "$0")/.."
out=captures
port=3001
(cd tests/peers && [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error)

# record IFACE LINKTYPE FORMAT FILE SCENARIO [HOST]: capture one scenario.
record() {
  local iface=$1 linktype=$2 format=$3 file=$4 scenario=$5 host=${6:-127.0.0.1}
  local fmt=()
  [ "$format" = pcap ] && fmt=(-P)
  dumpcap -q -i "$iface" -y "$linktype" -f "tcp port $port" -s 262144 "${fmt[@]}" -w "$out/$file" 2>/dev/null &
  local pid=$!
  sleep 1.5
  if ! node tests/peers/scenarios.js "$scenario" --port "$port" --host "$host"; then
    kill -INT "$pid"
    wait "$pid" || true
    echo "scenario $scenario failed" >&2
    exit 1
  fi
  sleep 0.5
  kill -INT "$pid"
  wait "$pid" || true
  echo "$out/$file: $(stat -c %s "$out/$file") bytes"
}

only=${1:-}
run() { [ -z "$only" ] || [ "$only" = "$1" ]; }

if run chat; then
  record lo EN10MB pcapng chat.pcapng chat
  record lo EN10MB pcap chat-eth.pcap chat
  python3 scripts/pcaptool.py midstream "$out/chat-eth.pcap" "$out/chat-midstream.pcap" $port
  python3 scripts/pcaptool.py reorder "$out/chat-eth.pcap" "$out/chat-reordered.pcap" $port
  python3 scripts/pcaptool.py null "$out/chat-eth.pcap" "$out/chat-null.pcap"
  python3 scripts/pcaptool.py raw "$out/chat-eth.pcap" "$out/chat-raw.pcap"
  rm "$out/chat-eth.pcap"
fi
run chat-ipv6 && record lo EN10MB pcapng chat-ipv6.pcapng chat ::1
run chat-sll && record any LINUX_SLL pcap chat-sll.pcap chat
run chat-sll2 && record any LINUX_SLL2 pcapng chat-sll2.pcapng chat
run socketio-extras && record lo EN10MB pcapng socketio-extras.pcapng socketio-extras
if run lengths; then
  record lo EN10MB pcap lengths.pcap lengths
  python3 scripts/pcaptool.py cut "$out/lengths.pcap" "$out/lengths-cut.pcap" 30000
fi
if run fragments; then
  record lo EN10MB pcap fragments.pcap fragments
  python3 scripts/pcaptool.py ipfrag "$out/fragments.pcap" "$out/ip-fragments.pcap" 64
fi
run deflate && record lo EN10MB pcapng deflate.pcapng deflate
run deflate-no-context && record lo EN10MB pcapng deflate-no-context.pcapng deflate-no-context
run ping-close && record lo EN10MB pcap ping-close.pcap ping-close
run anomalies && python3 scripts/pcaptool.py anomalies "$out/anomalies.pcap"
run polling && record lo EN10MB pcapng polling-upgrade.pcapng polling
exit 0
