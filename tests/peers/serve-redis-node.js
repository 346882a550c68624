// The original course app's server on @socket.io/redis-adapter: a node member of a wschat cluster.
// (its events: chat-events.js) and, to look at the whole cluster through the adapter's request channel:
//   cluster_rooms(ack)            -> ack(sorted io.of("/").adapter.allRooms())
//   cluster_sockets(room, ack)    -> ack(io.in(room).fetchSockets() as sorted [{id, rooms}])
// Usage: node serve-redis-node.js --redis redis://127.0.0.1:PORT [--port N] [--key socket.io]
// Prints "listening PORT" on stdout once bound and subscribed (port 0 = ephemeral). Loopback only.
// With --capture, also prints every message published on the adapter's channels as
// {"capture":"<channel>","hex":"<payload as hex>"} (how the bytes in src/serve/redis.rs were taken).
const http = require("http");
const { Server } = require("socket.io");
const { onChat } = require("./chat-events");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const port = Number(opt("--port", 0));
const redisUrl = opt("--redis", "redis://127.0.0.1:6379");
const key = opt("--key", "socket.io");

async function main() {
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  for (const c of [pub, sub]) c.on("error", (e) => console.error(`redis: ${e.message}`));
  await Promise.all([pub.connect(), sub.connect()]);

  if (args.includes("--capture")) {
    const spy = pub.duplicate();
    await spy.connect();
    await spy.pSubscribe(`${key}*`, (msg, channel) => {
      console.log(JSON.stringify({ capture: channel.toString(), hex: msg.toString("hex") }));
    }, true);
  }

  const server = http.createServer((req, res) => {
    res.writeHead(404);
    res.end();
  });
  const io = new Server(server, {
    cors: { origin: "*" },
    adapter: createAdapter(pub, sub, { key }),
  });
  io.on("connection", (socket) => {
    onChat(socket);
    socket.on("cluster_rooms", async (ack) => {
      const rooms = [...(await io.of("/").adapter.allRooms())].map(String).sort();
      ack(rooms);
    });
    socket.on("cluster_sockets", async (room, ack) => {
      try {
        const sockets = await io.in(room).fetchSockets();
        ack(sockets.map((s) => ({ id: s.id, rooms: [...s.rooms].map(String).sort() }))
          .sort((a, b) => (a.id < b.id ? -1 : 1)));
      } catch (e) {
        ack({ error: e.message });
      }
    });
  });
  // The adapter subscribes in its constructor (the "/" namespace exists already); a PING on the
  // subscriber connection returns after those SUBSCRIBE commands were handled.
  await sub.ping();
  server.listen(port, "127.0.0.1", () => {
    console.log(`listening ${server.address().port}`);
  });
}

main().catch((e) => {
  console.error(`serve-redis-node: ${e.message}`);
  process.exit(2);
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
