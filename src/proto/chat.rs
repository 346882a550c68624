//! The chat events of the original app: join_room, send_message, receive_message, leave_room.
//!
//! The original server does `socket.on("join_room", room => socket.join(room))` and
//! `socket.on("send_message", data => socket.to(data.room).emit("receive_message", data))`; the
//! React client sends `{room, author, message, time}` with string values.
//!
//! - [`ChatEvent`] is the typed, owned form (validation, tests, `send`, `decode`).
//! - [`ChatEventRef`] is the relay's fast path: the room is read from the raw JSON of a
//!   [`PacketRef`] and the message object stays raw text, re-sent by [`encode_receive_message`].

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer as _};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Number, Value};

use super::socketio::{self, PacketRef, PacketType};

/// Event name: client → server, join a room (argument: the room id).
pub const JOIN_ROOM: &str = "join_room";
/// Event name: client → server, leave a room (argument: the room id).
pub const LEAVE_ROOM: &str = "leave_room";
/// Event name: client → server, a message for a room (argument: a [`ChatMessage`]).
pub const SEND_MESSAGE: &str = "send_message";
/// Event name: server → client, a message relayed to the other members of the room.
pub const RECEIVE_MESSAGE: &str = "receive_message";

/// A room id. On the wire it is a JSON string (what the React app sends) or a number; rooms are
/// keyed by the decimal text, so `1` and `"1"` are the same room, but the JSON form is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomId {
    key: String,
    number: Option<Number>,
}

impl RoomId {
    /// A room named by a string.
    pub fn new(name: impl Into<String>) -> Self {
        RoomId {
            key: name.into(),
            number: None,
        }
    }

    /// A room named by a JSON number; its key is the decimal text (integral floats such as
    /// `1.0` normalise to `1`, as JavaScript prints them).
    pub fn from_number(n: Number) -> Self {
        RoomId {
            key: number_key(&n),
            number: Some(n),
        }
    }

    /// The room key: the string, or the number's decimal text.
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// Whether the room was given as a JSON number.
    pub fn is_numeric(&self) -> bool {
        self.number.is_some()
    }

    /// The JSON form it arrived in (string or number).
    pub fn to_json(&self) -> Value {
        match &self.number {
            Some(n) => Value::Number(n.clone()),
            None => Value::String(self.key.clone()),
        }
    }

    /// A room from a JSON value: a string or a number.
    pub fn from_json(v: &Value) -> Result<Self, ChatError> {
        match v {
            Value::String(s) => Ok(RoomId::new(s.clone())),
            Value::Number(n) => Ok(RoomId::from_number(n.clone())),
            other => Err(ChatError::InvalidRoom {
                found: json_kind(other),
            }),
        }
    }

    /// A room from raw JSON text (no tree built): a string literal or a number.
    pub fn from_raw_json(raw: &str) -> Result<Self, ChatError> {
        let raw = raw.trim_matches([' ', '\t', '\n', '\r']);
        match raw.as_bytes().first() {
            Some(b'"') => {
                let s = unescape(raw).map_err(|e| ChatError::InvalidArgument {
                    event: "room",
                    message: e.to_string(),
                })?;
                Ok(RoomId::new(s.into_owned()))
            }
            Some(b'-' | b'0'..=b'9') => serde_json::from_str::<Number>(raw)
                .map(RoomId::from_number)
                .map_err(|e| ChatError::InvalidArgument {
                    event: "room",
                    message: e.to_string(),
                }),
            _ => Err(ChatError::InvalidRoom {
                found: raw_kind(raw),
            }),
        }
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

impl From<&str> for RoomId {
    fn from(s: &str) -> Self {
        RoomId::new(s)
    }
}

impl From<String> for RoomId {
    fn from(s: String) -> Self {
        RoomId::new(s)
    }
}

impl From<i64> for RoomId {
    fn from(n: i64) -> Self {
        RoomId::from_number(Number::from(n))
    }
}

impl Serialize for RoomId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.number {
            Some(n) => n.serialize(s),
            None => s.serialize_str(&self.key),
        }
    }
}

impl<'de> Deserialize<'de> for RoomId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = RoomId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a room id (string or number)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RoomId, E> {
                Ok(RoomId::new(v))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<RoomId, E> {
                Ok(RoomId::new(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RoomId, E> {
                Ok(RoomId::from_number(Number::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RoomId, E> {
                Ok(RoomId::from_number(Number::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RoomId, E> {
                Number::from_f64(v)
                    .map(RoomId::from_number)
                    .ok_or_else(|| E::custom("room id is not a finite number"))
            }
        }
        d.deserialize_any(V)
    }
}

fn number_key(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    match n.as_f64() {
        // JavaScript prints integral doubles without a fraction (`String(1.0) === "1"`).
        Some(f) if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 => {
            format!("{}", f as i64)
        }
        Some(f) => format!("{f}"),
        None => n.to_string(),
    }
}

fn unescape(raw: &str) -> Result<Cow<'_, str>, serde_json::Error> {
    if !raw.contains('\\') {
        if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            return Ok(Cow::Borrowed(inner));
        }
    }
    serde_json::from_str::<String>(raw).map(Cow::Owned)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn raw_kind(raw: &str) -> &'static str {
    match raw.as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "nothing",
    }
}

/// A chat message: `{"room":..,"author":..,"message":..,"time":..}`. Fields the app adds beyond
/// these four are kept in `extra` (in order) and relayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// The room it is for.
    pub room: RoomId,
    /// Who wrote it.
    pub author: String,
    /// The text.
    pub message: String,
    /// The sender's clock, as the app formats it (`"16:10"`).
    pub time: String,
    /// Any other fields, preserved for relaying.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

impl ChatMessage {
    /// A message with no extra fields.
    pub fn new(
        room: impl Into<RoomId>,
        author: impl Into<String>,
        message: impl Into<String>,
        time: impl Into<String>,
    ) -> Self {
        ChatMessage {
            room: room.into(),
            author: author.into(),
            message: message.into(),
            time: time.into(),
            extra: serde_json::Map::new(),
        }
    }

    /// The compact JSON (`JSON.stringify` order: room, author, message, time, then extras).
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a message from JSON text, with a clear error for missing or mistyped fields.
    pub fn from_json_str(event: &'static str, json: &str) -> Result<Self, ChatError> {
        serde_json::from_str(json).map_err(|e| ChatError::InvalidArgument {
            event,
            message: e.to_string(),
        })
    }
}

/// The events of the chat, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// `join_room <room>`.
    JoinRoom(RoomId),
    /// `leave_room <room>`.
    LeaveRoom(RoomId),
    /// `send_message {room, author, message, time}`.
    SendMessage(ChatMessage),
    /// `receive_message {room, author, message, time}`.
    ReceiveMessage(ChatMessage),
}

impl ChatEvent {
    /// The event name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            ChatEvent::JoinRoom(_) => JOIN_ROOM,
            ChatEvent::LeaveRoom(_) => LEAVE_ROOM,
            ChatEvent::SendMessage(_) => SEND_MESSAGE,
            ChatEvent::ReceiveMessage(_) => RECEIVE_MESSAGE,
        }
    }

    /// The room the event concerns.
    pub fn room(&self) -> &RoomId {
        match self {
            ChatEvent::JoinRoom(r) | ChatEvent::LeaveRoom(r) => r,
            ChatEvent::SendMessage(m) | ChatEvent::ReceiveMessage(m) => &m.room,
        }
    }

    /// The event's single argument as JSON.
    pub fn argument(&self) -> Value {
        match self {
            ChatEvent::JoinRoom(r) | ChatEvent::LeaveRoom(r) => r.to_json(),
            ChatEvent::SendMessage(m) | ChatEvent::ReceiveMessage(m) => {
                serde_json::to_value(m).unwrap_or(Value::Null)
            }
        }
    }

    /// The Socket.IO EVENT carrying it on namespace `nsp`.
    pub fn to_packet(&self, nsp: &str) -> socketio::Packet {
        socketio::Packet::event(nsp, self.name(), vec![self.argument()])
    }

    /// Appends the Socket.IO text of its EVENT (prefix `4` for an Engine.IO message).
    pub fn encode(&self, nsp: &str, out: &mut String) {
        let arg = match self {
            ChatEvent::JoinRoom(r) | ChatEvent::LeaveRoom(r) => r.to_json().to_string(),
            ChatEvent::SendMessage(m) | ChatEvent::ReceiveMessage(m) => m.to_json_string(),
        };
        socketio::encode_event_raw(out, nsp, None, self.name(), &arg);
    }

    /// The chat event in an owned Socket.IO packet.
    pub fn from_packet(p: &socketio::Packet) -> Result<Self, ChatError> {
        if p.packet_type != PacketType::Event {
            return Err(ChatError::NotAnEvent(p.packet_type));
        }
        let Some(name) = p.event_name() else {
            return Err(ChatError::UnknownEvent(String::from("<non-string name>")));
        };
        let event = known_event(name)?;
        let Some(arg) = p.args().first() else {
            return Err(ChatError::MissingArgument { event });
        };
        Self::from_value(event, arg)
    }

    /// The chat event in a borrowed Socket.IO packet (parses only its first argument).
    pub fn from_ref(p: &PacketRef<'_>) -> Result<Self, ChatError> {
        if p.packet_type() != PacketType::Event {
            return Err(ChatError::NotAnEvent(p.packet_type()));
        }
        let event = known_event(p.event().unwrap_or_default())?;
        let Some(arg) = p.first_arg() else {
            return Err(ChatError::MissingArgument { event });
        };
        match event {
            JOIN_ROOM => RoomId::from_raw_json(arg).map(ChatEvent::JoinRoom),
            LEAVE_ROOM => RoomId::from_raw_json(arg).map(ChatEvent::LeaveRoom),
            SEND_MESSAGE => ChatMessage::from_json_str(event, arg).map(ChatEvent::SendMessage),
            _ => ChatMessage::from_json_str(event, arg).map(ChatEvent::ReceiveMessage),
        }
    }

    fn from_value(event: &'static str, arg: &Value) -> Result<Self, ChatError> {
        let message = || {
            ChatMessage::deserialize(arg).map_err(|e| ChatError::InvalidArgument {
                event,
                message: e.to_string(),
            })
        };
        match event {
            JOIN_ROOM => RoomId::from_json(arg).map(ChatEvent::JoinRoom),
            LEAVE_ROOM => RoomId::from_json(arg).map(ChatEvent::LeaveRoom),
            SEND_MESSAGE => message().map(ChatEvent::SendMessage),
            _ => message().map(ChatEvent::ReceiveMessage),
        }
    }
}

impl fmt::Display for ChatEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatEvent::JoinRoom(r) | ChatEvent::LeaveRoom(r) => write!(f, "{} {}", self.name(), r),
            ChatEvent::SendMessage(m) | ChatEvent::ReceiveMessage(m) => write!(
                f,
                "{} room={} author={:?} time={:?} {:?}",
                self.name(),
                m.room,
                m.author,
                m.time,
                m.message
            ),
        }
    }
}

fn known_event(name: &str) -> Result<&'static str, ChatError> {
    [JOIN_ROOM, LEAVE_ROOM, SEND_MESSAGE, RECEIVE_MESSAGE]
        .into_iter()
        .find(|e| *e == name)
        .ok_or_else(|| ChatError::UnknownEvent(name.to_owned()))
}

/// A chat event on the relay's fast path: nothing but the room is parsed; the message stays the
/// raw JSON text of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEventRef<'a> {
    /// `join_room <room>`.
    JoinRoom(RoomId),
    /// `leave_room <room>`.
    LeaveRoom(RoomId),
    /// `send_message <payload>`: relay `payload` to the room as `receive_message`.
    SendMessage {
        /// The room (`payload.room`).
        room: RoomId,
        /// The raw JSON of the message object, as received.
        payload: &'a str,
    },
    /// `receive_message <payload>` (what a client gets).
    ReceiveMessage {
        /// The room (`payload.room`).
        room: RoomId,
        /// The raw JSON of the message object, as received.
        payload: &'a str,
    },
}

impl<'a> ChatEventRef<'a> {
    /// Reads a chat event from a parsed EVENT: the first argument is the room (join/leave) or an
    /// object whose `room` is read without building a tree (send/receive). Other fields are not
    /// checked here: like the original server, the relay forwards the object as it is.
    pub fn parse(p: &PacketRef<'a>) -> Result<Self, ChatError> {
        if p.packet_type() != PacketType::Event {
            return Err(ChatError::NotAnEvent(p.packet_type()));
        }
        let event = known_event(p.event().unwrap_or_default())?;
        let Some(arg) = p.first_arg() else {
            return Err(ChatError::MissingArgument { event });
        };
        Ok(match event {
            JOIN_ROOM => ChatEventRef::JoinRoom(RoomId::from_raw_json(arg)?),
            LEAVE_ROOM => ChatEventRef::LeaveRoom(RoomId::from_raw_json(arg)?),
            SEND_MESSAGE => ChatEventRef::SendMessage {
                room: room_of(event, arg)?,
                payload: arg,
            },
            _ => ChatEventRef::ReceiveMessage {
                room: room_of(event, arg)?,
                payload: arg,
            },
        })
    }
}

/// Reads `room` from the raw JSON of a message object, skipping the other fields.
pub fn room_of(event: &'static str, payload_json: &str) -> Result<RoomId, ChatError> {
    let first = payload_json
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .as_bytes()
        .first()
        .copied();
    if first != Some(b'{') {
        return Err(ChatError::InvalidArgument {
            event,
            message: format!("expected an object, found {}", raw_kind(payload_json)),
        });
    }
    let mut de = serde_json::Deserializer::from_str(payload_json);
    let room = de
        .deserialize_map(RoomOnlyVisitor)
        .and_then(|r| de.end().map(|()| r))
        .map_err(|e| ChatError::InvalidArgument {
            event,
            message: e.to_string(),
        })?;
    match room {
        Some(raw) => RoomId::from_raw_json(raw.get()),
        None => Err(ChatError::MissingRoom { event }),
    }
}

/// Visits a message object, keeping the raw JSON of `room` and skipping everything else.
struct RoomOnlyVisitor;

impl<'de> de::Visitor<'de> for RoomOnlyVisitor {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a chat message object")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut room = None;
        while let Some(IsRoom(is_room)) = map.next_key::<IsRoom>()? {
            if is_room {
                room = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        Ok(room)
    }
}

/// A map key, compared with `"room"` without allocating (escaped keys are unescaped by serde_json
/// into its scratch buffer).
struct IsRoom(bool);

impl<'de> Deserialize<'de> for IsRoom {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = IsRoom;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IsRoom, E> {
                Ok(IsRoom(v == "room"))
            }
        }
        d.deserialize_str(V)
    }
}

/// Appends `2[<nsp>,]["receive_message",<payload_json>]`: the relay's output for a
/// `send_message`, by concatenation (prefix the buffer with `4` for an Engine.IO message).
pub fn encode_receive_message(out: &mut String, nsp: &str, payload_json: &str) {
    socketio::encode_event_raw(out, nsp, None, RECEIVE_MESSAGE, payload_json);
}

/// A Socket.IO event that is not a well-formed chat event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// Not an EVENT packet.
    #[error("not a chat event: {0} packet")]
    NotAnEvent(PacketType),
    /// An event name the chat does not know.
    #[error(
        "unknown chat event {0:?} (expected join_room, leave_room, send_message or receive_message)"
    )]
    UnknownEvent(String),
    /// The event has no argument.
    #[error("{event} needs an argument")]
    MissingArgument {
        /// The event name.
        event: &'static str,
    },
    /// A message object without `room`.
    #[error("{event} payload has no \"room\" field")]
    MissingRoom {
        /// The event name.
        event: &'static str,
    },
    /// A room id that is neither a string nor a number.
    #[error("room id must be a string or a number, found {found}")]
    InvalidRoom {
        /// What was found instead.
        found: &'static str,
    },
    /// An argument of the wrong shape (the JSON parser's message says which field).
    #[error("invalid {event} payload: {message}")]
    InvalidArgument {
        /// The event name.
        event: &'static str,
        /// What was wrong.
        message: String,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    const CHAT: &str = r#"42["send_message",{"room":"1","author":"Celular","message":"Olá mundo!","time":"16:10"}]"#;

    fn sio(frame: &str) -> &str {
        frame.strip_prefix('4').unwrap()
    }

    #[test]
    fn the_chat_message_of_the_app_parses_to_send_message() {
        let p = PacketRef::parse(sio(CHAT)).unwrap();
        assert_eq!(p.packet_type(), PacketType::Event);
        assert_eq!(p.event(), Some("send_message"));
        let want = ChatEvent::SendMessage(ChatMessage::new("1", "Celular", "Olá mundo!", "16:10"));
        assert_eq!(ChatEvent::from_ref(&p).unwrap(), want);
        assert_eq!(
            ChatEvent::from_packet(&p.to_packet().unwrap()).unwrap(),
            want
        );
        // And back, byte for byte.
        let mut out = String::from("4");
        want.encode("/", &mut out);
        assert_eq!(out, CHAT);
        assert_eq!(format!("4{}", want.to_packet("/").to_text()), CHAT);
    }

    #[test]
    fn fast_path_reads_the_room_and_relays_the_raw_payload() {
        let p = PacketRef::parse(sio(CHAT)).unwrap();
        let ChatEventRef::SendMessage { room, payload } = ChatEventRef::parse(&p).unwrap() else {
            panic!("not send_message");
        };
        assert_eq!(room.as_str(), "1");
        let mut out = String::from("4");
        encode_receive_message(&mut out, p.nsp(), payload);
        assert_eq!(
            out,
            r#"42["receive_message",{"room":"1","author":"Celular","message":"Olá mundo!","time":"16:10"}]"#
        );
    }

    #[test]
    fn extra_fields_are_preserved_in_order() {
        let text = r#"2["send_message",{"room":"1","author":"a","message":"m","time":"t","id":7,"meta":{"z":1,"a":2}}]"#;
        let ev = ChatEvent::from_ref(&PacketRef::parse(text).unwrap()).unwrap();
        let ChatEvent::SendMessage(m) = &ev else {
            panic!()
        };
        assert_eq!(m.extra.get("id"), Some(&json!(7)));
        let mut out = String::new();
        ev.encode("/", &mut out);
        assert_eq!(out, text);
    }

    #[test]
    fn room_ids_are_strings_or_numbers() {
        let join = |t: &str| ChatEvent::from_ref(&PacketRef::parse(t).unwrap());
        let r = join(r#"2["join_room","1"]"#).unwrap();
        assert_eq!(r, ChatEvent::JoinRoom(RoomId::new("1")));
        let n = join(r#"2["join_room",1]"#).unwrap();
        assert_eq!(n.room().as_str(), "1");
        assert!(n.room().is_numeric());
        assert_eq!(n.room().to_json(), json!(1));
        assert_eq!(join(r#"2["join_room",1.0]"#).unwrap().room().as_str(), "1");
        assert_eq!(
            join(r#"2["join_room",-2.5]"#).unwrap().room().as_str(),
            "-2.5"
        );
        let mut out = String::new();
        n.encode("/", &mut out);
        assert_eq!(out, r#"2["join_room",1]"#, "the JSON form is remembered");
        assert_eq!(
            join(r#"2["leave_room","room \"7\""]"#).unwrap(),
            ChatEvent::LeaveRoom(RoomId::new("room \"7\""))
        );
        assert_eq!(
            join(r#"2["join_room",{"room":1}]"#),
            Err(ChatError::InvalidRoom { found: "an object" })
        );
        assert_eq!(
            join(r#"2["join_room",null]"#),
            Err(ChatError::InvalidRoom { found: "null" })
        );
        // Owned path agrees.
        let p = socketio::Packet::event("/", "join_room", vec![json!(true)]);
        assert_eq!(
            ChatEvent::from_packet(&p),
            Err(ChatError::InvalidRoom { found: "a boolean" })
        );
    }

    #[test]
    fn wrong_shapes_get_clear_errors() {
        let ev = |t: &str| ChatEvent::from_ref(&PacketRef::parse(t).unwrap());
        let fast = |t: &str| {
            let p = PacketRef::parse(t).unwrap();
            ChatEventRef::parse(&p).map(|_| ())
        };
        let no_room = r#"2["send_message",{"author":"a","message":"m","time":"t"}]"#;
        let e = ev(no_room).unwrap_err();
        assert!(e.to_string().contains("missing field `room`"), "{e}");
        assert_eq!(
            fast(no_room),
            Err(ChatError::MissingRoom {
                event: "send_message"
            })
        );
        assert_eq!(
            ev(r#"2["send_message"]"#),
            Err(ChatError::MissingArgument {
                event: "send_message"
            })
        );
        let e = ev(r#"2["send_message",{"room":"1","author":5,"message":"m","time":"t"}]"#)
            .unwrap_err();
        assert!(e.to_string().contains("invalid type: integer `5`"), "{e}");
        assert!(matches!(
            fast(r#"2["send_message","hello"]"#),
            Err(ChatError::InvalidArgument { .. })
        ));
        assert_eq!(
            ev(r#"2["typing",{}]"#),
            Err(ChatError::UnknownEvent("typing".into()))
        );
        assert_eq!(
            ChatEvent::from_ref(&PacketRef::parse("0").unwrap()),
            Err(ChatError::NotAnEvent(PacketType::Connect))
        );
        assert_eq!(
            ev(r#"2["send_message",{"room":[1],"author":"a","message":"m","time":"t"}]"#)
                .map_err(|e| e.to_string().contains("room id")),
            Err(true)
        );
    }

    #[test]
    fn fast_room_lookup_skips_nested_fields() {
        let raw = r#"{"author":"a","nested":{"room":"wrong"},"list":[{"room":2}],"room":"right","time":"t"}"#;
        assert_eq!(room_of("send_message", raw).unwrap().as_str(), "right");
        assert_eq!(
            room_of("send_message", r#" {"room" : 3 }"#)
                .unwrap()
                .as_str(),
            "3"
        );
        assert_eq!(
            room_of("send_message", r#"{"room":"a\u0062"}"#)
                .unwrap()
                .as_str(),
            "ab"
        );
        assert!(room_of("send_message", r#"{"room":}"#).is_err());
    }

    #[test]
    fn display_is_one_line() {
        let ev = ChatEvent::SendMessage(ChatMessage::new("1", "Celular", "Olá\nmundo!", "16:10"));
        assert_eq!(
            ev.to_string(),
            r#"send_message room=1 author="Celular" time="16:10" "Olá\nmundo!""#
        );
        assert_eq!(ChatEvent::JoinRoom(7.into()).to_string(), "join_room 7");
    }
}
