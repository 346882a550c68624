//! Engine.IO v4 packets, polling payloads and the sans-IO session state machine.
//!
//! Wire rules: socketio/engine.io-protocol v4 (notes in `docs/socketio-protocol.md` §1).
//!
//! - [`PacketRef`] is the zero-copy view parsed from a WebSocket frame or one polling segment;
//!   [`Packet`] is the owned, cheaply clonable form that sessions queue and send.
//! - [`Payload`] decodes and encodes HTTP long-polling bodies (`\x1e`-separated, `b`+base64).
//! - [`ServerSession`] and [`ClientSession`] are the two ends of a session as deterministic state
//!   machines (quinn-proto style): feed input with `handle_*(.., now)`, drain output with
//!   `poll_transmit()` / `poll_event()`, and call `handle_timeout(now)` at `poll_timeout()`.
//! - [`ErrorCode`] is the reference server's JSON error body (`{"code":0,"message":"Transport unknown"}`).

mod client;
mod server;
#[cfg(test)]
mod session_tests;

pub use client::{ClientConfig, ClientEvent, ClientSession, ClientTransmit};
pub use server::{ServerEvent, ServerSession, ServerTransmit};

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::json;

/// A point in time as the sessions see it: [`Instant`] in real drivers (the default type
/// parameter of [`ServerSession`] and [`ClientSession`]), a fake clock in tests. The sessions
/// never read a clock; every `handle_*` call carries `now`.
pub trait Timestamp: Copy + Ord + fmt::Debug {
    /// `self + d`, or `None` if that is not representable.
    fn add_duration(self, d: Duration) -> Option<Self>;
}

impl Timestamp for Instant {
    fn add_duration(self, d: Duration) -> Option<Self> {
        self.checked_add(d)
    }
}

/// Shared, immutable UTF-8 text of a message packet: cloning it for many receivers is a refcount.
pub type Text = Arc<str>;

/// The byte that separates packets in a polling payload (engine.io-protocol v4, "HTTP long-polling").
pub const SEPARATOR: u8 = 0x1e;

/// The protocol revision carried in the `EIO` query parameter.
pub const PROTOCOL_VERSION: &str = "4";

/// Content type of a polling GET response (the reference server's exact header value).
pub const POLLING_CONTENT_TYPE: &str = "text/plain; charset=UTF-8";

/// Body of the answer to a polling POST.
pub const POST_OK_BODY: &str = "ok";

/// Base64 as written by the reference implementations (standard alphabet, padded); decoding is
/// lenient about padding and trailing bits, like node's `Buffer.from(s, "base64")`.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// A session id from 15 random bytes supplied by the caller: 20 characters of URL-safe base64,
/// the shape of the reference's `base64id` (`randomBytes(15)` in base64 with `/`→`_`, `+`→`-`).
/// Also fits Socket.IO socket ids.
pub fn sid_from_random(random: &[u8; 15]) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(random)
}

/// The Engine.IO packet types (one ASCII digit on the wire, protocol v4 "Packet types").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// `0`, server → client: the handshake.
    Open,
    /// `1`: the transport/session is closing.
    Close,
    /// `2`, server → client (and `2probe` client → server during an upgrade).
    Ping,
    /// `3`, client → server answer to a ping (and `3probe`).
    Pong,
    /// `4`: application data (Socket.IO packets ride here).
    Message,
    /// `5`, client → server: completes a transport upgrade.
    Upgrade,
    /// `6`, server → client: ends a pending polling request.
    Noop,
}

impl PacketType {
    /// Parses the type digit.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => Self::Open,
            b'1' => Self::Close,
            b'2' => Self::Ping,
            b'3' => Self::Pong,
            b'4' => Self::Message,
            b'5' => Self::Upgrade,
            b'6' => Self::Noop,
            _ => return None,
        })
    }

    /// The type digit.
    pub fn as_char(self) -> char {
        match self {
            Self::Open => '0',
            Self::Close => '1',
            Self::Ping => '2',
            Self::Pong => '3',
            Self::Message => '4',
            Self::Upgrade => '5',
            Self::Noop => '6',
        }
    }

    /// The reference name (`open`, `close`, `ping`, `pong`, `message`, `upgrade`, `noop`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Close => "close",
            Self::Ping => "ping",
            Self::Pong => "pong",
            Self::Message => "message",
            Self::Upgrade => "upgrade",
            Self::Noop => "noop",
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The open packet's JSON (protocol v4 "Handshake"): exactly these five keys, in this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handshake {
    /// The session id, used in every later request (`sid=` query parameter).
    pub sid: String,
    /// Transports the session may upgrade to: `["websocket"]` when opened over polling, `[]` otherwise.
    pub upgrades: Vec<String>,
    /// Milliseconds between server pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong.
    pub ping_timeout: u64,
    /// Largest polling payload the server accepts, in bytes (0 if the server did not announce it).
    #[serde(default)]
    pub max_payload: u64,
}

impl Handshake {
    /// The handshake a server sends for `sid`, opened over `transport`.
    pub fn new(sid: impl Into<String>, transport: TransportKind, config: &SessionConfig) -> Self {
        let upgrades = match transport {
            TransportKind::Polling if config.allow_upgrades => vec!["websocket".to_owned()],
            _ => Vec::new(),
        };
        Handshake {
            sid: sid.into(),
            upgrades,
            ping_interval: duration_ms(config.ping_interval),
            ping_timeout: duration_ms(config.ping_timeout),
            max_payload: config.max_payload as u64,
        }
    }

    /// The handshake JSON, compact, keys in protocol order (what `JSON.stringify` produces).
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(128);
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut String) {
        use fmt::Write as _;
        out.push_str("{\"sid\":");
        json::push_json_str(out, &self.sid);
        out.push_str(",\"upgrades\":[");
        for (i, u) in self.upgrades.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json::push_json_str(out, u);
        }
        let _ = write!(
            out,
            "],\"pingInterval\":{},\"pingTimeout\":{},\"maxPayload\":{}}}",
            self.ping_interval, self.ping_timeout, self.max_payload
        );
    }

    /// Parses the JSON after the `0`; `base` is the byte offset of `text` in the packet (for errors).
    fn parse(text: &str, base: usize) -> Result<Self, EngineError> {
        serde_json::from_str(text).map_err(|e| EngineError::InvalidHandshake {
            offset: base + json::error_offset(text, &e),
            message: json::error_message(&e),
        })
    }

    /// The ping interval as a [`Duration`].
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval)
    }

    /// The ping timeout as a [`Duration`].
    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.ping_timeout)
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A borrowed Engine.IO packet, parsed without copying from a WebSocket frame or a polling segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketRef<'a> {
    /// `0{...}`: the handshake.
    Open(Handshake),
    /// `1`.
    Close,
    /// `2` with its payload (`""`, or `"probe"` during an upgrade).
    Ping(&'a str),
    /// `3` with its payload.
    Pong(&'a str),
    /// `4<text>`: a text message.
    Message(&'a str),
    /// A binary message: a WebSocket binary frame (no type byte) or `b<base64>` (decoded, owned).
    Binary(Cow<'a, [u8]>),
    /// `5`.
    Upgrade,
    /// `6`.
    Noop,
}

/// An owned Engine.IO packet, cheap to clone (text is shared, binary is [`Bytes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0{...}`: the handshake.
    Open(Handshake),
    /// `1`.
    Close,
    /// `2` with its payload (`""`, or `"probe"`).
    Ping(Cow<'static, str>),
    /// `3` with its payload.
    Pong(Cow<'static, str>),
    /// `4<text>`: a text message.
    Message(Text),
    /// A binary message.
    Binary(Bytes),
    /// `5`.
    Upgrade,
    /// `6`.
    Noop,
}

/// What to put in one WebSocket frame for a packet (see [`Packet::encode_ws`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsFrame<'a> {
    /// A text frame with this content.
    Text(&'a str),
    /// A binary frame with these raw bytes (no type byte in v4).
    Binary(&'a [u8]),
}

impl<'a> PacketRef<'a> {
    /// Parses a text-encoded packet: a WebSocket text frame or one segment of a polling payload.
    ///
    /// A leading `b` means a base64 binary message (engine.io-parser `decodePacket`, accepted on
    /// both transports). Data after `1`, `5` and `6` is accepted and ignored, like the reference.
    pub fn parse_text(text: &'a str) -> Result<Self, EngineError> {
        Self::parse_text_at(text, 0)
    }

    /// Like [`PacketRef::parse_text`] on raw bytes: invalid UTF-8 is an error with its offset.
    pub fn parse_text_bytes(bytes: &'a [u8]) -> Result<Self, EngineError> {
        let text = std::str::from_utf8(bytes).map_err(|e| EngineError::InvalidUtf8 {
            offset: e.valid_up_to(),
        })?;
        Self::parse_text(text)
    }

    /// A WebSocket binary frame: always a binary message, the bytes as they are (v4 has no type byte).
    pub fn parse_binary(bytes: &'a [u8]) -> Self {
        PacketRef::Binary(Cow::Borrowed(bytes))
    }

    /// `base` = byte offset of `text` in the enclosing payload, so errors point into the payload.
    fn parse_text_at(text: &'a str, base: usize) -> Result<Self, EngineError> {
        let Some((&first, _)) = text.as_bytes().split_first() else {
            return Err(EngineError::EmptyPacket { offset: base });
        };
        // The first byte is ASCII in every valid case, so slicing after it is on a char boundary.
        let data = text.get(1..).unwrap_or_default();
        if first == b'b' {
            return BASE64
                .decode(data)
                .map(|v| PacketRef::Binary(Cow::Owned(v)))
                .map_err(|e| EngineError::InvalidBase64 {
                    offset: base + 1 + base64_error_offset(&e, data.len()),
                });
        }
        let Some(kind) = PacketType::from_byte(first) else {
            return Err(EngineError::UnknownPacketType {
                found: text.chars().next().unwrap_or_default(),
                offset: base,
            });
        };
        Ok(match kind {
            PacketType::Open => PacketRef::Open(Handshake::parse(data, base + 1)?),
            PacketType::Close => PacketRef::Close,
            PacketType::Ping => PacketRef::Ping(data),
            PacketType::Pong => PacketRef::Pong(data),
            PacketType::Message => PacketRef::Message(data),
            PacketType::Upgrade => PacketRef::Upgrade,
            PacketType::Noop => PacketRef::Noop,
        })
    }

    /// The packet type (a binary message is [`PacketType::Message`]).
    pub fn packet_type(&self) -> PacketType {
        match self {
            PacketRef::Open(_) => PacketType::Open,
            PacketRef::Close => PacketType::Close,
            PacketRef::Ping(_) => PacketType::Ping,
            PacketRef::Pong(_) => PacketType::Pong,
            PacketRef::Message(_) | PacketRef::Binary(_) => PacketType::Message,
            PacketRef::Upgrade => PacketType::Upgrade,
            PacketRef::Noop => PacketType::Noop,
        }
    }

    /// Copies the packet into its owned form.
    pub fn to_owned_packet(&self) -> Packet {
        match self {
            PacketRef::Open(h) => Packet::Open(h.clone()),
            PacketRef::Close => Packet::Close,
            PacketRef::Ping(p) => Packet::Ping(owned_probe(p)),
            PacketRef::Pong(p) => Packet::Pong(owned_probe(p)),
            PacketRef::Message(t) => Packet::Message(Text::from(*t)),
            PacketRef::Binary(b) => Packet::Binary(Bytes::copy_from_slice(b)),
            PacketRef::Upgrade => Packet::Upgrade,
            PacketRef::Noop => Packet::Noop,
        }
    }

    /// Appends the text encoding (binary as `b<base64>`), as in a polling payload.
    pub fn encode_text(&self, out: &mut String) {
        match self {
            PacketRef::Open(h) => encode_open(h, out),
            PacketRef::Close => out.push('1'),
            PacketRef::Ping(p) => push_typed(out, '2', p),
            PacketRef::Pong(p) => push_typed(out, '3', p),
            PacketRef::Message(t) => push_typed(out, '4', t),
            PacketRef::Binary(b) => encode_b64(b, out),
            PacketRef::Upgrade => out.push('5'),
            PacketRef::Noop => out.push('6'),
        }
    }

    /// One-line human summary, e.g. `ping probe`, `message 42["foo"]`, `binary 4 B 01 02 03 04`.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        match self {
            PacketRef::Open(h) => summarize_open(h, &mut out),
            PacketRef::Close => out.push_str("close"),
            PacketRef::Ping(p) => summarize_typed(&mut out, "ping", p),
            PacketRef::Pong(p) => summarize_typed(&mut out, "pong", p),
            PacketRef::Message(t) => summarize_typed(&mut out, "message", t),
            PacketRef::Binary(b) => summarize_binary(&mut out, b),
            PacketRef::Upgrade => out.push_str("upgrade"),
            PacketRef::Noop => out.push_str("noop"),
        }
        out
    }
}

impl fmt::Display for PacketRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

fn owned_probe(p: &str) -> Cow<'static, str> {
    match p {
        "" => Cow::Borrowed(""),
        "probe" => Cow::Borrowed("probe"),
        other => Cow::Owned(other.to_owned()),
    }
}

fn push_typed(out: &mut String, t: char, data: &str) {
    out.reserve(1 + data.len());
    out.push(t);
    out.push_str(data);
}

fn encode_open(h: &Handshake, out: &mut String) {
    out.push('0');
    h.write_json(out);
}

fn encode_b64(b: &[u8], out: &mut String) {
    out.push('b');
    BASE64.encode_string(b, out);
}

fn base64_error_offset(e: &base64::DecodeError, len: usize) -> usize {
    match *e {
        base64::DecodeError::InvalidByte(o, _) => o,
        base64::DecodeError::InvalidLastSymbol { offset, .. } => offset,
        base64::DecodeError::InvalidLength(_) | base64::DecodeError::InvalidPadding => len,
    }
}

fn summarize_open(h: &Handshake, out: &mut String) {
    use fmt::Write as _;
    let _ = write!(
        out,
        "open sid={} upgrades=[{}] pingInterval={} pingTimeout={} maxPayload={}",
        h.sid,
        h.upgrades.join(","),
        h.ping_interval,
        h.ping_timeout,
        h.max_payload
    );
}

fn summarize_typed(out: &mut String, name: &str, data: &str) {
    out.push_str(name);
    if !data.is_empty() {
        out.push(' ');
        json::push_one_line(out, data, json::SUMMARY_MAX_CHARS);
    }
}

fn summarize_binary(out: &mut String, b: &[u8]) {
    use fmt::Write as _;
    let _ = write!(out, "binary {} B", b.len());
    if !b.is_empty() {
        out.push(' ');
        json::push_hex(out, b, 16);
    }
}

impl Packet {
    /// A text message packet.
    pub fn message(text: impl Into<Text>) -> Self {
        Packet::Message(text.into())
    }

    /// A binary message packet.
    pub fn binary(bytes: impl Into<Bytes>) -> Self {
        Packet::Binary(bytes.into())
    }

    /// The packet type (a binary message is [`PacketType::Message`]).
    pub fn packet_type(&self) -> PacketType {
        self.as_ref().packet_type()
    }

    /// A borrowed view of this packet.
    pub fn as_ref(&self) -> PacketRef<'_> {
        match self {
            Packet::Open(h) => PacketRef::Open(h.clone()),
            Packet::Close => PacketRef::Close,
            Packet::Ping(p) => PacketRef::Ping(p),
            Packet::Pong(p) => PacketRef::Pong(p),
            Packet::Message(t) => PacketRef::Message(t),
            Packet::Binary(b) => PacketRef::Binary(Cow::Borrowed(b)),
            Packet::Upgrade => PacketRef::Upgrade,
            Packet::Noop => PacketRef::Noop,
        }
    }

    /// Appends the text encoding (binary as `b<base64>`), as in a polling payload or text frame.
    pub fn encode_text(&self, out: &mut String) {
        match self {
            Packet::Open(h) => encode_open(h, out),
            Packet::Close => out.push('1'),
            Packet::Ping(p) => push_typed(out, '2', p),
            Packet::Pong(p) => push_typed(out, '3', p),
            Packet::Message(t) => push_typed(out, '4', t),
            Packet::Binary(b) => encode_b64(b, out),
            Packet::Upgrade => out.push('5'),
            Packet::Noop => out.push('6'),
        }
    }

    /// The text encoding as a new string.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.encode_text(&mut out);
        out
    }

    /// The WebSocket frame for this packet (engine.io-protocol v4 "WebSocket"): binary messages are
    /// binary frames with the raw bytes and no type byte; everything else is a text frame, encoded
    /// into `text_buf` (cleared first, reusable across calls).
    pub fn encode_ws<'s>(&'s self, text_buf: &'s mut String) -> WsFrame<'s> {
        if let Packet::Binary(b) = self {
            return WsFrame::Binary(b);
        }
        text_buf.clear();
        self.encode_text(text_buf);
        WsFrame::Text(text_buf)
    }

    /// Length in bytes of [`Packet::encode_text`]'s output.
    pub fn encoded_len(&self) -> usize {
        match self {
            Packet::Open(h) => 1 + h.to_json().len(),
            Packet::Close | Packet::Upgrade | Packet::Noop => 1,
            Packet::Ping(p) | Packet::Pong(p) => 1 + p.len(),
            Packet::Message(t) => 1 + t.len(),
            Packet::Binary(b) => 1 + b.len().div_ceil(3) * 4,
        }
    }

    /// One-line human summary (see [`PacketRef::summary`]).
    pub fn summary(&self) -> String {
        self.as_ref().summary()
    }
}

impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

/// Decoding and encoding of HTTP long-polling bodies (protocol v4 "HTTP long-polling"):
/// packets joined by `\x1e`, binary messages as `b<base64>`, the same in both directions.
#[derive(Debug, Clone, Copy)]
pub struct Payload;

impl Payload {
    /// Iterates over the packets of a body; each item is a packet or the error of its segment.
    pub fn iter(body: &str) -> PayloadIter<'_> {
        PayloadIter {
            body,
            pos: 0,
            done: false,
        }
    }

    /// Decodes a whole body; the first bad segment fails it (the reference closes the session).
    pub fn decode(body: &str) -> Result<Vec<PacketRef<'_>>, EngineError> {
        Self::iter(body).collect()
    }

    /// Like [`Payload::decode`] on raw bytes: invalid UTF-8 is an error with its offset.
    pub fn decode_bytes(body: &[u8]) -> Result<Vec<PacketRef<'_>>, EngineError> {
        let text = std::str::from_utf8(body).map_err(|e| EngineError::InvalidUtf8 {
            offset: e.valid_up_to(),
        })?;
        Self::decode(text)
    }

    /// Appends the packets joined by `\x1e` to `out`.
    pub fn encode<'p>(packets: impl IntoIterator<Item = &'p Packet>, out: &mut String) {
        for (i, p) in packets.into_iter().enumerate() {
            if i > 0 {
                out.push(char::from(SEPARATOR));
            }
            p.encode_text(out);
        }
    }

    /// The packets joined by `\x1e`, as a new string.
    pub fn encode_to_string<'p>(packets: impl IntoIterator<Item = &'p Packet>) -> String {
        let mut out = String::new();
        Self::encode(packets, &mut out);
        out
    }
}

/// Iterator over the packets of a polling body (see [`Payload::iter`]); stops after an error.
#[derive(Debug, Clone)]
pub struct PayloadIter<'a> {
    body: &'a str,
    pos: usize,
    done: bool,
}

impl<'a> Iterator for PayloadIter<'a> {
    type Item = Result<PacketRef<'a>, EngineError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.body.get(self.pos..).unwrap_or_default();
        let start = self.pos;
        // 0x1e is ASCII, so the split points are char boundaries.
        let segment = match memchr_1e(rest.as_bytes()) {
            Some(i) => {
                self.pos += i + 1;
                rest.get(..i).unwrap_or_default()
            }
            None => {
                self.done = true;
                rest
            }
        };
        let item = PacketRef::parse_text_at(segment, start);
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }
}

fn memchr_1e(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == SEPARATOR)
}

/// The reference server's error codes for rejected requests (engine.io `Server.errors`), sent as
/// the JSON body `{"code":N,"message":"..."}` with HTTP 400 (403 for [`ErrorCode::Forbidden`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0: missing or unknown `transport` parameter.
    UnknownTransport,
    /// 1: `sid` names no open session.
    UnknownSid,
    /// 2: a handshake that is not a GET.
    BadHandshakeMethod,
    /// 3: anything else wrong with the request.
    BadRequest,
    /// 4: refused by the application.
    Forbidden,
    /// 5: missing or unsupported `EIO` (only `4` is spoken here).
    UnsupportedProtocolVersion,
}

impl ErrorCode {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Self::UnknownTransport => 0,
            Self::UnknownSid => 1,
            Self::BadHandshakeMethod => 2,
            Self::BadRequest => 3,
            Self::Forbidden => 4,
            Self::UnsupportedProtocolVersion => 5,
        }
    }

    /// The code for a number, if it is one of the six.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::UnknownTransport,
            1 => Self::UnknownSid,
            2 => Self::BadHandshakeMethod,
            3 => Self::BadRequest,
            4 => Self::Forbidden,
            5 => Self::UnsupportedProtocolVersion,
            _ => return None,
        })
    }

    /// The reference message text.
    pub fn message(self) -> &'static str {
        match self {
            Self::UnknownTransport => "Transport unknown",
            Self::UnknownSid => "Session ID unknown",
            Self::BadHandshakeMethod => "Bad handshake method",
            Self::BadRequest => "Bad request",
            Self::Forbidden => "Forbidden",
            Self::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// The HTTP status the reference answers with (403 for Forbidden, else 400).
    pub fn http_status(self) -> u16 {
        match self {
            Self::Forbidden => 403,
            _ => 400,
        }
    }

    /// The JSON body, byte for byte as the reference writes it: `{"code":0,"message":"Transport unknown"}`.
    pub fn json_body(self) -> String {
        format!(
            "{{\"code\":{},\"message\":\"{}\"}}",
            self.code(),
            self.message()
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.message(), self.code())
    }
}

/// Why a session ended, with the reference server's reason strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// No pong (server side) or no ping (client side) in time.
    PingTimeout,
    /// The peer closed the transport (close packet, WebSocket gone).
    TransportClose,
    /// The transport failed (duplicate poll, aborted request, invalid heartbeat direction, ...).
    TransportError,
    /// The peer sent bytes that are not Engine.IO.
    ParseError,
    /// This side closed the session ([`ServerSession::close`], [`ClientSession::close`]).
    ForcedClose,
    /// The server is shutting down ([`ServerSession::close_for_shutdown`]).
    ServerShutdown,
}

impl CloseReason {
    /// The reference reason string (`"ping timeout"`, `"transport close"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PingTimeout => "ping timeout",
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::ParseError => "parse error",
            Self::ForcedClose => "forced close",
            Self::ServerShutdown => "server shutting down",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong in this module: parse errors carry the byte offset of the bad
/// input; session errors say which rule was broken. [`EngineError::http_status`] maps each one to
/// the status a server answers the offending HTTP request with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// An empty packet (e.g. an empty body, or `\x1e\x1e` in a payload).
    #[error("empty Engine.IO packet at byte {offset}")]
    EmptyPacket {
        /// Byte offset of the empty segment.
        offset: usize,
    },
    /// The first character is not a packet type digit nor `b`.
    #[error("unknown Engine.IO packet type {found:?} at byte {offset}")]
    UnknownPacketType {
        /// The character found.
        found: char,
        /// Its byte offset.
        offset: usize,
    },
    /// A `b` packet whose base64 does not decode.
    #[error("invalid base64 in binary packet at byte {offset}")]
    InvalidBase64 {
        /// Byte offset of the first bad character.
        offset: usize,
    },
    /// The open packet's JSON is not a handshake.
    #[error("invalid handshake JSON at byte {offset}: {message}")]
    InvalidHandshake {
        /// Byte offset where the JSON went wrong.
        offset: usize,
        /// What serde_json said.
        message: String,
    },
    /// Text that is not UTF-8.
    #[error("invalid UTF-8 at byte {offset}")]
    InvalidUtf8 {
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// A polling body larger than `maxPayload` (answered with HTTP 413; the session survives).
    #[error("payload of {len} bytes exceeds maxPayload of {max} bytes")]
    PayloadTooLarge {
        /// Body length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A request the server rejects with a reference error body.
    #[error("request rejected: {0}")]
    Rejected(ErrorCode),
    /// A second polling GET while one is pending (the session is closed).
    #[error("duplicate concurrent polling GET for the same session")]
    DuplicatePoll,
    /// A ping from the client outside the upgrade probe (the session is closed).
    #[error("invalid heartbeat direction: ping received from the client")]
    InvalidHeartbeatDirection,
    /// An operation that is not valid in the session's current state (a driver bug).
    #[error("{0}")]
    InvalidState(&'static str),
}

impl EngineError {
    /// Byte offset of the bad input, for parse errors.
    pub fn offset(&self) -> Option<usize> {
        match self {
            Self::EmptyPacket { offset }
            | Self::UnknownPacketType { offset, .. }
            | Self::InvalidBase64 { offset }
            | Self::InvalidHandshake { offset, .. }
            | Self::InvalidUtf8 { offset } => Some(*offset),
            _ => None,
        }
    }

    /// The HTTP status for the request that caused the error: 413 for an oversized body, the
    /// code's status for [`EngineError::Rejected`], else 400.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::PayloadTooLarge { .. } => 413,
            Self::Rejected(code) => code.http_status(),
            _ => 400,
        }
    }

    /// The reference error code for this error ([`ErrorCode::BadRequest`] unless rejected with another).
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::Rejected(code) => *code,
            _ => ErrorCode::BadRequest,
        }
    }
}

/// The two transports of a request or of an initial connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// HTTP long-polling (`transport=polling`).
    Polling,
    /// WebSocket (`transport=websocket`).
    WebSocket,
}

impl TransportKind {
    /// The query parameter value (`polling` / `websocket`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Polling => "polling",
            Self::WebSocket => "websocket",
        }
    }
}

/// Where a session's traffic currently flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// HTTP long-polling.
    Polling,
    /// Polling, with a WebSocket attached that is being probed (protocol v4 "Upgrade").
    Upgrading,
    /// WebSocket only.
    WebSocket,
    /// The session is over.
    Closed,
}

/// Data a peer sent in a message packet, borrowed from the input where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data<'a> {
    /// A text message (for Socket.IO, one encoded Socket.IO packet).
    Text(&'a str),
    /// A binary message (for Socket.IO, one attachment).
    Binary(Cow<'a, [u8]>),
}

/// Session parameters (server side; announced to the client in the handshake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Time between pings (reference default 25 s).
    pub ping_interval: Duration,
    /// Time to wait for a pong (reference default 20 s).
    pub ping_timeout: Duration,
    /// Largest polling POST body accepted, in bytes (node's `maxHttpBufferSize`, default 1e6).
    pub max_payload: usize,
    /// Time a client gets to complete an upgrade after its WebSocket attached (default 10 s).
    pub upgrade_timeout: Duration,
    /// Time a closing polling session waits for a GET to deliver its last packets (default 30 s,
    /// the reference polling transport's `closeTimeout`).
    pub close_timeout: Duration,
    /// Whether sessions opened over polling may upgrade to WebSocket (`upgrades: ["websocket"]`).
    pub allow_upgrades: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            upgrade_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(30),
            allow_upgrades: true,
        }
    }
}

/// The Engine.IO query parameters of a request (`EIO`, `transport`, `sid`; `t` and others ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Query<'a> {
    /// `EIO`, the protocol revision.
    pub eio: Option<&'a str>,
    /// `transport`.
    pub transport: Option<&'a str>,
    /// `sid`.
    pub sid: Option<&'a str>,
}

impl<'a> Query<'a> {
    /// Parses the query string (the part after `?`, or a full path-and-query). The first
    /// occurrence of a key wins; values are used as they are (session ids need no decoding).
    pub fn parse(query: &'a str) -> Self {
        let query = match query.split_once('?') {
            Some((_, q)) => q,
            None => query,
        };
        let mut q = Query::default();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match k {
                "EIO" => &mut q.eio,
                "transport" => &mut q.transport,
                "sid" => &mut q.sid,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v);
            }
        }
        q
    }

    /// Classifies a request the way the reference server's `verify` does. `method` is the HTTP
    /// method; `websocket_upgrade` says whether it asks for a WebSocket upgrade. Order of checks:
    /// transport (code 0); with a sid, a poll (GET), a post (POST) or an upgrade, anything else
    /// [`Request::Invalid`] (the caller looks the sid up first, as the reference does: unknown →
    /// [`ErrorCode::UnknownSid`], else [`ErrorCode::BadRequest`]); without a sid the handshake
    /// rules: GET only (code 2), a websocket transport needs an upgrade and an upgrade a websocket
    /// transport (code 3), and `EIO=4` (code 5).
    pub fn classify(
        &self,
        method: &str,
        websocket_upgrade: bool,
    ) -> Result<Request<'a>, ErrorCode> {
        let transport = match self.transport {
            Some("polling") => TransportKind::Polling,
            Some("websocket") => TransportKind::WebSocket,
            _ => return Err(ErrorCode::UnknownTransport),
        };
        let transport_matches = websocket_upgrade == (transport == TransportKind::WebSocket);
        match (self.sid, transport) {
            (Some(sid), _) if !transport_matches => Ok(Request::Invalid { sid }),
            (Some(sid), TransportKind::Polling) => match method {
                "GET" => Ok(Request::Poll { sid }),
                "POST" => Ok(Request::Post { sid }),
                _ => Ok(Request::Invalid { sid }),
            },
            (Some(sid), TransportKind::WebSocket) => Ok(Request::Upgrade { sid }),
            (None, _) => {
                if method != "GET" {
                    return Err(ErrorCode::BadHandshakeMethod);
                }
                if !transport_matches {
                    return Err(ErrorCode::BadRequest);
                }
                if self.eio != Some(PROTOCOL_VERSION) {
                    return Err(ErrorCode::UnsupportedProtocolVersion);
                }
                Ok(Request::Handshake { transport })
            }
        }
    }
}

/// What a valid Engine.IO request asks for (see [`Query::classify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// Open a new session over this transport.
    Handshake {
        /// The transport of the first connection.
        transport: TransportKind,
    },
    /// Polling GET for an existing session.
    Poll {
        /// The session id.
        sid: &'a str,
    },
    /// Polling POST for an existing session.
    Post {
        /// The session id.
        sid: &'a str,
    },
    /// A WebSocket for an existing session (an upgrade).
    Upgrade {
        /// The session id.
        sid: &'a str,
    },
    /// A request naming a session that is none of the above (a plain request with
    /// `transport=websocket`, an upgrade with `transport=polling`, a polling request that is
    /// neither GET nor POST): [`ErrorCode::UnknownSid`] if the session does not exist, else
    /// [`ErrorCode::BadRequest`].
    Invalid {
        /// The session id.
        sid: &'a str,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<PacketRef<'_>, EngineError> {
        PacketRef::parse_text(s)
    }

    #[test]
    fn parses_every_packet_type_from_text_frames() {
        assert_eq!(parse("1"), Ok(PacketRef::Close));
        assert_eq!(parse("2"), Ok(PacketRef::Ping("")));
        assert_eq!(parse("2probe"), Ok(PacketRef::Ping("probe")));
        assert_eq!(parse("3probe"), Ok(PacketRef::Pong("probe")));
        assert_eq!(parse("4hello"), Ok(PacketRef::Message("hello")));
        assert_eq!(parse("4"), Ok(PacketRef::Message("")));
        assert_eq!(parse("5"), Ok(PacketRef::Upgrade));
        assert_eq!(parse("6"), Ok(PacketRef::Noop));
        assert_eq!(
            parse("bAQIDBA=="),
            Ok(PacketRef::Binary(Cow::Owned(vec![1, 2, 3, 4])))
        );
        // The reference decodes and ignores data after close/upgrade/noop.
        assert_eq!(parse("1bye"), Ok(PacketRef::Close));
    }

    #[test]
    fn message_text_is_borrowed_from_the_input() {
        let frame = String::from("442[\"foo\"]");
        match parse(&frame) {
            Ok(PacketRef::Message(t)) => assert_eq!(t.as_ptr(), frame[1..].as_ptr()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_the_handshake_of_the_spec() {
        let text = r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        let h = Handshake {
            sid: "lv_VI97HAXpY6yYWAAAC".into(),
            upgrades: vec!["websocket".into()],
            ping_interval: 25000,
            ping_timeout: 20000,
            max_payload: 1_000_000,
        };
        assert_eq!(parse(text), Ok(PacketRef::Open(h.clone())));
        assert_eq!(Packet::Open(h).to_text(), text);
    }

    #[test]
    fn handshake_of_a_websocket_open_has_no_upgrades() {
        let c = SessionConfig {
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            ..SessionConfig::default()
        };
        assert_eq!(
            Handshake::new("abc", TransportKind::WebSocket, &c).to_json(),
            r#"{"sid":"abc","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}"#
        );
        assert_eq!(
            Handshake::new("abc", TransportKind::Polling, &c).to_json(),
            r#"{"sid":"abc","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}"#
        );
    }

    #[test]
    fn rejects_bad_packets_with_offsets() {
        assert_eq!(parse(""), Err(EngineError::EmptyPacket { offset: 0 }));
        assert_eq!(
            parse("abc"),
            Err(EngineError::UnknownPacketType {
                found: 'a',
                offset: 0
            })
        );
        assert_eq!(
            parse("7"),
            Err(EngineError::UnknownPacketType {
                found: '7',
                offset: 0
            })
        );
        assert_eq!(
            parse("ébc").map_err(|e| e.offset()),
            Err(Some(0)),
            "non-ASCII first char"
        );
        assert_eq!(
            parse("bAQ*DBA=="),
            Err(EngineError::InvalidBase64 { offset: 3 })
        );
        let e = parse(r#"0{"sid":"x","upgrades":[]"#).unwrap_err();
        assert!(matches!(e, EngineError::InvalidHandshake { .. }), "{e:?}");
        assert_eq!(e.offset(), Some(25));
        assert_eq!(
            PacketRef::parse_text_bytes(b"4ab\xffc"),
            Err(EngineError::InvalidUtf8 { offset: 3 })
        );
    }

    #[test]
    fn websocket_binary_frames_have_no_type_byte() {
        let frame = [1u8, 2, 3, 4];
        let p = PacketRef::parse_binary(&frame);
        assert_eq!(p, PacketRef::Binary(Cow::Borrowed(&frame[..])));
        let owned = p.to_owned_packet();
        let mut buf = String::new();
        assert_eq!(owned.encode_ws(&mut buf), WsFrame::Binary(&[1, 2, 3, 4]));
        let msg = Packet::message("hello");
        assert_eq!(msg.encode_ws(&mut buf), WsFrame::Text("4hello"));
    }

    #[test]
    fn polling_payload_examples_of_the_spec() {
        // §1.4: `4hello\x1ebAQIDBA==` = message "hello" + message <01 02 03 04>.
        let body = "4hello\x1ebAQIDBA==";
        let packets = Payload::decode(body).unwrap();
        assert_eq!(
            packets,
            vec![
                PacketRef::Message("hello"),
                PacketRef::Binary(Cow::Owned(vec![1, 2, 3, 4]))
            ]
        );
        let owned: Vec<Packet> = packets.iter().map(PacketRef::to_owned_packet).collect();
        assert_eq!(Payload::encode_to_string(&owned), body);

        let body = "4test1\x1e4test2\x1e4test3";
        let owned: Vec<Packet> = Payload::decode(body)
            .unwrap()
            .iter()
            .map(PacketRef::to_owned_packet)
            .collect();
        assert_eq!(owned.len(), 3);
        assert_eq!(Payload::encode_to_string(&owned), body);
        assert_eq!(Payload::decode("2").unwrap(), vec![PacketRef::Ping("")]);
    }

    #[test]
    fn polling_payload_errors_point_into_the_body() {
        assert_eq!(
            Payload::decode("4a\x1e\x1e4b"),
            Err(EngineError::EmptyPacket { offset: 3 })
        );
        assert_eq!(
            Payload::decode("4a\x1ex"),
            Err(EngineError::UnknownPacketType {
                found: 'x',
                offset: 3
            })
        );
        assert_eq!(
            Payload::decode("4hello\x1ebAQ!DBA=="),
            Err(EngineError::InvalidBase64 { offset: 10 })
        );
        assert_eq!(
            Payload::decode(""),
            Err(EngineError::EmptyPacket { offset: 0 })
        );
        assert_eq!(
            Payload::decode_bytes(b"4a\x1e4\xc3"),
            Err(EngineError::InvalidUtf8 { offset: 4 })
        );
        let mut it = Payload::iter("4a\x1ez\x1e4b");
        assert_eq!(it.next(), Some(Ok(PacketRef::Message("a"))));
        assert!(matches!(it.next(), Some(Err(_))));
        assert_eq!(it.next(), None, "iteration stops after an error");
    }

    #[test]
    fn base64_decoding_is_lenient_about_padding() {
        assert_eq!(
            parse("bAQIDBA"),
            Ok(PacketRef::Binary(Cow::Owned(vec![1, 2, 3, 4])))
        );
        assert_eq!(parse("b"), Ok(PacketRef::Binary(Cow::Owned(vec![]))));
        assert_eq!(Packet::binary(vec![]).to_text(), "b");
    }

    #[test]
    fn error_bodies_match_the_reference_byte_for_byte() {
        let all = [
            (0, "Transport unknown", 400),
            (1, "Session ID unknown", 400),
            (2, "Bad handshake method", 400),
            (3, "Bad request", 400),
            (4, "Forbidden", 403),
            (5, "Unsupported protocol version", 400),
        ];
        for (code, message, status) in all {
            let e = ErrorCode::from_code(code).unwrap();
            assert_eq!(e.code(), code);
            assert_eq!(e.message(), message);
            assert_eq!(e.http_status(), status);
            assert_eq!(
                e.json_body(),
                format!("{{\"code\":{code},\"message\":\"{message}\"}}")
            );
        }
        assert_eq!(
            ErrorCode::UnknownTransport.json_body(),
            r#"{"code":0,"message":"Transport unknown"}"#
        );
        assert_eq!(ErrorCode::from_code(6), None);
    }

    #[test]
    fn classifies_requests_like_the_reference_verify() {
        fn c<'q>(q: &'q str, m: &str, ws: bool) -> Result<Request<'q>, ErrorCode> {
            Query::parse(q).classify(m, ws)
        }
        assert_eq!(
            c(
                "/engine.io/?EIO=4&transport=polling&t=N8hyd6w",
                "GET",
                false
            ),
            Ok(Request::Handshake {
                transport: TransportKind::Polling
            })
        );
        assert_eq!(
            c("EIO=4&transport=websocket", "GET", true),
            Ok(Request::Handshake {
                transport: TransportKind::WebSocket
            })
        );
        assert_eq!(
            c("EIO=4&transport=polling&sid=abc", "POST", false),
            Ok(Request::Post { sid: "abc" })
        );
        assert_eq!(
            c("EIO=4&transport=polling&sid=abc", "GET", false),
            Ok(Request::Poll { sid: "abc" })
        );
        assert_eq!(
            c("EIO=4&transport=websocket&sid=abc", "GET", true),
            Ok(Request::Upgrade { sid: "abc" })
        );
        assert_eq!(c("EIO=4", "GET", false), Err(ErrorCode::UnknownTransport));
        assert_eq!(
            c("EIO=4&transport=abc", "GET", false),
            Err(ErrorCode::UnknownTransport)
        );
        assert_eq!(
            c("transport=polling", "GET", false),
            Err(ErrorCode::UnsupportedProtocolVersion)
        );
        assert_eq!(
            c("EIO=abc&transport=polling", "GET", false),
            Err(ErrorCode::UnsupportedProtocolVersion)
        );
        assert_eq!(
            c("EIO=3&transport=polling", "GET", false),
            Err(ErrorCode::UnsupportedProtocolVersion)
        );
        assert_eq!(
            c("EIO=4&transport=polling", "POST", false),
            Err(ErrorCode::BadHandshakeMethod)
        );
        assert_eq!(
            c("EIO=4&transport=polling", "PUT", false),
            Err(ErrorCode::BadHandshakeMethod)
        );
        assert_eq!(
            c("EIO=4&transport=websocket", "GET", false),
            Err(ErrorCode::BadRequest)
        );
        assert_eq!(
            c("EIO=4&transport=polling", "GET", true),
            Err(ErrorCode::BadRequest)
        );
        // The method before the transport's upgrade rule, as the reference.
        assert_eq!(
            c("EIO=4&transport=websocket", "POST", false),
            Err(ErrorCode::BadHandshakeMethod)
        );
        // With a sid, whether it exists is answered first (by the caller).
        for (q, m, ws) in [
            ("EIO=4&transport=polling&sid=x", "PUT", false),
            ("EIO=4&transport=websocket&sid=x", "GET", false),
            ("EIO=4&transport=websocket&sid=x", "POST", false),
            ("EIO=4&transport=polling&sid=x", "GET", true),
        ] {
            assert_eq!(c(q, m, ws), Ok(Request::Invalid { sid: "x" }), "{m} {q}");
        }
    }

    #[test]
    fn session_ids_look_like_base64id() {
        let sid = sid_from_random(&[0xfb; 15]);
        assert_eq!(sid.len(), 20);
        assert_eq!(sid, "-_v7-_v7-_v7-_v7-_v7");
        assert!(
            sid_from_random(&[7; 15])
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }

    #[test]
    fn summaries_are_one_line() {
        assert_eq!(parse("2probe").unwrap().summary(), "ping probe");
        assert_eq!(parse("2").unwrap().summary(), "ping");
        assert_eq!(
            parse("4a\nb").unwrap().summary(),
            "message a\\nb",
            "newlines are escaped"
        );
        assert_eq!(
            Packet::binary(vec![1, 2, 3, 4]).summary(),
            "binary 4 B 01 02 03 04"
        );
    }

    #[test]
    fn encoded_len_matches_the_encoding() {
        let packets = [
            Packet::Close,
            Packet::Ping("probe".into()),
            Packet::message("héllo"),
            Packet::binary(vec![1, 2, 3, 4, 5]),
            Packet::Open(Handshake::new(
                "s",
                TransportKind::Polling,
                &SessionConfig::default(),
            )),
        ];
        for p in packets {
            assert_eq!(p.encoded_len(), p.to_text().len(), "{p:?}");
        }
    }
}
