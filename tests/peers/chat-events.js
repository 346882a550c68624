// The original course app's server events, shared by the node peers (chat-server.js,
// send-fixture-server.js, serve-redis-node.js):
//   join_room(room)        -> socket.join(room)
//   leave_room(room)       -> socket.leave(room)
//   send_message(data)     -> socket.to(data.room).emit("receive_message", data)
// Each acks when the client asked for an ack. `beforeSend(socket, data)` may return true to
// handle a message itself (the send fixture's "kick").
function onChat(socket, beforeSend) {
  socket.on("join_room", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack({ ok: true, room });
  });
  socket.on("leave_room", (room, ack) => {
    socket.leave(room);
    if (typeof ack === "function") ack({ ok: true, room });
  });
  socket.on("send_message", (data, ack) => {
    if (beforeSend && beforeSend(socket, data)) return;
    socket.to(data.room).emit("receive_message", data);
    if (typeof ack === "function") ack({ ok: true });
  });
}

module.exports = { onChat };
