//! The chat application of the original course app, on the Socket.IO layer:
//! `join_room(room)`, `leave_room(room)`, `send_message({room, author, message, time})` relayed as
//! `receive_message` to every *other* member of the room (never back to the sender), exactly as
//! the original server's `socket.to(data.room).emit("receive_message", data)`. Shared with plain
//! WebSocket clients at `/ws/ROOM` through the `/` namespace's adapter.
//!
//! Answers (acks when the client asked for one, with its callback as the last argument):
//! - `join_room` → `{"ok":true,"room":<room>}`; `leave_room` → the same, or
//!   `{"ok":false,"error":"not a member of room 7"}`;
//! - `send_message` → `{"ok":true}`, or `{"ok":false,"error":"not a member of room 7"}` when the
//!   sender has not joined the room (nothing is relayed);
//! - bad arguments → `{"ok":false,"error":"..."}`.
//!
//! Without an ack the refusals arrive as an `error` event: `["error",{"event":"send_message",
//! "error":"not a member of room 7"}]`. Rooms are named by a string or a number; `7` and `"7"` are
//! the same room (a plain WebSocket client at `/ws/7` is in it too). Any namespace may be used;
//! each has its own rooms (`/ws/ROOM` clients are in the `/` namespace's rooms).

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::adapter::Broadcast;
use super::metrics::Metrics;
use super::outbox::CloseReason;
use super::socketio::{Event, SioApp, Socket};
use crate::proto::chat::{self as proto_chat, RoomId};

/// Longest room name accepted, in bytes.
pub const MAX_ROOM_LEN: usize = 256;

/// Longest namespace name accepted, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 256;

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
        receive_message_broadcast("/", json.as_bytes())
    }
}

/// A `receive_message` broadcast in namespace `nsp` carrying `data_json` (one JSON value, already
/// serialised).
pub fn receive_message_broadcast(nsp: &str, data_json: &[u8]) -> Broadcast {
    let data = std::str::from_utf8(data_json).unwrap_or("null");
    let frame = SCRATCH.with(|scratch| {
        let mut text = scratch.borrow_mut();
        text.clear();
        text.push('4');
        proto_chat::encode_receive_message(&mut text, nsp, data);
        let frame = super::wsconn::text_frame(text.as_bytes());
        if text.capacity() > 64 * 1024 {
            *text = String::new();
        }
        frame
    });
    // The plain form is the data itself, inside the frame (`...,<data>]`): shared, not copied.
    let end = frame.len().saturating_sub(1);
    let plain = frame.slice(end.saturating_sub(data.len())..end);
    Broadcast::single(frame).with_plain(plain)
}

thread_local! {
    /// Scratch text for encoding broadcasts (one allocation per broadcast: its frame).
    static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The room a JSON value names (`proto::chat::RoomId`: a string, or a number keyed by its decimal
/// text), checked for the relay's limits.
pub fn room_key(raw: &str) -> Result<RoomId, String> {
    let room = RoomId::from_raw_json(raw).map_err(|e| e.to_string())?;
    check_room(room)
}

fn check_room(room: RoomId) -> Result<RoomId, String> {
    if room.as_str().is_empty() {
        return Err("the room name is empty".into());
    }
    if room.as_str().len() > MAX_ROOM_LEN {
        return Err(format!("the room name is longer than {MAX_ROOM_LEN} bytes"));
    }
    Ok(room)
}

/// The chat application.
pub struct ChatApp {
    metrics: Arc<Metrics>,
}

impl ChatApp {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        ChatApp { metrics }
    }

    /// Answer a request: the ack when one was asked for, else (for refusals) an `error` event.
    fn answer(&self, socket: &Socket, ev: &Event<'_>, ok_json: Result<Cow<'static, str>, String>) {
        match (ev.ack, ok_json) {
            (Some(id), Ok(json)) => socket.ack_raw(id, &json),
            (Some(id), Err(error)) => socket.ack_raw(id, &refusal_json(&error)),
            (None, Ok(_)) => {}
            (None, Err(error)) => {
                let mut body = String::from("{\"event\":");
                crate::proto::json::push_json_str(&mut body, ev.name);
                body.push_str(",\"error\":");
                crate::proto::json::push_json_str(&mut body, &error);
                body.push('}');
                socket.emit_raw("error", &body);
            }
        }
    }

    fn join(&self, socket: &Arc<Socket>, ev: &Event<'_>) -> Result<Cow<'static, str>, String> {
        let raw = ev.first_arg.as_deref().ok_or("join_room needs a room")?;
        let room = room_key(raw)?;
        let room = room.as_str();
        if socket.join(room) {
            tracing::info!(
                socket = %socket.id,
                peer = %socket.session().peer(),
                room = %room,
                members = socket.namespace.adapter.room_size(room),
                "join"
            );
        } else if !socket.in_room(room) {
            return Err(format!(
                "too many rooms (at most {})",
                super::socketio::MAX_ROOMS_PER_SOCKET
            ));
        }
        Ok(Cow::Owned(format!(
            "{{\"ok\":true,\"room\":{}}}",
            raw.trim()
        )))
    }

    fn leave(&self, socket: &Arc<Socket>, ev: &Event<'_>) -> Result<Cow<'static, str>, String> {
        let raw = ev.first_arg.as_deref().ok_or("leave_room needs a room")?;
        let room = room_key(raw)?;
        let room = room.as_str();
        if !socket.leave(room) {
            return Err(format!("not a member of room {room}"));
        }
        tracing::info!(socket = %socket.id, peer = %socket.session().peer(), room = %room, "leave");
        Ok(Cow::Owned(format!(
            "{{\"ok\":true,\"room\":{}}}",
            raw.trim()
        )))
    }

    fn send(&self, socket: &Arc<Socket>, ev: &Event<'_>) -> Result<Cow<'static, str>, String> {
        let data = ev
            .first_arg
            .as_deref()
            .ok_or("send_message needs {room, author, message, time}")?;
        let room =
            proto_chat::room_of(proto_chat::SEND_MESSAGE, data).map_err(|e| e.to_string())?;
        let room = check_room(room)?;
        let room = room.as_str();
        if !socket.in_room(room) {
            self.metrics.refused_sends.fetch_add(1, Ordering::Relaxed);
            return Err(format!("not a member of room {room}"));
        }
        // socket.to(room).emit("receive_message", data): the data as the client sent it (with its
        // binary attachments, if any).
        let b = if ev.attachments.is_empty() {
            receive_message_broadcast(socket.nsp(), data.trim().as_bytes())
        } else {
            socket.binary_event_broadcast("receive_message", data, &ev.attachments)
        };
        socket.broadcast_to(room, &b);
        Ok(Cow::Borrowed("{\"ok\":true}"))
    }
}

/// `{"ok":false,"error":"..."}`.
pub fn refusal_json(error: &str) -> String {
    let mut s = String::from("{\"ok\":false,\"error\":");
    crate::proto::json::push_json_str(&mut s, error);
    s.push('}');
    s
}

impl SioApp for ChatApp {
    /// Every namespace is a chat of its own (its own rooms); `/ws/ROOM` clients share `/`'s.
    fn has_namespace(&self, nsp: &str) -> bool {
        nsp.len() <= MAX_NAMESPACE_LEN
    }

    fn on_event(&self, socket: &Arc<Socket>, ev: Event<'_>) -> Result<(), CloseReason> {
        let result = match ev.name {
            proto_chat::SEND_MESSAGE => self.send(socket, &ev),
            proto_chat::JOIN_ROOM => self.join(socket, &ev),
            proto_chat::LEAVE_ROOM => self.leave(socket, &ev),
            other => {
                if ev.ack.is_none() {
                    return Ok(());
                }
                Err(format!("unknown event {other:?}"))
            }
        };
        self.answer(socket, &ev, result);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_are_strings_or_numbers_and_7_is_the_same_room_as_quoted_7() {
        assert_eq!(room_key("\"7\"").unwrap().as_str(), "7");
        assert_eq!(room_key("7").unwrap().as_str(), "7");
        assert_eq!(room_key(" \"sala \\u00e9\" ").unwrap().as_str(), "sala é");
        assert!(room_key("{}").is_err());
        assert!(room_key("null").is_err());
        assert!(room_key("\"\"").is_err());
        assert!(room_key(&format!("\"{}\"", "x".repeat(300))).is_err());
        assert!(room_key("12abc").is_err());
    }

    #[test]
    fn a_broadcast_is_encoded_once_and_the_plain_form_shares_its_bytes() {
        let data = r#"{"room":"7","author":"Ana","message":"Olá mundo!","time":"10:42"}"#;
        let b = receive_message_broadcast("/", data.as_bytes());
        let frames = b.sio_frames();
        assert_eq!(frames.len(), 1);
        let (op, payload) = crate::serve::wsconn::frame_payload(&frames[0]).unwrap();
        assert_eq!(op, crate::wire::ws::Opcode::Text);
        assert_eq!(
            &payload[..],
            format!(r#"42["receive_message",{data}]"#).as_bytes()
        );
        let plain = b.plain_frame(crate::serve::wsconn::text_frame).unwrap();
        let (_, plain_payload) = crate::serve::wsconn::frame_payload(&plain).unwrap();
        assert_eq!(&plain_payload[..], data.as_bytes());
    }

    #[test]
    fn refusals_are_json_objects_with_ok_false() {
        assert_eq!(
            refusal_json("not a member of room 7"),
            r#"{"ok":false,"error":"not a member of room 7"}"#
        );
        let m = ChatMessage {
            room: "7",
            author: "Ana",
            message: "Olá mundo!",
            time: "09:05".into(),
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"room":"7","author":"Ana","message":"Olá mundo!","time":"09:05"}"#
        );
    }
}
