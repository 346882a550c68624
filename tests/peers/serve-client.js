// A scriptable, unmodified socket.io-client v4 peer for tests/serve.rs.
// Usage: node serve-client.js --url http://127.0.0.1:PORT [--transport websocket|polling|default]
//                             [--namespace /] [--auth JSON] [--no-reconnect]
// Commands arrive on stdin, one JSON object per line:
//   {"op":"emit","event":"join_room","args":["7"],"ack":true,"tag":"j1"}
//   {"op":"disconnect"}  {"op":"connect"}  {"op":"close-engine"}  {"op":"exit"}
// Buffers are written {"$bin":"<base64>"} in both directions.
// Events go to stdout, one JSON object per line:
//   {"ev":"open","transport":"polling"}  {"ev":"upgrade","transport":"websocket"}
//   {"ev":"connect","id":"...","transport":"polling"}
//   {"ev":"event","name":"receive_message","args":[...]}  {"ev":"ack","tag":"j1","args":[...]}
//   {"ev":"disconnect","reason":"..."}  {"ev":"connect_error","message":"...","data":...}
const { io } = require("socket.io-client");
const readline = require("readline");

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
};
const url = opt("--url", "http://127.0.0.1:3001");
const transport = opt("--transport", "default");
const namespace = opt("--namespace", "/");
const auth = opt("--auth", null);

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const toWire = (v) => {
  if (v && typeof v === "object" && typeof v.$bin === "string") return Buffer.from(v.$bin, "base64");
  if (Array.isArray(v)) return v.map(toWire);
  if (v && typeof v === "object") {
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = toWire(x);
    return o;
  }
  return v;
};
const fromWire = (v) => {
  if (Buffer.isBuffer(v)) return { $bin: v.toString("base64") };
  if (v instanceof ArrayBuffer) return { $bin: Buffer.from(v).toString("base64") };
  if (ArrayBuffer.isView(v)) return { $bin: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") };
  if (Array.isArray(v)) return v.map(fromWire);
  if (v && typeof v === "object") {
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = fromWire(x);
    return o;
  }
  return v;
};

const opts = {
  reconnection: !argv.includes("--no-reconnect"),
  reconnectionDelay: 100,
  reconnectionDelayMax: 500,
  timeout: 5000,
};
if (transport === "websocket") opts.transports = ["websocket"];
if (transport === "polling") opts.transports = ["polling"];
if (auth) opts.auth = JSON.parse(auth);

const socket = io(url + (namespace === "/" ? "" : namespace), opts);

// The Engine.IO connection: its first transport, and the upgrade when it happens.
socket.io.on("open", () => {
  const engine = socket.io.engine;
  out({ ev: "open", transport: engine.transport.name });
  engine.once("upgrade", (t) => out({ ev: "upgrade", transport: t.name }));
});
socket.on("connect", () => {
  out({ ev: "connect", id: socket.id, transport: socket.io.engine.transport.name });
});
socket.on("connect_error", (err) => out({ ev: "connect_error", message: err.message, data: err.data ?? null }));
socket.on("disconnect", (reason) => out({ ev: "disconnect", reason }));
socket.onAny((name, ...args) => {
  const last = args[args.length - 1];
  if (typeof last === "function") {
    // The server asked for an ack: answer with what we got.
    args.pop();
    last({ ok: true, echo: name });
  }
  out({ ev: "event", name, args: fromWire(args) });
});

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    out({ ev: "error", message: "bad command: " + e.message });
    return;
  }
  switch (cmd.op) {
    case "emit": {
      const args = toWire(cmd.args || []);
      if (cmd.ack) {
        socket.timeout(cmd.timeout || 4000).emit(cmd.event, ...args, (err, ...reply) => {
          if (err) out({ ev: "ack_timeout", tag: cmd.tag ?? null });
          else out({ ev: "ack", tag: cmd.tag ?? null, args: fromWire(reply) });
        });
      } else {
        socket.emit(cmd.event, ...args);
      }
      out({ ev: "sent", tag: cmd.tag ?? null });
      break;
    }
    case "disconnect":
      socket.disconnect();
      break;
    case "connect":
      socket.connect();
      break;
    case "close-engine":
      // Drop the transport without a Socket.IO DISCONNECT: the client reconnects by itself.
      socket.io.engine.close();
      break;
    case "exit":
      socket.disconnect();
      setTimeout(() => process.exit(0), 20);
      break;
    default:
      out({ ev: "error", message: "unknown op " + cmd.op });
  }
});
rl.on("close", () => {
  socket.disconnect();
  setTimeout(() => process.exit(0), 20);
});
out({ ev: "ready" });
