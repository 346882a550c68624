//! HTTP routing (hyper 1): mounted Engine.IO endpoints, WebSocket upgrades (`/ws/ROOM`, `/echo`),
//! `/healthz`, `/metrics`, the built-in chat page or `--static DIR`, and CORS as the original app's
//! `cors({origin: "*"})`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_util::FutureExt as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::server::BoxFut;
use crate::wire::http::RequestHead;

use super::assets;
use super::server::{ConnInfo, Shared};
use super::wsconn::WsIo;

/// Every response body is complete in memory (long-polls wait before building theirs).
pub type Body = Full<Bytes>;

/// A response with a body and content type.
pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body)
}

/// A JSON response.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    respond(status, "application/json", body)
}

/// Requests get this long to send their head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// HTTP/1.1 with keep-alive and upgrades (hyper), until the client goes or shutdown.
async fn serve_http<S>(shared: Arc<Shared>, stream: S, info: ConnInfo)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc_shared = shared.clone();
    let after: AfterUpgrade = Arc::default();
    let svc_after = after.clone();
    let service = hyper::service::service_fn(move |req| {
        let shared = svc_shared.clone();
        let after = svc_after.clone();
        async move { Ok::<_, Infallible>(route(shared, req, info, &after).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut shutdown = shared.shutdown.clone();
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(peer = %info.peer, error = %e, "http connection error");
            }
        }
        _ = shutdown.wait() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
    // A WebSocket upgraded on this connection runs here, in the connection's own task: it stays
    // counted as this one connection (`--max-connections`, what shutdown waits for).
    let upgraded = after.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(run) = upgraded {
        run.await;
    }
}

/// Where a request that upgrades its connection leaves what runs on the upgraded stream.
type AfterUpgrade = Arc<std::sync::Mutex<Option<BoxFut<()>>>>;

/// Route one request.
async fn route(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    info: ConnInfo,
    after: &AfterUpgrade,
) -> Response<Body> {
    shared.metrics.http_requests.fetch_add(1, Ordering::Relaxed);
    let preflight_headers = (req.method() == Method::OPTIONS).then(|| {
        req.headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
    });
    let mut resp = match preflight_headers {
        Some(h) => preflight(h),
        None => route_inner(&shared, req, info, after).await,
    };
    // cors({origin: "*"}): every answer may be read by a page from any origin (a React dev server on
    // another port polls /socket.io/ with credentials off).
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        resp.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    resp
}

/// CORS preflight as the `cors` middleware answers it: 204, the allowed methods, the requested
/// headers reflected.
fn preflight(request_headers: Option<HeaderValue>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET,HEAD,PUT,PATCH,POST,DELETE"),
    );
    if let Some(v) = request_headers {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        h.insert(
            header::VARY,
            HeaderValue::from_static("Access-Control-Request-Headers"),
        );
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

async fn route_inner(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    info: ConnInfo,
    after: &AfterUpgrade,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let upgrade = is_websocket_upgrade(&req);

    if upgrade {
        return match websocket_route(shared, &path, &query, info) {
            Ok(run) => upgrade_then(req, run, after),
            Err(resp) => *resp,
        };
    }
    if let Some(resp) = client_script(shared, &req, &path) {
        return resp;
    }
    for (mount, endpoint) in &shared.mounts {
        if path == *mount || path.starts_with(mount.as_str()) {
            return endpoint.clone().http(req, info).await;
        }
    }

    match (req.method(), path.as_str()) {
        (&Method::GET | &Method::HEAD, "/healthz") => healthz(shared),
        (&Method::GET | &Method::HEAD, "/metrics") => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.metrics.render(),
        ),
        (&Method::GET | &Method::HEAD, "/echo") | (&Method::GET | &Method::HEAD, "/ws/") => text(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks WebSocket\n",
        ),
        (&Method::GET | &Method::HEAD, p) if p.starts_with("/ws/") => text(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks WebSocket\n",
        ),
        (&Method::GET | &Method::HEAD, p) => front_end(shared, p).await,
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
    }
}

/// `GET /socket.io/socket.io.js` (and `.min.js`, `.esm.min.js`): the project's own client
/// script, where the npm server serves its client bundle (its `serveClient` option), so that
/// pages which load the client from the relay work. `None` for anything else, or when nothing is
/// mounted at `/socket.io/`. (HEAD: hyper sends the head alone, with the body's length.)
fn client_script(shared: &Shared, req: &Request<Incoming>, path: &str) -> Option<Response<Body>> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return None;
    }
    let body = assets::client_script(path)?;
    if !shared.mounts.iter().any(|(m, _)| m == "/socket.io/") {
        return None;
    }
    let etag = assets::client_etag();
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').any(|t| {
                let t = t.trim();
                t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag
            })
        });
    let mut r = if fresh {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        respond(
            StatusCode::OK,
            "application/javascript; charset=utf-8",
            Bytes::from_static(body),
        )
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=0"),
    );
    Some(r)
}

fn healthz(shared: &Shared) -> Response<Body> {
    let m = &shared.metrics;
    let mut body = serde_json::json!({
        "status": if shared.is_shutting_down() { "shutting_down" } else { "ok" },
        "connections": m.connections_all(),
        "sockets": m.sockets.load(Ordering::Relaxed),
        "rooms": m.rooms.load(Ordering::Relaxed),
        "uptime_seconds": (m.uptime_secs() * 1000.0).round() / 1000.0,
        "version": env!("CARGO_PKG_VERSION"),
    });
    // With --redis: the cluster link's state (a server without Redis still serves its own
    // clients, so it stays healthy).
    if m.redis.enabled.load(Ordering::Relaxed)
        && let Some(o) = body.as_object_mut()
    {
        let up = m.redis.connected.load(Ordering::Relaxed) == 1;
        o.insert(
            "redis".into(),
            serde_json::Value::from(if up { "connected" } else { "disconnected" }),
        );
    }
    let status = if shared.is_shutting_down() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json(status, body.to_string())
}

/// `/` and its assets: `--static DIR` when given, else the built-in chat page. (HEAD: hyper
/// sends the head alone, with the body's length.)
async fn front_end(shared: &Shared, path: &str) -> Response<Body> {
    if let Some(dir) = &shared.static_dir {
        match dir.resolve(path) {
            Some(file) => match tokio::fs::read(&file.path).await {
                Ok(bytes) => {
                    let mut r = respond(StatusCode::OK, file.content_type, bytes);
                    if file.content_type.starts_with("text/html") {
                        r.headers_mut()
                            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                    }
                    r
                }
                Err(e) => {
                    tracing::warn!(file = %file.path.display(), error = %e, "static file unreadable");
                    text(StatusCode::INTERNAL_SERVER_ERROR, "file unreadable\n")
                }
            },
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    } else if shared.config.web_page {
        match assets::lookup(path) {
            Some((content_type, body)) => {
                let mut r = respond(StatusCode::OK, content_type, Bytes::from_static(body));
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                r
            }
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    } else {
        text(StatusCode::NOT_FOUND, "not found\n")
    }
}

/// What runs on an accepted WebSocket.
pub type WsRun = Box<dyn FnOnce(WsIo) -> BoxFut<()> + Send>;

/// Where a WebSocket upgrade request for `path?query` goes: a mounted Engine.IO endpoint, `/echo`
/// or `/ws/ROOM`; `Err` is the refusal to send instead of `101`.
pub fn websocket_route(
    shared: &Arc<Shared>,
    path: &str,
    query: &str,
    info: ConnInfo,
) -> Result<WsRun, Box<Response<Body>>> {
    for (mount, endpoint) in &shared.mounts {
        if path == mount || path.starts_with(mount.as_str()) {
            let accept = endpoint.accept_websocket(query)?;
            let ep = endpoint.clone();
            return Ok(Box::new(move |io| ep.websocket(io, accept, info)));
        }
    }
    if shared.is_shutting_down() {
        return Err(Box::new(text(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down\n",
        )));
    }
    if path == "/echo" {
        let shared = shared.clone();
        return Ok(Box::new(move |io| {
            Box::pin(super::plainws::echo(shared, io, info))
        }));
    }
    if let (Some(room), Some(adapter)) = (path.strip_prefix("/ws/"), shared.plain_rooms.clone()) {
        let room = super::static_files::percent_decode(room).unwrap_or_default();
        if room.is_empty() || room.contains('/') || room.len() > super::chat::MAX_ROOM_LEN {
            return Err(Box::new(text(
                StatusCode::BAD_REQUEST,
                "usage: /ws/ROOM?name=NAME\n",
            )));
        }
        let name = query_param(query, "name")
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| format!("guest-{}", info.id));
        // The name goes out with every message of this client: bounded like a room id.
        if name.len() > super::chat::MAX_ROOM_LEN {
            return Err(Box::new(text(
                StatusCode::BAD_REQUEST,
                "usage: /ws/ROOM?name=NAME (the name is at most 256 bytes)\n",
            )));
        }
        let shared = shared.clone();
        return Ok(Box::new(move |io| {
            Box::pin(super::plainws::plain_room(
                shared, adapter, io, room, name, info,
            ))
        }));
    }
    Err(Box::new(text(
        StatusCode::NOT_FOUND,
        "no WebSocket endpoint at this path\n",
    )))
}

/// Serve one TCP connection. The first request head is read here with `wire::http`: a WebSocket
/// upgrade is answered on the raw stream (no HTTP machinery stays behind for the life of the
/// connection, which matters for 100k idle sockets); anything else goes to hyper with the bytes
/// already read replayed in front of the stream.
pub async fn serve_connection(shared: Arc<Shared>, mut stream: TcpStream, info: ConnInfo) {
    use tokio::io::AsyncReadExt as _;
    let mut buf = BytesMut::new();
    let deadline = tokio::time::Instant::now() + HEADER_READ_TIMEOUT;
    loop {
        buf.reserve(1024);
        let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Err(_) => {
                tracing::debug!(peer = %info.peer, "no request head in time");
                return;
            }
            Ok(Ok(_)) => {}
        };
        match RequestHead::parse(&buf) {
            Ok(None) if buf.len() <= crate::wire::http::MAX_HEAD_LEN => continue,
            Ok(Some((head, len))) if wants_websocket(&head) => {
                let answer = raw_upgrade(&shared, &head, info);
                let _ = buf.split_to(len);
                match answer {
                    Ok((response, run)) => {
                        use tokio::io::AsyncWriteExt as _;
                        if stream.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                        shared.metrics.http_requests.fetch_add(1, Ordering::Relaxed);
                        // Whatever the client sent after its head is the first frame data.
                        // An idle connection keeps no head buffer.
                        let leftover = if buf.is_empty() {
                            drop(buf);
                            BytesMut::new()
                        } else {
                            buf
                        };
                        run(WsIo::Tcp(stream, leftover)).await;
                    }
                    Err(refusal) => {
                        use tokio::io::AsyncWriteExt as _;
                        shared.metrics.http_requests.fetch_add(1, Ordering::Relaxed);
                        let _ = stream.write_all(&refusal).await;
                        let _ = stream.shutdown().await;
                    }
                }
                return;
            }
            // Plain HTTP, a head too large or malformed: hyper answers it (400/431 included).
            _ => break,
        }
    }
    // Boxed: the HTTP machinery's state is not part of every connection task's future.
    Box::pin(serve_http(
        shared,
        Prefixed::new(buf.freeze(), stream),
        info,
    ))
    .await;
}

/// Whether the client asks for a WebSocket (RFC 6455 section 4.2.1 item 3: `Upgrade: websocket`).
fn wants_websocket(head: &RequestHead<'_>) -> bool {
    head.header_list("upgrade")
        .iter()
        .any(|t| t.eq_ignore_ascii_case("websocket"))
}

/// The `101` answer and what to run, or the bytes of the refusal.
fn raw_upgrade(
    shared: &Arc<Shared>,
    head: &RequestHead<'_>,
    info: ConnInfo,
) -> Result<(String, WsRun), Vec<u8>> {
    if let Err(e) = head.validate_websocket_upgrade() {
        return Err(crate::wire::http::server_response_refusal(&e).into_bytes());
    }
    let (path, query) = head.path.split_once('?').unwrap_or((head.path, ""));
    match websocket_route(shared, path, query, info) {
        Ok(run) => {
            let key = head.websocket_key().unwrap_or_default();
            let accept = crate::wire::http::accept_key(key);
            Ok((
                crate::wire::http::server_response_101(&accept, None, None),
                run,
            ))
        }
        Err(resp) => Err(raw_response(&resp)),
    }
}

/// A complete response as bytes (for refusals written on the raw stream), connection closing.
fn raw_response(resp: &Response<Body>) -> Vec<u8> {
    use http_body_util::BodyExt as _;
    use std::io::Write as _;
    let body: Bytes = resp
        .body()
        .clone()
        .collect()
        .now_or_never()
        .and_then(Result::ok)
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let status = resp.status();
    let mut out = Vec::with_capacity(160 + body.len());
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in resp.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let _ = write!(
        out,
        "access-control-allow-origin: *\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    out.extend_from_slice(&body);
    out
}

/// A stream with bytes already read from it put back in front.
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Whether a request asks to switch to WebSocket (RFC 6455 section 4.2.1: GET, `Upgrade: websocket`,
/// `Connection: Upgrade`).
pub fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    req.method() == Method::GET
        && has_token(header::UPGRADE, "websocket")
        && has_token(header::CONNECTION, "upgrade")
}

/// Answer a WebSocket upgrade through hyper (for connections whose first request was plain HTTP):
/// 101 with Sec-WebSocket-Accept, then run `then` on the upgraded stream.
fn upgrade_then(mut req: Request<Incoming>, then: WsRun, after: &AfterUpgrade) -> Response<Body> {
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let version_ok = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let Some(key) = key else {
        return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
    };
    if !version_ok {
        // RFC 6455 section 4.4: tell the client which version we speak.
        let mut r = text(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported WebSocket version\n",
        );
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return r;
    }
    let accept = crate::wire::http::accept_key(key.to_str().unwrap_or_default());
    let on_upgrade = hyper::upgrade::on(&mut req);
    *after.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::pin(async move {
        match on_upgrade.await {
            Ok(upgraded) => then(WsIo::Upgraded(TokioIo::new(upgraded))).await,
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    }));
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

/// The value of `name` in a query string (`a=1&name=Ana`), percent-decoded (`+` is a space).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| {
            super::static_files::percent_decode(&v.replace('+', " "))
                .unwrap_or_else(|| v.to_string())
        })
    })
}
