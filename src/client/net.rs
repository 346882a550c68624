//! TCP and TLS connections for the client: resolve, bind a chosen source address, connect with a
//! timeout, `TCP_NODELAY`, and rustls (ring provider, system roots, or `--insecure`).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

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
}

impl std::fmt::Debug for NetOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            connect_timeout: Duration::from_secs(10),
            local_addr: None,
            tls: None,
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

/// Open a connection to `ep`: resolve, try each address in turn, `TCP_NODELAY`, TLS when the URL says so.
pub async fn connect(ep: &Endpoint, opts: &NetOptions) -> Result<Stream, ClientError> {
    let fut = async {
        let tcp = connect_tcp(ep, opts).await?;
        if !ep.tls {
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
