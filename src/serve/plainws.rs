//! Plain WebSocket endpoints for clients that do not speak Socket.IO: `/ws/ROOM?name=NAME` joins a
//! chat room (text frames in become `receive_message` for the room's Socket.IO members; the room's
//! messages come out as JSON text frames), and `/echo` is an RFC 6455 echo endpoint for testing
//! WebSocket clients.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::adapter::{Adapter, Broadcast, Member, MemberId};
use super::chat::ChatMessage;
use super::metrics::{Metrics, Transport};
use super::outbox::{CloseReason, Outbox, PushError};
use super::server::{ConnInfo, Shared};
use super::wsconn::{self, WsHandler, WsIo};
use crate::wire::ws::Message;

/// A plain WebSocket client as a room member: it receives the plain (JSON) form of broadcasts.
pub struct PlainMember {
    pub id: MemberId,
    pub outbox: Arc<Outbox>,
}

impl Member for PlainMember {
    fn id(&self) -> MemberId {
        self.id
    }
    fn deliver(&self, msg: &Broadcast) -> Result<(), PushError> {
        match msg.plain_frame(wsconn::text_frame) {
            Some(frame) => self.outbox.push(frame),
            // Not a chat message (e.g. an arbitrary Socket.IO event): nothing to show here.
            None => Ok(()),
        }
    }
}

struct PlainRoom {
    id: MemberId,
    room: String,
    name: String,
    adapter: Arc<dyn Adapter>,
    metrics: Arc<Metrics>,
}

impl WsHandler for PlainRoom {
    fn on_message(&mut self, msg: Message) -> Result<(), CloseReason> {
        self.metrics.messages_in.fetch_add(1, Ordering::Relaxed);
        match msg {
            Message::Text(text) => {
                let msg = ChatMessage::now(&self.room, &self.name, text.as_str());
                let b = msg.broadcast();
                self.adapter.broadcast(&self.room, Some(self.id), &b);
                Ok(())
            }
            _ => {
                self.metrics.protocol_errors.fetch_add(1, Ordering::Relaxed);
                Err(CloseReason::Unsupported(
                    "binary messages are not accepted at /ws/ROOM (send text)".into(),
                ))
            }
        }
    }
}

/// Run a `/ws/ROOM?name=NAME` client until it disconnects.
pub async fn plain_room(
    shared: Arc<Shared>,
    adapter: Arc<dyn Adapter>,
    io: WsIo,
    room: String,
    name: String,
    info: ConnInfo,
) {
    let id = shared.next_id();
    let metrics = shared.metrics.clone();
    let outbox = Arc::new(shared.new_outbox());
    let _live = shared.live.register(id, &outbox);
    metrics.open(Transport::PlainWs);
    adapter.join(
        &room,
        Arc::new(PlainMember {
            id,
            outbox: outbox.clone(),
        }),
    );
    tracing::info!(peer = %info.peer, transport = "plain_ws", %room, %name, "connect + join");
    let mut handler = PlainRoom {
        id,
        room: room.clone(),
        name: name.clone(),
        adapter: adapter.clone(),
        metrics: metrics.clone(),
    };
    let reason = wsconn::drive(
        io,
        &mut handler,
        &outbox,
        shared.config.max_payload,
        &metrics,
    )
    .await;
    adapter.leave(&room, id);
    metrics.close(Transport::PlainWs);
    count_reason(&metrics, &reason);
    tracing::info!(peer = %info.peer, transport = "plain_ws", %room, %name, %reason, "leave + disconnect");
}

struct Echo {
    outbox: Arc<Outbox>,
    metrics: Arc<Metrics>,
}

impl WsHandler for Echo {
    fn on_message(&mut self, msg: Message) -> Result<(), CloseReason> {
        self.metrics.messages_in.fetch_add(1, Ordering::Relaxed);
        let frame = match msg {
            Message::Text(t) => wsconn::text_frame(t.as_bytes()),
            Message::Binary(b) => wsconn::binary_frame(&b),
            _ => return Ok(()),
        };
        match self.outbox.push(frame) {
            Ok(()) => {
                self.metrics.messages_out.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(_) => {
                self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
                Err(CloseReason::SlowConsumer)
            }
        }
    }
}

/// Run an `/echo` client: every text or binary message comes back as it was sent.
pub async fn echo(shared: Arc<Shared>, io: WsIo, info: ConnInfo) {
    let id = shared.next_id();
    let metrics = shared.metrics.clone();
    let outbox = Arc::new(shared.new_outbox());
    let _live = shared.live.register(id, &outbox);
    metrics.open(Transport::Echo);
    tracing::debug!(peer = %info.peer, "echo connect");
    let mut handler = Echo {
        outbox: outbox.clone(),
        metrics: metrics.clone(),
    };
    let reason = wsconn::drive(
        io,
        &mut handler,
        &outbox,
        shared.config.max_payload,
        &metrics,
    )
    .await;
    metrics.close(Transport::Echo);
    count_reason(&metrics, &reason);
    tracing::debug!(peer = %info.peer, %reason, "echo disconnect");
}

/// Count the disconnect reasons `/metrics` reports.
pub fn count_reason(metrics: &Metrics, reason: &CloseReason) {
    if *reason == CloseReason::SlowConsumer {
        metrics.slow_consumers.fetch_add(1, Ordering::Relaxed);
    }
}
