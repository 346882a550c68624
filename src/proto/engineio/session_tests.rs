//! Fake-clock tests of the Engine.IO session state machines: a client session driven against a
//! server session in memory, and raw server sessions driven like the official test suite does.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The official suites' settings: pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1e6.
fn suite_config() -> SessionConfig {
    SessionConfig {
        ping_interval: ms(300),
        ping_timeout: ms(200),
        ..SessionConfig::default()
    }
}

fn data_to_string(d: &Data<'_>) -> String {
    match d {
        Data::Text(t) => format!("text:{t}"),
        Data::Binary(b) => format!("bin:{b:?}"),
    }
}

/// A client and a server session wired together in memory, with a fake clock and a wire log.
struct Net {
    t0: FakeTime,
    now: FakeTime,
    config: SessionConfig,
    server: Option<ServerSession<FakeTime>>,
    client: ClientSession<FakeTime>,
    /// Every exchange, as `+<ms> <who> <what>`.
    log: Vec<String>,
    client_rx: Vec<String>,
    server_rx: Vec<String>,
    server_events: Vec<ServerEvent>,
    client_events: Vec<ClientEvent>,
    /// Drop every pong the client writes (a client that never answers pings).
    drop_client_pongs: bool,
}

impl Net {
    fn new(client: ClientConfig, config: SessionConfig) -> Net {
        let t0 = FakeTime::ZERO;
        let mut net = Net {
            t0,
            now: t0,
            config,
            server: None,
            client: ClientSession::new(client, t0),
            log: Vec::new(),
            client_rx: Vec::new(),
            server_rx: Vec::new(),
            server_events: Vec::new(),
            client_events: Vec::new(),
            drop_client_pongs: false,
        };
        net.pump();
        net
    }

    fn at(&self) -> u128 {
        (self.now - self.t0).as_millis()
    }

    fn note(&mut self, s: String) {
        let line = format!("+{} {}", self.at(), s);
        self.log.push(line);
    }

    fn server(&mut self) -> &mut ServerSession<FakeTime> {
        self.server.as_mut().unwrap()
    }

    /// Moves every transmit across until both sides are quiet.
    fn pump(&mut self) {
        loop {
            let mut progress = false;
            while let Some(t) = self.client.poll_transmit() {
                progress = true;
                self.client_transmit(t);
            }
            if let Some(server) = self.server.as_mut() {
                let mut out = Vec::new();
                while let Some(t) = server.poll_transmit() {
                    out.push(t);
                }
                while let Some(e) = server.poll_event() {
                    self.server_events.push(e);
                }
                for t in out {
                    progress = true;
                    self.server_transmit(t);
                }
            }
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
            }
            if !progress {
                break;
            }
        }
    }

    fn client_transmit(&mut self, t: ClientTransmit) {
        let now = self.now;
        match t {
            ClientTransmit::PollGet => {
                self.note("C GET".into());
                match self.server.as_mut() {
                    None => {
                        self.server = Some(ServerSession::new(
                            "sid1",
                            TransportKind::Polling,
                            self.config.clone(),
                            now,
                        ));
                    }
                    Some(s) => {
                        if let Err(e) = s.handle_poll(now) {
                            self.note(format!("S GET -> {}", e.http_status()));
                            self.client.handle_poll_failed(now);
                        }
                    }
                }
            }
            ClientTransmit::PollPost(body) => {
                self.note(format!("C POST {body:?}"));
                let server = self.server.as_mut().unwrap();
                match server.handle_post(&body, now) {
                    Ok(data) => {
                        let data: Vec<String> = data.iter().map(data_to_string).collect();
                        self.server_rx.extend(data);
                        self.client.handle_post_response(true, now);
                    }
                    Err(e) => {
                        self.note(format!("S POST -> {}", e.http_status()));
                        self.client.handle_post_response(false, now);
                    }
                }
            }
            ClientTransmit::OpenWs => {
                self.note("C WS open".into());
                match self.server.as_mut() {
                    None => {
                        self.server = Some(ServerSession::new(
                            "sid1",
                            TransportKind::WebSocket,
                            self.config.clone(),
                            now,
                        ));
                        self.client.handle_ws_open(now);
                    }
                    Some(s) => match s.handle_ws_attach(now) {
                        Ok(()) => self.client.handle_ws_open(now),
                        Err(_) => self.client.handle_ws_closed(now),
                    },
                }
            }
            ClientTransmit::Ws(p) => {
                if self.drop_client_pongs && matches!(p, Packet::Pong(_)) {
                    self.note("C ws (pong dropped)".into());
                    return;
                }
                let mut buf = String::new();
                let server = self.server.as_mut().unwrap();
                let (line, data) = match p.encode_ws(&mut buf) {
                    WsFrame::Text(t) => (
                        format!("C ws {t}"),
                        server
                            .handle_ws_text(t, now)
                            .ok()
                            .flatten()
                            .map(|d| data_to_string(&d)),
                    ),
                    WsFrame::Binary(b) => (
                        format!("C ws bin {b:?}"),
                        server
                            .handle_ws_binary(b, now)
                            .ok()
                            .flatten()
                            .map(|d| data_to_string(&d)),
                    ),
                };
                self.note(line);
                self.server_rx.extend(data);
            }
            ClientTransmit::CloseWs => {
                self.note("C WS close".into());
                if let Some(s) = self.server.as_mut() {
                    s.handle_ws_closed(now);
                }
            }
        }
    }

    fn server_transmit(&mut self, t: ServerTransmit) {
        let now = self.now;
        match t {
            ServerTransmit::Poll(body) => {
                self.note(format!("S 200 {body:?}"));
                match self.client.handle_poll_response(&body, now) {
                    Ok(data) => {
                        let data: Vec<String> = data.iter().map(data_to_string).collect();
                        self.client_rx.extend(data);
                    }
                    Err(e) => self.note(format!("C poll error {e}")),
                }
            }
            ServerTransmit::Ws(p) => {
                let mut buf = String::new();
                let (line, data) = match p.encode_ws(&mut buf) {
                    WsFrame::Text(t) => (
                        format!("S ws {t}"),
                        self.client
                            .handle_ws_text(t, now)
                            .ok()
                            .flatten()
                            .map(|d| data_to_string(&d)),
                    ),
                    WsFrame::Binary(b) => (
                        format!("S ws bin {b:?}"),
                        self.client
                            .handle_ws_binary(b, now)
                            .map(|d| data_to_string(&d)),
                    ),
                };
                self.note(line);
                self.client_rx.extend(data);
            }
            ServerTransmit::CloseWs => {
                self.note("S WS close".into());
                self.client.handle_ws_closed(now);
            }
        }
    }

    /// Runs both sides' timers up to `t0 + at`.
    fn advance_to(&mut self, at: Duration) {
        let target = self.t0 + at;
        loop {
            let next = [
                self.server.as_ref().and_then(ServerSession::poll_timeout),
                self.client.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(n) if n <= target => {
                    self.now = self.now.max(n);
                    let now = self.now;
                    if let Some(s) = self.server.as_mut() {
                        s.handle_timeout(now);
                    }
                    self.client.handle_timeout(now);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = target;
    }
}

/// The fake clock: time since the start of the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct FakeTime(Duration);

impl FakeTime {
    const ZERO: FakeTime = FakeTime(Duration::ZERO);
}

impl Timestamp for FakeTime {
    fn add_duration(self, d: Duration) -> Option<Self> {
        self.0.checked_add(d).map(FakeTime)
    }
}

impl std::ops::Add<Duration> for FakeTime {
    type Output = FakeTime;
    fn add(self, d: Duration) -> FakeTime {
        FakeTime(self.0 + d)
    }
}

impl std::ops::Sub for FakeTime {
    type Output = Duration;
    fn sub(self, o: FakeTime) -> Duration {
        self.0 - o.0
    }
}

#[test]
fn polling_handshake_then_upgrade_to_websocket_in_the_exact_order() {
    let mut net = Net::new(ClientConfig::default(), suite_config());
    assert_eq!(
        net.log,
        vec![
            "+0 C GET",
            r#"+0 S 200 "0{\"sid\":\"sid1\",\"upgrades\":[\"websocket\"],\"pingInterval\":300,\"pingTimeout\":200,\"maxPayload\":1000000}""#,
            "+0 C WS open",
            "+0 C GET",
            "+0 C ws 2probe",
            "+0 S ws 3probe",
            r#"+0 S 200 "6""#,
            "+0 C ws 5",
        ]
    );
    assert_eq!(net.server().transport(), Transport::WebSocket);
    assert_eq!(net.client.transport(), Transport::WebSocket);
    assert_eq!(
        net.server_events,
        vec![ServerEvent::Upgrading, ServerEvent::Upgraded]
    );
    assert_eq!(net.client_events.len(), 3);
    assert!(matches!(net.client_events[0], ClientEvent::Opened(_)));
    assert_eq!(
        net.client_events[1..],
        [ClientEvent::Upgrading, ClientEvent::Upgraded]
    );
    assert_eq!(net.client.sid(), Some("sid1"));

    // Data flows over the WebSocket both ways.
    net.client.send_message("hello");
    net.server().send_message("world");
    net.server().send_binary(vec![1u8, 2, 3, 4]);
    net.pump();
    assert_eq!(net.server_rx, vec!["text:hello"]);
    assert_eq!(net.client_rx, vec!["text:world", "bin:[1, 2, 3, 4]"]);
}

#[test]
fn upgrade_probe_without_the_client_moving_on_is_aborted_after_the_upgrade_timeout() {
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::Polling, suite_config(), t0);
    while s.poll_transmit().is_some() {}
    s.handle_ws_attach(t0).unwrap();
    assert_eq!(s.transport(), Transport::Upgrading);
    s.handle_timeout(t0 + ms(300)); // a ping goes to the polling buffer meanwhile
    assert_eq!(s.buffered_packets(), 1);
    s.handle_poll(t0 + ms(301)).unwrap();
    assert_eq!(s.poll_transmit(), Some(ServerTransmit::Poll("2".into())));
    s.handle_post("3", t0 + ms(302)).unwrap();
    assert_eq!(
        s.poll_timeout(),
        Some(t0 + ms(602)),
        "next ping after the pong"
    );
    s.handle_timeout(t0 + ms(10_000));
    assert_eq!(s.poll_transmit(), Some(ServerTransmit::CloseWs));
    assert_eq!(s.transport(), Transport::Polling);
    assert_eq!(s.poll_event(), Some(ServerEvent::Heartbeat));
    assert_eq!(s.poll_event(), Some(ServerEvent::UpgradeAborted));
    assert!(!s.is_closed());
}

#[test]
fn upgrade_sequence_of_the_suite_with_get_during_upgrade_answered_by_noop() {
    // engine.io v4 suite, "successfully upgrades from HTTP long-polling to WebSocket" and
    // "ignores HTTP requests with same sid after upgrade".
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::Polling, suite_config(), t0);
    assert!(matches!(s.poll_transmit(), Some(ServerTransmit::Poll(b)) if b.starts_with("0{")));
    s.handle_ws_attach(t0).unwrap();
    assert_eq!(s.handle_ws_text("2probe", t0), Ok(None));
    assert_eq!(
        s.poll_transmit(),
        Some(ServerTransmit::Ws(Packet::Pong("probe".into())))
    );
    s.handle_poll(t0).unwrap();
    assert_eq!(s.poll_transmit(), Some(ServerTransmit::Poll("6".into())));
    assert_eq!(s.handle_ws_text("5", t0), Ok(None));
    assert_eq!(s.transport(), Transport::WebSocket);
    assert_eq!(
        s.handle_ws_text("4hello", t0),
        Ok(Some(Data::Text("hello")))
    );
    assert_eq!(
        s.handle_poll(t0),
        Err(EngineError::Rejected(ErrorCode::BadRequest))
    );
    assert_eq!(
        s.handle_ws_attach(t0),
        Err(EngineError::Rejected(ErrorCode::BadRequest)),
        "a second WebSocket for the session is refused"
    );
    assert!(!s.is_closed());
}

#[test]
fn pending_get_is_ended_with_noop_when_the_probe_arrives() {
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::Polling, suite_config(), t0);
    while s.poll_transmit().is_some() {}
    s.handle_poll(t0).unwrap();
    assert_eq!(s.poll_transmit(), None, "the GET is held");
    s.handle_ws_attach(t0).unwrap();
    s.handle_ws_text("2probe", t0).unwrap();
    assert_eq!(
        s.poll_transmit(),
        Some(ServerTransmit::Ws(Packet::Pong("probe".into())))
    );
    assert_eq!(s.poll_transmit(), Some(ServerTransmit::Poll("6".into())));
    // Messages sent before the `5` are buffered and go out on the WebSocket after it.
    s.send_message("early");
    s.handle_ws_text("5", t0).unwrap();
    assert_eq!(
        s.poll_transmit(),
        Some(ServerTransmit::Ws(Packet::message("early")))
    );
}

#[test]
fn an_unexpected_packet_on_the_probe_socket_aborts_only_the_upgrade() {
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::Polling, suite_config(), t0);
    while s.poll_transmit().is_some() {}
    s.handle_ws_attach(t0).unwrap();
    s.handle_ws_text("4too early", t0).unwrap();
    assert_eq!(s.poll_transmit(), Some(ServerTransmit::CloseWs));
    assert_eq!(s.transport(), Transport::Polling);
    assert!(s.handle_ws_attach(t0).is_ok(), "a new attempt may follow");
}

#[test]
fn heartbeat_over_websocket_pings_every_interval_after_the_pong() {
    let mut net = Net::new(ClientConfig::websocket(), suite_config());
    net.advance_to(ms(2000));
    let pings: Vec<&String> = net.log.iter().filter(|l| l.ends_with("S ws 2")).collect();
    assert_eq!(
        pings,
        vec![
            "+300 S ws 2",
            "+600 S ws 2",
            "+900 S ws 2",
            "+1200 S ws 2",
            "+1500 S ws 2",
            "+1800 S ws 2"
        ]
    );
    assert!(net.log.contains(&"+300 C ws 3".to_string()));
    assert!(!net.server().is_closed());
    assert!(net.client.is_open());
}

#[test]
fn heartbeat_over_polling_delivers_pings_in_held_gets() {
    let mut net = Net::new(
        ClientConfig {
            transport: TransportKind::Polling,
            upgrade: false,
        },
        suite_config(),
    );
    net.advance_to(ms(1000));
    let tail: Vec<&str> = net.log.iter().skip(2).map(String::as_str).collect();
    assert_eq!(
        tail,
        vec![
            "+0 C GET",
            r#"+300 S 200 "2""#,
            r#"+300 C POST "3""#,
            "+300 C GET",
            r#"+600 S 200 "2""#,
            r#"+600 C POST "3""#,
            "+600 C GET",
            r#"+900 S 200 "2""#,
            r#"+900 C POST "3""#,
            "+900 C GET",
        ]
    );
    assert!(!net.server().is_closed());
}

#[test]
fn an_idle_websocket_client_that_never_pongs_is_closed_at_500_ms() {
    let mut net = Net::new(ClientConfig::websocket(), suite_config());
    net.drop_client_pongs = true;
    net.advance_to(ms(499));
    assert!(!net.server().is_closed());
    net.advance_to(ms(500));
    assert_eq!(net.server().close_reason(), Some(CloseReason::PingTimeout));
    assert!(net.log.contains(&"+500 S WS close".to_string()));
    assert_eq!(
        net.client.close_reason(),
        Some(CloseReason::TransportClose),
        "the client sees its WebSocket close"
    );
}

#[test]
fn raw_server_closes_an_idle_session_at_interval_plus_timeout() {
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::WebSocket, suite_config(), t0);
    assert!(matches!(
        s.poll_transmit(),
        Some(ServerTransmit::Ws(Packet::Open(_)))
    ));
    assert_eq!(s.poll_timeout(), Some(t0 + ms(300)));
    s.handle_timeout(t0 + ms(300));
    assert_eq!(
        s.poll_transmit(),
        Some(ServerTransmit::Ws(Packet::Ping("".into())))
    );
    assert_eq!(s.poll_timeout(), Some(t0 + ms(500)));
    s.handle_timeout(t0 + ms(499));
    assert!(!s.is_closed());
    s.handle_timeout(t0 + ms(500));
    assert_eq!(s.poll_transmit(), Some(ServerTransmit::CloseWs));
    assert_eq!(
        s.poll_event(),
        Some(ServerEvent::Closed(CloseReason::PingTimeout))
    );
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn polling_session_without_pong_is_gone_for_the_next_get() {
    // Suite: "closes the session upon ping timeout" (polling): sleep 500 ms, then GET → 400.
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::Polling, suite_config(), t0);
    while s.poll_transmit().is_some() {}
    s.handle_timeout(t0 + ms(300));
    s.handle_timeout(t0 + ms(500));
    assert!(s.is_closed());
    assert_eq!(s.poll_transmit(), None, "no GET was held");
    let e = s.handle_poll(t0 + ms(501)).unwrap_err();
    assert_eq!(e, EngineError::Rejected(ErrorCode::UnknownSid));
    assert_eq!(e.http_status(), 400);
}

#[test]
fn traffic_while_waiting_for_the_pong_extends_the_ping_timeout() {
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::WebSocket, suite_config(), t0);
    s.handle_timeout(t0 + ms(300));
    s.handle_ws_text("4still here", t0 + ms(450)).unwrap();
    s.handle_timeout(t0 + ms(500));
    assert!(!s.is_closed());
    assert_eq!(s.poll_timeout(), Some(t0 + ms(650)));
    s.handle_timeout(t0 + ms(650));
    assert_eq!(s.close_reason(), Some(CloseReason::PingTimeout));
}

#[test]
fn the_next_ping_is_one_interval_after_the_pong() {
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::WebSocket, suite_config(), t0);
    s.handle_timeout(t0 + ms(300));
    s.handle_ws_text("3", t0 + ms(420)).unwrap();
    assert_eq!(s.poll_timeout(), Some(t0 + ms(720)));
}

#[test]
fn duplicate_get_closes_the_session_and_the_first_get_returns_close() {
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::Polling, suite_config(), t0);
    while s.poll_transmit().is_some() {}
    s.handle_poll(t0).unwrap();
    let e = s.handle_poll(t0 + ms(5)).unwrap_err();
    assert_eq!(e, EngineError::DuplicatePoll);
    assert_eq!(e.http_status(), 400);
    assert_eq!(s.poll_transmit(), Some(ServerTransmit::Poll("1".into())));
    assert_eq!(
        s.poll_event(),
        Some(ServerEvent::Closed(CloseReason::TransportError))
    );
    assert_eq!(
        s.handle_poll(t0 + ms(10)),
        Err(EngineError::Rejected(ErrorCode::UnknownSid))
    );
}

#[test]
fn cancelled_poll_closes_the_session() {
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::Polling, suite_config(), t0);
    while s.poll_transmit().is_some() {}
    s.handle_poll(t0).unwrap();
    s.handle_poll_aborted(t0 + ms(5));
    assert_eq!(s.poll_transmit(), None, "nobody to answer");
    assert_eq!(s.close_reason(), Some(CloseReason::TransportError));
}

#[test]
fn an_answer_taken_but_never_sent_closes_the_session() {
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::Polling, suite_config(), t0);
    while s.poll_transmit().is_some() {}
    s.handle_poll(t0).unwrap();
    assert!(s.send(Packet::message("hello")));
    assert_eq!(
        s.poll_transmit(),
        Some(ServerTransmit::Poll("4hello".into()))
    );
    // The GET that was to carry it is gone: no GET is held, yet the session must not go on.
    s.handle_poll_aborted(t0 + ms(5));
    assert_eq!(s.close_reason(), None, "an aborted poll needs a held GET");
    s.handle_poll_lost(t0 + ms(5));
    assert_eq!(s.close_reason(), Some(CloseReason::TransportError));
    assert_eq!(s.poll_transmit(), None, "nobody to answer");
}

#[test]
fn posted_close_ends_the_held_get_with_noop() {
    // Suite "forcefully closes the session" (polling).
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::Polling, suite_config(), t0);
    while s.poll_transmit().is_some() {}
    s.handle_poll(t0).unwrap();
    assert_eq!(s.handle_post("1", t0), Ok(vec![]));
    assert_eq!(s.poll_transmit(), Some(ServerTransmit::Poll("6".into())));
    assert_eq!(s.close_reason(), Some(CloseReason::TransportClose));
    assert!(s.handle_poll(t0).is_err());
}

#[test]
fn close_packet_over_websocket_ends_the_session() {
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::WebSocket, suite_config(), t0);
    while s.poll_transmit().is_some() {}
    s.handle_ws_text("1", t0).unwrap();
    assert_eq!(s.poll_transmit(), Some(ServerTransmit::CloseWs));
    assert_eq!(s.close_reason(), Some(CloseReason::TransportClose));
}

#[test]
fn invalid_post_body_closes_the_session_with_a_parse_error() {
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::Polling, suite_config(), t0);
    while s.poll_transmit().is_some() {}
    s.handle_poll(t0).unwrap();
    let e = s.handle_post("abc", t0).unwrap_err();
    assert_eq!(e.http_status(), 400);
    assert_eq!(e.offset(), Some(0));
    assert_eq!(s.poll_transmit(), Some(ServerTransmit::Poll("1".into())));
    assert_eq!(s.close_reason(), Some(CloseReason::ParseError));
}

#[test]
fn messages_before_a_bad_packet_in_a_post_are_kept_then_the_session_closes() {
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::Polling, suite_config(), t0);
    while s.poll_transmit().is_some() {}
    s.handle_poll(t0).unwrap();
    let (messages, result) = s.handle_post_lossless("4first\x1ebAQI=\x1e4x\x1eZ\x1e4never", t0);
    assert_eq!(
        messages,
        vec![
            Data::Text("first"),
            Data::Binary(vec![1, 2].into()),
            Data::Text("x")
        ]
    );
    let e = result.unwrap_err();
    assert_eq!(e.http_status(), 400);
    assert_eq!(e.offset(), Some(16), "the bad packet's offset in the body");
    assert_eq!(s.poll_transmit(), Some(ServerTransmit::Poll("1".into())));
    assert_eq!(s.close_reason(), Some(CloseReason::ParseError));
    // The plain form keeps its contract: an error, nothing delivered.
    let mut s = ServerSession::new("y", TransportKind::Polling, suite_config(), t0);
    while s.poll_transmit().is_some() {}
    assert!(s.handle_post("4first\x1eZ", t0).is_err());
}

#[test]
fn invalid_websocket_frame_closes_the_session() {
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::WebSocket, suite_config(), t0);
    while s.poll_transmit().is_some() {}
    assert!(s.handle_ws_text("abc", t0).is_err());
    assert_eq!(s.poll_transmit(), Some(ServerTransmit::CloseWs));
    assert_eq!(s.close_reason(), Some(CloseReason::ParseError));
}

#[test]
fn a_ping_from_the_client_is_an_invalid_heartbeat_direction() {
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::WebSocket, suite_config(), t0);
    while s.poll_transmit().is_some() {}
    assert_eq!(
        s.handle_ws_text("2", t0),
        Err(EngineError::InvalidHeartbeatDirection)
    );
    assert_eq!(s.close_reason(), Some(CloseReason::TransportError));
}

#[test]
fn oversized_post_is_refused_with_413_and_the_session_survives() {
    let t0 = FakeTime::ZERO;
    let config = SessionConfig {
        max_payload: 8,
        ..suite_config()
    };
    let mut s = ServerSession::new("x", TransportKind::Polling, config, t0);
    let e = s.handle_post("4123456789", t0).unwrap_err();
    assert_eq!(e, EngineError::PayloadTooLarge { len: 10, max: 8 });
    assert_eq!(e.http_status(), 413);
    assert!(!s.is_closed());
}

#[test]
fn buffered_packets_go_out_in_one_payload_per_get() {
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::Polling, suite_config(), t0);
    while s.poll_transmit().is_some() {}
    for m in ["test1", "test2", "test3"] {
        s.send_message(m);
    }
    s.send_binary(vec![1u8, 2, 3, 4]);
    assert_eq!(s.buffered_packets(), 4);
    assert_eq!(s.buffered_bytes(), "4test1".len() * 3 + "bAQIDBA==".len());
    s.handle_poll(t0).unwrap();
    assert_eq!(
        s.poll_transmit(),
        Some(ServerTransmit::Poll(
            "4test1\x1e4test2\x1e4test3\x1ebAQIDBA==".into()
        ))
    );
    assert_eq!(s.buffered_packets(), 0);
}

#[test]
fn post_with_several_packets_returns_all_messages_borrowed() {
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::Polling, suite_config(), t0);
    let body = String::from("4hello\x1ebAQIDBA==\x1e4x");
    let data = s.handle_post(&body, t0).unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[0], Data::Text("hello"));
    assert_eq!(data[1], Data::Binary(vec![1, 2, 3, 4].into()));
    assert!(matches!(data[0], Data::Text(t) if t.as_ptr() == body[1..].as_ptr()));
}

#[test]
fn server_close_over_polling_waits_for_the_next_get() {
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::Polling, suite_config(), t0);
    while s.poll_transmit().is_some() {}
    s.send_message("bye");
    s.close(t0);
    assert!(s.is_closing());
    assert!(!s.send_message("too late"));
    assert_eq!(s.poll_timeout(), Some(t0 + ms(30_000)));
    s.handle_poll(t0 + ms(10)).unwrap();
    assert_eq!(
        s.poll_transmit(),
        Some(ServerTransmit::Poll("4bye\x1e1".into()))
    );
    assert_eq!(s.close_reason(), Some(CloseReason::ForcedClose));
}

#[test]
fn server_close_over_polling_gives_up_after_the_close_timeout() {
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::Polling, suite_config(), t0);
    while s.poll_transmit().is_some() {}
    s.close_for_shutdown(t0);
    s.handle_timeout(t0 + ms(30_000));
    assert_eq!(s.close_reason(), Some(CloseReason::ServerShutdown));
}

#[test]
fn server_close_with_a_held_get_answers_it_at_once() {
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::Polling, suite_config(), t0);
    while s.poll_transmit().is_some() {}
    s.handle_poll(t0).unwrap();
    s.close(t0);
    assert_eq!(s.poll_transmit(), Some(ServerTransmit::Poll("1".into())));
    assert!(s.is_closed());
}

#[test]
fn server_close_over_websocket_flushes_then_closes() {
    let t0 = FakeTime::ZERO;
    let mut s = ServerSession::new("x", TransportKind::WebSocket, suite_config(), t0);
    while s.poll_transmit().is_some() {}
    s.send_message("41");
    s.close(t0);
    assert_eq!(
        s.poll_transmit(),
        Some(ServerTransmit::Ws(Packet::message("41")))
    );
    assert_eq!(s.poll_transmit(), Some(ServerTransmit::CloseWs));
    assert_eq!(
        s.poll_event(),
        Some(ServerEvent::Closed(CloseReason::ForcedClose))
    );
    assert_eq!(s.poll_event(), None, "Closed is emitted once");
}

#[test]
fn client_detects_a_dead_server_after_interval_plus_timeout() {
    let t0 = FakeTime::ZERO;
    let mut c = ClientSession::new(ClientConfig::websocket(), t0);
    assert_eq!(c.poll_transmit(), Some(ClientTransmit::OpenWs));
    c.handle_ws_open(t0);
    let open =
        r#"0{"sid":"s","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}"#;
    assert_eq!(c.handle_ws_text(open, t0), Ok(None));
    assert!(c.is_open());
    assert_eq!(c.poll_timeout(), Some(t0 + ms(500)));
    assert_eq!(c.handle_ws_text("2", t0 + ms(300)), Ok(None));
    assert_eq!(
        c.poll_transmit(),
        Some(ClientTransmit::Ws(Packet::Pong("".into())))
    );
    assert_eq!(c.poll_timeout(), Some(t0 + ms(800)));
    c.handle_timeout(t0 + ms(799));
    assert!(!c.is_closed());
    c.handle_timeout(t0 + ms(800));
    assert_eq!(c.close_reason(), Some(CloseReason::PingTimeout));
    assert_eq!(c.poll_transmit(), Some(ClientTransmit::CloseWs));
}

#[test]
fn client_posts_are_split_at_max_payload_and_one_at_a_time() {
    let config = SessionConfig {
        max_payload: 12,
        ..suite_config()
    };
    let mut net = Net::new(
        ClientConfig {
            transport: TransportKind::Polling,
            upgrade: false,
        },
        config,
    );
    // Queue several messages while a POST is in flight by holding the harness.
    let now = net.now;
    net.client.send_message("aaaa");
    net.client.send_message("bbbb");
    net.client.send_message("cccc");
    let mut posts = Vec::new();
    while let Some(t) = net.client.poll_transmit() {
        if let ClientTransmit::PollPost(b) = t {
            posts.push(b);
            net.client.handle_post_response(true, now);
        }
    }
    assert_eq!(posts, vec!["4aaaa", "4bbbb\x1e4cccc"]);
    assert!(posts.iter().all(|p| p.len() <= 12));
}

#[test]
fn client_over_polling_exchanges_text_and_binary() {
    let mut net = Net::new(
        ClientConfig {
            transport: TransportKind::Polling,
            upgrade: false,
        },
        suite_config(),
    );
    net.client.send_message("hello");
    net.client.send_binary(vec![1u8, 2, 3, 4]);
    net.server().send_message("hi");
    net.server().send_binary(vec![5u8]);
    net.pump();
    assert_eq!(net.server_rx, vec!["text:hello", "bin:[1, 2, 3, 4]"]);
    assert_eq!(net.client_rx, vec!["text:hi", "bin:[5]"]);
    // The held GET took the first message at once, the next GET the second.
    assert!(net.log.contains(&r#"+0 S 200 "4hi""#.to_string()));
    assert!(net.log.contains(&r#"+0 S 200 "bBQ==""#.to_string()));
}

#[test]
fn client_close_over_polling_posts_the_close_packet() {
    let mut net = Net::new(
        ClientConfig {
            transport: TransportKind::Polling,
            upgrade: false,
        },
        suite_config(),
    );
    let now = net.now;
    net.client.send_message("last");
    net.client.close(now);
    net.pump();
    assert!(net.log.contains(&r#"+0 C POST "4last""#.to_string()));
    assert!(net.log.contains(&r#"+0 C POST "1""#.to_string()));
    assert_eq!(net.server_rx, vec!["text:last"]);
    assert_eq!(
        net.server().close_reason(),
        Some(CloseReason::TransportClose)
    );
    assert_eq!(net.client.close_reason(), Some(CloseReason::ForcedClose));
    assert!(
        net.log.contains(&r#"+0 S 200 "6""#.to_string()),
        "the held GET was ended with a noop"
    );
}

#[test]
fn client_upgrade_fails_cleanly_when_the_probe_is_refused() {
    let t0 = FakeTime::ZERO;
    let mut c = ClientSession::new(ClientConfig::default(), t0);
    assert_eq!(c.poll_transmit(), Some(ClientTransmit::PollGet));
    let open = r#"0{"sid":"s","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}"#;
    c.handle_poll_response(open, t0).unwrap();
    assert_eq!(c.poll_transmit(), Some(ClientTransmit::OpenWs));
    assert_eq!(c.poll_transmit(), Some(ClientTransmit::PollGet));
    assert_eq!(
        c.query(TransportKind::WebSocket),
        "EIO=4&transport=websocket&sid=s"
    );
    c.handle_ws_open(t0);
    assert_eq!(
        c.poll_transmit(),
        Some(ClientTransmit::Ws(Packet::Ping("probe".into())))
    );
    assert_eq!(c.transport(), Transport::Upgrading);
    c.handle_ws_text("4unexpected", t0).unwrap();
    assert_eq!(c.poll_transmit(), Some(ClientTransmit::CloseWs));
    assert_eq!(c.transport(), Transport::Polling);
    assert!(c.is_open());
}

#[test]
fn client_waits_for_the_inflight_get_before_sending_upgrade() {
    let t0 = FakeTime::ZERO;
    let mut c = ClientSession::new(ClientConfig::default(), t0);
    c.poll_transmit();
    let open = r#"0{"sid":"s","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}"#;
    c.handle_poll_response(open, t0).unwrap();
    while c.poll_transmit().is_some() {}
    c.handle_ws_open(t0);
    c.poll_transmit();
    c.handle_ws_text("3probe", t0).unwrap();
    c.send_message("queued during upgrade");
    assert_eq!(c.poll_transmit(), None, "nothing until the GET returns");
    let data = c.handle_poll_response("4late\x1e6", t0).unwrap();
    assert_eq!(data, vec![Data::Text("late")]);
    assert_eq!(c.poll_transmit(), Some(ClientTransmit::Ws(Packet::Upgrade)));
    assert_eq!(
        c.poll_transmit(),
        Some(ClientTransmit::Ws(Packet::message("queued during upgrade")))
    );
    assert_eq!(c.transport(), Transport::WebSocket);
}
