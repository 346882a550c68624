//! One bench connection over the shared client driver ([`crate::client`]): a Socket.IO
//! [`Conn`](crate::client::Conn) (WebSocket or polling), or for `--raw` a plain WebSocket
//! ([`WsIo`]). Reads are batched: one socket read hands every complete packet to the callback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use crate::cli::TransportChoice;
use crate::client::wsio::WsIo;
use crate::client::{
    ClientError, ClientOptions, Conn, Endpoint, NetOptions, Received, TransportMode, tls_connector,
};
use crate::wire::ws::Message;

use super::config::{Config, Mode};

/// Largest message accepted from the server.
const MAX_MESSAGE: usize = 16 << 20;

/// A short reason without addresses, ports or ids, so equal failures group in the report.
pub fn reason(e: &ClientError) -> String {
    match e {
        ClientError::Connect { source, .. } => format!("connect: {}", io_reason(source)),
        ClientError::ConnectTimeout { .. } => "connect timed out".into(),
        ClientError::Resolve { .. } => "cannot resolve host".into(),
        ClientError::Tls { .. } => "TLS handshake failed".into(),
        ClientError::HttpStatus { status, .. } => format!("handshake: HTTP {status}"),
        ClientError::Handshake(_) => "WebSocket handshake failed".into(),
        ClientError::ConnectRefused { message, .. } => format!("namespace refused: {message}"),
        ClientError::ServerDisconnect { .. } => "server disconnected the namespace".into(),
        ClientError::SessionClosed => "server closed the Engine.IO session".into(),
        ClientError::PingTimeout { .. } => "no ping from the server (ping timeout)".into(),
        ClientError::Closed { during } => format!("server closed the connection while {during}"),
        ClientError::Io(source) => io_reason(source),
        ClientError::WebSocket(e) => format!("WebSocket protocol error: {e}"),
        ClientError::Protocol(_) => "protocol error".into(),
        other => other.to_string(),
    }
}

fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        ConnectionAborted => "connection aborted".into(),
        BrokenPipe => "broken pipe".into(),
        TimedOut => "timed out".into(),
        AddrNotAvailable => "no free local port (address not available)".into(),
        AddrInUse => "local address in use".into(),
        UnexpectedEof => "server closed the connection".into(),
        _ => match e.raw_os_error() {
            Some(libc::EMFILE) | Some(libc::ENFILE) => "too many open files".into(),
            _ => e.to_string(),
        },
    }
}

/// Longest plausible wait between a kernel receive stamp and the read that returned it; a larger
/// one means the wall clock was stepped, and the read's own time is used instead.
const MAX_STAMP_AGE: Duration = Duration::from_secs(60);

/// When a read's data reached the socket: the kernel's receive stamp (wall clock) moved onto the
/// monotonic clock by its age at the read, or the read's own time without a usable stamp.
fn arrival(read: Instant, stamp: Option<SystemTime>) -> Arrival {
    let at_read = Arrival {
        at: read,
        wait_us: None,
    };
    let Some(k) = stamp else { return at_read };
    match SystemTime::now().duration_since(k) {
        Ok(age) if age < MAX_STAMP_AGE => match read.checked_sub(age) {
            Some(at) => Arrival {
                at,
                wait_us: Some(age.as_micros() as u64),
            },
            None => at_read,
        },
        _ => at_read,
    }
}

/// When received data arrived, for latency.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// When the data reached the socket (the kernel's stamp), else when the read returned.
    pub at: Instant,
    /// How long the data waited in the socket before this generator read it, when stamped.
    pub wait_us: Option<u64>,
}

/// Where and how to connect; built once, shared by every client.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    endpoint: Endpoint,
    mode: Mode,
    sio: ClientOptions,
    net: NetOptions,
}

impl Target {
    pub fn new(url: &str, cfg: &Config) -> Result<Target, ClientError> {
        let endpoint = Endpoint::parse(url)?;
        if cfg.mode == Mode::Raw && !matches!(url.split(':').next(), Some("ws" | "wss")) {
            return Err(ClientError::Url {
                url: url.to_string(),
                reason: "--raw speaks plain WebSocket: use a ws:// or wss:// URL".into(),
            });
        }
        let tls = if endpoint.tls {
            Some(tls_connector(false)?)
        } else {
            None
        };
        let net = NetOptions {
            connect_timeout: cfg.connect_timeout,
            local_addr: None,
            tls,
            rx_timestamps: cfg.rx_timestamps,
        };
        // As socket.io-client: a path in the URL names the namespace (`http://host/admin`).
        let namespace = match (cfg.namespace.as_str(), endpoint.path.as_str()) {
            ("/", "" | "/") => "/".to_string(),
            ("/", path) if cfg.mode != Mode::Raw => path.trim_end_matches('/').to_string(),
            (ns, _) => ns.to_string(),
        };
        let sio = ClientOptions {
            endpoint: endpoint.clone(),
            path: "/socket.io/".into(),
            namespace,
            auth: None,
            transport: match cfg.transport {
                TransportChoice::Websocket => TransportMode::Websocket,
                TransportChoice::Polling => TransportMode::Polling,
                TransportChoice::Upgrade => TransportMode::Upgrade,
            },
            net: net.clone(),
            handshake_timeout: cfg.connect_timeout,
            max_message: MAX_MESSAGE,
        };
        Ok(Target {
            url: url.to_string(),
            endpoint,
            mode: cfg.mode,
            sio,
            net,
        })
    }

    /// The server's IP when the host is a literal address (or `localhost`).
    pub fn ip(&self) -> Option<IpAddr> {
        let host = self
            .endpoint
            .host
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.eq_ignore_ascii_case("localhost") {
            return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        host.parse().ok()
    }

    /// The server's address when it is on this machine's loopback.
    pub fn loopback_addr(&self) -> Option<SocketAddr> {
        self.ip()
            .filter(|ip| ip.is_loopback())
            .map(|ip| SocketAddr::new(ip, self.endpoint.port))
    }

    /// The namespace connected to.
    pub fn namespace(&self) -> &str {
        &self.sio.namespace
    }
}

/// Connect once and close, so an unreachable server or a refused namespace is reported as one
/// error before the run.
pub async fn probe(target: &Target) -> Result<(), ClientError> {
    let mut c = BenchConn::connect(target, None).await?;
    c.close().await;
    Ok(())
}

/// What a connection hands to the receive callback.
#[derive(Debug, Clone, Copy)]
pub enum Incoming<'a> {
    /// An event's raw JSON arguments, or a raw text frame (`--raw`).
    Message(&'a [u8]),
    /// An ack of one of our emits.
    Ack(u64),
    /// Anything else (binary events).
    Other,
}

/// One bench connection.
pub enum BenchConn {
    Sio(Box<Conn>),
    Raw(Box<WsIo>),
}

impl BenchConn {
    /// Connect (TCP, handshakes, Socket.IO CONNECT), from `source` when given.
    pub async fn connect(
        target: &Target,
        source: Option<IpAddr>,
    ) -> Result<BenchConn, ClientError> {
        match target.mode {
            Mode::Raw => {
                let mut net = target.net.clone();
                net.local_addr = source;
                let io = tokio::time::timeout(
                    target.sio.handshake_timeout,
                    WsIo::connect(
                        &target.endpoint,
                        &target.endpoint.target(),
                        &net,
                        MAX_MESSAGE,
                    ),
                )
                .await
                .map_err(|_| ClientError::ConnectTimeout {
                    target: target.endpoint.origin(),
                    after: target.sio.handshake_timeout,
                })??;
                Ok(BenchConn::Raw(Box::new(io)))
            }
            _ => {
                let mut opts = target.sio.clone();
                opts.net.local_addr = source;
                let (conn, _info) = Conn::connect(&opts).await?;
                Ok(BenchConn::Sio(Box::new(conn)))
            }
        }
    }

    /// Queue `join_room` asking for an ack; its ack id.
    pub fn join(&mut self, room_json: &str) -> Result<Option<u64>, ClientError> {
        match self {
            BenchConn::Sio(c) => c.emit_with_ack("join_room", room_json).map(Some),
            BenchConn::Raw(_) => Ok(None),
        }
    }

    /// Queue one chat message (`send_message` with these JSON arguments; the text itself for
    /// `--raw`); with `ack`, ask for an ack and return its id.
    #[inline]
    pub fn send(&mut self, args: &str, ack: bool) -> Result<Option<u64>, ClientError> {
        match self {
            BenchConn::Sio(c) if ack => c.emit_with_ack("send_message", args).map(Some),
            BenchConn::Sio(c) => c.emit("send_message", args).map(|()| None),
            BenchConn::Raw(io) => {
                io.queue_text(args.as_bytes());
                Ok(None)
            }
        }
    }

    /// Write what is queued.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        match self {
            BenchConn::Sio(c) => c.flush().await,
            BenchConn::Raw(io) => io.flush().await,
        }
    }

    /// When [`Self::handle_timeout`] must run (the client's dead-server check).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self {
            BenchConn::Sio(c) => c.poll_timeout(),
            BenchConn::Raw(_) => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ClientError> {
        match self {
            BenchConn::Sio(c) => c.handle_timeout(now),
            BenchConn::Raw(_) => Ok(()),
        }
    }

    /// Wait for input, then hand every complete packet to `on` with when its data arrived: the
    /// kernel's receive stamp when the socket has them, else the time the read returned (one
    /// clock read per batch). An error ends the connection.
    pub async fn recv(
        &mut self,
        mut on: impl FnMut(Incoming<'_>, Arrival),
    ) -> Result<(), ClientError> {
        match self {
            BenchConn::Sio(c) => {
                let mut now: Option<Arrival> = None;
                c.recv_stamped(&mut incoming(&mut now, &mut on)).await
            }
            BenchConn::Raw(io) => {
                if io.read_some().await? == 0 {
                    return Err(ClientError::Closed { during: "the run" });
                }
                let now = arrival(Instant::now(), io.last_rx_stamp());
                let mut pong = false;
                while let Some(m) = io.decode()? {
                    match m {
                        Message::Text(t) => on(Incoming::Message(t.as_str().as_bytes()), now),
                        Message::Binary(_) | Message::Pong(_) => on(Incoming::Other, now),
                        // RFC 6455 §5.5.2: answer a ping with a pong carrying the same data.
                        Message::Ping(p) => {
                            io.queue_pong(&p);
                            pong = true;
                        }
                        Message::Close(_) => return Err(ClientError::Closed { during: "the run" }),
                    }
                }
                if pong {
                    io.flush().await?;
                }
                Ok(())
            }
        }
    }

    /// The socket, when this connection can be driven without a task of its own
    /// ([`Self::try_recv`], [`Self::try_flush`]): Socket.IO on WebSocket alone over plain TCP.
    pub fn fast_fd(&self) -> Option<std::os::fd::RawFd> {
        match self {
            BenchConn::Sio(c) => c.fast_fd(),
            BenchConn::Raw(_) => None,
        }
    }

    /// As [`Self::recv`], without waiting: one non-blocking read and every packet in it. `Ok(None)`
    /// when there was nothing to read, else whether the read filled its buffer (more may wait).
    /// Only for a connection [`Self::fast_fd`] accepts.
    pub fn try_recv(
        &mut self,
        mut on: impl FnMut(Incoming<'_>, Arrival),
    ) -> Result<Option<bool>, ClientError> {
        match self {
            BenchConn::Sio(c) => {
                let mut now: Option<Arrival> = None;
                c.try_recv_stamped(&mut incoming(&mut now, &mut on))
            }
            BenchConn::Raw(_) => Ok(None),
        }
    }

    /// Write what is queued without waiting: whether all of it went. Only for a connection
    /// [`Self::fast_fd`] accepts.
    pub fn try_flush(&mut self) -> Result<bool, ClientError> {
        match self {
            BenchConn::Sio(c) => c.try_flush(),
            BenchConn::Raw(_) => Ok(true),
        }
    }

    /// Leave cleanly (bounded): DISCONNECT and close for Socket.IO, a close frame for `--raw`.
    pub async fn close(&mut self) {
        let limit = Duration::from_secs(2);
        match self {
            BenchConn::Sio(c) => {
                let _ = tokio::time::timeout(limit, c.close()).await;
            }
            BenchConn::Raw(io) => {
                let _ = tokio::time::timeout(limit, io.close(Some(1000), "")).await;
            }
        }
    }
}

/// The receive callback of a Socket.IO connection: each packet as an [`Incoming`], with when
/// the read's data arrived (one clock read per read, kept in `now`).
fn incoming<'a>(
    now: &'a mut Option<Arrival>,
    on: &'a mut impl FnMut(Incoming<'_>, Arrival),
) -> impl FnMut(Received<'_>, Option<SystemTime>) + 'a {
    move |r, stamp| {
        let t = *now.get_or_insert_with(|| arrival(Instant::now(), stamp));
        match r {
            Received::Event { args, .. } => on(Incoming::Message(args.as_bytes()), t),
            Received::Ack { id, .. } => on(Incoming::Ack(id), t),
            Received::Binary(_) => on(Incoming::Other, t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrival_is_the_kernel_stamp_moved_onto_the_monotonic_clock() {
        let read = Instant::now();
        // No stamp: the read's own time, no wait known.
        let a = arrival(read, None);
        assert_eq!((a.at, a.wait_us), (read, None));
        // Stamped 5 ms before the read: 5 ms earlier (plus the few µs between the clock reads).
        let a = arrival(read, Some(SystemTime::now() - Duration::from_millis(5)));
        let wait = a.wait_us.unwrap();
        assert!((5_000..6_000).contains(&wait), "{wait}");
        assert!(read - a.at >= Duration::from_millis(5));
        // A stamp from the future or from long ago (the wall clock was stepped): the read's time.
        let a = arrival(read, Some(SystemTime::now() + Duration::from_secs(1)));
        assert_eq!((a.at, a.wait_us), (read, None));
        let a = arrival(read, Some(SystemTime::now() - Duration::from_secs(3600)));
        assert_eq!((a.at, a.wait_us), (read, None));
    }
    use std::sync::Arc;

    #[test]
    fn reasons_group_without_addresses() {
        let e = ClientError::Connect {
            addr: "127.0.0.1:4242".into(),
            source: Arc::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        };
        assert_eq!(reason(&e), "connect: connection refused");
        let e = ClientError::ConnectRefused {
            namespace: "/x".into(),
            message: "Invalid namespace".into(),
            data: None,
        };
        assert_eq!(reason(&e), "namespace refused: Invalid namespace");
        let emfile = ClientError::io(std::io::Error::from_raw_os_error(libc::EMFILE));
        assert_eq!(reason(&emfile), "too many open files");
    }
}
