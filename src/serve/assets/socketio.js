// wschat's own small Socket.IO v5 client (Engine.IO v4 over WebSocket only), written for the built-in
// chat page: connect to one namespace with an optional auth payload, emit events with optional
// acks, receive events (and ack them), heartbeat (answer the server's pings, notice a dead link),
// reconnect with backoff. Binary attachments are not used by the page and are skipped.
"use strict";

class SioClient {
  constructor(base, opts = {}) {
    const u = new URL(base || location.href);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    u.pathname = opts.path || "/socket.io/";
    u.search = "?EIO=4&transport=websocket";
    u.hash = "";
    this.url = u.toString();
    this.nsp = opts.namespace || "/";
    this.auth = opts.auth || null;
    this.handlers = new Map();
    this.acks = new Map();
    this.nextAck = 0;
    this.connected = false;
    this.closedByUser = false;
    this.attempt = 0;
    this.queue = [];
    this.ws = null;
    this.deadTimer = null;
    this.pingBudget = 45000;
  }

  on(event, fn) {
    if (!this.handlers.has(event)) this.handlers.set(event, []);
    this.handlers.get(event).push(fn);
    return this;
  }

  fire(event, ...args) {
    for (const fn of this.handlers.get(event) || []) {
      try { fn(...args); } catch (e) { console.error(e); }
    }
  }

  connect() {
    this.closedByUser = false;
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") this.onEngine(ev.data);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearTimeout(this.deadTimer);
      const was = this.connected;
      this.connected = false;
      if (was) this.fire("disconnect", "transport close");
      if (!this.closedByUser) this.scheduleReconnect();
    };
    ws.onerror = () => this.fire("transport_error");
    return this;
  }

  scheduleReconnect() {
    const delay = Math.min(5000, 500 * 2 ** this.attempt) * (0.75 + Math.random() / 2);
    this.attempt += 1;
    this.fire("reconnecting", this.attempt, delay);
    setTimeout(() => { if (!this.closedByUser) this.connect(); }, delay);
  }

  close() {
    this.closedByUser = true;
    if (this.ws && this.connected) this.raw(this.prefix("1"));
    if (this.ws) this.ws.close(1000);
    this.connected = false;
  }

  raw(text) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
  }

  // "4" + Socket.IO type + namespace (only when not "/") + rest.
  prefix(type) {
    return "4" + type + (this.nsp === "/" ? "" : this.nsp + ",");
  }

  armDeadTimer() {
    clearTimeout(this.deadTimer);
    this.deadTimer = setTimeout(() => { if (this.ws) this.ws.close(4000); }, this.pingBudget);
  }

  onEngine(data) {
    const type = data[0];
    if (type === "0") {
      const open = JSON.parse(data.slice(1));
      this.pingBudget = open.pingInterval + open.pingTimeout;
      this.armDeadTimer();
      this.raw(this.prefix("0") + (this.auth ? JSON.stringify(this.auth) : ""));
    } else if (type === "2") {
      this.armDeadTimer();
      this.raw("3");
    } else if (type === "1") {
      if (this.ws) this.ws.close(1000);
    } else if (type === "4") {
      this.onSocket(data.slice(1));
    }
  }

  // <type>[<attachments>-][<nsp>,][<ack id>][<JSON>]
  onSocket(s) {
    const type = s[0];
    let i = 1;
    if (type === "5" || type === "6") return; // binary packets: not used by the page
    let nsp = "/";
    if (s[i] === "/") {
      const comma = s.indexOf(",", i);
      nsp = comma < 0 ? s.slice(i) : s.slice(i, comma);
      i = comma < 0 ? s.length : comma + 1;
    }
    if (nsp !== this.nsp) return;
    let id = "";
    while (i < s.length && s[i] >= "0" && s[i] <= "9") id += s[i++];
    const body = i < s.length ? JSON.parse(s.slice(i)) : undefined;
    if (type === "0") {
      this.connected = true;
      this.attempt = 0;
      this.id = body && body.sid;
      // "connect" first: what its handlers send (the page's join_room) must reach the server
      // before the messages queued while offline, or those would go to a room not yet joined.
      const pending = this.queue;
      this.queue = [];
      this.fire("connect");
      for (const text of pending) this.raw(text);
    } else if (type === "4") {
      this.fire("connect_error", body);
      this.closedByUser = true;
      if (this.ws) this.ws.close(1000);
    } else if (type === "1") {
      this.connected = false;
      this.fire("disconnect", "io server disconnect");
      this.closedByUser = true;
      if (this.ws) this.ws.close(1000);
    } else if (type === "2" && Array.isArray(body)) {
      const [event, ...args] = body;
      if (id !== "") {
        let answered = false;
        args.push((...reply) => {
          if (answered) return;
          answered = true;
          this.raw(this.prefix("3") + id + JSON.stringify(reply));
        });
      }
      this.fire(event, ...args);
    } else if (type === "3" && Array.isArray(body)) {
      const fn = this.acks.get(Number(id));
      this.acks.delete(Number(id));
      if (fn) fn(...body);
    }
  }

  // emit(event, ...args[, ackCallback]); queued until connected.
  emit(event, ...args) {
    let ack = null;
    if (args.length && typeof args[args.length - 1] === "function") ack = args.pop();
    let id = "";
    if (ack) {
      id = String(this.nextAck++);
      this.acks.set(Number(id), ack);
    }
    const text = this.prefix("2") + id + JSON.stringify([event, ...args]);
    if (this.connected) this.raw(text);
    else this.queue.push(text);
    return this;
  }
}

window.SioClient = SioClient;
