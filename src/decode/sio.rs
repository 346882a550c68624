//! Engine.IO and Socket.IO on top of WebSocket messages and long-polling bodies, through the
//! shared protocol core (`proto::engineio`, `proto::socketio`): packet types, namespaces, event
//! names, ack ids, JSON arguments, and binary attachments joined to their placeholders.

use crate::proto::engineio::{self, PacketRef as EioRef, Payload};
use crate::proto::socketio::{PacketRef as SioRef, Reassembler};

use super::event::Anomaly;

/// Whether a stream carries Engine.IO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The handshake said so (`/socket.io/?EIO=4...`): parse errors are anomalies.
    Yes,
    /// Unknown (no handshake seen): decode what parses, flag nothing.
    Maybe,
    /// Plain WebSocket.
    No,
}

/// One Engine.IO packet, with the Socket.IO packet it carries.
#[derive(Debug, Clone)]
pub struct EioPacket<'a> {
    /// The packet, or `None` when it did not parse (see `error`).
    pub packet: Option<EioRef<'a>>,
    /// The packet's text as on the wire (`42["x"]`), empty for a binary WebSocket message.
    pub raw: &'a str,
    pub error: Option<String>,
    pub sio: Option<SioPacket<'a>>,
    /// `Some(mode)`: an Engine.IO message whose Socket.IO packet is not parsed yet (`sio` is
    /// `None`); [`EioPacket::resolve`] parses it later, on the JSON output thread (see
    /// [`SioDir::defer`]).
    pub deferred: Option<Mode>,
}

impl<'a> SioPacket<'a> {
    /// A packet that parsed (or none), with nothing else to say.
    pub fn parsed(packet: Option<SioRef<'a>>) -> Self {
        SioPacket {
            packet,
            note: String::new(),
            error: None,
            attachment: None,
            completed: None,
        }
    }

    /// A packet that does not parse, with its anomaly.
    fn invalid(e: &dyn std::fmt::Display, anomalies: &mut Vec<Anomaly>) -> Self {
        anomalies.push(Anomaly::new("socketio_error", format!("Socket.IO: {e}")));
        SioPacket {
            packet: None,
            note: format!("invalid Socket.IO packet: {e}"),
            error: Some(e.to_string()),
            attachment: None,
            completed: None,
        }
    }

    /// One-line summary (`EVENT send_message nsp=/ {...}`), from the shared core.
    pub fn summary(&self) -> String {
        match &self.packet {
            Some(r) => r.summary(),
            None => self.note.clone(),
        }
    }
}

impl EioPacket<'_> {
    /// Engine.IO type name (`message`, `ping`, ...), `binary` for binary messages.
    pub fn type_name(&self) -> &'static str {
        match &self.packet {
            Some(EioRef::Binary(_)) => "binary",
            Some(p) => p.packet_type().name(),
            None => "invalid",
        }
    }

    /// The Engine.IO type digit (`b` for binary messages, `?` when invalid).
    pub fn type_char(&self) -> char {
        match &self.packet {
            Some(EioRef::Binary(_)) => 'b',
            Some(p) => p.packet_type().as_char(),
            None => '?',
        }
    }
}

/// A Socket.IO packet (or one binary attachment of one).
#[derive(Debug, Clone)]
pub struct SioPacket<'a> {
    /// The packet as parsed (None for an attachment or an error).
    pub packet: Option<SioRef<'a>>,
    /// Summary of an attachment or an error (a parsed packet's is made on demand: [`SioPacket::summary`]).
    pub note: String,
    pub error: Option<String>,
    /// This binary message is attachment `.0` (0-based) of `.1` of a waiting packet.
    pub attachment: Option<(usize, usize)>,
    /// The binary packet this attachment completed, with placeholders joined to their bytes.
    pub completed: Option<Box<Completed>>,
}

/// A BINARY_EVENT / BINARY_ACK with all its attachments.
#[derive(Debug, Clone)]
pub struct Completed {
    pub summary: String,
    pub event: Option<String>,
    pub nsp: String,
    pub id: Option<u64>,
    /// Size and first bytes (hex) of each attachment, in placeholder order.
    pub attachments: Vec<(usize, String)>,
}

/// Per-direction Socket.IO state: the packet waiting for binary attachments.
#[derive(Debug)]
pub struct SioDir {
    pub mode: Mode,
    /// Leave the Socket.IO packet of a WebSocket text message unparsed ([`EioPacket::deferred`])
    /// when parsing it cannot change this state: no attachments are awaited and its type is not
    /// a binary one. Only for runs where nothing but the rendered output depends on the packet
    /// (`--json` on two threads without `--event`/`--stats`): the output thread parses it.
    pub defer: bool,
    reassembler: Reassembler,
    expected: usize,
    received: usize,
}

impl SioDir {
    pub fn new(mode: Mode) -> Self {
        SioDir {
            mode,
            defer: false,
            reassembler: Reassembler::new(),
            expected: 0,
            received: 0,
        }
    }

    /// A WebSocket message: one Engine.IO packet (text frame) or a binary message (binary frame).
    pub fn ws_message<'a>(
        &mut self,
        binary: bool,
        data: &'a [u8],
        text: Option<&'a str>,
        anomalies: &mut Vec<Anomaly>,
    ) -> Option<EioPacket<'a>> {
        if self.mode == Mode::No {
            return None;
        }
        if binary {
            if self.mode == Mode::Maybe && self.expected == 0 {
                return None;
            }
            let packet = EioRef::parse_binary(data);
            let sio = self.binary_attachment(data, anomalies);
            return Some(EioPacket {
                packet: Some(packet),
                raw: "",
                error: None,
                sio,
                deferred: None,
            });
        }
        let text = text?;
        match EioRef::parse_text(text) {
            Ok(p) => {
                if let EioRef::Message(m) = &p {
                    if self.defer && self.expected == 0 && stateless_packet(m) {
                        // Nothing here depends on the packet: the output thread parses it.
                        return Some(EioPacket {
                            packet: Some(p),
                            raw: text,
                            error: None,
                            sio: None,
                            deferred: Some(self.mode),
                        });
                    }
                }
                if self.mode == Mode::Maybe {
                    // Without a handshake, only call it Engine.IO when it looks like it.
                    match &p {
                        EioRef::Message(m) => {
                            let Ok(r) = SioRef::parse(m) else {
                                return None;
                            };
                            let sio = self.parsed_packet(r, anomalies);
                            return Some(EioPacket {
                                packet: Some(p),
                                raw: text,
                                error: None,
                                sio: Some(sio),
                                deferred: None,
                            });
                        }
                        other if !plausible(other) => return None,
                        _ => {}
                    }
                }
                Some(self.packet(p, text, anomalies))
            }
            Err(e) => {
                if self.mode != Mode::Yes {
                    return None;
                }
                anomalies.push(Anomaly::new("engineio_error", format!("Engine.IO: {e}")));
                Some(EioPacket {
                    packet: None,
                    raw: text,
                    error: Some(e.to_string()),
                    sio: None,
                    deferred: None,
                })
            }
        }
    }

    /// A long-polling body: packets separated by `\x1e`, binary as `b<base64>`.
    pub fn polling_body<'a>(
        &mut self,
        body: &'a [u8],
        anomalies: &mut Vec<Anomaly>,
    ) -> Vec<EioPacket<'a>> {
        let text = match std::str::from_utf8(body) {
            Ok(t) => t,
            Err(e) => {
                anomalies.push(Anomaly::new(
                    "engineio_error",
                    format!(
                        "Engine.IO: polling body is not UTF-8 at byte {}",
                        e.valid_up_to()
                    ),
                ));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        let mut rest = text;
        for item in Payload::iter(text) {
            // The raw text of this segment: up to the next separator.
            let end = rest
                .find(char::from(engineio::SEPARATOR))
                .unwrap_or(rest.len());
            let raw = rest.get(..end).unwrap_or_default();
            rest = rest.get(end + 1..).unwrap_or_default();
            match item {
                Ok(EioRef::Binary(bytes)) => {
                    let sio = self.binary_attachment(&bytes, anomalies);
                    out.push(EioPacket {
                        packet: Some(EioRef::Binary(bytes)),
                        raw,
                        error: None,
                        sio,
                        deferred: None,
                    });
                }
                Ok(p) => out.push(self.packet(p, raw, anomalies)),
                Err(e) => {
                    anomalies.push(Anomaly::new("engineio_error", format!("Engine.IO: {e}")));
                    out.push(EioPacket {
                        packet: None,
                        raw,
                        error: Some(e.to_string()),
                        sio: None,
                        deferred: None,
                    });
                }
            }
        }
        out
    }

    fn packet<'a>(
        &mut self,
        p: EioRef<'a>,
        raw: &'a str,
        anomalies: &mut Vec<Anomaly>,
    ) -> EioPacket<'a> {
        let sio = match &p {
            EioRef::Message(m) => Some(self.text_packet(m, anomalies)),
            _ => None,
        };
        EioPacket {
            packet: Some(p),
            raw,
            error: None,
            sio,
            deferred: None,
        }
    }

    /// A Socket.IO packet in an Engine.IO message.
    fn text_packet<'a>(&mut self, text: &'a str, anomalies: &mut Vec<Anomaly>) -> SioPacket<'a> {
        if self.expected > 0 {
            anomalies.push(Anomaly::new(
                "socketio_error",
                format!(
                    "Socket.IO: text packet while {} binary attachment(s) were still expected",
                    self.expected - self.received
                ),
            ));
            self.reset();
        }
        match SioRef::parse(text) {
            Ok(r) => self.parsed_packet(r, anomalies),
            Err(e) => SioPacket::invalid(&e, anomalies),
        }
    }

    /// A parsed Socket.IO packet; a binary one starts waiting for its attachments.
    fn parsed_packet<'a>(&mut self, r: SioRef<'a>, anomalies: &mut Vec<Anomaly>) -> SioPacket<'a> {
        if self.expected > 0 {
            anomalies.push(Anomaly::new(
                "socketio_error",
                format!(
                    "Socket.IO: text packet while {} binary attachment(s) were still expected",
                    self.expected - self.received
                ),
            ));
            self.reset();
        }
        if r.attachments() > 0 {
            match self.reassembler.push_ref(&r) {
                Ok(_) => {
                    self.expected = r.attachments();
                    self.received = 0;
                }
                Err(e) => {
                    anomalies.push(Anomaly::new("socketio_error", format!("Socket.IO: {e}")));
                    self.reset();
                }
            }
        }
        SioPacket::parsed(Some(r))
    }

    /// A binary Engine.IO message: the next attachment of the waiting packet.
    fn binary_attachment<'a>(
        &mut self,
        data: &[u8],
        anomalies: &mut Vec<Anomaly>,
    ) -> Option<SioPacket<'a>> {
        if self.expected == 0 {
            if self.mode == Mode::Yes {
                anomalies.push(Anomaly::new(
                    "socketio_error",
                    "Socket.IO: binary message with no packet waiting for attachments",
                ));
            }
            return None;
        }
        let index = self.received;
        let total = self.expected;
        self.received += 1;
        match self.reassembler.push_binary(data.to_vec()) {
            Ok(None) => Some(SioPacket {
                packet: None,
                note: format!("attachment {} of {total} ({} B)", index + 1, data.len()),
                error: None,
                attachment: Some((index, total)),
                completed: None,
            }),
            Ok(Some(p)) => {
                self.expected = 0;
                self.received = 0;
                let attachments = p
                    .attachments
                    .iter()
                    .map(|a| (a.len(), hex_prefix(a, 16)))
                    .collect();
                let completed = Completed {
                    summary: p.summary(),
                    event: p.event_name().map(str::to_string),
                    nsp: p.nsp.clone(),
                    id: p.id,
                    attachments,
                };
                Some(SioPacket {
                    packet: None,
                    note: format!(
                        "attachment {} of {total} ({} B), completes {}",
                        index + 1,
                        data.len(),
                        completed.summary
                    ),
                    error: None,
                    attachment: Some((index, total)),
                    completed: Some(Box::new(completed)),
                })
            }
            Err(e) => {
                anomalies.push(Anomaly::new("socketio_error", format!("Socket.IO: {e}")));
                self.reset();
                Some(SioPacket {
                    packet: None,
                    note: format!("attachment {} of {total}: {e}", index + 1),
                    error: Some(e.to_string()),
                    attachment: Some((index, total)),
                    completed: None,
                })
            }
        }
    }

    fn reset(&mut self) {
        self.reassembler.reset();
        self.expected = 0;
        self.received = 0;
    }

    /// Attachments still expected (for the end-of-capture report).
    pub fn missing_attachments(&self) -> usize {
        self.expected.saturating_sub(self.received)
    }
}

/// Whether parsing Socket.IO packet text leaves a [`SioDir`] that awaits no attachments as it
/// is: any type but BINARY_EVENT/BINARY_ACK (`5`, `6`), whose header starts a reassembly. An
/// unknown type is left to the immediate parse as well.
fn stateless_packet(text: &str) -> bool {
    matches!(text.as_bytes().first(), Some(b'0'..=b'4'))
}

impl<'a> EioPacket<'a> {
    /// A deferred packet ([`EioPacket::deferred`]) parsed as [`SioDir::ws_message`] would have
    /// parsed it: the same Socket.IO packet, the same anomaly (pushed to `anomalies`), and `None`
    /// where that returned `None` (an invalid packet without a handshake is not Engine.IO). A
    /// packet that is not deferred comes back as it is.
    pub fn resolve(self, anomalies: &mut Vec<Anomaly>) -> Option<EioPacket<'a>> {
        let (Some(mode), Some(EioRef::Message(m))) = (self.deferred, &self.packet) else {
            return Some(self);
        };
        let m: &'a str = m;
        let sio = match SioRef::parse(m) {
            // A packet of a stateless type never announces attachments: nothing to await.
            Ok(r) => SioPacket::parsed(Some(r)),
            Err(_) if mode != Mode::Yes => return None,
            Err(e) => SioPacket::invalid(&e, anomalies),
        };
        Some(EioPacket {
            sio: Some(sio),
            deferred: None,
            ..self
        })
    }
}

/// Without a handshake, only call something Engine.IO when it looks like it: a message carrying a
/// valid Socket.IO packet, a bare ping/pong/probe, or an upgrade/noop/close digit.
fn plausible(p: &EioRef<'_>) -> bool {
    match p {
        EioRef::Message(m) => SioRef::parse(m).is_ok(),
        EioRef::Ping(d) | EioRef::Pong(d) => d.is_empty() || *d == "probe",
        EioRef::Open(_) => true,
        EioRef::Close | EioRef::Upgrade | EioRef::Noop => true,
        EioRef::Binary(_) => false,
    }
}

/// Up to `max` bytes as hex pairs.
pub fn hex_prefix(bytes: &[u8], max: usize) -> String {
    let mut s = String::with_capacity(max * 3);
    for (i, b) in bytes.iter().take(max).enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&format!("{b:02x}"));
    }
    if bytes.len() > max {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a message decodes to: the Engine.IO packet (as debug text) and the anomaly codes.
    fn decode(dir: &mut SioDir, text: &str) -> (String, Vec<&'static str>) {
        let mut anomalies = Vec::new();
        let p = dir.ws_message(false, text.as_bytes(), Some(text), &mut anomalies);
        let p = p.and_then(|p| p.resolve(&mut anomalies));
        (format!("{p:?}"), anomalies.iter().map(|a| a.code).collect())
    }

    #[test]
    fn deferred_packets_resolve_to_what_parsing_at_once_gives() {
        let messages = [
            r#"42["send_message",{"room":"1"}]"#,
            r#"42/chat,7["x",1,[2,{"a":null}]]"#,
            "40",
            r#"40{"sid":"abc"}"#,
            r#"43/admin,12[true]"#,
            "41",
            r#"44{"message":"no"}"#,
            r#"42["send_message",{"room":}]"#,
            r#"42["disconnect"]"#,
            "42",
            "4x",
            r#"42[1e400]"#,
            r#"451-["up",{"_placeholder":true,"num":0}]"#,
            r#"42["after the header"]"#,
            "2",
            "3probe",
            "6",
            "x",
        ];
        for mode in [Mode::Yes, Mode::Maybe, Mode::No] {
            let mut now = SioDir::new(mode);
            let mut later = SioDir::new(mode);
            later.defer = true;
            for m in messages {
                let a = decode(&mut now, m);
                let b = decode(&mut later, m);
                assert_eq!(a, b, "{m:?} in {mode:?}");
            }
            assert_eq!(now.missing_attachments(), later.missing_attachments());
        }
    }

    #[test]
    fn only_stateless_messages_are_deferred() {
        let mut dir = SioDir::new(Mode::Yes);
        dir.defer = true;
        let mut anomalies = Vec::new();
        let text = r#"42["a"]"#;
        let p = dir.ws_message(false, text.as_bytes(), Some(text), &mut anomalies);
        assert!(p.is_some_and(|p| p.deferred == Some(Mode::Yes) && p.sio.is_none()));
        // A binary packet's header starts a reassembly: parsed at once.
        let text = r#"451-["up",{"_placeholder":true,"num":0}]"#;
        let p = dir.ws_message(false, text.as_bytes(), Some(text), &mut anomalies);
        assert!(p.is_some_and(|p| p.deferred.is_none() && p.sio.is_some()));
        assert_eq!(dir.missing_attachments(), 1);
        // While attachments are awaited, a text packet is an anomaly found here.
        let text = r#"42["a"]"#;
        let p = dir.ws_message(false, text.as_bytes(), Some(text), &mut anomalies);
        assert!(p.is_some_and(|p| p.deferred.is_none()));
        assert_eq!(anomalies.len(), 1);
    }
}
