//! Socket.IO binary attachments (protocol v5 "Packet encoding", binary): buffers in the arguments
//! are replaced depth-first by `{"_placeholder":true,"num":i}` and sent after the text packet as
//! separate Engine.IO binary messages; the receiver buffers the header until they all arrived.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{Packet, PacketRef, SocketIoError};

/// A JSON value that may hold binary leaves: what JavaScript sees as an argument containing
/// `Buffer`s. Plain JSON sub-trees stay [`serde_json::Value`]s.
#[derive(Debug, Clone, PartialEq)]
pub enum BinValue {
    /// A JSON value with no binary inside.
    Json(Value),
    /// A buffer.
    Binary(Bytes),
    /// An array with a buffer somewhere inside.
    Array(Vec<BinValue>),
    /// An object with a buffer somewhere inside, keys in order.
    Object(Vec<(String, BinValue)>),
}

impl BinValue {
    /// Whether a buffer is somewhere inside.
    pub fn contains_binary(&self) -> bool {
        match self {
            BinValue::Json(_) => false,
            BinValue::Binary(_) => true,
            BinValue::Array(a) => a.iter().any(BinValue::contains_binary),
            BinValue::Object(o) => o.iter().any(|(_, v)| v.contains_binary()),
        }
    }
}

impl From<Value> for BinValue {
    fn from(v: Value) -> Self {
        BinValue::Json(v)
    }
}

impl From<Bytes> for BinValue {
    fn from(b: Bytes) -> Self {
        BinValue::Binary(b)
    }
}

impl From<Vec<u8>> for BinValue {
    fn from(b: Vec<u8>) -> Self {
        BinValue::Binary(Bytes::from(b))
    }
}

/// The placeholder for attachment `num`: `{"_placeholder":true,"num":num}`.
pub fn placeholder(num: usize) -> Value {
    let mut m = Map::new();
    m.insert("_placeholder".into(), Value::Bool(true));
    m.insert("num".into(), Value::from(num));
    Value::Object(m)
}

/// Whether `v` is a placeholder object (`_placeholder` is `true`, as the reference checks).
pub fn is_placeholder(v: &Value) -> bool {
    v.get("_placeholder") == Some(&Value::Bool(true))
}

/// Replaces every buffer with a placeholder, numbering depth-first from 0 (reference
/// `deconstructPacket`); returns the JSON and the buffers in placeholder order.
pub fn deconstruct(value: BinValue) -> (Value, Vec<Bytes>) {
    let mut buffers = Vec::new();
    let v = deconstruct_into(value, &mut buffers);
    (v, buffers)
}

fn deconstruct_into(value: BinValue, buffers: &mut Vec<Bytes>) -> Value {
    match value {
        BinValue::Json(v) => v,
        BinValue::Binary(b) => {
            let p = placeholder(buffers.len());
            buffers.push(b);
            p
        }
        BinValue::Array(a) => Value::Array(
            a.into_iter()
                .map(|v| deconstruct_into(v, buffers))
                .collect(),
        ),
        BinValue::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (k, deconstruct_into(v, buffers)))
                .collect(),
        ),
    }
}

/// Puts the buffers back where the placeholders are (reference `reconstructPacket`). A
/// placeholder whose `num` is not an index into `buffers` is an error ("illegal attachments").
pub fn reconstruct(value: &Value, buffers: &[Bytes]) -> Result<BinValue, SocketIoError> {
    if !has_placeholder(value) {
        return Ok(BinValue::Json(value.clone()));
    }
    if is_placeholder(value) {
        return placeholder_index(value, buffers.len())
            .and_then(|i| buffers.get(i).cloned())
            .map(BinValue::Binary)
            .ok_or_else(|| illegal(value, buffers.len()));
    }
    match value {
        Value::Array(a) => a
            .iter()
            .map(|v| reconstruct(v, buffers))
            .collect::<Result<_, _>>()
            .map(BinValue::Array),
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| reconstruct(v, buffers).map(|v| (k.clone(), v)))
            .collect::<Result<_, _>>()
            .map(BinValue::Object),
        other => Ok(BinValue::Json(other.clone())),
    }
}

fn has_placeholder(v: &Value) -> bool {
    match v {
        Value::Object(o) => is_placeholder(v) || o.values().any(has_placeholder),
        Value::Array(a) => a.iter().any(has_placeholder),
        _ => false,
    }
}

fn placeholder_index(v: &Value, count: usize) -> Option<usize> {
    let num = v.get("num")?.as_u64()?;
    usize::try_from(num).ok().filter(|&i| i < count)
}

fn illegal(v: &Value, count: usize) -> SocketIoError {
    SocketIoError::IllegalPlaceholder {
        num: v.get("num").map(Value::to_string).unwrap_or_default(),
        count,
    }
}

/// Checks that every placeholder in `v` names one of `count` attachments.
fn check_placeholders(v: &Value, count: usize) -> Result<(), SocketIoError> {
    if is_placeholder(v) {
        return placeholder_index(v, count)
            .map(|_| ())
            .ok_or_else(|| illegal(v, count));
    }
    match v {
        Value::Array(a) => a.iter().try_for_each(|v| check_placeholders(v, count)),
        Value::Object(o) => o.values().try_for_each(|v| check_placeholders(v, count)),
        _ => Ok(()),
    }
}

/// Joins binary packets back together (reference `Decoder.add` + `BinaryReconstructor`): feed it
/// every Engine.IO message of a connection, text with `push_text`, binary with `push_binary`;
/// it yields each complete [`Packet`]. One per connection. Errors (which the reference answers by
/// closing the connection) reset it.
#[derive(Debug, Default)]
pub struct Reassembler {
    pending: Option<Packet>,
    expected: usize,
}

impl Reassembler {
    /// An empty reassembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// A text message: a complete packet, or the header of a binary one (then `Ok(None)`).
    pub fn push_text(&mut self, text: &str) -> Result<Option<Packet>, SocketIoError> {
        self.refuse_text_while_waiting()?;
        let r = PacketRef::parse(text)?;
        self.push_ref(&r)
    }

    /// Like [`Reassembler::push_text`] for a packet already parsed on the fast path.
    pub fn push_ref(&mut self, packet: &PacketRef<'_>) -> Result<Option<Packet>, SocketIoError> {
        self.refuse_text_while_waiting()?;
        let p = packet.header_packet()?;
        if packet.attachments() == 0 {
            return Ok(Some(p));
        }
        self.expected = packet.attachments();
        self.pending = Some(p);
        Ok(None)
    }

    /// A binary message: the next attachment of the waiting packet. Returns the packet once the
    /// last one arrived and every placeholder names an attachment.
    pub fn push_binary(&mut self, data: impl Into<Bytes>) -> Result<Option<Packet>, SocketIoError> {
        let Some(p) = self.pending.as_mut() else {
            return Err(SocketIoError::UnexpectedBinary);
        };
        p.attachments.push(data.into());
        if p.attachments.len() < self.expected {
            return Ok(None);
        }
        let Some(p) = self.pending.take() else {
            return Err(SocketIoError::UnexpectedBinary);
        };
        self.expected = 0;
        if let Some(d) = &p.data {
            check_placeholders(d, p.attachments.len())?;
        }
        Ok(Some(p))
    }

    /// Whether a binary packet is waiting for attachments.
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// How many attachments the waiting packet still needs.
    pub fn missing(&self) -> usize {
        self.pending
            .as_ref()
            .map_or(0, |p| self.expected.saturating_sub(p.attachments.len()))
    }

    /// Drops a waiting packet.
    pub fn reset(&mut self) {
        self.pending = None;
        self.expected = 0;
    }

    fn refuse_text_while_waiting(&mut self) -> Result<(), SocketIoError> {
        if self.pending.is_some() {
            let missing = self.missing();
            self.reset();
            return Err(SocketIoError::UnexpectedText { missing });
        }
        Ok(())
    }
}
