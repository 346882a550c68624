//! Rooms shared by several servers over Redis pub/sub (`wschat serve --redis URL`), wire compatible
//! with the `@socket.io/redis-adapter` npm package (v8), so wschat and node socket.io servers can
//! serve one cluster.
//!
//! Wire format (what the node adapter publishes and subscribes to, `key` = `--redis-prefix`):
//! - a broadcast is published on `<key>#<nsp>#<room>#` when it targets exactly one room, else on
//!   `<key>#<nsp>#`; every server PSUBSCRIBEs to `<key>#<nsp>#*`;
//! - the message is the msgpack (notepack.io) encoding of `[uid, packet, opts]`: `uid` the
//!   sending server's id (a server ignores its own), `packet` `{type, data, nsp}` (type 2 = EVENT,
//!   buffers inline as msgpack bin: the receiving server's encoder turns them into attachments),
//!   `opts` `{rooms, except, flags}` (`except` holds socket ids and room names);
//! - requests between servers go to `<key>-request#<nsp>#` (JSON, or msgpack for broadcasts with
//!   acks), answers to `<key>-response#<nsp>#`; a server is counted by `PUBSUB NUMSUB` on the
//!   request channel.
//!
//! The connection task owns both Redis connections: it publishes what the connection tasks queue
//! (a bounded channel; they never wait for Redis), delivers what other servers publish, answers
//! requests, and reconnects with backoff when Redis goes away (meanwhile rooms keep working
//! locally and broadcasts that cannot be published are counted as dropped).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use rmpv::Value as Mp;
use serde_json::{Map, Number, Value};
use tokio::sync::mpsc;

use super::adapter::{Adapter, Broadcast, Delivery, LocalAdapter, Member, MemberId};
use super::metrics::Metrics;
use crate::proto::chat::RoomId;
use crate::proto::socketio::{self as sio, PacketRef, PacketType};
use crate::wire::ws::Opcode;

/// The channel prefix of `@socket.io/redis-adapter` (its `key` option).
pub const DEFAULT_PREFIX: &str = "socket.io";

/// Broadcasts waiting for the connection task; past this they are dropped (and counted).
pub const PUBLISH_QUEUE: usize = 8192;

/// Most messages sent to Redis in one pipeline.
const BATCH: usize = 256;
/// Deepest msgpack / JSON nesting accepted from Redis (serde_json's own limit).
const MAX_DEPTH: usize = 128;
/// Time to connect (TCP + handshake) and to answer any command before the link counts as lost.
const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// Link liveness check when idle.
const PING_EVERY: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Request types of the adapter's request channel (`RequestType` in the node adapter).
mod request {
    pub const SOCKETS: u64 = 0;
    pub const ALL_ROOMS: u64 = 1;
    pub const REMOTE_FETCH: u64 = 5;
    pub const BROADCAST: u64 = 7;
    pub const BROADCAST_CLIENT_COUNT: u64 = 8;
}

/// What `wschat serve --redis` was told.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://[user:pass@]host[:port][/db]` (or `rediss://`, `unix://`).
    pub url: String,
    /// Channel prefix (`--redis-prefix`, the node adapter's `key` option).
    pub prefix: String,
}

/// Why the cluster link could not start (each is the whole error line).
#[derive(Debug, thiserror::Error)]
pub enum RedisStartError {
    #[error("--redis {url}: not a Redis URL (expected redis://HOST[:PORT][/DB])")]
    BadUrl { url: String },
    #[error("--redis {url}: TLS (rediss://) is not supported; use redis:// or unix://")]
    Tls { url: String },
    #[error("cannot connect to Redis at {addr}: {reason}")]
    Connect { addr: String, reason: LinkError },
}

/// A failure of the Redis link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0}")]
    Redis(::redis::RedisError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the connection was closed")]
    Closed,
}

/// A message from Redis that is not a valid adapter message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("bad msgpack: {0}")]
    Msgpack(String),
    #[error("unexpected message shape: {0}")]
    Shape(&'static str),
    #[error("bad Socket.IO packet: {0}")]
    Packet(String),
}

// ---------------------------------------------------------------------------------------------
// Channels

/// `<prefix>#<nsp>#`: broadcasts to several rooms or to all; rooms append `<room>#`.
pub fn broadcast_channel(prefix: &str, nsp: &str) -> String {
    format!("{prefix}#{nsp}#")
}

/// The channel a broadcast to `rooms` goes to: the room's own for exactly one room (as the node
/// adapter does, so servers that do not have the room can ignore it cheaply).
pub fn channel_for(prefix: &str, nsp: &str, rooms: &[Mp]) -> String {
    let mut ch = broadcast_channel(prefix, nsp);
    if let [only] = rooms {
        ch.push_str(&room_key(only).unwrap_or_default());
        ch.push('#');
    }
    ch
}

/// `<prefix>-request#<nsp>#`.
pub fn request_channel(prefix: &str, nsp: &str) -> String {
    format!("{prefix}-request#{nsp}#")
}

/// `<prefix>-response#<nsp>#`.
pub fn response_channel(prefix: &str, nsp: &str) -> String {
    format!("{prefix}-response#{nsp}#")
}

/// The PSUBSCRIBE pattern for every namespace's broadcasts: `<prefix>#*`, with glob characters
/// of the prefix escaped.
pub fn broadcast_pattern(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 2);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push_str("#*");
    p
}

/// The rooms a wschat room is published as. wschat keys rooms by text (`7` and `"7"` are one
/// room) but socket.io keys them by value, so a room whose name is an integer goes out as both
/// the string and the number: node servers then reach members that joined either form (each
/// once: socket.io-adapter deduplicates sockets across rooms).
pub fn rooms_for(room: &str) -> Vec<Mp> {
    let mut v = vec![Mp::from(room)];
    if let Ok(n) = room.parse::<i64>()
        && n.to_string() == room
        && n.unsigned_abs() < (1 << 53)
    {
        v.push(Mp::from(n));
    }
    v
}

/// A room name from msgpack: a string, or a number keyed by its decimal text (as wschat does).
fn room_key(v: &Mp) -> Option<String> {
    match v {
        Mp::String(s) => s.as_str().map(str::to_owned),
        Mp::Integer(i) => Some(
            i.as_i64()
                .map(|n| n.to_string())
                .or_else(|| i.as_u64().map(|n| n.to_string()))?,
        ),
        Mp::F64(f) => Number::from_f64(*f).map(|n| RoomId::from_number(n).as_str().to_owned()),
        Mp::F32(f) => {
            Number::from_f64(f64::from(*f)).map(|n| RoomId::from_number(n).as_str().to_owned())
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Messages

/// A Socket.IO event as the adapter carries it between servers.
#[derive(Debug, Clone, PartialEq)]
pub struct RemotePacket {
    pub nsp: String,
    /// `["event", ...args]`, with `{"_placeholder":true,"num":i}` where buffers are.
    pub data: Value,
    /// The buffers, in placeholder order.
    pub attachments: Vec<Bytes>,
}

/// A broadcast from another server: `[uid, packet, opts]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteBroadcast {
    pub uid: String,
    pub packet: RemotePacket,
    /// Target rooms (keys); empty = everyone in the namespace.
    pub rooms: Vec<String>,
    /// Excluded rooms and socket ids.
    pub except: Vec<String>,
}

/// Encode `[uid, {type: 2, data, nsp}, {rooms, except, flags: {}}]` as notepack.io does.
pub fn encode_broadcast(
    uid: &str,
    packet: &RemotePacket,
    rooms: Vec<Mp>,
    except: &[&str],
) -> Vec<u8> {
    let data = json_to_mp(&packet.data, &packet.attachments);
    let msg = Mp::Array(vec![
        Mp::from(uid),
        Mp::Map(vec![
            // EVENT even with buffers inside: the receiver's Socket.IO encoder makes it a
            // BINARY_EVENT (as socket.io's own BroadcastOperator publishes it).
            (Mp::from("type"), Mp::from(2)),
            (Mp::from("data"), data),
            (Mp::from("nsp"), Mp::from(packet.nsp.as_str())),
        ]),
        Mp::Map(vec![
            (Mp::from("rooms"), Mp::Array(rooms)),
            (
                Mp::from("except"),
                Mp::Array(except.iter().map(|s| Mp::from(*s)).collect()),
            ),
            (Mp::from("flags"), Mp::Map(Vec::new())),
        ]),
    ]);
    let mut out = Vec::with_capacity(64 + packet.attachments.iter().map(Bytes::len).sum::<usize>());
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, &msg);
    out
}

/// Decode a message published on a broadcast channel.
pub fn decode_broadcast(bytes: &[u8]) -> Result<RemoteBroadcast, WireError> {
    let mut rd = bytes;
    let v = rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH)
        .map_err(|e| WireError::Msgpack(e.to_string()))?;
    if !rd.is_empty() {
        return Err(WireError::Msgpack(format!(
            "{} bytes after the message",
            rd.len()
        )));
    }
    let Mp::Array(parts) = v else {
        return Err(WireError::Shape("not [uid, packet, opts]"));
    };
    let mut parts = parts.into_iter();
    let (Some(uid), Some(packet), opts) = (parts.next(), parts.next(), parts.next()) else {
        return Err(WireError::Shape("not [uid, packet, opts]"));
    };
    let uid = match uid {
        Mp::String(s) => lossy(s),
        _ => return Err(WireError::Shape("uid is not a string")),
    };
    let Mp::Map(packet) = packet else {
        return Err(WireError::Shape("packet is not a map"));
    };
    let mut nsp = "/".to_string();
    let mut data = None;
    let mut packet_type = None;
    for (k, v) in packet {
        match k.as_str() {
            Some("nsp") => {
                nsp = v
                    .as_str()
                    .ok_or(WireError::Shape("packet.nsp is not a string"))?
                    .to_owned()
            }
            Some("type") => packet_type = v.as_u64(),
            Some("data") => data = Some(v),
            _ => {}
        }
    }
    // EVENT, or BINARY_EVENT from a publisher that encoded the type itself.
    if !matches!(packet_type, Some(2 | 5)) {
        return Err(WireError::Shape("packet.type is not EVENT"));
    }
    let mut attachments = Vec::new();
    let data = mp_to_json(
        data.ok_or(WireError::Shape("packet without data"))?,
        &mut attachments,
    );
    match data.as_array().and_then(|a| a.first()) {
        Some(Value::String(_) | Value::Number(_)) => {}
        _ => return Err(WireError::Shape("packet.data is not [event, ...args]")),
    }
    let (mut rooms, mut except) = (Vec::new(), Vec::new());
    if let Some(Mp::Map(opts)) = opts {
        for (k, v) in opts {
            let target = match k.as_str() {
                Some("rooms") => &mut rooms,
                Some("except") => &mut except,
                _ => continue,
            };
            if let Mp::Array(list) = v {
                for r in list.iter().filter_map(room_key) {
                    if !target.contains(&r) {
                        target.push(r);
                    }
                }
            }
        }
    }
    Ok(RemoteBroadcast {
        uid,
        packet: RemotePacket {
            nsp,
            data,
            attachments,
        },
        rooms,
        except,
    })
}

/// JSON (with placeholders for `attachments`) to msgpack, as notepack encodes the JavaScript
/// value: integral numbers as the smallest int, other numbers as float 64, buffers as bin.
pub fn json_to_mp(v: &Value, attachments: &[Bytes]) -> Mp {
    match v {
        Value::Null => Mp::Nil,
        Value::Bool(b) => Mp::Boolean(*b),
        Value::Number(n) => number_to_mp(n),
        Value::String(s) => Mp::from(s.as_str()),
        Value::Array(a) => Mp::Array(a.iter().map(|x| json_to_mp(x, attachments)).collect()),
        Value::Object(o) => {
            if !attachments.is_empty()
                && let Some(b) = placeholder(o).and_then(|i| attachments.get(i))
            {
                return Mp::Binary(b.to_vec());
            }
            Mp::Map(
                o.iter()
                    .map(|(k, x)| (Mp::from(k.as_str()), json_to_mp(x, attachments)))
                    .collect(),
            )
        }
    }
}

fn number_to_mp(n: &Number) -> Mp {
    if let Some(u) = n.as_u64() {
        return Mp::from(u);
    }
    if let Some(i) = n.as_i64() {
        return Mp::from(i);
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    // JavaScript has one number type: notepack writes an integral value as an int.
    if f.fract() == 0.0 && f >= -(2f64.powi(63)) && f < 2f64.powi(64) {
        if f >= 0.0 {
            return Mp::from(f as u64);
        }
        return Mp::from(f as i64);
    }
    Mp::F64(f)
}

/// `{"_placeholder":true,"num":i}` (socket.io-parser's binary placeholder).
fn placeholder(o: &Map<String, Value>) -> Option<usize> {
    if o.len() != 2 || o.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    o.get("num")?.as_u64().and_then(|n| usize::try_from(n).ok())
}

/// msgpack to JSON as socket.io would serialise the decoded JavaScript value: buffers become
/// placeholders (appended to `attachments`), dates ISO strings, non-finite numbers and other
/// extension types `null`, map keys strings.
pub fn mp_to_json(v: Mp, attachments: &mut Vec<Bytes>) -> Value {
    match v {
        Mp::Nil => Value::Null,
        Mp::Boolean(b) => Value::Bool(b),
        Mp::Integer(i) => i
            .as_u64()
            .map(Value::from)
            .or_else(|| i.as_i64().map(Value::from))
            .unwrap_or(Value::Null),
        Mp::F32(f) => float_json(f64::from(f)),
        Mp::F64(f) => float_json(f),
        Mp::String(s) => Value::String(lossy(s)),
        Mp::Binary(b) => {
            let num = attachments.len();
            attachments.push(Bytes::from(b));
            let mut o = Map::new();
            o.insert("_placeholder".into(), Value::Bool(true));
            o.insert("num".into(), Value::from(num));
            Value::Object(o)
        }
        Mp::Array(a) => Value::Array(a.into_iter().map(|x| mp_to_json(x, attachments)).collect()),
        Mp::Map(m) => {
            let mut o = Map::new();
            for (k, x) in m {
                let key = match k {
                    Mp::String(s) => lossy(s),
                    other => match mp_to_json(other, &mut Vec::new()) {
                        Value::String(s) => s,
                        j => j.to_string(),
                    },
                };
                o.insert(key, mp_to_json(x, attachments));
            }
            Value::Object(o)
        }
        Mp::Ext(-1, d) => timestamp(&d).map_or(Value::Null, Value::String),
        Mp::Ext(..) => Value::Null,
    }
}

/// A msgpack string as notepack decodes it (invalid UTF-8 becomes U+FFFD).
fn lossy(s: rmpv::Utf8String) -> String {
    String::from_utf8(s.into_bytes())
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `JSON.stringify` of a number: integral values without a fraction, NaN/Infinity as null.
fn float_json(f: f64) -> Value {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        return Value::from(f as i64);
    }
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// The msgpack timestamp extension (type -1: 32, 64 or 96 bits) as JavaScript's
/// `Date.prototype.toJSON` writes it.
fn timestamp(d: &[u8]) -> Option<String> {
    let (secs, nanos): (i64, u32) = match d.len() {
        4 => (i64::from(u32::from_be_bytes(d.try_into().ok()?)), 0),
        8 => {
            let v = u64::from_be_bytes(d.try_into().ok()?);
            ((v & 0x3_ffff_ffff) as i64, (v >> 34) as u32)
        }
        12 => (
            i64::from_be_bytes(d.get(4..12)?.try_into().ok()?),
            u32::from_be_bytes(d.get(..4)?.try_into().ok()?),
        ),
        _ => return None,
    };
    let t = chrono::DateTime::from_timestamp(secs, nanos)?;
    Some(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// The event a local broadcast carries, read back from its Socket.IO frames (an EVENT or
/// BINARY_EVENT text frame, then its attachments).
pub fn packet_of(frames: &[Bytes]) -> Result<RemotePacket, WireError> {
    let (first, rest) = frames
        .split_first()
        .ok_or(WireError::Packet("no frames".into()))?;
    let Some((Opcode::Text, payload)) = super::wsconn::frame_payload(first) else {
        return Err(WireError::Packet("not a text frame".into()));
    };
    let text = std::str::from_utf8(&payload)
        .map_err(|e| WireError::Packet(e.to_string()))?
        .strip_prefix('4')
        .ok_or(WireError::Packet("not an Engine.IO message".into()))?;
    let p = PacketRef::parse(text).map_err(|e| WireError::Packet(e.to_string()))?;
    if !p.packet_type().is_event() {
        return Err(WireError::Packet(format!(
            "{} is not an event",
            p.packet_type()
        )));
    }
    let data = p
        .data_value()
        .map_err(|e| WireError::Packet(e.to_string()))?
        .ok_or(WireError::Packet("event without data".into()))?;
    let mut attachments = Vec::with_capacity(rest.len());
    for f in rest {
        match super::wsconn::frame_payload(f) {
            Some((Opcode::Binary, b)) => attachments.push(b),
            _ => return Err(WireError::Packet("attachment is not a binary frame".into())),
        }
    }
    if attachments.len() != p.attachments() {
        return Err(WireError::Packet(format!(
            "{} attachments announced, {} frames",
            p.attachments(),
            attachments.len()
        )));
    }
    Ok(RemotePacket {
        nsp: p.nsp().to_owned(),
        data,
        attachments,
    })
}

/// The local broadcast for an event from another server, encoded once: `receive_message` with one
/// argument also reaches plain WebSocket members (as the chat's own broadcasts do).
pub fn broadcast_of(p: &RemotePacket) -> Broadcast {
    if p.attachments.is_empty()
        && let Some([Value::String(name), data]) = p.data.as_array().map(Vec::as_slice)
        && name == crate::proto::chat::RECEIVE_MESSAGE
    {
        return super::chat::receive_message_broadcast(&p.nsp, data.to_string().as_bytes());
    }
    let packet = sio::Packet {
        packet_type: if p.attachments.is_empty() {
            PacketType::Event
        } else {
            PacketType::BinaryEvent
        },
        nsp: p.nsp.clone(),
        id: None,
        data: Some(p.data.clone()),
        attachments: p.attachments.clone(),
    };
    let mut frames = Vec::with_capacity(1 + p.attachments.len());
    frames.push(super::engine::message_frame(packet.to_text().as_bytes()));
    frames.extend(p.attachments.iter().map(|b| super::wsconn::binary_frame(b)));
    Broadcast::new(frames)
}

/// A random 6-character server id (the node adapter's `uid2(6)`).
pub fn new_uid() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 6];
    rand::fill(&mut bytes);
    bytes
        .iter()
        .map(|b| {
            char::from(
                ALPHABET
                    .get(usize::from(*b) % ALPHABET.len())
                    .copied()
                    .unwrap_or(b'x'),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The adapter

/// What the connection tasks hand to the Redis task.
enum Outgoing {
    /// A local broadcast to publish (encoded by the Redis task, off the connection task).
    Broadcast {
        room: Box<str>,
        sender: Option<Arc<str>>,
        frames: Box<[Bytes]>,
    },
    /// An encoded message (an answer to a request).
    Raw { channel: String, payload: Vec<u8> },
}

/// The rooms of one namespace, shared with the cluster: local delivery through a
/// [`LocalAdapter`], and every broadcast also published for the other servers.
pub struct RedisAdapter {
    local: Arc<LocalAdapter>,
    bus: Arc<RedisBus>,
}

impl Adapter for RedisAdapter {
    fn join(&self, room: &str, member: Arc<dyn Member>) -> bool {
        self.local.join(room, member)
    }
    fn leave(&self, room: &str, id: MemberId) -> bool {
        self.local.leave(room, id)
    }
    fn is_member(&self, room: &str, id: MemberId) -> bool {
        self.local.is_member(room, id)
    }
    fn broadcast(&self, room: &str, except: Option<MemberId>, msg: &Broadcast) -> Delivery {
        let (d, sender) = self.local.broadcast_naming_sender(room, except, msg);
        self.bus.queue(Outgoing::Broadcast {
            room: room.into(),
            sender,
            frames: msg.sio_frames().into(),
        });
        d
    }
    fn room_size(&self, room: &str) -> usize {
        self.local.room_size(room)
    }
    fn rooms(&self) -> Vec<(String, usize)> {
        self.local.rooms()
    }
}

/// The cluster link of one server: its id, its namespaces' rooms, the queue to the Redis task.
pub struct RedisBus {
    uid: String,
    prefix: String,
    addr: String,
    tx: mpsc::Sender<Outgoing>,
    ns_tx: mpsc::UnboundedSender<String>,
    namespaces: RwLock<HashMap<String, Arc<LocalAdapter>>>,
    metrics: Arc<Metrics>,
}

impl RedisBus {
    /// Connect to Redis (publish and subscribe connections), and start the task that keeps the
    /// link up. Fails when Redis cannot be reached now.
    pub async fn connect(
        opts: RedisOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<RedisBus>, RedisStartError> {
        let client = ::redis::Client::open(opts.url.as_str()).map_err(|e| {
            tracing::debug!(error = %e, "--redis");
            let url = opts.url.clone();
            if opts.url.starts_with("rediss:") || opts.url.starts_with("valkeys:") {
                RedisStartError::Tls { url }
            } else {
                RedisStartError::BadUrl { url }
            }
        })?;
        let addr = client.get_connection_info().addr().to_string();
        let link = Link::open(&client, &opts.prefix, &["/".to_string()])
            .await
            .map_err(|reason| RedisStartError::Connect {
                addr: addr.clone(),
                reason,
            })?;
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        let (ns_tx, ns_rx) = mpsc::unbounded_channel();
        let bus = Arc::new(RedisBus {
            uid: new_uid(),
            prefix: opts.prefix,
            addr,
            tx,
            ns_tx,
            namespaces: RwLock::new(HashMap::new()),
            metrics,
        });
        bus.metrics.redis.enabled.store(true, Ordering::Relaxed);
        bus.metrics.redis.connected.store(1, Ordering::Relaxed);
        tracing::info!(addr = %bus.addr, uid = %bus.uid, prefix = %bus.prefix, "connected to Redis");
        tokio::spawn(run(bus.clone(), client, link, rx, ns_rx));
        Ok(bus)
    }

    /// The adapter of namespace `nsp` (for [`super::socketio::SocketIoServer::with_adapters`]).
    pub fn adapter(self: &Arc<Self>, nsp: &str) -> Arc<dyn Adapter> {
        let mut map = self.namespaces.write().unwrap_or_else(|p| p.into_inner());
        let local = map
            .entry(nsp.to_owned())
            .or_insert_with(|| {
                // Subscribe to the namespace's request channel (the Redis task does it).
                let _ = self.ns_tx.send(nsp.to_owned());
                Arc::new(LocalAdapter::new(self.metrics.clone()))
            })
            .clone();
        Arc::new(RedisAdapter {
            local,
            bus: self.clone(),
        })
    }

    /// This server's id in the cluster.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Whether the link is up now.
    pub fn is_connected(&self) -> bool {
        self.metrics.redis.connected.load(Ordering::Relaxed) == 1
    }

    fn queue(&self, item: Outgoing) {
        if self.tx.try_send(item).is_err() {
            Metrics::add(&self.metrics.redis.dropped, 1);
        }
    }

    fn local(&self, nsp: &str) -> Option<Arc<LocalAdapter>> {
        self.namespaces
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(nsp)
            .cloned()
    }

    fn namespace_names(&self) -> Vec<String> {
        self.namespaces
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// The message to publish for a queued item (`None` when it cannot be encoded).
    fn encode(&self, item: Outgoing) -> Option<(String, Vec<u8>)> {
        match item {
            Outgoing::Raw { channel, payload } => Some((channel, payload)),
            Outgoing::Broadcast {
                room,
                sender,
                frames,
            } => match packet_of(&frames) {
                Ok(packet) => {
                    let rooms = rooms_for(&room);
                    let channel = channel_for(&self.prefix, &packet.nsp, &rooms);
                    let except: Vec<&str> = sender.as_deref().into_iter().collect();
                    Some((
                        channel,
                        encode_broadcast(&self.uid, &packet, rooms, &except),
                    ))
                }
                Err(e) => {
                    tracing::debug!(error = %e, "broadcast not published");
                    Metrics::add(&self.metrics.redis.errors, 1);
                    None
                }
            },
        }
    }

    /// A message on a subscribed channel.
    fn on_message(&self, channel: &str, payload: &[u8]) {
        let Some(rest) = channel.strip_prefix(self.prefix.as_str()) else {
            return;
        };
        if rest.starts_with('#') {
            self.on_broadcast(channel, payload);
        } else if let Some(nsp) = rest
            .strip_prefix("-request#")
            .and_then(|r| r.strip_suffix('#'))
        {
            self.on_request(nsp, payload);
        }
    }

    fn on_broadcast(&self, channel: &str, payload: &[u8]) {
        let msg = match decode_broadcast(payload) {
            Ok(m) => m,
            Err(e) => {
                Metrics::add(&self.metrics.redis.errors, 1);
                tracing::debug!(%channel, error = %e, "ignored a message from Redis");
                return;
            }
        };
        if msg.uid == self.uid {
            return;
        }
        // The channel must belong to the packet's namespace (as the node adapter checks).
        let in_nsp = channel
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|r| r.strip_prefix(msg.packet.nsp.as_str()))
            .is_some_and(|r| r.starts_with('#'));
        if !in_nsp {
            return;
        }
        Metrics::add(&self.metrics.redis.received, 1);
        let Some(local) = self.local(&msg.packet.nsp) else {
            return;
        };
        let b = broadcast_of(&msg.packet);
        local.broadcast_to_rooms(&msg.rooms, &msg.except, &b);
    }

    /// A request from another server. Answered: `allRooms`, `allSockets`, `fetchSockets`, and
    /// `emitWithAck` broadcasts (with a client count of 0: not delivered here). Ignored (as a
    /// server without handlers would): serverSideEmit, remote join/leave/disconnect.
    fn on_request(&self, nsp: &str, payload: &[u8]) {
        let Some(local) = self.local(nsp) else { return };
        let req: Value = if payload.first() == Some(&b'{') {
            match serde_json::from_slice(payload) {
                Ok(v) => v,
                Err(_) => return,
            }
        } else {
            let mut rd = payload;
            match rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH) {
                Ok(v) => mp_to_json(v, &mut Vec::new()),
                Err(_) => return,
            }
        };
        if req.get("uid").and_then(Value::as_str) == Some(self.uid.as_str()) {
            return;
        }
        let Some(request_id) = req.get("requestId").cloned() else {
            return;
        };
        let strings = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|r| match r {
                            Value::String(s) => Some(s.clone()),
                            Value::Number(n) => {
                                Some(RoomId::from_number(n.clone()).as_str().to_owned())
                            }
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let answer = match req.get("type").and_then(Value::as_u64) {
            Some(request::ALL_ROOMS) => {
                let rooms: Vec<String> = local.rooms().into_iter().map(|(r, _)| r).collect();
                serde_json::json!({"requestId": request_id, "rooms": rooms})
            }
            Some(request::SOCKETS) => {
                let sockets: Vec<String> = local
                    .sockets(&strings(req.get("rooms")), &[])
                    .into_iter()
                    .map(|(sid, _)| sid.to_string())
                    .collect();
                serde_json::json!({"requestId": request_id, "sockets": sockets})
            }
            Some(request::REMOTE_FETCH) => {
                let opts = req.get("opts");
                let rooms = strings(opts.and_then(|o| o.get("rooms")));
                let except = strings(opts.and_then(|o| o.get("except")));
                let sockets: Vec<Value> = local
                    .sockets(&rooms, &except)
                    .into_iter()
                    .map(|(sid, mut rooms)| {
                        // A socket.io socket is also in the room named by its id.
                        rooms.insert(0, sid.to_string());
                        serde_json::json!({"id": &*sid, "handshake": {}, "rooms": rooms, "data": {}})
                    })
                    .collect();
                serde_json::json!({"requestId": request_id, "sockets": sockets})
            }
            Some(request::BROADCAST) => serde_json::json!({
                "type": request::BROADCAST_CLIENT_COUNT,
                "requestId": request_id,
                "clientCount": 0,
            }),
            _ => return,
        };
        self.queue(Outgoing::Raw {
            channel: response_channel(&self.prefix, nsp),
            payload: answer.to_string().into_bytes(),
        });
    }

    fn set_connected(&self, up: bool) {
        self.metrics
            .redis
            .connected
            .store(i64::from(up), Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// The Redis task

/// The two connections of a live link.
struct Link {
    publisher: ::redis::aio::MultiplexedConnection,
    sink: ::redis::aio::PubSubSink,
    stream: ::redis::aio::PubSubStream,
}

async fn timed<T>(f: impl Future<Output = Result<T, ::redis::RedisError>>) -> Result<T, LinkError> {
    match tokio::time::timeout(IO_TIMEOUT, f).await {
        Ok(r) => r.map_err(LinkError::Redis),
        Err(_) => Err(LinkError::Timeout(IO_TIMEOUT)),
    }
}

impl Link {
    /// Connect both connections and subscribe: the broadcast pattern, and the request channel of
    /// each namespace (so `PUBSUB NUMSUB` counts this server).
    async fn open(
        client: &::redis::Client,
        prefix: &str,
        namespaces: &[String],
    ) -> Result<Link, LinkError> {
        let config = ::redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(IO_TIMEOUT))
            .set_response_timeout(Some(IO_TIMEOUT));
        let publisher = timed(client.get_multiplexed_async_connection_with_config(&config)).await?;
        let (mut sink, stream) = timed(client.get_async_pubsub()).await?.split();
        timed(sink.psubscribe(broadcast_pattern(prefix))).await?;
        for nsp in namespaces {
            timed(sink.subscribe(request_channel(prefix, nsp))).await?;
        }
        Ok(Link {
            publisher,
            sink,
            stream,
        })
    }

    /// Run until the link fails: publish what is queued (in pipelines of up to [`BATCH`]),
    /// deliver what arrives, subscribe new namespaces, ping when idle.
    async fn serve(
        &mut self,
        bus: &RedisBus,
        rx: &mut mpsc::Receiver<Outgoing>,
        ns_rx: &mut mpsc::UnboundedReceiver<String>,
    ) -> LinkError {
        let mut batch = Vec::with_capacity(BATCH);
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.reset();
        loop {
            tokio::select! {
                msg = self.stream.next() => match msg {
                    Some(m) => bus.on_message(m.get_channel_name(), m.get_payload_bytes()),
                    None => return LinkError::Closed,
                },
                n = rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        // Closed: cannot happen while the bus (which owns a sender) is alive.
                        return LinkError::Closed;
                    }
                    let mut pipe = ::redis::pipe();
                    let mut count = 0u64;
                    for item in batch.drain(..) {
                        if let Some((channel, payload)) = bus.encode(item) {
                            pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
                            count += 1;
                        }
                    }
                    if count == 0 {
                        continue;
                    }
                    match timed(pipe.query_async::<()>(&mut self.publisher)).await {
                        Ok(()) => Metrics::add(&bus.metrics.redis.published, count),
                        Err(e) => {
                            Metrics::add(&bus.metrics.redis.dropped, count);
                            return e;
                        }
                    }
                    ping.reset();
                }
                Some(nsp) = ns_rx.recv() => {
                    if let Err(e) = timed(self.sink.subscribe(request_channel(&bus.prefix, &nsp))).await {
                        return e;
                    }
                }
                _ = ping.tick() => {
                    if let Err(e) = timed(self.sink.ping::<::redis::Value>()).await {
                        return e;
                    }
                    if let Err(e) = timed(::redis::cmd("PING").query_async::<String>(&mut self.publisher)).await {
                        return e;
                    }
                }
            }
        }
    }
}

/// Keep the link up: serve it, and when it fails log once, count, drop what cannot be published,
/// reconnect with exponential backoff, and log when it is back.
async fn run(
    bus: Arc<RedisBus>,
    client: ::redis::Client,
    first: Link,
    mut rx: mpsc::Receiver<Outgoing>,
    mut ns_rx: mpsc::UnboundedReceiver<String>,
) {
    let mut link = Some(first);
    let mut backoff = BACKOFF_MIN;
    loop {
        if let Some(mut l) = link.take() {
            let e = l.serve(&bus, &mut rx, &mut ns_rx).await;
            drop(l);
            bus.set_connected(false);
            Metrics::add(&bus.metrics.redis.errors, 1);
            tracing::warn!(
                addr = %bus.addr,
                error = %e,
                "lost the connection to Redis; rooms keep working on this server only, reconnecting"
            );
            backoff = BACKOFF_MIN;
        }
        // Disconnected: wait, dropping what cannot be published (counted), then try again.
        let wait = tokio::time::sleep(backoff);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                Some(_) = rx.recv() => Metrics::add(&bus.metrics.redis.dropped, 1),
                Some(_) = ns_rx.recv() => {} // subscribed on reconnect (the bus knows it)
            }
        }
        match Link::open(&client, &bus.prefix, &bus.namespace_names()).await {
            Ok(l) => {
                bus.set_connected(true);
                tracing::info!(addr = %bus.addr, "reconnected to Redis");
                link = Some(l);
            }
            Err(e) => {
                tracing::debug!(addr = %bus.addr, error = %e, ?backoff, "Redis still unreachable");
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Captured from node 20 + socket.io 4.8.1 + @socket.io/redis-adapter 8.3.0 + redis 4.7.1:
    // `node tests/peers/serve-redis-node.js --redis redis://127.0.0.1:P --capture`, two
    // socket.io-client peers in room "7" (socket ids QSnlWGJm_pGqWutBAAAA, taa5ztToR0HTj0hxAAAB),
    // the first one sending the original app's message. Published on `socket.io#/#7#`.
    const NODE_OLA: &str = "93a6716c67742d3683a47479706502a46461746192af726563656976655f6d65737361676584a4726f6f6da137a6617574686f72a3416e61a76d657373616765ab4f6cc3a1206d756e646f21a474696d65a531303a3432a36e7370a12f83a5726f6f6d7391a137a665786365707491b451536e6c57474a6d5f7047715775744241414141a5666c61677380";
    // Same session: `{room:"7", author:"Ana", message:"bin", time:"10:42", file: Buffer<01 02 03>,
    // n: 1.5, neg: -200, big: 70000, t: true, z: null}` (a buffer inline, a float, ints).
    const NODE_BINARY: &str = "93a6716c67742d3683a47479706502a46461746192af726563656976655f6d6573736167658aa4726f6f6da137a6617574686f72a3416e61a76d657373616765a362696ea474696d65a531303a3432a466696c65c403010203a16ecb3ff8000000000000a36e6567d1ff38a3626967ce00011170a174c3a17ac0a36e7370a12f83a5726f6f6d7391a137a665786365707491b451536e6c57474a6d5f7047715775744241414141a5666c61677380";
    // Same session, room given as the number 8 (`join_room(8)`): published on `socket.io#/#8#`.
    const NODE_NUMERIC_ROOM: &str = "93a6716c67742d3683a47479706502a46461746192af726563656976655f6d65737361676584a4726f6f6d08a6617574686f72a3416e61a76d657373616765a36e756da474696d65a531303a3432a36e7370a12f83a5726f6f6d739108a665786365707491b451536e6c57474a6d5f7047715775744241414141a5666c61677380";

    const NODE_SENDER: &str = "QSnlWGJm_pGqWutBAAAA";

    #[test]
    fn decodes_the_node_adapters_broadcast_of_the_original_app() {
        let m = decode_broadcast(&unhex(NODE_OLA)).unwrap();
        assert_eq!(m.uid, "qlgt-6");
        assert_eq!(m.packet.nsp, "/");
        assert_eq!(
            m.packet.data.to_string(),
            r#"["receive_message",{"room":"7","author":"Ana","message":"Olá mundo!","time":"10:42"}]"#
        );
        assert!(m.packet.attachments.is_empty());
        assert_eq!(m.rooms, ["7"]);
        assert_eq!(m.except, [NODE_SENDER]);
    }

    #[test]
    fn encodes_byte_for_byte_what_the_node_adapter_publishes() {
        for hex in [NODE_OLA, NODE_BINARY, NODE_NUMERIC_ROOM] {
            let bytes = unhex(hex);
            let m = decode_broadcast(&bytes).unwrap();
            // The rooms as node had them (a string, or the number 8).
            let rooms = if m.rooms == ["8"] {
                vec![Mp::from(8)]
            } else {
                vec![Mp::from("7")]
            };
            let again = encode_broadcast(&m.uid, &m.packet, rooms, &[NODE_SENDER]);
            assert_eq!(again, bytes, "re-encoding {hex}");
        }
    }

    #[test]
    fn buffers_become_attachments_and_numbers_keep_their_javascript_form() {
        let m = decode_broadcast(&unhex(NODE_BINARY)).unwrap();
        assert_eq!(m.packet.attachments, [Bytes::from_static(&[1, 2, 3])]);
        assert_eq!(
            m.packet.data.to_string(),
            r#"["receive_message",{"room":"7","author":"Ana","message":"bin","time":"10:42","file":{"_placeholder":true,"num":0},"n":1.5,"neg":-200,"big":70000,"t":true,"z":null}]"#
        );
        let b = broadcast_of(&m.packet);
        let frames = b.sio_frames();
        assert_eq!(frames.len(), 2);
        let (_, text) = crate::serve::wsconn::frame_payload(&frames[0]).unwrap();
        assert!(text.starts_with(b"451-[\"receive_message\",{"), "{text:?}");
        let (op, bin) = crate::serve::wsconn::frame_payload(&frames[1]).unwrap();
        assert_eq!((op, &bin[..]), (Opcode::Binary, &[1u8, 2, 3][..]));
        assert!(
            b.plain_frame(Bytes::copy_from_slice).is_none(),
            "binary messages are not shown to plain WebSocket members (as locally)"
        );
    }

    #[test]
    fn a_numeric_room_is_keyed_by_its_decimal_text() {
        let m = decode_broadcast(&unhex(NODE_NUMERIC_ROOM)).unwrap();
        assert_eq!(m.rooms, ["8"]);
        assert_eq!(
            channel_for("socket.io", "/", &[Mp::from(8)]),
            "socket.io#/#8#"
        );
    }

    #[test]
    fn a_local_chat_broadcast_round_trips_through_the_wire_format() {
        let data = r#"{"room":"7","author":"Ana","message":"Olá mundo!","time":"10:42"}"#;
        let local = crate::serve::chat::receive_message_broadcast("/", data.as_bytes());
        let packet = packet_of(local.sio_frames()).unwrap();
        let bytes = encode_broadcast("abcdef", &packet, rooms_for("7"), &["sid1"]);
        let m = decode_broadcast(&bytes).unwrap();
        assert_eq!(m.uid, "abcdef");
        assert_eq!(m.rooms, ["7"], "\"7\" and 7 are one room here");
        assert_eq!(m.except, ["sid1"]);
        let remote = broadcast_of(&m.packet);
        assert_eq!(
            remote.sio_frames(),
            local.sio_frames(),
            "same frame as a local send"
        );
        let enc = |j: &[u8]| Bytes::copy_from_slice(j);
        assert_eq!(remote.plain_frame(enc), local.plain_frame(enc));
    }

    #[test]
    fn a_local_binary_broadcast_is_published_as_an_event_with_inline_bin() {
        let frames = vec![
            crate::serve::engine::message_frame(
                br#"51-/chat,["receive_message",{"f":{"_placeholder":true,"num":0}}]"#,
            ),
            crate::serve::wsconn::binary_frame(&[9, 8]),
        ];
        let p = packet_of(&frames).unwrap();
        assert_eq!(p.nsp, "/chat");
        let bytes = encode_broadcast("u", &p, rooms_for("r"), &[]);
        // ... {"type":2, "data":["receive_message",{"f":<bin 09 08>}], "nsp":"/chat"} ...
        let needle = unhex("a474797065");
        assert!(bytes.windows(needle.len()).any(|w| w == needle));
        assert!(
            bytes
                .windows(5)
                .any(|w| w == [0xa1, 0x66, 0xc4, 0x02, 0x09])
        );
        assert_eq!(decode_broadcast(&bytes).unwrap().packet, p);
        assert_eq!(channel_for("k", "/chat", &rooms_for("r")), "k#/chat#r#");
    }

    #[test]
    fn integer_room_names_are_published_as_string_and_number() {
        assert_eq!(rooms_for("7"), [Mp::from("7"), Mp::from(7)]);
        assert_eq!(rooms_for("-3"), [Mp::from("-3"), Mp::from(-3)]);
        for not_int in ["07", "7.0", "sala", "", "+7", "99999999999999999999"] {
            assert_eq!(rooms_for(not_int), [Mp::from(not_int)], "{not_int}");
        }
        // Two rooms: the namespace's channel, as node does for several rooms.
        assert_eq!(
            channel_for("socket.io", "/", &rooms_for("7")),
            "socket.io#/#"
        );
        assert_eq!(
            channel_for("socket.io", "/", &rooms_for("sala")),
            "socket.io#/#sala#"
        );
    }

    #[test]
    fn channel_names_match_the_node_adapter() {
        assert_eq!(broadcast_channel("socket.io", "/"), "socket.io#/#");
        assert_eq!(
            request_channel("socket.io", "/admin"),
            "socket.io-request#/admin#"
        );
        assert_eq!(response_channel("socket.io", "/"), "socket.io-response#/#");
        assert_eq!(broadcast_pattern("socket.io"), "socket.io#*");
        assert_eq!(broadcast_pattern("a*b?[c]"), "a\\*b\\?\\[c\\]#*");
    }

    #[test]
    fn garbage_and_truncated_messages_are_errors_not_panics() {
        let bytes = unhex(NODE_BINARY);
        for n in 0..bytes.len() {
            assert!(
                decode_broadcast(&bytes[..n]).is_err(),
                "prefix of {n} bytes"
            );
        }
        let mut extra = bytes.clone();
        extra.push(0xc0);
        assert!(decode_broadcast(&extra).is_err());
        for junk in [
            &b"{}"[..],
            b"\x93\xa1u\xc0\x80",
            b"\x92\xa1u\x80",
            b"\x93\x01\x80\x80",
        ] {
            assert!(decode_broadcast(junk).is_err(), "{junk:?}");
        }
        // Not an event (type 0 = CONNECT).
        let connect = unhex("93a17583a47479706500a46461746190a36e7370a12f80");
        assert_eq!(
            decode_broadcast(&connect),
            Err(WireError::Shape("packet.type is not EVENT"))
        );
        // Deep nesting stops at the depth limit.
        let mut deep = vec![
            0x93, 0xa1, b'u', 0x82, 0xa4, b't', b'y', b'p', b'e', 0x02, 0xa4,
        ];
        deep.extend_from_slice(b"data");
        deep.extend(std::iter::repeat_n(0x91, 100_000));
        deep.push(0xc0);
        assert!(decode_broadcast(&deep).is_err());
    }

    #[test]
    fn numbers_and_dates_convert_as_javascript_would() {
        let mut att = Vec::new();
        assert_eq!(mp_to_json(Mp::F64(3.0), &mut att), Value::from(3));
        assert_eq!(mp_to_json(Mp::F64(f64::NAN), &mut att), Value::Null);
        assert_eq!(mp_to_json(Mp::F64(0.5), &mut att).to_string(), "0.5");
        assert_eq!(mp_to_json(Mp::from(-200), &mut att), Value::from(-200));
        // notepack's `new Date(1700000000123)`: timestamp 64 (ns << 34 | seconds).
        let ts = (123_000_000u64 << 34) | 1_700_000_000;
        assert_eq!(
            mp_to_json(Mp::Ext(-1, ts.to_be_bytes().to_vec()), &mut att),
            Value::from("2023-11-14T22:13:20.123Z")
        );
        assert_eq!(
            mp_to_json(
                Mp::Ext(-1, 1_700_000_000u32.to_be_bytes().to_vec()),
                &mut att
            ),
            Value::from("2023-11-14T22:13:20.000Z")
        );
        assert_eq!(mp_to_json(Mp::Ext(3, vec![1]), &mut att), Value::Null);
        assert!(att.is_empty());
        let n = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert_eq!(json_to_mp(&n("1.0"), &[]), Mp::from(1));
        assert_eq!(json_to_mp(&n("-1e3"), &[]), Mp::from(-1000));
        assert_eq!(json_to_mp(&n("2.5"), &[]), Mp::F64(2.5));
        assert_eq!(
            json_to_mp(&n("18446744073709551615"), &[]),
            Mp::from(u64::MAX)
        );
        // A placeholder-looking object in a packet without attachments stays an object.
        let ph = n(r#"{"_placeholder":true,"num":0}"#);
        assert!(matches!(json_to_mp(&ph, &[]), Mp::Map(_)));
        assert_eq!(
            json_to_mp(&ph, &[Bytes::from_static(b"x")]),
            Mp::Binary(b"x".to_vec())
        );
    }

    #[test]
    fn server_ids_look_like_the_node_adapters() {
        let a = new_uid();
        assert_eq!(a.len(), 6);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, new_uid());
    }
}
