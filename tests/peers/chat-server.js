// The original course app's server, as the reference peer: express-less socket.io 4 with its events.
// (its events: chat-events.js)
// Usage: node chat-server.js [--port N] [--host H] [--deflate] [--ping-interval MS] [--ping-timeout MS]
// Prints "listening PORT" on stdout once bound (port 0 = ephemeral). Loopback only by default.
const http = require("http");
const { Server } = require("socket.io");
const { onChat } = require("./chat-events");

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const port = Number(opt("--port", process.env.PORT || 0));
const host = opt("--host", "127.0.0.1");

const server = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const io = new Server(server, {
  cors: { origin: "*" },
  perMessageDeflate: args.includes("--deflate") ? { threshold: 0 } : false,
  pingInterval: Number(opt("--ping-interval", 25000)),
  pingTimeout: Number(opt("--ping-timeout", 20000)),
});

io.on("connection", (socket) => onChat(socket));

server.listen(port, host, () => {
  console.log(`listening ${server.address().port}`);
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
