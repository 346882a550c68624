//! The listener, connection dispatch and graceful shutdown: one task per TCP connection, a bounded
//! connection count, TCP_NODELAY, a deep listen backlog, and a shutdown that closes every connection
//! (WebSocket close 1001, pending polls answered) and waits for them, bounded in time.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use super::adapter::Adapter;
use super::http::Body;
use super::metrics::Metrics;
use super::outbox::{CloseReason, Outbox};
use super::static_files::StaticDir;
use super::wsconn::WsIo;

/// A boxed, sendable future (the endpoint trait is object-safe).
pub type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Everything `wschat serve` can be told (the CLI fills it from `ServeArgs`).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Engine.IO pingInterval.
    pub ping_interval: Duration,
    /// Engine.IO pingTimeout.
    pub ping_timeout: Duration,
    /// Largest accepted message / polling body (Engine.IO maxPayload).
    pub max_payload: usize,
    /// Time a client has to send its Socket.IO CONNECT.
    pub connect_timeout: Duration,
    /// Time a client has to finish a polling -> WebSocket upgrade after the probe.
    pub upgrade_timeout: Duration,
    /// Time a polling POST has to deliver its whole body once its head is in (408 after: a
    /// client trickling a body cannot hold the request and its buffer for ever).
    pub body_timeout: Duration,
    /// Outbound queue bound per client, in packets.
    pub queue_packets: usize,
    /// Outbound queue bound per client, in bytes.
    pub queue_bytes: usize,
    /// Maximum concurrent TCP connections.
    pub max_connections: usize,
    /// How long shutdown waits for connections to finish.
    pub shutdown_grace: Duration,
    /// `--static DIR`: served at `/` instead of the built-in chat page.
    pub static_dir: Option<PathBuf>,
    /// Serve the built-in chat page at `/` (when no static dir).
    pub web_page: bool,
    /// Listen backlog.
    pub backlog: i32,
    /// SO_REUSEPORT: several processes may listen on the same address.
    pub reuse_port: bool,
}

impl Default for ServerConfig {
    /// The defaults of the `socket.io` npm server (pingInterval 25 s, pingTimeout 20 s, maxPayload
    /// 1 MB, connectTimeout 45 s, upgradeTimeout 10 s).
    fn default() -> Self {
        ServerConfig {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            connect_timeout: Duration::from_secs(45),
            upgrade_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            queue_packets: 4096,
            queue_bytes: 16 << 20,
            max_connections: 200_000,
            shutdown_grace: Duration::from_secs(4),
            static_dir: None,
            web_page: true,
            backlog: 4096,
            reuse_port: false,
        }
    }
}

/// Facts about the TCP connection a request or WebSocket arrived on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub id: u64,
}

/// A protocol mounted at a path (`/socket.io/`, `/engine.io/`): Engine.IO over polling and WebSocket.
pub trait Endpoint: Send + Sync + 'static {
    /// Called once when the server is bound, with the state every connection shares.
    fn attach(&self, shared: &Arc<Shared>);
    /// A plain HTTP request under the mount path (long-polling GET/POST).
    fn http(self: Arc<Self>, req: Request<Incoming>, info: ConnInfo) -> BoxFut<Response<Body>>;
    /// A WebSocket upgrade request with this query string: `Ok` to accept (the value is handed to
    /// [`Endpoint::websocket`]), `Err(response)` to refuse before switching protocols.
    fn accept_websocket(&self, query: &str) -> Result<WsAccept, Box<Response<Body>>>;
    /// Run an accepted WebSocket until it ends.
    fn websocket(self: Arc<Self>, io: WsIo, accept: WsAccept, info: ConnInfo) -> BoxFut<()>;
    /// The server is shutting down: close every session (pending polls answered, WebSockets
    /// closed with 1001).
    fn shutdown(&self);
}

/// What an endpoint decided about a WebSocket upgrade request (e.g. the Engine.IO sid to attach to).
#[derive(Debug, Clone, Default)]
pub struct WsAccept {
    pub sid: Option<String>,
}

/// State every connection can reach.
pub struct Shared {
    pub config: ServerConfig,
    pub metrics: Arc<Metrics>,
    pub(crate) mounts: Vec<(String, Arc<dyn Endpoint>)>,
    /// The rooms plain WebSocket clients (`/ws/ROOM`) join, with the event name their messages
    /// become; `None` = `/ws/` is not served.
    pub(crate) plain_rooms: Option<Arc<dyn Adapter>>,
    pub(crate) static_dir: Option<StaticDir>,
    pub(crate) shutdown: ShutdownSignal,
    pub(crate) live: Arc<LiveConns>,
    next_id: AtomicU64,
}

impl Shared {
    /// A process-unique id for a connection, socket or room member.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
    /// A new outbox sized by the configuration.
    pub fn new_outbox(&self) -> Outbox {
        Outbox::new(self.config.queue_packets, self.config.queue_bytes)
    }
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.rx.borrow()
    }
}

/// Builds a server: configuration, mounted endpoints, the rooms for plain WebSocket clients.
pub struct ServerBuilder {
    config: ServerConfig,
    metrics: Arc<Metrics>,
    mounts: Vec<(String, Arc<dyn Endpoint>)>,
    plain_rooms: Option<Arc<dyn Adapter>>,
}

impl ServerBuilder {
    pub fn new(config: ServerConfig) -> Self {
        ServerBuilder {
            config,
            metrics: Arc::new(Metrics::new()),
            mounts: Vec::new(),
            plain_rooms: None,
        }
    }

    /// The metrics every part of this server reports into (share it with adapters and apps).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Mount an endpoint at `path` (normalised to end with `/`, as the node server's
    /// `addTrailingSlash`).
    pub fn mount(mut self, path: &str, endpoint: Arc<dyn Endpoint>) -> Self {
        let mut p = path.to_string();
        if !p.starts_with('/') {
            p.insert(0, '/');
        }
        if !p.ends_with('/') {
            p.push('/');
        }
        self.mounts.push((p, endpoint));
        self
    }

    /// Serve `/ws/ROOM?name=NAME` for plain WebSocket clients in these rooms.
    pub fn plain_rooms(mut self, adapter: Arc<dyn Adapter>) -> Self {
        self.plain_rooms = Some(adapter);
        self
    }

    /// Bind the listener (backlog from the config, SO_REUSEADDR, dual-stack for `[::]`,
    /// SO_REUSEPORT when configured).
    pub fn bind(self, addr: SocketAddr) -> io::Result<Server> {
        let listener = bind_listener(addr, self.config.backlog, self.config.reuse_port)?;
        let static_dir = match &self.config.static_dir {
            Some(dir) => Some(StaticDir::open(dir).map_err(|e| {
                io::Error::new(e.kind(), format!("--static {}: {e}", dir.display()))
            })?),
            None => None,
        };
        let (tx, rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            config: self.config,
            metrics: self.metrics,
            mounts: self.mounts,
            plain_rooms: self.plain_rooms,
            static_dir,
            shutdown: ShutdownSignal { rx },
            live: Arc::new(LiveConns::default()),
            next_id: AtomicU64::new(1),
        });
        for (_, endpoint) in &shared.mounts {
            endpoint.attach(&shared);
        }
        Ok(Server {
            listener,
            shared,
            trigger: tx,
        })
    }
}

/// Open a TCP listener with a deep backlog (tokio's default of 128 overflows when hundreds of
/// clients connect at once; the kernel caps it at net.core.somaxconn). `reuse_port`: SO_REUSEPORT,
/// so that several processes (each with it) share the address and the kernel spreads connections.
pub fn bind_listener(addr: SocketAddr, backlog: i32, reuse_port: bool) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    #[cfg(not(unix))]
    if reuse_port {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "--reuse-port needs SO_REUSEPORT (Unix)",
        ));
    }
    if addr.is_ipv6() {
        // `[::]:3001` also accepts IPv4 clients, as node does.
        let _ = socket.set_only_v6(false);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.max(1024))?;
    TcpListener::from_std(socket.into())
}

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    trigger: watch::Sender<bool>,
}

/// Stops a running server from another task (`Server::handle`).
#[derive(Clone)]
pub struct ShutdownHandle {
    trigger: watch::Sender<bool>,
}

impl ShutdownHandle {
    /// Begin a graceful shutdown.
    pub fn shutdown(&self) {
        let _ = self.trigger.send(true);
    }
}

impl Server {
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            trigger: self.trigger.clone(),
        }
    }

    /// Accept connections until `stop` resolves (or a [`ShutdownHandle`] fires), then shut down
    /// gracefully: stop accepting, close every connection (1001 / pending polls answered), wait up
    /// to `shutdown_grace` for them to finish. Returns how many connections were still open at the
    /// deadline (0 = clean).
    pub async fn run(self, stop: impl Future<Output = ()>) -> usize {
        let Server {
            listener,
            shared,
            trigger,
        } = self;
        let tracker = Tracker::default();
        let mut shutdown_rx = shared.shutdown.rx.clone();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                _ = shutdown_rx.wait_for(|v| *v) => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => accept_one(&shared, &tracker, stream, peer),
                    Err(e) => {
                        // EMFILE/ENFILE/ECONNABORTED: log and back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        let open = tracker.count();
        tracing::info!(connections = open, "shutting down");
        let _ = trigger.send(true);
        for (_, endpoint) in &shared.mounts {
            endpoint.shutdown();
        }
        shared.live.close_all(CloseReason::ServerShutdown);
        let left = tokio::time::timeout(shared.config.shutdown_grace, tracker.idle())
            .await
            .map_or_else(|_| tracker.count(), |_| 0);
        if left > 0 {
            tracing::warn!(
                connections = left,
                "shutdown deadline reached; dropping connections"
            );
        }
        left
    }
}

fn accept_one(shared: &Arc<Shared>, tracker: &Tracker, stream: TcpStream, peer: SocketAddr) {
    if tracker.count() >= shared.config.max_connections {
        tracing::warn!(%peer, max = shared.config.max_connections, "connection limit reached; refusing");
        drop(stream);
        return;
    }
    // Small chat frames must not wait for Nagle (p99 5 ms -> 44 ms without this).
    let _ = stream.set_nodelay(true);
    let guard = tracker.enter();
    let shared = shared.clone();
    let info = ConnInfo {
        peer,
        id: shared.next_id(),
    };
    tokio::spawn(async move {
        super::http::serve_connection(shared, stream, info).await;
        drop(guard);
    });
}

/// The shutdown flag every connection can watch.
#[derive(Clone)]
pub struct ShutdownSignal {
    pub(crate) rx: watch::Receiver<bool>,
}

impl ShutdownSignal {
    /// Resolves once shutdown has begun.
    pub async fn wait(&mut self) {
        let _ = self.rx.wait_for(|v| *v).await;
    }
}

/// Outboxes of live long-lived connections (WebSockets and polling sessions), so shutdown can close
/// them all. Weak references: a connection that ends takes itself out on drop.
#[derive(Default)]
pub struct LiveConns {
    map: Mutex<HashMap<u64, Weak<Outbox>>>,
}

impl LiveConns {
    /// Register a connection's outbox; the returned guard unregisters it.
    pub fn register(self: &Arc<Self>, id: u64, outbox: &Arc<Outbox>) -> LiveGuard {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::downgrade(outbox));
        LiveGuard {
            live: Arc::downgrade(self),
            id,
        }
    }

    fn close_all(&self, reason: CloseReason) {
        let all: Vec<Weak<Outbox>> = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for ob in all.iter().filter_map(Weak::upgrade) {
            ob.close(reason.clone());
        }
    }
}

/// Removes a connection from [`LiveConns`] when dropped.
pub struct LiveGuard {
    live: Weak<LiveConns>,
    id: u64,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if let Some(live) = self.live.upgrade() {
            live.map
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.id);
        }
    }
}

/// Counts running connection tasks; `idle()` resolves when none are left.
#[derive(Clone, Default)]
struct Tracker {
    inner: Arc<TrackerInner>,
}

#[derive(Default)]
struct TrackerInner {
    count: AtomicUsize,
    idle: Notify,
}

struct TrackerGuard(Arc<TrackerInner>);

impl Drop for TrackerGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Tracker {
    fn enter(&self) -> TrackerGuard {
        self.inner.count.fetch_add(1, Ordering::AcqRel);
        TrackerGuard(self.inner.clone())
    }
    fn count(&self) -> usize {
        self.inner.count.load(Ordering::Acquire)
    }
    async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}
