//! The chat application of the original course app, on the Socket.IO layer:
//! `join_room(room)`, `leave_room(room)`, `send_message({room, author, message, time})` relayed as
//! `receive_message` to every *other* member of the room. Shared with plain WebSocket clients at
//! `/ws/ROOM` through the `/` namespace's adapter.

use bytes::Bytes;
use serde::Serialize;

use super::adapter::Broadcast;
use super::wsconn;

/// A chat message as the original app built it: `{room, author, message, time}` (field order kept).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChatMessage<'a> {
    pub room: &'a str,
    pub author: &'a str,
    pub message: &'a str,
    pub time: String,
}

impl<'a> ChatMessage<'a> {
    /// A message stamped with the server's local time as `HH:MM`.
    pub fn now(room: &'a str, author: &'a str, message: &'a str) -> Self {
        ChatMessage {
            room,
            author,
            message,
            time: chrono::Local::now().format("%H:%M").to_string(),
        }
    }

    /// The broadcast for a room: `receive_message` for Socket.IO members, the JSON object for plain
    /// WebSocket members. Each form is encoded once for all recipients.
    pub fn broadcast(&self) -> Broadcast {
        let json = serde_json::to_string(self).unwrap_or_else(|_| "{}".into());
        receive_message_broadcast(json.as_bytes())
    }
}

/// A `receive_message` broadcast carrying `data_json` (a JSON value, already serialised).
pub fn receive_message_broadcast(data_json: &[u8]) -> Broadcast {
    let frame = super::socketio::event_frame("/", "receive_message", data_json);
    Broadcast::single(frame).with_plain(Bytes::copy_from_slice(data_json))
}

#[allow(unused)]
fn _frame_helpers_used() -> Bytes {
    wsconn::text_frame(b"")
}
