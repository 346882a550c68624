// wschat's own Socket.IO v5 client (Engine.IO v4 over WebSocket), written for this project. The
// built-in chat page uses it, and the relay serves it at /socket.io/socket.io.js, where the npm
// server serves its client bundle, so that pages written for that bundle work unchanged:
//
//   <script src="/socket.io/socket.io.js"></script>
//   const socket = io();                 // or io("http://host:3001/nsp", { auth, query, ... })
//   socket.on("receive_message", (msg) => ...);
//   socket.emit("send_message", msg, (reply) => ...);
//
// What it has of socket.io-client v4's API: io(uri?, opts?) (also io.connect); options path,
// query, auth (an object, or a function given a callback), autoConnect, reconnection,
// reconnectionAttempts, reconnectionDelay, reconnectionDelayMax, randomizationFactor; sockets with
// on/once/off/removeAllListeners/listeners, onAny/prependAny/offAny/listenersAny, emit with an ack,
// timeout(ms).emit (the ack gets an error first), volatile, send, connect/open,
// disconnect/close, id, connected/disconnected/active, binary arguments (ArrayBuffer and typed
// arrays, both ways), the events connect, connect_error (an Error with .data) and disconnect (with
// socket.io-client's reasons), and socket.io's reconnect_attempt, reconnect, reconnect_failed and
// ping. What it does not have: HTTP long-polling (WebSocket only), one connection shared by
// several namespaces (each socket has its own), Blob arguments, retries, connection state recovery,
// the outgoing-packet listeners. As in socket.io-client, what is emitted while disconnected is sent
// on connect, before the "connect" listeners run.
"use strict";

(() => {
  const RESERVED = new Set([
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
  ]);

  class Emitter {
    constructor() {
      this._handlers = new Map();
    }
    on(event, fn) {
      if (!this._handlers.has(event)) this._handlers.set(event, []);
      this._handlers.get(event).push(fn);
      return this;
    }
    addEventListener(event, fn) {
      return this.on(event, fn);
    }
    once(event, fn) {
      const once = (...args) => {
        this.off(event, once);
        fn.apply(this, args);
      };
      once.fn = fn;
      return this.on(event, once);
    }
    off(event, fn) {
      if (event === undefined) this._handlers.clear();
      else if (fn === undefined) this._handlers.delete(event);
      else {
        const left = (this._handlers.get(event) || []).filter((h) => h !== fn && h.fn !== fn);
        if (left.length) this._handlers.set(event, left);
        else this._handlers.delete(event);
      }
      return this;
    }
    removeListener(event, fn) {
      return this.off(event, fn);
    }
    removeAllListeners(event) {
      return this.off(event);
    }
    listeners(event) {
      return (this._handlers.get(event) || []).slice();
    }
    hasListeners(event) {
      return this.listeners(event).length > 0;
    }
    // Calls the listeners of `event`; one that throws does not stop the others.
    emitReserved(event, ...args) {
      for (const fn of this.listeners(event)) {
        try {
          fn.apply(this, args);
        } catch (e) {
          console.error(e);
        }
      }
      return this;
    }
  }

  const isBinary = (v) =>
    (typeof ArrayBuffer !== "undefined" && (v instanceof ArrayBuffer || ArrayBuffer.isView(v)));

  // Arguments with binary parts: each part becomes {_placeholder: true, num} and goes to `out`.
  function deconstruct(v, out) {
    if (isBinary(v)) {
      out.push(v);
      return { _placeholder: true, num: out.length - 1 };
    }
    if (Array.isArray(v)) return v.map((x) => deconstruct(x, out));
    if (v && typeof v === "object" && typeof v.toJSON !== "function") {
      const o = {};
      for (const k of Object.keys(v)) o[k] = deconstruct(v[k], out);
      return o;
    }
    return v;
  }

  // The reverse, with the binary frames that followed the packet; undefined if one is missing.
  function reconstruct(v, parts) {
    if (Array.isArray(v)) return v.map((x) => reconstruct(x, parts));
    if (v && typeof v === "object") {
      if (v._placeholder === true) {
        if (!Number.isInteger(v.num) || v.num < 0 || v.num >= parts.length) throw new Error("bad placeholder");
        return parts[v.num];
      }
      const o = {};
      for (const k of Object.keys(v)) o[k] = reconstruct(v[k], parts);
      return o;
    }
    return v;
  }

  // socket.io-client's rules for the uri: none is the page's origin; "//host" and "/path" are
  // relative to the page; no scheme means the page's.
  function absolute(uri) {
    if (uri === undefined || uri === null) return location.protocol + "//" + location.host;
    let s = String(uri);
    if (s[0] === "/") s = s[1] === "/" ? location.protocol + s : location.host + s;
    if (!/^(https?|wss?):\/\//.test(s)) s = location.protocol + "//" + s;
    return s;
  }

  class Socket extends Emitter {
    constructor(uri, opts = {}) {
      super();
      const u = new URL(absolute(uri));
      // The URL's path is the namespace, as in socket.io-client; the Engine.IO path is opts.path.
      this.nsp = u.pathname || "/";
      const engine = new URL(u.href);
      engine.protocol = u.protocol === "https:" || u.protocol === "wss:" ? "wss:" : "ws:";
      let path = opts.path || "/socket.io";
      if (!path.endsWith("/")) path += "/";
      engine.pathname = path;
      // opts.query, else the uri's own query (as socket.io-client).
      const query = opts.query
        ? new URLSearchParams(typeof opts.query === "string" ? opts.query : Object.entries(opts.query))
        : new URLSearchParams(u.search);
      query.set("EIO", "4");
      query.set("transport", "websocket");
      engine.search = query.toString();
      engine.hash = "";
      this.url = engine.toString();
      this.auth = opts.auth || null;
      this.id = undefined;
      this.connected = false;
      this.recovered = false;
      this.io = new Emitter();
      this.io.opts = opts;
      this._reconnection = opts.reconnection !== false;
      this._maxAttempts = opts.reconnectionAttempts === undefined ? Infinity : opts.reconnectionAttempts;
      this._delay = opts.reconnectionDelay === undefined ? 1000 : opts.reconnectionDelay;
      this._delayMax = opts.reconnectionDelayMax === undefined ? 5000 : opts.reconnectionDelayMax;
      this._jitter = opts.randomizationFactor === undefined ? 0.5 : opts.randomizationFactor;
      this._attempts = 0;
      this._manual = true;
      this._ws = null;
      this._retryTimer = null;
      this._deadTimer = null;
      this._pingBudget = 45000;
      this._buffer = [];
      this._acks = new Map();
      this._ids = 0;
      this._flags = {};
      this._any = [];
      this._binary = null;
      if (opts.autoConnect !== false) this.connect();
    }

    get disconnected() {
      return !this.connected;
    }
    // True while the socket connects, is connected or will reconnect by itself.
    get active() {
      return !this._manual;
    }
    get volatile() {
      this._flags.volatile = true;
      return this;
    }
    compress() {
      return this;
    }
    timeout(ms) {
      this._flags.timeout = ms;
      return this;
    }

    connect() {
      if (this.connected || this._ws) return this;
      this._manual = false;
      this._open();
      return this;
    }
    open() {
      return this.connect();
    }

    disconnect() {
      this._manual = true;
      this._attempts = 0;
      clearTimeout(this._retryTimer);
      if (this.connected) this._raw(this._prefix("1"));
      this._drop();
      if (this.connected) this._lost("io client disconnect");
      return this;
    }
    close() {
      return this.disconnect();
    }

    send(...args) {
      return this.emit("message", ...args);
    }

    // emit(event, ...args[, ack]): buffered while not connected (dropped instead when volatile).
    emit(event, ...args) {
      if (RESERVED.has(event)) throw new Error(JSON.stringify(event) + " is a reserved event name");
      const flags = this._flags;
      this._flags = {};
      let n = null;
      if (args.length && typeof args[args.length - 1] === "function") {
        const ack = args.pop();
        n = this._ids++;
        const id = n;
        if (flags.timeout !== undefined) {
          // Timed out: the packet is not sent after all, and the ack gets an error first.
          const timer = setTimeout(() => {
            this._acks.delete(id);
            this._buffer = this._buffer.filter((p) => p.id !== id);
            ack.call(this, new Error("operation has timed out"));
          }, flags.timeout);
          this._acks.set(id, {
            ok: (...reply) => {
              clearTimeout(timer);
              ack.call(this, null, ...reply);
            },
            fail: (err) => {
              clearTimeout(timer);
              ack.call(this, err);
            },
          });
        } else {
          this._acks.set(id, { ok: (...reply) => ack.apply(this, reply), fail: null });
        }
      }
      const frames = this._encode("2", n === null ? "" : String(n), [event, ...args]);
      if (this.connected) this._send(frames);
      else if (!flags.volatile) this._buffer.push({ id: n, frames });
      return this;
    }

    onAny(fn) {
      this._any.push(fn);
      return this;
    }
    prependAny(fn) {
      this._any.unshift(fn);
      return this;
    }
    offAny(fn) {
      this._any = fn === undefined ? [] : this._any.filter((f) => f !== fn);
      return this;
    }
    listenersAny() {
      return this._any.slice();
    }

    // --- the connection --------------------------------------------------------------------

    _open() {
      clearTimeout(this._retryTimer);
      this._binary = null;
      let ws;
      try {
        ws = new WebSocket(this.url);
      } catch (e) {
        this._failed(e);
        return;
      }
      ws.binaryType = "arraybuffer";
      this._ws = ws;
      ws.onmessage = (ev) => {
        if (this._ws === ws) this._onFrame(ev.data);
      };
      let opened = false;
      ws.onopen = () => {
        opened = true;
      };
      ws.onclose = () => {
        if (this._ws !== ws) return;
        this._ws = null;
        this._binary = null;
        clearTimeout(this._deadTimer);
        if (this.connected) this._lost("transport close");
        else this._failed(new Error(opened ? "transport close" : "websocket error"));
      };
    }

    // Closes the current WebSocket without reporting it (the caller reports).
    _drop(code = 1000) {
      const ws = this._ws;
      this._ws = null;
      this._binary = null;
      clearTimeout(this._deadTimer);
      if (ws) ws.close(code);
    }

    // Ends the connection with `reason` at once (a dead link's close handshake can take long),
    // then reconnects unless the user or the server ended it.
    _end(reason) {
      const ws = this._ws;
      if (!ws) return;
      this._drop(reason === "ping timeout" ? 4000 : 1000);
      if (this.connected) this._lost(reason);
      else this._failed(new Error(reason));
    }

    _lost(reason) {
      this.connected = false;
      this.id = undefined;
      this.emitReserved("disconnect", reason);
      this._clearAcks();
      this._reconnect();
    }

    // On disconnect, as socket.io-client: the acks of packets already sent are dropped, and
    // those with a timeout get an error at once; those of buffered packets wait.
    _clearAcks() {
      for (const [id, a] of [...this._acks]) {
        if (this._buffer.some((p) => p.id === id)) continue;
        this._acks.delete(id);
        if (a.fail) a.fail(new Error("socket has been disconnected"));
      }
    }

    _failed(err) {
      if (this._manual) return;
      this.emitReserved("connect_error", err);
      this._reconnect();
    }

    _reconnect() {
      if (this._manual || !this._reconnection) {
        this._manual = true;
        return;
      }
      if (this._attempts >= this._maxAttempts) {
        this._manual = true;
        this._attempts = 0;
        this.io.emitReserved("reconnect_failed");
        return;
      }
      // socket.io-client's backoff: delay * 2^attempts, randomised by the factor, capped.
      let ms = this._delay * 2 ** this._attempts;
      if (this._jitter) {
        const r = Math.random();
        const deviation = Math.floor(r * this._jitter * ms);
        ms = (Math.floor(r * 10) & 1) === 0 ? ms - deviation : ms + deviation;
      }
      ms = Math.min(ms, this._delayMax);
      this._attempts += 1;
      const attempt = this._attempts;
      this._retryTimer = setTimeout(() => {
        if (this._manual || this._ws) return;
        this.io.emitReserved("reconnect_attempt", attempt);
        this._open();
      }, ms);
    }

    _raw(data) {
      if (this._ws && this._ws.readyState === WebSocket.OPEN) this._ws.send(data);
    }

    _send(frames) {
      for (const f of frames) this._raw(f);
    }

    _nspPart() {
      return this.nsp === "/" ? "" : this.nsp + ",";
    }

    // "4" (Engine.IO message) + Socket.IO type + namespace (only when not "/").
    _prefix(type) {
      return "4" + type + this._nspPart();
    }

    // One packet's frames: the text, then one binary frame per binary part.
    _encode(type, id, data) {
      const parts = [];
      const json = JSON.stringify(deconstruct(data, parts));
      if (!parts.length) return [this._prefix(type) + id + json];
      const binaryType = type === "2" ? "5" : "6";
      return ["4" + binaryType + parts.length + "-" + this._nspPart() + id + json, ...parts];
    }

    _armDeadTimer() {
      clearTimeout(this._deadTimer);
      this._deadTimer = setTimeout(() => this._end("ping timeout"), this._pingBudget);
    }

    _onFrame(data) {
      if (typeof data !== "string") {
        this._onBinary(data);
        return;
      }
      const type = data[0];
      if (type === "0") {
        let open;
        try {
          open = JSON.parse(data.slice(1));
        } catch (_) {
          this._end("parse error");
          return;
        }
        this._pingBudget = open.pingInterval + open.pingTimeout;
        this._armDeadTimer();
        const ws = this._ws;
        const connect = (auth) => {
          if (this._ws === ws) this._raw(this._prefix("0") + (auth ? JSON.stringify(auth) : ""));
        };
        if (typeof this.auth === "function") this.auth(connect);
        else connect(this.auth);
      } else if (type === "2") {
        this._armDeadTimer();
        this._raw("3");
        this.io.emitReserved("ping");
      } else if (type === "1") {
        this._end("transport close");
      } else if (type === "4") {
        this._onPacket(data.slice(1));
      }
    }

    // <type>[<attachments>-][<nsp>,][<ack id>][<JSON>]
    _onPacket(s) {
      if (this._binary) {
        // A packet while a binary packet's frames are still due (socket.io-parser refuses it).
        this._end("parse error");
        return;
      }
      const type = s[0];
      let i = 1;
      let attachments = 0;
      if (type === "5" || type === "6") {
        const dash = s.indexOf("-", i);
        attachments = dash < 0 ? NaN : Number(s.slice(i, dash));
        if (!Number.isInteger(attachments) || attachments < 0) {
          this._end("parse error");
          return;
        }
        i = dash + 1;
      }
      let nsp = "/";
      if (s[i] === "/") {
        const comma = s.indexOf(",", i);
        nsp = comma < 0 ? s.slice(i) : s.slice(i, comma);
        i = comma < 0 ? s.length : comma + 1;
      }
      let id = "";
      while (i < s.length && s[i] >= "0" && s[i] <= "9") id += s[i++];
      let body;
      if (i < s.length) {
        try {
          body = JSON.parse(s.slice(i));
        } catch (_) {
          this._end("parse error");
          return;
        }
      }
      // Binary frames belong to the packet before them, whatever its namespace.
      if (attachments > 0) {
        this._binary = { nsp, type: type === "5" ? "2" : "3", id, body, need: attachments, parts: [] };
        return;
      }
      if (nsp === this.nsp) this._dispatch(type === "5" ? "2" : type === "6" ? "3" : type, id, body);
    }

    _onBinary(data) {
      const b = this._binary;
      if (!b) return;
      b.parts.push(data);
      if (b.parts.length < b.need) return;
      this._binary = null;
      let body;
      try {
        body = reconstruct(b.body, b.parts);
      } catch (_) {
        this._end("parse error");
        return;
      }
      if (b.nsp === this.nsp) this._dispatch(b.type, b.id, body);
    }

    _dispatch(type, id, body) {
      if (type === "0") {
        this.connected = true;
        this.id = body && body.sid;
        const attempts = this._attempts;
        this._attempts = 0;
        if (attempts > 0) this.io.emitReserved("reconnect", attempts);
        // What was emitted while offline goes first, then the "connect" listeners run.
        const buffered = this._buffer;
        this._buffer = [];
        for (const p of buffered) this._send(p.frames);
        this.emitReserved("connect");
      } else if (type === "4") {
        // Refused by the server: no reconnection (socket.connect() tries again).
        this._manual = true;
        this._attempts = 0;
        this._drop();
        const err = new Error((body && body.message) || "connect error");
        err.data = body && body.data;
        this.emitReserved("connect_error", err);
      } else if (type === "1") {
        this._manual = true;
        this._drop();
        this._lost("io server disconnect");
      } else if (type === "2" && Array.isArray(body) && body.length) {
        const args = body.slice();
        if (id !== "") {
          let answered = false;
          args.push((...reply) => {
            if (answered) return;
            answered = true;
            this._send(this._encode("3", id, reply));
          });
        }
        for (const fn of this._any.slice()) {
          try {
            fn.apply(this, args);
          } catch (e) {
            console.error(e);
          }
        }
        this.emitReserved(...args);
      } else if (type === "3" && id !== "" && Array.isArray(body)) {
        const n = Number(id);
        const a = this._acks.get(n);
        this._acks.delete(n);
        if (a) a.ok(...body);
      }
    }
  }

  function io(uri, opts) {
    if (uri && typeof uri === "object") {
      opts = uri;
      uri = undefined;
    }
    return new Socket(uri, opts || {});
  }
  io.connect = io;
  io.io = io;
  io.Socket = Socket;
  io.protocol = 5;
  window.io = io;
})();
