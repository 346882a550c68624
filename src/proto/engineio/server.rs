//! The server side of one Engine.IO session as a sans-IO state machine: handshake, heartbeat,
//! polling buffer, the polling → WebSocket upgrade and the closing rules (protocol v4 §1.3–1.8).

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::{
    CloseReason, Data, EngineError, ErrorCode, Handshake, Packet, PacketRef, Payload, SEPARATOR,
    SessionConfig, Text, Timestamp, Transport, TransportKind,
};

/// Output of a [`ServerSession`] for its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTransmit {
    /// Complete the held polling GET: HTTP 200, `Content-Type: text/plain; charset=UTF-8`
    /// ([`super::POLLING_CONTENT_TYPE`]), this body.
    Poll(String),
    /// Write this packet as one frame on the session's WebSocket ([`Packet::encode_ws`]).
    Ws(Packet),
    /// Close the session's WebSocket, after writing the frames queued before this.
    CloseWs,
}

/// Things that happened to a [`ServerSession`], for the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEvent {
    /// The attached WebSocket sent `2probe` and got `3probe`.
    Upgrading,
    /// The client sent `5`: the session now runs on the WebSocket only.
    Upgraded,
    /// The upgrade failed (bad packet, timeout, WebSocket closed); the session stays on polling.
    UpgradeAborted,
    /// A pong arrived.
    Heartbeat,
    /// The session is over; forget its sid. Emitted exactly once.
    Closed(CloseReason),
}

/// The server end of one Engine.IO session.
///
/// Driver contract (one session per sid; share it behind a mutex when several HTTP requests of a
/// polling session run at once):
/// 1. [`ServerSession::new`] on a handshake request. Over polling, the handshake GET itself is
///    treated as the first pending poll, so `poll_transmit()` at once yields
///    `Poll("0{...}")`; over WebSocket it yields `Ws(Open)`.
/// 2. Feed input: `handle_poll` (a GET), `handle_poll_aborted` (its client went away),
///    `handle_post` (a POST body), `handle_ws_attach` (a WebSocket with this sid was accepted),
///    `handle_ws_text` / `handle_ws_binary` (frames from that WebSocket), `handle_ws_closed`.
///    Message data comes back from these calls, borrowed from the input.
/// 3. After every call, drain `poll_transmit()` (write what it says) and `poll_event()`.
/// 4. Sleep until `poll_timeout()`, then call `handle_timeout(now)`; it sends pings and ends the
///    session on ping timeout.
/// 5. Send application data with `send` / `send_message` / `send_binary`; end with `close`.
///
/// After [`ServerEvent::Closed`] every input is rejected with [`ErrorCode::UnknownSid`].
#[derive(Debug)]
pub struct ServerSession<T: Timestamp = Instant> {
    sid: String,
    config: SessionConfig,
    transport: Transport,
    /// While upgrading: `2probe` was answered.
    probed: bool,
    upgrade_deadline: Option<T>,
    /// When the next ping is due (None while waiting for a pong, or closed).
    next_ping: Option<T>,
    /// When the ping timeout is checked (Some while waiting for a pong).
    pong_deadline: Option<T>,
    /// Last time any packet arrived from the client (a liveness signal that extends the pong wait).
    last_packet: T,
    /// `close()` was called: deliver what is buffered, then end.
    closing: bool,
    close_deadline: Option<T>,
    close_reason_pending: CloseReason,
    /// Packets waiting for a polling GET (polling and upgrading only).
    outbox: VecDeque<Packet>,
    outbox_bytes: usize,
    poll_pending: bool,
    transmits: VecDeque<ServerTransmit>,
    events: VecDeque<ServerEvent>,
    close_reason: Option<CloseReason>,
}

impl<T: Timestamp> ServerSession<T> {
    /// Opens a session with id `sid` (chosen by the caller, e.g. 20 random base64url chars) over
    /// `transport`, at `now`. Queues the open packet; the first ping is due at
    /// `now + ping_interval` (protocol v4 "Heartbeat").
    pub fn new(
        sid: impl Into<String>,
        transport: TransportKind,
        config: SessionConfig,
        now: T,
    ) -> Self {
        let sid = sid.into();
        let open = Packet::Open(Handshake::new(sid.clone(), transport, &config));
        let mut s = ServerSession {
            sid,
            transport: match transport {
                TransportKind::Polling => Transport::Polling,
                TransportKind::WebSocket => Transport::WebSocket,
            },
            probed: false,
            upgrade_deadline: None,
            next_ping: now.add_duration(config.ping_interval),
            pong_deadline: None,
            last_packet: now,
            closing: false,
            close_deadline: None,
            close_reason_pending: CloseReason::ForcedClose,
            outbox: VecDeque::new(),
            outbox_bytes: 0,
            poll_pending: transport == TransportKind::Polling,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            close_reason: None,
            config,
        };
        s.send(open);
        s
    }

    /// The session id.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The current transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.transport == Transport::Closed
    }

    /// Whether [`ServerSession::close`] was called and the session is delivering its last packets.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Why the session ended, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason
    }

    /// Whether a polling GET is being held open.
    pub fn is_poll_pending(&self) -> bool {
        self.poll_pending
    }

    /// Number of packets buffered for the next polling GET (lets a driver drop slow clients).
    pub fn buffered_packets(&self) -> usize {
        self.outbox.len()
    }

    /// Encoded size in bytes of the packets buffered for the next polling GET.
    pub fn buffered_bytes(&self) -> usize {
        self.outbox_bytes
    }

    /// Queues a packet for the client. Returns false (and drops it) when the session is closing
    /// or closed, like the reference `sendPacket`.
    pub fn send(&mut self, packet: Packet) -> bool {
        if self.closing || self.is_closed() {
            return false;
        }
        if self.transport == Transport::WebSocket {
            self.transmits.push_back(ServerTransmit::Ws(packet));
        } else {
            self.outbox_bytes += packet.encoded_len();
            self.outbox.push_back(packet);
            self.flush_poll();
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

    /// A polling GET arrived for this session. Either it is answered at once (a `Poll` transmit)
    /// or it is held until there is something to send.
    ///
    /// Errors: after the upgrade → [`ErrorCode::BadRequest`] (session unaffected, protocol v4
    /// "Upgrade"); a second GET while one is held → [`EngineError::DuplicatePoll`]: the session
    /// closes ("transport error") and the held GET is answered with `1` (§1.4).
    pub fn handle_poll(&mut self, now: T) -> Result<(), EngineError> {
        let _ = now;
        match self.transport {
            Transport::Closed => return Err(EngineError::Rejected(ErrorCode::UnknownSid)),
            Transport::WebSocket => return Err(EngineError::Rejected(ErrorCode::BadRequest)),
            Transport::Polling | Transport::Upgrading => {}
        }
        if self.poll_pending {
            self.close_with(CloseReason::TransportError, b'1');
            return Err(EngineError::DuplicatePoll);
        }
        self.poll_pending = true;
        self.flush_poll();
        Ok(())
    }

    /// The client of the held polling GET went away: the session closes ("transport error", the
    /// newer suite's "cancelled polling request"). Ignored when no GET is held.
    pub fn handle_poll_aborted(&mut self, now: T) {
        let _ = now;
        if self.poll_pending && !self.is_closed() {
            self.poll_pending = false;
            self.close_with(CloseReason::TransportError, b'6');
        }
    }

    /// The answer to the last polling GET was produced but never sent (its client went away
    /// first): the packets it carried are gone, so the session closes as for an aborted poll
    /// rather than go on with a hole in what the client received.
    pub fn handle_poll_lost(&mut self, now: T) {
        let _ = now;
        self.close_with(CloseReason::TransportError, b'6');
    }

    /// A polling POST body arrived; returns the messages it carried. The driver answers
    /// `200 ok` ([`super::POST_OK_BODY`]) on success and [`EngineError::http_status`] on error.
    ///
    /// A parse error closes the session ("parse error"; the held GET gets `1`). A close packet
    /// closes it ("transport close"; the held GET gets `6`, §1.8). Too large a body is refused
    /// with 413 and the session continues. On an error the messages that preceded it are lost
    /// here; drivers that must not lose them use [`ServerSession::handle_post_lossless`].
    pub fn handle_post<'a>(&mut self, body: &'a str, now: T) -> Result<Vec<Data<'a>>, EngineError> {
        let (messages, result) = self.handle_post_lossless(body, now);
        result.map(|()| messages)
    }

    /// [`ServerSession::handle_post`] that also returns the messages that preceded an error in
    /// the body, in order, as the reference does (engine.io-parser decodes up to the bad packet,
    /// the socket handles those, then closes with "parse error"). The messages are to be handled
    /// before the error is answered.
    pub fn handle_post_lossless<'a>(
        &mut self,
        body: &'a str,
        now: T,
    ) -> (Vec<Data<'a>>, Result<(), EngineError>) {
        let mut out = Vec::new();
        match self.transport {
            Transport::Closed => return (out, Err(EngineError::Rejected(ErrorCode::UnknownSid))),
            Transport::WebSocket => {
                return (out, Err(EngineError::Rejected(ErrorCode::BadRequest)));
            }
            Transport::Polling | Transport::Upgrading => {}
        }
        if body.len() > self.config.max_payload {
            let err = EngineError::PayloadTooLarge {
                len: body.len(),
                max: self.config.max_payload,
            };
            return (out, Err(err));
        }
        for item in Payload::iter(body) {
            let packet = match item {
                Ok(p) => p,
                Err(e) => {
                    self.close_with(CloseReason::ParseError, b'1');
                    return (out, Err(e));
                }
            };
            match self.on_packet(packet, now) {
                Ok(Some(d)) => out.push(d),
                Ok(None) => {}
                Err(e) => return (out, Err(e)),
            }
        }
        (out, Ok(()))
    }

    /// A WebSocket carrying this session's sid was accepted (`transport=websocket&sid=...`).
    /// Starts the upgrade; the client must send `2probe` then `5` within `upgrade_timeout`.
    ///
    /// Errors (the driver closes that new WebSocket; the session is unaffected): upgrades not
    /// allowed, already upgrading or upgraded (§1.5 "at most one WS per session") →
    /// [`ErrorCode::BadRequest`]; closed or closing → [`ErrorCode::UnknownSid`].
    pub fn handle_ws_attach(&mut self, now: T) -> Result<(), EngineError> {
        if self.is_closed() || self.closing {
            return Err(EngineError::Rejected(ErrorCode::UnknownSid));
        }
        if self.transport != Transport::Polling || !self.config.allow_upgrades {
            return Err(EngineError::Rejected(ErrorCode::BadRequest));
        }
        self.transport = Transport::Upgrading;
        self.probed = false;
        self.upgrade_deadline = now.add_duration(self.config.upgrade_timeout);
        Ok(())
    }

    /// A text frame from the session's WebSocket. Returns the message text, if it was one.
    pub fn handle_ws_text<'a>(
        &mut self,
        text: &'a str,
        now: T,
    ) -> Result<Option<Data<'a>>, EngineError> {
        match PacketRef::parse_text(text) {
            Ok(p) => self.handle_ws_packet(p, now),
            Err(e) => {
                self.ws_parse_error();
                Err(e)
            }
        }
    }

    /// A binary frame from the session's WebSocket: a binary message (v4 has no type byte).
    pub fn handle_ws_binary<'a>(
        &mut self,
        bytes: &'a [u8],
        now: T,
    ) -> Result<Option<Data<'a>>, EngineError> {
        self.handle_ws_packet(PacketRef::parse_binary(bytes), now)
    }

    /// A parsed packet from the session's WebSocket (see [`ServerSession::handle_ws_text`]).
    pub fn handle_ws_packet<'a>(
        &mut self,
        packet: PacketRef<'a>,
        now: T,
    ) -> Result<Option<Data<'a>>, EngineError> {
        match self.transport {
            Transport::WebSocket => self.on_packet(packet, now),
            Transport::Upgrading => {
                self.on_upgrade_packet(packet);
                Ok(None)
            }
            // A frame read before the driver acted on `CloseWs` (aborted upgrade): ignored.
            Transport::Polling | Transport::Closed => Ok(None),
        }
    }

    /// The session's WebSocket closed (or failed). On the upgraded session this ends it
    /// ("transport close"); during an upgrade it only aborts the upgrade.
    pub fn handle_ws_closed(&mut self, now: T) {
        let _ = now;
        match self.transport {
            Transport::WebSocket => self.close_with(CloseReason::TransportClose, b'1'),
            Transport::Upgrading => self.abort_upgrade(false),
            Transport::Polling | Transport::Closed => {}
        }
    }

    /// Closes the session from the server side ("forced close"), after delivering what is
    /// buffered: over WebSocket the frames then a close; over polling the held (or next) GET
    /// gets the buffered packets followed by `1`, at most `close_timeout` from now.
    pub fn close(&mut self, now: T) {
        self.begin_close(CloseReason::ForcedClose, now);
    }

    /// Like [`ServerSession::close`], with the reason "server shutting down".
    pub fn close_for_shutdown(&mut self, now: T) {
        self.begin_close(CloseReason::ServerShutdown, now);
    }

    fn begin_close(&mut self, reason: CloseReason, now: T) {
        if self.is_closed() || self.closing {
            return;
        }
        if self.transport == Transport::Upgrading {
            self.abort_upgrade(true);
        }
        if self.transport == Transport::WebSocket {
            // The frames queued so far go out first, then the WebSocket is closed.
            self.close_with(reason, b'1');
            return;
        }
        // Polling: the held (or next) GET delivers the buffer followed by `1` (the reference
        // polling transport's `shouldClose`), or the session ends after `close_timeout`.
        self.closing = true;
        self.close_reason_pending = reason;
        self.close_deadline = now.add_duration(self.config.close_timeout);
        self.next_ping = None;
        self.pong_deadline = None;
        self.flush_poll();
    }

    /// Runs the timers that are due at `now`: ping, ping timeout, upgrade timeout, close timeout.
    pub fn handle_timeout(&mut self, now: T) {
        if self.is_closed() {
            return;
        }
        if self.close_deadline.is_some_and(|d| now >= d) {
            let reason = self.close_reason_pending;
            self.close_with(reason, b'1');
            return;
        }
        if self.upgrade_deadline.is_some_and(|d| now >= d) {
            self.abort_upgrade(true);
        }
        if self.pong_deadline.is_some_and(|d| now >= d) {
            // The reference checks, when the timer fires, whether any packet arrived within the
            // last pingTimeout, and waits that much longer if so (engine.io `checkPingTimeout`).
            let extended = self.last_packet.add_duration(self.config.ping_timeout);
            match extended {
                Some(e) if e > now => self.pong_deadline = Some(e),
                _ => {
                    self.close_with(CloseReason::PingTimeout, b'1');
                    return;
                }
            }
        }
        if self.next_ping.is_some_and(|d| now >= d) {
            self.next_ping = None;
            // Protocol v4 "Heartbeat": the server pings, the client must pong within pingTimeout.
            self.pong_deadline = now.add_duration(self.config.ping_timeout);
            self.send(Packet::Ping("".into()));
        }
    }

    /// The next instant at which [`ServerSession::handle_timeout`] must run, if any.
    pub fn poll_timeout(&self) -> Option<T> {
        if self.is_closed() {
            return None;
        }
        [
            self.next_ping,
            self.pong_deadline,
            self.upgrade_deadline,
            self.close_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next thing to write, in order.
    pub fn poll_transmit(&mut self) -> Option<ServerTransmit> {
        self.transmits.pop_front()
    }

    /// The next event, in order.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// One packet from the client over the session's current transport.
    fn on_packet<'a>(
        &mut self,
        packet: PacketRef<'a>,
        now: T,
    ) -> Result<Option<Data<'a>>, EngineError> {
        if self.is_closed() || self.closing {
            // The reference ignores packets on a socket that is not open.
            return Ok(None);
        }
        self.last_packet = now;
        match packet {
            PacketRef::Message(t) => Ok(Some(Data::Text(t))),
            PacketRef::Binary(b) => Ok(Some(Data::Binary(b))),
            PacketRef::Pong(_) => {
                // After a pong the next ping is pingInterval later (reference `pingIntervalTimer.refresh()`).
                self.pong_deadline = None;
                self.next_ping = now.add_duration(self.config.ping_interval);
                self.events.push_back(ServerEvent::Heartbeat);
                Ok(None)
            }
            PacketRef::Ping(_) => {
                // Protocol v4: pings go server → client only.
                self.close_with(CloseReason::TransportError, b'1');
                Err(EngineError::InvalidHeartbeatDirection)
            }
            PacketRef::Close => {
                // §1.8: a held GET is ended with a noop, the session dies.
                self.close_with(CloseReason::TransportClose, b'6');
                Ok(None)
            }
            // The reference ignores these from a client.
            PacketRef::Open(_) | PacketRef::Upgrade | PacketRef::Noop => Ok(None),
        }
    }

    /// A packet on the WebSocket being probed (protocol v4 "Upgrade", engine.io `_maybeUpgrade`).
    fn on_upgrade_packet(&mut self, packet: PacketRef<'_>) {
        match packet {
            PacketRef::Ping("probe") => {
                self.transmits
                    .push_back(ServerTransmit::Ws(Packet::Pong("probe".into())));
                self.probed = true;
                self.events.push_back(ServerEvent::Upgrading);
                // Force a polling cycle: a held GET with nothing to deliver is ended with noop.
                self.flush_poll();
            }
            PacketRef::Upgrade => {
                self.transport = Transport::WebSocket;
                self.probed = false;
                self.upgrade_deadline = None;
                if self.poll_pending {
                    self.poll_pending = false;
                    let body = if self.outbox.is_empty() {
                        String::from("6")
                    } else {
                        self.take_outbox_body()
                    };
                    self.transmits.push_back(ServerTransmit::Poll(body));
                }
                self.outbox_bytes = 0;
                for p in std::mem::take(&mut self.outbox) {
                    self.transmits.push_back(ServerTransmit::Ws(p));
                }
                self.events.push_back(ServerEvent::Upgraded);
            }
            _ => self.abort_upgrade(true),
        }
    }

    fn abort_upgrade(&mut self, close_ws: bool) {
        if self.transport != Transport::Upgrading {
            return;
        }
        self.transport = Transport::Polling;
        self.probed = false;
        self.upgrade_deadline = None;
        if close_ws {
            self.transmits.push_back(ServerTransmit::CloseWs);
        }
        self.events.push_back(ServerEvent::UpgradeAborted);
    }

    fn ws_parse_error(&mut self) {
        match self.transport {
            Transport::WebSocket => self.close_with(CloseReason::ParseError, b'1'),
            Transport::Upgrading => self.abort_upgrade(true),
            Transport::Polling | Transport::Closed => {}
        }
    }

    /// Answers a held GET if there is something for it.
    fn flush_poll(&mut self) {
        if !self.poll_pending {
            return;
        }
        if self.closing {
            self.outbox.push_back(Packet::Close);
            self.poll_pending = false;
            let body = self.take_outbox_body();
            self.transmits.push_back(ServerTransmit::Poll(body));
            let reason = self.close_reason_pending;
            self.close_with(reason, b'1');
            return;
        }
        let body = if !self.outbox.is_empty() {
            self.take_outbox_body()
        } else if self.transport == Transport::Upgrading && self.probed {
            // Protocol v4 "Upgrade": end the pending poll with a noop so the client can pause.
            String::from("6")
        } else {
            return;
        };
        self.poll_pending = false;
        self.transmits.push_back(ServerTransmit::Poll(body));
    }

    /// Encodes and empties the polling buffer (one `\x1e`-joined payload, §1.4).
    fn take_outbox_body(&mut self) -> String {
        let mut body = String::with_capacity(self.outbox_bytes + self.outbox.len() + 1);
        for (i, p) in self.outbox.drain(..).enumerate() {
            if i > 0 {
                body.push(char::from(SEPARATOR));
            }
            p.encode_text(&mut body);
        }
        self.outbox_bytes = 0;
        body
    }

    /// Ends the session: a held GET is answered with `held_get_packet` (`1` or `6`), an attached
    /// WebSocket is closed, and `Closed(reason)` is emitted.
    fn close_with(&mut self, reason: CloseReason, held_get_packet: u8) {
        if self.is_closed() {
            return;
        }
        if self.poll_pending {
            self.poll_pending = false;
            self.transmits.push_back(ServerTransmit::Poll(
                char::from(held_get_packet).to_string(),
            ));
        }
        if matches!(self.transport, Transport::WebSocket | Transport::Upgrading) {
            self.transmits.push_back(ServerTransmit::CloseWs);
        }
        self.transport = Transport::Closed;
        self.closing = false;
        self.outbox.clear();
        self.outbox_bytes = 0;
        self.next_ping = None;
        self.pong_deadline = None;
        self.upgrade_deadline = None;
        self.close_deadline = None;
        self.close_reason = Some(reason);
        self.events.push_back(ServerEvent::Closed(reason));
    }
}
