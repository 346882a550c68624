// A socket.io-client 4 peer for `wschat send` tests: joins a room, prints every event it receives as
// one JSON line, and emits what the test writes on its stdin.
// Usage: node send-listener.js --url URL [--room R] [--transport websocket|polling]
//   stdout: {"type":"ready"} once the room is joined (join_room acked), then
//           {"type":"event","event":NAME,"args":[...]} per event (Buffers as {"$binary":BASE64}).
//   stdin:  one JSON object per line, {"event":NAME,"args":[...]}, emitted in order.
// Exits at stdin EOF, on SIGTERM, or on disconnect.
const readline = require("readline");
const { io } = require("socket.io-client");

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const url = opt("--url", "http://127.0.0.1:3001");
const room = opt("--room", null);
const transport = opt("--transport", "websocket");

const show = (v) => {
  if (Buffer.isBuffer(v)) return { $binary: v.toString("base64") };
  if (Array.isArray(v)) return v.map(show);
  if (v && typeof v === "object") {
    const o = {};
    for (const k of Object.keys(v)) o[k] = show(v[k]);
    return o;
  }
  return v;
};
const print = (o) => process.stdout.write(JSON.stringify(o) + "\n");

const socket = io(url, { transports: [transport], reconnection: false });
socket.onAny((event, ...rest) => print({ type: "event", event, args: show(rest) }));
socket.on("connect", async () => {
  if (room !== null) await socket.emitWithAck("join_room", room);
  print({ type: "ready" });
});
socket.on("connect_error", (e) => {
  print({ type: "error", message: e.message });
  process.exit(1);
});
socket.on("disconnect", (reason) => {
  print({ type: "disconnect", reason });
  process.exit(0);
});

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  const { event, args } = JSON.parse(line);
  socket.emit(event, ...args);
});
rl.on("close", () => {
  socket.close();
  setTimeout(() => process.exit(0), 100);
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
