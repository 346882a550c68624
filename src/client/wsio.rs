//! The client end of one WebSocket connection: the HTTP Upgrade handshake, then batched reads into
//! one lazily grown buffer decoded by the shared strict [`ws::Reader`], and masked frames queued
//! into one write buffer that is flushed with a single write.

use std::io;
use std::time::SystemTime;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::ClientError;
use super::net::{NetOptions, Stream, connect};
use super::url::Endpoint;
use crate::wire::http as wh;
use crate::wire::ws::{self, Message, Opcode, ProtocolError, Role};

/// Room made for one read; the reader reserves more (in steps) only for larger frames.
const READ_CHUNK: usize = 16 * 1024;
/// A write buffer flushed with more capacity than this is released (small ones are reused).
const KEEP_WRITE_CAPACITY: usize = 4096;
/// Largest handshake response head.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// One WebSocket connection, client role.
#[derive(Debug)]
pub struct WsIo {
    stream: Stream,
    rbuf: BytesMut,
    reader: ws::Reader,
    wbuf: Vec<u8>,
    /// How much of `wbuf` is already written (a cancelled flush resumes there).
    wpos: usize,
    /// Bytes arrived that were not yet run through the decoder (e.g. frames that came with the
    /// handshake answer): decode before reading again.
    undecoded: bool,
    close_sent: bool,
    /// The socket has kernel receive timestamps on (plain TCP with `SO_TIMESTAMPNS`).
    stamped: bool,
    /// When the data of the last read reached the socket (the kernel's stamp), if known.
    last_rx: Option<SystemTime>,
}

impl WsIo {
    /// Connect to `ep` and upgrade `target` (path and query) to a WebSocket (RFC 6455 §4.1).
    pub async fn connect(
        ep: &Endpoint,
        target: &str,
        net: &NetOptions,
        max_message: usize,
    ) -> Result<WsIo, ClientError> {
        let stream = connect(ep, net).await?;
        WsIo::handshake(stream, ep, target, max_message).await
    }

    /// Run the Upgrade handshake on an open connection.
    pub async fn handshake(
        mut stream: Stream,
        ep: &Endpoint,
        target: &str,
        max_message: usize,
    ) -> Result<WsIo, ClientError> {
        let key = wh::websocket_key(rand::random::<[u8; 16]>());
        let ua = concat!("wschat/", env!("CARGO_PKG_VERSION"));
        let req = wh::client_request_with_headers(
            &ep.authority,
            target,
            &key,
            &[],
            None,
            &[("User-Agent", ua)],
        );
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(ClientError::io)?;
        let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
        let (status, head_len, verdict, content_length, reason) = loop {
            match wh::ResponseHead::parse(&rbuf) {
                Ok(Some((head, len))) => {
                    let verdict = head.validate_websocket_upgrade(&key, &[]);
                    let content_length = head
                        .header("content-length")
                        .and_then(|v| v.trim().parse::<usize>().ok());
                    break (
                        head.status,
                        len,
                        verdict,
                        content_length,
                        head.reason.to_string(),
                    );
                }
                Ok(None) => {
                    if rbuf.len() > MAX_RESPONSE_HEAD {
                        return Err(ClientError::Handshake(format!(
                            "response head larger than {MAX_RESPONSE_HEAD} bytes"
                        )));
                    }
                    if read_more(&mut stream, &mut rbuf).await? == 0 {
                        return Err(ClientError::Closed {
                            during: "waiting for the WebSocket handshake answer (is this the right URL and path?)",
                        });
                    }
                }
                Err(e) => {
                    return Err(ClientError::Handshake(format!(
                        "malformed HTTP response: {e}"
                    )));
                }
            }
        };
        if status != 101 {
            // Read a little of the body: servers explain themselves there (Engine.IO: {"code":..}).
            let mut body = rbuf.split_off(head_len.min(rbuf.len())).to_vec();
            if let Some(len) = content_length {
                let want = len.min(1024);
                while body.len() < want {
                    let mut chunk = [0u8; 1024];
                    match tokio::time::timeout(
                        std::time::Duration::from_secs(1),
                        stream.read(&mut chunk),
                    )
                    .await
                    {
                        Ok(Ok(n)) if n > 0 => body.extend_from_slice(&chunk[..n]),
                        _ => break,
                    }
                }
                body.truncate(want);
            }
            return Err(ClientError::HttpStatus {
                status,
                reason,
                body: snippet(&body),
            });
        }
        verdict.map_err(|e| ClientError::Handshake(e.to_string()))?;
        let rest = rbuf.split_off(head_len.min(rbuf.len()));
        // Frames that came with the answer stay; otherwise no buffer until data arrives.
        let rest = if rest.is_empty() {
            BytesMut::new()
        } else {
            rest
        };
        let stamped = match &stream {
            Stream::Plain(tcp) => super::net::rx_timestamps_on(tcp),
            Stream::Tls(_) => false,
        };
        Ok(WsIo {
            stamped,
            last_rx: None,
            wpos: 0,
            undecoded: !rest.is_empty(),
            stream,
            rbuf: rest,
            reader: ws::Reader::new(Role::Client, max_message),
            wbuf: Vec::new(),
            close_sent: false,
        })
    }

    /// The underlying connection.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// The next complete message already in the read buffer, without reading.
    pub fn decode(&mut self) -> Result<Option<Message>, ProtocolError> {
        let r = self.reader.decode(&mut self.rbuf);
        if !matches!(r, Ok(Some(_))) {
            self.undecoded = false;
            if self.rbuf.is_empty() {
                // Nothing pending: give the buffer back, so an idle connection holds none (the
                // next read allocates one; that is per read, not per message).
                self.rbuf = BytesMut::new();
            }
        }
        r
    }

    /// One read from the socket into the read buffer (one syscall, however many frames it brings).
    /// Returns the bytes read; 0 is the end of the stream.
    pub async fn read_some(&mut self) -> Result<usize, ClientError> {
        let n = if self.stamped {
            let (n, stamp) = read_stamped(&mut self.stream, &mut self.rbuf).await?;
            self.last_rx = stamp;
            n
        } else {
            read_more(&mut self.stream, &mut self.rbuf).await?
        };
        self.undecoded = true;
        Ok(n)
    }

    /// When the data of the last [`WsIo::read_some`] reached the socket, by the kernel's clock
    /// (`None` without receive timestamps: see [`super::net::NetOptions::rx_timestamps`]).
    pub fn last_rx_stamp(&self) -> Option<SystemTime> {
        self.last_rx
    }

    /// Whether bytes are waiting for [`WsIo::decode`] (call it before reading again).
    pub fn has_undecoded(&self) -> bool {
        self.undecoded
    }

    /// The next message, reading as needed; `Ok(None)` at the end of the stream.
    pub async fn next_message(&mut self) -> Result<Option<Message>, ClientError> {
        loop {
            if let Some(m) = self.decode().map_err(ClientError::WebSocket)? {
                return Ok(Some(m));
            }
            if self.read_some().await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Queue one text message (masked, RFC 6455 §5.3).
    pub fn queue_text(&mut self, payload: &[u8]) {
        ws::encode_frame(
            &mut self.wbuf,
            true,
            Opcode::Text,
            Some(mask_key()),
            payload,
        );
    }

    /// Queue one text message given in two parts (e.g. the Engine.IO type byte and a Socket.IO
    /// packet), copied once into the write buffer.
    pub fn queue_text_parts(&mut self, head: &[u8], body: &[u8]) {
        let key = mask_key();
        let len = (head.len() + body.len()) as u64;
        ws::encode_header(
            &mut self.wbuf,
            true,
            ws::Rsv::NONE,
            Opcode::Text,
            Some(key),
            len,
        );
        let start = self.wbuf.len();
        self.wbuf.extend_from_slice(head);
        self.wbuf.extend_from_slice(body);
        if let Some(payload) = self.wbuf.get_mut(start..) {
            ws::apply_mask(payload, key, 0); // RFC 6455 §5.3: every client frame is masked
        }
    }

    /// Queue one binary message.
    pub fn queue_binary(&mut self, payload: &[u8]) {
        ws::encode_frame(
            &mut self.wbuf,
            true,
            Opcode::Binary,
            Some(mask_key()),
            payload,
        );
    }

    /// Queue the answer to a ping: a pong with the same application data (RFC 6455 §5.5.2).
    pub fn queue_pong(&mut self, payload: &[u8]) {
        ws::encode_frame(
            &mut self.wbuf,
            true,
            Opcode::Pong,
            Some(mask_key()),
            payload,
        );
    }

    /// Queue a close frame (once).
    pub fn queue_close(&mut self, code: Option<u16>, reason: &str) {
        if !self.close_sent {
            ws::encode_close(&mut self.wbuf, Some(mask_key()), code, reason);
            self.close_sent = true;
        }
    }

    /// Whether a close frame was queued.
    pub fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// Bytes queued and not yet written.
    pub fn pending_write(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// One non-blocking read, for a caller that runs its own readiness loop (plain TCP only).
    /// `Ok(None)`: nothing to read now; `Ok(Some(0))`: the end of the stream; `Ok(Some(n))` with
    /// `full` when the read filled the room it had (more may be waiting).
    pub fn try_read_some(&mut self) -> Result<Option<(usize, bool)>, ClientError> {
        let Stream::Plain(tcp) = &self.stream else {
            return Err(ClientError::io(io::Error::other(
                "a non-blocking read needs plain TCP",
            )));
        };
        make_room(&mut self.rbuf);
        let room = self.rbuf.capacity() - self.rbuf.len();
        loop {
            match super::net::recv_stamped(tcp, &mut self.rbuf) {
                Ok((n, stamp)) => {
                    if self.stamped {
                        self.last_rx = stamp;
                    }
                    self.undecoded = true;
                    return Ok(Some((n, n == room)));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ClientError::io(e)),
            }
        }
    }

    /// Write what is queued without waiting (plain TCP only): `Ok(true)` when all of it went,
    /// `Ok(false)` when the socket is full (the rest stays queued; call again once writable).
    pub fn try_flush(&mut self) -> Result<bool, ClientError> {
        let Stream::Plain(tcp) = &self.stream else {
            return Err(ClientError::io(io::Error::other(
                "a non-blocking write needs plain TCP",
            )));
        };
        let fd = std::os::fd::AsRawFd::as_raw_fd(tcp);
        while self.wpos < self.wbuf.len() {
            let rest = &self.wbuf[self.wpos..];
            // SAFETY: `rest` is valid for its length; the socket is non-blocking (tokio's).
            let n = unsafe { libc::send(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => return Ok(false),
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(ClientError::io(e)),
                }
            }
            if n == 0 {
                return Err(write_zero());
            }
            self.wpos += n as usize;
        }
        self.written_all();
        Ok(true)
    }

    /// Everything queued is written: reset the write buffer.
    fn written_all(&mut self) {
        self.wpos = 0;
        if self.wbuf.capacity() > KEEP_WRITE_CAPACITY {
            self.wbuf = Vec::new();
        } else {
            self.wbuf.clear();
        }
    }

    /// Write everything queued, in one write when the socket takes it.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        // Cancel-safe: progress is kept in `wpos`, so a flush dropped half-way (a `select!` that
        // took another branch) resumes without writing anything twice.
        while self.wpos < self.wbuf.len() {
            let n = self
                .stream
                .write(&self.wbuf[self.wpos..])
                .await
                .map_err(ClientError::io)?;
            if n == 0 {
                return Err(write_zero());
            }
            self.wpos += n;
        }
        self.stream.flush().await.map_err(ClientError::io)?;
        self.written_all();
        Ok(())
    }

    /// Close cleanly: send a close frame (if not sent), then wait for the server's close frame or
    /// the end of the stream (RFC 6455 §5.5.1), then shut the connection down.
    pub async fn close(&mut self, code: Option<u16>, reason: &str) -> Result<(), ClientError> {
        self.queue_close(code, reason);
        self.flush().await?;
        if !self.reader.is_closed() {
            loop {
                match self.next_message().await {
                    Ok(Some(Message::Close(_))) | Ok(None) | Err(_) => break,
                    Ok(Some(_)) => {}
                }
            }
        }
        let _ = self.stream.shutdown().await;
        Ok(())
    }
}

/// One read. On plain TCP it waits for readability first and only then makes room, so a connection
/// waiting for data holds no read buffer.
async fn read_more(stream: &mut Stream, buf: &mut BytesMut) -> Result<usize, ClientError> {
    let r = match stream {
        Stream::Plain(tcp) => match tcp.readable().await {
            Err(e) => Err(e),
            // Readable: `read_buf` reads at once, and after a short read it clears the readiness
            // itself (epoll: the socket is drained), where `try_read_buf` would leave it set and
            // the next call would spend a syscall on EAGAIN.
            Ok(()) => {
                make_room(buf);
                tcp.read_buf(buf).await
            }
        },
        Stream::Tls(_) => {
            make_room(buf);
            stream.read_buf(buf).await
        }
    };
    match r {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        Err(e) => Err(ClientError::io(e)),
    }
}

fn write_zero() -> ClientError {
    ClientError::io(io::Error::new(
        io::ErrorKind::WriteZero,
        "connection closed for writing",
    ))
}

/// Room for one read: a chunk more when less than 512 bytes are free.
fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 512 {
        buf.reserve(READ_CHUNK);
    }
}

/// One read with the kernel's receive timestamp (plain TCP with `SO_TIMESTAMPNS` on).
async fn read_stamped(
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> Result<(usize, Option<SystemTime>), ClientError> {
    let Stream::Plain(tcp) = stream else {
        return read_more(stream, buf).await.map(|n| (n, None));
    };
    loop {
        tcp.readable().await.map_err(ClientError::io)?;
        make_room(buf);
        let room = buf.capacity() - buf.len();
        match tcp.try_io(tokio::io::Interest::READABLE, || {
            super::net::recv_stamped(tcp, buf)
        }) {
            Ok((n, stamp)) => {
                if n > 0 && n < room {
                    // A short read drained the socket: drop the readiness now, as tokio's own
                    // reads do, instead of learning it from an EAGAIN on the next read. (A
                    // `WouldBlock` from `try_io` clears it; no syscall is made. Data that came
                    // in after the read has raised a new readiness event and keeps it.)
                    let _ = tcp.try_io(tokio::io::Interest::READABLE, || {
                        Err::<(), _>(io::ErrorKind::WouldBlock.into())
                    });
                }
                return Ok((n, stamp));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ClientError::io(e)),
        }
    }
}

/// A fresh masking key per frame (RFC 6455 §5.3: unpredictable).
fn mask_key() -> [u8; 4] {
    rand::random()
}

/// A short one-line text of a response body, for error messages.
pub(crate) fn snippet(body: &[u8]) -> String {
    let cut = &body[..body.len().min(200)];
    String::from_utf8_lossy(cut)
        .replace(['\r', '\n'], " ")
        .trim()
        .to_string()
}
