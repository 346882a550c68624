//! Socket.IO v5 packets, namespaces, acks and binary attachments.
//!
//! Wire rules: socketio/socket.io-protocol v5 (notes in `docs/socketio-protocol.md` §2), validated
//! as strictly as the reference decoder (socket.io-parser 4.2 `decodeString` + `isPayloadValid`).
//!
//! - [`PacketRef`] is the zero-copy fast path: type, namespace, ack id, event name and the raw JSON
//!   text of the arguments, all borrowed from the input; no `serde_json::Value` is built.
//! - [`Packet`] is the owned form with a [`serde_json::Value`] payload and its binary attachments.
//! - [`encode_event_raw`] / [`encode_ack_raw`] write packets by concatenation into a reusable buffer.
//! - [`Reassembler`] joins a binary packet's header with the attachments that follow it;
//!   [`deconstruct`] / [`reconstruct`] move buffers out of / back into the arguments.

mod binary;
mod scan;

pub use binary::{BinValue, Reassembler, deconstruct, is_placeholder, placeholder, reconstruct};

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use bytes::Bytes;
use serde::de::{self, Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::engineio;
use super::json;

/// The default namespace.
pub const DEFAULT_NAMESPACE: &str = "/";

/// Most attachments one packet may announce (socket.io-parser 4.2 `maxAttachments` default).
pub const MAX_ATTACHMENTS: usize = 10;

/// Event names the reference parser rejects (socket.io-parser `RESERVED_EVENTS`).
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// The Socket.IO packet types (protocol v5 "Packet types").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// `0`: connect to a namespace (C→S optional auth object; S→C `{"sid":...}`).
    Connect,
    /// `1`: leave a namespace.
    Disconnect,
    /// `2`: an event: `["name", ...args]`.
    Event,
    /// `3`: the answer to an event that asked for an ack: `[...args]`.
    Ack,
    /// `4`: a refused connect: `{"message":...}`.
    ConnectError,
    /// `5`: an event with binary attachments.
    BinaryEvent,
    /// `6`: an ack with binary attachments.
    BinaryAck,
}

impl PacketType {
    /// Parses the type digit.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }

    /// The type digit.
    pub fn as_char(self) -> char {
        match self {
            Self::Connect => '0',
            Self::Disconnect => '1',
            Self::Event => '2',
            Self::Ack => '3',
            Self::ConnectError => '4',
            Self::BinaryEvent => '5',
            Self::BinaryAck => '6',
        }
    }

    /// The reference name (`CONNECT`, `EVENT`, `BINARY_ACK`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::Disconnect => "DISCONNECT",
            Self::Event => "EVENT",
            Self::Ack => "ACK",
            Self::ConnectError => "CONNECT_ERROR",
            Self::BinaryEvent => "BINARY_EVENT",
            Self::BinaryAck => "BINARY_ACK",
        }
    }

    /// BINARY_EVENT or BINARY_ACK: the header is followed by attachments.
    pub fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }

    /// EVENT or BINARY_EVENT.
    pub fn is_event(self) -> bool {
        matches!(self, Self::Event | Self::BinaryEvent)
    }

    /// ACK or BINARY_ACK.
    pub fn is_ack(self) -> bool {
        matches!(self, Self::Ack | Self::BinaryAck)
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a Socket.IO packet was refused. Every parse error carries the byte offset (in the
/// Socket.IO text, i.e. after the Engine.IO `4`) where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SocketIoError {
    /// An empty string.
    #[error("empty Socket.IO packet")]
    Empty,
    /// The first character is not `0`..`6`.
    #[error("unknown Socket.IO packet type {found:?} at byte 0")]
    UnknownPacketType {
        /// The character found.
        found: char,
    },
    /// The `N-` attachment count of a binary packet is missing, not a positive number, or has no `-`.
    #[error("illegal attachment count at byte {offset}")]
    IllegalAttachments {
        /// Byte offset of the count.
        offset: usize,
    },
    /// More attachments than the reference accepts.
    #[error("too many attachments ({count}, at most {MAX_ATTACHMENTS}) at byte {offset}")]
    TooManyAttachments {
        /// The announced count.
        count: u64,
        /// Byte offset of the count.
        offset: usize,
    },
    /// An ack id that does not fit in 64 bits.
    #[error("ack id out of range at byte {offset}")]
    InvalidAckId {
        /// Byte offset of the id.
        offset: usize,
    },
    /// The payload is not JSON (this also covers junk such as `2abc[...]`).
    #[error("invalid JSON at byte {offset}: {message}")]
    InvalidJson {
        /// Byte offset where the JSON went wrong.
        offset: usize,
        /// What the JSON parser said.
        message: String,
    },
    /// Valid JSON of the wrong shape for the packet type (reference `isPayloadValid`).
    #[error("invalid {packet_type} payload at byte {offset}: {reason}")]
    InvalidPayload {
        /// The packet type.
        packet_type: PacketType,
        /// Byte offset of the payload.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// An EVENT named like one of [`RESERVED_EVENTS`].
    #[error("reserved event name {name:?} at byte {offset}")]
    ReservedEventName {
        /// The name.
        name: String,
        /// Byte offset of the name.
        offset: usize,
    },
    /// Text that is not UTF-8.
    #[error("invalid UTF-8 at byte {offset}")]
    InvalidUtf8 {
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// A namespace containing `,`, which cannot be encoded (reference `isNamespaceValid`).
    #[error("invalid namespace {nsp:?}: must not contain a comma")]
    InvalidNamespace {
        /// The namespace.
        nsp: String,
    },
    /// A text packet arrived while a binary packet still waits for attachments.
    #[error("got a text packet while waiting for {missing} binary attachment(s)")]
    UnexpectedText {
        /// Attachments still missing.
        missing: usize,
    },
    /// A binary message arrived with no binary packet waiting for it.
    #[error("got binary data when not reconstructing a packet")]
    UnexpectedBinary,
    /// A placeholder that names no attachment (reference "illegal attachments").
    #[error("illegal attachments: placeholder {num} with {count} attachment(s)")]
    IllegalPlaceholder {
        /// The placeholder's `num` as written.
        num: String,
        /// The number of attachments.
        count: usize,
    },
    /// [`Packet::decode`] / [`PacketRef::to_packet`] got the header of a binary packet; use a
    /// [`Reassembler`].
    #[error("{packet_type} header announces {count} attachment(s); decode it with a Reassembler")]
    AttachmentsFollow {
        /// BINARY_EVENT or BINARY_ACK.
        packet_type: PacketType,
        /// The announced count.
        count: usize,
    },
}

impl SocketIoError {
    /// Byte offset of the bad input, for parse errors.
    pub fn offset(&self) -> Option<usize> {
        match self {
            Self::Empty | Self::UnknownPacketType { .. } => Some(0),
            Self::IllegalAttachments { offset }
            | Self::TooManyAttachments { offset, .. }
            | Self::InvalidAckId { offset }
            | Self::InvalidJson { offset, .. }
            | Self::InvalidPayload { offset, .. }
            | Self::ReservedEventName { offset, .. }
            | Self::InvalidUtf8 { offset } => Some(*offset),
            _ => None,
        }
    }
}

/// A borrowed, validated Socket.IO packet: everything is a slice of the input text.
///
/// This is the fast path of the relay: [`PacketRef::parse`] checks the packet as strictly as
/// the reference decoder but builds no JSON tree; the arguments stay raw JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketRef<'a> {
    packet_type: PacketType,
    attachments: usize,
    nsp: &'a str,
    id: Option<u64>,
    data: Option<&'a str>,
    event: Option<Cow<'a, str>>,
    event_json: Option<&'a str>,
    args: &'a str,
    first_arg: Option<&'a str>,
    arg_count: usize,
}

impl<'a> PacketRef<'a> {
    /// Parses `<type>[<attachments>-][<nsp>,][<ack id>][<JSON>]` (protocol v5 "Packet encoding").
    ///
    /// Accepts a namespace ended by `,` or by the end of the text (`40/custom`), like the
    /// reference. Stricter than it in JavaScript-coercion corner cases (`" 1-"` as a count, a
    /// space as an ack id digit) and in requiring a payload for EVENT/ACK.
    pub fn parse(input: &'a str) -> Result<Self, SocketIoError> {
        let bytes = input.as_bytes();
        let Some(&first) = bytes.first() else {
            return Err(SocketIoError::Empty);
        };
        let Some(packet_type) = PacketType::from_byte(first) else {
            return Err(SocketIoError::UnknownPacketType {
                found: input.chars().next().unwrap_or_default(),
            });
        };
        let mut i = 1usize;

        // Attachment count `N-` (binary types only).
        let mut attachments = 0usize;
        if packet_type.is_binary() {
            let digits = count_digits(bytes, i);
            if digits == 0 || bytes.get(i + digits) != Some(&b'-') {
                return Err(SocketIoError::IllegalAttachments { offset: i });
            }
            let count = parse_u64(bytes, i, digits)
                .ok_or(SocketIoError::IllegalAttachments { offset: i })?;
            if count == 0 {
                return Err(SocketIoError::IllegalAttachments { offset: i });
            }
            if count > MAX_ATTACHMENTS as u64 {
                return Err(SocketIoError::TooManyAttachments { count, offset: i });
            }
            attachments = usize::try_from(count).unwrap_or(MAX_ATTACHMENTS);
            i += digits + 1;
        }

        // Namespace: from `/` to `,` or the end of the text.
        let mut nsp = DEFAULT_NAMESPACE;
        if bytes.get(i) == Some(&b'/') {
            let rest = bytes.get(i..).unwrap_or_default();
            match rest.iter().position(|&b| b == b',') {
                Some(comma) => {
                    nsp = input.get(i..i + comma).unwrap_or(DEFAULT_NAMESPACE);
                    i += comma + 1;
                }
                None => {
                    nsp = input.get(i..).unwrap_or(DEFAULT_NAMESPACE);
                    i = bytes.len();
                }
            }
        }

        // Ack id: a run of ASCII digits right before the JSON.
        let mut id = None;
        let digits = count_digits(bytes, i);
        if digits > 0 {
            id =
                Some(parse_u64(bytes, i, digits).ok_or(SocketIoError::InvalidAckId { offset: i })?);
            i += digits;
        }

        let mut p = PacketRef {
            packet_type,
            attachments,
            nsp,
            id,
            data: None,
            event: None,
            event_json: None,
            args: "",
            first_arg: None,
            arg_count: 0,
        };
        let rest = input.get(i..).unwrap_or_default();
        if rest.is_empty() {
            return match packet_type {
                PacketType::Event | PacketType::BinaryEvent => Err(invalid(
                    packet_type,
                    i,
                    "an event needs a JSON array payload",
                )),
                PacketType::Ack | PacketType::BinaryAck => {
                    Err(invalid(packet_type, i, "an ack needs a JSON array payload"))
                }
                _ => Ok(p),
            };
        }
        p.validate_payload(input, rest, i)?;
        Ok(p)
    }

    /// Like [`PacketRef::parse`] on raw bytes: invalid UTF-8 is an error with its offset.
    pub fn parse_bytes(bytes: &'a [u8]) -> Result<Self, SocketIoError> {
        let text = std::str::from_utf8(bytes).map_err(|e| SocketIoError::InvalidUtf8 {
            offset: e.valid_up_to(),
        })?;
        Self::parse(text)
    }

    /// Checks the JSON after the header (reference `isPayloadValid`) and records its parts.
    fn validate_payload(
        &mut self,
        input: &'a str,
        rest: &'a str,
        at: usize,
    ) -> Result<(), SocketIoError> {
        let t = self.packet_type;
        let shape = payload_shape(rest, at)?;
        self.data = Some(trim_json_ws(rest));
        match (t, shape) {
            (PacketType::Connect, Shape::Object) => Ok(()),
            (PacketType::Connect, _) => Err(invalid(t, at, "CONNECT takes an object or nothing")),
            (PacketType::Disconnect, _) => Err(invalid(t, at, "DISCONNECT takes no payload")),
            (PacketType::ConnectError, Shape::Object | Shape::String) => Ok(()),
            (PacketType::ConnectError, _) => {
                Err(invalid(t, at, "CONNECT_ERROR takes an object or a string"))
            }
            (PacketType::Event | PacketType::BinaryEvent, Shape::Array(a)) => {
                let Some(name) = a.first else {
                    return Err(invalid(t, at, "an event needs a non-empty array"));
                };
                let raw = name;
                let name_at = offset_in(input, raw);
                let event = match raw.as_bytes().first() {
                    Some(b'"') => {
                        unescape_json_str(raw).map_err(|e| SocketIoError::InvalidJson {
                            offset: name_at + json::error_offset(raw, &e),
                            message: json::error_message(&e),
                        })?
                    }
                    Some(b'-' | b'0'..=b'9') => Cow::Borrowed(raw),
                    _ => {
                        return Err(invalid(
                            t,
                            name_at,
                            "the event name must be a string or a number",
                        ));
                    }
                };
                if raw.starts_with('"') && RESERVED_EVENTS.contains(&event.as_ref()) {
                    return Err(SocketIoError::ReservedEventName {
                        name: event.into_owned(),
                        offset: name_at,
                    });
                }
                self.event = Some(event);
                self.event_json = Some(raw);
                self.arg_count = a.count.saturating_sub(1);
                self.first_arg = a.second;
                self.args = span(input, a.second, a.last);
                Ok(())
            }
            (PacketType::Event | PacketType::BinaryEvent, _) => {
                Err(invalid(t, at, "an event needs a non-empty array"))
            }
            (PacketType::Ack | PacketType::BinaryAck, Shape::Array(a)) => {
                self.arg_count = a.count;
                self.first_arg = a.first;
                self.args = span(input, a.first, a.last);
                Ok(())
            }
            (PacketType::Ack | PacketType::BinaryAck, _) => {
                Err(invalid(t, at, "an ack needs an array"))
            }
        }
    }

    /// The packet type.
    pub fn packet_type(&self) -> PacketType {
        self.packet_type
    }

    /// The announced number of binary attachments (0 unless BINARY_EVENT/BINARY_ACK).
    pub fn attachments(&self) -> usize {
        self.attachments
    }

    /// The namespace (`/` when none was written).
    pub fn nsp(&self) -> &'a str {
        self.nsp
    }

    /// The ack id, if any.
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// The raw JSON payload, without surrounding whitespace.
    pub fn data(&self) -> Option<&'a str> {
        self.data
    }

    /// EVENT/BINARY_EVENT: the event name, unescaped (for a numeric name, its JSON text).
    pub fn event(&self) -> Option<&str> {
        self.event.as_deref()
    }

    /// EVENT/BINARY_EVENT: the name's raw JSON (e.g. `"send_message"`, quotes included).
    pub fn event_json(&self) -> Option<&'a str> {
        self.event_json
    }

    /// The raw JSON text of the arguments, comma-separated without the brackets: after the
    /// event name for events (`{"room":"1"}` in `42["send_message",{"room":"1"}]`), all of them
    /// for acks. Empty when there are none.
    pub fn args(&self) -> &'a str {
        self.args
    }

    /// The raw JSON of the first argument (after the name for events).
    pub fn first_arg(&self) -> Option<&'a str> {
        self.first_arg
    }

    /// The number of arguments (after the name for events).
    pub fn arg_count(&self) -> usize {
        self.arg_count
    }

    /// The payload parsed into a [`Value`] (`None` when there is none). Fails only for JSON that
    /// JavaScript accepts but a `Value` cannot hold, such as `1e400`.
    pub fn data_value(&self) -> Result<Option<Value>, SocketIoError> {
        match self.data {
            Some(d) => {
                serde_json::from_str::<Value>(d)
                    .map(Some)
                    .map_err(|e| SocketIoError::InvalidJson {
                        offset: json::error_offset(d, &e),
                        message: json::error_message(&e),
                    })
            }
            None => Ok(None),
        }
    }

    /// Copies the packet into its owned form, parsing the payload into a [`Value`]. The header
    /// of a binary packet is refused with [`SocketIoError::AttachmentsFollow`]: its attachments
    /// are separate messages, joined by a [`Reassembler`].
    pub fn to_packet(&self) -> Result<Packet, SocketIoError> {
        if self.attachments > 0 {
            return Err(SocketIoError::AttachmentsFollow {
                packet_type: self.packet_type,
                count: self.attachments,
            });
        }
        self.header_packet()
    }

    /// The owned packet without its attachments (for the reassembler).
    fn header_packet(&self) -> Result<Packet, SocketIoError> {
        Ok(Packet {
            packet_type: self.packet_type,
            nsp: self.nsp.to_owned(),
            id: self.id,
            data: self.data_value()?,
            attachments: Vec::new(),
        })
    }

    /// Appends the canonical encoding (the namespace always followed by `,`), as the reference
    /// encoder writes it; the JSON is copied as it is.
    pub fn encode(&self, out: &mut String) {
        push_header(out, self.packet_type, self.attachments, self.nsp, self.id);
        if let Some(d) = self.data {
            out.push_str(d);
        }
    }

    /// One-line human summary, e.g. `EVENT send_message nsp=/ {"room":"1",...}`,
    /// `CONNECT nsp=/admin {"token":"abc"}`, `BINARY_EVENT baz nsp=/ <binary #0>`.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        out.push_str(self.packet_type.name());
        if let Some(e) = &self.event {
            out.push(' ');
            json::push_one_line(&mut out, e, 40);
        }
        push_nsp_id(&mut out, self.nsp, self.id);
        let shown = if self.packet_type.is_event() {
            Some(self.args)
        } else {
            self.data
        };
        if let Some(s) = shown.filter(|s| !s.is_empty()) {
            out.push(' ');
            let s = if self.packet_type.is_binary() {
                Cow::Owned(replace_placeholders(s, |n| format!("<binary #{n}>")))
            } else {
                Cow::Borrowed(s)
            };
            json::push_one_line(&mut out, &s, json::SUMMARY_MAX_CHARS);
        }
        out
    }
}

/// A byte range `start..end` of the text a packet was parsed from.
type TextSpan = (u32, u32);

/// Where a [`PacketRef`]'s parts are in the text it was parsed from, as byte ranges: lets the
/// packet move to a copy of that text (another buffer, another thread) without parsing it again
/// ([`PacketRef::spans`], [`PacketSpans::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketSpans {
    packet_type: PacketType,
    attachments: usize,
    /// `None`: the default namespace.
    nsp: Option<TextSpan>,
    id: Option<u64>,
    data: Option<TextSpan>,
    /// `Ok`: a slice of the text; `Err`: an unescaped copy.
    event: Option<Result<TextSpan, String>>,
    event_json: Option<TextSpan>,
    args: TextSpan,
    first_arg: Option<TextSpan>,
    arg_count: usize,
}

/// The range of `part` inside `base` (an empty `part` may be anywhere: it becomes `0..0`).
fn span_in(base: &str, part: &str) -> Option<TextSpan> {
    if part.is_empty() {
        return Some((0, 0));
    }
    let start = (part.as_ptr() as usize).checked_sub(base.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    if end > base.len() {
        return None;
    }
    Some((u32::try_from(start).ok()?, u32::try_from(end).ok()?))
}

impl<'a> PacketRef<'a> {
    /// The packet's parts as ranges of `base`, the text it was parsed from; `None` when a part
    /// is not a slice of `base`.
    pub fn spans(&self, base: &str) -> Option<PacketSpans> {
        let opt = |s: Option<&str>| match s {
            Some(s) => span_in(base, s).map(Some),
            None => Some(None),
        };
        let nsp = match span_in(base, self.nsp) {
            Some(r) => Some(r),
            None if self.nsp == DEFAULT_NAMESPACE => None,
            None => return None,
        };
        let event = match &self.event {
            None => None,
            Some(Cow::Borrowed(e)) => Some(Ok(span_in(base, e)?)),
            Some(Cow::Owned(e)) => Some(Err(e.clone())),
        };
        Some(PacketSpans {
            packet_type: self.packet_type,
            attachments: self.attachments,
            nsp,
            id: self.id,
            data: opt(self.data)?,
            event,
            event_json: opt(self.event_json)?,
            args: span_in(base, self.args)?,
            first_arg: opt(self.first_arg)?,
            arg_count: self.arg_count,
        })
    }
}

impl PacketSpans {
    /// The packet again, over `base`: a byte-for-byte copy of the text [`PacketRef::spans`] was
    /// given (`None` when a range does not fit `base`).
    pub fn resolve<'b>(&self, base: &'b str) -> Option<PacketRef<'b>> {
        let get = |(a, b): TextSpan| base.get(a as usize..b as usize);
        let opt = |s: Option<TextSpan>| match s {
            Some(r) => get(r).map(Some),
            None => Some(None),
        };
        Some(PacketRef {
            packet_type: self.packet_type,
            attachments: self.attachments,
            nsp: match self.nsp {
                Some(r) => get(r)?,
                None => DEFAULT_NAMESPACE,
            },
            id: self.id,
            data: opt(self.data)?,
            event: match &self.event {
                None => None,
                Some(Ok(r)) => Some(Cow::Borrowed(get(*r)?)),
                Some(Err(owned)) => Some(Cow::Owned(owned.clone())),
            },
            event_json: opt(self.event_json)?,
            args: get(self.args)?,
            first_arg: opt(self.first_arg)?,
            arg_count: self.arg_count,
        })
    }
}

impl fmt::Display for PacketRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

/// `s` without JSON whitespace (RFC 8259 §2 `ws`: space, tab, LF, CR) at either end. Byte-wise:
/// the whitespace bytes are ASCII, so the cut points are character boundaries.
fn trim_json_ws(s: &str) -> &str {
    let is_ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    let b = s.as_bytes();
    let start = b.iter().position(|c| !is_ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !is_ws(c)).map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or_default()
}

fn invalid(packet_type: PacketType, offset: usize, reason: &'static str) -> SocketIoError {
    SocketIoError::InvalidPayload {
        packet_type,
        offset,
        reason,
    }
}

fn count_digits(bytes: &[u8], from: usize) -> usize {
    bytes
        .get(from..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count()
}

fn parse_u64(bytes: &[u8], from: usize, len: usize) -> Option<u64> {
    let digits = bytes.get(from..from.checked_add(len)?)?;
    digits.iter().try_fold(0u64, |acc, &d| {
        let digit = d.checked_sub(b'0').filter(|v| *v < 10)?;
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Byte offset of `inner` inside `outer` (`inner` must be a slice of `outer`; 0 otherwise).
fn offset_in(outer: &str, inner: &str) -> usize {
    (inner.as_ptr() as usize)
        .checked_sub(outer.as_ptr() as usize)
        .filter(|&o| o <= outer.len())
        .unwrap_or(0)
}

/// The text of `input` from the start of `from` to the end of `to` (both slices of `input`).
fn span<'a>(input: &'a str, from: Option<&'a str>, to: Option<&'a str>) -> &'a str {
    match (from, to) {
        (Some(f), Some(t)) => {
            let start = offset_in(input, f);
            let end = offset_in(input, t) + t.len();
            input.get(start..end).unwrap_or_default()
        }
        _ => "",
    }
}

/// Unescapes a JSON string literal, borrowing when it has no escapes.
fn unescape_json_str(raw: &str) -> Result<Cow<'_, str>, serde_json::Error> {
    // A plain loop: event names are short, and `contains` (memchr) costs more to set up.
    if !raw.bytes().any(|b| b == b'\\') {
        if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            return Ok(Cow::Borrowed(inner));
        }
    }
    serde_json::from_str::<String>(raw).map(Cow::Owned)
}

/// Checks the payload JSON `rest` (at byte `at` of the packet) and tells its shape.
///
/// The allocation-free [`scan::scan`] decides almost every payload; what it does not take (every
/// invalid payload and a few rare valid ones) goes to [`serde_shape`], so that acceptance, error
/// kinds and byte offsets are exactly serde_json's.
fn payload_shape(rest: &str, at: usize) -> Result<Shape<'_>, SocketIoError> {
    #[cfg(test)]
    if tests::SERDE_ONLY.with(std::cell::Cell::get) {
        return serde_shape(rest, at);
    }
    match scan::scan(rest) {
        Some(fast) => Ok(Shape::from_fast(rest, fast)),
        None => serde_shape(rest, at),
    }
}

/// The payload's shape through serde_json (the reference path; errors carry serde's offsets).
fn serde_shape(rest: &str, at: usize) -> Result<Shape<'_>, SocketIoError> {
    let mut de = serde_json::Deserializer::from_str(rest);
    de.deserialize_any(ShapeVisitor)
        .and_then(|s| de.end().map(|()| s))
        .map_err(|e| SocketIoError::InvalidJson {
            offset: at + json::error_offset(rest, &e),
            message: json::error_message(&e),
        })
}

/// What the top-level JSON value is; arrays remember their first, second and last elements.
#[derive(Debug, PartialEq, Eq)]
enum Shape<'a> {
    Array(ArrayShape<'a>),
    Object,
    String,
    Other,
}

/// Elements are slices of the scanned text, without surrounding whitespace.
#[derive(Debug, PartialEq, Eq)]
struct ArrayShape<'a> {
    count: usize,
    first: Option<&'a str>,
    second: Option<&'a str>,
    last: Option<&'a str>,
}

impl<'a> Shape<'a> {
    /// Converts the scanner's answer (spans of `text`) into slices of `text`.
    fn from_fast(text: &'a str, fast: scan::FastShape) -> Self {
        let slice = |s: Option<(usize, usize)>| s.and_then(|(a, b)| text.get(a..b));
        match fast {
            scan::FastShape::Array {
                count,
                first,
                second,
                last,
            } => Shape::Array(ArrayShape {
                count,
                first: slice(first),
                second: slice(second),
                last: slice(last),
            }),
            scan::FastShape::Object => Shape::Object,
            scan::FastShape::String => Shape::String,
        }
    }
}

struct ShapeVisitor;

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape<'de>, A::Error> {
        let mut a = ArrayShape {
            count: 0,
            first: None,
            second: None,
            last: None,
        };
        while let Some(v) = seq.next_element::<&'de RawValue>()?.map(RawValue::get) {
            match a.count {
                0 => a.first = Some(v),
                1 => a.second = Some(v),
                _ => {}
            }
            a.last = Some(v);
            a.count += 1;
        }
        Ok(Shape::Array(a))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Shape::Object)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Shape<'de>, E> {
        Ok(Shape::String)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Shape<'de>, E> {
        Ok(Shape::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Shape<'de>, E> {
        Ok(Shape::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Shape<'de>, E> {
        Ok(Shape::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Shape<'de>, E> {
        Ok(Shape::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Shape<'de>, E> {
        Ok(Shape::Other)
    }
}

/// Writes `<type>[<attachments>-][<nsp>,][<id>]` (reference `encodeAsString`).
fn push_header(out: &mut String, t: PacketType, attachments: usize, nsp: &str, id: Option<u64>) {
    out.push(t.as_char());
    if t.is_binary() {
        let _ = write!(out, "{attachments}-");
    }
    if !nsp.is_empty() && nsp != DEFAULT_NAMESPACE {
        out.push_str(nsp);
        out.push(',');
    }
    if let Some(id) = id {
        let _ = write!(out, "{id}");
    }
}

fn push_nsp_id(out: &mut String, nsp: &str, id: Option<u64>) {
    out.push_str(" nsp=");
    json::push_one_line(out, nsp, 40);
    if let Some(id) = id {
        let _ = write!(out, " id={id}");
    }
}

/// Replaces each `{"_placeholder":true,"num":N}` in JSON text with `render(N)`.
fn replace_placeholders(s: &str, render: impl Fn(&str) -> String) -> String {
    const HEAD: &str = "{\"_placeholder\":true,\"num\":";
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find(HEAD) {
        let (before, after) = rest.split_at(pos);
        out.push_str(before);
        let tail = after.get(HEAD.len()..).unwrap_or_default();
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        match tail.get(..digits).zip(tail.get(digits..)) {
            Some((num, more)) if digits > 0 && more.starts_with('}') => {
                out.push_str(&render(num));
                rest = more.get(1..).unwrap_or_default();
            }
            _ => {
                out.push_str(HEAD);
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Appends an EVENT by concatenation: `2[<nsp>,][<id>]["<event>",<args_json>]` (no JSON tree).
/// `args_json` is raw JSON of the arguments, comma-separated (e.g. [`PacketRef::args`]), or
/// empty. Prefix the buffer with `4` first to get an Engine.IO message.
pub fn encode_event_raw(
    out: &mut String,
    nsp: &str,
    id: Option<u64>,
    event: &str,
    args_json: &str,
) {
    out.reserve(event.len() + args_json.len() + nsp.len() + 8);
    push_header(out, PacketType::Event, 0, nsp, id);
    out.push('[');
    json::push_json_str(out, event);
    if !args_json.is_empty() {
        out.push(',');
        out.push_str(args_json);
    }
    out.push(']');
}

/// Appends an ACK by concatenation: `3[<nsp>,]<id>[<args_json>]`.
pub fn encode_ack_raw(out: &mut String, nsp: &str, id: u64, args_json: &str) {
    push_header(out, PacketType::Ack, 0, nsp, Some(id));
    out.push('[');
    out.push_str(args_json);
    out.push(']');
}

/// An owned Socket.IO packet: its JSON payload as a [`Value`] (key order preserved), and for
/// BINARY_EVENT/BINARY_ACK the attachments its placeholders refer to.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// The packet type.
    pub packet_type: PacketType,
    /// The namespace (`/` by default).
    pub nsp: String,
    /// The ack id.
    pub id: Option<u64>,
    /// The payload (for events `["name", ...args]`), with placeholders where buffers were.
    pub data: Option<Value>,
    /// The binary attachments, in placeholder order (binary types only).
    pub attachments: Vec<Bytes>,
}

impl Packet {
    fn new(packet_type: PacketType, nsp: &str, data: Option<Value>) -> Self {
        Packet {
            packet_type,
            nsp: nsp.to_owned(),
            id: None,
            data,
            attachments: Vec::new(),
        }
    }

    /// CONNECT to `nsp`, with an optional auth object.
    pub fn connect(nsp: &str, auth: Option<Value>) -> Self {
        Self::new(PacketType::Connect, nsp, auth)
    }

    /// The server's CONNECT answer: `{"sid":"<socket id>"}`.
    pub fn connect_ok(nsp: &str, sid: &str) -> Self {
        let mut m = serde_json::Map::new();
        m.insert("sid".into(), Value::String(sid.to_owned()));
        Self::new(PacketType::Connect, nsp, Some(Value::Object(m)))
    }

    /// DISCONNECT from `nsp`.
    pub fn disconnect(nsp: &str) -> Self {
        Self::new(PacketType::Disconnect, nsp, None)
    }

    /// CONNECT_ERROR `{"message":...}` (e.g. `Invalid namespace`, `Not authorized`).
    pub fn connect_error(nsp: &str, message: &str) -> Self {
        let mut m = serde_json::Map::new();
        m.insert("message".into(), Value::String(message.to_owned()));
        Self::new(PacketType::ConnectError, nsp, Some(Value::Object(m)))
    }

    /// EVENT `["event", ...args]`.
    pub fn event(nsp: &str, event: &str, args: Vec<Value>) -> Self {
        let mut data = Vec::with_capacity(args.len() + 1);
        data.push(Value::String(event.to_owned()));
        data.extend(args);
        Self::new(PacketType::Event, nsp, Some(Value::Array(data)))
    }

    /// An event whose arguments may contain buffers: BINARY_EVENT with placeholders
    /// (depth-first numbering) if any, else a plain EVENT.
    pub fn event_with_binary(nsp: &str, event: &str, args: Vec<BinValue>) -> Self {
        let (args, attachments) = deconstruct(BinValue::Array(args));
        let mut data = vec![Value::String(event.to_owned())];
        if let Value::Array(a) = args {
            data.extend(a);
        }
        let mut p = Self::new(PacketType::Event, nsp, Some(Value::Array(data)));
        if !attachments.is_empty() {
            p.packet_type = PacketType::BinaryEvent;
            p.attachments = attachments;
        }
        p
    }

    /// ACK `[...args]` for ack id `id`.
    pub fn ack(nsp: &str, id: u64, args: Vec<Value>) -> Self {
        let mut p = Self::new(PacketType::Ack, nsp, Some(Value::Array(args)));
        p.id = Some(id);
        p
    }

    /// An ack whose arguments may contain buffers: BINARY_ACK if any, else ACK.
    pub fn ack_with_binary(nsp: &str, id: u64, args: Vec<BinValue>) -> Self {
        let (data, attachments) = deconstruct(BinValue::Array(args));
        let mut p = Self::new(PacketType::Ack, nsp, Some(data));
        p.id = Some(id);
        if !attachments.is_empty() {
            p.packet_type = PacketType::BinaryAck;
            p.attachments = attachments;
        }
        p
    }

    /// Sets the ack id (an event that asks for an ack).
    pub fn with_id(mut self, id: u64) -> Self {
        self.id = Some(id);
        self
    }

    /// Decodes a complete text packet into the owned form. The header of a binary packet is
    /// refused with [`SocketIoError::AttachmentsFollow`]: feed it to a [`Reassembler`].
    pub fn decode(text: &str) -> Result<Self, SocketIoError> {
        PacketRef::parse(text)?.to_packet()
    }

    /// The event name (EVENT/BINARY_EVENT with a string name).
    pub fn event_name(&self) -> Option<&str> {
        if !self.packet_type.is_event() {
            return None;
        }
        match &self.data {
            Some(Value::Array(a)) => a.first().and_then(Value::as_str),
            _ => None,
        }
    }

    /// The event name as the application sees it: a string name, or a numeric one as the
    /// number's text (socket.io-parser allows both; [`PacketRef::event`] does the same).
    pub fn event_text(&self) -> Option<Cow<'_, str>> {
        if let Some(name) = self.event_name() {
            return Some(Cow::Borrowed(name));
        }
        match &self.data {
            Some(Value::Array(a)) if self.packet_type.is_event() => match a.first() {
                Some(n @ Value::Number(_)) => Some(Cow::Owned(n.to_string())),
                _ => None,
            },
            _ => None,
        }
    }

    /// The arguments: after the name for events, all of them for acks, none otherwise.
    pub fn args(&self) -> &[Value] {
        let skip = usize::from(self.packet_type.is_event());
        match &self.data {
            Some(Value::Array(a)) if self.packet_type.is_event() || self.packet_type.is_ack() => {
                a.get(skip..).unwrap_or_default()
            }
            _ => &[],
        }
    }

    /// The arguments with placeholders replaced by their attachments (reference `reconstructPacket`).
    pub fn args_with_binary(&self) -> Result<Vec<BinValue>, SocketIoError> {
        self.args()
            .iter()
            .map(|v| reconstruct(v, &self.attachments))
            .collect()
    }

    /// Checks what the reference encoder would refuse (`isPacketValid`): a comma in the
    /// namespace, a payload of the wrong shape, attachments on a non-binary packet.
    pub fn validate(&self) -> Result<(), SocketIoError> {
        if self.nsp.contains(',') {
            return Err(SocketIoError::InvalidNamespace {
                nsp: self.nsp.clone(),
            });
        }
        if self.packet_type.is_binary() && self.attachments.is_empty() {
            return Err(SocketIoError::IllegalAttachments { offset: 1 });
        }
        if !self.packet_type.is_binary() && !self.attachments.is_empty() {
            return Err(invalid(
                self.packet_type,
                0,
                "attachments on a non-binary packet",
            ));
        }
        if self.attachments.len() > MAX_ATTACHMENTS {
            return Err(SocketIoError::TooManyAttachments {
                count: self.attachments.len() as u64,
                offset: 1,
            });
        }
        let text = self.to_text();
        PacketRef::parse(&text).map(|_| ())
    }

    /// Appends the text encoding (`JSON.stringify`-compact JSON, key order preserved). The
    /// attachments are not part of it: send them after it as Engine.IO binary messages.
    pub fn encode(&self, out: &mut String) {
        push_header(
            out,
            self.packet_type,
            self.attachments.len(),
            &self.nsp,
            self.id,
        );
        if let Some(d) = &self.data {
            // `Value`'s Display is the compact serde_json writer.
            let _ = write!(out, "{d}");
        }
    }

    /// The text encoding as a new string.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.encode(&mut out);
        out
    }

    /// The Engine.IO messages that carry this packet: the text, then one binary message per
    /// attachment (protocol v5 "Packet encoding", binary attachments).
    pub fn to_engineio(&self) -> Vec<engineio::Packet> {
        let mut out = Vec::with_capacity(1 + self.attachments.len());
        out.push(engineio::Packet::message(self.to_text()));
        out.extend(
            self.attachments
                .iter()
                .cloned()
                .map(engineio::Packet::Binary),
        );
        out
    }

    /// One-line human summary (see [`PacketRef::summary`]); attachments show their size.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        out.push_str(self.packet_type.name());
        let name = match &self.data {
            Some(Value::Array(a)) if self.packet_type.is_event() => a.first(),
            _ => None,
        };
        if let Some(first) = name {
            out.push(' ');
            match first {
                Value::String(s) => json::push_one_line(&mut out, s, 40),
                other => {
                    let _ = write!(out, "{other}");
                }
            }
        }
        push_nsp_id(&mut out, &self.nsp, self.id);
        let shown = match (&self.data, self.packet_type.is_event()) {
            (Some(Value::Array(a)), true) => {
                let mut s = String::new();
                for (i, v) in a.iter().skip(1).enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    let _ = write!(s, "{v}");
                }
                s
            }
            (Some(d), _) => d.to_string(),
            (None, _) => String::new(),
        };
        if !shown.is_empty() {
            out.push(' ');
            let shown = if self.packet_type.is_binary() {
                replace_placeholders(&shown, |n| {
                    match n
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| self.attachments.get(i))
                    {
                        Some(b) => format!("<binary {} B>", b.len()),
                        None => format!("<binary #{n}>"),
                    }
                })
            } else {
                shown
            };
            json::push_one_line(&mut out, &shown, json::SUMMARY_MAX_CHARS);
        }
        out
    }
}

impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests;
