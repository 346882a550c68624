// wschat's own Socket.IO v5 client (Engine.IO v4 over HTTP long-polling and WebSocket), written
// for this project. The built-in chat page uses it, and the relay serves it at
// /socket.io/socket.io.js, where the npm server serves its client bundle, so that pages written for
// that bundle work unchanged:
//
//   <script src="/socket.io/socket.io.js"></script>
//   const socket = io();                 // or io("http://host:3001/nsp", { auth, query, ... })
//   socket.on("receive_message", (msg) => ...);
//   socket.emit("send_message", msg, (reply) => ...);
//
// What it has of socket.io-client v4's API: io(uri?, opts?) (also io.connect); options path,
// query, auth (an object, or a function given a callback), transports (default polling, then the
// upgrade to WebSocket, as socket.io-client: a proxy that blocks WebSocket leaves the socket on
// polling; ["websocket"] skips polling), upgrade, tryAllTransports, autoConnect, reconnection,
// reconnectionAttempts, reconnectionDelay, reconnectionDelayMax, randomizationFactor; sockets with
// on/once/off/removeAllListeners/listeners, onAny/prependAny/offAny/listenersAny, emit with an ack,
// timeout(ms).emit (the ack gets an error first), volatile, send, connect/open,
// disconnect/close, id, connected/disconnected/active, binary arguments (ArrayBuffer and typed
// arrays, both ways; base64 over polling), the events connect, connect_error (an Error with .data)
// and disconnect (with socket.io-client's reasons), and socket.io's reconnect_attempt, reconnect,
// reconnect_failed and ping; socket.io.engine with its transport (.name), id and the events
// upgrade and upgradeError. What it does not have: one connection shared by several namespaces
// (each socket has its own), Blob arguments, retries, connection state recovery, the
// outgoing-packet listeners, withCredentials and extraHeaders. As in socket.io-client, what is
// emitted while disconnected is sent on connect, before the "connect" listeners run.
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

  // --- Engine.IO transports ----------------------------------------------------------------
  // A transport hands each Engine.IO packet it receives (a string, or an ArrayBuffer for a binary
  // one) to this.h.packet, calls this.h.open once it can send, this.h.drain when it can send
  // again, and this.h.close(reason) once if it ends by itself (never after close or stop).
  // `writable` says whether send() may be called now; the socket buffers meanwhile.

  const SEP = "\x1e"; // the record separator between a polling body's packets

  function toBase64(v) {
    const bytes = v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(s);
  }

  function fromBase64(s) {
    const bin = atob(s);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes.buffer;
  }

  const encoder = new TextEncoder();
  const utf8Length = (s) => encoder.encode(s).length;

  // The session id of an open packet ("0{...}"), or null.
  function sidOf(packet) {
    if (typeof packet !== "string" || packet[0] !== "0") return null;
    try {
      const sid = JSON.parse(packet.slice(1)).sid;
      return typeof sid === "string" && sid ? sid : null;
    } catch (_) {
      return null;
    }
  }

  class WebSocketTransport {
    // Throws where the browser refuses the URL at once.
    constructor(url, h) {
      this.name = "websocket";
      this.h = h;
      this.writable = false;
      this._done = false;
      const ws = new WebSocket(url);
      ws.binaryType = "arraybuffer";
      this._ws = ws;
      ws.onopen = () => {
        if (this._done) return;
        this.writable = true;
        this.h.open();
      };
      ws.onmessage = (ev) => {
        if (!this._done) this.h.packet(ev.data);
      };
      ws.onclose = () => {
        if (this._done) return;
        const opened = this.writable;
        this._done = true;
        this.writable = false;
        this.h.close(opened ? "transport close" : "websocket error");
      };
    }
    send(packets) {
      for (const p of packets) this._ws.send(p);
    }
    // Ends it without reporting, after `rest` (packets still to go) if it is open; `tell` has no
    // use here (the close frame tells the relay).
    close(code = 1000, rest = []) {
      if (this._done) return;
      this._done = true;
      if (this.writable) for (const p of rest) this._ws.send(p);
      this.writable = false;
      try {
        this._ws.close(code);
      } catch (_) {}
    }
  }

  // HTTP long-polling: one GET held by the relay at a time, for what it sends, and one POST at a
  // time, for what this side sends (the relay refuses overlapping POSTs, as the reference does).
  let cacheBust = 0;
  class PollingTransport {
    constructor(url, h) {
      this.name = "polling";
      this.h = h;
      this.writable = false;
      this.sid = null;
      this._url = url;
      this._done = false;
      this._polling = false;
      this._posting = false;
      this._paused = false;
      this._onPaused = null;
      this._final = null; // the close POST, waiting for the POST in flight
      this._closeOnOpen = false; // closed during the handshake GET: close what it opens
      this._abort = new AbortController();
      this._poll();
    }
    _href() {
      const u = new URL(this._url);
      if (this.sid) u.searchParams.set("sid", this.sid);
      u.searchParams.set("t", Date.now().toString(36) + "." + (cacheBust++).toString(36));
      return u.toString();
    }
    // The body of a 200 answer; anything else is an error.
    _request(init) {
      return fetch(this._href(), { cache: "no-store", ...init }).then((r) => {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      });
    }
    _poll() {
      if (this._done || this._paused) return;
      this._polling = true;
      this._request({ signal: this._abort.signal }).then(
        (body) => {
          this._polling = false;
          if (this._done) {
            this._closeOpened(body);
            return;
          }
          for (const p of body.split(SEP)) {
            if (this._done) return;
            let packet = p;
            if (p[0] === "b") {
              try {
                packet = fromBase64(p.slice(1));
              } catch (_) {
                this._fail("parse error");
                return;
              }
            }
            // The handshake's open packet names the session the next requests belong to.
            const open = !this.sid && packet[0] === "0";
            if (open) {
              this.sid = sidOf(packet);
              if (!this.sid) {
                this._fail("parse error");
                return;
              }
              this.writable = true;
            }
            // A listener that throws must not stop the polling loop (socket.io-client runs them
            // apart from the transport for the same reason).
            try {
              this.h.packet(packet);
              if (open && !this._done) this.h.open();
            } catch (e) {
              console.error(e);
            }
          }
          if (this._paused) this._checkPaused();
          else this._poll();
        },
        () => {
          this._polling = false;
          this._fail("transport error");
        },
      );
    }
    // Closed while the handshake GET was under way: the session it opened is closed at once
    // (engine.io-client waits for the open packet for the same reason).
    _closeOpened(body) {
      if (!this._closeOnOpen || this.sid) return;
      this._closeOnOpen = false;
      this.sid = sidOf(body.split(SEP)[0]);
      if (this.sid) this._postLast(["1"]);
    }
    _post(packets) {
      this._posting = true;
      const body = packets.map((p) => (typeof p === "string" ? p : "b" + toBase64(p))).join(SEP);
      return this._request({ method: "POST", body, headers: { "Content-Type": "text/plain;charset=UTF-8" } }).finally(
        () => {
          this._posting = false;
          if (this._final) {
            const last = this._final;
            this._final = null;
            this._postLast(last);
          }
        },
      );
    }
    send(packets) {
      this.writable = false;
      this._post(packets).then(
        () => {
          if (this._done) return;
          this.writable = true;
          if (this._paused) this._checkPaused();
          else this.h.drain();
        },
        () => this._fail("transport error"),
      );
    }
    // No new request from now on; `fn` once none is in flight (for the upgrade).
    pause(fn) {
      this._paused = true;
      this._onPaused = fn;
      this._checkPaused();
    }
    _checkPaused() {
      if (this._paused && !this._polling && !this._posting && this._onPaused) {
        const fn = this._onPaused;
        this._onPaused = null;
        fn();
      }
    }
    // The upgrade did not happen after all: poll again.
    resume() {
      this._paused = false;
      this._onPaused = null;
      if (!this._done && !this._polling) this._poll();
    }
    _fail(reason) {
      if (this._done) return;
      this._done = true;
      this.writable = false;
      this._abort.abort();
      this.h.close(reason);
    }
    // Ends it without reporting. With `tell`, `rest` and a close packet ("1") go to the relay
    // first, after the POST in flight if there is one (no close packet when the relay ended it).
    // The GET in flight is left for the relay to answer (it does on the close packet): a GET
    // cut off would end the session at once, before the POST's packets were handled. Once the
    // close POST is answered (or after 10 s on a dead link) it is cut off all the same.
    close(code, rest = [], tell = true) {
      if (this._done) return;
      this._done = true;
      this.writable = false;
      if (!tell) {
        this._abort.abort();
        return;
      }
      setTimeout(() => this._abort.abort(), 10000);
      if (!this.sid) {
        // The handshake is under way: its answer names the session to close.
        this._closeOnOpen = this._polling;
        return;
      }
      const last = [...rest, "1"];
      if (this._posting) this._final = last;
      else this._postLast(last);
    }
    // The close POST; once it is answered, the GET still in flight is cut off.
    _postLast(packets) {
      const abort = () => this._abort.abort();
      this._post(packets).then(abort, abort);
    }
    // After an upgrade: the session goes on over the WebSocket, so no close packet.
    stop() {
      this.close(1000, [], false);
    }
  }

  class Socket extends Emitter {
    constructor(uri, opts = {}) {
      super();
      const u = new URL(absolute(uri));
      // The URL's path is the namespace, as in socket.io-client; the Engine.IO path is opts.path.
      this.nsp = u.pathname || "/";
      const engine = new URL(u.href);
      engine.protocol = u.protocol === "https:" || u.protocol === "wss:" ? "https:" : "http:";
      let path = opts.path || "/socket.io";
      if (!path.endsWith("/")) path += "/";
      engine.pathname = path;
      // opts.query, else the uri's own query (as socket.io-client).
      const query = opts.query
        ? new URLSearchParams(typeof opts.query === "string" ? opts.query : Object.entries(opts.query))
        : new URLSearchParams(u.search);
      query.set("EIO", "4");
      engine.search = query.toString();
      engine.hash = "";
      this._base = engine.toString();
      // socket.io-client's transports: the first is tried first; "websocket" after "polling" is
      // an upgrade (unless opts.upgrade is false); with tryAllTransports, a transport that fails
      // before the relay's handshake hands over to the next.
      const known = ["polling", "websocket"];
      this._transports = (opts.transports || known).filter((t) => known.includes(t));
      if (!this._transports.length) throw new Error("no transport among " + JSON.stringify(opts.transports));
      this._upgrade = opts.upgrade !== false;
      this._tryAll = opts.tryAllTransports === true;
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
      this._transport = null;
      this._probe = null;
      this._upgrading = false;
      this._wbuf = [];
      this.io.engine = new Emitter();
      this.io.engine.transport = null;
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
      if (this.connected || this._transport) return this;
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
      this._session = (this._session || 0) + 1;
      this._engineOpen = false;
      this._wsFailed = false;
      this._wbuf = [];
      this._start(0);
    }

    _engineUrl(name, sid) {
      const u = new URL(this._base);
      if (name === "websocket") u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
      u.searchParams.set("transport", name);
      if (sid) u.searchParams.set("sid", sid);
      return u.toString();
    }

    // The handlers of the transport in use: anything from another (an old one, a probe) is
    // ignored.
    _transportHandlers(t) {
      const mine = () => this._transport === t.self;
      return {
        packet: (p) => mine() && this._onFrame(p),
        open: () => mine() && this._flush(),
        drain: () => mine() && this._flush(),
        close: (reason) => mine() && this._transportClosed(reason, t.index),
      };
    }

    // Opens the session's transport number `index` of the list.
    _start(index) {
      this._binary = null;
      const ref = { self: null, index };
      const name = this._transports[index];
      const h = this._transportHandlers(ref);
      try {
        ref.self =
          name === "polling"
            ? new PollingTransport(this._engineUrl("polling"), h)
            : new WebSocketTransport(this._engineUrl("websocket"), h);
      } catch (e) {
        this._transport = null;
        this._failed(e);
        return;
      }
      this._transport = ref.self;
      this.io.engine.transport = ref.self;
    }

    // The transport in use ended by itself.
    _transportClosed(reason, index) {
      this._transport = null;
      this._binary = null;
      this._stopProbe();
      clearTimeout(this._deadTimer);
      if (this.connected) this._lost(reason);
      else if (!this._engineOpen && this._tryAll && index + 1 < this._transports.length) {
        // As engine.io-client drops the failed transport: no upgrade probe back to it either.
        if (this._transports[index] === "websocket") this._wsFailed = true;
        this._start(index + 1);
      }
      else this._failed(new Error(reason));
    }

    // Closes the transport without reporting it (the caller reports); `tell`: with a close
    // packet where the transport needs one (not when the relay ended the session).
    _drop(code = 1000, tell = true) {
      const t = this._transport;
      const rest = this._wbuf;
      this._transport = null;
      this._wbuf = [];
      this._binary = null;
      clearTimeout(this._deadTimer);
      this._stopProbe();
      if (t) t.close(code, rest, tell);
    }

    // Ends the connection with `reason` at once (a dead link's close handshake can take long),
    // then reconnects unless the user or the server ended it.
    _end(reason) {
      if (!this._transport) return;
      this._drop(reason === "ping timeout" ? 4000 : 1000, reason !== "transport close");
      if (this.connected) this._lost(reason);
      else this._failed(new Error(reason));
    }

    // --- the upgrade (polling, then WebSocket) ---------------------------------------------
    // As engine.io-client: a WebSocket with the session's id sends "2probe"; on "3probe" the
    // polling transport finishes its requests in flight, "5" goes over the WebSocket, and the
    // session carries on there. Until then what is sent waits; if the probe fails, polling
    // simply goes on.
    _startProbe(sid) {
      const main = this._transport;
      const ref = { self: null };
      const mine = () => this._probe === ref.self && this._transport === main;
      const fail = (why) => {
        if (!mine()) return;
        this._stopProbe();
        this.io.engine.emitReserved("upgradeError", new Error(why));
      };
      const h = {
        open: () => mine() && ref.self.send(["2probe"]),
        packet: (p) => {
          if (!mine() || this._upgrading) return;
          if (p !== "3probe") {
            fail("probe error");
            return;
          }
          this._upgrading = true;
          main.pause(() => {
            if (!mine()) return;
            const ws = ref.self;
            this._probe = null;
            this._upgrading = false;
            const handlers = { self: ws, index: this._transports.indexOf("websocket") };
            ws.h = this._transportHandlers(handlers);
            this._transport = ws;
            this.io.engine.transport = ws;
            ws.send(["5"]);
            main.stop();
            this.io.engine.emitReserved("upgrade", ws);
            this._flush();
          });
        },
        drain: () => {},
        close: () => fail("probe error"),
      };
      try {
        ref.self = new WebSocketTransport(this._engineUrl("websocket", sid), h);
      } catch (e) {
        this.io.engine.emitReserved("upgradeError", e);
        return;
      }
      this._probe = ref.self;
    }

    // Ends a probe in progress; the polling transport, if it was pausing for it, goes on.
    _stopProbe() {
      const probe = this._probe;
      if (!probe) return;
      this._probe = null;
      probe.close(1000);
      if (this._upgrading) {
        this._upgrading = false;
        if (this._transport && this._transport.resume) this._transport.resume();
        this._flush();
      }
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
        if (this._manual || this._transport) return;
        this.io.emitReserved("reconnect_attempt", attempt);
        this._open();
      }, ms);
    }

    _raw(data) {
      this._send([data]);
    }

    // Engine.IO packets to the relay: they wait while the transport cannot take them (a POST in
    // flight, an upgrade under way), and are dropped when there is no transport.
    _send(packets) {
      if (!this._transport) return;
      this._wbuf.push(...packets);
      this._flush();
    }

    // Over polling, a POST holds at most the relay's maxPayload (it answers a larger one 413):
    // the packets that do not fit go in the next POST, as engine.io-client splits its buffer.
    _flush() {
      const t = this._transport;
      if (!t || !t.writable || this._upgrading || !this._wbuf.length) return;
      let n = this._wbuf.length;
      if (t.name === "polling" && this._maxPayload > 0) {
        let size = 0;
        for (n = 0; n < this._wbuf.length; n++) {
          const p = this._wbuf[n];
          // Each packet's length in the body, with its separator; binary as "b" + base64.
          size += (typeof p === "string" ? utf8Length(p) : 1 + 4 * Math.ceil(p.byteLength / 3)) + 1;
          if (n > 0 && size > this._maxPayload) break;
        }
      }
      t.send(this._wbuf.splice(0, n));
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
        this._engineOpen = true;
        this._maxPayload = Number(open.maxPayload) || 0;
        this.io.engine.id = open.sid;
        this._pingBudget = open.pingInterval + open.pingTimeout;
        this._armDeadTimer();
        const session = this._session;
        const connect = (auth) => {
          if (this._session === session && this._transport)
            this._raw(this._prefix("0") + (auth ? JSON.stringify(auth) : ""));
        };
        if (typeof this.auth === "function") this.auth(connect);
        else connect(this.auth);
        const upgrades = Array.isArray(open.upgrades) ? open.upgrades : [];
        if (
          this._transport.name === "polling" &&
          this._upgrade &&
          !this._wsFailed &&
          this._transports.includes("websocket") &&
          upgrades.includes("websocket")
        )
          this._startProbe(open.sid);
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
