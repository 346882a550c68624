// A socket.io 4 server for `wschat send` tests: the original app's chat events plus the generic
// Socket.IO features a client must handle (acks, namespaces with auth, binary, server disconnects).
//   /          join_room, leave_room, send_message (as chat-server.js, with acks when asked)
//              echo(...args, ack)      -> ack(...args)
//              binary_please()         -> emit("binary", {label:"three", data:<01 02 03>}, <ff>)
//              send_message with message "kick" -> socket.disconnect(true) (the server closes)
//   /private   middleware: auth.token must be "s3cret", else CONNECT_ERROR "Not authorized";
//              on connect emits welcome(auth)
// Usage: node send-fixture-server.js [--port N] [--tls-cert FILE --tls-key FILE] [--ping-interval MS]
//        [--ping-timeout MS]. Prints "listening PORT" once bound (loopback only).
const fs = require("fs");
const http = require("http");
const https = require("https");
const { Server } = require("socket.io");
const { onChat } = require("./chat-events");

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const port = Number(opt("--port", 0));
const cert = opt("--tls-cert", null);
const key = opt("--tls-key", null);
const notFound = (req, res) => {
  res.writeHead(404, { "Content-Type": "text/plain" });
  res.end("no such page\n");
};
const server = cert
  ? https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, notFound)
  : http.createServer(notFound);
const io = new Server(server, {
  perMessageDeflate: false,
  pingInterval: Number(opt("--ping-interval", 25000)),
  pingTimeout: Number(opt("--ping-timeout", 20000)),
});

io.on("connection", (socket) => {
  // "kick" makes the server drop the connection (send's lost-connection tests).
  onChat(socket, (s, data) => {
    if (data && data.message === "kick") {
      s.disconnect(true);
      return true;
    }
    return false;
  });
  socket.on("echo", (...all) => {
    const ack = typeof all[all.length - 1] === "function" ? all.pop() : null;
    if (ack) ack(...all);
  });
  socket.on("binary_please", () => {
    socket.emit("binary", { label: "three", data: Buffer.from([1, 2, 3]) }, Buffer.from([0xff]));
  });
});

const priv = io.of("/private");
priv.use((socket, next) => {
  if (socket.handshake.auth && socket.handshake.auth.token === "s3cret") next();
  else next(new Error("Not authorized"));
});
priv.on("connection", (socket) => {
  socket.emit("welcome", socket.handshake.auth);
});

server.listen(port, "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
