// A lean node Engine.IO / Socket.IO load generator: the yardstick `wschat bench` is compared with.
//
// Raw WebSockets from the `ws` package (no socket.io-client), Engine.IO v4 and Socket.IO v5 handled
// by hand: open `0{...}` -> CONNECT `40`; ping `2` -> pong `3`; `40{"sid":..}` -> join with an ack
// `420["join_room",ROOM]`; ack `430[...]`. It puts the same load on the relay as `wschat bench`:
// the original app's `42["send_message",{"room","author","message","time"}]`, the message text
// carrying the same 32-byte id as wschat (`~wsb~` + sender, sequence, intended send time in µs, in
// hex) padded with `.` to --size bytes; clients join rooms round-robin (client i in room i % rooms);
// open loop on one timer: client i's k-th message is due at start + i*interval/clients + k*interval
// and is sent when due whatever the server does; latency is measured from that intended time.
//
// Each `42["receive_message",{...}]` is counted after a lean extraction of the id (prefix check,
// Buffer.indexOf of the marker, 27 hex digits read in place), or with --parse json after a
// JSON.parse of the packet. Only ids of this run's clients from the receiver's own room count.
//
// Usage: node bench-node-gen.js --url http://127.0.0.1:3001 [--clients 500] [--rooms 50]
//          [--rate 10] [--duration 30s] [--warmup 5s] [--ramp 5s] [--grace 2s] [--size 64]
//          [--connect-concurrency 250] [--connect-timeout 10s] [--parse scan|json]
// Prints one JSON report on stdout. Exit 0, or 2 on bad flags or when no client could connect.
"use strict";
const WebSocket = require("ws");
const { performance } = require("perf_hooks");
const cpuAtStart = process.cpuUsage();

function fail(msg) {
  process.stderr.write(`bench-node-gen: error: ${msg}\n`);
  process.exit(2);
}

// ---- flags -------------------------------------------------------------------------------------
const argv = process.argv.slice(2);
const flags = new Map();
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (!a.startsWith("--")) fail(`unexpected argument \`${a}\``);
  const eq = a.indexOf("=");
  if (eq > 0) flags.set(a.slice(2, eq), a.slice(eq + 1));
  else if (i + 1 < argv.length) flags.set(a.slice(2), argv[++i]);
  else fail(`${a} needs a value`);
}
const KNOWN = [
  "url", "clients", "rooms", "rate", "duration", "warmup", "ramp", "grace", "size",
  "connect-concurrency", "connect-timeout", "parse",
];
for (const k of flags.keys()) if (!KNOWN.includes(k)) fail(`unknown flag --${k}`);

function int(name, dflt, min) {
  const v = flags.has(name) ? Number(flags.get(name)) : dflt;
  if (!Number.isInteger(v) || v < min) fail(`--${name} must be an integer >= ${min}, got \`${flags.get(name)}\``);
  return v;
}
// "30s", "500ms", "2m", "1.5" (seconds) -> milliseconds
function dur(name, dflt) {
  const s = flags.has(name) ? flags.get(name) : dflt;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(s);
  if (!m) fail(`--${name} \`${s}\` is not a duration (e.g. 10s, 500ms)`);
  return Number(m[1]) * ({ ms: 1, s: 1000, m: 60000 }[m[2] || "s"]);
}

const url = flags.get("url") || fail("--url is required (e.g. --url http://127.0.0.1:3001)");
const clients = int("clients", 500, 1);
const rooms = int("rooms", Math.min(50, Math.max(1, Math.floor(clients / 2))), 1);
if (rooms > clients) fail(`--rooms ${rooms} is more than --clients ${clients}`);
const rateText = flags.get("rate") || "10";
const rate = Number(rateText.replace(/\/s$/, ""));
if (!(rate > 0) || rate > 1e6) fail(`--rate \`${rateText}\` must be a number of messages per second per client in (0, 1000000]`);
const durationMs = dur("duration", "30s");
if (!(durationMs > 0)) fail("--duration must be greater than zero");
const warmupMs = dur("warmup", "5s");
const rampMs = dur("ramp", "5s");
const graceMs = dur("grace", "2s");
const connectTimeoutMs = dur("connect-timeout", "10s");
const ID_LEN = 32;
const size = int("size", 64, ID_LEN);
const concurrency = int("connect-concurrency", 250, 1);
const parse = flags.get("parse") || "scan";
if (parse !== "scan" && parse !== "json") fail(`--parse must be scan or json, got \`${parse}\``);

let wsUrl;
try {
  const u = new URL(url);
  if (!["http:", "https:", "ws:", "wss:"].includes(u.protocol)) throw new Error("scheme");
  const scheme = u.protocol === "https:" || u.protocol === "wss:" ? "wss:" : "ws:";
  wsUrl = `${scheme}//${u.host}/socket.io/?EIO=4&transport=websocket`;
} catch {
  fail(`--url \`${url}\` is not an http(s):// or ws(s):// URL`);
}

// ---- clock, ids, histogram ---------------------------------------------------------------------
const epoch = performance.now();
const nowUs = () => (performance.now() - epoch) * 1000;

const MARKER = Buffer.from("~wsb~");
const RECV_PREFIX = Buffer.from('["receive_message",');
const hex = (v, n) => v.toString(16).padStart(n, "0");
// HEX[b] = value of the hex digit b, or 255.
const HEX = new Uint8Array(256).fill(255);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) HEX[97 + i] = HEX[65 + i] = 10 + i;
function readHex(buf, at, n) {
  let v = 0;
  for (let j = at; j < at + n; j++) {
    const d = HEX[buf[j]];
    if (d === 255) return -1;
    v = v * 16 + d;
  }
  return v;
}

// Log-linear latency histogram in µs: exact below 1024 µs, then 512 buckets per power of two
// (0.2% resolution), up to 2^31 µs.
const hist = new Float64Array(1024 + 22 * 512);
function bucketOf(v) {
  if (v < 1024) return v < 0 ? 0 : Math.floor(v);
  if (v >= 2147483647) v = 2147483647;
  const e = 31 - Math.clz32(v);
  return 1024 + (e - 10) * 512 + ((v >>> (e - 9)) & 511);
}
function valueOf(b) {
  if (b < 1024) return b;
  const e = Math.floor((b - 1024) / 512) + 10;
  return (512 + ((b - 1024) % 512)) * 2 ** (e - 9);
}
let latMax = 0;
const ms = (us) => Math.round(us) / 1000;
function percentiles() {
  let count = 0;
  for (let i = 0; i < hist.length; i++) count += hist[i];
  const at = (q) => {
    const want = Math.max(1, Math.ceil(q * count));
    let seen = 0;
    for (let i = 0; i < hist.length; i++) {
      seen += hist[i];
      if (seen >= want) return ms(Math.min(valueOf(i), latMax));
    }
    return ms(latMax);
  };
  if (count === 0) return { count: 0, p50: null, p90: null, p99: null, p999: null, max: null };
  return { count, p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: ms(latMax) };
}

// ---- the run -----------------------------------------------------------------------------------
const runId = Math.floor(Math.random() * 0xffffff).toString(16).padStart(6, "0");
const d = new Date();
const clock = `${d.getHours()}:${String(d.getMinutes()).padStart(2, "0")}`;
const intervalUs = 1e6 / rate;

const stats = {
  sent: 0, warmupSent: 0, notOpen: 0, expected: 0,
  received: 0, receivedWarmup: 0, foreign: 0, misrouted: 0, selfEcho: 0, otherEvents: 0,
  sendLagMaxUs: 0,
};
const errors = {};
const countError = (why) => { errors[why] = (errors[why] || 0) + 1; };
let measureStartUs = Infinity, endUs = Infinity;

const roomName = (r) => `wsb-node-${runId}-${r}`;
const pad = ".".repeat(size - ID_LEN);
const cl = [];
for (let i = 0; i < clients; i++) {
  const room = i % rooms;
  cl.push({
    i, room, ws: null, state: "idle", // idle -> connecting -> connected -> joined | failed | closed
    // The send_message packet around the id: prefix + id + suffix.
    prefix: `42["send_message",{"room":${JSON.stringify(roomName(room))},"author":"bench-${i}","message":"`,
    suffix: `${pad}","time":"${clock}"}]`,
    senderHex: hex(i, 8),
  });
}
const joinedPerRoom = new Array(rooms).fill(0);

function onEvent(c, buf) {
  let sender, seq, tUs;
  if (parse === "scan") {
    if (buf.length < 2 + RECV_PREFIX.length || buf.compare(RECV_PREFIX, 0, RECV_PREFIX.length, 2, 2 + RECV_PREFIX.length) !== 0) {
      stats.otherEvents++;
      return;
    }
    const at = buf.indexOf(MARKER, 2 + RECV_PREFIX.length);
    if (at < 0 || at + ID_LEN > buf.length) { stats.foreign++; return; }
    sender = readHex(buf, at + 5, 8);
    seq = readHex(buf, at + 13, 8);
    tUs = readHex(buf, at + 21, 11);
    if (sender < 0 || seq < 0 || tUs < 0) { stats.foreign++; return; }
  } else {
    let v;
    try { v = JSON.parse(buf.toString("utf8", 2)); } catch { stats.otherEvents++; return; }
    if (!Array.isArray(v) || v[0] !== "receive_message") { stats.otherEvents++; return; }
    const m = v[1] && v[1].message;
    if (typeof m !== "string" || !m.startsWith("~wsb~") || m.length < ID_LEN) { stats.foreign++; return; }
    sender = parseInt(m.slice(5, 13), 16);
    seq = parseInt(m.slice(13, 21), 16);
    tUs = parseInt(m.slice(21, 32), 16);
    if (!(sender >= 0 && seq >= 0 && tUs >= 0)) { stats.foreign++; return; }
  }
  if (sender >= clients) { stats.foreign++; return; }
  if (sender === c.i) { stats.selfEcho++; return; }
  if (sender % rooms !== c.room) { stats.misrouted++; return; }
  if (tUs < measureStartUs || tUs >= endUs) { stats.receivedWarmup++; return; }
  stats.received++;
  const lat = nowUs() - tUs;
  if (lat > latMax) latMax = lat;
  hist[bucketOf(lat)]++;
}

function onMessage(c, buf) {
  const b0 = buf[0];
  if (b0 === 0x34) { // Engine.IO message: a Socket.IO packet
    const b1 = buf[1];
    if (b1 === 0x32) return onEvent(c, buf); // 42: EVENT
    if (b1 === 0x30 && c.state === "connecting") { // 40{"sid":..}: CONNECT accepted
      c.state = "connected";
      clearTimeout(c.timer);
      connectDone(c, null);
      c.ws.send(`420["join_room",${JSON.stringify(roomName(c.room))}]`);
    } else if (b1 === 0x33 && buf[2] === 0x30 && c.state === "connected") { // 430[..]: join ack
      c.state = "joined";
      joinedPerRoom[c.room]++;
      joinsPending--;
      maybeStart();
    } else if (b1 === 0x34) { // 44: CONNECT_ERROR
      clearTimeout(c.timer);
      c.ws.terminate();
      connectDone(c, "namespace refused");
    } else if (b1 === 0x31) { // 41: DISCONNECT
      countError("server disconnected the namespace");
    } else if (b1 !== 0x33) {
      stats.otherEvents++;
    }
    return;
  }
  if (b0 === 0x32) { c.ws.send("3"); return; } // Engine.IO ping -> pong
  if (b0 === 0x30) { c.ws.send("40"); return; } // Engine.IO open -> Socket.IO CONNECT to "/"
  if (b0 === 0x31) countError("server closed the Engine.IO session");
}

// Connect phase: client i starts at ramp * i / clients, at most `concurrency` in flight.
let inFlight = 0, nextToConnect = 0, connectsDone = 0, connected = 0, failed = 0;
let joinsPending = 0, connectFirstUs = Infinity, connectLastUs = 0;
const connectMs = [];
function pumpConnects() {
  while (nextToConnect < clients && inFlight < concurrency) {
    const c = cl[nextToConnect];
    const dueMs = (rampMs * c.i) / clients;
    const now = nowUs() / 1000;
    if (dueMs > now) { setTimeout(pumpConnects, dueMs - now); return; }
    nextToConnect++;
    inFlight++;
    connect(c);
  }
}
function connect(c) {
  c.state = "connecting";
  c.t0 = nowUs();
  connectFirstUs = Math.min(connectFirstUs, c.t0);
  const ws = new WebSocket(wsUrl, { perMessageDeflate: false });
  c.ws = ws;
  c.timer = setTimeout(() => { ws.terminate(); connectDone(c, "connect timed out"); }, connectTimeoutMs);
  ws.on("message", (data) => onMessage(c, data));
  ws.on("error", (e) => {
    if (c.state === "failed" || c.state === "closed" || c.state === "closing") return;
    if (c.state === "connecting") { clearTimeout(c.timer); connectDone(c, `connect: ${e.code || e.message}`); }
    else countError(e.code || e.message);
  });
  ws.on("close", () => {
    if (c.state === "connecting") { clearTimeout(c.timer); connectDone(c, "closed while connecting"); return; }
    if (c.state !== "closing" && c.state !== "failed") countError("connection lost during the run");
    if (c.state === "connected") { joinsPending--; maybeStart(); }
    c.state = "closed";
    if (closing && --openAtStop === 0) finish();
  });
}
function connectDone(c, err) {
  if (c.state === "failed") return;
  inFlight--;
  connectsDone++;
  if (err) {
    c.state = "failed";
    failed++;
    countError(err);
  } else {
    connected++;
    joinsPending++;
    const t = nowUs();
    connectMs.push((t - c.t0) / 1000);
    connectLastUs = Math.max(connectLastUs, t);
  }
  if (connectsDone === clients) {
    if (connected === 0) fail(`no client could connect to ${wsUrl} (${Object.keys(errors).join(", ")})`);
    joinWaitTimer = setTimeout(() => start(), graceMs); // a join never acked counts after the grace
    maybeStart();
  } else {
    pumpConnects();
  }
}

// Sending: one timer for all clients, each message sent when due (open loop).
let joinWaitTimer = null, started = false, startUs = 0, nextN = 0;
const phaseUs = cl.map((c) => (c.i * intervalUs) / clients);
function maybeStart() {
  if (!started && connectsDone === clients && joinsPending === 0) {
    clearTimeout(joinWaitTimer);
    setTimeout(start, 200); // let the last joins settle, as wschat bench does
  }
}
function start() {
  if (started) return;
  started = true;
  clearTimeout(joinWaitTimer);
  startUs = Math.ceil(nowUs()) + 50000;
  measureStartUs = startUs + Math.round(warmupMs * 1000);
  endUs = measureStartUs + Math.round(durationMs * 1000);
  pumpSends();
}
function pumpSends() {
  const now = nowUs();
  for (;;) {
    const i = nextN % clients;
    const k = (nextN - i) / clients;
    const t = Math.round(startUs + phaseUs[i] + k * intervalUs);
    if (t >= endUs) { setTimeout(stop, graceMs); return; }
    if (t > now) { setTimeout(pumpSends, (t - now) / 1000); return; }
    nextN++;
    const c = cl[i];
    if (c.state !== "joined" && c.state !== "connected") { stats.notOpen++; continue; }
    if (now - t > stats.sendLagMaxUs) stats.sendLagMaxUs = now - t;
    c.ws.send(c.prefix + "~wsb~" + c.senderHex + hex(k, 8) + hex(t, 11) + c.suffix);
    if (t >= measureStartUs) {
      stats.sent++;
      // Every other member of the room that joined is expected to receive it.
      stats.expected += joinedPerRoom[c.room] - (c.state === "joined" ? 1 : 0);
    } else {
      stats.warmupSent++;
    }
  }
}

// Stop: leave cleanly (Socket.IO DISCONNECT, close frame), bounded, then report.
let closing = false, openAtStop = 0, stopUs = 0;
function stop() {
  stopUs = nowUs();
  closing = true;
  for (const c of cl) {
    if (c.state === "joined" || c.state === "connected") {
      openAtStop++;
      c.state = "closing";
      c.ws.send("41");
      c.ws.close(1000);
    }
  }
  if (openAtStop === 0) finish();
  else setTimeout(finish, 2000);
}

let finished = false;
function finish() {
  if (finished) return;
  finished = true;
  const cpu = process.cpuUsage(cpuAtStart);
  const cpuS = (cpu.user + cpu.system) / 1e6;
  const wallS = nowUs() / 1e6;
  const measuredS = durationMs / 1000;
  const total = stats.received + stats.receivedWarmup;
  connectMs.sort((a, b) => a - b);
  const report = {
    generator: "tests/peers/bench-node-gen.js",
    node: process.version,
    ws: require("ws/package.json").version,
    url,
    settings: {
      clients, rooms, rate_per_client: rate, offered_per_s: rate * clients, size,
      duration_s: durationMs / 1000, warmup_s: warmupMs / 1000, ramp_s: rampMs / 1000,
      grace_s: graceMs / 1000, parse,
    },
    connections: {
      attempted: clients, connected, failed,
      connect_phase_s: connectLastUs > connectFirstUs ? (connectLastUs - connectFirstUs) / 1e6 : 0,
      connect_p99_ms: connectMs.length ? ms(1000 * connectMs[Math.ceil(0.99 * connectMs.length) - 1]) : null,
      joined: joinedPerRoom.reduce((a, b) => a + b, 0),
      open_at_end: openAtStop,
    },
    messages: {
      sent: stats.sent,
      warmup_sent: stats.warmupSent,
      not_sent_closed: stats.notOpen,
      expected: stats.expected,
      // Measured deliveries (not deduplicated: a duplicate would hide a loss).
      received: stats.received,
      missing: Math.max(0, stats.expected - stats.received),
      received_warmup: stats.receivedWarmup,
      foreign: stats.foreign,
      misrouted: stats.misrouted,
      self_echo: stats.selfEcho,
      other_events: stats.otherEvents,
      sent_per_s: stats.sent / measuredS,
      delivered_per_s: stats.received / measuredS,
    },
    latency_ms: percentiles(),
    send_lag_max_ms: ms(stats.sendLagMaxUs),
    errors,
    cpu: {
      // The whole process (main thread, GC and libuv threads) from the script's start.
      generator_s: cpuS,
      generator_user_s: cpu.user / 1e6,
      generator_system_s: cpu.system / 1e6,
      wall_s: wallS,
      generator_busy: cpuS / wallS,
      received_total: total,
      received_per_cpu_s: cpuS > 0 && total > 0 ? total / cpuS : null,
    },
    max_rss_bytes: process.resourceUsage().maxRSS * 1024,
  };
  process.stdout.write(JSON.stringify(report) + "\n", () => process.exit(0));
}

for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => { if (started) { endUs = Math.min(endUs, nowUs()); } else process.exit(130); });
pumpConnects();
