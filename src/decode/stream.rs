//! What one TCP conversation carries: HTTP/1.1 messages (the WebSocket Upgrade handshake,
//! Engine.IO long-polling), then WebSocket frames after a `101`, or WebSocket from the first byte on
//! a `--ws-port`. Receives in-order bytes per direction from the reassembler and emits events.

use std::collections::VecDeque;

use crate::wire::deflate::Inflater;
use crate::wire::http::{self as whttp, PerMessageDeflateParams, RequestHead, ResponseHead};
use crate::wire::ws::Role;

use super::body::{self, BodyReader, Coding, Framing};
use super::event::{Anomaly, Event, Handshake, HttpMessage};
use super::sio::{Mode, SioDir};
use super::tcp::Delivery;
use super::websocket::WsDir;

/// The protocol a conversation was recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Unknown,
    Http,
    WebSocket,
    /// Not something we decode: payload is listed as TCP data.
    Opaque,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Unknown => "unknown",
            Proto::Http => "http",
            Proto::WebSocket => "websocket",
            Proto::Opaque => "tcp",
        }
    }
}

/// A request waiting for its response (HTTP/1.1 pipelining is answered in order, RFC 9112 §9.3.2).
#[derive(Debug, Clone)]
struct Pending {
    method: String,
    target: String,
    upgrade: Option<Handshake>,
    /// The request is Engine.IO long-polling.
    polling: bool,
}

/// One direction's HTTP parser.
#[derive(Debug, Default)]
struct HttpDir {
    buf: Vec<u8>,
    /// Body being read, with the message it belongs to.
    body: Option<(BodyReader, HttpMessage, bool /* polling */)>,
    /// A parse error made this direction unreadable until a gap or the end.
    broken: bool,
    /// Packet number where the current message started.
    first_packet: u64,
}

/// Per-conversation decoder state.
#[derive(Debug)]
pub struct AppState {
    pub proto: Proto,
    /// Endpoint index (0/1, as in the conversation) of the client, once known.
    pub client: Option<usize>,
    /// The port that made this a WebSocket conversation without a handshake.
    ws_port_server: Option<usize>,
    http: [HttpDir; 2],
    pending: VecDeque<Pending>,
    /// WebSocket decoders, by direction (index = sender endpoint).
    ws: Option<Box<[WsDir; 2]>>,
    /// Engine.IO state of long-polling bodies, by direction.
    polling: [SioDir; 2],
    /// The request target of the WebSocket handshake.
    pub ws_target: Option<String>,
    pub eio: Mode,
    /// WebSocket messages may leave their Socket.IO packet to the output thread
    /// ([`SioDir::defer`]).
    pub defer_sio: bool,
}

/// What a conversation's app layer needs to know at creation.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// Which endpoint (0/1) listens on a `--ws-port`, if any.
    pub ws_port_side: Option<usize>,
    /// Which endpoint sent the SYN, if seen.
    pub syn_from: Option<usize>,
}

/// Largest HTTP head buffered (the shared parser's limit).
const MAX_HEAD: usize = whttp::MAX_HEAD_LEN;

/// Whether bytes start like an HTTP/1.x request line (`TOKEN SP`).
fn looks_like_request(data: &[u8]) -> bool {
    let method_len = data
        .iter()
        .take(16)
        .take_while(|b| b.is_ascii_uppercase())
        .count();
    method_len >= 3 && data.get(method_len) == Some(&b' ')
}

fn looks_like_response(data: &[u8]) -> bool {
    data.starts_with(b"HTTP/1.")
        || (data.len() < 7 && b"HTTP/1.".starts_with(data) && !data.is_empty())
}

/// Whether a request target is Engine.IO (`/socket.io/?EIO=4...`, `/engine.io/...`).
fn is_engineio_target(target: &str) -> bool {
    target.contains("EIO=") || target.contains("/socket.io/") || target.contains("/engine.io/")
}

fn is_polling_target(target: &str) -> bool {
    is_engineio_target(target) && target.contains("transport=polling")
}

impl AppState {
    pub fn new(setup: Setup) -> Self {
        AppState {
            proto: Proto::Unknown,
            client: setup.syn_from.or(setup.ws_port_side.map(|s| 1 - s)),
            ws_port_server: setup.ws_port_side,
            http: [HttpDir::default(), HttpDir::default()],
            pending: VecDeque::new(),
            ws: None,
            polling: [SioDir::new(Mode::Yes), SioDir::new(Mode::Yes)],
            ws_target: None,
            eio: Mode::Maybe,
            defer_sio: false,
        }
    }

    /// The role of the endpoint that sends in direction `dir`.
    pub fn role(&self, dir: usize) -> Option<Role> {
        self.client
            .map(|c| if c == dir { Role::Client } else { Role::Server })
    }

    /// Start decoding WebSocket frames (after a 101, or on a `--ws-port`).
    fn start_websocket(&mut self, inflaters: [Option<Inflater>; 2], mode: Mode) {
        let client = self.client.unwrap_or(0);
        let [i0, i1] = inflaters;
        let role = |d: usize| {
            if d == client {
                Role::Client
            } else {
                Role::Server
            }
        };
        let sio = || {
            let mut s = SioDir::new(mode);
            s.defer = self.defer_sio;
            s
        };
        self.ws = Some(Box::new([
            WsDir::new(role(0), i0, sio()),
            WsDir::new(role(1), i1, sio()),
        ]));
        self.eio = mode;
        self.proto = Proto::WebSocket;
    }

    /// In-order stream bytes, a gap, FIN or RST from direction `dir`.
    pub fn deliver(
        &mut self,
        dir: usize,
        d: Delivery<'_>,
        packet: u64,
        emit: &mut dyn FnMut(&Event<'_>),
    ) {
        match d {
            Delivery::Data(data) => self.data(dir, data, packet, emit),
            Delivery::Gap(n) => {
                emit(&Event::Gap { bytes: n });
                if let Some(ws) = self.ws.as_mut() {
                    if let Some(w) = ws.get_mut(dir) {
                        w.gap();
                    }
                } else if let Some(h) = self.http.get_mut(dir) {
                    // Lost bytes: drop what was half-read and wait for the next message start.
                    h.buf.clear();
                    h.body = None;
                    h.broken = true;
                }
            }
            Delivery::Fin | Delivery::Reset => self.close(dir, emit),
        }
    }

    fn data(&mut self, dir: usize, data: &[u8], packet: u64, emit: &mut dyn FnMut(&Event<'_>)) {
        if data.is_empty() {
            return;
        }
        if self.proto == Proto::Unknown {
            if self.ws_port_server.is_some()
                && !looks_like_request(data)
                && !looks_like_response(data)
            {
                // Wireshark's "Decode As": frames from the first byte, the ws-port side is the server.
                self.start_websocket([None, None], Mode::Maybe);
            } else if looks_like_request(data) {
                self.proto = Proto::Http;
                if self.client.is_none() {
                    self.client = Some(dir);
                }
            } else if looks_like_response(data) {
                self.proto = Proto::Http;
                if self.client.is_none() {
                    self.client = Some(1 - dir);
                }
            } else {
                self.proto = Proto::Opaque;
            }
        }
        match self.proto {
            Proto::WebSocket => {
                if let Some(w) = self.ws.as_mut().and_then(|ws| ws.get_mut(dir)) {
                    w.feed(data, packet, &mut |f| emit(&Event::Ws(f)));
                }
            }
            Proto::Http => self.http_data(dir, data, packet, emit),
            Proto::Opaque | Proto::Unknown => emit(&Event::Data { len: data.len() }),
        }
    }

    fn http_data(
        &mut self,
        dir: usize,
        data: &[u8],
        packet: u64,
        emit: &mut dyn FnMut(&Event<'_>),
    ) {
        let is_client = self.client.is_none_or(|c| c == dir);
        {
            let Some(h) = self.http.get_mut(dir) else {
                return;
            };
            if h.broken {
                // After a gap or a parse error: resume at something that starts a message.
                let starts = if is_client {
                    looks_like_request(data)
                } else {
                    looks_like_response(data)
                };
                if !starts {
                    emit(&Event::Data { len: data.len() });
                    return;
                }
                h.broken = false;
            }
            if h.buf.is_empty() && h.body.is_none() {
                h.first_packet = packet;
            }
            h.buf.extend_from_slice(data);
        }
        loop {
            let Some(h) = self.http.get_mut(dir) else {
                return;
            };
            // A body in progress.
            if let Some((reader, _, _)) = h.body.as_mut() {
                let fed = match reader.feed(&h.buf) {
                    Ok(f) => f,
                    Err(e) => {
                        let (_, mut msg, _) = h.body.take().unwrap_or_else(unreachable_body);
                        msg.anomalies
                            .push(Anomaly::new("http_body_error", format!("HTTP body: {e}")));
                        h.buf.clear();
                        h.broken = true;
                        emit_http(&msg, &mut self.polling, false, dir, emit);
                        return;
                    }
                };
                h.buf.drain(..fed.used.min(h.buf.len()));
                if !fed.done {
                    return;
                }
                if let Some((reader, msg, polling)) = h.body.take() {
                    let msg = finish_body(msg, reader);
                    let switch = self.after_message(&msg);
                    emit_http(&msg, &mut self.polling, polling, dir, emit);
                    if let Some(hs) = switch {
                        self.switch_to_websocket(dir, &hs, packet, emit);
                        return;
                    }
                }
                continue;
            }
            let Some(h) = self.http.get_mut(dir) else {
                return;
            };
            if h.buf.is_empty() {
                return;
            }
            h.first_packet = if h.first_packet == 0 {
                packet
            } else {
                h.first_packet
            };
            let parsed = if is_client {
                self.parse_request(dir)
            } else {
                self.parse_response(dir)
            };
            match parsed {
                Ok(true) => continue,
                Ok(false) => return,
                Err(msg) => {
                    if let Some(h) = self.http.get_mut(dir) {
                        h.buf.clear();
                        h.broken = true;
                    }
                    emit(&Event::Http(&msg, &[]));
                    return;
                }
            }
        }
    }

    /// Parse a request head from the buffer. Ok(true): a message was started (or completed).
    fn parse_request(&mut self, dir: usize) -> Result<bool, Box<HttpMessage>> {
        let Some(h) = self.http.get_mut(dir) else {
            return Ok(false);
        };
        let first_packet = h.first_packet;
        let (msg, framing, pending, used) = match RequestHead::parse(&h.buf) {
            Ok(None) => {
                if h.buf.len() > MAX_HEAD {
                    return Err(error_message(
                        true,
                        first_packet,
                        format!("request head longer than {MAX_HEAD} bytes"),
                    ));
                }
                return Ok(false);
            }
            Err(e) => {
                return Err(error_message(
                    true,
                    first_packet,
                    format!("HTTP request: {e}"),
                ));
            }
            Ok(Some((head, used))) => {
                let mut msg = new_message(true, first_packet, used);
                msg.method = head.method.to_string();
                msg.target = head.path.to_string();
                msg.start_line = format!("{} {} {}", head.method, head.path, head.version_str());
                msg.headers = head
                    .headers
                    .iter()
                    .map(|hd| {
                        (
                            hd.name.to_string(),
                            String::from_utf8_lossy(hd.value).into_owned(),
                        )
                    })
                    .collect();
                let mut upgrade = None;
                if head
                    .header("upgrade")
                    .is_some_and(|u| u.to_ascii_lowercase().contains("websocket"))
                {
                    let mut hs = Handshake {
                        key: head.websocket_key().map(str::to_string),
                        version: head.websocket_version().map(str::to_string),
                        protocols: head.protocols().iter().map(|s| s.to_string()).collect(),
                        ..Handshake::default()
                    };
                    match head.extensions() {
                        Ok(exts) => hs.extensions = exts.iter().map(|e| e.to_string()).collect(),
                        Err(e) => msg.anomalies.push(Anomaly::new(
                            "bad_extensions",
                            format!("Sec-WebSocket-Extensions: {e}"),
                        )),
                    }
                    if let Err(e) = head.validate_websocket_upgrade() {
                        msg.anomalies.push(Anomaly::new(
                            "bad_upgrade_request",
                            format!("WebSocket upgrade request: {e} (RFC 6455 §4.2.1)"),
                        ));
                    }
                    hs.expected_accept = hs.key.as_deref().map(whttp::accept_key);
                    msg.websocket = Some(hs.clone());
                    upgrade = Some(hs);
                }
                let framing = request_framing(&head);
                let pending = Pending {
                    method: msg.method.clone(),
                    target: msg.target.clone(),
                    upgrade,
                    polling: is_polling_target(&msg.target),
                };
                (msg, framing, pending, used)
            }
        };
        let polling = pending.polling;
        self.pending.push_back(pending);
        if is_engineio_target(&msg.target) {
            self.eio = Mode::Yes;
        }
        let Some(h) = self.http.get_mut(dir) else {
            return Ok(false);
        };
        h.buf.drain(..used.min(h.buf.len()));
        h.body = Some((BodyReader::new(framing), msg, polling));
        h.first_packet = 0;
        Ok(true)
    }

    fn parse_response(&mut self, dir: usize) -> Result<bool, Box<HttpMessage>> {
        let Some(h) = self.http.get_mut(dir) else {
            return Ok(false);
        };
        let first_packet = h.first_packet;
        let request = self.pending.front().cloned();
        let (msg, framing, used) = match ResponseHead::parse(&h.buf) {
            Ok(None) => {
                if h.buf.len() > MAX_HEAD {
                    return Err(error_message(
                        false,
                        first_packet,
                        format!("response head longer than {MAX_HEAD} bytes"),
                    ));
                }
                return Ok(false);
            }
            Err(e) => {
                return Err(error_message(
                    false,
                    first_packet,
                    format!("HTTP response: {e}"),
                ));
            }
            Ok(Some((head, used))) => {
                let mut msg = new_message(false, first_packet, used);
                msg.status = head.status;
                msg.reason = head.reason.to_string();
                msg.start_line = format!("{} {} {}", head.version_str(), head.status, head.reason);
                msg.headers = head
                    .headers
                    .iter()
                    .map(|hd| {
                        (
                            hd.name.to_string(),
                            String::from_utf8_lossy(hd.value).into_owned(),
                        )
                    })
                    .collect();
                if let Some(req) = &request {
                    msg.in_response_to = Some(format!("{} {}", req.method, req.target));
                }
                // 1xx other than 101 are interim: the request still waits for its final answer.
                if head.status >= 200 || head.status == 101 {
                    self.pending.pop_front();
                }
                if head.status == 101 {
                    self.ws_target = request.as_ref().map(|r| r.target.clone());
                    let mut hs = request
                        .as_ref()
                        .and_then(|r| r.upgrade.clone())
                        .unwrap_or_default();
                    hs.accept = head.websocket_accept().map(str::to_string);
                    hs.protocols = head.protocols().iter().map(|s| s.to_string()).collect();
                    match (&hs.key, &hs.accept) {
                        (Some(key), Some(accept)) => {
                            let ok = whttp::verify_accept(key, accept);
                            hs.accept_ok = Some(ok);
                            if !ok {
                                msg.anomalies.push(Anomaly::new(
                                    "bad_accept",
                                    format!(
                                        "Sec-WebSocket-Accept {accept} does not match the key (expected {}) (RFC 6455 §4.2.2)",
                                        whttp::accept_key(key)
                                    ),
                                ));
                            }
                        }
                        (None, _) if request.is_some() => msg.anomalies.push(Anomaly::new(
                            "bad_accept",
                            "101 response to a request without Sec-WebSocket-Key (RFC 6455 §4.1)",
                        )),
                        (Some(_), None) => msg.anomalies.push(Anomaly::new(
                            "bad_accept",
                            "101 response without Sec-WebSocket-Accept (RFC 6455 §4.1)",
                        )),
                        _ => {}
                    }
                    hs.extensions = match head.extensions() {
                        Ok(exts) => exts.iter().map(|e| e.to_string()).collect(),
                        Err(e) => {
                            msg.anomalies.push(Anomaly::new(
                                "bad_extensions",
                                format!("Sec-WebSocket-Extensions: {e}"),
                            ));
                            Vec::new()
                        }
                    };
                    msg.websocket = Some(hs);
                }
                let head_request = request
                    .as_ref()
                    .is_some_and(|r| r.method.eq_ignore_ascii_case("HEAD"));
                let framing = response_framing(&head, head_request);
                (msg, framing, used)
            }
        };
        let polling = request.as_ref().is_some_and(|r| r.polling) && msg.status == 200;
        let Some(h) = self.http.get_mut(dir) else {
            return Ok(false);
        };
        h.buf.drain(..used.min(h.buf.len()));
        h.body = Some((BodyReader::new(framing), msg, polling));
        h.first_packet = 0;
        Ok(true)
    }

    /// A complete message: the handshake when it switches the conversation to WebSocket.
    fn after_message(&self, msg: &HttpMessage) -> Option<Handshake> {
        if !msg.is_request && msg.status == 101 {
            msg.websocket.clone()
        } else {
            None
        }
    }

    /// After a 101: the rest of both directions' buffers are WebSocket frames.
    fn switch_to_websocket(
        &mut self,
        server_dir: usize,
        hs: &Handshake,
        packet: u64,
        emit: &mut dyn FnMut(&Event<'_>),
    ) {
        let client_dir = 1 - server_dir;
        self.client = Some(client_dir);
        // permessage-deflate parameters from the response (RFC 7692 §7.1).
        let mut inflaters: [Option<Inflater>; 2] = [None, None];
        let mut anomalies = Vec::new();
        for ext in &hs.extensions {
            match whttp::parse_extensions(ext) {
                Ok(parsed) => {
                    for e in parsed {
                        if !e.name.eq_ignore_ascii_case(whttp::PERMESSAGE_DEFLATE) {
                            continue;
                        }
                        match PerMessageDeflateParams::from_extension(&e) {
                            Ok(p) => {
                                let client = Inflater::new(
                                    p.client_window_bits(),
                                    !p.client_no_context_takeover,
                                );
                                let server = Inflater::new(
                                    p.server_window_bits(),
                                    !p.server_no_context_takeover,
                                );
                                if let (Some(slot), Ok(inf)) =
                                    (inflaters.get_mut(client_dir), client)
                                {
                                    *slot = Some(inf);
                                }
                                if let (Some(slot), Ok(inf)) =
                                    (inflaters.get_mut(server_dir), server)
                                {
                                    *slot = Some(inf);
                                }
                            }
                            Err(e) => anomalies.push(Anomaly::new(
                                "bad_extensions",
                                format!("permessage-deflate: {e}"),
                            )),
                        }
                    }
                }
                Err(e) => anomalies.push(Anomaly::new(
                    "bad_extensions",
                    format!("Sec-WebSocket-Extensions: {e}"),
                )),
            }
        }
        // Engine.IO when the handshake asked for it; unknown when the request was not captured.
        let mode = match self.ws_target.as_deref() {
            Some(t) if is_engineio_target(t) => Mode::Yes,
            Some(_) => Mode::No,
            None => Mode::Maybe,
        };
        self.start_websocket(inflaters, mode);
        for a in anomalies {
            emit(&Event::Note { anomaly: a });
        }
        // Bytes that followed the heads are frames.
        for d in [server_dir, client_dir] {
            let rest = self
                .http
                .get_mut(d)
                .map(|h| std::mem::take(&mut h.buf))
                .unwrap_or_default();
            if !rest.is_empty() {
                self.data(d, &rest, packet, emit);
            }
        }
    }

    /// FIN or RST: a read-until-close body ends.
    fn close(&mut self, dir: usize, emit: &mut dyn FnMut(&Event<'_>)) {
        if self.proto != Proto::Http {
            return;
        }
        let Some(h) = self.http.get_mut(dir) else {
            return;
        };
        if let Some((mut reader, msg, polling)) = h.body.take() {
            if reader.close() {
                let msg = finish_body(msg, reader);
                emit_http(&msg, &mut self.polling, polling, dir, emit);
            } else {
                h.body = Some((reader, msg, polling));
            }
        }
    }

    /// End of the capture: report what was left half-done.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&Event<'_>)) {
        if let Some(ws) = self.ws.as_ref() {
            for w in ws.iter() {
                if let Some(what) = w.unfinished() {
                    emit(&Event::Truncated { what });
                }
                let missing = w.sio.missing_attachments();
                if missing > 0 {
                    emit(&Event::Truncated {
                        what: format!(
                            "capture ends while {missing} Socket.IO binary attachment(s) were expected"
                        ),
                    });
                }
            }
        }
        for dir in 0..2 {
            let Some(h) = self.http.get_mut(dir) else {
                continue;
            };
            if let Some((reader, msg, _)) = h.body.take() {
                emit(&Event::Truncated {
                    what: format!(
                        "capture ends inside the body of `{}` ({} body bytes seen)",
                        msg.start_line, reader.wire_len
                    ),
                });
            } else if !h.buf.is_empty() && !h.broken {
                emit(&Event::Truncated {
                    what: format!(
                        "capture ends inside an HTTP head ({} bytes seen)",
                        h.buf.len()
                    ),
                });
            }
        }
    }

    /// Frames decoded so far (both directions).
    pub fn ws_frames(&self) -> u64 {
        self.ws
            .as_ref()
            .map_or(0, |ws| ws.iter().map(|w| w.frames).sum())
    }
}

fn unreachable_body() -> (BodyReader, HttpMessage, bool) {
    (
        BodyReader::new(Framing::None),
        new_message(false, 0, 0),
        false,
    )
}

fn new_message(is_request: bool, first_packet: u64, head_len: usize) -> HttpMessage {
    HttpMessage {
        is_request,
        start_line: String::new(),
        method: String::new(),
        target: String::new(),
        status: 0,
        reason: String::new(),
        headers: Vec::new(),
        head_len,
        body_wire_len: 0,
        body: Vec::new(),
        chunked: false,
        content_encoding: None,
        first_packet,
        websocket: None,
        in_response_to: None,
        anomalies: Vec::new(),
    }
}

fn error_message(is_request: bool, first_packet: u64, text: String) -> Box<HttpMessage> {
    let mut m = Box::new(new_message(is_request, first_packet, 0));
    m.start_line = if is_request {
        "[malformed HTTP request]".into()
    } else {
        "[malformed HTTP response]".into()
    };
    m.anomalies.push(Anomaly::new("http_parse_error", text));
    m
}

/// Body framing of a request (RFC 9112 §6.3): chunked, Content-Length, or none.
fn request_framing(head: &RequestHead<'_>) -> Framing {
    if head
        .header_list("transfer-encoding")
        .iter()
        .any(|t| t.eq_ignore_ascii_case("chunked"))
    {
        return Framing::Chunked;
    }
    match head
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Some(n) => Framing::Length(n),
        None => Framing::None,
    }
}

/// Body framing of a response (RFC 9112 §6.3).
fn response_framing(head: &ResponseHead<'_>, head_request: bool) -> Framing {
    // 1xx, 204, 304 and responses to HEAD have no body (RFC 9112 §6.3 items 1-2).
    if head_request || head.status < 200 || head.status == 204 || head.status == 304 {
        return Framing::None;
    }
    if head
        .header_list("transfer-encoding")
        .iter()
        .any(|t| t.eq_ignore_ascii_case("chunked"))
    {
        return Framing::Chunked;
    }
    match head
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    }
}

/// Complete a message with its body: de-chunked, decompressed.
fn finish_body(mut msg: HttpMessage, reader: BodyReader) -> HttpMessage {
    msg.body_wire_len = reader.wire_len;
    msg.chunked = reader.framing() == Framing::Chunked;
    if reader.overflow {
        msg.anomalies.push(Anomaly::new(
            "http_body_too_large",
            format!("body over {} bytes: not decoded", body::MAX_BODY),
        ));
    }
    let encoding = msg.header("content-encoding").map(str::to_string);
    let coding = Coding::from_header(encoding.as_deref());
    msg.content_encoding = encoding;
    msg.body = match body::decode_content(coding, &reader.body) {
        Ok(b) => b,
        Err(e) => {
            msg.anomalies
                .push(Anomaly::new("http_body_error", format!("HTTP body: {e}")));
            reader.body
        }
    };
    msg
}

/// Emit an HTTP message, with the Engine.IO packets of a long-polling body.
fn emit_http(
    msg: &HttpMessage,
    polling: &mut [SioDir; 2],
    is_polling: bool,
    dir: usize,
    emit: &mut dyn FnMut(&Event<'_>),
) {
    if is_polling
        && !msg.body.is_empty()
        && !(msg.is_request && msg.method.eq_ignore_ascii_case("GET"))
    {
        // A POST answer is `ok`, not a payload.
        if !msg.is_request && msg.body == b"ok" {
            emit(&Event::Http(msg, &[]));
            return;
        }
        let Some(sio) = polling.get_mut(dir) else {
            return;
        };
        let mut anomalies = Vec::new();
        let packets = sio.polling_body(&msg.body, &mut anomalies);
        if anomalies.is_empty() {
            emit(&Event::Http(msg, &packets));
        } else {
            let mut with = msg.clone();
            with.anomalies.extend(anomalies);
            emit(&Event::Http(&with, &packets));
        }
        return;
    }
    emit(&Event::Http(msg, &[]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ws::{Opcode, encode_frame};
    use std::io::Write as _;

    /// Feed (direction, bytes) in order; collect a one-line description of each event.
    fn run(setup: Setup, steps: &[(usize, &[u8])]) -> (AppState, Vec<String>) {
        let mut app = AppState::new(setup);
        let mut out = Vec::new();
        for (i, (dir, bytes)) in steps.iter().enumerate() {
            app.deliver(*dir, Delivery::Data(bytes), i as u64 + 1, &mut |ev| {
                out.push(describe(ev))
            });
        }
        (app, out)
    }

    fn describe(ev: &Event<'_>) -> String {
        let codes = |a: &[Anomaly]| a.iter().map(|a| a.code).collect::<Vec<_>>().join(",");
        match ev {
            Event::Http(m, packets) => {
                let eio: Vec<String> = packets
                    .iter()
                    .map(|p| {
                        p.sio
                            .as_ref()
                            .map_or_else(|| p.type_name().to_string(), |s| s.summary())
                    })
                    .collect();
                format!(
                    "http {} [{}] {}",
                    m.start_line,
                    eio.join(" | "),
                    codes(&m.anomalies)
                )
            }
            Event::Ws(f) => {
                let eio: Vec<String> = f
                    .message
                    .iter()
                    .flat_map(|m| m.engineio.iter())
                    .map(|p| {
                        p.sio
                            .as_ref()
                            .map_or_else(|| p.type_name().to_string(), |s| s.summary())
                    })
                    .collect();
                format!(
                    "ws {:?} {:?} [{}] {}",
                    f.sender,
                    f.header.opcode,
                    eio.join(" | "),
                    codes(&f.anomalies)
                )
            }
            other => format!("{other:?}"),
        }
    }

    const REQUEST: &[u8] = b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn response(accept: &str) -> Vec<u8> {
        format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").into_bytes()
    }

    #[test]
    fn upgrade_is_verified_then_frames_carry_socketio() {
        let mut frames = response("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        // The server's first frame right behind the 101, in the same segment.
        encode_frame(&mut frames, true, Opcode::Text, None, b"40{\"sid\":\"a\"}");
        let mut c = Vec::new();
        encode_frame(
            &mut c,
            true,
            Opcode::Text,
            Some([9, 9, 9, 9]),
            b"42[\"send_message\",{\"room\":\"1\"}]",
        );
        let (app, out) = run(
            Setup {
                ws_port_side: None,
                syn_from: Some(0),
            },
            &[(0, REQUEST), (1, &frames), (0, &c)],
        );
        assert_eq!(app.proto, Proto::WebSocket);
        assert_eq!(out.len(), 4, "{out:#?}");
        assert!(out[0].starts_with("http GET /socket.io/?EIO=4&transport=websocket HTTP/1.1"));
        assert_eq!(out[1], "http HTTP/1.1 101 Switching Protocols [] ");
        assert_eq!(out[2], "ws Server Text [CONNECT nsp=/ {\"sid\":\"a\"}] ");
        assert_eq!(
            out[3],
            "ws Client Text [EVENT send_message nsp=/ {\"room\":\"1\"}] "
        );
    }

    #[test]
    fn a_wrong_accept_is_flagged() {
        let (_, out) = run(
            Setup {
                ws_port_side: None,
                syn_from: Some(0),
            },
            &[(0, REQUEST), (1, &response("AAAA"))],
        );
        assert!(out[1].ends_with("bad_accept"), "{out:?}");
    }

    #[test]
    fn polling_bodies_chunked_and_gzip_are_split_into_packets() {
        let req = b"POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        let body = b"42[\"join_room\",\"1\"]\x1e451-[\"up\",{\"_placeholder\":true,\"num\":0}]\x1ebAQIDBA==";
        let mut chunked = format!("{:x}\r\n", 10).into_bytes();
        chunked.extend_from_slice(&body[..10]);
        chunked.extend_from_slice(format!("\r\n{:x}\r\n", body.len() - 10).as_bytes());
        chunked.extend_from_slice(&body[10..]);
        chunked.extend_from_slice(b"\r\n0\r\n\r\n");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"ok").unwrap();
        let gz = gz.finish().unwrap();
        let mut resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            gz.len()
        )
        .into_bytes();
        resp.extend_from_slice(&gz);
        let (_, out) = run(
            Setup {
                ws_port_side: None,
                syn_from: Some(0),
            },
            &[(0, req), (0, &chunked[..7]), (0, &chunked[7..]), (1, &resp)],
        );
        assert_eq!(out.len(), 2, "{out:#?}");
        assert_eq!(
            out[0],
            "http POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1 [EVENT join_room nsp=/ \"1\" | BINARY_EVENT up nsp=/ <binary #0> | attachment 1 of 1 (4 B), completes BINARY_EVENT up nsp=/ <binary 4 B>] "
        );
        assert_eq!(out[1], "http HTTP/1.1 200 OK [] ");
    }

    #[test]
    fn a_ws_port_without_handshake_decodes_frames_and_guesses_engineio() {
        let mut c = Vec::new();
        encode_frame(&mut c, true, Opcode::Text, Some([1, 2, 3, 4]), b"42[\"x\"]");
        encode_frame(&mut c, true, Opcode::Text, Some([1, 2, 3, 4]), b"hello");
        let (_, out) = run(
            Setup {
                ws_port_side: Some(1),
                syn_from: None,
            },
            &[(0, &c)],
        );
        assert_eq!(
            out,
            ["ws Client Text [EVENT x nsp=/] ", "ws Client Text [] "]
        );
    }

    #[test]
    fn the_capture_ending_inside_a_head_or_body_is_reported() {
        let req = b"POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345";
        let (mut app, _) = run(
            Setup {
                ws_port_side: None,
                syn_from: Some(0),
            },
            &[(0, req), (1, b"HTTP/1.1 2")],
        );
        let mut out = Vec::new();
        app.finish(&mut |ev| out.push(describe(ev)));
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(
            out[0].contains("inside the body of `POST /x HTTP/1.1` (5 body bytes seen)"),
            "{out:?}"
        );
        assert!(
            out[1].contains("inside an HTTP head (10 bytes seen)"),
            "{out:?}"
        );
    }
}
