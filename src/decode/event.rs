//! What the decoder finds, handed to the renderer one event at a time: HTTP messages, WebSocket
//! frames (with their reassembled message and the Engine.IO / Socket.IO packets in it), TCP notes,
//! and the anomalies found on each.

use crate::wire::ws::{FrameHeader, Role};

use super::sio::EioPacket;

/// A problem found in the traffic, flagged on the frame/message/packet where it occurs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    /// Stable snake_case code (JSON output, `--stats`).
    pub code: &'static str,
    /// Human description.
    pub text: String,
}

impl Anomaly {
    pub fn new(code: &'static str, text: impl Into<String>) -> Self {
        Anomaly {
            code,
            text: text.into(),
        }
    }
}

/// An HTTP/1.1 request or response seen in a stream.
#[derive(Debug, Clone)]
pub struct HttpMessage {
    pub is_request: bool,
    /// `GET /socket.io/?EIO=4 HTTP/1.1` or `HTTP/1.1 101 Switching Protocols`.
    pub start_line: String,
    pub method: String,
    pub target: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    /// Bytes of the head on the wire.
    pub head_len: usize,
    /// Body bytes on the wire (with chunk framing), and decoded (de-chunked, decompressed).
    pub body_wire_len: u64,
    pub body: Vec<u8>,
    pub chunked: bool,
    pub content_encoding: Option<String>,
    /// Frame number of the packet that carried the first byte of the message.
    pub first_packet: u64,
    /// WebSocket handshake details, when this is an Upgrade request or its 101 response.
    pub websocket: Option<Handshake>,
    /// For a response: the request it answers (`GET /path`).
    pub in_response_to: Option<String>,
    pub anomalies: Vec<Anomaly>,
}

impl HttpMessage {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// WebSocket opening handshake fields (RFC 6455 §4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handshake {
    pub key: Option<String>,
    pub accept: Option<String>,
    /// The Accept the key calls for, and whether the response's matched it.
    pub expected_accept: Option<String>,
    pub accept_ok: Option<bool>,
    pub protocols: Vec<String>,
    pub extensions: Vec<String>,
    pub version: Option<String>,
}

/// One WebSocket frame.
#[derive(Debug, Clone)]
pub struct WsFrame<'a> {
    pub header: FrameHeader,
    /// Who sent it.
    pub sender: Role,
    /// The whole frame as on the wire (header + masked payload); may be cut for huge frames.
    pub raw: &'a [u8],
    /// The payload with the mask removed.
    pub payload: &'a [u8],
    /// Index of the frame among those completed by this packet (0-based).
    pub index_in_packet: u32,
    /// For a Close frame: code and reason.
    pub close: Option<(Option<u16>, String)>,
    /// This frame continues a fragmented message: its position (1-based).
    pub fragment_no: Option<u32>,
    /// The message this frame completes (FIN on a data frame or continuation).
    pub message: Option<WsMessage<'a>>,
    /// The payload was too large to keep: only its length is known.
    pub payload_skipped: bool,
    pub anomalies: Vec<Anomaly>,
}

/// A complete WebSocket data message.
#[derive(Debug, Clone)]
pub struct WsMessage<'a> {
    /// Text or Binary.
    pub binary: bool,
    /// Number of frames it took.
    pub frames: u32,
    /// It was compressed (permessage-deflate) and is shown inflated.
    pub compressed: bool,
    /// Length of the (reassembled) payload before inflation.
    pub wire_len: usize,
    /// The message data (reassembled, inflated).
    pub data: &'a [u8],
    /// The data as text, when it is a valid UTF-8 text message.
    pub text: Option<&'a str>,
    /// The Engine.IO packet it carries (a WebSocket message holds at most one).
    pub engineio: Option<EioPacket<'a>>,
    /// For a fragmented message: packet number and payload length of each fragment.
    pub parts: Vec<(u64, usize)>,
}

/// A TCP segment worth a line of its own: SYN, FIN, RST, or a sequence-analysis note.
#[derive(Debug, Clone)]
pub struct TcpNote {
    pub labels: Vec<String>,
}

/// Something found in a packet.
#[derive(Debug)]
pub enum Event<'a> {
    Tcp(&'a TcpNote),
    /// An HTTP message, with the Engine.IO packets of its long-polling body.
    Http(&'a HttpMessage, &'a [EioPacket<'a>]),
    /// A problem with the conversation as a whole (e.g. bad extension parameters).
    Note {
        anomaly: Anomaly,
    },
    Ws(&'a WsFrame<'a>),
    /// Bytes missing from a stream (never captured or given up on).
    Gap {
        bytes: u64,
    },
    /// Payload of a stream we do not decode (not HTTP, not a WebSocket port).
    Data {
        len: usize,
    },
    /// The capture ended inside a frame or message.
    Truncated {
        what: String,
    },
}
