//! TCP and TLS connections for the client: resolve, bind a chosen source address, connect with a
//! timeout, `TCP_NODELAY`, and rustls (ring provider, system roots, or `--insecure`).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

use super::ClientError;
use super::url::Endpoint;

/// How to open the TCP (and TLS) connection.
#[derive(Clone)]
pub struct NetOptions {
    /// Give up on TCP connect + TLS handshake after this long.
    pub connect_timeout: Duration,
    /// Bind this local address before connecting (port 0 = any): spreads many connections over
    /// 127.0.0.x so a load test is not limited by one source address's ephemeral ports.
    pub local_addr: Option<IpAddr>,
    /// The TLS configuration for `https`/`wss` (build one with [`tls_connector`] and share it).
    pub tls: Option<TlsConnector>,
    /// Ask the kernel to stamp received data (`SO_TIMESTAMPNS`, plain TCP only): reads then say
    /// when their data reached the socket, not only when the program got round to reading it.
    pub rx_timestamps: bool,
}

impl std::fmt::Debug for NetOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .field("rx_timestamps", &self.rx_timestamps)
            .finish()
    }
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            connect_timeout: Duration::from_secs(10),
            local_addr: None,
            tls: None,
            rx_timestamps: false,
        }
    }
}

/// A plain TCP stream or a TLS stream over one.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// The underlying TCP stream.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }

    /// The local address of the connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().local_addr()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Turn on kernel receive timestamps (`SO_TIMESTAMPNS`) for `tcp`.
pub fn set_rx_timestamps(tcp: &TcpStream) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and a pointer to an int of the given size.
    let r = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether `tcp` has kernel receive timestamps on.
pub fn rx_timestamps_on(tcp: &TcpStream) -> bool {
    let mut on: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid socket, an int and its length.
    let r = unsafe {
        libc::getsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&mut on as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    r == 0 && on != 0
}

/// One `recvmsg` into the spare capacity of `buf` (the caller reserves room first). Returns the
/// bytes read and, when the socket has [`set_rx_timestamps`] on, the kernel's receive time of the
/// newest data in this read (so for older data in the same read it is late, never early).
pub fn recv_stamped(
    tcp: &TcpStream,
    buf: &mut bytes::BytesMut,
) -> io::Result<(usize, Option<SystemTime>)> {
    let spare = buf.spare_capacity_mut();
    let mut iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: spare.len(),
    };
    // Room for one cmsg with a timespec (u64s keep it aligned for cmsghdr).
    let mut control = [0u64; 8];
    // SAFETY: a zeroed msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: the iovec points at `spare.len()` writable bytes of `buf`.
    let n = unsafe { libc::recvmsg(tcp.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the kernel initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    let mut stamp = None;
    // SAFETY: walking the control messages the kernel wrote into `control`, bounded by
    // `msg_controllen`; the timestamp is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                if ts.tv_sec > 0 {
                    stamp = Some(UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n, stamp))
}

/// Open a connection to `ep`: resolve, try each address in turn, `TCP_NODELAY`, TLS when the URL says so.
pub async fn connect(ep: &Endpoint, opts: &NetOptions) -> Result<Stream, ClientError> {
    let fut = async {
        let tcp = connect_tcp(ep, opts).await?;
        if !ep.tls {
            if opts.rx_timestamps {
                // Best effort: without stamps, reads fall back to the time they returned.
                let _ = set_rx_timestamps(&tcp);
            }
            return Ok(Stream::Plain(tcp));
        }
        let connector = match &opts.tls {
            Some(c) => c.clone(),
            None => tls_connector(false)?,
        };
        let name = ServerName::try_from(ep.host.clone()).map_err(|e| ClientError::Tls {
            host: ep.host.clone(),
            source: Arc::new(io::Error::new(io::ErrorKind::InvalidInput, e)),
        })?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| ClientError::Tls {
                host: ep.host.clone(),
                source: Arc::new(e),
            })?;
        Ok(Stream::Tls(Box::new(tls)))
    };
    match tokio::time::timeout(opts.connect_timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::ConnectTimeout {
            target: ep.origin(),
            after: opts.connect_timeout,
        }),
    }
}

async fn connect_tcp(ep: &Endpoint, opts: &NetOptions) -> Result<TcpStream, ClientError> {
    let addrs: Vec<SocketAddr> = match ep.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, ep.port)],
        Err(_) => tokio::net::lookup_host((ep.host.as_str(), ep.port))
            .await
            .map_err(|e| ClientError::Resolve {
                host: ep.host.clone(),
                source: Arc::new(e),
            })?
            .collect(),
    };
    // With a source address, only destinations of the same family can work.
    let addrs: Vec<SocketAddr> = match opts.local_addr {
        Some(local) => addrs
            .into_iter()
            .filter(|a| a.is_ipv4() == local.is_ipv4())
            .collect(),
        None => addrs,
    };
    let mut last = None;
    for addr in &addrs {
        match connect_one(*addr, opts.local_addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some((*addr, e)),
        }
    }
    match last {
        Some((addr, e)) => Err(ClientError::Connect {
            addr: addr.to_string(),
            source: Arc::new(e),
        }),
        None => Err(ClientError::Resolve {
            host: ep.host.clone(),
            source: Arc::new(io::Error::new(io::ErrorKind::NotFound, "no usable address")),
        }),
    }
}

async fn connect_one(addr: SocketAddr, local: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = local {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    // Small chat frames must not wait for Nagle (anchors.md: p99 5 ms -> 44 ms without it).
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A TLS connector with the ring provider: system roots, or (insecure) any certificate accepted.
///
/// Build it once and share it: every connection clones the same `Arc<ClientConfig>`.
pub fn tls_connector(insecure: bool) -> Result<TlsConnector, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::TlsConfig(e.to_string()))?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let why = found
                .errors
                .first()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "none found".into());
            return Err(ClientError::TlsConfig(format!(
                "no system root certificates ({why})"
            )));
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// `--insecure`: accept any server certificate (self-signed test servers). The handshake signatures
/// are still checked, so the peer must hold the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stamped_reads_say_when_the_data_reached_the_socket() {
        use tokio::io::AsyncWriteExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ep = Endpoint::parse(&format!("ws://{}/", l.local_addr().unwrap())).unwrap();
        let opts = NetOptions {
            rx_timestamps: true,
            ..NetOptions::default()
        };
        let s = connect(&ep, &opts).await.unwrap();
        let (mut server, _) = l.accept().await.unwrap();
        assert!(rx_timestamps_on(s.tcp()));
        // The kernel turns stamping on a moment after the first socket asks (deferred work), so
        // the first data may come unstamped: retry until a read is stamped.
        let mut buf = bytes::BytesMut::with_capacity(64);
        let mut stamped = None;
        for _ in 0..50 {
            buf.clear();
            let sent = SystemTime::now();
            server.write_all(b"hello").await.unwrap();
            // Let the data wait in the socket: the stamp is its arrival, not the read.
            tokio::time::sleep(Duration::from_millis(30)).await;
            s.tcp().readable().await.unwrap();
            let (n, stamp) = recv_stamped(s.tcp(), &mut buf).unwrap();
            let read = SystemTime::now();
            assert_eq!((n, &buf[..]), (5, &b"hello"[..]));
            if let Some(stamp) = stamp {
                stamped = Some((sent, stamp, read));
                break;
            }
        }
        let (sent, stamp, read) = stamped.expect("a kernel receive stamp");
        assert!(
            stamp >= sent - Duration::from_millis(1),
            "{stamp:?} {sent:?}"
        );
        assert!(read.duration_since(stamp).unwrap() >= Duration::from_millis(25));
        // Nothing more: WouldBlock, and no stamp without SO_TIMESTAMPNS.
        let e = recv_stamped(s.tcp(), &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        let plain = connect(&ep, &NetOptions::default()).await.unwrap();
        let (mut server2, _) = l.accept().await.unwrap();
        assert!(!rx_timestamps_on(plain.tcp()));
        server2.write_all(b"x").await.unwrap();
        plain.tcp().readable().await.unwrap();
        assert_eq!(recv_stamped(plain.tcp(), &mut buf).unwrap(), (1, None));
    }

    #[tokio::test]
    async fn refused_port_is_a_connect_error_naming_the_address() {
        // Bind then drop to get a port that is (very likely) closed.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let ep = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = connect(&ep, &NetOptions::default()).await.unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err}");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn binds_the_requested_source_address_and_sets_nodelay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let ep = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let opts = NetOptions {
            local_addr: Some("127.0.0.2".parse().unwrap()),
            ..NetOptions::default()
        };
        let s = connect(&ep, &opts).await.unwrap();
        assert_eq!(s.local_addr().unwrap().ip().to_string(), "127.0.0.2");
        assert!(s.tcp().nodelay().unwrap());
        let (_peer, from) = listener.accept().await.unwrap();
        assert_eq!(from.ip().to_string(), "127.0.0.2");
    }

    #[test]
    fn insecure_and_system_tls_configs_build() {
        tls_connector(true).unwrap();
        // System roots may be absent in minimal containers; then the error says so.
        if let Err(e) = tls_connector(false) {
            assert!(e.to_string().contains("root certificates"), "{e}");
        }
    }
}
