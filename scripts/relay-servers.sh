# Sourced by the benchmark scripts: their common set-up (bench_setup), and start and stop one relay
# under test, pinned to core 0. start_server needs $out (log directory) and $wschat (the release
# binary), both set by bench_setup; it sets $server_pid and $port.

server_pid=""

stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}

# start_server wschat|node -> sets server_pid and port (a fresh ephemeral port each time). The relay
# runs with -q: errors only, not a log line per join (its listening line is on stdout either way).
start_server() {
  local log="$out/$1-serve.out"
  : >"$log"
  case "$1" in
    wschat) taskset -c 0 "$wschat" serve --listen 127.0.0.1:0 --threads 1 -q >"$log" 2>"$out/$1-serve.err" & ;;
    node) taskset -c 0 node tests/peers/chat-server.js --port 0 >"$log" 2>"$out/$1-serve.err" & ;;
    *) echo "$(basename "$0"): unknown server $1" >&2; exit 2 ;;
  esac
  server_pid=$!
  port=""
  for _ in $(seq 100); do
    # wschat: "wschat relay listening on http://127.0.0.1:PORT/ ..."; node: "listening PORT"
    port=$(grep -m1 -oE 'http://127\.0\.0\.1:[0-9]+|^listening [0-9]+' "$log" | grep -oE '[0-9]+$' || true)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "$(basename "$0"): $1 server did not start (see $out/$1-serve.err)" >&2; exit 1; }
}

# One line naming the machine a search ran on (CPU model, cores, kernel, boot time): figures from
# different machines, or from one machine at different times, are not comparable.
machine_line() {
  local model
  model=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | sed 's/^model name[[:space:]]*: //')
  echo "machine: ${model:-unknown CPU}, $(nproc) cores, kernel $(uname -r), up since $(uptime -s 2>/dev/null || echo '?')"
}

# bench_setup NAME [NOFILE]: the common start of a benchmark script. $out (default target/NAME, or
# under $CARGO_TARGET_DIR) is created, the release binary is built into $wschat, the open-files
# limit is raised to NOFILE (default 65536) where allowed, and the server under test is stopped on
# exit.
bench_setup() {
  local target_dir=${CARGO_TARGET_DIR:-target}
  out=${out:-$target_dir/$1}
  mkdir -p "$out"
  cargo build --release --quiet
  wschat="$target_dir/release/wschat"
  ulimit -n "${2:-65536}" 2>/dev/null || true
  trap stop_server EXIT
}
