//! Property tests of the protocol core: every packet and payload round-trips through encode and
//! decode, arbitrary input never makes a parser or a session panic, and the zero-copy Socket.IO
//! parser agrees with a plain `serde_json::Value` reference decoder (DESIGN.md convention 7).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Map, Value};

use super::chat::{self, ChatEvent, ChatEventRef};
use super::engineio::{self, Payload, SessionConfig, Timestamp, TransportKind};
use super::socketio::{self, BinValue, PacketType, RESERVED_EVENTS, Reassembler};

// ---------------------------------------------------------------------------------------------
// Generators

fn text_without_separator() -> impl Strategy<Value = String> {
    "[^\u{1e}]{0,40}"
}

fn eio_packet(allow_separator: bool) -> impl Strategy<Value = engineio::Packet> {
    let text = if allow_separator {
        ".{0,40}".boxed()
    } else {
        text_without_separator().boxed()
    };
    prop_oneof![
        (
            "[A-Za-z0-9_\\-\u{1e}\"\\\\]{0,24}",
            prop::collection::vec("[a-z]{1,10}", 0..3),
            any::<u32>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(|(sid, upgrades, pi, pt, mp)| {
                engineio::Packet::Open(engineio::Handshake {
                    sid,
                    upgrades,
                    ping_interval: u64::from(pi),
                    ping_timeout: u64::from(pt),
                    max_payload: u64::from(mp),
                })
            }),
        Just(engineio::Packet::Close),
        text.clone()
            .prop_map(|t| engineio::Packet::Ping(Cow::Owned(t))),
        text.clone()
            .prop_map(|t| engineio::Packet::Pong(Cow::Owned(t))),
        text.prop_map(engineio::Packet::message),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(engineio::Packet::binary),
        Just(engineio::Packet::Upgrade),
        Just(engineio::Packet::Noop),
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((".{0,6}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Value> {
    prop::collection::vec(("[a-z]{0,6}", json_value()), 0..4)
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()))
}

fn bin_value() -> impl Strategy<Value = BinValue> {
    let leaf = prop_oneof![
        3 => json_leaf().prop_map(BinValue::Json),
        1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(BinValue::from),
    ];
    leaf.prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(BinValue::Array),
            prop::collection::vec(("[a-z]{1,4}", inner), 0..3).prop_map(|kv| {
                // Unique keys, like a JavaScript object.
                let mut seen = std::collections::HashSet::new();
                BinValue::Object(
                    kv.into_iter()
                        .filter(|(k, _)| seen.insert(k.clone()))
                        .collect(),
                )
            }),
        ]
    })
}

fn nsp() -> impl Strategy<Value = String> {
    prop_oneof![Just("/".to_owned()), "/[a-z0-9_\\-]{1,10}"]
}

fn event_name() -> impl Strategy<Value = String> {
    ".{0,16}".prop_filter("reserved", |n| !RESERVED_EVENTS.contains(&n.as_str()))
}

fn sio_packet() -> impl Strategy<Value = socketio::Packet> {
    let id = prop::option::of(any::<u64>());
    prop_oneof![
        (nsp(), prop::option::of(json_object()))
            .prop_map(|(n, auth)| socketio::Packet::connect(&n, auth)),
        nsp().prop_map(|n| socketio::Packet::disconnect(&n)),
        (
            nsp(),
            event_name(),
            prop::collection::vec(json_value(), 0..4),
            id.clone()
        )
            .prop_map(|(n, e, args, id)| {
                let mut p = socketio::Packet::event(&n, &e, args);
                p.id = id;
                p
            }),
        (
            nsp(),
            any::<i64>(),
            prop::collection::vec(json_value(), 0..3)
        )
            .prop_map(|(n, e, args)| {
                let mut data = vec![Value::from(e)];
                data.extend(args);
                socketio::Packet {
                    packet_type: PacketType::Event,
                    nsp: n,
                    id: None,
                    data: Some(Value::Array(data)),
                    attachments: Vec::new(),
                }
            }),
        (
            nsp(),
            any::<u64>(),
            prop::collection::vec(json_value(), 0..4)
        )
            .prop_map(|(n, id, args)| socketio::Packet::ack(&n, id, args)),
        (
            nsp(),
            prop_oneof![json_object(), ".{0,10}".prop_map(Value::String)]
        )
            .prop_map(|(n, d)| socketio::Packet {
                packet_type: PacketType::ConnectError,
                nsp: n,
                id: None,
                data: Some(d),
                attachments: Vec::new(),
            }),
        (
            nsp(),
            event_name(),
            prop::collection::vec(bin_value(), 1..4),
            id.clone(),
            any::<bool>()
        )
            .prop_map(|(n, e, args, id, is_ack)| {
                let mut p = if is_ack {
                    socketio::Packet::ack_with_binary(&n, id.unwrap_or(0), args)
                } else {
                    socketio::Packet::event_with_binary(&n, &e, args)
                };
                if !is_ack {
                    p.id = id;
                }
                p
            })
            .prop_filter("at most 10 attachments", |p| p.attachments.len() <= 10),
    ]
}

/// Text that looks like Socket.IO, to reach the deeper parser paths: random headers with random
/// characters, with JSON values, with event-like arrays, and valid packets with one character
/// replaced or removed.
fn sio_like() -> impl Strategy<Value = String> {
    let header = "[0-7]([0-9]{0,2}-)?(/[a-z,]{0,4},?)?[0-9]{0,3}";
    let first = prop::sample::select(vec![
        "\"connect\"",
        "\"disconnecting\"",
        "\"x\"",
        "\"a\\u0062\"",
        "1",
        "-2.5",
        "null",
        "[1]",
        "{}",
    ]);
    prop_oneof![
        "[0-7]([0-9]{0,2}-)?(/[a-z,]{0,4},?)?[0-9]{0,3}[\\[\\]{}\":,a-z0-9_ .\\-\\\\]{0,40}",
        (header, json_value()).prop_map(|(h, v)| format!("{h}{v}")),
        (header, first, prop::collection::vec(json_value(), 0..3)).prop_map(|(h, f, rest)| {
            let rest: String = rest.iter().map(|v| format!(",{v}")).collect();
            format!("{h}[{f}{rest}]")
        }),
        (
            sio_packet().prop_map(|p| p.to_text()),
            any::<prop::sample::Index>(),
            prop::option::of(any::<char>())
        )
            .prop_map(|(text, at, c)| {
                let mut chars: Vec<char> = text.chars().collect();
                let i = at.index(chars.len());
                match c {
                    Some(c) => chars[i] = c,
                    None => {
                        chars.remove(i);
                    }
                }
                chars.into_iter().collect()
            }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Plain reference decoder: `serde_json::Value` and the rules of socket.io-parser, written the
// obvious way, to check the zero-copy parser against.

#[derive(Debug, PartialEq)]
struct Plain {
    packet_type: PacketType,
    attachments: usize,
    nsp: String,
    id: Option<u64>,
    data: Option<Value>,
}

fn plain_decode(s: &str) -> Option<Plain> {
    let chars: Vec<char> = s.chars().collect();
    let packet_type = PacketType::from_byte(u8::try_from(*chars.first()? as u32).ok()?)?;
    let mut i = 1;
    let mut attachments = 0;
    if packet_type.is_binary() {
        let start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || chars.get(i) != Some(&'-') {
            return None;
        }
        let n: u64 = chars[start..i].iter().collect::<String>().parse().ok()?;
        if n == 0 || n > 10 {
            return None;
        }
        attachments = n as usize;
        i += 1;
    }
    let mut nsp = "/".to_owned();
    if chars.get(i) == Some(&'/') {
        let start = i;
        while i < chars.len() && chars[i] != ',' {
            i += 1;
        }
        nsp = chars[start..i].iter().collect();
        if i < chars.len() {
            i += 1;
        }
    }
    let start = i;
    while i < chars.len() && chars[i].is_ascii_digit() {
        i += 1;
    }
    let id = if i > start {
        Some(
            chars[start..i]
                .iter()
                .collect::<String>()
                .parse::<u64>()
                .ok()?,
        )
    } else {
        None
    };
    let rest: String = chars[i..].iter().collect();
    let data = if rest.is_empty() {
        None
    } else {
        Some(serde_json::from_str::<Value>(&rest).ok()?)
    };
    let valid = match (packet_type, &data) {
        (PacketType::Connect, None) => true,
        (PacketType::Connect, Some(d)) => d.is_object(),
        (PacketType::Disconnect, d) => d.is_none(),
        (PacketType::ConnectError, None) => true,
        (PacketType::ConnectError, Some(d)) => d.is_object() || d.is_string(),
        (PacketType::Event | PacketType::BinaryEvent, Some(Value::Array(a))) => match a.first() {
            Some(Value::Number(_)) => true,
            Some(Value::String(n)) => !RESERVED_EVENTS.contains(&n.as_str()),
            _ => false,
        },
        (PacketType::Ack | PacketType::BinaryAck, Some(Value::Array(_))) => true,
        _ => false,
    };
    valid.then_some(Plain {
        packet_type,
        attachments,
        nsp,
        id,
        data,
    })
}

fn fast_decode(s: &str) -> Option<Plain> {
    let p = socketio::PacketRef::parse(s).ok()?;
    // JSON that JavaScript accepts but `Value` cannot hold (`1e400`) fails here, as in `plain_decode`.
    let data = p.data_value().ok()?;
    Some(Plain {
        packet_type: p.packet_type(),
        attachments: p.attachments(),
        nsp: p.nsp().to_owned(),
        id: p.id(),
        data,
    })
}

// ---------------------------------------------------------------------------------------------
// A fake clock for the session properties.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Ms(u64);

impl Timestamp for Ms {
    fn add_duration(self, d: Duration) -> Option<Self> {
        u64::try_from(d.as_millis())
            .ok()
            .and_then(|x| self.0.checked_add(x))
            .map(Ms)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Poll,
    PollAborted,
    Post(String),
    WsAttach,
    WsText(String),
    WsBinary(Vec<u8>),
    WsClosed,
    Send(String),
    Close,
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Poll),
        Just(Op::PollAborted),
        prop_oneof!["[0-6b][a-z0-9=]{0,6}(\u{1e}[0-6][a-z]{0,4}){0,2}", ".{0,8}"]
            .prop_map(Op::Post),
        Just(Op::WsAttach),
        prop_oneof![
            Just("2probe".to_owned()),
            Just("5".to_owned()),
            Just("3".to_owned()),
            "[0-6b][a-z]{0,6}",
            ".{0,8}"
        ]
        .prop_map(Op::WsText),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(Op::WsBinary),
        Just(Op::WsClosed),
        ".{0,8}".prop_map(Op::Send),
        Just(Op::Close),
        (0u16..800).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn engineio_packets_round_trip_as_text(p in eio_packet(true)) {
        let text = p.to_text();
        prop_assert_eq!(p.encoded_len(), text.len());
        let back = engineio::PacketRef::parse_text(&text).unwrap().to_owned_packet();
        prop_assert_eq!(back, p);
    }

    #[test]
    fn engineio_packets_round_trip_as_websocket_frames(p in eio_packet(true)) {
        let mut buf = String::new();
        let back = match p.encode_ws(&mut buf) {
            engineio::WsFrame::Text(t) => engineio::PacketRef::parse_text(t).unwrap().to_owned_packet(),
            engineio::WsFrame::Binary(b) => engineio::PacketRef::parse_binary(b).to_owned_packet(),
        };
        prop_assert_eq!(back, p);
    }

    #[test]
    fn polling_payloads_round_trip(packets in prop::collection::vec(eio_packet(false), 1..6)) {
        let body = Payload::encode_to_string(&packets);
        let back: Vec<engineio::Packet> = Payload::decode(&body)
            .unwrap()
            .iter()
            .map(engineio::PacketRef::to_owned_packet)
            .collect();
        prop_assert_eq!(back, packets);
    }

    #[test]
    fn engineio_parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = engineio::PacketRef::parse_text_bytes(&bytes);
        let _ = Payload::decode_bytes(&bytes);
        if let Ok(s) = std::str::from_utf8(&bytes) {
            for item in Payload::iter(s) {
                if let Err(e) = item {
                    prop_assert!(e.offset().unwrap() <= s.len());
                }
            }
            let _ = engineio::Query::parse(s).classify("GET", false);
        }
    }

    #[test]
    fn engineio_errors_point_inside_the_input(s in "[0-9b{}\"a-z\u{1e}=+/]{0,30}") {
        if let Err(e) = Payload::decode(&s) {
            prop_assert!(e.offset().unwrap() <= s.len(), "{e:?} for {s:?}");
        }
    }

    #[test]
    fn socketio_packets_round_trip(p in sio_packet()) {
        let text = p.to_text();
        let r = socketio::PacketRef::parse(&text).unwrap();
        let mut again = String::new();
        r.encode(&mut again);
        prop_assert_eq!(&again, &text);
        // Through the Engine.IO messages and the reassembler, attachments included.
        let mut reassembler = Reassembler::new();
        let mut out = None;
        for m in p.to_engineio() {
            out = match m {
                engineio::Packet::Message(t) => reassembler.push_text(&t).unwrap(),
                engineio::Packet::Binary(b) => reassembler.push_binary(b).unwrap(),
                other => panic!("{other:?}"),
            };
        }
        prop_assert_eq!(out.unwrap(), p.clone());
        prop_assert!(p.validate().is_ok());
    }

    #[test]
    fn binary_arguments_survive_deconstruct_and_reconstruct(v in bin_value()) {
        let (json, buffers) = socketio::deconstruct(v.clone());
        let back = socketio::reconstruct(&json, &buffers).unwrap();
        // Plain sub-trees may come back grouped differently; compare by deconstructing again.
        let (json2, buffers2) = socketio::deconstruct(back);
        prop_assert_eq!(json2, json);
        prop_assert_eq!(buffers2, buffers);
    }

    #[test]
    fn socketio_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        if let Err(e) = socketio::PacketRef::parse_bytes(&bytes) {
            prop_assert!(e.offset().is_none_or(|o| o <= bytes.len()));
        }
    }

    #[test]
    fn fast_parser_agrees_with_the_plain_reference(s in sio_like()) {
        let fast = fast_decode(&s);
        let plain = plain_decode(&s);
        prop_assert_eq!(fast, plain, "input {:?}", s);
        if let Ok(p) = socketio::PacketRef::parse(&s) {
            let _ = p.summary();
            let _ = ChatEvent::from_ref(&p);
            let _ = ChatEventRef::parse(&p);
        } else if let Err(e) = socketio::PacketRef::parse(&s) {
            prop_assert!(e.offset().is_none_or(|o| o <= s.len()));
        }
    }

    #[test]
    fn fast_parser_agrees_on_valid_packets(p in sio_packet()) {
        let text = p.to_text();
        prop_assert_eq!(fast_decode(&text), plain_decode(&text));
    }

    #[test]
    fn reassembler_never_panics(msgs in prop::collection::vec(
        prop_oneof![
            sio_like().prop_map(Ok),
            prop::collection::vec(any::<u8>(), 0..4).prop_map(Err),
        ],
        0..8,
    )) {
        let mut r = Reassembler::new();
        for m in msgs {
            let _ = match m {
                Ok(t) => r.push_text(&t),
                Err(b) => r.push_binary(Bytes::from(b)),
            };
            prop_assert!(r.missing() <= 10);
        }
    }

    #[test]
    fn chat_fast_path_agrees_with_the_typed_path(
        room in prop_oneof![".{0,8}".prop_map(Value::String), any::<i32>().prop_map(Value::from)],
        author in ".{0,8}",
        message in ".{0,16}",
        extra in json_object(),
    ) {
        let mut obj = Map::new();
        obj.insert("room".into(), room);
        obj.insert("author".into(), Value::String(author));
        obj.insert("message".into(), Value::String(message));
        obj.insert("time".into(), Value::String("16:10".into()));
        if let Value::Object(e) = extra {
            for (k, v) in e {
                obj.entry(k).or_insert(v);
            }
        }
        let packet = socketio::Packet::event("/", "send_message", vec![Value::Object(obj)]);
        let text = packet.to_text();
        let r = socketio::PacketRef::parse(&text).unwrap();
        let typed = ChatEvent::from_ref(&r);
        let fast = ChatEventRef::parse(&r).unwrap();
        let ChatEventRef::SendMessage { room, payload } = fast else { panic!("{fast:?}") };
        if let Ok(ev) = typed {
            prop_assert_eq!(ev.room().as_str(), room.as_str());
            prop_assert_eq!(&ChatEvent::from_packet(&packet).unwrap(), &ev);
            // The relayed text equals the typed re-encoding when the fields are in app order.
            let mut relayed = String::new();
            chat::encode_receive_message(&mut relayed, "/", payload);
            let ChatEvent::SendMessage(m) = ev else { panic!() };
            let mut typed_out = String::new();
            ChatEvent::ReceiveMessage(m).encode("/", &mut typed_out);
            prop_assert_eq!(relayed, typed_out);
        }
    }

    #[test]
    fn server_sessions_never_panic_and_close_once(
        start_ws in any::<bool>(),
        ops in prop::collection::vec(op(), 0..40),
    ) {
        let config = SessionConfig {
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            max_payload: 64,
            ..SessionConfig::default()
        };
        let kind = if start_ws { TransportKind::WebSocket } else { TransportKind::Polling };
        let mut now = Ms(0);
        let mut s = engineio::ServerSession::new("sid", kind, config, now);
        let mut closed_events = 0;
        for op in ops {
            match op {
                Op::Poll => { let _ = s.handle_poll(now); }
                Op::PollAborted => s.handle_poll_aborted(now),
                Op::Post(b) => { let _ = s.handle_post(&b, now); }
                Op::WsAttach => { let _ = s.handle_ws_attach(now); }
                Op::WsText(t) => { let _ = s.handle_ws_text(&t, now); }
                Op::WsBinary(b) => { let _ = s.handle_ws_binary(&b, now); }
                Op::WsClosed => s.handle_ws_closed(now),
                Op::Send(t) => { let _ = s.send_message(t); }
                Op::Close => s.close(now),
                Op::Advance(d) => {
                    now = Ms(now.0 + u64::from(d));
                    if s.poll_timeout().is_some_and(|t| t <= now) {
                        s.handle_timeout(now);
                    }
                }
            }
            while s.poll_transmit().is_some() {}
            while let Some(e) = s.poll_event() {
                if matches!(e, engineio::ServerEvent::Closed(_)) {
                    closed_events += 1;
                }
            }
            if let Some(t) = s.poll_timeout() {
                // Timers never lie further back than one full cycle.
                prop_assert!(t.0 + 10_000 + 30_000 >= now.0);
            }
        }
        prop_assert!(closed_events <= 1);
        prop_assert_eq!(closed_events == 1, s.is_closed());
        if s.is_closed() {
            prop_assert_eq!(s.poll_timeout(), None);
        }
    }
}
