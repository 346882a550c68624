// Traffic scenarios for the sample captures in captures/ (run by scripts/make-captures.sh while
// dumpcap records the loopback interface). Each scenario starts its own server and clients in this
// process on the given port, exchanges a fixed script of messages, closes everything and exits.
//
// Usage: node scenarios.js SCENARIO [--port 3001] [--host 127.0.0.1]
// Scenarios: chat, socketio-extras, lengths, fragments, deflate, deflate-no-context, ping-close, polling
const http = require("http");
const zlib = require("zlib");
const { Server } = require("socket.io");
const { io } = require("socket.io-client");
const WebSocket = require("ws");

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const scenario = args[0];
const port = Number(opt("--port", 3001));
const host = opt("--host", "127.0.0.1");
const urlHost = host.includes(":") ? `[${host}]` : host;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const once = (emitter, ev) => new Promise((r) => emitter.once(ev, r));

// The original course app's server: join_room -> join; send_message -> broadcast to the room.
function chatServer(extra = {}) {
  const server = http.createServer();
  const ioServer = new Server(server, {
    cors: { origin: "*" },
    perMessageDeflate: false,
    pingInterval: 400,
    pingTimeout: 2000,
    ...extra,
  });
  ioServer.on("connection", (socket) => {
    socket.on("join_room", (room) => socket.join(room));
    socket.on("send_message", (data) => socket.to(data.room).emit("receive_message", data));
    // Used by socketio-extras and polling: echo every argument back (binary included), ack if asked.
    socket.on("echo", (...a) => {
      const ack = typeof a[a.length - 1] === "function" ? a.pop() : null;
      socket.emit("echo_back", ...a);
      if (ack) ack(...a);
    });
  });
  return new Promise((resolve) => server.listen(port, host, () => resolve({ server, io: ioServer })));
}

async function chat() {
  const { server, io: srv } = await chatServer();
  const url = `http://${urlHost}:${port}`;
  const phone = io(url, { transports: ["websocket"] });
  const desktop = io(url, { transports: ["websocket"] });
  await Promise.all([once(phone, "connect"), once(desktop, "connect")]);
  phone.emit("join_room", "1");
  desktop.emit("join_room", "1");
  await sleep(100);
  const got = once(desktop, "receive_message");
  phone.emit("send_message", { room: "1", author: "Celular", message: "Olá mundo!", time: "16:10" });
  await got;
  const back = once(phone, "receive_message");
  desktop.emit("send_message", { room: "1", author: "Desktop", message: "Oi! Tudo bem? 👋", time: "16:11" });
  await back;
  await sleep(500); // one Engine.IO ping/pong round (pingInterval 400 ms)
  phone.close();
  desktop.close();
  await sleep(100);
  srv.close();
  server.close();
}

async function socketioExtras() {
  const { server, io: srv } = await chatServer();
  srv.of("/admin").on("connection", (socket) => {
    socket.on("stats", (ack) => ack({ rooms: 1, clients: 1 }));
  });
  srv.of("/private").use((socket, next) => next(new Error("Not authorized")));
  const url = `http://${urlHost}:${port}`;
  const c = io(url, { transports: ["websocket"] });
  await once(c, "connect");
  // An event with an ack id and a binary attachment (BINARY_EVENT, then BINARY_ACK back).
  const acked = new Promise((r) => c.emit("echo", "file.bin", Buffer.from([1, 2, 3, 4]), (...a) => r(a)));
  await acked;
  // Two attachments in one event.
  c.emit("echo", { a: Buffer.from("hello"), b: [Buffer.from([0xff, 0x00])] });
  await once(c, "echo_back");
  const admin = io(`${url}/admin`, { transports: ["websocket"] });
  await once(admin, "connect");
  await new Promise((r) => admin.emit("stats", r));
  const priv = io(`${url}/private`, { transports: ["websocket"] });
  await once(priv, "connect_error");
  priv.close();
  admin.disconnect();
  await sleep(50);
  c.close();
  await sleep(100);
  srv.close();
  server.close();
}

// A plain ws echo server; `opts` are ws server options; `client` runs against it.
async function wsPair(serverOpts, clientOpts, client, onServerSocket) {
  const wss = new WebSocket.Server({ port, host, ...serverOpts });
  await once(wss, "listening");
  wss.on("connection", (ws) => {
    if (onServerSocket) onServerSocket(ws);
    else ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  const ws = new WebSocket(`ws://${urlHost}:${port}/chat`, clientOpts);
  await once(ws, "open");
  await client(ws);
  if (ws.readyState === WebSocket.OPEN) {
    ws.close(1000, "done");
    await once(ws, "close");
  }
  await sleep(50);
  wss.close();
}

const nextMessage = (ws) => once(ws, "message");

async function lengths() {
  await wsPair({}, {}, async (ws) => {
    for (const n of [5, 125, 126, 1000, 65535]) {
      ws.send("x".repeat(n));
      await nextMessage(ws);
    }
    // 64-bit length: 65536 bytes and more.
    ws.send(Buffer.alloc(70000, 0x61), { binary: true });
    await nextMessage(ws);
  }, (sws) => sws.on("message", (data, isBinary) => {
    // Echo short messages; answer long ones with their length, keeping the capture small.
    if (data.length > 60000) sws.send(`got ${data.length}`);
    else sws.send(data, { binary: isBinary });
  }));
}

async function fragments() {
  await wsPair({}, {}, async (ws) => {
    // A text message in three fragments with a ping between them (RFC 6455 §5.4 allows it).
    ws.send("Olá, ", { fin: false });
    ws.ping("mid-message");
    ws.send("fragmented ", { fin: false });
    ws.send("mundo!", { fin: true });
    await nextMessage(ws);
    // A binary message in two fragments.
    ws.send(Buffer.from([1, 2, 3]), { binary: true, fin: false });
    ws.send(Buffer.from([4, 5]), { binary: true, fin: true });
    await nextMessage(ws);
    // Ask the server for a fragmented message of its own (unmasked).
    ws.send("split please");
    await nextMessage(ws);
  }, (sws) => sws.on("message", (data, isBinary) => {
    if (data.toString() === "split please") {
      sws.send("server ", { fin: false });
      sws.send("fragments", { fin: true });
    } else {
      sws.send(data, { binary: isBinary });
    }
  }));
}

async function deflate(noContext) {
  const pmd = noContext
    ? { threshold: 0, serverNoContextTakeover: true, clientNoContextTakeover: true }
    : { threshold: 0 };
  await wsPair({ perMessageDeflate: pmd }, { perMessageDeflate: pmd }, async (ws) => {
    for (let i = 1; i <= 4; i++) {
      const msg = { room: "1", author: "Celular", message: `mensagem número ${i}`, time: "16:1" + i };
      ws.send(`42${JSON.stringify(["send_message", msg])}`);
      await nextMessage(ws);
    }
    // A compressed message split into three fragments (RSV1 on the first only, RFC 7692 §6.1).
    ws.send("fragmented and ", { fin: false, compress: true });
    ws.send("compressed, ", { fin: false, compress: true });
    ws.send("fragmented and compressed!", { fin: true, compress: true });
    await nextMessage(ws);
    // And an uncompressed message in between (RSV1 clear), then one more compressed.
    ws.send("plain", { compress: false });
    await nextMessage(ws);
    ws.send("after the plain one: fragmented and compressed!");
    await nextMessage(ws);
  });
}

async function pingClose() {
  // Connection 1: ping/pong with payloads, then the client closes with a code and a reason.
  await wsPair({}, {}, async (ws) => {
    ws.ping("are you there?");
    await once(ws, "pong");
    ws.send("bye soon");
    await nextMessage(ws);
    ws.close(4000, "see you later");
    await once(ws, "close");
  });
  // Connection 2: the server closes with 1001 (going away) and a reason.
  await wsPair({}, {}, async (ws) => {
    ws.send("close me");
    await once(ws, "close");
  }, (sws) => sws.on("message", () => sws.close(1001, "server shutting down")));
}

// Engine.IO long-polling by hand (so the bodies can be chunked and compressed), then the upgrade.
function request(method, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method, path, headers, agent: keepAlive }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        let body = Buffer.concat(chunks);
        const enc = res.headers["content-encoding"];
        if (enc === "gzip") body = zlib.gunzipSync(body);
        else if (enc === "deflate") body = zlib.inflateSync(body);
        resolve({ status: res.statusCode, headers: res.headers, body });
      });
    });
    req.on("error", reject);
    if (body !== undefined) {
      // No Content-Length: node sends the body chunked (RFC 9112 §7.1), in two writes.
      const half = Math.floor(body.length / 2);
      req.write(body.slice(0, half));
      req.end(body.slice(half));
    } else {
      req.end();
    }
  });
}
const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });

async function polling() {
  const { server, io: srv } = await chatServer({ httpCompression: { threshold: 64 } });
  const base = "/socket.io/?EIO=4&transport=polling";
  const gz = { "Accept-Encoding": "gzip, deflate" };
  const open = await request("GET", `${base}&t=a1`, undefined, gz);
  const sid = JSON.parse(open.body.toString().slice(1)).sid;
  const q = `${base}&sid=${sid}`;
  await request("POST", `${q}&t=a2`, "40", { "Content-Type": "text/plain;charset=UTF-8" });
  await request("GET", `${q}&t=a3`, undefined, gz); // 40{"sid":...}
  // Two events batched in one POST, one with a binary attachment sent as b+base64.
  const batch = '42["join_room","1"]\x1e451-["echo","file",{"_placeholder":true,"num":0}]\x1ebAQIDBA==';
  await request("POST", `${q}&t=a4`, batch, { "Content-Type": "text/plain;charset=UTF-8" });
  // The echo comes back as 451-[...] + b<base64>; ask for a gzip response (large enough).
  await request("GET", `${q}&t=a5`, undefined, gz);
  const long = "A long message so the response is compressed. ".repeat(4);
  await request("POST", `${q}&t=a6`, `42${JSON.stringify(["echo", long])}`, {});
  await request("GET", `${q}&t=a7`, undefined, { "Accept-Encoding": "deflate" });
  // Upgrade to WebSocket: 2probe / 3probe / 5, then events on the WebSocket (RFC 6455 frames).
  const ws = new WebSocket(`ws://${urlHost}:${port}/socket.io/?EIO=4&transport=websocket&sid=${sid}`);
  await once(ws, "open");
  ws.send("2probe");
  await nextMessage(ws);
  await request("GET", `${q}&t=a8`, undefined, gz); // answered with 6 (noop) during the upgrade
  ws.send("5");
  ws.send('42["send_message",{"room":"1","author":"Poller","message":"upgraded","time":"16:20"}]');
  ws.send('42["echo","over websocket"]');
  await nextMessage(ws);
  ws.close(1000);
  await once(ws, "close");
  keepAlive.destroy();
  await sleep(100);
  srv.close();
  server.close();
}

const scenarios = {
  chat,
  "socketio-extras": socketioExtras,
  lengths,
  fragments,
  deflate: () => deflate(false),
  "deflate-no-context": () => deflate(true),
  "ping-close": pingClose,
  polling,
};

if (!scenarios[scenario]) {
  console.error(`unknown scenario ${scenario}; one of: ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
const guard = setTimeout(() => {
  console.error(`scenario ${scenario} timed out`);
  process.exit(1);
}, 15000);
scenarios[scenario]().then(
  () => {
    clearTimeout(guard);
    setTimeout(() => process.exit(0), 50);
  },
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
