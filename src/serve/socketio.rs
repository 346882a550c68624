//! The Socket.IO v5 server layer: namespaces, sockets, acks, binary attachments, rooms.

use bytes::Bytes;

use super::wsconn;

/// The WebSocket text frame of an EVENT packet `42[<event>,<data>]` in namespace `nsp`, with `data`
/// already serialised as JSON. Built once per broadcast.
pub fn event_frame(nsp: &str, event: &str, data_json: &[u8]) -> Bytes {
    let mut text = Vec::with_capacity(16 + nsp.len() + event.len() + data_json.len());
    text.extend_from_slice(b"42");
    if nsp != "/" {
        text.extend_from_slice(nsp.as_bytes());
        text.push(b',');
    }
    text.push(b'[');
    text.extend_from_slice(serde_json::to_string(event).unwrap_or_default().as_bytes());
    text.push(b',');
    text.extend_from_slice(data_json);
    text.push(b']');
    wsconn::text_frame(&text)
}
