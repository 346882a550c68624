//! The Socket.IO v5 server layer on top of Engine.IO sessions: namespaces, sockets, CONNECT with
//! auth payloads, CONNECT_ERROR, events and acks (raw JSON, no tree on the fast path), binary
//! attachments (via `proto::socketio::Reassembler`), rooms (through each namespace's [`Adapter`]),
//! the connect timeout, and a pluggable application ([`SioApp`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;

use super::adapter::{Adapter, Broadcast, Delivery, LocalAdapter, Member, MemberId};
use super::engine::{EngineApp, Session, message_frame, new_id};
use super::metrics::Metrics;
use super::outbox::{CloseReason, PushError};
use super::wsconn;
use crate::proto::engineio::{self as eio, Data};
use crate::proto::socketio::{self as sio, PacketRef, PacketType, Reassembler};

/// A refused CONNECT: sent as CONNECT_ERROR `{"message":...,"data":...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRefusal {
    pub message: String,
    pub data: Option<Value>,
}

impl ConnectRefusal {
    pub fn new(message: impl Into<String>) -> Self {
        ConnectRefusal {
            message: message.into(),
            data: None,
        }
    }
}

/// One event from a client.
#[derive(Debug)]
pub struct Event<'a> {
    /// The event name.
    pub name: &'a str,
    /// The arguments as raw JSON, comma-separated, without brackets (`1,"2",{"3":[true]}`);
    /// placeholders stand where buffers were.
    pub args: Cow<'a, str>,
    /// The first argument's raw JSON.
    pub first_arg: Option<Cow<'a, str>>,
    /// The binary attachments (BINARY_EVENT), in placeholder order.
    pub attachments: Vec<Bytes>,
    /// The ack id, when the client asked for an ack.
    pub ack: Option<u64>,
}

/// A Socket.IO application: the chat, a test fixture, ...
pub trait SioApp: Send + Sync + 'static {
    /// Whether the namespace exists (a CONNECT to any other gets `Invalid namespace`).
    fn has_namespace(&self, nsp: &str) -> bool;
    /// Middleware: accept or refuse a CONNECT with its auth payload (raw JSON object, `{}` when
    /// absent). Runs before the CONNECT reply.
    fn authorize(&self, _nsp: &str, _auth: &str) -> Result<(), ConnectRefusal> {
        Ok(())
    }
    /// A socket connected (its CONNECT reply is already queued).
    fn on_connect(&self, _socket: &Arc<Socket>, _auth: &str) {}
    /// An event. `Err` closes the whole Engine.IO connection with that reason.
    fn on_event(&self, socket: &Arc<Socket>, event: Event<'_>) -> Result<(), CloseReason>;
    /// The socket left (client DISCONNECT, transport closed, server disconnect).
    fn on_disconnect(&self, _socket: &Arc<Socket>, _reason: &str) {}
}

/// A namespace: its name and its rooms.
pub struct Namespace {
    pub name: Arc<str>,
    pub adapter: Arc<dyn Adapter>,
}

/// One client's connection to one namespace.
pub struct Socket {
    /// The socket id sent in the CONNECT reply.
    pub id: Arc<str>,
    /// The id used in rooms.
    pub member_id: MemberId,
    pub namespace: Arc<Namespace>,
    session: Arc<Session>,
    rooms: Mutex<Vec<Box<str>>>,
    metrics: Arc<Metrics>,
}

/// Most namespaces a server keeps (a CONNECT to a new one past this is refused).
pub const MAX_NAMESPACES: usize = 1024;

/// Most rooms one socket may be in (bounded state per client).
pub const MAX_ROOMS_PER_SOCKET: usize = 1024;

impl Socket {
    /// The Engine.IO session this socket runs on.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    pub fn nsp(&self) -> &str {
        &self.namespace.name
    }

    fn frame(&self, text: &str) -> Bytes {
        message_frame(text.as_bytes())
    }

    /// Emit `event` with raw JSON arguments (comma-separated, no brackets) to this client.
    pub fn emit_raw(&self, event: &str, args_json: &str) {
        let mut text = String::with_capacity(event.len() + args_json.len() + self.nsp().len() + 8);
        sio::encode_event_raw(&mut text, self.nsp(), None, event, args_json);
        self.send(&[self.frame(&text)]);
    }

    /// Emit an event whose arguments may carry buffers (BINARY_EVENT when they do).
    pub fn emit_values(&self, event: &str, args: Vec<sio::BinValue>) {
        self.send_packet(&sio::Packet::event_with_binary(self.nsp(), event, args));
    }

    /// Answer an event's ack request with raw JSON arguments.
    pub fn ack_raw(&self, id: u64, args_json: &str) {
        let mut text = String::with_capacity(args_json.len() + self.nsp().len() + 24);
        sio::encode_ack_raw(&mut text, self.nsp(), id, args_json);
        self.send(&[self.frame(&text)]);
    }

    /// Answer an ack request with arguments that may carry buffers (BINARY_ACK when they do).
    pub fn ack_values(&self, id: u64, args: Vec<sio::BinValue>) {
        self.send_packet(&sio::Packet::ack_with_binary(self.nsp(), id, args));
    }

    /// Send a packet that carries raw JSON and attachments as they were received (placeholders
    /// kept): `event` re-emitted, or an ack (`ack = Some(id)`). Used to echo binary packets.
    pub fn send_raw_with_attachments(
        &self,
        ack: Option<u64>,
        event: Option<&str>,
        args_json: &str,
        attachments: &[Bytes],
    ) {
        if let Some(packet) = self.raw_packet(ack, event, args_json, attachments) {
            self.send_packet(&packet);
        }
    }

    /// A packet from raw JSON arguments (placeholders kept) and attachments: an event when `event`
    /// is given, else an ack with id `ack`.
    fn raw_packet(
        &self,
        ack: Option<u64>,
        event: Option<&str>,
        args_json: &str,
        attachments: &[Bytes],
    ) -> Option<sio::Packet> {
        let mut body = String::with_capacity(args_json.len() + 32);
        body.push('[');
        if let Some(e) = event {
            crate::proto::json::push_json_str(&mut body, e);
            if !args_json.is_empty() {
                body.push(',');
            }
        }
        body.push_str(args_json);
        body.push(']');
        let data: Value = serde_json::from_str(&body).ok()?;
        let packet_type = match (attachments.is_empty(), event.is_none()) {
            (true, false) => PacketType::Event,
            (true, true) => PacketType::Ack,
            (false, false) => PacketType::BinaryEvent,
            (false, true) => PacketType::BinaryAck,
        };
        Some(sio::Packet {
            packet_type,
            nsp: self.nsp().to_string(),
            id: if event.is_some() { None } else { ack },
            data: Some(data),
            attachments: attachments.to_vec(),
        })
    }

    fn frames(&self, packet: &sio::Packet) -> Vec<Bytes> {
        packet
            .to_engineio()
            .into_iter()
            .filter_map(|p| match p {
                eio::Packet::Message(t) => Some(self.frame(&t)),
                eio::Packet::Binary(b) => Some(wsconn::binary_frame(&b)),
                _ => None,
            })
            .collect()
    }

    fn send_packet(&self, packet: &sio::Packet) {
        let frames = self.frames(packet);
        self.send(&frames);
    }

    fn send(&self, frames: &[Bytes]) {
        match self.session.send_frames(frames) {
            Ok(()) => Metrics::add(&self.metrics.messages_out, 1),
            Err(_) => Metrics::add(&self.metrics.dropped, 1),
        }
    }

    /// Join a room; false if already in it. Refused (false) past [`MAX_ROOMS_PER_SOCKET`].
    pub fn join(self: &Arc<Self>, room: &str) -> bool {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if rooms.iter().any(|r| &**r == room) || rooms.len() >= MAX_ROOMS_PER_SOCKET {
            return false;
        }
        rooms.push(room.into());
        drop(rooms);
        self.namespace.adapter.join(
            room,
            Arc::new(SioMember {
                id: self.member_id,
                sid: self.id.clone(),
                session: self.session.clone(),
            }),
        )
    }

    /// Leave a room; false if not in it.
    pub fn leave(&self, room: &str) -> bool {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let Some(pos) = rooms.iter().position(|r| &**r == room) else {
            return false;
        };
        rooms.swap_remove(pos);
        drop(rooms);
        self.namespace.adapter.leave(room, self.member_id)
    }

    /// Whether the socket is in `room`.
    pub fn in_room(&self, room: &str) -> bool {
        self.rooms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|r| &**r == room)
    }

    /// The rooms this socket is in.
    pub fn rooms(&self) -> Vec<String> {
        self.rooms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|r| r.to_string())
            .collect()
    }

    fn leave_all(&self) {
        let rooms = std::mem::take(&mut *self.rooms.lock().unwrap_or_else(|p| p.into_inner()));
        for r in rooms {
            self.namespace.adapter.leave(&r, self.member_id);
        }
    }

    /// `socket.to(room).emit(...)`: deliver an encoded broadcast to the room's other members.
    pub fn broadcast_to(&self, room: &str, msg: &Broadcast) -> Delivery {
        self.namespace
            .adapter
            .broadcast(room, Some(self.member_id), msg)
    }

    /// Encode an EVENT once for a broadcast in this socket's namespace.
    pub fn event_broadcast(&self, event: &str, args_json: &str) -> Broadcast {
        Broadcast::single(event_frame(self.nsp(), event, args_json.as_bytes()))
    }

    /// Encode once, for a broadcast in this namespace, an event whose raw JSON arguments carry
    /// placeholders for `attachments` (BINARY_EVENT and its binary frames).
    pub fn binary_event_broadcast(
        &self,
        event: &str,
        args_json: &str,
        attachments: &[Bytes],
    ) -> Broadcast {
        match self.raw_packet(None, Some(event), args_json, attachments) {
            Some(packet) => Broadcast::new(self.frames(&packet)),
            None => Broadcast::new(Vec::new()),
        }
    }

    /// Close the whole Engine.IO connection.
    pub fn close_connection(&self, reason: CloseReason) {
        self.session.close(reason);
    }
}

/// A Socket.IO socket as a room member: broadcasts go to its session (straight into the
/// WebSocket's outbox once upgraded).
struct SioMember {
    id: MemberId,
    sid: Arc<str>,
    session: Arc<Session>,
}

impl Member for SioMember {
    fn id(&self) -> MemberId {
        self.id
    }
    fn deliver(&self, msg: &Broadcast) -> Result<(), PushError> {
        self.session.send_frames(msg.sio_frames())
    }
    fn sid(&self) -> Option<&Arc<str>> {
        Some(&self.sid)
    }
}

/// The WebSocket text frame of an Engine.IO message carrying EVENT `[<event>,<args>]` in `nsp`
/// (`args` raw JSON, comma-separated). Built once per broadcast.
pub fn event_frame(nsp: &str, event: &str, args_json: &[u8]) -> Bytes {
    let args = std::str::from_utf8(args_json).unwrap_or("");
    let mut text = String::with_capacity(8 + nsp.len() + event.len() + args.len());
    text.push('4');
    sio::encode_event_raw(&mut text, nsp, None, event, args);
    wsconn::text_frame(text.as_bytes())
}

/// Per-Engine.IO-session Socket.IO state.
pub struct SioConn {
    sockets: Vec<Arc<Socket>>,
    reassembler: Reassembler,
    /// Close the connection if no namespace is joined by then.
    connect_deadline: Option<Instant>,
    /// Packets refused by the application count towards nothing; this is the namespace of the
    /// binary packet being reassembled.
    pending_nsp: Option<String>,
}

/// Creates the adapter of a namespace (a cluster adapter plugs in here).
pub type AdapterFactory = Box<dyn Fn(&str) -> Arc<dyn Adapter> + Send + Sync>;

/// The Socket.IO server: an [`EngineApp`] running a [`SioApp`].
pub struct SocketIoServer<A: SioApp> {
    app: Arc<A>,
    namespaces: Mutex<HashMap<String, Arc<Namespace>>>,
    adapters: AdapterFactory,
    metrics: Arc<Metrics>,
    connect_timeout: std::time::Duration,
}

impl<A: SioApp> SocketIoServer<A> {
    /// A server with in-process rooms ([`LocalAdapter`]) in every namespace.
    pub fn new(app: Arc<A>, metrics: Arc<Metrics>, connect_timeout: std::time::Duration) -> Self {
        let m = metrics.clone();
        Self::with_adapters(
            app,
            metrics,
            connect_timeout,
            Box::new(move |_| Arc::new(LocalAdapter::new(m.clone())) as Arc<dyn Adapter>),
        )
    }

    /// A server whose namespaces get their rooms from `adapters`.
    pub fn with_adapters(
        app: Arc<A>,
        metrics: Arc<Metrics>,
        connect_timeout: std::time::Duration,
        adapters: AdapterFactory,
    ) -> Self {
        SocketIoServer {
            app,
            namespaces: Mutex::new(HashMap::new()),
            adapters,
            metrics,
            connect_timeout,
        }
    }

    pub fn app(&self) -> &Arc<A> {
        &self.app
    }

    /// The namespace (created on first use) if the application has it.
    pub fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        if !self.app.has_namespace(name) {
            return None;
        }
        let mut map = self.namespaces.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(name) && map.len() >= MAX_NAMESPACES {
            // Namespaces are kept for the life of the server: their number is bounded.
            return None;
        }
        let ns = map.entry(name.to_string()).or_insert_with(|| {
            Arc::new(Namespace {
                name: Arc::from(name),
                adapter: (self.adapters)(name),
            })
        });
        Some(ns.clone())
    }

    fn connect(&self, conn: &mut SioConn, session: &Arc<Session>, p: &PacketRef<'_>) {
        let nsp = p.nsp();
        let reply_nsp = |text: &mut String| {
            if nsp != "/" {
                text.push_str(nsp);
                text.push(',');
            }
        };
        let Some(ns) = self.namespace(nsp) else {
            self.metrics.connect_errors.fetch_add(1, Ordering::Relaxed);
            let mut text = String::from("4");
            reply_nsp(&mut text);
            text.push_str(r#"{"message":"Invalid namespace"}"#);
            session.send_text(&text);
            tracing::info!(peer = %session.peer(), nsp, "connect refused: invalid namespace");
            return;
        };
        let auth = p.data().unwrap_or("{}");
        if let Err(refusal) = self.app.authorize(nsp, auth) {
            self.metrics.connect_errors.fetch_add(1, Ordering::Relaxed);
            let mut text = String::from("4");
            reply_nsp(&mut text);
            let mut body = serde_json::Map::new();
            body.insert("message".into(), Value::String(refusal.message.clone()));
            if let Some(d) = refusal.data {
                body.insert("data".into(), d);
            }
            text.push_str(&Value::Object(body).to_string());
            session.send_text(&text);
            tracing::info!(peer = %session.peer(), nsp, reason = %refusal.message, "connect refused");
            return;
        }
        let socket = Arc::new(Socket {
            id: Arc::from(new_id().as_str()),
            member_id: session.shared().next_id(),
            namespace: ns,
            session: session.clone(),
            rooms: Mutex::new(Vec::new()),
            metrics: self.metrics.clone(),
        });
        let mut text = String::from("0");
        reply_nsp(&mut text);
        text.push_str("{\"sid\":");
        crate::proto::json::push_json_str(&mut text, &socket.id);
        text.push('}');
        session.send_text(&text);
        conn.sockets.push(socket.clone());
        conn.connect_deadline = None;
        self.metrics.sockets.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            peer = %session.peer(),
            transport = session.transport_name(),
            nsp,
            socket = %socket.id,
            "connect"
        );
        self.app.on_connect(&socket, auth);
    }

    fn remove_socket(&self, conn: &mut SioConn, nsp: &str, reason: &str) {
        if let Some(pos) = conn.sockets.iter().position(|s| s.nsp() == nsp) {
            let socket = conn.sockets.swap_remove(pos);
            self.drop_socket(&socket, reason);
        }
    }

    fn drop_socket(&self, socket: &Arc<Socket>, reason: &str) {
        socket.leave_all();
        self.metrics.sockets.fetch_sub(1, Ordering::Relaxed);
        self.app.on_disconnect(socket, reason);
        tracing::info!(
            peer = %socket.session.peer(),
            nsp = socket.nsp(),
            socket = %socket.id,
            reason,
            "disconnect"
        );
    }

    fn event(&self, conn: &SioConn, nsp: &str, event: Event<'_>) -> Result<(), CloseReason> {
        match conn.sockets.iter().find(|s| s.nsp() == nsp) {
            Some(socket) => self.app.on_event(socket, event),
            // A packet for a namespace the client has not joined (or left while its binary
            // attachments were arriving): an invalid state, as for the reference server.
            None => Err(invalid_state("EVENT", nsp, "not joined")),
        }
    }
}

fn protocol_error(e: impl std::fmt::Display) -> CloseReason {
    CloseReason::ProtocolError(format!("Socket.IO: {e}"))
}

/// A packet the connection's state does not allow (the reference server's "invalid state").
fn invalid_state(kind: &str, nsp: &str, why: &str) -> CloseReason {
    protocol_error(format!("{kind} for namespace {nsp:?}: {why}"))
}

impl<A: SioApp> EngineApp for SocketIoServer<A> {
    type State = SioConn;

    fn open(&self, _session: &Arc<Session>) -> SioConn {
        SioConn {
            sockets: Vec::new(),
            reassembler: Reassembler::new(),
            connect_deadline: Some(Instant::now() + self.connect_timeout),
            pending_nsp: None,
        }
    }

    fn message(
        &self,
        conn: &mut SioConn,
        session: &Arc<Session>,
        data: Data<'_>,
    ) -> Result<(), CloseReason> {
        match data {
            Data::Text(text) => {
                if conn.reassembler.is_waiting() {
                    let missing = conn.reassembler.missing();
                    conn.reassembler.reset();
                    return Err(protocol_error(format!(
                        "text packet while waiting for {missing} binary attachment(s)"
                    )));
                }
                let p = PacketRef::parse(text).map_err(protocol_error)?;
                if conn.connect_deadline.is_some()
                    && conn.sockets.is_empty()
                    && p.packet_type() != PacketType::Connect
                {
                    // Protocol v5: the first packet must be a CONNECT.
                    return Err(protocol_error("first packet is not a CONNECT"));
                }
                // As the reference server (`Client.ondecoded`): a CONNECT is for a namespace
                // not joined yet, everything else for one joined; any other packet (and a
                // CONNECT_ERROR, which only a server sends) is an invalid state that closes
                // the connection.
                let joined = conn.sockets.iter().any(|s| s.nsp() == p.nsp());
                match (p.packet_type(), joined) {
                    (PacketType::Connect, false) => {}
                    (PacketType::Connect, true) => {
                        return Err(invalid_state("CONNECT", p.nsp(), "already joined"));
                    }
                    (PacketType::ConnectError, _) => {
                        return Err(invalid_state("CONNECT_ERROR", p.nsp(), "sent by a client"));
                    }
                    (kind, false) => {
                        return Err(invalid_state(kind.name(), p.nsp(), "not joined"));
                    }
                    (_, true) => {}
                }
                match p.packet_type() {
                    PacketType::Connect => self.connect(conn, session, &p),
                    PacketType::Disconnect => {
                        self.remove_socket(conn, p.nsp(), "client namespace disconnect")
                    }
                    PacketType::Event => {
                        let Some(name) = p.event() else {
                            return Ok(());
                        };
                        let ev = Event {
                            name,
                            args: Cow::Borrowed(p.args()),
                            first_arg: p.first_arg().map(Cow::Borrowed),
                            attachments: Vec::new(),
                            ack: p.id(),
                        };
                        self.event(conn, p.nsp(), ev)?;
                    }
                    PacketType::BinaryEvent | PacketType::BinaryAck => {
                        conn.pending_nsp = Some(p.nsp().to_string());
                        conn.reassembler.push_ref(&p).map_err(protocol_error)?;
                    }
                    // Acks for server-side emits: nothing asked. (CONNECT_ERROR: refused above.)
                    PacketType::Ack | PacketType::ConnectError => {}
                }
                Ok(())
            }
            Data::Binary(bytes) => {
                let done = conn
                    .reassembler
                    .push_binary(Bytes::copy_from_slice(&bytes))
                    .map_err(protocol_error)?;
                let Some(packet) = done else {
                    return Ok(());
                };
                let nsp = conn
                    .pending_nsp
                    .take()
                    .unwrap_or_else(|| packet.nsp.clone());
                if packet.packet_type != PacketType::BinaryEvent {
                    return Ok(());
                }
                // A numeric name is the number's text, as on the text path.
                let Some(name) = packet.event_text() else {
                    return Ok(());
                };
                let args: Vec<String> = packet.args().iter().map(Value::to_string).collect();
                let ev = Event {
                    name: &name,
                    first_arg: args.first().cloned().map(Cow::Owned),
                    args: Cow::Owned(args.join(",")),
                    attachments: packet.attachments.clone(),
                    ack: packet.id,
                };
                self.event(conn, &nsp, ev)
            }
        }
    }

    fn deadline(&self, conn: &SioConn) -> Option<Instant> {
        conn.connect_deadline
    }

    fn timeout(
        &self,
        conn: &mut SioConn,
        _session: &Arc<Session>,
        now: Instant,
    ) -> Result<(), CloseReason> {
        match conn.connect_deadline {
            Some(d) if d <= now => {
                // Once passed, the deadline is gone either way (it is not due twice).
                conn.connect_deadline = None;
                if conn.sockets.is_empty() {
                    Err(CloseReason::ConnectTimeout)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    fn closed(&self, conn: &mut SioConn, session: &Arc<Session>, reason: &CloseReason) {
        // The deadline goes at the first CONNECT, or when it passes (the close is then
        // ConnectTimeout): a session that has it, or closes for it, never had a socket.
        let never_connected =
            conn.connect_deadline.is_some() || matches!(reason, CloseReason::ConnectTimeout);
        if conn.sockets.is_empty() && never_connected {
            // No socket ever, so no `disconnect` line: the session's end is logged here (a
            // malformed first packet, no CONNECT in time), once. A session whose sockets all
            // left their namespaces has had its `disconnect` lines.
            tracing::info!(
                peer = %session.peer(),
                sid = session.sid(),
                %reason,
                "session closed before CONNECT"
            );
        }
        let reason = reason.to_string();
        for socket in std::mem::take(&mut conn.sockets) {
            self.drop_socket(&socket, &reason);
        }
    }
}
