//! One Socket.IO client driver over the protocol core, used by `send` and `bench`.
//!
//! Two layers over the same code:
//! - [`Conn`]: one connection (one namespace) that the caller drives in its own task. One
//!   `recv` = one socket read (or one polling response): every complete packet in it goes to a
//!   callback, borrowed ([`Received`] with the raw JSON of the arguments, or the untouched packet
//!   text with [`Conn::recv_raw`]); pings are answered inside. Emits are queued
//!   ([`Conn::emit`], [`Conn::emit_with_ack`], [`Conn::queue_raw`]) and written by one
//!   [`Conn::flush`]. The caller runs the dead-server timer ([`Conn::poll_timeout`] /
//!   [`Conn::handle_timeout`]). Per connection: the Engine.IO session, a read buffer that exists
//!   only while bytes are pending, a write buffer, about 2.3 KB in all when idle.
//! - [`Client`]: a [`Conn`] in its own task, with [`Emitter::emit`] (resolves once written),
//!   [`Emitter::emit_with_ack`] (a [`PendingAck`] with a timeout) and [`Client::next_event`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), wschat::client::ClientError> {
//! use wschat::client::{Client, ClientOptions, Conn, Endpoint, Incoming, Received};
//! use std::time::Duration;
//!
//! let opts = ClientOptions {
//!     endpoint: Endpoint::parse("http://127.0.0.1:3001")?,
//!     ..ClientOptions::default()
//! };
//! // Simple: a task per connection, channels.
//! let mut client = Client::connect(opts.clone()).await?;
//! client.emit("join_room", vec!["1".into()]).await?;
//! let ack = client.emit_with_ack("send_message", vec![serde_json::json!({"room": "1"})], Duration::from_secs(5)).await?;
//! if let Some(Incoming::Event(ev)) = client.next_event().await {
//!     println!("{} {:?} (ack {:?})", ev.name, ev.args, ack.args);
//! }
//! client.close().await?;
//!
//! // Lean: drive it yourself.
//! let (mut conn, _info) = Conn::connect(&opts).await?;
//! conn.queue_raw(r#"2["join_room","1"]"#)?;
//! conn.flush().await?;
//! let mut n = 0;
//! conn.recv(&mut |r| if let Received::Event { name, args, .. } = r { n += name.len() + args.len() }).await?;
//! conn.close().await?;
//! # Ok(()) }
//! ```

mod api;
pub mod conn;
pub mod http1;
pub mod net;
pub mod raw;
pub mod url;
pub mod wsio;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::wire::ws::ProtocolError;

pub use api::{Ack, Client, Emitter, EventMsg, Incoming, PendingAck};
pub use conn::{ClientOptions, Conn, ConnectInfo, Received, TransportMode};
pub use net::{NetOptions, Stream, tls_connector};
pub use url::Endpoint;

/// Everything that can go wrong in the client, each with what a person needs to act on it.
///
/// Cloneable (IO errors are shared) so one failure can be reported to every waiting caller.
/// Connect, Resolve and Tls carry the IO error as their `source`, not in their message: print the
/// chain ([`ClientError::chain`], or anyhow's) to see it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("invalid URL `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot resolve host `{host}`")]
    Resolve {
        host: String,
        source: Arc<io::Error>,
    },
    #[error("cannot connect to {addr}")]
    Connect {
        addr: String,
        source: Arc<io::Error>,
    },
    #[error("connecting to {target} timed out after {}", humantime::format_duration(*after))]
    ConnectTimeout { target: String, after: Duration },
    #[error("TLS handshake with `{host}` failed")]
    Tls {
        host: String,
        source: Arc<io::Error>,
    },
    #[error("TLS configuration: {0}")]
    TlsConfig(String),
    #[error("the server answered HTTP {status} {reason}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    HttpStatus {
        status: u16,
        reason: String,
        body: String,
    },
    #[error("HTTP: {0}")]
    Http(String),
    #[error("WebSocket handshake: {0}")]
    Handshake(String),
    /// (Not `#[from]`: the message already includes it; as a `source` chains would repeat it.)
    #[error("WebSocket: {0}")]
    WebSocket(ProtocolError),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("namespace {namespace} refused the connection: {message}")]
    ConnectRefused {
        namespace: String,
        message: String,
        data: Option<String>,
    },
    #[error("the server disconnected namespace {namespace}")]
    ServerDisconnect { namespace: String },
    #[error("the server closed the Engine.IO session")]
    SessionClosed,
    #[error("no ping from the server for {} (pingInterval + pingTimeout): connection considered dead", humantime::format_duration(*after))]
    PingTimeout { after: Duration },
    #[error("no ack for packet {id} within {}", humantime::format_duration(*after))]
    AckTimeout { id: u64, after: Duration },
    #[error("the server closed the connection while {during}")]
    Closed { during: &'static str },
    #[error("the client is closed")]
    ClientClosed,
    #[error("{0}")]
    Io(Arc<io::Error>),
}

impl From<ProtocolError> for ClientError {
    fn from(e: ProtocolError) -> Self {
        ClientError::WebSocket(e)
    }
}

impl ClientError {
    /// An IO error.
    pub fn io(e: io::Error) -> ClientError {
        ClientError::Io(Arc::new(e))
    }

    /// The message with its causes, `: `-separated (what a person should read).
    pub fn chain(&self) -> String {
        let mut s = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            s.push_str(": ");
            s.push_str(&c.to_string());
            cause = c.source();
        }
        s
    }
}
