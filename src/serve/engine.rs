//! Engine.IO v4 endpoints: drives the shared sans-IO `proto::engineio::ServerSession` over HTTP
//! long-polling (held GETs, POST bodies) and WebSocket (opened directly or upgraded from polling),
//! and hands message data to a pluggable [`EngineApp`] (the Socket.IO layer, or a plain echo).
//!
//! Each session has a core (the state machine, the held GET, the WebSocket it writes to) behind a
//! mutex that is only ever held briefly and never while calling the application; the application's
//! per-session state sits behind its own mutex. Once a session runs on WebSocket, sends skip the
//! state machine and push encoded frames straight into the connection's bounded [`Outbox`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Poll, Waker};
use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::sync::Notify;

use super::http::{Body, respond, text};
use super::metrics::Transport as MetricTransport;
use super::outbox::{CloseReason, Outbox};
use super::server::{BoxFut, ConnInfo, Endpoint, Shared, WsAccept};
use super::wsconn::{self, WsHandler, WsIo};
use crate::proto::engineio::{
    self as eio, Data, EngineError, ErrorCode, Packet, Query, Request as EioRequest, ServerEvent,
    ServerSession, ServerTransmit, SessionConfig, TransportKind, WsFrame,
};
use crate::wire::ws::{Message, Opcode};

/// An application on top of Engine.IO sessions.
pub trait EngineApp: Send + Sync + 'static {
    /// Per-session state.
    type State: Send + 'static;
    /// A session opened.
    fn open(&self, session: &Arc<Session>) -> Self::State;
    /// A message (text or binary) arrived. `Err` closes the session with that reason.
    fn message(
        &self,
        state: &mut Self::State,
        session: &Arc<Session>,
        data: Data<'_>,
    ) -> Result<(), CloseReason>;
    /// When [`EngineApp::timeout`] should run next (e.g. the Socket.IO connect timeout).
    fn deadline(&self, _state: &Self::State) -> Option<Instant> {
        None
    }
    /// The deadline passed. `Err` closes the session with that reason.
    fn timeout(
        &self,
        _state: &mut Self::State,
        _session: &Arc<Session>,
        _now: Instant,
    ) -> Result<(), CloseReason> {
        Ok(())
    }
    /// The session ended (called exactly once).
    fn closed(&self, state: &mut Self::State, session: &Arc<Session>, reason: &CloseReason);
}

/// The core of a session, behind [`Session::core`].
struct Core {
    eio: ServerSession,
    /// The answer for the held polling GET, once there is one.
    poll_body: Option<String>,
    /// The held GET's task.
    poll_waker: Option<Waker>,
    /// The outbox of the WebSocket attached to this session (probing or upgraded).
    ws_target: Option<Arc<Outbox>>,
}

/// One Engine.IO session: what applications hold to send to a client.
pub struct Session {
    sid: Arc<str>,
    core: Mutex<Core>,
    /// Set once the session runs on WebSocket: sends go straight to this outbox.
    ws: OnceLock<Arc<Outbox>>,
    /// Kicks the timer task of polling-opened sessions when deadlines may have moved.
    timer: Notify,
    /// The first reason recorded for the end of the session (logged and counted).
    reason: OnceLock<CloseReason>,
    /// The state machine reported `Closed`.
    closed: AtomicBool,
    finished: AtomicBool,
    /// A polling POST of this session is being received or handled.
    posting: AtomicBool,
    peer: SocketAddr,
    shared: Arc<Shared>,
}

impl Session {
    /// The Engine.IO session id.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The transport in use now (`polling` or `websocket`).
    pub fn transport_name(&self) -> &'static str {
        if self.ws.get().is_some() {
            "websocket"
        } else {
            "polling"
        }
    }

    /// The server's shared state (configuration, metrics).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Send a text message (`4<text>`).
    pub fn send_text(&self, text: &str) {
        if let Some(ob) = self.ws.get() {
            let _ = self.push_ws(ob, std::slice::from_ref(&message_frame(text.as_bytes())));
            return;
        }
        let mut core = self.lock();
        core.eio.send_message(text);
        self.after_send(core);
    }

    /// Send a binary message.
    pub fn send_binary(&self, bytes: Bytes) {
        if let Some(ob) = self.ws.get() {
            let _ = self.push_ws(ob, std::slice::from_ref(&wsconn::binary_frame(&bytes)));
            return;
        }
        let mut core = self.lock();
        core.eio.send_binary(bytes);
        self.after_send(core);
    }

    /// Send pre-encoded server WebSocket frames (text frames carry `4<text>`, binary frames raw
    /// bytes): a broadcast encoded once for all recipients. All or none are queued.
    pub fn send_frames(&self, frames: &[Bytes]) -> Result<(), super::outbox::PushError> {
        if let Some(ob) = self.ws.get() {
            return self.push_ws(ob, frames);
        }
        let mut core = self.lock();
        for f in frames {
            let Some((op, payload)) = wsconn::frame_payload(f) else {
                continue;
            };
            let packet = match op {
                Opcode::Binary => Packet::Binary(payload),
                _ => match std::str::from_utf8(&payload) {
                    Ok(text) => match eio::PacketRef::parse_text(text) {
                        Ok(p) => p.to_owned_packet(),
                        Err(_) => continue,
                    },
                    Err(_) => continue,
                },
            };
            if !core.eio.send(packet) {
                return Err(super::outbox::PushError::Closed);
            }
        }
        self.after_send(core);
        Ok(())
    }

    fn push_ws(&self, ob: &Outbox, frames: &[Bytes]) -> Result<(), super::outbox::PushError> {
        let r = ob.push_all(frames);
        if r == Err(super::outbox::PushError::Full) {
            let _ = self.reason.set(CloseReason::SlowConsumer);
        }
        r
    }

    /// Bound the polling buffer like the WebSocket outbox, then write what the state machine says.
    fn after_send(&self, mut core: MutexGuard<'_, Core>) {
        let cfg = &self.shared.config;
        if core.eio.buffered_packets() > cfg.queue_packets
            || core.eio.buffered_bytes() > cfg.queue_bytes
        {
            let _ = self.reason.set(CloseReason::SlowConsumer);
            close_without_waiting(&mut core);
        }
        let closed = self.pump(&mut core);
        drop(core);
        self.timer.notify_one();
        if closed.is_some() {
            self.request_finish();
        }
    }

    /// Count one protocol error (`wschat_protocol_errors_total`) against this session's server.
    fn count_protocol_error(&self) {
        self.shared
            .metrics
            .protocol_errors
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Close the session from the server side (delivering what is queued first).
    pub fn close(&self, reason: CloseReason) {
        self.end(reason, false);
    }

    /// Close from the server side; `at_once`: without waiting for a GET to collect what is
    /// queued (a client that broke the polling rules).
    fn end(&self, reason: CloseReason, at_once: bool) {
        let _ = self.reason.set(reason);
        let mut core = self.lock();
        if at_once {
            close_without_waiting(&mut core);
        } else {
            core.eio.close(Instant::now());
        }
        let closed = self.pump(&mut core);
        drop(core);
        self.timer.notify_one();
        if closed.is_some() {
            self.request_finish();
        }
    }

    /// Write what the state machine produced: held-GET answers, WebSocket frames, closes. Returns
    /// the close reason when the session ended.
    fn pump(&self, core: &mut Core) -> Option<eio::CloseReason> {
        while let Some(t) = core.eio.poll_transmit() {
            match t {
                ServerTransmit::Poll(body) => {
                    match &mut core.poll_body {
                        Some(existing) => {
                            existing.push(char::from(eio::SEPARATOR));
                            existing.push_str(&body);
                        }
                        None => core.poll_body = Some(body),
                    }
                    if let Some(w) = core.poll_waker.take() {
                        w.wake();
                    }
                }
                ServerTransmit::Ws(packet) => {
                    // Session packets (open, pings, probes) are rare: no scratch buffer is kept.
                    let mut text_buf = String::new();
                    let frame = match packet.encode_ws(&mut text_buf) {
                        WsFrame::Text(t) => wsconn::text_frame(t.as_bytes()),
                        WsFrame::Binary(b) => wsconn::binary_frame(b),
                    };
                    if let Some(ob) = &core.ws_target
                        && ob.push(frame) == Err(super::outbox::PushError::Full)
                    {
                        let _ = self.reason.set(CloseReason::SlowConsumer);
                    }
                }
                ServerTransmit::CloseWs => {
                    if let Some(ob) = core.ws_target.take() {
                        let reason = match core.eio.close_reason() {
                            Some(r) => self.reason.get().cloned().unwrap_or_else(|| map_reason(r)),
                            None => CloseReason::Server("upgrade aborted".into()),
                        };
                        ob.close(reason);
                    }
                }
            }
        }
        let mut closed = None;
        while let Some(ev) = core.eio.poll_event() {
            match ev {
                ServerEvent::Upgraded => {
                    if let Some(ob) = core.ws_target.clone() {
                        let _ = self.ws.set(ob);
                        self.shared
                            .metrics
                            .moved(MetricTransport::Polling, MetricTransport::Websocket);
                        tracing::debug!(sid = %self.sid, "upgraded to websocket");
                    }
                }
                ServerEvent::Closed(r) => closed = Some(r),
                ServerEvent::Upgrading | ServerEvent::UpgradeAborted | ServerEvent::Heartbeat => {}
            }
        }
        if let Some(r) = closed {
            let _ = self.reason.set(map_reason(r));
            self.closed.store(true, Ordering::Release);
            if let Some(w) = core.poll_waker.take() {
                w.wake();
            }
        }
        closed
    }

    /// The session ended outside an endpoint call (an application's close, a slow consumer): wake
    /// the tasks that finish it (the timer task of polling sessions; WebSocket connections see
    /// their outbox closed by the state machine's `CloseWs`).
    fn request_finish(&self) {
        self.timer.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Why the session ended (or will end).
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.reason.get().cloned()
    }
}

fn map_reason(r: eio::CloseReason) -> CloseReason {
    match r {
        eio::CloseReason::PingTimeout => CloseReason::PingTimeout,
        eio::CloseReason::TransportClose => CloseReason::TransportClose,
        eio::CloseReason::TransportError => CloseReason::TransportError("transport error".into()),
        eio::CloseReason::ParseError => CloseReason::ProtocolError("Engine.IO parse error".into()),
        eio::CloseReason::ForcedClose => CloseReason::Server("forced close".into()),
        eio::CloseReason::ServerShutdown => CloseReason::ServerShutdown,
    }
}

/// The WebSocket text frame of an Engine.IO message `4<text>`.
pub fn message_frame(text: &[u8]) -> Bytes {
    let mut payload = Vec::with_capacity(text.len() + 1);
    payload.push(b'4');
    payload.extend_from_slice(text);
    let mut out = Vec::with_capacity(
        crate::wire::ws::header_len_for(payload.len() as u64, false) + payload.len(),
    );
    crate::wire::ws::encode_frame(&mut out, true, Opcode::Text, None, &payload);
    Bytes::from(out)
}

/// A session with its application state.
struct Slot<A: EngineApp> {
    session: Arc<Session>,
    state: Mutex<A::State>,
}

/// An Engine.IO endpoint (mounted at a path) running application `A`.
pub struct EngineEndpoint<A: EngineApp> {
    app: Arc<A>,
    shared: OnceLock<Arc<Shared>>,
    sessions: Mutex<HashMap<Arc<str>, Arc<Slot<A>>>>,
    /// Sessions the client closed by a polling POST (`1`) while no GET was held: the GET it had in
    /// flight still gets its noop (`6`) if it arrives within [`LATE_GET_GRACE`], later ones 400.
    closed_by_post: Mutex<HashMap<Arc<str>, Instant>>,
}

/// How long a polling GET that raced its own session's close packet is still answered with noop.
const LATE_GET_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

impl<A: EngineApp> EngineEndpoint<A> {
    pub fn new(app: Arc<A>) -> Arc<Self> {
        Arc::new(EngineEndpoint {
            app,
            shared: OnceLock::new(),
            sessions: Mutex::new(HashMap::new()),
            closed_by_post: Mutex::new(HashMap::new()),
        })
    }

    /// The application.
    pub fn app(&self) -> &Arc<A> {
        &self.app
    }

    /// Open sessions.
    pub fn session_count(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    fn lookup(&self, sid: &str) -> Option<Arc<Slot<A>>> {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sid)
            .cloned()
    }

    fn session_config(shared: &Shared) -> SessionConfig {
        let c = &shared.config;
        SessionConfig {
            ping_interval: c.ping_interval,
            ping_timeout: c.ping_timeout,
            max_payload: c.max_payload,
            upgrade_timeout: c.upgrade_timeout,
            ..SessionConfig::default()
        }
    }

    /// Create and register a session.
    fn open(
        &self,
        shared: &Arc<Shared>,
        transport: TransportKind,
        peer: SocketAddr,
    ) -> Arc<Slot<A>> {
        let sid = new_id();
        let now = Instant::now();
        let eio = ServerSession::new(sid.clone(), transport, Self::session_config(shared), now);
        let session = Arc::new(Session {
            sid: Arc::from(sid.as_str()),
            core: Mutex::new(Core {
                eio,
                poll_body: None,
                poll_waker: None,
                ws_target: None,
            }),
            ws: OnceLock::new(),
            timer: Notify::new(),
            reason: OnceLock::new(),
            closed: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            posting: AtomicBool::new(false),
            peer,
            shared: shared.clone(),
        });
        let state = self.app.open(&session);
        let slot = Arc::new(Slot {
            session,
            state: Mutex::new(state),
        });
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(slot.session.sid.clone(), slot.clone());
        shared.metrics.open(match transport {
            TransportKind::Polling => MetricTransport::Polling,
            TransportKind::WebSocket => MetricTransport::Websocket,
        });
        tracing::debug!(sid = %slot.session.sid, peer = %peer, transport = transport.as_str(), "engine.io session open");
        slot
    }

    /// Run the application on each message of a polling POST (outside the core lock). Every
    /// [`wsconn::TURN`] messages the task yields, so that the recipients' writers drain what it
    /// queued: a large body (up to maxPayload, tens of thousands of chat messages) must not fill
    /// the queues of members who keep up and get them dropped as slow consumers.
    async fn deliver(&self, slot: &Slot<A>, datas: Vec<Data<'_>>) {
        for (i, d) in datas.into_iter().enumerate() {
            if i > 0 && i % wsconn::TURN == 0 {
                tokio::task::yield_now().await;
            }
            if !self.deliver_one(slot, d) {
                return;
            }
        }
    }

    /// Run the application on one message; false when the application closed the session.
    fn deliver_one(&self, slot: &Slot<A>, data: Data<'_>) -> bool {
        let session = &slot.session;
        session
            .shared
            .metrics
            .messages_in
            .fetch_add(1, Ordering::Relaxed);
        let r = {
            let mut state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
            self.app.message(&mut state, session, data)
        };
        match r {
            Ok(()) => true,
            Err(reason) => {
                if matches!(
                    reason,
                    CloseReason::ProtocolError(_) | CloseReason::TooLarge
                ) {
                    session.count_protocol_error();
                }
                tracing::debug!(sid = %session.sid, %reason, "closing session");
                session.close(reason);
                self.finish_if_closed(slot);
                false
            }
        }
    }

    /// The application's timer and the state machine's timers.
    fn deadline(&self, slot: &Slot<A>) -> Option<Instant> {
        let eio = slot.session.lock().eio.poll_timeout();
        let app = self
            .app
            .deadline(&slot.state.lock().unwrap_or_else(|p| p.into_inner()));
        match (eio, app) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_timeout(&self, slot: &Slot<A>, now: Instant) {
        {
            let mut core = slot.session.lock();
            core.eio.handle_timeout(now);
            slot.session.pump(&mut core);
        }
        let app_due = self
            .app
            .deadline(&slot.state.lock().unwrap_or_else(|p| p.into_inner()))
            .is_some_and(|d| d <= now);
        if app_due {
            let mut state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(reason) = self.app.timeout(&mut state, &slot.session, now) {
                drop(state);
                slot.session.close(reason);
            }
        }
        self.finish_if_closed(slot);
    }

    /// If the session is over: unregister it, tell the application, count it. Exactly once.
    fn finish_if_closed(&self, slot: &Slot<A>) {
        let session = &slot.session;
        if !session.is_closed() || session.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&session.sid);
        let reason = session
            .reason
            .get()
            .cloned()
            .unwrap_or(CloseReason::TransportClose);
        {
            let mut state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
            self.app.closed(&mut state, session, &reason);
        }
        let metrics = &session.shared.metrics;
        metrics.close(if session.ws.get().is_some() {
            MetricTransport::Websocket
        } else {
            MetricTransport::Polling
        });
        super::plainws::count_reason(metrics, &reason);
        if let Some(ob) = session.ws.get() {
            ob.close(reason.clone());
        }
        session.timer.notify_one();
        tracing::debug!(sid = %session.sid, %reason, "engine.io session closed");
    }

    /// The polling-session timer task: heartbeats, timeouts; ends with the session.
    async fn run_timers(self: Arc<Self>, slot: Arc<Slot<A>>) {
        loop {
            if slot.session.finished.load(Ordering::Acquire) {
                return;
            }
            if slot.session.is_closed() {
                self.finish_if_closed(&slot);
                return;
            }
            let deadline = self.deadline(&slot);
            let notified = slot.session.timer.notified();
            match deadline {
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(tokio::time::Instant::from_std(d)) => {
                            // The timers run at the instant they were due (not when the task got
                            // to run): a ping due at T makes the pong deadline T + pingTimeout.
                            self.on_timeout(&slot, d);
                        }
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    async fn handle_http(
        self: Arc<Self>,
        req: Request<Incoming>,
        info: ConnInfo,
    ) -> Response<Body> {
        let Some(shared) = self.shared.get().cloned() else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "not started\n");
        };
        let query = req.uri().query().unwrap_or("").to_string();
        let q = Query::parse(&query);
        let kind = match q.classify(req.method().as_str(), false) {
            Ok(k) => k,
            Err(code) => return error_response(code),
        };
        match kind {
            EioRequest::Handshake { .. } => {
                if shared.is_shutting_down() {
                    return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
                }
                let slot = self.open(&shared, TransportKind::Polling, info.peer);
                let body = {
                    let mut core = slot.session.lock();
                    slot.session.pump(&mut core);
                    core.poll_body.take().unwrap_or_default()
                };
                tokio::spawn(self.clone().run_timers(slot));
                polling_response(body)
            }
            EioRequest::Poll { sid } => match self.lookup(sid) {
                Some(slot) => self.poll(slot).await,
                None => {
                    let raced = {
                        let mut late = self
                            .closed_by_post
                            .lock()
                            .unwrap_or_else(|p| p.into_inner());
                        late.remove(sid)
                            .is_some_and(|t| t.elapsed() < LATE_GET_GRACE)
                    };
                    if raced {
                        polling_response(String::from("6"))
                    } else {
                        error_response(ErrorCode::UnknownSid)
                    }
                }
            },
            EioRequest::Post { sid } => match self.lookup(sid) {
                Some(slot) => self.post(slot, req).await,
                None => error_response(ErrorCode::UnknownSid),
            },
            EioRequest::Upgrade { sid } | EioRequest::Invalid { sid } => {
                self.unknown_sid_or_bad_request(sid)
            }
        }
    }

    /// The answer to a request that names a session but is not valid for it: an unknown sid is
    /// answered as such first, as the reference's `verify` does.
    fn unknown_sid_or_bad_request(&self, sid: &str) -> Response<Body> {
        match self.lookup(sid) {
            Some(_) => error_response(ErrorCode::BadRequest),
            None => error_response(ErrorCode::UnknownSid),
        }
    }

    /// A long-polling GET: answered at once if something is buffered, else held.
    async fn poll(&self, slot: Arc<Slot<A>>) -> Response<Body> {
        let session = &slot.session;
        {
            let mut core = session.lock();
            let now = Instant::now();
            // Timers that are already due run first (a request can arrive a hair before the timer
            // task wakes): a session past its ping timeout is gone.
            if core.eio.poll_timeout().is_some_and(|d| d <= now) {
                core.eio.handle_timeout(now);
            }
            let r = core.eio.handle_poll(now);
            let closed = session.pump(&mut core);
            drop(core);
            if let Err(e) = r {
                if closed.is_some() {
                    self.finish_if_closed(&slot);
                }
                return engine_error_response(&e);
            }
        }
        let mut guard = PollGuard {
            endpoint: self,
            slot: &slot,
            done: false,
        };
        let body = std::future::poll_fn(|cx| {
            let mut core = session.lock();
            match core.poll_body.take() {
                Some(b) => Poll::Ready(b),
                None => {
                    core.poll_waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        guard.done = true;
        self.finish_if_closed(&slot);
        session
            .shared
            .metrics
            .bytes_out
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        polling_response(body)
    }

    /// A POST that broke the protocol: counted, its session closed (`at_once`: without waiting
    /// for a GET to collect what is queued), answered 400.
    fn refuse_post(&self, slot: &Arc<Slot<A>>, why: &str, at_once: bool) -> Response<Body> {
        let session = &slot.session;
        session.count_protocol_error();
        session.end(CloseReason::ProtocolError(why.into()), at_once);
        self.finish_if_closed(slot);
        error_response(ErrorCode::BadRequest)
    }

    /// A polling POST: the body's packets go to the state machine, messages to the application.
    async fn post(&self, slot: Arc<Slot<A>>, req: Request<Incoming>) -> Response<Body> {
        let session = &slot.session;
        if session.posting.swap(true, Ordering::AcqRel) {
            // The reference's "data request overlap from client": 400, and the session closes
            // at once (the order of the two bodies' messages could not be kept).
            return self.refuse_post(
                &slot,
                "a second polling POST while one was in progress",
                true,
            );
        }
        let _posting = Posting(&session.posting);
        let max = session.shared.config.max_payload;
        let collect = http_body_util::Limited::new(req.into_body(), max).collect();
        let Ok(collected) = tokio::time::timeout(session.shared.config.body_timeout, collect).await
        else {
            tracing::debug!(sid = %session.sid, "polling POST body not received in time");
            return text(
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time\n",
            );
        };
        let body = match collected {
            Ok(c) => c.to_bytes(),
            Err(e) => {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    return engine_error_response(&EngineError::PayloadTooLarge {
                        len: max + 1,
                        max,
                    });
                }
                return error_response(ErrorCode::BadRequest);
            }
        };
        session
            .shared
            .metrics
            .bytes_in
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        let Ok(body) = std::str::from_utf8(&body) else {
            return self.refuse_post(&slot, "polling body is not UTF-8", false);
        };
        let result = {
            let mut core = session.lock();
            let held = core.eio.is_poll_pending();
            let now = Instant::now();
            if core.eio.poll_timeout().is_some_and(|d| d <= now) {
                core.eio.handle_timeout(now);
            }
            // Messages before a bad packet are handled, then the error is answered (reference).
            let r = core.eio.handle_post_lossless(body, now);
            session.pump(&mut core);
            if !held && core.eio.close_reason() == Some(eio::CloseReason::TransportClose) {
                let now = Instant::now();
                let mut late = self
                    .closed_by_post
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                late.retain(|_, t| now.duration_since(*t) < LATE_GET_GRACE);
                late.insert(session.sid.clone(), now);
            }
            r
        };
        session.timer.notify_one();
        let (datas, result) = result;
        self.deliver(&slot, datas).await;
        let resp = match result {
            Ok(()) => respond(StatusCode::OK, eio::POLLING_CONTENT_TYPE, eio::POST_OK_BODY),
            Err(e) => {
                if !matches!(
                    e,
                    EngineError::PayloadTooLarge { .. } | EngineError::Rejected(_)
                ) {
                    session.count_protocol_error();
                    let _ = session
                        .reason
                        .set(CloseReason::ProtocolError(e.to_string()));
                    tracing::debug!(sid = %session.sid, error = %e, "bad polling body");
                }
                engine_error_response(&e)
            }
        };
        self.finish_if_closed(&slot);
        resp
    }

    async fn handle_ws(self: Arc<Self>, io: WsIo, accept: WsAccept, info: ConnInfo) {
        let Some(shared) = self.shared.get().cloned() else {
            return;
        };
        let outbox = Arc::new(shared.new_outbox());
        // No LiveConns entry: at shutdown the endpoint closes its sessions (and so this socket).
        match accept.sid {
            None => {
                // A session opened over WebSocket: this connection also runs its timers.
                let slot = self.open(&shared, TransportKind::WebSocket, info.peer);
                {
                    let mut core = slot.session.lock();
                    core.ws_target = Some(outbox.clone());
                    let _ = slot.session.ws.set(outbox.clone());
                    slot.session.pump(&mut core);
                }
                let mut handler = SessionWs {
                    endpoint: &self,
                    slot: &slot,
                    timers: true,
                };
                let reason = wsconn::drive(
                    io,
                    &mut handler,
                    &outbox,
                    shared.config.max_payload,
                    &shared.metrics,
                )
                .await;
                self.ws_gone(&slot, reason);
            }
            Some(sid) => {
                let Some(slot) = self.lookup(&sid) else {
                    return;
                };
                let attached = {
                    let mut core = slot.session.lock();
                    let r = core.eio.handle_ws_attach(Instant::now());
                    if r.is_ok() {
                        core.ws_target = Some(outbox.clone());
                    }
                    slot.session.pump(&mut core);
                    r
                };
                if let Err(e) = attached {
                    tracing::debug!(sid = %sid, error = %e, "websocket refused for this session");
                    outbox.close(CloseReason::Server(format!("{e}")));
                    // Closed at once; frames the client sent right behind its handshake must
                    // not reach the session it was refused.
                    let _ = wsconn::drive(
                        io,
                        &mut wsconn::Refused,
                        &outbox,
                        shared.config.max_payload,
                        &shared.metrics,
                    )
                    .await;
                    return;
                }
                let mut handler = SessionWs {
                    endpoint: &self,
                    slot: &slot,
                    timers: false,
                };
                let reason = wsconn::drive(
                    io,
                    &mut handler,
                    &outbox,
                    shared.config.max_payload,
                    &shared.metrics,
                )
                .await;
                self.ws_gone(&slot, reason);
            }
        }
    }

    /// The session's WebSocket ended (either the upgraded transport or a probe).
    fn ws_gone(&self, slot: &Slot<A>, reason: CloseReason) {
        let _ = match reason {
            CloseReason::ClientClose | CloseReason::TransportClose => None,
            r => Some(slot.session.reason.set(r)),
        };
        {
            let mut core = slot.session.lock();
            core.eio.handle_ws_closed(Instant::now());
            slot.session.pump(&mut core);
        }
        slot.session.timer.notify_one();
        self.finish_if_closed(slot);
    }

    fn shutdown_all(&self) {
        let all: Vec<_> = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for slot in all {
            let _ = slot.session.reason.set(CloseReason::ServerShutdown);
            {
                let mut core = slot.session.lock();
                core.eio.close_for_shutdown(Instant::now());
                slot.session.pump(&mut core);
            }
            slot.session.timer.notify_one();
            self.finish_if_closed(&slot);
        }
    }
}

/// Close the state machine without the polling close's wait: a polling close waits up to
/// closeTimeout for a GET to collect the buffer; a client that fell too far behind or broke the
/// rules is dropped at once instead.
fn close_without_waiting(core: &mut Core) {
    let now = Instant::now();
    core.eio.close(now);
    let past = now + core.eio.config().close_timeout + std::time::Duration::from_secs(1);
    core.eio.handle_timeout(past);
}

/// Marks the end of a polling POST, however it ends.
struct Posting<'a>(&'a AtomicBool);

impl Drop for Posting<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A held GET whose client went away closes the session (the suite's "cancelled polling request").
struct PollGuard<'a, A: EngineApp> {
    endpoint: &'a EngineEndpoint<A>,
    slot: &'a Arc<Slot<A>>,
    done: bool,
}

impl<A: EngineApp> Drop for PollGuard<'_, A> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        {
            let mut core = self.slot.session.lock();
            core.poll_waker = None;
            if core.poll_body.take().is_some() {
                // Its answer was ready but will never be sent.
                core.eio.handle_poll_lost(Instant::now());
            } else {
                core.eio.handle_poll_aborted(Instant::now());
            }
            self.slot.session.pump(&mut core);
        }
        self.endpoint.finish_if_closed(self.slot);
    }
}

/// The WebSocket handler of a session.
struct SessionWs<'a, A: EngineApp> {
    endpoint: &'a EngineEndpoint<A>,
    slot: &'a Arc<Slot<A>>,
    /// Whether this connection runs the session's timers (sessions opened over WebSocket).
    timers: bool,
}

impl<A: EngineApp> WsHandler for SessionWs<'_, A> {
    fn on_message(&mut self, msg: Message) -> Result<(), CloseReason> {
        let session = &self.slot.session;
        let now = Instant::now();
        match msg {
            Message::Text(t) => {
                let r = {
                    let mut core = session.lock();
                    let r = core.eio.handle_ws_text(t.as_str(), now);
                    session.pump(&mut core);
                    r
                };
                match r {
                    Ok(Some(d)) => {
                        self.endpoint.deliver_one(self.slot, d);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        session.count_protocol_error();
                        let _ = session
                            .reason
                            .set(CloseReason::ProtocolError(e.to_string()));
                        tracing::debug!(sid = %session.sid, error = %e, "bad Engine.IO packet");
                    }
                }
            }
            Message::Binary(b) => {
                let r = {
                    let mut core = session.lock();
                    let r = core.eio.handle_ws_binary(&b, now);
                    session.pump(&mut core);
                    r
                };
                if let Ok(Some(d)) = r {
                    self.endpoint.deliver_one(self.slot, d);
                }
            }
            _ => {}
        }
        self.endpoint.finish_if_closed(self.slot);
        Ok(())
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.timers {
            self.endpoint.deadline(self.slot)
        } else {
            None
        }
    }

    fn on_deadline(&mut self, now: Instant) -> Result<(), CloseReason> {
        if self.timers {
            self.endpoint.on_timeout(self.slot, now);
        }
        Ok(())
    }
}

impl<A: EngineApp> Endpoint for EngineEndpoint<A> {
    fn attach(&self, shared: &Arc<Shared>) {
        let _ = self.shared.set(shared.clone());
    }

    fn http(self: Arc<Self>, req: Request<Incoming>, info: ConnInfo) -> BoxFut<Response<Body>> {
        Box::pin(self.handle_http(req, info))
    }

    fn accept_websocket(&self, query: &str) -> Result<WsAccept, Box<Response<Body>>> {
        let q = Query::parse(query);
        match q.classify("GET", true) {
            Ok(EioRequest::Handshake { .. }) => {
                if self.shared.get().is_some_and(|s| s.is_shutting_down()) {
                    return Err(Box::new(text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "shutting down\n",
                    )));
                }
                Ok(WsAccept { sid: None })
            }
            Ok(EioRequest::Upgrade { sid }) => match self.lookup(sid) {
                Some(_) => Ok(WsAccept {
                    sid: Some(sid.to_string()),
                }),
                None => Err(Box::new(error_response(ErrorCode::UnknownSid))),
            },
            Ok(
                EioRequest::Invalid { sid } | EioRequest::Poll { sid } | EioRequest::Post { sid },
            ) => Err(Box::new(self.unknown_sid_or_bad_request(sid))),
            Err(code) => Err(Box::new(error_response(code))),
        }
    }

    fn websocket(self: Arc<Self>, io: WsIo, accept: WsAccept, info: ConnInfo) -> BoxFut<()> {
        Box::pin(self.handle_ws(io, accept, info))
    }

    fn shutdown(&self) {
        self.shutdown_all();
    }
}

fn polling_response(body: String) -> Response<Body> {
    respond(StatusCode::OK, eio::POLLING_CONTENT_TYPE, body)
}

/// The reference server's error answer: status and `{"code":N,"message":"..."}`.
pub fn error_response(code: ErrorCode) -> Response<Body> {
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    respond(status, "application/json", code.json_body())
}

fn engine_error_response(e: &EngineError) -> Response<Body> {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    respond(status, "application/json", e.error_code().json_body())
}

/// A 20-character URL-safe random id (Engine.IO sid, Socket.IO socket id), as node's base64id.
pub fn new_id() -> String {
    let mut bytes = [0u8; 15];
    rand::fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An [`EngineApp`] that sends every message back as it came (the Engine.IO test-suite's server).
pub struct EchoApp;

impl EngineApp for EchoApp {
    type State = ();
    fn open(&self, _session: &Arc<Session>) {}
    fn message(
        &self,
        _state: &mut (),
        session: &Arc<Session>,
        data: Data<'_>,
    ) -> Result<(), CloseReason> {
        match data {
            Data::Text(t) => session.send_text(t),
            Data::Binary(b) => session.send_binary(Bytes::copy_from_slice(&b)),
        }
        Ok(())
    }
    fn closed(&self, _state: &mut (), _session: &Arc<Session>, _reason: &CloseReason) {}
}
