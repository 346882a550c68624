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
  // In the room on the current connection; until then, what is typed waits in `unsent` (sent
  // before the join, it would be refused: "not a member of room X").
  let joined = false;
  let unsent = [];

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
    const sock = io({ autoConnect: false, reconnectionDelay: 500 });
    client = sock;
    joined = false;
    unsent = [];
    sock.on("connect", () => {
      setLive("on");
      sock.emit("join_room", room, (reply) => {
        if (client !== sock) return;
        if (reply && reply.ok === false) {
          notice(reply.error || "could not join", "error");
          return;
        }
        notice("You joined room " + room);
        joined = true;
        const waiting = unsent;
        unsent = [];
        for (const [msg, meta] of waiting) deliver(msg, meta);
      });
    });
    sock.on("disconnect", () => {
      if (client === sock) joined = false;
      setLive("off");
    });
    // Failed attempts while reconnecting come here too; only a refusal by the relay is news.
    sock.on("connect_error", (e) => {
      if (!sock.active) notice("refused: " + ((e && e.message) || "unknown"), "error");
    });
    sock.on("receive_message", (msg) => {
      if (msg && typeof msg === "object") bubble(msg, false);
    });
    sock.on("error", (e) => notice(String((e && e.error) || e), "error"));
    sock.connect();
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

  // Sends one message; its bubble gets a tick when the relay acknowledges it.
  function deliver(msg, meta) {
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
  }

  $("send-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $("message");
    const text = input.value;
    if (!text.trim() || !client) return;
    const msg = { room, author: me, message: text, time: now() };
    const meta = bubble(msg, true);
    if (joined) deliver(msg, meta);
    else unsent.push([msg, meta]);
    input.value = "";
  });

  $("leave").addEventListener("click", () => {
    if (client) {
      // Sent in order on the same WebSocket: the leave, then the disconnect.
      client.emit("leave_room", room);
      client.disconnect();
    }
    client = null;
    joined = false;
    unsent = [];
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
