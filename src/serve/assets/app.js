// wschat web chat page: pick a name and a room ("Entrar na sala"), then chat live with the room's
// other members (Socket.IO clients, plain WebSocket clients, other browsers) through the relay.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const joinScreen = $("join-screen");
  const chatScreen = $("chat-screen");
  const messages = $("messages");
  const chatBody = $("chat-body");
  const dot = $("live-dot");
  let me = "";
  let room = "";
  let client = null;

  const pad = (n) => String(n).padStart(2, "0");
  const now = () => {
    const d = new Date();
    return pad(d.getHours()) + ":" + pad(d.getMinutes());
  };

  function scrollDown() {
    chatBody.scrollTop = chatBody.scrollHeight;
  }

  function notice(text, kind) {
    const p = document.createElement("p");
    p.className = "notice" + (kind ? " " + kind : "");
    p.textContent = text;
    messages.appendChild(p);
    scrollDown();
  }

  // One bubble: the text, then "author | time" below it; own messages on the right.
  function bubble(msg, mine) {
    const row = document.createElement("div");
    row.className = "message " + (mine ? "you" : "other");
    const b = document.createElement("div");
    b.className = "bubble";
    const content = document.createElement("div");
    content.className = "message-content";
    content.textContent = String(msg.message ?? "");
    const meta = document.createElement("div");
    meta.className = "message-meta";
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = String(msg.author ?? "?");
    const sep = document.createElement("span");
    sep.textContent = "|";
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = String(msg.time ?? "");
    meta.append(author, sep, time);
    b.append(content, meta);
    row.appendChild(b);
    messages.appendChild(row);
    scrollDown();
    return meta;
  }

  function setLive(state) {
    dot.className = "live-dot " + state;
    dot.title = state === "on" ? "connected" : "reconnecting";
  }

  function enter(name, roomId) {
    me = name;
    room = roomId;
    $("room-label").textContent = room;
    joinScreen.hidden = true;
    chatScreen.hidden = false;
    history.replaceState(null, "", "#room=" + encodeURIComponent(room) + "&name=" + encodeURIComponent(me));
    client = new SioClient(location.href);
    client.on("connect", () => {
      setLive("on");
      client.emit("join_room", room, (reply) => {
        if (reply && reply.ok === false) notice(reply.error || "could not join", "error");
        else notice("You joined room " + room);
      });
    });
    client.on("disconnect", () => setLive("off"));
    client.on("reconnecting", () => setLive("off"));
    client.on("connect_error", (e) => notice("refused: " + ((e && e.message) || "unknown"), "error"));
    client.on("receive_message", (msg) => {
      if (msg && typeof msg === "object") bubble(msg, false);
    });
    client.on("error", (e) => notice(String((e && e.error) || e), "error"));
    client.connect();
    $("message").focus();
  }

  $("join-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = $("name").value.trim();
    const roomId = $("room").value.trim();
    if (!name || !roomId) {
      $("join-status").textContent = "Please enter a name and a room.";
      return;
    }
    enter(name, roomId);
  });

  $("send-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $("message");
    const text = input.value;
    if (!text.trim() || !client) return;
    const msg = { room, author: me, message: text, time: now() };
    const meta = bubble(msg, true);
    client.emit("send_message", msg, (reply) => {
      if (reply && reply.ok) {
        const tick = document.createElement("span");
        tick.className = "tick";
        tick.textContent = "✓";
        tick.title = "delivered to the relay";
        meta.appendChild(tick);
      } else {
        notice((reply && reply.error) || "not delivered", "error");
      }
    });
    input.value = "";
  });

  $("leave").addEventListener("click", () => {
    if (client) {
      client.emit("leave_room", room);
      setTimeout(() => client && client.close(), 50);
    }
    client = null;
    messages.textContent = "";
    chatScreen.hidden = true;
    joinScreen.hidden = false;
    history.replaceState(null, "", "#");
  });

  // A shared link (#room=7&name=Ana) fills the form; both present = join at once.
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get("room")) $("room").value = params.get("room");
  if (params.get("name")) $("name").value = params.get("name");
  if (params.get("room") && params.get("name")) enter(params.get("name"), params.get("room"));
})();
