//! HTTP/1.1 Upgrade request/response heads, Sec-WebSocket-Accept, subprotocols and extensions.
//!
//! [`RequestHead::parse`] and [`ResponseHead::parse`] read an HTTP/1.1 head (RFC 9112) in place,
//! with exact byte offsets on errors; the WebSocket opening handshake (RFC 6455 §4) is built on
//! top: [`RequestHead::validate_websocket_upgrade`], [`ResponseHead::validate_websocket_upgrade`],
//! [`accept_key`], [`parse_extensions`] and the permessage-deflate negotiation (RFC 7692 §7.1).

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use base64::Engine as _;
use sha1::{Digest as _, Sha1};

use crate::wire::deflate::{DeflateError, Deflater, Inflater, MAX_WINDOW_BITS, MIN_WINDOW_BITS};
use crate::wire::ws::Role;

/// The GUID appended to the key before hashing (RFC 6455 §1.3).
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The only protocol version this implements (RFC 6455 §4.1: `Sec-WebSocket-Version: 13`).
pub const WEBSOCKET_VERSION: &str = "13";
/// Largest head the parsers accept before failing (a bound on buffering untrusted bytes).
pub const MAX_HEAD_LEN: usize = 16 * 1024;
/// Most header fields the parsers accept.
pub const MAX_HEADERS: usize = 100;

/// Why bytes are not an HTTP/1.1 head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpErrorKind {
    /// RFC 9112 §3: method = token.
    #[error("invalid method")]
    Method,
    /// RFC 9112 §3.2: the request target has no whitespace or control characters.
    #[error("invalid request target")]
    Target,
    /// RFC 9112 §2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT, major version 1 here.
    #[error("invalid HTTP version (expected HTTP/1.x)")]
    Version,
    /// RFC 9112 §4: status-code = 3DIGIT.
    #[error("invalid status code (expected 3 digits)")]
    Status,
    /// RFC 9112 §4: reason-phrase = *( HTAB / SP / VCHAR / obs-text ), UTF-8 here.
    #[error("invalid reason phrase")]
    Reason,
    /// RFC 9112 §5.1: field-name = token, directly followed by ":".
    #[error("invalid header field name")]
    HeaderName,
    /// RFC 9112 §5.1: a header line needs a ":".
    #[error("header line without ':'")]
    MissingColon,
    /// RFC 9110 §5.5: field values hold no control characters but HTAB.
    #[error("invalid character in header field value")]
    HeaderValue,
    /// RFC 9112 §5.2: obsolete line folding is rejected.
    #[error("obsolete line folding (a header line starting with whitespace)")]
    ObsFold,
    /// RFC 9112 §2.2: a bare CR.
    #[error("CR not followed by LF")]
    BareCr,
    /// The head did not end within [`MAX_HEAD_LEN`] bytes.
    #[error("head longer than {0} bytes")]
    TooLarge(usize),
    /// More than [`MAX_HEADERS`] header fields.
    #[error("more than {0} header fields")]
    TooManyHeaders(usize),
}

/// Bytes that are not an HTTP/1.1 head, with the offset of the offending byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {kind}")]
pub struct HttpError {
    /// What is wrong.
    pub kind: HttpErrorKind,
    /// Offset from the start of the head.
    pub offset: usize,
}

fn err<T>(kind: HttpErrorKind, offset: usize) -> Result<T, HttpError> {
    Err(HttpError { kind, offset })
}

/// One header field, as in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The field name, in its original case.
    pub name: &'a str,
    /// The field value without surrounding whitespace (may hold obs-text bytes).
    pub value: &'a [u8],
}

impl<'a> Header<'a> {
    /// The value as text, `None` when it is not UTF-8.
    pub fn value_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.value).ok()
    }
}

/// tchar (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `s` is a non-empty token (RFC 9110 §5.6.2).
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Reads CRLF (or bare LF, RFC 9112 §2.2) terminated lines with their offsets.
struct Lines<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    /// The next complete line without its terminator, and its offset; `None` if incomplete.
    fn next_line(&mut self) -> Result<Option<(&'a [u8], usize)>, HttpError> {
        let start = self.pos;
        let rest = self.buf.get(start..).unwrap_or_default();
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            // A bare CR can be reported before the line is complete.
            if let Some(cr) = rest.iter().position(|&b| b == b'\r') {
                if rest.get(cr + 1).is_some() {
                    return err(HttpErrorKind::BareCr, start + cr);
                }
            }
            return Ok(None);
        };
        let mut line = rest.get(..nl).unwrap_or_default();
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        if let Some(cr) = line.iter().position(|&b| b == b'\r') {
            return err(HttpErrorKind::BareCr, start + cr); // RFC 9112 §2.2
        }
        self.pos = start + nl + 1;
        Ok(Some((line, start)))
    }
}

/// Splits `line` at the first space: (before, after, offset of after).
fn split_sp(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let sp = line.iter().position(|&b| b == b' ')?;
    Some((line.get(..sp)?, line.get(sp + 1..)?))
}

/// Parses "HTTP/1.x" and returns x.
fn parse_version(v: &[u8], offset: usize) -> Result<u8, HttpError> {
    match v {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {
            Ok(minor - b'0')
        }
        _ => err(HttpErrorKind::Version, offset), // RFC 9112 §2.3
    }
}

/// Field-value bytes: HTAB, SP, VCHAR, obs-text (RFC 9110 §5.5).
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

fn trim_ows(mut v: &[u8]) -> (&[u8], usize) {
    let mut skipped = 0;
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
        skipped += 1;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    (v, skipped)
}

/// Parses header lines until the empty line; `Ok(None)` if the head is incomplete.
fn parse_headers<'a>(lines: &mut Lines<'a>) -> Result<Option<Vec<Header<'a>>>, HttpError> {
    let mut headers = Vec::new();
    loop {
        let Some((line, at)) = lines.next_line()? else {
            return Ok(None);
        };
        if line.is_empty() {
            return Ok(Some(headers));
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            return err(HttpErrorKind::ObsFold, at); // RFC 9112 §5.2
        }
        if headers.len() == MAX_HEADERS {
            return err(HttpErrorKind::TooManyHeaders(MAX_HEADERS), at);
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            if let Some(bad) = line.iter().position(|&b| !is_tchar(b)) {
                return err(HttpErrorKind::HeaderName, at + bad);
            }
            return err(HttpErrorKind::MissingColon, at + line.len());
        };
        let name = line.get(..colon).unwrap_or_default();
        if name.is_empty() {
            return err(HttpErrorKind::HeaderName, at);
        }
        // RFC 9112 §5.1: no whitespace between name and colon; names are tokens.
        if let Some(bad) = name.iter().position(|&b| !is_tchar(b)) {
            return err(HttpErrorKind::HeaderName, at + bad);
        }
        let raw = line.get(colon + 1..).unwrap_or_default();
        if let Some(bad) = raw.iter().position(|&b| !is_field_byte(b)) {
            return err(HttpErrorKind::HeaderValue, at + colon + 1 + bad); // RFC 9110 §5.5
        }
        let (value, _) = trim_ows(raw);
        let name = std::str::from_utf8(name).map_err(|_| HttpError {
            kind: HttpErrorKind::HeaderName,
            offset: at,
        })?;
        headers.push(Header { name, value });
    }
}

/// Fails early on an incomplete request line (from `start`) whose method or target is already
/// invalid, so that bytes that are not HTTP are recognised without waiting for a line end.
fn check_partial_request_line(buf: &[u8], start: usize) -> Result<(), HttpError> {
    let line = buf.get(start..).unwrap_or_default();
    let method_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let method = line.get(..method_end).unwrap_or_default();
    if let Some(bad) = method.iter().position(|&b| !is_tchar(b) && b != b'\r') {
        return err(HttpErrorKind::Method, start + bad); // RFC 9112 §3.1
    }
    if let Some(target) = line.get(method_end + 1..) {
        let target_end = target
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(target.len());
        let target = target.get(..target_end).unwrap_or_default();
        if let Some(bad) = target
            .iter()
            .position(|&b| !(0x21..=0x7e).contains(&b) && b != b'\r')
        {
            return err(HttpErrorKind::Target, start + method_end + 1 + bad); // RFC 9112 §3.2
        }
    }
    Ok(())
}

/// `Ok(None)` for an incomplete head, unless it is already too long.
fn incomplete<T>(buf: &[u8]) -> Result<Option<T>, HttpError> {
    if buf.len() > MAX_HEAD_LEN {
        return err(HttpErrorKind::TooLarge(MAX_HEAD_LEN), MAX_HEAD_LEN);
    }
    Ok(None)
}

/// All values of the header fields named `name`, split as a comma-separated list
/// (RFC 9110 §5.3, §5.6.1), trimmed, empty elements dropped.
fn list_values<'a>(headers: &[Header<'a>], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| h.value_str())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim_matches([' ', '\t']))
        .filter(|t| !t.is_empty())
        .collect()
}

fn first_value<'a>(headers: &[Header<'a>], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| h.value_str())
}

fn has_token(headers: &[Header<'_>], name: &str, token: &str) -> bool {
    list_values(headers, name)
        .iter()
        .any(|t| t.eq_ignore_ascii_case(token))
}

fn all_extensions<'a>(headers: &[Header<'a>]) -> Result<Vec<Extension<'a>>, ExtensionError> {
    let mut out = Vec::new();
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
    {
        let Some(v) = h.value_str() else {
            return Err(ExtensionError {
                kind: ExtensionErrorKind::NotUtf8,
                offset: 0,
            });
        };
        out.extend(parse_extensions(v)?);
    }
    Ok(out)
}

/// A request head (RFC 9112 §3), borrowed from the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The request target, e.g. `/socket.io/?EIO=4&transport=websocket`.
    pub path: &'a str,
    /// The minor version: 1 for HTTP/1.1.
    pub version: u8,
    /// The header fields, in order.
    pub headers: Vec<Header<'a>>,
}

impl<'a> RequestHead<'a> {
    /// Parses a request head at the start of `buf`: `Ok(None)` until the empty line arrives,
    /// else the head and its length (the body or the next protocol starts there).
    pub fn parse(buf: &'a [u8]) -> Result<Option<(RequestHead<'a>, usize)>, HttpError> {
        let mut lines = Lines { buf, pos: 0 };
        // RFC 9112 §2.2: ignore empty lines before the request line.
        let (line, at) = loop {
            match lines.next_line()? {
                None => {
                    check_partial_request_line(buf, lines.pos)?;
                    return incomplete(buf);
                }
                Some(([], _)) => continue,
                Some(found) => break found,
            }
        };
        let Some((method, rest)) = split_sp(line) else {
            let bad = line
                .iter()
                .position(|&b| !is_tchar(b))
                .unwrap_or(line.len());
            return err(HttpErrorKind::Method, at + bad);
        };
        if let Some(bad) = method.iter().position(|&b| !is_tchar(b)) {
            return err(HttpErrorKind::Method, at + bad); // RFC 9112 §3.1
        }
        if method.is_empty() {
            return err(HttpErrorKind::Method, at);
        }
        let target_at = at + method.len() + 1;
        let Some((target, version)) = split_sp(rest) else {
            return err(HttpErrorKind::Target, target_at + rest.len());
        };
        if target.is_empty() {
            return err(HttpErrorKind::Target, target_at);
        }
        if let Some(bad) = target.iter().position(|&b| !(0x21..=0x7e).contains(&b)) {
            return err(HttpErrorKind::Target, target_at + bad); // RFC 9112 §3.2
        }
        let version = parse_version(version, target_at + target.len() + 1)?;
        let Some(headers) = parse_headers(&mut lines)? else {
            return incomplete(buf);
        };
        if lines.pos > MAX_HEAD_LEN {
            return err(HttpErrorKind::TooLarge(MAX_HEAD_LEN), MAX_HEAD_LEN);
        }
        // Method and target are ASCII (checked above).
        let method = std::str::from_utf8(method).unwrap_or_default();
        let path = std::str::from_utf8(target).unwrap_or_default();
        Ok(Some((
            RequestHead {
                method,
                path,
                version,
                headers,
            },
            lines.pos,
        )))
    }

    /// The first value of header `name` (case-insensitive), if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        first_value(&self.headers, name)
    }

    /// Every element of the comma-separated list headers named `name`.
    pub fn header_list(&self, name: &str) -> Vec<&'a str> {
        list_values(&self.headers, name)
    }

    /// `HTTP/1.x`.
    pub fn version_str(&self) -> String {
        format!("HTTP/1.{}", self.version)
    }

    /// `Sec-WebSocket-Key`, trimmed.
    pub fn websocket_key(&self) -> Option<&'a str> {
        self.header("sec-websocket-key")
    }

    /// `Sec-WebSocket-Version`.
    pub fn websocket_version(&self) -> Option<&'a str> {
        self.header("sec-websocket-version")
    }

    /// The subprotocols the client offers (`Sec-WebSocket-Protocol`), in order of preference.
    pub fn protocols(&self) -> Vec<&'a str> {
        self.header_list("sec-websocket-protocol")
    }

    /// The extensions the client offers (`Sec-WebSocket-Extensions`), in order of preference.
    pub fn extensions(&self) -> Result<Vec<Extension<'a>>, ExtensionError> {
        all_extensions(&self.headers)
    }

    /// Checks the opening handshake rules of RFC 6455 §4.2.1; the error says which one failed
    /// and which status to answer with.
    pub fn validate_websocket_upgrade(&self) -> Result<(), UpgradeError> {
        if self.method != "GET" {
            return Err(UpgradeError::Method(self.method.to_owned())); // RFC 6455 §4.2.1 item 1
        }
        if self.version < 1 {
            return Err(UpgradeError::HttpVersion); // RFC 6455 §4.2.1 item 1: HTTP/1.1 or higher
        }
        if self.header("host").is_none() {
            return Err(UpgradeError::MissingHost); // RFC 6455 §4.2.1 item 2
        }
        if !has_token(&self.headers, "upgrade", "websocket") {
            return Err(UpgradeError::NoUpgradeHeader); // RFC 6455 §4.2.1 item 3
        }
        if !has_token(&self.headers, "connection", "upgrade") {
            return Err(UpgradeError::NoConnectionUpgrade); // RFC 6455 §4.2.1 item 4
        }
        let key = self.websocket_key().ok_or(UpgradeError::MissingKey)?;
        // RFC 6455 §4.2.1 item 5: base64 of 16 bytes.
        match base64::engine::general_purpose::STANDARD.decode(key) {
            Ok(raw) if raw.len() == 16 => {}
            _ => return Err(UpgradeError::InvalidKey(key.to_owned())),
        }
        match self.websocket_version() {
            Some(WEBSOCKET_VERSION) => Ok(()),
            // RFC 6455 §4.2.1 item 6, §4.4: answer 426 with the supported version.
            other => Err(UpgradeError::UnsupportedVersion(other.map(str::to_owned))),
        }
    }

    /// Whether this is a valid WebSocket opening handshake (RFC 6455 §4.2.1).
    pub fn is_websocket_upgrade(&self) -> bool {
        self.validate_websocket_upgrade().is_ok()
    }
}

/// A response head (RFC 9112 §4), borrowed from the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    /// The minor version: 1 for HTTP/1.1.
    pub version: u8,
    /// The status code, e.g. 101.
    pub status: u16,
    /// The reason phrase, e.g. `Switching Protocols` (may be empty).
    pub reason: &'a str,
    /// The header fields, in order.
    pub headers: Vec<Header<'a>>,
}

impl<'a> ResponseHead<'a> {
    /// Parses a response head at the start of `buf`: `Ok(None)` until the empty line arrives,
    /// else the head and its length (the WebSocket frames of a 101 start there).
    pub fn parse(buf: &'a [u8]) -> Result<Option<(ResponseHead<'a>, usize)>, HttpError> {
        let mut lines = Lines { buf, pos: 0 };
        let Some((line, at)) = lines.next_line()? else {
            // Bytes that cannot start a status line fail at once (e.g. not HTTP at all).
            let partial = buf.get(..buf.len().min(8)).unwrap_or_default();
            if !b"HTTP/1.".starts_with(partial.get(..partial.len().min(7)).unwrap_or_default())
                || partial.get(7).is_some_and(|b| !b.is_ascii_digit())
            {
                return err(HttpErrorKind::Version, 0);
            }
            return incomplete(buf);
        };
        let (version, rest) = split_sp(line).unwrap_or((line, b""));
        let version = parse_version(version, at)?;
        let status_at = at + 9;
        let (code, reason) = match split_sp(rest) {
            Some((code, reason)) => (code, reason),
            None => (rest, &b""[..]), // "HTTP/1.1 101" without a reason
        };
        let status = match code {
            [a, b, c] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
            }
            _ => return err(HttpErrorKind::Status, status_at), // RFC 9112 §4
        };
        let reason_at = status_at + 4;
        if let Some(bad) = reason.iter().position(|&b| !is_field_byte(b)) {
            return err(HttpErrorKind::Reason, reason_at + bad);
        }
        let reason = std::str::from_utf8(reason).map_err(|e| HttpError {
            kind: HttpErrorKind::Reason,
            offset: reason_at + e.valid_up_to(),
        })?;
        let Some(headers) = parse_headers(&mut lines)? else {
            return incomplete(buf);
        };
        if lines.pos > MAX_HEAD_LEN {
            return err(HttpErrorKind::TooLarge(MAX_HEAD_LEN), MAX_HEAD_LEN);
        }
        Ok(Some((
            ResponseHead {
                version,
                status,
                reason,
                headers,
            },
            lines.pos,
        )))
    }

    /// The first value of header `name` (case-insensitive), if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        first_value(&self.headers, name)
    }

    /// Every element of the comma-separated list headers named `name`.
    pub fn header_list(&self, name: &str) -> Vec<&'a str> {
        list_values(&self.headers, name)
    }

    /// `HTTP/1.x`.
    pub fn version_str(&self) -> String {
        format!("HTTP/1.{}", self.version)
    }

    /// `Sec-WebSocket-Accept`.
    pub fn websocket_accept(&self) -> Option<&'a str> {
        self.header("sec-websocket-accept")
    }

    /// The subprotocol the server selected (`Sec-WebSocket-Protocol`), if any.
    pub fn protocol(&self) -> Option<&'a str> {
        self.header("sec-websocket-protocol")
    }

    /// Every element of `Sec-WebSocket-Protocol` (a valid response has at most one).
    pub fn protocols(&self) -> Vec<&'a str> {
        self.header_list("sec-websocket-protocol")
    }

    /// The extensions the server accepted (`Sec-WebSocket-Extensions`).
    pub fn extensions(&self) -> Result<Vec<Extension<'a>>, ExtensionError> {
        all_extensions(&self.headers)
    }

    /// Whether this is a 101 with `Upgrade: websocket` and `Connection: upgrade`.
    pub fn is_websocket_upgrade(&self) -> bool {
        self.status == 101
            && has_token(&self.headers, "upgrade", "websocket")
            && has_token(&self.headers, "connection", "upgrade")
    }

    /// The client's checks of RFC 6455 §4.1 (items 1-6 of the server response) for a request
    /// sent with `key` offering `offered_protocols` (the extensions are checked by the
    /// negotiation, e.g. [`PerMessageDeflateParams::accept_response`]).
    pub fn validate_websocket_upgrade(
        &self,
        key: &str,
        offered_protocols: &[&str],
    ) -> Result<(), UpgradeError> {
        if self.status != 101 {
            return Err(UpgradeError::Status(self.status)); // RFC 6455 §4.1 item 1
        }
        if !has_token(&self.headers, "upgrade", "websocket") {
            return Err(UpgradeError::NoUpgradeHeader); // RFC 6455 §4.1 item 2
        }
        if !has_token(&self.headers, "connection", "upgrade") {
            return Err(UpgradeError::NoConnectionUpgrade); // RFC 6455 §4.1 item 3
        }
        match self.websocket_accept() {
            Some(accept) if verify_accept(key, accept) => {}
            other => return Err(UpgradeError::AcceptMismatch(other.map(str::to_owned))), // item 4
        }
        let protocols = self.protocols();
        match protocols.as_slice() {
            [] => Ok(()),
            // RFC 6455 §4.1 item 6: one of the offered subprotocols, or none.
            [one] if offered_protocols.contains(one) => Ok(()),
            _ => Err(UpgradeError::ProtocolNotOffered(protocols.join(", "))),
        }
    }
}

/// A failed opening handshake check (RFC 6455 §4.1 for clients, §4.2.1 for servers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    /// The request method is not GET.
    #[error("method {0} instead of GET")]
    Method(String),
    /// The request is older than HTTP/1.1.
    #[error("HTTP version older than 1.1")]
    HttpVersion,
    /// No Host header.
    #[error("no Host header")]
    MissingHost,
    /// No `Upgrade: websocket`.
    #[error("no 'Upgrade: websocket' header")]
    NoUpgradeHeader,
    /// No `Connection: Upgrade`.
    #[error("no 'Connection: Upgrade' header")]
    NoConnectionUpgrade,
    /// No Sec-WebSocket-Key.
    #[error("no Sec-WebSocket-Key header")]
    MissingKey,
    /// A key that is not base64 of 16 bytes.
    #[error("Sec-WebSocket-Key {0:?} is not base64 of 16 bytes")]
    InvalidKey(String),
    /// A Sec-WebSocket-Version other than 13.
    #[error("unsupported Sec-WebSocket-Version {} (this speaks 13)", .0.as_deref().unwrap_or("(none)"))]
    UnsupportedVersion(Option<String>),
    /// A response status other than 101.
    #[error("status {0} instead of 101 Switching Protocols")]
    Status(u16),
    /// A missing or wrong Sec-WebSocket-Accept.
    #[error("Sec-WebSocket-Accept {} does not match the key", .0.as_deref().unwrap_or("(none)"))]
    AcceptMismatch(Option<String>),
    /// A subprotocol the client did not offer, or several.
    #[error("server selected subprotocol {0:?}, which was not offered")]
    ProtocolNotOffered(String),
}

impl UpgradeError {
    /// The status a server answers a failed request with: 426 with `Sec-WebSocket-Version: 13`
    /// for a version mismatch (RFC 6455 §4.4), 405 for a wrong method, else 400.
    pub fn status(&self) -> u16 {
        match self {
            UpgradeError::UnsupportedVersion(_) => 426,
            UpgradeError::Method(_) => 405,
            _ => 400,
        }
    }
}

/// Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)) (RFC 6455 §4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Whether `accept` is the right Sec-WebSocket-Accept for `key` (RFC 6455 §4.1 item 4).
pub fn verify_accept(key: &str, accept: &str) -> bool {
    accept_key(key) == accept.trim()
}

/// A Sec-WebSocket-Key from 16 random bytes supplied by the caller (RFC 6455 §4.1).
pub fn websocket_key(random: [u8; 16]) -> String {
    base64::engine::general_purpose::STANDARD.encode(random)
}

/// The opening handshake request (RFC 6455 §4.1) for `ws://host/path`, with optional
/// subprotocols and a Sec-WebSocket-Extensions value.
pub fn client_request(
    host: &str,
    path: &str,
    key: &str,
    protocols: &[&str],
    extensions: Option<&str>,
) -> String {
    client_request_with_headers(host, path, key, protocols, extensions, &[])
}

/// Like [`client_request`] with extra header fields (e.g. Origin, User-Agent).
pub fn client_request_with_headers(
    host: &str,
    path: &str,
    key: &str,
    protocols: &[&str],
    extensions: Option<&str>,
    extra: &[(&str, &str)],
) -> String {
    let path = if path.is_empty() { "/" } else { path };
    let mut s = String::with_capacity(256);
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {WEBSOCKET_VERSION}\r\n"
    );
    if !protocols.is_empty() {
        let _ = write!(s, "Sec-WebSocket-Protocol: {}\r\n", protocols.join(", "));
    }
    if let Some(ext) = extensions {
        let _ = write!(s, "Sec-WebSocket-Extensions: {ext}\r\n");
    }
    for (name, value) in extra {
        let _ = write!(s, "{name}: {value}\r\n");
    }
    s.push_str("\r\n");
    s
}

/// The server's `101 Switching Protocols` (RFC 6455 §4.2.2) with the accept value, and the
/// selected subprotocol and extensions if any.
pub fn server_response_101(
    accept: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
) -> String {
    let mut s = String::with_capacity(192);
    let _ = write!(
        s,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(p) = protocol {
        let _ = write!(s, "Sec-WebSocket-Protocol: {p}\r\n");
    }
    if let Some(e) = extensions {
        let _ = write!(s, "Sec-WebSocket-Extensions: {e}\r\n");
    }
    s.push_str("\r\n");
    s
}

/// A plain-text error response for a refused handshake (400/405/426, RFC 6455 §4.2.2, §4.4).
pub fn server_response_refusal(error: &UpgradeError) -> String {
    let status = error.status();
    let reason = match status {
        426 => "Upgrade Required",
        405 => "Method Not Allowed",
        _ => "Bad Request",
    };
    let body = format!("{error}\n");
    let mut s = format!("HTTP/1.1 {status} {reason}\r\n");
    if status == 426 {
        let _ = write!(s, "Sec-WebSocket-Version: {WEBSOCKET_VERSION}\r\n");
    }
    if status == 405 {
        s.push_str("Allow: GET\r\n");
    }
    let _ = write!(
        s,
        "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s
}

// ---- Sec-WebSocket-Extensions (RFC 6455 §9.1) ----------------------------------------------

/// One extension of a Sec-WebSocket-Extensions list, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension<'a> {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: &'a str,
    /// Parameters in order: name and value (unquoted), value `None` for a bare parameter.
    pub params: Vec<(&'a str, Option<Cow<'a, str>>)>,
}

impl fmt::Display for Extension<'_> {
    /// The header value form, e.g. `permessage-deflate; client_max_window_bits=10`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)?;
        for (name, value) in &self.params {
            match value {
                Some(v) if is_token(v) => write!(f, "; {name}={v}")?,
                Some(v) => write!(
                    f,
                    "; {name}=\"{}\"",
                    v.replace('\\', "\\\\").replace('"', "\\\"")
                )?,
                None => write!(f, "; {name}")?,
            }
        }
        Ok(())
    }
}

/// Why a Sec-WebSocket-Extensions value does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionErrorKind {
    /// An extension or parameter name is missing or not a token.
    #[error("expected a token")]
    ExpectedToken,
    /// A quoted string without its closing quote.
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    /// RFC 6455 §9.1: a quoted value must be a token once unquoted.
    #[error("quoted parameter value is not a token")]
    QuotedNotToken,
    /// Something other than `;`, `,` or the end after an element.
    #[error("expected ';' or ','")]
    ExpectedSeparator,
    /// The header value is not UTF-8.
    #[error("header value is not UTF-8")]
    NotUtf8,
}

/// A Sec-WebSocket-Extensions value that does not parse, with the offset in the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset} of Sec-WebSocket-Extensions: {kind}")]
pub struct ExtensionError {
    /// What is wrong.
    pub kind: ExtensionErrorKind,
    /// Offset in the header value.
    pub offset: usize,
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }
    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }
    fn token(&mut self) -> Result<&'a str, ExtensionError> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        match self.s.get(start..self.pos) {
            Some(t) if !t.is_empty() => Ok(t),
            _ => Err(ExtensionError {
                kind: ExtensionErrorKind::ExpectedToken,
                offset: start,
            }),
        }
    }
    /// A token or quoted-string value (RFC 9110 §5.6.4), unquoted.
    fn value(&mut self) -> Result<Cow<'a, str>, ExtensionError> {
        if self.peek() != Some(b'"') {
            return self.token().map(Cow::Borrowed);
        }
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(ExtensionError {
                        kind: ExtensionErrorKind::UnterminatedQuote,
                        offset: open,
                    });
                }
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let Some(c) = self.s.get(self.pos..).and_then(|r| r.chars().next()) else {
                        continue;
                    };
                    out.push(c);
                    self.pos += c.len_utf8();
                }
                Some(_) => {
                    let Some(c) = self.s.get(self.pos..).and_then(|r| r.chars().next()) else {
                        break;
                    };
                    out.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
        if !is_token(&out) {
            // RFC 6455 §9.1: the unquoted value MUST conform to the token ABNF.
            return Err(ExtensionError {
                kind: ExtensionErrorKind::QuotedNotToken,
                offset: open,
            });
        }
        Ok(Cow::Owned(out))
    }
}

/// Parses a Sec-WebSocket-Extensions value (RFC 6455 §9.1):
/// `1#( token *( ";" token [ "=" ( token / quoted-string ) ] ) )`.
pub fn parse_extensions(value: &str) -> Result<Vec<Extension<'_>>, ExtensionError> {
    let mut c = Cursor { s: value, pos: 0 };
    let mut out = Vec::new();
    loop {
        // RFC 9110 §5.6.1: empty list elements are allowed and ignored.
        c.skip_ows();
        while c.peek() == Some(b',') {
            c.pos += 1;
            c.skip_ows();
        }
        if c.peek().is_none() {
            return Ok(out);
        }
        let name = c.token()?;
        let mut params = Vec::new();
        loop {
            c.skip_ows();
            match c.peek() {
                Some(b';') => {
                    c.pos += 1;
                    c.skip_ows();
                    let pname = c.token()?;
                    c.skip_ows();
                    let pvalue = if c.peek() == Some(b'=') {
                        c.pos += 1;
                        c.skip_ows();
                        Some(c.value()?)
                    } else {
                        None
                    };
                    params.push((pname, pvalue));
                }
                Some(b',') | None => break,
                Some(_) => {
                    return Err(ExtensionError {
                        kind: ExtensionErrorKind::ExpectedSeparator,
                        offset: c.pos,
                    });
                }
            }
        }
        out.push(Extension { name, params });
    }
}

// ---- permessage-deflate negotiation (RFC 7692 §7.1) -----------------------------------------

/// The extension token of permessage-deflate (RFC 7692 §7).
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// Parameters of a permessage-deflate offer or response (RFC 7692 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PerMessageDeflateParams {
    /// The server does not keep its compression window between messages (§7.1.1.1).
    pub server_no_context_takeover: bool,
    /// The client does not keep its compression window between messages (§7.1.1.2).
    pub client_no_context_takeover: bool,
    /// Limit on the server's LZ77 window, 8..=15 (§7.1.2.1).
    pub server_max_window_bits: Option<u8>,
    /// Limit on the client's window: `Some(None)` is the bare parameter of an offer ("I can
    /// limit my window"), `Some(Some(bits))` a value (§7.1.2.2).
    pub client_max_window_bits: Option<Option<u8>>,
}

/// Why permessage-deflate parameters are invalid (the offer is declined, or a client fails the
/// connection on such a response).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PmdError {
    /// Not a permessage-deflate extension.
    #[error("extension {0:?} is not permessage-deflate")]
    NotPermessageDeflate(String),
    /// An unknown parameter (RFC 7692 §7.1: decline).
    #[error("unknown permessage-deflate parameter {0:?}")]
    UnknownParam(String),
    /// A parameter given twice (RFC 7692 §7.1).
    #[error("permessage-deflate parameter {0:?} given twice")]
    DuplicateParam(String),
    /// A parameter value that is not allowed (RFC 7692 §7.1.1, §7.1.2).
    #[error("invalid value for permessage-deflate parameter {0:?}")]
    InvalidValue(String),
    /// A response that breaks the offer it answers (RFC 7692 §7.1).
    #[error("permessage-deflate response does not match the offer: {0}")]
    ResponseMismatch(&'static str),
}

/// `8`..=`15` without leading zeros (RFC 7692 §7.1.2.1: `%x38-39 / "1" %x30-35`).
fn window_bits_value(name: &str, value: Option<&str>) -> Result<u8, PmdError> {
    let bits = match value {
        Some("8") => 8,
        Some("9") => 9,
        Some("10") => 10,
        Some("11") => 11,
        Some("12") => 12,
        Some("13") => 13,
        Some("14") => 14,
        Some("15") => 15,
        _ => return Err(PmdError::InvalidValue(name.to_owned())),
    };
    Ok(bits)
}

impl PerMessageDeflateParams {
    /// Reads the parameters of a permessage-deflate extension strictly (RFC 7692 §7.1).
    pub fn from_extension(ext: &Extension<'_>) -> Result<Self, PmdError> {
        if !ext.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE) {
            return Err(PmdError::NotPermessageDeflate(ext.name.to_owned()));
        }
        let mut p = PerMessageDeflateParams::default();
        let mut seen = [false; 4];
        for (name, value) in &ext.params {
            let value = value.as_deref();
            let slot = match name.to_ascii_lowercase().as_str() {
                "server_no_context_takeover" => 0,
                "client_no_context_takeover" => 1,
                "server_max_window_bits" => 2,
                "client_max_window_bits" => 3,
                _ => return Err(PmdError::UnknownParam((*name).to_owned())), // RFC 7692 §7.1
            };
            if let Some(flag) = seen.get_mut(slot) {
                if *flag {
                    return Err(PmdError::DuplicateParam((*name).to_owned())); // RFC 7692 §7.1
                }
                *flag = true;
            }
            match slot {
                0 | 1 => {
                    if value.is_some() {
                        // RFC 7692 §7.1.1: these parameters have no value.
                        return Err(PmdError::InvalidValue((*name).to_owned()));
                    }
                    if slot == 0 {
                        p.server_no_context_takeover = true;
                    } else {
                        p.client_no_context_takeover = true;
                    }
                }
                2 => p.server_max_window_bits = Some(window_bits_value(name, value)?),
                _ => {
                    p.client_max_window_bits = Some(match value {
                        None => None,
                        v => Some(window_bits_value(name, v)?),
                    });
                }
            }
        }
        Ok(p)
    }

    /// The offer browsers send: `permessage-deflate; client_max_window_bits`.
    pub fn default_offer() -> Self {
        PerMessageDeflateParams {
            client_max_window_bits: Some(None),
            ..Default::default()
        }
    }

    /// The window bits the server compresses with.
    pub fn server_window_bits(&self) -> u8 {
        self.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS)
    }

    /// The window bits the client compresses with.
    pub fn client_window_bits(&self) -> u8 {
        self.client_max_window_bits
            .flatten()
            .unwrap_or(MAX_WINDOW_BITS)
    }

    /// For agreed parameters (a response): the inflater for what the peer sends and the deflater
    /// for what `local` sends.
    pub fn codecs(&self, local: Role) -> Result<(Inflater, Deflater), DeflateError> {
        let server = (self.server_window_bits(), !self.server_no_context_takeover);
        let client = (self.client_window_bits(), !self.client_no_context_takeover);
        let (mine, theirs) = match local {
            Role::Server => (server, client),
            Role::Client => (client, server),
        };
        Ok((
            Inflater::new(theirs.0, theirs.1)?,
            Deflater::new(mine.0, mine.1)?,
        ))
    }

    /// A client's check of the server's response to its offer `self` (RFC 7692 §7.1), returning
    /// the agreed parameters.
    pub fn accept_response(&self, response: &Extension<'_>) -> Result<Self, PmdError> {
        let r = Self::from_extension(response)?;
        if self.server_no_context_takeover && !r.server_no_context_takeover {
            // RFC 7692 §7.1.1.1: a server accepting this offer includes the parameter.
            return Err(PmdError::ResponseMismatch(
                "server_no_context_takeover was offered but not answered",
            ));
        }
        let offered_server_bits = self.server_max_window_bits;
        if r.server_max_window_bits
            .zip(offered_server_bits)
            .is_some_and(|(bits, offered)| bits > offered)
        {
            // RFC 7692 §7.1.2.1: the same or a smaller value than offered.
            return Err(PmdError::ResponseMismatch(
                "server_max_window_bits larger than offered",
            ));
        }
        match (self.client_max_window_bits, r.client_max_window_bits) {
            (_, None) => {}
            // RFC 7692 §7.1.2.2: only in answer to an offer that has it, and with a value.
            (None, Some(_)) => {
                return Err(PmdError::ResponseMismatch(
                    "client_max_window_bits answered but not offered",
                ));
            }
            (Some(_), Some(None)) => {
                return Err(PmdError::ResponseMismatch(
                    "client_max_window_bits in a response needs a value",
                ));
            }
            (Some(offered), Some(Some(bits))) => {
                if offered.is_some_and(|o| bits > o) {
                    return Err(PmdError::ResponseMismatch(
                        "client_max_window_bits larger than offered",
                    ));
                }
            }
        }
        let mut agreed = r;
        if agreed.client_max_window_bits.is_none() {
            if let Some(Some(offered)) = self.client_max_window_bits {
                // The client said it limits its window to this value (RFC 7692 §7.1.2.2).
                agreed.client_max_window_bits = Some(Some(offered));
            }
        }
        Ok(agreed)
    }
}

impl fmt::Display for PerMessageDeflateParams {
    /// The header value, e.g. `permessage-deflate; server_no_context_takeover`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PERMESSAGE_DEFLATE)?;
        if self.server_no_context_takeover {
            f.write_str("; server_no_context_takeover")?;
        }
        if self.client_no_context_takeover {
            f.write_str("; client_no_context_takeover")?;
        }
        if let Some(bits) = self.server_max_window_bits {
            write!(f, "; server_max_window_bits={bits}")?;
        }
        match self.client_max_window_bits {
            Some(Some(bits)) => write!(f, "; client_max_window_bits={bits}")?,
            Some(None) => f.write_str("; client_max_window_bits")?,
            None => {}
        }
        Ok(())
    }
}

/// What a server is willing to do with permessage-deflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Reset the server's compressor after each message (saves memory per connection).
    pub server_no_context_takeover: bool,
    /// Ask clients to reset their compressor after each message.
    pub client_no_context_takeover: bool,
    /// Largest window the server compresses with (8..=15).
    pub server_max_window_bits: u8,
    /// Largest window the server wants clients to compress with (8..=15).
    pub client_max_window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

/// The server side of RFC 7692 §7.1: accepts the first acceptable permessage-deflate offer in
/// `offers` (in the client's order of preference) and returns the response parameters, or `None`
/// to decline (no offer, or only offers with invalid or unknown parameters).
pub fn negotiate_permessage_deflate(
    offers: &[Extension<'_>],
    config: &DeflateConfig,
) -> Option<PerMessageDeflateParams> {
    let clamp = |b: u8| b.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
    offers
        .iter()
        .filter(|e| e.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE))
        // RFC 7692 §7.1: an offer with unknown, duplicate or invalid parameters is declined.
        .find_map(|e| PerMessageDeflateParams::from_extension(e).ok())
        .map(|offer| {
            let server_bits = clamp(config.server_max_window_bits);
            let client_bits = clamp(config.client_max_window_bits);
            PerMessageDeflateParams {
                // RFC 7692 §7.1.1.1: echo the client's request; the server may add it itself.
                server_no_context_takeover: offer.server_no_context_takeover
                    || config.server_no_context_takeover,
                // RFC 7692 §7.1.1.2: the server may ask for it even if not offered.
                client_no_context_takeover: offer.client_no_context_takeover
                    || config.client_no_context_takeover,
                // RFC 7692 §7.1.2.1: the same or a smaller value than offered; an 8-bit limit is
                // honoured although zlib compresses with 9 (see wire::deflate).
                server_max_window_bits: match offer.server_max_window_bits {
                    Some(offered) => Some(offered.min(server_bits)),
                    None if server_bits < MAX_WINDOW_BITS => Some(server_bits),
                    None => None,
                },
                // RFC 7692 §7.1.2.2: only if offered; at most the offered value.
                client_max_window_bits: match offer.client_max_window_bits {
                    None => None,
                    Some(Some(offered)) => Some(Some(offered.min(client_bits))),
                    Some(None) if client_bits < MAX_WINDOW_BITS => Some(Some(client_bits)),
                    Some(None) => None,
                },
            }
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CHROME_REQUEST: &str = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n\
        Host: 127.0.0.1:3001\r\n\
        Connection: Upgrade\r\n\
        Pragma: no-cache\r\n\
        Upgrade: websocket\r\n\
        Origin: http://localhost:3000\r\n\
        Sec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        \r\n";

    #[test]
    fn rfc6455_1_3_accept_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(verify_accept(
            "dGhlIHNhbXBsZSBub25jZQ==",
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        ));
        assert!(!verify_accept(
            "dGhlIHNhbXBsZSBub25jZQ==",
            "s3pPLMBiTxaQ9kYGzzhZRbK+x0o="
        ));
        assert_eq!(
            websocket_key(*b"the sample nonce"),
            "dGhlIHNhbXBsZSBub25jZQ=="
        );
    }

    #[test]
    fn parses_a_browser_upgrade_request() {
        let mut bytes = CHROME_REQUEST.as_bytes().to_vec();
        bytes.extend_from_slice(b"\x81\x85"); // the first frame may follow at once
        let (req, len) = RequestHead::parse(&bytes).unwrap().unwrap();
        assert_eq!(len, CHROME_REQUEST.len());
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/socket.io/?EIO=4&transport=websocket");
        assert_eq!(req.version, 1);
        assert_eq!(req.version_str(), "HTTP/1.1");
        assert_eq!(req.headers.len(), 9);
        assert_eq!(req.header("HOST"), Some("127.0.0.1:3001"));
        assert_eq!(req.websocket_key(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(req.protocols(), ["chat", "superchat"]);
        let ext = req.extensions().unwrap();
        assert_eq!(ext.len(), 1);
        assert_eq!(ext[0].name, "permessage-deflate");
        assert_eq!(ext[0].params, vec![("client_max_window_bits", None)]);
        assert!(req.is_websocket_upgrade());
    }

    #[test]
    fn every_prefix_of_a_head_needs_more_bytes() {
        let bytes = CHROME_REQUEST.as_bytes();
        for cut in 0..bytes.len() {
            assert_eq!(RequestHead::parse(&bytes[..cut]), Ok(None), "cut {cut}");
        }
        let resp = server_response_101("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", None, None);
        for cut in 0..resp.len() {
            assert_eq!(
                ResponseHead::parse(&resp.as_bytes()[..cut]),
                Ok(None),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn emits_and_parses_the_101_response() {
        let text = server_response_101(
            &accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            Some("chat"),
            Some("permessage-deflate; server_no_context_takeover"),
        );
        assert_eq!(
            text,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n"
        );
        let (resp, len) = ResponseHead::parse(text.as_bytes()).unwrap().unwrap();
        assert_eq!(len, text.len());
        assert_eq!(resp.status, 101);
        assert_eq!(resp.reason, "Switching Protocols");
        assert_eq!(
            resp.websocket_accept(),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        assert_eq!(resp.protocol(), Some("chat"));
        assert!(resp.is_websocket_upgrade());
        assert_eq!(
            resp.validate_websocket_upgrade("dGhlIHNhbXBsZSBub25jZQ==", &["chat"]),
            Ok(())
        );
        assert_eq!(
            resp.validate_websocket_upgrade("AAAAAAAAAAAAAAAAAAAAAA==", &["chat"]),
            Err(UpgradeError::AcceptMismatch(Some(
                "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into()
            )))
        );
        assert_eq!(
            resp.validate_websocket_upgrade("dGhlIHNhbXBsZSBub25jZQ==", &["other"]),
            Err(UpgradeError::ProtocolNotOffered("chat".into()))
        );
    }

    #[test]
    fn client_request_round_trips_through_the_parser() {
        let text = client_request(
            "example.com:80",
            "/chat",
            "dGhlIHNhbXBsZSBub25jZQ==",
            &["chat"],
            Some("permessage-deflate; client_max_window_bits"),
        );
        let (req, len) = RequestHead::parse(text.as_bytes()).unwrap().unwrap();
        assert_eq!(len, text.len());
        assert_eq!(req.path, "/chat");
        assert_eq!(req.header("host"), Some("example.com:80"));
        assert_eq!(req.validate_websocket_upgrade(), Ok(()));
        assert_eq!(req.protocols(), ["chat"]);
        let with = client_request_with_headers(
            "h",
            "",
            "dGhlIHNhbXBsZSBub25jZQ==",
            &[],
            None,
            &[("Origin", "http://h")],
        );
        let (req, _) = RequestHead::parse(with.as_bytes()).unwrap().unwrap();
        assert_eq!(req.path, "/");
        assert_eq!(req.header("origin"), Some("http://h"));
    }

    #[test]
    fn response_without_reason_and_with_bare_lf() {
        let (resp, len) = ResponseHead::parse(b"HTTP/1.1 101\nUpgrade: websocket\n\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(resp.status, 101);
        assert_eq!(resp.reason, "");
        assert_eq!(len, 33);
    }

    fn request_error(text: &str) -> HttpError {
        RequestHead::parse(text.as_bytes()).unwrap_err()
    }

    #[test]
    fn malformed_heads_name_the_problem_and_the_byte() {
        let e = request_error("G(T / HTTP/1.1\r\n\r\n");
        assert_eq!((e.kind, e.offset), (HttpErrorKind::Method, 1));
        let e = request_error("GET /a\x01b HTTP/1.1\r\n\r\n");
        assert_eq!((e.kind, e.offset), (HttpErrorKind::Target, 6));
        let e = request_error("GET / HTTP/2.0\r\n\r\n");
        assert_eq!((e.kind, e.offset), (HttpErrorKind::Version, 6));
        assert_eq!(
            e.to_string(),
            "at byte 6: invalid HTTP version (expected HTTP/1.x)"
        );
        let e = request_error("GET / HTTP/1.1\r\nHost : x\r\n\r\n");
        assert_eq!((e.kind, e.offset), (HttpErrorKind::HeaderName, 20));
        let e = request_error("GET / HTTP/1.1\r\nHost\r\n\r\n");
        assert_eq!((e.kind, e.offset), (HttpErrorKind::MissingColon, 20));
        let e = request_error("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n");
        assert_eq!((e.kind, e.offset), (HttpErrorKind::ObsFold, 22));
        let e = request_error("GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n");
        assert_eq!((e.kind, e.offset), (HttpErrorKind::HeaderValue, 20));
        let e = request_error("GET / HTTP/1.1\rX\n\r\n");
        assert_eq!((e.kind, e.offset), (HttpErrorKind::BareCr, 14));
        // Errors surface before the head is complete.
        let e = request_error("G(T");
        assert_eq!(e.kind, HttpErrorKind::Method);
        let e = ResponseHead::parse(b"HTTP/1.1 1x1 OK\r\n").unwrap_err();
        assert_eq!((e.kind, e.offset), (HttpErrorKind::Status, 9));
        let e = ResponseHead::parse(b"SSH-2.0-OpenSSH\r\n").unwrap_err();
        assert_eq!(e.kind, HttpErrorKind::Version);
    }

    #[test]
    fn heads_are_bounded() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD_LEN + 1, b'a');
        let e = RequestHead::parse(&big).unwrap_err();
        assert_eq!(e.kind, HttpErrorKind::TooLarge(MAX_HEAD_LEN));
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{i}: 1\r\n"));
        }
        many.push_str("\r\n");
        let e = request_error(&many);
        assert_eq!(e.kind, HttpErrorKind::TooManyHeaders(MAX_HEADERS));
    }

    #[test]
    fn upgrade_request_checks_each_rule() {
        let base = |replace: &str, with: &str| {
            let text = CHROME_REQUEST.replace(replace, with);
            let (req, _) = RequestHead::parse(text.as_bytes()).unwrap().unwrap();
            req.validate_websocket_upgrade()
                .map_err(|e| (e.status(), e.to_string()))
        };
        assert_eq!(base("", ""), Ok(()));
        assert_eq!(base("GET /", "POST /").unwrap_err().0, 405);
        assert_eq!(
            base("Upgrade: websocket", "Upgrade: h2c").unwrap_err().1,
            "no 'Upgrade: websocket' header"
        );
        assert!(base("Connection: Upgrade", "Connection: keep-alive, Upgrade").is_ok());
        assert_eq!(
            base("Connection: Upgrade", "Connection: close")
                .unwrap_err()
                .0,
            400
        );
        assert_eq!(base("Host:", "X-Host:").unwrap_err().1, "no Host header");
        assert_eq!(
            base("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=").unwrap_err().1,
            "Sec-WebSocket-Key \"c2hvcnQ=\" is not base64 of 16 bytes"
        );
        assert_eq!(
            base("Version: 13", "Version: 8").unwrap_err(),
            (
                426,
                "unsupported Sec-WebSocket-Version 8 (this speaks 13)".to_owned()
            )
        );
        let refusal = server_response_refusal(&UpgradeError::UnsupportedVersion(Some("8".into())));
        assert!(
            refusal.starts_with("HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n")
        );
        let (resp, len) = ResponseHead::parse(refusal.as_bytes()).unwrap().unwrap();
        assert_eq!(resp.status, 426);
        assert_eq!(
            resp.header("content-length")
                .unwrap()
                .parse::<usize>()
                .unwrap(),
            refusal.len() - len
        );
    }

    // ---- extensions ------------------------------------------------------------------------

    #[test]
    fn parses_extension_lists() {
        let ext = parse_extensions(
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10, \
             permessage-deflate;server_no_context_takeover ,, x-custom; a=\"b\"",
        )
        .unwrap();
        assert_eq!(ext.len(), 3);
        assert_eq!(
            ext[0].params,
            vec![
                ("client_max_window_bits", None),
                ("server_max_window_bits", Some(Cow::Borrowed("10")))
            ]
        );
        assert_eq!(ext[1].params, vec![("server_no_context_takeover", None)]);
        assert_eq!(ext[2].name, "x-custom");
        assert_eq!(ext[2].params, vec![("a", Some(Cow::Owned("b".into())))]);
        assert_eq!(ext[2].to_string(), "x-custom; a=b");
        assert_eq!(parse_extensions("").unwrap(), vec![]);
        assert_eq!(
            parse_extensions("a=b").unwrap_err(),
            ExtensionError {
                kind: ExtensionErrorKind::ExpectedSeparator,
                offset: 1
            }
        );
        assert_eq!(
            parse_extensions("a; =1").unwrap_err().kind,
            ExtensionErrorKind::ExpectedToken
        );
        assert_eq!(
            parse_extensions("a; b=\"x y\"").unwrap_err().kind,
            ExtensionErrorKind::QuotedNotToken
        );
        assert_eq!(
            parse_extensions("a; b=\"xy").unwrap_err(),
            ExtensionError {
                kind: ExtensionErrorKind::UnterminatedQuote,
                offset: 5
            }
        );
        assert_eq!(
            parse_extensions("a; b=\"x").unwrap_err().to_string(),
            "at byte 5 of Sec-WebSocket-Extensions: unterminated quoted string"
        );
    }

    fn pmd(value: &str) -> Result<PerMessageDeflateParams, PmdError> {
        PerMessageDeflateParams::from_extension(&parse_extensions(value).unwrap()[0])
    }

    #[test]
    fn permessage_deflate_params_are_read_strictly() {
        assert_eq!(
            pmd("permessage-deflate; client_max_window_bits").unwrap(),
            PerMessageDeflateParams::default_offer()
        );
        let p = pmd(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=8; client_max_window_bits=\"15\"",
        )
        .unwrap();
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
        assert_eq!(p.server_max_window_bits, Some(8));
        assert_eq!(p.client_max_window_bits, Some(Some(15)));
        assert_eq!(
            p.to_string(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=8; client_max_window_bits=15"
        );
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=+9",
            "permessage-deflate; server_no_context_takeover=1",
        ] {
            assert!(matches!(pmd(bad), Err(PmdError::InvalidValue(_))), "{bad}");
        }
        assert!(matches!(
            pmd("permessage-deflate; client_no_context_takeover; client_no_context_takeover"),
            Err(PmdError::DuplicateParam(_))
        ));
        assert!(matches!(
            pmd("permessage-deflate; foo"),
            Err(PmdError::UnknownParam(_))
        ));
        assert!(matches!(
            pmd("x-webkit-deflate-frame"),
            Err(PmdError::NotPermessageDeflate(_))
        ));
    }

    fn negotiate(offer: &str, config: DeflateConfig) -> Option<String> {
        negotiate_permessage_deflate(&parse_extensions(offer).unwrap(), &config)
            .map(|p| p.to_string())
    }

    #[test]
    fn server_negotiation_follows_rfc7692_7_1() {
        let d = DeflateConfig::default();
        assert_eq!(
            negotiate("permessage-deflate; client_max_window_bits", d).as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(negotiate("x-other", d), None);
        assert_eq!(negotiate("", d), None);
        // An invalid first offer is declined and the next one accepted.
        assert_eq!(
            negotiate(
                "permessage-deflate; foo, permessage-deflate; server_no_context_takeover",
                d
            )
            .as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
        // Window limits: at most what was offered and what the server wants.
        assert_eq!(
            negotiate(
                "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12",
                DeflateConfig {
                    client_max_window_bits: 11,
                    ..d
                }
            )
            .as_deref(),
            Some("permessage-deflate; server_max_window_bits=10; client_max_window_bits=11")
        );
        // client_max_window_bits is only answered when offered.
        assert_eq!(
            negotiate(
                "permessage-deflate",
                DeflateConfig {
                    client_max_window_bits: 10,
                    client_no_context_takeover: true,
                    ..d
                }
            )
            .as_deref(),
            Some("permessage-deflate; client_no_context_takeover")
        );
        assert_eq!(
            negotiate(
                "permessage-deflate; client_max_window_bits",
                DeflateConfig {
                    client_max_window_bits: 10,
                    ..d
                }
            )
            .as_deref(),
            Some("permessage-deflate; client_max_window_bits=10")
        );
        // An 8-bit server window is accepted (zlib compresses with 9, which stays within 256
        // bytes: see wire::deflate).
        assert_eq!(
            negotiate("permessage-deflate; server_max_window_bits=8", d).as_deref(),
            Some("permessage-deflate; server_max_window_bits=8")
        );
    }

    #[test]
    fn client_checks_the_response_to_its_offer() {
        let offer = PerMessageDeflateParams::default_offer();
        let resp = |v: &str| offer.accept_response(&parse_extensions(v).unwrap()[0]);
        assert_eq!(
            resp("permessage-deflate; client_max_window_bits=9")
                .unwrap()
                .client_window_bits(),
            9
        );
        assert!(matches!(
            resp("permessage-deflate; client_max_window_bits"),
            Err(PmdError::ResponseMismatch(_))
        ));
        let strict = PerMessageDeflateParams {
            server_no_context_takeover: true,
            server_max_window_bits: Some(10),
            ..Default::default()
        };
        let sresp = |v: &str| strict.accept_response(&parse_extensions(v).unwrap()[0]);
        assert!(sresp("permessage-deflate; server_max_window_bits=10").is_err());
        assert!(
            sresp("permessage-deflate; server_no_context_takeover; server_max_window_bits=11")
                .is_err()
        );
        assert!(
            sresp("permessage-deflate; server_no_context_takeover; client_max_window_bits=11")
                .is_err()
        );
        let agreed =
            sresp("permessage-deflate; server_no_context_takeover; server_max_window_bits=9")
                .unwrap();
        assert_eq!(agreed.server_window_bits(), 9);
    }

    #[test]
    fn negotiated_codecs_talk_to_each_other() {
        let offers = parse_extensions(
            "permessage-deflate; client_max_window_bits; server_max_window_bits=8",
        )
        .unwrap();
        let config = DeflateConfig {
            client_no_context_takeover: true,
            client_max_window_bits: 9,
            ..DeflateConfig::default()
        };
        let agreed = negotiate_permessage_deflate(&offers, &config).unwrap();
        let response = agreed.to_string();
        let client_view = PerMessageDeflateParams::from_extension(&offers[0])
            .unwrap()
            .accept_response(&parse_extensions(&response).unwrap()[0])
            .unwrap();
        assert_eq!(client_view, agreed);
        let (mut s_in, mut s_out) = agreed.codecs(Role::Server).unwrap();
        let (mut c_in, mut c_out) = client_view.codecs(Role::Client).unwrap();
        assert_eq!(s_out.window_bits(), 8);
        assert_eq!(c_out.window_bits(), 9);
        assert!(!c_out.context_takeover() && !s_in.context_takeover());
        assert!(s_out.context_takeover() && c_in.context_takeover());
        let text: Vec<u8> = (0..3000u32)
            .map(|i| b"abcdefgh"[(i * i % 7) as usize])
            .collect();
        for _ in 0..3 {
            let down = s_out.deflate_message(&text).unwrap();
            assert_eq!(c_in.inflate_message(&down, 10_000).unwrap(), text);
            let up = c_out.deflate_message(&text).unwrap();
            assert_eq!(s_in.inflate_message(&up, 10_000).unwrap(), text);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_http_parsers(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(Some((req, len))) = RequestHead::parse(&bytes) {
                prop_assert!(len <= bytes.len());
                let _ = req.validate_websocket_upgrade();
                let _ = req.extensions();
            }
            if let Ok(Some((resp, len))) = ResponseHead::parse(&bytes) {
                prop_assert!(len <= bytes.len());
                let _ = resp.validate_websocket_upgrade("dGhlIHNhbXBsZSBub25jZQ==", &[]);
                let _ = resp.extensions();
            }
        }

        #[test]
        fn arbitrary_text_never_panics_the_extension_parser(s in "[ -~\\t]{0,80}") {
            if let Ok(exts) = parse_extensions(&s) {
                for e in &exts {
                    let _ = PerMessageDeflateParams::from_extension(e);
                    // What we emit parses back to the same thing.
                    let again = e.to_string();
                    let reparsed = parse_extensions(&again).unwrap();
                    prop_assert_eq!(reparsed.len(), 1);
                    prop_assert_eq!(&reparsed[0], e);
                }
                let _ = negotiate_permessage_deflate(&exts, &DeflateConfig::default());
            }
        }

        #[test]
        fn headers_round_trip(
            names in proptest::collection::vec("[A-Za-z][A-Za-z0-9-]{0,12}", 0..6),
            values in proptest::collection::vec("[!-~]([ -~]{0,20}[!-~])?", 6),
        ) {
            let mut text = String::from("GET /x HTTP/1.1\r\n");
            for (n, v) in names.iter().zip(&values) {
                text.push_str(&format!("{n}:  {v} \r\n"));
            }
            text.push_str("\r\n");
            let (req, len) = RequestHead::parse(text.as_bytes()).unwrap().unwrap();
            prop_assert_eq!(len, text.len());
            prop_assert_eq!(req.headers.len(), names.len());
            for ((h, n), v) in req.headers.iter().zip(&names).zip(&values) {
                prop_assert_eq!(h.name, n.as_str());
                prop_assert_eq!(h.value, v.as_bytes());
            }
        }
    }
}
