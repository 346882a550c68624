//! The low-level Socket.IO connection: one namespace over one Engine.IO session, driven by the
//! caller's task. It moves bytes between the sockets and the sans-IO core
//! ([`engineio::ClientSession`], [`socketio::PacketRef`], [`socketio::Reassembler`]) and hands each
//! received packet to a callback as borrowed raw JSON: nothing is allocated per received message
//! beyond what the reader shares out of the read buffer.
//!
//! This is what `wschat bench` drives for each of its connections; [`super::Client`] wraps it in a
//! task with channels for `send`.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde_json::Value;

use super::ClientError;
use super::http1::{HttpConn, Response};
use super::net::{NetOptions, connect};
use super::url::Endpoint;
use super::wsio::{WsIo, snippet};
use crate::proto::engineio::{
    self, ClientConfig, ClientEvent, ClientSession, ClientTransmit, CloseReason, Data, Transport,
    TransportKind, WsFrame,
};
use crate::proto::socketio::{self, PacketType, Reassembler};
use crate::wire::ws::Message;

/// Which transport to use, as socket.io-client's `transports` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportMode {
    /// WebSocket only (the original React app: `transports: ["websocket"]`).
    #[default]
    Websocket,
    /// HTTP long-polling only.
    Polling,
    /// Polling first, then upgrade to WebSocket (socket.io-client's default).
    Upgrade,
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The server (`http://host:port`; the path is not used, see `path`).
    pub endpoint: Endpoint,
    /// The Engine.IO path, `/socket.io/` by default.
    pub path: String,
    /// The namespace to CONNECT to, `/` by default.
    pub namespace: String,
    /// The CONNECT payload (`socket.handshake.auth` on the server).
    pub auth: Option<Value>,
    pub transport: TransportMode,
    /// TCP/TLS settings (connect timeout, source address, TLS config).
    pub net: NetOptions,
    /// Time for the whole handshake: TCP, TLS, Engine.IO open, (upgrade,) Socket.IO CONNECT.
    pub handshake_timeout: Duration,
    /// Largest message (WebSocket) or polling body accepted from the server.
    pub max_message: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            endpoint: Endpoint {
                tls: false,
                host: "127.0.0.1".into(),
                port: 3001,
                authority: "127.0.0.1:3001".into(),
                path: "/".into(),
                query: None,
            },
            path: "/socket.io/".into(),
            namespace: "/".into(),
            auth: None,
            transport: TransportMode::Websocket,
            net: NetOptions::default(),
            handshake_timeout: Duration::from_secs(20),
            max_message: 16 << 20,
        }
    }
}

/// What the handshake established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectInfo {
    /// The namespace connected to.
    pub namespace: String,
    /// The Socket.IO socket id (the CONNECT answer's `sid`).
    pub sid: String,
    /// The Engine.IO session id.
    pub engine_sid: String,
    /// The transport in use once connected: `websocket` or `polling`.
    pub transport: &'static str,
    /// The server's ping interval and timeout.
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
}

/// A packet received on the connected namespace, borrowed for the duration of the callback.
#[derive(Debug)]
pub enum Received<'a> {
    /// EVENT: the name, the raw JSON of the arguments (comma-separated, without the brackets, e.g.
    /// `{"room":"1"},2`; empty when there are none), and the ack id when the server wants an ack
    /// (answer with [`Conn::ack`]).
    Event {
        name: &'a str,
        args: &'a str,
        ack_id: Option<u64>,
    },
    /// ACK of one of our emits: its id and the raw JSON of the arguments (as for events).
    Ack { id: u64, args: &'a str },
    /// BINARY_EVENT or BINARY_ACK, reassembled with its attachments
    /// ([`socketio::Packet::args_with_binary`] puts the buffers back in place).
    Binary(&'a socketio::Packet),
}

type GetFuture =
    Pin<Box<dyn Future<Output = (Option<HttpConn>, Result<Response, ClientError>)> + Send>>;
type WsFuture = Pin<Box<dyn Future<Output = Result<WsIo, ClientError>> + Send>>;

/// The polling half: at most one GET and one POST in flight (the session never asks for more).
struct Polling {
    endpoint: Endpoint,
    net: NetOptions,
    max_body: usize,
    get_conn: Option<HttpConn>,
    post_conn: Option<HttpConn>,
    get: Option<GetFuture>,
    post: Option<GetFuture>,
    /// `queued` when the POST in flight was started: what it carries once it completes.
    post_covers: u64,
}

/// One Socket.IO connection (one namespace), driven by the caller.
pub struct Conn {
    session: ClientSession<Instant>,
    ws: Option<WsIo>,
    ws_opening: Option<WsFuture>,
    polling: Option<Box<Polling>>,
    endpoint: Endpoint,
    eio_path: Box<str>,
    net: NetOptions,
    max_message: usize,
    sio: SioState,
    next_ack: u64,
    /// Scratch for encoding outgoing packets (reused, so emits do not allocate).
    text: String,
    /// Packets queued so far, and how many of them are known to be written.
    queued: u64,
    written: u64,
    /// Why the session ended, as precisely as known.
    cause: Option<ClientError>,
    closed: bool,
    upgrading: bool,
    /// Packets that arrived with the CONNECT answer, before the caller had a callback.
    early: Vec<Early>,
    /// When something was last written (for the linger before DISCONNECT).
    last_write: Option<Instant>,
}

/// How a WebSocket read ended, for the IO that follows it.
enum AfterRead {
    Done,
    /// A close frame is queued: write it, then drop the WebSocket.
    CloseThenGone,
    /// The Socket.IO layer refused a packet: the connection ends.
    Protocol(ClientError),
}

/// Pause between the last write and the DISCONNECT of a clean close (see [`Conn::close`]).
const CLOSE_LINGER: Duration = Duration::from_millis(50);

/// An Engine.IO message that arrived with the CONNECT answer, before the caller had a callback;
/// it goes through the caller's handler on the first `recv`.
enum Early {
    Text(String),
    Binary(Vec<u8>),
}

/// What a connection does with each received Engine.IO message.
trait Handler {
    fn data(&mut self, sio: &mut SioState, data: Data<'_>) -> Result<(), ClientError>;
    /// A WebSocket read returned; `stamp` is when its data reached the socket (kernel clock).
    fn read_at(&mut self, _stamp: Option<SystemTime>) {}
}

/// The Socket.IO side of a connection: the namespace, its socket id, binary reassembly.
struct SioState {
    nsp: Box<str>,
    sid: Option<String>,
    reassembler: Reassembler,
}

/// Parse each message as a Socket.IO packet and hand it over as a [`Received`].
struct Parsed<'f, F>(&'f mut F);

impl<F: FnMut(Received<'_>)> Handler for Parsed<'_, F> {
    fn data(&mut self, sio: &mut SioState, data: Data<'_>) -> Result<(), ClientError> {
        on_data(sio, data, &mut *self.0)
    }
}

/// As [`Parsed`], with the kernel's receive time of the read that brought each packet.
struct Stamped<'f, F> {
    on: &'f mut F,
    stamp: Option<SystemTime>,
}

impl<F: FnMut(Received<'_>, Option<SystemTime>)> Handler for Stamped<'_, F> {
    fn data(&mut self, sio: &mut SioState, data: Data<'_>) -> Result<(), ClientError> {
        let stamp = self.stamp;
        let on = &mut *self.on;
        on_data(sio, data, &mut |r| on(r, stamp))
    }
    fn read_at(&mut self, stamp: Option<SystemTime>) {
        self.stamp = stamp;
    }
}

/// Hand each text message (a Socket.IO packet, untouched) to the callback; skip binary ones.
struct Raw<'f, F>(&'f mut F);

impl<F: FnMut(&str)> Handler for Raw<'_, F> {
    fn data(&mut self, _sio: &mut SioState, data: Data<'_>) -> Result<(), ClientError> {
        if let Data::Text(t) = data {
            (self.0)(t);
        }
        Ok(())
    }
}

/// During the handshake: the CONNECT answer is handled, everything after it is kept for later.
struct Handshaking<'a>(&'a mut Vec<Early>);

impl Handler for Handshaking<'_> {
    fn data(&mut self, sio: &mut SioState, data: Data<'_>) -> Result<(), ClientError> {
        if sio.sid.is_some() {
            self.0.push(match data {
                Data::Text(t) => Early::Text(t.to_string()),
                Data::Binary(b) => Early::Binary(b.into_owned()),
            });
            return Ok(());
        }
        on_data(sio, data, &mut |_| {})
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("nsp", &self.sio.nsp)
            .field("sid", &self.sio.sid)
            .field("transport", &self.session.transport())
            .field("closed", &self.closed)
            .finish()
    }
}

impl Conn {
    /// Connect: open the Engine.IO session, (upgrade,) CONNECT to the namespace, and wait for the
    /// answer. A refused namespace is [`ClientError::ConnectRefused`] with the server's message.
    pub async fn connect(opts: &ClientOptions) -> Result<(Conn, ConnectInfo), ClientError> {
        let fut = Conn::connect_inner(opts);
        match tokio::time::timeout(opts.handshake_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::ConnectTimeout {
                target: opts.endpoint.origin(),
                after: opts.handshake_timeout,
            }),
        }
    }

    async fn connect_inner(opts: &ClientOptions) -> Result<(Conn, ConnectInfo), ClientError> {
        let config = match opts.transport {
            TransportMode::Websocket => ClientConfig::websocket(),
            TransportMode::Polling => ClientConfig {
                transport: TransportKind::Polling,
                upgrade: false,
            },
            TransportMode::Upgrade => ClientConfig {
                transport: TransportKind::Polling,
                upgrade: true,
            },
        };
        let polling = (opts.transport != TransportMode::Websocket).then(|| {
            Box::new(Polling {
                endpoint: opts.endpoint.clone(),
                net: opts.net.clone(),
                max_body: opts.max_message,
                get_conn: None,
                post_conn: None,
                get: None,
                post: None,
                post_covers: 0,
            })
        });
        let mut conn = Conn {
            session: ClientSession::new(config, Instant::now()),
            ws: None,
            ws_opening: None,
            polling,
            endpoint: opts.endpoint.clone(),
            eio_path: opts.path.clone().into_boxed_str(),
            net: opts.net.clone(),
            max_message: opts.max_message,
            sio: SioState {
                nsp: opts.namespace.clone().into_boxed_str(),
                sid: None,
                reassembler: Reassembler::new(),
            },
            next_ack: 0,
            text: String::new(),
            queued: 0,
            written: 0,
            cause: None,
            closed: false,
            upgrading: opts.transport == TransportMode::Upgrade,
            early: Vec::new(),
            last_write: None,
        };
        conn.pump().await?;
        // The Engine.IO open, then CONNECT (protocol v5: the client connects every namespace,
        // including `/`), then its answer; with `Upgrade`, also wait for the upgrade to settle.
        let mut connect_sent = false;
        let mut early = Vec::new();
        loop {
            if !connect_sent && conn.session.is_open() {
                let packet = socketio::Packet::connect(&conn.sio.nsp, opts.auth.clone());
                conn.text.clear();
                conn.text.push('4');
                packet.encode(&mut conn.text);
                conn.send_text_packet().await?;
                connect_sent = true;
            }
            if conn.sio.sid.is_some() && !conn.upgrading {
                break;
            }
            conn.step(&mut Handshaking(&mut early)).await?;
        }
        conn.early = early;
        let handshake = conn.session.handshake().cloned();
        let info = ConnectInfo {
            namespace: conn.sio.nsp.to_string(),
            sid: conn.sio.sid.clone().unwrap_or_default(),
            engine_sid: handshake
                .as_ref()
                .map(|h| h.sid.clone())
                .unwrap_or_default(),
            transport: conn.transport_name(),
            ping_interval: handshake
                .as_ref()
                .map_or(Duration::ZERO, |h| h.ping_interval()),
            ping_timeout: handshake
                .as_ref()
                .map_or(Duration::ZERO, |h| h.ping_timeout()),
        };
        Ok((conn, info))
    }

    /// `websocket` or `polling`: where the traffic flows now.
    pub fn transport_name(&self) -> &'static str {
        match self.session.transport() {
            Transport::WebSocket => "websocket",
            _ => "polling",
        }
    }

    /// The namespace this connection is connected to.
    pub fn namespace(&self) -> &str {
        &self.sio.nsp
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The local address of the (WebSocket) connection.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.ws.as_ref().and_then(|w| w.stream().local_addr().ok())
    }

    /// Queue an EVENT `[event, <args_json>]`; `args_json` is raw JSON of the arguments,
    /// comma-separated without brackets (`{"a":1},"b"`), or empty. Call [`Conn::flush`] to write.
    pub fn emit(&mut self, event: &str, args_json: &str) -> Result<(), ClientError> {
        self.emit_inner(event, args_json, None)
    }

    /// Queue an EVENT that asks for an ack; returns the ack id the server will answer with.
    pub fn emit_with_ack(&mut self, event: &str, args_json: &str) -> Result<u64, ClientError> {
        let id = self.next_ack;
        self.next_ack += 1;
        self.emit_inner(event, args_json, Some(id))?;
        Ok(id)
    }

    fn emit_inner(
        &mut self,
        event: &str,
        args_json: &str,
        id: Option<u64>,
    ) -> Result<(), ClientError> {
        self.text.clear();
        self.text.push('4');
        socketio::encode_event_raw(&mut self.text, &self.sio.nsp, id, event, args_json);
        self.queue_text_packet()
    }

    /// Queue a Socket.IO packet already encoded by the caller, e.g. `2["send_message",{...}]` or
    /// `2/chat,7["x"]` (the caller writes the namespace and ack id; it is sent as it is, after the
    /// Engine.IO message type `4`). For senders that keep a template and patch it per message.
    pub fn queue_raw(&mut self, packet: &str) -> Result<(), ClientError> {
        if self.closed {
            return Err(self.closed_error());
        }
        self.queued += 1;
        if self.session.transport() == Transport::WebSocket
            && let Some(ws) = self.ws.as_mut()
        {
            ws.queue_text_parts(b"4", packet.as_bytes());
            return Ok(());
        }
        if !self.session.send_message(engineio::Text::from(packet)) {
            return Err(self.closed_error());
        }
        Ok(())
    }

    /// Answer an event that asked for an ack.
    pub fn ack(&mut self, id: u64, args_json: &str) -> Result<(), ClientError> {
        self.text.clear();
        self.text.push('4');
        socketio::encode_ack_raw(&mut self.text, &self.sio.nsp, id, args_json);
        self.queue_text_packet()
    }

    /// The next ack id [`Conn::emit_with_ack`] or [`Conn::emit_packet`] users should take.
    pub fn take_ack_id(&mut self) -> u64 {
        let id = self.next_ack;
        self.next_ack += 1;
        id
    }

    /// Queue any packet (e.g. a BINARY_EVENT built with [`socketio::Packet::event_with_binary`]);
    /// its namespace is replaced by the connection's.
    pub fn emit_packet(&mut self, mut packet: socketio::Packet) -> Result<(), ClientError> {
        packet.nsp = self.sio.nsp.to_string();
        for p in packet.to_engineio() {
            self.queue_engine_packet(p)?;
        }
        Ok(())
    }

    /// Sequence number of the last queued packet; compare with [`Conn::written`].
    pub fn queued(&self) -> u64 {
        self.queued
    }

    /// How many queued packets are known to be written: flushed to the WebSocket, or carried by
    /// a polling POST the server answered.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// `self.text` holds `4<socket.io packet>`: queue it.
    fn queue_text_packet(&mut self) -> Result<(), ClientError> {
        let r = self.queue_text_packet_inner();
        if self.text.capacity() > 4096 {
            // A big packet once does not make every idle connection keep a big scratch buffer.
            self.text = String::new();
        }
        r
    }

    fn queue_text_packet_inner(&mut self) -> Result<(), ClientError> {
        if self.closed {
            return Err(self.closed_error());
        }
        self.queued += 1;
        if self.session.transport() == Transport::WebSocket
            && let Some(ws) = self.ws.as_mut()
        {
            // The fast path: straight into the frame buffer, no Packet, no allocation.
            ws.queue_text(self.text.as_bytes());
            return Ok(());
        }
        let text: engineio::Text = std::sync::Arc::from(self.text.get(1..).unwrap_or_default());
        if !self.session.send_message(text) {
            return Err(self.closed_error());
        }
        Ok(())
    }

    fn queue_engine_packet(&mut self, p: engineio::Packet) -> Result<(), ClientError> {
        if self.closed {
            return Err(self.closed_error());
        }
        self.queued += 1;
        if !self.session.send(p) {
            return Err(self.closed_error());
        }
        Ok(())
    }

    async fn send_text_packet(&mut self) -> Result<(), ClientError> {
        self.queue_text_packet()?;
        self.flush().await
    }

    /// Write what is queued: WebSocket frames in one write; over polling, start the POST.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.pump_and_flush().await
    }

    /// When the caller must call [`Conn::handle_timeout`] (the dead-server check).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    /// Run the timers due at `now`; an error when the server is considered dead.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ClientError> {
        self.session.handle_timeout(now);
        self.drain_events()?;
        Ok(())
    }

    /// Wait for input (one socket read, or one polling response), hand every complete packet to
    /// `on`, answer pings, and return. An error ends the connection.
    pub async fn recv<F: FnMut(Received<'_>)>(&mut self, on: &mut F) -> Result<(), ClientError> {
        self.drive(&mut Parsed(on)).await
    }

    /// Like [`Conn::recv`], with the time the packet's data reached the socket by the kernel's
    /// clock, when the connection runs on WebSocket over plain TCP opened with
    /// [`NetOptions::rx_timestamps`](super::NetOptions::rx_timestamps) (else `None`).
    pub async fn recv_stamped<F: FnMut(Received<'_>, Option<SystemTime>)>(
        &mut self,
        on: &mut F,
    ) -> Result<(), ClientError> {
        self.drive(&mut Stamped { on, stamp: None }).await
    }

    /// Like [`Conn::recv`], but hands over every Engine.IO text message as it came, without
    /// parsing it as Socket.IO: `2["receive_message",{...}]` (events), `3[...]` or `37[...]`
    /// (acks), `1` (the server disconnected the namespace), `4{...}` (CONNECT_ERROR) — the
    /// cheapest receive path, for a caller that scans the packets itself (the load tester). Pings
    /// are still answered and a dead server still detected; binary messages are skipped.
    pub async fn recv_raw<F: FnMut(&str)>(&mut self, on: &mut F) -> Result<(), ClientError> {
        self.drive(&mut Raw(on)).await
    }

    async fn drive<H: Handler>(&mut self, h: &mut H) -> Result<(), ClientError> {
        if !self.early.is_empty() {
            for e in std::mem::take(&mut self.early) {
                let data = match &e {
                    Early::Text(t) => Data::Text(t),
                    Early::Binary(b) => Data::Binary(std::borrow::Cow::Borrowed(b)),
                };
                if let Err(e) = h.data(&mut self.sio, data) {
                    return Err(self.fail_protocol(e).await);
                }
            }
            return Ok(());
        }
        if self.closed {
            return Err(self.closed_error());
        }
        self.step(h).await
    }

    /// One round of IO.
    async fn step<H: Handler>(&mut self, h: &mut H) -> Result<(), ClientError> {
        // WebSocket only: the fast path, no select.
        if let Some(ws) = self.ws.as_mut()
            && ws.has_undecoded()
        {
            // Frames already buffered (they came with the handshake answer): no read needed.
            return self.after_ws_read(Ok(1), h).await;
        }
        if self.polling.is_none() && self.ws_opening.is_none() {
            let Some(ws) = self.ws.as_mut() else {
                return Err(self.closed_error());
            };
            let read = ws.read_some().await;
            return self.after_ws_read(read, h).await;
        }
        let now_polling = self.polling.is_some();
        enum Step {
            Ws(Result<usize, ClientError>),
            Get(Option<HttpConn>, Result<Response, ClientError>),
            Post(Option<HttpConn>, Result<Response, ClientError>),
            WsOpen(Result<WsIo, ClientError>),
        }
        impl Step {
            fn name(&self) -> &'static str {
                match self {
                    Step::Ws(_) => "ws read",
                    Step::Get(..) => "poll GET done",
                    Step::Post(..) => "poll POST done",
                    Step::WsOpen(_) => "ws open",
                }
            }
        }
        let step = {
            let ws = self.ws.as_mut();
            let polling = self.polling.as_mut();
            let (get, post) = match polling {
                Some(p) => (p.get.as_mut(), p.post.as_mut()),
                None => (None, None),
            };
            let opening = self.ws_opening.as_mut();
            if ws.is_none() && get.is_none() && post.is_none() && opening.is_none() {
                return Err(self.closed_error());
            }
            tokio::select! {
                r = async { ws.unwrap().read_some().await }, if ws.is_some() => Step::Ws(r),
                (c, r) = async { get.unwrap().await }, if get.is_some() => Step::Get(c, r),
                (c, r) = async { post.unwrap().await }, if post.is_some() => Step::Post(c, r),
                r = async { opening.unwrap().await }, if opening.is_some() => Step::WsOpen(r),
            }
        };
        let _ = now_polling;
        tracing::trace!(step = step.name(), "io");
        match step {
            Step::Ws(r) => self.after_ws_read(r, h).await,
            Step::Get(c, r) => {
                let now = Instant::now();
                if let Some(p) = self.polling.as_mut() {
                    p.get = None;
                    p.get_conn = c;
                }
                match r.and_then(check_ok) {
                    Ok(resp) => {
                        let body = match std::str::from_utf8(&resp.body) {
                            Ok(b) => b,
                            Err(e) => {
                                self.cause.get_or_insert(ClientError::Protocol(format!(
                                    "polling response is not UTF-8 (byte {})",
                                    e.valid_up_to()
                                )));
                                self.session.handle_poll_failed(now);
                                self.drain_events()?;
                                return self.pump_and_flush().await;
                            }
                        };
                        match self.session.handle_poll_response(body, now) {
                            Ok(datas) => {
                                for d in datas {
                                    if let Err(e) = h.data(&mut self.sio, d) {
                                        return Err(self.fail_protocol(e).await);
                                    }
                                }
                            }
                            Err(e) => {
                                self.cause.get_or_insert(ClientError::Protocol(format!(
                                    "Engine.IO: {e}"
                                )));
                            }
                        }
                    }
                    Err(e) => {
                        self.cause.get_or_insert(e);
                        self.session.handle_poll_failed(now);
                    }
                }
                self.drain_events()?;
                self.pump_and_flush().await
            }
            Step::Post(c, r) => {
                let now = Instant::now();
                let mut covers = 0;
                if let Some(p) = self.polling.as_mut() {
                    p.post = None;
                    p.post_conn = c;
                    covers = p.post_covers;
                }
                let ok = match r.and_then(check_ok) {
                    Ok(_) => {
                        self.written = self.written.max(covers);
                        self.last_write = Some(now);
                        true
                    }
                    Err(e) => {
                        self.cause.get_or_insert(e);
                        false
                    }
                };
                self.session.handle_post_response(ok, now);
                self.drain_events()?;
                self.pump_and_flush().await
            }
            Step::WsOpen(r) => {
                self.ws_opening = None;
                let now = Instant::now();
                match r {
                    Ok(ws) => {
                        self.ws = Some(ws);
                        self.session.handle_ws_open(now);
                    }
                    Err(e) => {
                        if self.session.transport() == Transport::WebSocket {
                            self.cause.get_or_insert(e);
                        } else {
                            tracing::debug!("upgrade to WebSocket failed: {e}");
                        }
                        self.session.handle_ws_closed(now);
                    }
                }
                self.drain_events()?;
                self.pump_and_flush().await
            }
        }
    }

    async fn after_ws_read<H: Handler>(
        &mut self,
        read: Result<usize, ClientError>,
        h: &mut H,
    ) -> Result<(), ClientError> {
        let now = Instant::now();
        match self.decode_ws_read(read, h, now) {
            AfterRead::Done => {}
            AfterRead::CloseThenGone => {
                if let Some(ws) = self.ws.as_mut() {
                    let _ = ws.flush().await;
                }
                self.ws_gone(now);
            }
            AfterRead::Protocol(e) => return Err(self.fail_protocol(e).await),
        }
        self.drain_events()?;
        self.pump_and_flush().await
    }

    /// Everything a WebSocket read brought: every complete message goes through the session and
    /// `h`; pings and close frames are answered (queued: the caller writes them).
    fn decode_ws_read<H: Handler>(
        &mut self,
        read: Result<usize, ClientError>,
        h: &mut H,
        now: Instant,
    ) -> AfterRead {
        match read {
            Ok(0) => {
                self.cause.get_or_insert(ClientError::Closed {
                    during: "connected",
                });
                self.ws_gone(now);
            }
            Ok(_) => {
                h.read_at(self.ws.as_ref().and_then(WsIo::last_rx_stamp));
                while let Some(ws) = self.ws.as_mut() {
                    let msg = match ws.decode() {
                        Ok(Some(m)) => m,
                        Ok(None) => break,
                        Err(e) => {
                            ws.queue_close(Some(e.close_code()), "");
                            self.cause.get_or_insert(ClientError::WebSocket(e));
                            return AfterRead::CloseThenGone;
                        }
                    };
                    let data = match &msg {
                        Message::Text(t) => match self.session.handle_ws_text(t.as_str(), now) {
                            Ok(d) => d,
                            Err(e) => {
                                self.cause.get_or_insert(ClientError::Protocol(format!(
                                    "Engine.IO: {e}"
                                )));
                                None
                            }
                        },
                        Message::Binary(b) => self.session.handle_ws_binary(b, now),
                        Message::Ping(p) => {
                            ws.queue_pong(p);
                            None
                        }
                        Message::Pong(_) => None,
                        Message::Close(c) => {
                            // Answer with the same code (RFC 6455 §5.5.1) and end.
                            ws.queue_close(c.as_ref().map(|(code, _)| *code), "");
                            self.cause.get_or_insert(ClientError::Closed {
                                during: "connected",
                            });
                            return AfterRead::CloseThenGone;
                        }
                    };
                    if let Some(d) = data
                        && let Err(e) = h.data(&mut self.sio, d)
                    {
                        return AfterRead::Protocol(e);
                    }
                }
            }
            Err(e) => {
                self.cause.get_or_insert(e);
                self.ws_gone(now);
            }
        }
        AfterRead::Done
    }

    /// The WebSocket's socket, when the connection can be driven by a caller's own readiness loop
    /// with [`Conn::try_recv_stamped`] and [`Conn::try_flush`]: open on WebSocket alone over
    /// plain TCP, with nothing left over from the handshake.
    pub fn fast_fd(&self) -> Option<std::os::fd::RawFd> {
        if self.closed
            || self.polling.is_some()
            || self.ws_opening.is_some()
            || !self.early.is_empty()
            || self.session.transport() != Transport::WebSocket
        {
            return None;
        }
        match self.ws.as_ref()?.stream() {
            super::net::Stream::Plain(tcp) => Some(std::os::fd::AsRawFd::as_raw_fd(tcp)),
            super::net::Stream::Tls(_) => None,
        }
    }

    /// As [`Conn::recv_stamped`], without waiting: one non-blocking read and every packet in it.
    /// `Ok(None)` when there was nothing to read, else whether the read filled its buffer (more
    /// may be waiting). What it queued (pongs) is written by [`Conn::try_flush`]. Only for a
    /// connection [`Conn::fast_fd`] accepts.
    pub fn try_recv_stamped<F: FnMut(Received<'_>, Option<SystemTime>)>(
        &mut self,
        on: &mut F,
    ) -> Result<Option<bool>, ClientError> {
        if self.closed {
            return Err(self.closed_error());
        }
        let Some(ws) = self.ws.as_mut() else {
            return Err(self.closed_error());
        };
        let (read, full) = if ws.has_undecoded() {
            (Ok(1), false)
        } else {
            match ws.try_read_some() {
                Ok(None) => return Ok(None),
                Ok(Some((n, full))) => (Ok(n), full),
                Err(e) => (Err(e), false),
            }
        };
        let now = Instant::now();
        match self.decode_ws_read(read, &mut Stamped { on, stamp: None }, now) {
            AfterRead::Done => {}
            AfterRead::CloseThenGone => {
                if let Some(ws) = self.ws.as_mut() {
                    let _ = ws.try_flush();
                }
                self.ws_gone(now);
            }
            AfterRead::Protocol(e) => {
                self.cause = Some(e.clone());
                self.session.close(now);
                let _ = self.try_flush();
                self.closed = true;
                return Err(e);
            }
        }
        self.drain_events()?;
        Ok(Some(full))
    }

    /// Write what is queued without waiting: `Ok(true)` when all of it went, `Ok(false)` when the
    /// socket is full (call again once it is writable). Only for a connection [`Conn::fast_fd`]
    /// accepts.
    pub fn try_flush(&mut self) -> Result<bool, ClientError> {
        while let Some(t) = self.session.poll_transmit() {
            match t {
                ClientTransmit::Ws(packet) => self.queue_ws(packet),
                ClientTransmit::CloseWs => {
                    if let Some(mut ws) = self.ws.take() {
                        ws.queue_close(Some(1000), "");
                        let _ = ws.try_flush();
                    }
                }
                other => {
                    return Err(ClientError::Protocol(format!(
                        "Engine.IO asked for {other:?} on a WebSocket-only connection"
                    )));
                }
            }
        }
        let Some(ws) = self.ws.as_mut() else {
            return Ok(true);
        };
        if ws.pending_write() == 0 {
            return Ok(true);
        }
        self.last_write = Some(Instant::now());
        match ws.try_flush() {
            Ok(done) => {
                if done {
                    self.written = self.queued;
                }
                Ok(done)
            }
            Err(e) => Err(self.fail_transport(e)),
        }
    }

    /// Perform the session's transmits and write what they queued on the WebSocket.
    async fn pump_and_flush(&mut self) -> Result<(), ClientError> {
        self.pump().await?;
        if let Some(ws) = self.ws.as_mut()
            && ws.pending_write() > 0
            && let Err(e) = {
                self.last_write = Some(Instant::now());
                ws.flush().await
            }
        {
            if self.session.transport() == Transport::WebSocket {
                return Err(self.fail_transport(e));
            }
            // The upgrade probe socket failed: the session stays on polling.
            self.ws = None;
            self.session.handle_ws_closed(Instant::now());
            self.drain_events()?;
            return self.pump().await;
        }
        if self.session.transport() == Transport::WebSocket && self.ws.is_some() {
            self.written = self.queued;
        }
        Ok(())
    }

    fn ws_gone(&mut self, now: Instant) {
        self.ws = None;
        self.session.handle_ws_closed(now);
    }

    /// Perform what the session asks for.
    async fn pump(&mut self) -> Result<(), ClientError> {
        while let Some(t) = self.session.poll_transmit() {
            tracing::trace!(transmit = ?t, "engine.io transmit");
            match t {
                ClientTransmit::PollGet => {
                    let Some(p) = self.polling.as_mut() else {
                        continue;
                    };
                    let target = self.endpoint.engineio_target(
                        &self.eio_path,
                        "polling",
                        self.session.sid(),
                    );
                    let fut = request(
                        p.get_conn.take(),
                        p.endpoint.clone(),
                        p.net.clone(),
                        p.max_body,
                        "GET",
                        target,
                        None,
                    );
                    p.get = Some(Box::pin(fut));
                }
                ClientTransmit::PollPost(body) => {
                    let Some(p) = self.polling.as_mut() else {
                        continue;
                    };
                    let target = self.endpoint.engineio_target(
                        &self.eio_path,
                        "polling",
                        self.session.sid(),
                    );
                    if p.post.is_some() {
                        // The session never asks for two; finish the first (the close `1`).
                        if let Some(f) = p.post.take() {
                            let (c, _) = f.await;
                            p.post_conn = c;
                        }
                    }
                    p.post_covers = self.queued;
                    let fut = request(
                        p.post_conn.take(),
                        p.endpoint.clone(),
                        p.net.clone(),
                        p.max_body,
                        "POST",
                        target,
                        Some(body.into_bytes()),
                    );
                    p.post = Some(Box::pin(fut));
                }
                ClientTransmit::OpenWs => {
                    let target = self.endpoint.engineio_target(
                        &self.eio_path,
                        "websocket",
                        self.session.sid(),
                    );
                    let ep = self.endpoint.clone();
                    let net = self.net.clone();
                    let max = self.max_message;
                    if self.polling.is_none() {
                        // The first transport: open it now (nothing else can happen meanwhile).
                        match WsIo::connect(&ep, &target, &net, max).await {
                            Ok(ws) => {
                                self.ws = Some(ws);
                                self.session.handle_ws_open(Instant::now());
                            }
                            Err(e) => {
                                self.session.handle_ws_closed(Instant::now());
                                self.closed = true;
                                return Err(e);
                            }
                        }
                    } else {
                        self.ws_opening = Some(Box::pin(async move {
                            WsIo::connect(&ep, &target, &net, max).await
                        }));
                    }
                }
                ClientTransmit::Ws(packet) => self.queue_ws(packet),
                ClientTransmit::CloseWs => {
                    if let Some(mut ws) = self.ws.take() {
                        ws.queue_close(Some(1000), "");
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.flush()).await;
                    }
                    self.ws_opening = None;
                }
            }
        }
        Ok(())
    }

    /// Queue one Engine.IO packet on the WebSocket.
    fn queue_ws(&mut self, packet: engineio::Packet) {
        if let Some(ws) = self.ws.as_mut() {
            match packet.encode_ws(&mut self.text) {
                WsFrame::Text(t) => ws.queue_text(t.as_bytes()),
                WsFrame::Binary(b) => ws.queue_binary(b),
            }
        }
    }

    /// Session events: open, upgrade progress, close.
    fn drain_events(&mut self) -> Result<(), ClientError> {
        while let Some(ev) = self.session.poll_event() {
            match ev {
                ClientEvent::Opened(h) => {
                    tracing::debug!(sid = %h.sid, "Engine.IO session open");
                }
                ClientEvent::Upgrading => {
                    tracing::debug!("upgrade probe answered; pausing polling")
                }
                ClientEvent::Upgraded => {
                    tracing::debug!("upgraded to WebSocket");
                    self.upgrading = false;
                    // Polling is over: drop its connections.
                    self.polling = None;
                }
                ClientEvent::UpgradeFailed => {
                    tracing::debug!("upgrade failed; staying on polling");
                    self.upgrading = false;
                }
                ClientEvent::Closed(reason) => {
                    self.closed = true;
                    let err = self.error_for(reason);
                    self.cause = Some(err);
                }
            }
        }
        if self.closed {
            return Err(self.closed_error());
        }
        Ok(())
    }

    fn error_for(&mut self, reason: CloseReason) -> ClientError {
        match reason {
            CloseReason::PingTimeout => {
                let after = self
                    .session
                    .handshake()
                    .map_or(Duration::ZERO, |h| h.ping_interval() + h.ping_timeout());
                ClientError::PingTimeout { after }
            }
            CloseReason::ForcedClose => ClientError::ClientClosed,
            CloseReason::ServerShutdown => ClientError::SessionClosed,
            CloseReason::TransportClose | CloseReason::TransportError | CloseReason::ParseError => {
                self.cause.take().unwrap_or(ClientError::SessionClosed)
            }
        }
    }

    fn closed_error(&self) -> ClientError {
        self.cause.clone().unwrap_or(ClientError::Closed {
            during: "connected",
        })
    }

    fn fail_transport(&mut self, e: ClientError) -> ClientError {
        self.cause.get_or_insert(e);
        self.ws = None;
        self.session.handle_ws_closed(Instant::now());
        let _ = self.drain_events();
        self.closed = true;
        self.closed_error()
    }

    /// A packet the Socket.IO layer cannot accept ends the connection (as the reference does).
    async fn fail_protocol(&mut self, e: ClientError) -> ClientError {
        self.cause = Some(e.clone());
        self.session.close(Instant::now());
        let _ = self.pump().await;
        if let Some(ws) = self.ws.as_mut() {
            let _ = tokio::time::timeout(Duration::from_millis(500), ws.flush()).await;
        }
        self.closed = true;
        self.cause = Some(e.clone());
        e
    }

    /// Leave cleanly: DISCONNECT the namespace, close the Engine.IO session, close the WebSocket
    /// (waiting briefly for the server's close frame). Everything queued before is written first.
    pub async fn close(&mut self) -> Result<(), ClientError> {
        if self.closed {
            return Ok(());
        }
        let _ = self.flush().await;
        self.finish_posts().await;
        // The reference server dispatches events on the next tick and drops those whose socket
        // was disconnected meanwhile: a DISCONNECT read together with the last events would lose
        // them. Let the server read what was written before saying goodbye.
        if let Some(t) = self.last_write {
            tokio::time::sleep_until((t + CLOSE_LINGER).into()).await;
        }
        let disconnect = socketio::Packet::disconnect(&self.sio.nsp);
        self.text.clear();
        self.text.push('4');
        disconnect.encode(&mut self.text);
        let _ = self.queue_text_packet();
        let _ = self.flush().await;
        self.finish_posts().await;
        self.session.close(Instant::now());
        let _ = self.pump().await;
        if let Some(p) = self.polling.as_mut()
            && let Some(post) = p.post.take()
        {
            let _ = tokio::time::timeout(Duration::from_secs(2), post).await;
        }
        if let Some(mut ws) = self.ws.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(Some(1000), "")).await;
        }
        while self.session.poll_event().is_some() {}
        self.closed = true;
        self.cause = Some(ClientError::ClientClosed);
        Ok(())
    }
}

impl Conn {
    /// Over polling, let the POSTs in flight (and those they lead to) finish.
    async fn finish_posts(&mut self) {
        while let Some(p) = self.polling.as_mut() {
            let Some(post) = p.post.take() else { break };
            let (c, r) = post.await;
            p.post_conn = c;
            let ok = r.and_then(check_ok).is_ok();
            if ok {
                self.written = self.written.max(p.post_covers);
                self.last_write = Some(Instant::now());
            }
            self.session.handle_post_response(ok, Instant::now());
            if self.pump().await.is_err() {
                break;
            }
        }
    }
}

/// Socket.IO handling of one Engine.IO message (a free function so the borrow of the input and
/// of the connection's fields stay apart).
fn on_data<F: FnMut(Received<'_>)>(
    sio: &mut SioState,
    data: Data<'_>,
    on: &mut F,
) -> Result<(), ClientError> {
    let SioState {
        nsp,
        sid,
        reassembler,
    } = sio;
    let nsp: &str = nsp;
    let text = match data {
        Data::Text(t) => t,
        Data::Binary(b) => {
            let bytes = Bytes::copy_from_slice(&b);
            let done = reassembler
                .push_binary(bytes)
                .map_err(|e| ClientError::Protocol(format!("Socket.IO: {e}")))?;
            if let Some(packet) = done
                && packet.nsp == nsp
            {
                on(Received::Binary(&packet));
            }
            return Ok(());
        }
    };
    let p = socketio::PacketRef::parse(text)
        .map_err(|e| ClientError::Protocol(format!("Socket.IO: {e}")))?;
    if p.nsp() != nsp {
        // Another namespace on the same session: not ours.
        return Ok(());
    }
    match p.packet_type() {
        PacketType::Connect => {
            let socket_sid = p
                .data()
                .and_then(|d| serde_json::from_str::<Value>(d).ok())
                .and_then(|v| v.get("sid").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_default();
            *sid = Some(socket_sid);
        }
        PacketType::ConnectError => {
            // `{"message": ..., "data"?: ...}`, or a bare string (v4 servers).
            let v: Value = p
                .data()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or(Value::Null);
            let message = match &v {
                Value::String(s) => s.clone(),
                Value::Object(o) => o
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                _ => String::new(),
            };
            let data = v.get("data").map(Value::to_string);
            return Err(ClientError::ConnectRefused {
                namespace: nsp.to_string(),
                message,
                data,
            });
        }
        PacketType::Disconnect => {
            return Err(ClientError::ServerDisconnect {
                namespace: nsp.to_string(),
            });
        }
        PacketType::Event => {
            on(Received::Event {
                name: p.event().unwrap_or_default(),
                args: p.args(),
                ack_id: p.id(),
            });
        }
        PacketType::Ack => {
            if let Some(id) = p.id() {
                on(Received::Ack { id, args: p.args() });
            }
        }
        PacketType::BinaryEvent | PacketType::BinaryAck => {
            // The header; the packet is complete once its attachments arrived.
            if let Some(packet) = reassembler
                .push_ref(&p)
                .map_err(|e| ClientError::Protocol(format!("Socket.IO: {e}")))?
            {
                on(Received::Binary(&packet));
            }
        }
    }
    Ok(())
}

fn check_ok(resp: Response) -> Result<Response, ClientError> {
    if resp.status != 200 {
        return Err(ClientError::HttpStatus {
            status: resp.status,
            reason: resp.reason.clone(),
            body: snippet(&resp.body),
        });
    }
    Ok(resp)
}

/// One polling request on a kept-alive connection (opened or reopened as needed); the connection
/// comes back for the next request.
async fn request(
    conn: Option<HttpConn>,
    ep: Endpoint,
    net: NetOptions,
    max_body: usize,
    method: &'static str,
    target: String,
    body: Option<Vec<u8>>,
) -> (Option<HttpConn>, Result<Response, ClientError>) {
    let mut conn = match conn {
        Some(c) if c.reusable() => c,
        _ => match connect(&ep, &net).await {
            Ok(s) => HttpConn::new(s, &ep.authority, max_body),
            Err(e) => return (None, Err(e)),
        },
    };
    let r = conn.request(method, &target, body.as_deref()).await;
    let keep = r.is_ok() && conn.reusable();
    (keep.then_some(conn), r)
}

#[cfg(test)]
mod tests {
    //! The driver against a scripted in-process server speaking the wire format through the
    //! shared core (wire::http, wire::ws), so each behaviour is pinned without node.

    use super::*;
    use crate::wire::http as wh;
    use crate::wire::ws::{self, Opcode, Role};
    use bytes::BytesMut;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// The server end of one WebSocket connection.
    struct Peer {
        s: TcpStream,
        buf: BytesMut,
        reader: ws::Reader,
    }

    impl Peer {
        async fn accept(l: &TcpListener) -> Peer {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = BytesMut::new();
            let (key, len) = loop {
                s.read_buf(&mut buf).await.unwrap();
                if let Some((head, len)) = wh::RequestHead::parse(&buf).unwrap() {
                    assert!(
                        head.path
                            .starts_with("/socket.io/?EIO=4&transport=websocket"),
                        "{}",
                        head.path
                    );
                    break (head.websocket_key().unwrap().to_string(), len);
                }
            };
            let _ = buf.split_to(len);
            s.write_all(wh::server_response_101(&wh::accept_key(&key), None, None).as_bytes())
                .await
                .unwrap();
            Peer {
                s,
                buf,
                reader: ws::Reader::new(Role::Server, 1 << 20),
            }
        }

        async fn send(&mut self, text: &str) {
            let mut out = Vec::new();
            ws::encode_frame(&mut out, true, Opcode::Text, None, text.as_bytes());
            self.s.write_all(&out).await.unwrap();
        }

        async fn send_binary(&mut self, data: &[u8]) {
            let mut out = Vec::new();
            ws::encode_frame(&mut out, true, Opcode::Binary, None, data);
            self.s.write_all(&out).await.unwrap();
        }

        /// The next text message from the client (masked frames, unmasked by the reader).
        async fn recv(&mut self) -> String {
            loop {
                if let Some(m) = self.reader.decode(&mut self.buf).unwrap() {
                    match m {
                        ws::Message::Text(t) => return t.as_str().to_string(),
                        other => return format!("{other:?}"),
                    }
                }
                assert!(
                    self.s.read_buf(&mut self.buf).await.unwrap() > 0,
                    "client closed"
                );
            }
        }

        /// Open the Engine.IO session and answer the CONNECT of `/`.
        async fn open(l: &TcpListener, ping_interval: u64, ping_timeout: u64) -> Peer {
            let mut p = Peer::accept(l).await;
            p.send(&format!(
                r#"0{{"sid":"eio1","upgrades":[],"pingInterval":{ping_interval},"pingTimeout":{ping_timeout},"maxPayload":1000000}}"#
            ))
            .await;
            assert_eq!(p.recv().await, "40");
            p.send(r#"40{"sid":"sock1"}"#).await;
            p
        }
    }

    async fn listener() -> (TcpListener, ClientOptions) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let opts = ClientOptions {
            endpoint: Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
            handshake_timeout: Duration::from_secs(5),
            ..ClientOptions::default()
        };
        (l, opts)
    }

    #[tokio::test]
    async fn connects_answers_pings_and_hands_over_events_as_raw_json() {
        let (l, opts) = listener().await;
        let server = tokio::spawn(async move {
            let mut p = Peer::open(&l, 25000, 20000).await;
            // Several packets in one write: the client takes them from one read.
            p.send("2").await;
            p.send(r#"42["receive_message",{"room":"1","message":"Olá"},2]"#)
                .await;
            p.send(r#"42/other,["not_ours"]"#).await;
            p.send(r#"427["needs_ack"]"#).await;
            assert_eq!(p.recv().await, "3", "pong");
            assert_eq!(p.recv().await, r#"42["hello","x"]"#);
            assert_eq!(p.recv().await, r#"420["with_ack",{"a":1}]"#);
            p.send(r#"430[{"ok":true}]"#).await;
            assert_eq!(p.recv().await, r#"437["done"]"#);
            p
        });
        let (mut conn, info) = Conn::connect(&opts).await.unwrap();
        assert_eq!(
            (info.sid.as_str(), info.engine_sid.as_str(), info.transport),
            ("sock1", "eio1", "websocket")
        );
        let mut seen = Vec::new();
        while seen.len() < 2 {
            conn.recv(&mut |r| seen.push(format!("{r:?}")))
                .await
                .unwrap();
        }
        assert_eq!(
            seen,
            [
                r#"Event { name: "receive_message", args: "{\"room\":\"1\",\"message\":\"Olá\"},2", ack_id: None }"#,
                r#"Event { name: "needs_ack", args: "", ack_id: Some(7) }"#,
            ]
        );
        conn.emit("hello", r#""x""#).unwrap();
        let id = conn.emit_with_ack("with_ack", r#"{"a":1}"#).unwrap();
        conn.flush().await.unwrap();
        assert_eq!(conn.written(), conn.queued());
        let mut acks = Vec::new();
        while acks.is_empty() {
            conn.recv(&mut |r| {
                if let Received::Ack { id, args } = r {
                    acks.push((id, args.to_string()));
                }
            })
            .await
            .unwrap();
        }
        assert_eq!(acks, [(id, r#"{"ok":true}"#.to_string())]);
        conn.ack(7, r#""done""#).unwrap();
        conn.flush().await.unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn the_non_blocking_path_reads_answers_pings_writes_and_sees_the_end() {
        let (l, opts) = listener().await;
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let mut p = Peer::open(&l, 25000, 20000).await;
            p.send("2").await;
            p.send(r#"42["receive_message",{"message":"Olá mundo!"}]"#)
                .await;
            assert_eq!(p.recv().await, "3", "pong");
            assert_eq!(p.recv().await, r#"420["send_message",{"room":"1"}]"#);
            p.send(r#"430[{"ok":true}]"#).await;
            go_rx.await.unwrap();
            // The server goes away: the next read reports it.
        });
        let (mut conn, _) = Conn::connect(&opts).await.unwrap();
        assert!(conn.fast_fd().is_some(), "WebSocket over plain TCP");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        let mut stamped = 0;
        let mut pump = async |conn: &mut Conn, seen: &mut Vec<String>, want: usize| {
            while seen.len() < want {
                assert!(Instant::now() < deadline, "nothing read: {seen:?}");
                let r = conn
                    .try_recv_stamped(&mut |r, stamp| {
                        stamped += usize::from(stamp.is_some());
                        seen.push(format!("{r:?}"));
                    })
                    .unwrap();
                if r.is_none() {
                    // Nothing yet: a non-blocking read never waits.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                assert!(conn.try_flush().unwrap(), "a pong fits the socket");
            }
        };
        pump(&mut conn, &mut seen, 1).await;
        let id = conn
            .emit_with_ack("send_message", r#"{"room":"1"}"#)
            .unwrap();
        assert!(conn.try_flush().unwrap());
        assert_eq!(conn.written(), conn.queued());
        pump(&mut conn, &mut seen, 2).await;
        assert_eq!(
            seen,
            [
                r#"Event { name: "receive_message", args: "{\"message\":\"Olá mundo!\"}", ack_id: None }"#.to_string(),
                format!(r#"Ack {{ id: {id}, args: "{{\"ok\":true}}" }}"#),
            ]
        );
        // No receive stamps were asked for.
        assert_eq!(stamped, 0);
        go_tx.send(()).unwrap();
        server.await.unwrap();
        let err = loop {
            assert!(
                Instant::now() < deadline,
                "the end of the stream was not seen"
            );
            match conn.try_recv_stamped(&mut |_, _| {}) {
                Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(e) => break e,
            }
        };
        assert!(matches!(err, ClientError::Closed { .. }), "{err:?}");
        assert!(conn.is_closed());
        assert!(conn.fast_fd().is_none());
    }

    #[tokio::test]
    async fn raw_path_hands_over_packets_untouched_and_sends_caller_encoded_packets() {
        let (l, opts) = listener().await;
        let server = tokio::spawn(async move {
            let mut p = Peer::open(&l, 25000, 20000).await;
            p.send(r#"42["receive_message",{"id":"m1"}]"#).await;
            p.send("2").await;
            p.send_binary(&[9]).await;
            p.send(r#"43[{"ok":true}]"#).await;
            assert_eq!(p.recv().await, "3");
            assert_eq!(p.recv().await, r#"42["send_message",{"id":"m2"}]"#);
            assert_eq!(p.recv().await, r#"427["send_message",{"id":"m3"}]"#);
        });
        let (mut conn, _) = Conn::connect(&opts).await.unwrap();
        let mut seen: Vec<String> = Vec::new();
        while seen.len() < 2 {
            conn.recv_raw(&mut |t| seen.push(t.to_string()))
                .await
                .unwrap();
        }
        assert_eq!(
            seen,
            [r#"2["receive_message",{"id":"m1"}]"#, r#"3[{"ok":true}]"#]
        );
        conn.queue_raw(r#"2["send_message",{"id":"m2"}]"#).unwrap();
        conn.queue_raw(r#"27["send_message",{"id":"m3"}]"#).unwrap();
        conn.flush().await.unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_server_that_stops_pinging_is_dead_after_interval_plus_timeout() {
        let (l, opts) = listener().await;
        let server = tokio::spawn(async move { Peer::open(&l, 100, 50).await });
        let (mut conn, _) = Conn::connect(&opts).await.unwrap();
        let _peer = server.await.unwrap();
        let start = Instant::now();
        let deadline = conn.poll_timeout().expect("a dead-server deadline");
        assert!(deadline <= start + Duration::from_millis(150));
        tokio::time::sleep_until(deadline.into()).await;
        let err = conn.handle_timeout(Instant::now()).unwrap_err();
        assert!(matches!(err, ClientError::PingTimeout { .. }), "{err}");
        assert!(err.to_string().contains("150ms"), "{err}");
        assert!(conn.is_closed());
    }

    #[tokio::test]
    async fn refused_namespace_is_a_typed_error_with_the_servers_message() {
        let (l, mut opts) = listener().await;
        opts.namespace = "/admin".into();
        opts.auth = Some(serde_json::json!({"token": "x"}));
        tokio::spawn(async move {
            let mut p = Peer::accept(&l).await;
            p.send(r#"0{"sid":"e","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#)
                .await;
            assert_eq!(p.recv().await, r#"40/admin,{"token":"x"}"#);
            p.send(r#"44/admin,{"message":"Not authorized","data":{"code":7}}"#)
                .await;
            let _ = p.recv().await;
        });
        let err = Conn::connect(&opts).await.unwrap_err();
        match &err {
            ClientError::ConnectRefused {
                namespace,
                message,
                data,
            } => {
                assert_eq!(
                    (namespace.as_str(), message.as_str()),
                    ("/admin", "Not authorized")
                );
                assert_eq!(data.as_deref(), Some(r#"{"code":7}"#));
            }
            other => panic!("{other}"),
        }
        assert_eq!(
            err.to_string(),
            "namespace /admin refused the connection: Not authorized"
        );
    }

    #[tokio::test]
    async fn binary_events_are_reassembled_and_events_sent_with_the_connect_answer_are_kept() {
        let (l, opts) = listener().await;
        tokio::spawn(async move {
            let mut p = Peer::accept(&l).await;
            p.send(r#"0{"sid":"e","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#)
                .await;
            assert_eq!(p.recv().await, "40");
            p.send(r#"40{"sid":"s"}"#).await;
            p.send(r#"42["welcome"]"#).await;
            p.send(r#"451-["file",{"name":"a","data":{"_placeholder":true,"num":0}}]"#)
                .await;
            p.send_binary(&[1, 2, 3]).await;
            let _ = p.recv().await;
        });
        let (mut conn, _) = Conn::connect(&opts).await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            conn.recv(&mut |r| match r {
                Received::Event { name, .. } => seen.push(name.to_string()),
                Received::Binary(p) => {
                    let args = p.args_with_binary().unwrap();
                    seen.push(format!(
                        "{} {:?} {:?}",
                        p.event_name().unwrap(),
                        args.len(),
                        p.attachments
                    ));
                }
                Received::Ack { .. } => {}
            })
            .await
            .unwrap();
        }
        assert_eq!(seen, ["welcome", "file 1 [b\"\\x01\\x02\\x03\"]"]);
    }

    #[tokio::test]
    async fn server_close_ends_the_connection_with_a_clear_error() {
        let (l, opts) = listener().await;
        tokio::spawn(async move {
            let mut p = Peer::open(&l, 25000, 20000).await;
            assert_eq!(p.recv().await, r#"42["bye"]"#);
            p.send("41").await;
        });
        let (mut conn, _) = Conn::connect(&opts).await.unwrap();
        conn.emit("bye", "").unwrap();
        conn.flush().await.unwrap();
        let err = loop {
            if let Err(e) = conn.recv(&mut |_| {}).await {
                break e;
            }
        };
        assert_eq!(err.to_string(), "the server disconnected namespace /");
    }

    #[tokio::test]
    async fn a_dropped_tcp_connection_is_reported_as_closed_by_the_server() {
        let (l, opts) = listener().await;
        tokio::spawn(async move {
            let p = Peer::open(&l, 25000, 20000).await;
            drop(p);
        });
        let (mut conn, _) = Conn::connect(&opts).await.unwrap();
        let err = loop {
            if let Err(e) = conn.recv(&mut |_| {}).await {
                break e;
            }
        };
        assert_eq!(
            err.to_string(),
            "the server closed the connection while connected"
        );
        assert!(matches!(
            conn.emit("x", ""),
            Err(ClientError::Closed { .. })
        ));
    }
}
