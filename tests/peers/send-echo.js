// A plain WebSocket echo server (the `ws` package) for `wschat send --raw` tests.
// Text comes back as text, binary as binary; the text "close-me" makes the server close with
// 4000 "bye". Usage: node send-echo.js [--port N] [--tls-cert FILE --tls-key FILE].
// Prints "listening PORT" once bound (loopback only).
const fs = require("fs");
const http = require("http");
const https = require("https");
const { WebSocketServer } = require("ws");

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const cert = opt("--tls-cert", null);
const key = opt("--tls-key", null);
const server = cert
  ? https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) })
  : http.createServer();
const wss = new WebSocketServer({ server });
wss.on("connection", (ws, req) => {
  ws.send(`hello ${req.url}`);
  ws.on("message", (data, isBinary) => {
    if (!isBinary && data.toString() === "close-me") {
      ws.close(4000, "bye");
      return;
    }
    ws.send(data, { binary: isBinary });
  });
});
server.listen(Number(opt("--port", 0)), "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
