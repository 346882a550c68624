//! The client side of one Engine.IO session as a sans-IO state machine: handshake, answering
//! pings, detecting a dead server, polling GET/POST scheduling and the polling → WebSocket upgrade
//! probe (protocol v4 §1.3–1.8, as engine.io-client does it).

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::{
    CloseReason, Data, EngineError, Handshake, PROTOCOL_VERSION, Packet, PacketRef, Payload,
    SEPARATOR, Text, Timestamp, Transport, TransportKind,
};

/// How a [`ClientSession`] connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The transport of the first connection.
    pub transport: TransportKind,
    /// When opened over polling, try to upgrade to WebSocket if the server offers it.
    pub upgrade: bool,
}

impl Default for ClientConfig {
    /// Polling first, then upgrade: what socket.io-client does by default.
    fn default() -> Self {
        ClientConfig {
            transport: TransportKind::Polling,
            upgrade: true,
        }
    }
}

impl ClientConfig {
    /// A WebSocket-only client (`transports: ["websocket"]`).
    pub fn websocket() -> Self {
        ClientConfig {
            transport: TransportKind::WebSocket,
            upgrade: false,
        }
    }
}

/// Output of a [`ClientSession`] for its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientTransmit {
    /// Issue a polling GET (query: [`ClientSession::query`] with [`TransportKind::Polling`]), then
    /// call `handle_poll_response` with its body, or `handle_poll_failed`.
    PollGet,
    /// Issue a polling POST with this body (`Content-Type: text/plain;charset=UTF-8`), then call
    /// `handle_post_response`.
    PollPost(String),
    /// Open a WebSocket (query: [`ClientSession::query`] with [`TransportKind::WebSocket`]), then
    /// call `handle_ws_open`, or `handle_ws_closed` if it fails.
    OpenWs,
    /// Write this packet as one WebSocket frame ([`Packet::encode_ws`]).
    Ws(Packet),
    /// Close the WebSocket, after writing the frames queued before this.
    CloseWs,
}

/// Things that happened to a [`ClientSession`], for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The handshake arrived: the session is open.
    Opened(Handshake),
    /// The probe succeeded (`3probe`); polling is pausing.
    Upgrading,
    /// `5` was sent: the session runs on the WebSocket only.
    Upgraded,
    /// The upgrade failed; the session stays on polling.
    UpgradeFailed,
    /// The session is over. Emitted exactly once.
    Closed(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upgrade {
    /// No upgrade in progress.
    Idle,
    /// `OpenWs` was emitted for the upgrade; waiting for `handle_ws_open`.
    Connecting,
    /// `2probe` sent; waiting for `3probe`.
    Probing,
    /// `3probe` received; waiting for the in-flight GET/POST to finish before sending `5`.
    Pausing,
}

/// The client end of one Engine.IO session.
///
/// Driver contract:
/// 1. [`ClientSession::new`]; the first transmit is `PollGet` (handshake by polling) or `OpenWs`.
/// 2. Perform every transmit (`PollGet`, `PollPost`, `OpenWs`, `Ws`, `CloseWs`), one GET and one
///    POST at most in flight (the session never asks for more), and report each outcome back:
///    `handle_poll_response` / `handle_poll_failed`, `handle_post_response`, `handle_ws_open`,
///    `handle_ws_text` / `handle_ws_binary` for frames, `handle_ws_closed`.
///    Message data comes back from these calls, borrowed from the input.
/// 3. Drain `poll_event()`; wait until `poll_timeout()` and call `handle_timeout(now)` (a server
///    that sends no ping for pingInterval + pingTimeout is dead: "ping timeout").
/// 4. Send with `send` / `send_message` / `send_binary`, end with `close`.
#[derive(Debug)]
pub struct ClientSession<T: Timestamp = Instant> {
    config: ClientConfig,
    transport: Transport,
    handshake: Option<Handshake>,
    upgrade: Upgrade,
    get_in_flight: bool,
    post_in_flight: bool,
    outbox: VecDeque<Packet>,
    dead_deadline: Option<T>,
    closing: bool,
    transmits: VecDeque<ClientTransmit>,
    events: VecDeque<ClientEvent>,
    close_reason: Option<CloseReason>,
}

impl<T: Timestamp> ClientSession<T> {
    /// A session about to connect (nothing is sent before the first transmit is performed).
    pub fn new(config: ClientConfig, now: T) -> Self {
        let _ = now;
        let mut s = ClientSession {
            transport: match config.transport {
                TransportKind::Polling => Transport::Polling,
                TransportKind::WebSocket => Transport::WebSocket,
            },
            config,
            handshake: None,
            upgrade: Upgrade::Idle,
            get_in_flight: false,
            post_in_flight: false,
            outbox: VecDeque::new(),
            dead_deadline: None,
            closing: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            close_reason: None,
        };
        match s.transport {
            Transport::WebSocket => s.transmits.push_back(ClientTransmit::OpenWs),
            _ => {
                s.get_in_flight = true;
                s.transmits.push_back(ClientTransmit::PollGet);
            }
        }
        s
    }

    /// The session id, once the handshake arrived.
    pub fn sid(&self) -> Option<&str> {
        self.handshake.as_ref().map(|h| h.sid.as_str())
    }

    /// The server's handshake, once it arrived.
    pub fn handshake(&self) -> Option<&Handshake> {
        self.handshake.as_ref()
    }

    /// Whether the handshake arrived and the session is not closed.
    pub fn is_open(&self) -> bool {
        self.handshake.is_some() && !self.is_closed()
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.transport == Transport::Closed
    }

    /// Why the session ended, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason
    }

    /// The current transport ([`Transport::Upgrading`] while a probe is in progress).
    pub fn transport(&self) -> Transport {
        if self.transport == Transport::Polling && self.upgrade != Upgrade::Idle {
            Transport::Upgrading
        } else {
            self.transport
        }
    }

    /// The query string for a request over `transport`: `EIO=4&transport=...[&sid=...]`
    /// (append it to the endpoint path, e.g. `/socket.io/?`).
    pub fn query(&self, transport: TransportKind) -> String {
        let mut q = format!("EIO={PROTOCOL_VERSION}&transport={}", transport.as_str());
        if let Some(sid) = self.sid() {
            q.push_str("&sid=");
            q.push_str(sid);
        }
        q
    }

    /// Queues a packet for the server. Returns false (and drops it) when closing or closed.
    pub fn send(&mut self, packet: Packet) -> bool {
        if self.closing || self.is_closed() {
            return false;
        }
        if self.transport == Transport::WebSocket {
            self.transmits.push_back(ClientTransmit::Ws(packet));
        } else {
            self.outbox.push_back(packet);
            self.flush_post();
        }
        true
    }

    /// Queues a text message (`4<text>`).
    pub fn send_message(&mut self, text: impl Into<Text>) -> bool {
        self.send(Packet::Message(text.into()))
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, bytes: impl Into<Bytes>) -> bool {
        self.send(Packet::Binary(bytes.into()))
    }

    /// The body of the polling GET; returns the messages it carried. A parse error closes the
    /// session ("parse error").
    pub fn handle_poll_response<'a>(
        &mut self,
        body: &'a str,
        now: T,
    ) -> Result<Vec<Data<'a>>, EngineError> {
        if self.is_closed() {
            return Ok(Vec::new());
        }
        if !self.get_in_flight {
            return Err(EngineError::InvalidState("poll response without a poll"));
        }
        self.get_in_flight = false;
        let packets = match Payload::decode(body) {
            Ok(p) => p,
            Err(e) => {
                self.close_with(CloseReason::ParseError);
                return Err(e);
            }
        };
        let mut out = Vec::new();
        for p in packets {
            if let Some(d) = self.on_packet(p, now) {
                out.push(d);
            }
        }
        self.after_polling_io();
        Ok(out)
    }

    /// The polling GET failed (network error or non-200 status): the session closes
    /// ("transport error").
    pub fn handle_poll_failed(&mut self, now: T) {
        let _ = now;
        self.get_in_flight = false;
        self.close_with(CloseReason::TransportError);
    }

    /// The polling POST completed; `ok` = HTTP 200. A failure closes the session ("transport error").
    pub fn handle_post_response(&mut self, ok: bool, now: T) {
        let _ = now;
        self.post_in_flight = false;
        if self.is_closed() {
            return;
        }
        if !ok {
            self.close_with(CloseReason::TransportError);
            return;
        }
        self.after_polling_io();
    }

    /// The WebSocket asked for by `OpenWs` is open.
    pub fn handle_ws_open(&mut self, now: T) {
        let _ = now;
        if self.upgrade == Upgrade::Connecting && self.transport == Transport::Polling {
            // Protocol v4 "Upgrade": probe the new transport with `2probe`.
            self.upgrade = Upgrade::Probing;
            self.transmits
                .push_back(ClientTransmit::Ws(Packet::Ping("probe".into())));
        }
    }

    /// A text frame from the WebSocket; returns the message text, if it was one.
    pub fn handle_ws_text<'a>(
        &mut self,
        text: &'a str,
        now: T,
    ) -> Result<Option<Data<'a>>, EngineError> {
        match PacketRef::parse_text(text) {
            Ok(p) => Ok(self.handle_ws_packet(p, now)),
            Err(e) => {
                if self.transport == Transport::WebSocket {
                    self.close_with(CloseReason::ParseError);
                } else {
                    self.fail_upgrade(true);
                }
                Err(e)
            }
        }
    }

    /// A binary frame from the WebSocket: a binary message.
    pub fn handle_ws_binary<'a>(&mut self, bytes: &'a [u8], now: T) -> Option<Data<'a>> {
        self.handle_ws_packet(PacketRef::parse_binary(bytes), now)
    }

    /// A parsed packet from the WebSocket.
    pub fn handle_ws_packet<'a>(&mut self, packet: PacketRef<'a>, now: T) -> Option<Data<'a>> {
        if self.transport == Transport::WebSocket {
            return self.on_packet(packet, now);
        }
        match (self.upgrade, packet) {
            (Upgrade::Probing, PacketRef::Pong("probe")) => {
                self.upgrade = Upgrade::Pausing;
                self.events.push_back(ClientEvent::Upgrading);
                self.after_polling_io();
            }
            (Upgrade::Probing, _) => self.fail_upgrade(true),
            // Nothing else is expected on the probe socket; ignore it.
            _ => {}
        }
        None
    }

    /// The WebSocket closed or could not be opened. On a WebSocket session this ends it
    /// ("transport close"); during an upgrade it only fails the upgrade.
    pub fn handle_ws_closed(&mut self, now: T) {
        let _ = now;
        if self.transport == Transport::WebSocket {
            self.close_with(CloseReason::TransportClose);
        } else if self.upgrade != Upgrade::Idle {
            self.fail_upgrade(false);
        }
    }

    /// Closes the session ("forced close"): buffered packets go out first, then `1` by POST over
    /// polling (an upgrade in progress is abandoned), or the WebSocket is closed.
    pub fn close(&mut self, now: T) {
        let _ = now;
        if self.is_closed() || self.closing {
            return;
        }
        self.closing = true;
        if self.upgrade != Upgrade::Idle {
            self.fail_upgrade(true);
        }
        self.try_finish_close();
    }

    /// Runs the timers due at `now` (the dead-server check).
    pub fn handle_timeout(&mut self, now: T) {
        if self.dead_deadline.is_some_and(|d| now >= d) && !self.is_closed() {
            self.close_with(CloseReason::PingTimeout);
        }
    }

    /// The next instant at which [`ClientSession::handle_timeout`] must run, if any.
    pub fn poll_timeout(&self) -> Option<T> {
        if self.is_closed() {
            None
        } else {
            self.dead_deadline
        }
    }

    /// The next thing to do, in order.
    pub fn poll_transmit(&mut self) -> Option<ClientTransmit> {
        self.transmits.pop_front()
    }

    /// The next event, in order.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    fn on_packet<'a>(&mut self, packet: PacketRef<'a>, now: T) -> Option<Data<'a>> {
        if self.is_closed() {
            return None;
        }
        match packet {
            PacketRef::Open(h) => {
                if self.handshake.is_some() {
                    return None;
                }
                self.dead_deadline = deadline(now, &h);
                let offers_ws = h.upgrades.iter().any(|u| u == "websocket");
                self.events.push_back(ClientEvent::Opened(h.clone()));
                self.handshake = Some(h);
                if self.transport == Transport::Polling && self.config.upgrade && offers_ws {
                    self.upgrade = Upgrade::Connecting;
                    self.transmits.push_back(ClientTransmit::OpenWs);
                }
                None
            }
            PacketRef::Ping(_) => {
                // Protocol v4 "Heartbeat": answer every ping; the server is alive for another
                // pingInterval + pingTimeout.
                if let Some(h) = &self.handshake {
                    self.dead_deadline = deadline(now, h);
                }
                self.send(Packet::Pong("".into()));
                None
            }
            PacketRef::Message(t) => Some(Data::Text(t)),
            PacketRef::Binary(b) => Some(Data::Binary(b)),
            PacketRef::Close => {
                self.close_with(CloseReason::TransportClose);
                None
            }
            PacketRef::Pong(_) | PacketRef::Upgrade | PacketRef::Noop => None,
        }
    }

    /// After a polling request completed: finish a pausing upgrade, a close, or keep polling.
    fn after_polling_io(&mut self) {
        if self.is_closed() || self.transport != Transport::Polling {
            return;
        }
        if self.closing {
            self.try_finish_close();
            return;
        }
        if self.upgrade == Upgrade::Pausing {
            if !self.get_in_flight && !self.post_in_flight {
                self.complete_upgrade();
            }
            return;
        }
        self.flush_post();
        if self.handshake.is_some() && !self.get_in_flight {
            self.get_in_flight = true;
            self.transmits.push_back(ClientTransmit::PollGet);
        }
    }

    fn complete_upgrade(&mut self) {
        self.upgrade = Upgrade::Idle;
        self.transport = Transport::WebSocket;
        self.transmits
            .push_back(ClientTransmit::Ws(Packet::Upgrade));
        for p in std::mem::take(&mut self.outbox) {
            self.transmits.push_back(ClientTransmit::Ws(p));
        }
        self.events.push_back(ClientEvent::Upgraded);
    }

    fn fail_upgrade(&mut self, close_ws: bool) {
        if self.upgrade == Upgrade::Idle || self.transport != Transport::Polling {
            return;
        }
        let was_pausing = self.upgrade == Upgrade::Pausing;
        self.upgrade = Upgrade::Idle;
        if close_ws {
            self.transmits.push_back(ClientTransmit::CloseWs);
        }
        self.events.push_back(ClientEvent::UpgradeFailed);
        if was_pausing && !self.closing {
            self.after_polling_io();
        }
    }

    /// POSTs buffered packets, at most maxPayload bytes per request (engine.io-client
    /// `_getWritablePackets`), one POST at a time.
    fn flush_post(&mut self) {
        if self.post_in_flight
            || self.outbox.is_empty()
            || self.handshake.is_none()
            || self.transport != Transport::Polling
            || self.upgrade == Upgrade::Pausing
        {
            return;
        }
        let max = self
            .handshake
            .as_ref()
            .map_or(0, |h| usize::try_from(h.max_payload).unwrap_or(usize::MAX));
        let mut body = String::new();
        while let Some(p) = self.outbox.front() {
            let extra = p.encoded_len() + usize::from(!body.is_empty());
            if !body.is_empty() && max > 0 && body.len() + extra > max {
                break;
            }
            if !body.is_empty() {
                body.push(char::from(SEPARATOR));
            }
            p.encode_text(&mut body);
            self.outbox.pop_front();
        }
        self.post_in_flight = true;
        self.transmits.push_back(ClientTransmit::PollPost(body));
    }

    fn try_finish_close(&mut self) {
        match self.transport {
            Transport::WebSocket => self.close_with(CloseReason::ForcedClose),
            Transport::Polling if !self.post_in_flight => {
                if self.handshake.is_some() {
                    self.outbox.push_back(Packet::Close);
                    let body = Payload::encode_to_string(self.outbox.iter());
                    self.outbox.clear();
                    self.post_in_flight = true;
                    self.transmits.push_back(ClientTransmit::PollPost(body));
                }
                self.finish(CloseReason::ForcedClose);
            }
            _ => {}
        }
    }

    /// Ends the session, telling the server where that is useful (engine.io-client `_onClose`).
    fn close_with(&mut self, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        if self.upgrade != Upgrade::Idle {
            self.upgrade = Upgrade::Idle;
            self.transmits.push_back(ClientTransmit::CloseWs);
        }
        match self.transport {
            Transport::WebSocket => self.transmits.push_back(ClientTransmit::CloseWs),
            Transport::Polling
                if self.handshake.is_some()
                    && matches!(reason, CloseReason::PingTimeout | CloseReason::ForcedClose) =>
            {
                self.transmits
                    .push_back(ClientTransmit::PollPost(String::from("1")));
            }
            _ => {}
        }
        self.finish(reason);
    }

    fn finish(&mut self, reason: CloseReason) {
        self.transport = Transport::Closed;
        self.closing = false;
        self.outbox.clear();
        self.dead_deadline = None;
        self.close_reason = Some(reason);
        self.events.push_back(ClientEvent::Closed(reason));
    }
}

fn deadline<T: Timestamp>(now: T, h: &Handshake) -> Option<T> {
    now.add_duration(h.ping_interval())
        .and_then(|t| t.add_duration(h.ping_timeout()))
}
