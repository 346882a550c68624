// A deliberately faulty chat relay for the bench's delivery accounting tests: the original app's
// events, except that every send_message from author "bench-0" is dropped and every one from
// "bench-1" is relayed twice. Prints "listening PORT" once bound (port 0 = ephemeral).
const http = require("http");
const { Server } = require("socket.io");

const args = process.argv.slice(2);
const i = args.indexOf("--port");
const port = Number(i >= 0 ? args[i + 1] : 0);

const server = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const io = new Server(server, { perMessageDeflate: false });

io.on("connection", (socket) => {
  socket.on("join_room", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack({ ok: true, room });
  });
  socket.on("send_message", (data, ack) => {
    if (data.author !== "bench-0") socket.to(data.room).emit("receive_message", data);
    if (data.author === "bench-1") socket.to(data.room).emit("receive_message", data);
    if (typeof ack === "function") ack({ ok: true });
  });
});

server.listen(port, "127.0.0.1", () => console.log(`listening ${server.address().port}`));
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
