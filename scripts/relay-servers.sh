# Sourced by the benchmark scripts: their common set-up (bench_setup), and start and stop one relay
# under test, pinned to core 0, and one chat run of the generator against it (chat_run, host_probe).
# start_server needs $out (log directory) and $wschat (the release binary), both set by
# bench_setup; it sets $server_pid and $port. chat_run also needs $clients and $rooms.

server_pid=""

stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}

# start_server wschat|node -> sets server_pid and port (a fresh ephemeral port each time). The relay
# runs with -q: errors only, not a log line per join (its listening line is on stdout either way),
# and with the words of $serve_args when a caller sets it.
start_server() {
  local log="$out/$1-serve.out"
  : >"$log"
  case "$1" in
    # shellcheck disable=SC2086 # serve_args is a list of words
    wschat) taskset -c 0 "$wschat" serve --listen 127.0.0.1:0 --threads 1 -q ${serve_args:-} >"$log" 2>"$out/$1-serve.err" & ;;
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

# chat_run NAME RATE FILE WARMUP DURATION RAMP: one chat run of `wschat bench --threads 1` (pinned to
# core 1, $clients clients in $rooms rooms, RATE messages per second per client) against a fresh
# NAME server, with the words of $GEN_ARGS when a caller sets it. Its JSON report goes to FILE, its
# stderr to $out/NAME-bench.log. A failed run is not fatal: the callers' jq defaults stand in for
# the figures it did not write.
chat_run() {
  start_server "$1"
  # shellcheck disable=SC2086 # GEN_ARGS is a list of words
  taskset -c 1 "$wschat" bench --url "http://127.0.0.1:$port" --clients "$clients" --rooms "$rooms" \
    --rate "$2/s" --warmup "$4" --duration "$5" --ramp "$6" --threads 1 ${GEN_ARGS:-} --json \
    >"$3" 2>>"$out/$1-bench.log" || true
  stop_server
}

# host_probe FILE: how fast the host is right now, in µs (report in FILE). The relay's CPU per
# delivery at a light load (20/s per client: one write per delivery, the core far from busy) is the
# cost of the work itself. At the knee it says nothing of the host (the core is always busy there,
# so it is one second over the deliveries per second); this does, and it moves when the host does.
# The write window is off for the probe: should the core reach saturation, the window would batch
# and the probe would measure the window rather than the host.
host_probe() {
  local serve_args="--write-window 0"
  chat_run wschat 20 "$1" 1s 3s 1s
  jq -r '.cpu.server_us_per_delivery // 0 | . * 100 | round / 100' "$1"
}
