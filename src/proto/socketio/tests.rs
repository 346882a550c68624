//! Byte-exact tests of the Socket.IO parser and encoder, on the wire examples of the protocol
//! notes (§2.3) and the reference parser's validation rules.

use super::*;
use serde_json::json;

thread_local! {
    /// Set by the differential tests: `PacketRef::parse` then takes the serde_json path only.
    pub(super) static SERDE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn p(s: &str) -> PacketRef<'_> {
    match PacketRef::parse(s) {
        Ok(p) => p,
        Err(e) => panic!("{s:?}: {e}"),
    }
}

fn err(s: &str) -> SocketIoError {
    match PacketRef::parse(s) {
        Ok(p) => panic!("{s:?} parsed as {p:?}"),
        Err(e) => e,
    }
}

/// Parses a WebSocket text frame as seen on the wire (`4` = Engine.IO message, then Socket.IO).
fn pf(frame: &str) -> PacketRef<'_> {
    match engineio::PacketRef::parse_text(frame) {
        Ok(engineio::PacketRef::Message(t)) => p(t),
        other => panic!("{frame:?}: {other:?}"),
    }
}

/// The WebSocket text frame carrying an owned packet.
fn ws(packet: &Packet) -> String {
    packet.to_engineio()[0].to_text()
}

fn reencode(s: &str) -> String {
    let mut out = String::new();
    p(s).encode(&mut out);
    out
}

#[test]
fn connect_examples() {
    let c = pf("40");
    assert_eq!(c.packet_type(), PacketType::Connect);
    assert_eq!(c.nsp(), "/");
    assert_eq!(c.data(), None);
    assert_eq!(ws(&Packet::connect("/", None)), "40");

    let c = pf(r#"40{"sid":"wZX3oN0bSVIhsaknAAAI"}"#);
    assert_eq!(c.data(), Some(r#"{"sid":"wZX3oN0bSVIhsaknAAAI"}"#));
    assert_eq!(
        ws(&Packet::connect_ok("/", "wZX3oN0bSVIhsaknAAAI")),
        r#"40{"sid":"wZX3oN0bSVIhsaknAAAI"}"#
    );

    let c = pf(r#"40{"token":"123"}"#);
    assert_eq!(
        c.to_packet().unwrap(),
        Packet::connect("/", Some(json!({"token":"123"})))
    );

    let c = pf("40/admin,");
    assert_eq!((c.nsp(), c.data()), ("/admin", None));
    assert_eq!(reencode("0/admin,"), "0/admin,");

    let c = pf(r#"40/admin,{"token":"abc"}"#);
    assert_eq!(c.nsp(), "/admin");
    assert_eq!(c.data(), Some(r#"{"token":"abc"}"#));
    assert_eq!(
        ws(&Packet::connect_ok("/admin", "oSO0OpakMV_3jnilAAAA")),
        r#"40/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#
    );
}

#[test]
fn namespace_without_trailing_comma_is_accepted() {
    for (s, nsp) in [
        ("40/custom", "/custom"),
        ("41/custom", "/custom"),
        ("40/random", "/random"),
    ] {
        let c = pf(s);
        assert_eq!(c.nsp(), nsp);
        assert_eq!(c.data(), None);
    }
    assert_eq!(reencode("0/custom"), "0/custom,");
    assert_eq!(
        pf("40/custom").to_packet().unwrap(),
        pf("40/custom,").to_packet().unwrap()
    );
}

#[test]
fn connect_error_examples() {
    assert_eq!(
        ws(&Packet::connect_error("/", "Not authorized")),
        r#"44{"message":"Not authorized"}"#
    );
    assert_eq!(
        ws(&Packet::connect_error("/admin", "Not authorized")),
        r#"44/admin,{"message":"Not authorized"}"#
    );
    assert_eq!(
        ws(&Packet::connect_error("/random", "Invalid namespace")),
        r#"44/random,{"message":"Invalid namespace"}"#
    );
    let e = pf(r#"44/random,{"message":"Invalid namespace"}"#);
    assert_eq!(e.packet_type(), PacketType::ConnectError);
    assert_eq!(e.nsp(), "/random");
    // v4 legacy: a plain string is tolerated.
    assert_eq!(
        pf(r#"44"Not authorized""#).data(),
        Some(r#""Not authorized""#)
    );
}

#[test]
fn event_examples() {
    let e = pf(r#"42["foo"]"#);
    assert_eq!(e.packet_type(), PacketType::Event);
    assert_eq!(e.event(), Some("foo"));
    assert_eq!((e.args(), e.arg_count(), e.first_arg()), ("", 0, None));
    assert_eq!(ws(&Packet::event("/", "foo", vec![])), r#"42["foo"]"#);

    let e = pf(r#"42/admin,["bar"]"#);
    assert_eq!((e.nsp(), e.event()), ("/admin", Some("bar")));
    assert_eq!(
        ws(&Packet::event("/admin", "bar", vec![])),
        r#"42/admin,["bar"]"#
    );

    let s = r#"42["message",1,"2",{"3":[true]}]"#;
    let e = pf(s);
    assert_eq!(e.event(), Some("message"));
    assert_eq!(e.args(), r#"1,"2",{"3":[true]}"#);
    assert_eq!(e.arg_count(), 3);
    assert_eq!(e.first_arg(), Some("1"));
    let owned = e.to_packet().unwrap();
    assert_eq!(owned.args(), &[json!(1), json!("2"), json!({"3":[true]})]);
    assert_eq!(ws(&owned), s);
    assert_eq!(
        ws(&Packet::event(
            "/",
            "message",
            vec![json!(1), json!("2"), json!({"3":[true]})]
        )),
        s
    );
}

#[test]
fn acks_and_ack_ids() {
    let e = pf(r#"42456["message-with-ack",1,"2"]"#);
    assert_eq!(e.id(), Some(456));
    assert_eq!(e.event(), Some("message-with-ack"));
    assert_eq!(e.args(), r#"1,"2""#);

    let a = pf(r#"43456[1,"2"]"#);
    assert_eq!((a.packet_type(), a.id()), (PacketType::Ack, Some(456)));
    assert_eq!(a.args(), r#"1,"2""#);
    assert_eq!(
        ws(&Packet::ack("/", 456, vec![json!(1), json!("2")])),
        r#"43456[1,"2"]"#
    );

    let a = pf(r#"43/admin,13["bar"]"#);
    assert_eq!(
        (a.nsp(), a.id(), a.args()),
        ("/admin", Some(13), r#""bar""#)
    );
    assert_eq!(reencode(r#"3/admin,13["bar"]"#), r#"3/admin,13["bar"]"#);
    assert_eq!(pf("43[]").arg_count(), 0, "an ack may be empty");

    let mut out = String::new();
    encode_ack_raw(&mut out, "/admin", 13, r#""bar""#);
    assert_eq!(out, r#"3/admin,13["bar"]"#);
}

#[test]
fn binary_event_examples_reassemble() {
    let mut r = Reassembler::new();
    assert_eq!(
        r.push_text(r#"51-["baz",{"_placeholder":true,"num":0}]"#),
        Ok(None)
    );
    assert!(r.is_waiting());
    assert_eq!(r.missing(), 1);
    let packet = r.push_binary(vec![1u8, 2, 3, 4]).unwrap().unwrap();
    assert_eq!(packet.packet_type, PacketType::BinaryEvent);
    assert_eq!(packet.event_name(), Some("baz"));
    assert_eq!(
        packet.args_with_binary().unwrap(),
        vec![BinValue::Binary(Bytes::from_static(&[1, 2, 3, 4]))]
    );
    assert_eq!(
        packet.to_text(),
        r#"51-["baz",{"_placeholder":true,"num":0}]"#
    );

    let h = p(r#"52-789["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#);
    assert_eq!(
        (h.attachments(), h.id(), h.event()),
        (2, Some(789), Some("x"))
    );

    let h = p(r#"61-15["bar",{"_placeholder":true,"num":0}]"#);
    assert_eq!(
        (h.packet_type(), h.attachments(), h.id()),
        (PacketType::BinaryAck, 1, Some(15))
    );
    let mut r = Reassembler::new();
    assert_eq!(r.push_ref(&h), Ok(None));
    let ack = r.push_binary(vec![9u8]).unwrap().unwrap();
    assert_eq!(
        ack.to_text(),
        r#"61-15["bar",{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(
        ack.to_engineio(),
        vec![
            engineio::Packet::message(r#"61-15["bar",{"_placeholder":true,"num":0}]"#),
            engineio::Packet::binary(vec![9u8])
        ]
    );
}

#[test]
fn echoing_a_binary_event_as_message_back_keeps_placeholders_and_frames() {
    // Suite: `message` re-emitted as `message-back` with all arguments (§2.4).
    let mut r = Reassembler::new();
    r.push_text(r#"52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
        .unwrap();
    r.push_binary(vec![1u8, 2]).unwrap();
    let got = r.push_binary(vec![3u8, 4]).unwrap().unwrap();
    let echo = Packet::event_with_binary("/", "message-back", got.args_with_binary().unwrap());
    assert_eq!(
        echo.to_text(),
        r#"52-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
    );
    assert_eq!(
        echo.attachments,
        vec![Bytes::from_static(&[1, 2]), Bytes::from_static(&[3, 4])]
    );
}

#[test]
fn placeholders_are_numbered_depth_first() {
    let args = vec![
        BinValue::Object(vec![
            ("a".into(), BinValue::Binary(Bytes::from_static(b"A"))),
            (
                "b".into(),
                BinValue::Array(vec![
                    BinValue::Json(json!(1)),
                    BinValue::Binary(Bytes::from_static(b"B")),
                ]),
            ),
        ]),
        BinValue::Binary(Bytes::from_static(b"C")),
    ];
    let packet = Packet::ack_with_binary("/", 7, args.clone());
    assert_eq!(packet.packet_type, PacketType::BinaryAck);
    assert_eq!(
        packet.to_text(),
        r#"63-7[{"a":{"_placeholder":true,"num":0},"b":[1,{"_placeholder":true,"num":1}]},{"_placeholder":true,"num":2}]"#
    );
    assert_eq!(
        packet.attachments,
        vec![
            Bytes::from_static(b"A"),
            Bytes::from_static(b"B"),
            Bytes::from_static(b"C")
        ]
    );
    assert_eq!(packet.args_with_binary().unwrap(), args);
    // No buffers: a plain EVENT / ACK.
    let plain = Packet::event_with_binary("/", "x", vec![BinValue::Json(json!("y"))]);
    assert_eq!(plain.to_text(), r#"2["x","y"]"#);
}

#[test]
fn reassembler_errors_like_the_reference() {
    let mut r = Reassembler::new();
    assert_eq!(
        r.push_binary(vec![1u8]),
        Err(SocketIoError::UnexpectedBinary)
    );
    r.push_text(r#"51-["baz",{"_placeholder":true,"num":0}]"#)
        .unwrap();
    assert_eq!(
        r.push_text(r#"2["foo"]"#),
        Err(SocketIoError::UnexpectedText { missing: 1 })
    );
    assert!(!r.is_waiting(), "an error resets it");
    r.push_text(r#"51-["baz",{"_placeholder":true,"num":1}]"#)
        .unwrap();
    assert!(matches!(
        r.push_binary(vec![1u8]),
        Err(SocketIoError::IllegalPlaceholder { count: 1, .. })
    ));
    r.push_text(r#"51-["baz",{"_placeholder":true,"num":"0"}]"#)
        .unwrap();
    assert!(r.push_binary(vec![1u8]).is_err());
    // A non-binary packet passes straight through.
    assert_eq!(
        r.push_text("1/admin,").unwrap(),
        Some(Packet::disconnect("/admin"))
    );
}

#[test]
fn disconnect_examples() {
    assert_eq!(pf("41").packet_type(), PacketType::Disconnect);
    assert_eq!(pf("41/admin,").nsp(), "/admin");
    assert_eq!(ws(&Packet::disconnect("/")), "41");
    assert_eq!(ws(&Packet::disconnect("/admin")), "41/admin,");
}

#[test]
fn invalid_packets_are_refused_with_offsets() {
    assert_eq!(err(""), SocketIoError::Empty);
    assert_eq!(err("7"), SocketIoError::UnknownPacketType { found: '7' });
    assert_eq!(err("x[]"), SocketIoError::UnknownPacketType { found: 'x' });
    // Non-digit junk before the JSON.
    let e = err(r#"2abc["a"]"#);
    assert!(
        matches!(e, SocketIoError::InvalidJson { offset: 1, .. }),
        "{e:?}"
    );
    let e = err(r#"2["a"]x"#);
    assert!(
        matches!(e, SocketIoError::InvalidJson { offset: 6, .. }),
        "{e:?}"
    );
    let e = err(r#"3["a""#);
    assert!(
        matches!(e, SocketIoError::InvalidJson { offset: 5, .. }),
        "{e:?}"
    );
    // isPayloadValid.
    for (s, t) in [
        ("2", PacketType::Event),
        ("2[]", PacketType::Event),
        ("2[true]", PacketType::Event),
        ("2[null,1]", PacketType::Event),
        ("2[[\"a\"]]", PacketType::Event),
        (r#"2{"a":1}"#, PacketType::Event),
        (r#"2"foo""#, PacketType::Event),
        ("3", PacketType::Ack),
        (r#"3{"a":1}"#, PacketType::Ack),
        ("1{}", PacketType::Disconnect),
        ("1/admin,[]", PacketType::Disconnect),
        ("0[]", PacketType::Connect),
        (r#"0"x""#, PacketType::Connect),
        ("0null", PacketType::Connect),
        ("4[]", PacketType::ConnectError),
    ] {
        match err(s) {
            SocketIoError::InvalidPayload { packet_type, .. } => assert_eq!(packet_type, t, "{s}"),
            other => panic!("{s}: {other:?}"),
        }
    }
    for name in RESERVED_EVENTS {
        let s = format!(r#"2["{name}",1]"#);
        assert_eq!(
            err(&s),
            SocketIoError::ReservedEventName {
                name: name.into(),
                offset: 2
            }
        );
    }
    // Escaped reserved names are still reserved.
    assert!(matches!(
        err(r#"2["conn\u0065ct"]"#),
        SocketIoError::ReservedEventName { .. }
    ));
    // Attachment counts.
    assert_eq!(
        err(r#"5-["a"]"#),
        SocketIoError::IllegalAttachments { offset: 1 }
    );
    assert_eq!(
        err(r#"50-["a"]"#),
        SocketIoError::IllegalAttachments { offset: 1 }
    );
    assert_eq!(
        err(r#"51["a"]"#),
        SocketIoError::IllegalAttachments { offset: 1 }
    );
    assert_eq!(err("5"), SocketIoError::IllegalAttachments { offset: 1 });
    assert_eq!(
        err(r#"511-["a"]"#),
        SocketIoError::TooManyAttachments {
            count: 11,
            offset: 1
        }
    );
    assert!(p(r#"510-["a"]"#).attachments() == 10);
    assert_eq!(
        err(r#"299999999999999999999["a"]"#),
        SocketIoError::InvalidAckId { offset: 1 }
    );
    assert_eq!(
        PacketRef::parse_bytes(b"2[\"\xff\"]"),
        Err(SocketIoError::InvalidUtf8 { offset: 3 })
    );
}

#[test]
fn numeric_event_names_are_accepted() {
    let e = p("2[42,\"x\"]");
    assert_eq!(
        (e.event(), e.event_json(), e.args()),
        (Some("42"), Some("42"), r#""x""#)
    );
    assert_eq!(
        e.to_packet().unwrap().event_name(),
        None,
        "not a string name"
    );
    // The owned packet's text of the name is the borrowed one's, numeric or not.
    assert_eq!(e.to_packet().unwrap().event_text().as_deref(), Some("42"));
    assert_eq!(
        p(r#"2["send_message",1]"#)
            .to_packet()
            .unwrap()
            .event_text()
            .as_deref(),
        Some("send_message")
    );
    assert_eq!(p("3[7]").to_packet().unwrap().event_text(), None, "an ack");
}

#[test]
fn escaped_event_names_are_unescaped() {
    let e = p(r#"2["send\u005fmessage",1]"#);
    assert_eq!(e.event(), Some("send_message"));
    assert_eq!(e.event_json(), Some(r#""send\u005fmessage""#));
}

#[test]
fn fast_path_slices_borrow_from_the_input() {
    let s = String::from(
        r#"42["send_message",{"room":"1","author":"Celular","message":"Olá mundo!","time":"16:10"}]"#,
    );
    let text = &s[1..];
    let e = p(text);
    assert_eq!(e.event(), Some("send_message"));
    assert_eq!(
        e.first_arg(),
        Some(r#"{"room":"1","author":"Celular","message":"Olá mundo!","time":"16:10"}"#)
    );
    let args = e.args();
    let start = args.as_ptr() as usize - s.as_ptr() as usize;
    assert_eq!(&s[start..start + args.len()], args);
    assert!(matches!(e.event, Some(Cow::Borrowed(_))));

    // Relay: re-encode as receive_message by concatenation.
    let mut out = String::from("4");
    encode_event_raw(&mut out, e.nsp(), None, "receive_message", e.args());
    assert_eq!(
        out,
        r#"42["receive_message",{"room":"1","author":"Celular","message":"Olá mundo!","time":"16:10"}]"#
    );
}

#[test]
fn whitespace_inside_the_json_is_kept_raw() {
    let e = p("2[ \"a\" , 1 ,\n{\"b\": 2} ]");
    assert_eq!(e.event(), Some("a"));
    assert_eq!(e.args(), "1 ,\n{\"b\": 2}");
    assert_eq!(e.to_packet().unwrap().to_text(), r#"2["a",1,{"b":2}]"#);
}

#[test]
fn owned_encoding_preserves_key_order_and_is_compact() {
    let text = r#"2["x",{"z":1,"a":[1,2,{"m":null,"b":"\n"}],"é":"ü"}]"#;
    assert_eq!(Packet::decode(text).unwrap().to_text(), text);
    assert!(matches!(
        Packet::decode(r#"51-["a",{"_placeholder":true,"num":0}]"#),
        Err(SocketIoError::AttachmentsFollow { count: 1, .. })
    ));
}

#[test]
fn validate_mirrors_is_packet_valid() {
    assert!(Packet::event("/", "foo", vec![]).validate().is_ok());
    assert!(matches!(
        Packet::event("/a,b", "foo", vec![]).validate(),
        Err(SocketIoError::InvalidNamespace { .. })
    ));
    assert!(matches!(
        Packet::event("/", "connect", vec![]).validate(),
        Err(SocketIoError::ReservedEventName { .. })
    ));
    let mut bad = Packet::event("/", "foo", vec![]);
    bad.packet_type = PacketType::BinaryEvent;
    assert!(bad.validate().is_err(), "binary type without attachments");
}

#[test]
fn summaries() {
    let cases = [
        ("0", "CONNECT nsp=/"),
        (
            r#"0/admin,{"token":"abc"}"#,
            r#"CONNECT nsp=/admin {"token":"abc"}"#,
        ),
        ("1/admin,", "DISCONNECT nsp=/admin"),
        (r#"2["foo"]"#, "EVENT foo nsp=/"),
        (
            r#"2/admin,456["bar",1,"2"]"#,
            r#"EVENT bar nsp=/admin id=456 1,"2""#,
        ),
        (r#"3/admin,13["bar"]"#, r#"ACK nsp=/admin id=13 ["bar"]"#),
        (
            r#"4/random,{"message":"Invalid namespace"}"#,
            r#"CONNECT_ERROR nsp=/random {"message":"Invalid namespace"}"#,
        ),
        (
            r#"52-789["x",{"_placeholder":true,"num":0},{"a":{"_placeholder":true,"num":1}}]"#,
            r#"BINARY_EVENT x nsp=/ id=789 <binary #0>,{"a":<binary #1>}"#,
        ),
    ];
    for (text, want) in cases {
        assert_eq!(p(text).summary(), want, "{text}");
    }
    let mut r = Reassembler::new();
    r.push_text(r#"51-["baz",{"_placeholder":true,"num":0}]"#)
        .unwrap();
    let packet = r.push_binary(vec![1u8, 2, 3, 4]).unwrap().unwrap();
    assert_eq!(packet.summary(), "BINARY_EVENT baz nsp=/ <binary 4 B>");
    let long = format!(r#"2["x","{}"]"#, "a".repeat(300));
    assert!(p(&long).summary().ends_with('…'));
}

#[test]
fn regression_fuzz_large_numbers_round_trip_exactly_through_value() {
    // Found by the socketio_reassembler fuzz target: a number beyond u64 is an f64, and without
    // serde_json's `float_roundtrip` its re-parse could differ by one ULP.
    let header = r#"62-["msesage",{"_,laceholder":true,"num":99990001864712049423024119},{"_pr":true,"r":true,"nDm":0}]"#;
    let mut r = Reassembler::new();
    assert_eq!(r.push_text(header), Ok(None));
    r.push_binary(vec![1u8, 2]).unwrap();
    let packet = r.push_binary(vec![3u8, 4]).unwrap().unwrap();
    let mut again = Reassembler::new();
    let mut out = None;
    for m in packet.to_engineio() {
        out = match m {
            engineio::Packet::Message(t) => again.push_text(&t).unwrap(),
            engineio::Packet::Binary(b) => again.push_binary(b).unwrap(),
            other => panic!("{other:?}"),
        };
    }
    assert_eq!(out, Some(packet));
    for f in [
        "0.1",
        "1e300",
        "-2.2250738585072014e-308",
        "5e-324",
        "123456789.12345678",
    ] {
        let text = format!("3[{f}]");
        let v = Packet::decode(&text).unwrap();
        assert_eq!(Packet::decode(&v.to_text()).unwrap(), v, "{f}");
    }
}

#[test]
fn regression_fuzz_binary_header_has_no_owned_form_without_its_attachments() {
    // Found by the socketio_packet fuzz target: the owned form of a bare header encoded `0-`.
    let h = p(r#"52-789["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#);
    assert_eq!(
        h.to_packet(),
        Err(SocketIoError::AttachmentsFollow {
            packet_type: PacketType::BinaryEvent,
            count: 2
        })
    );
    assert!(h.data_value().unwrap().is_some());
}

/// Differential tests of the allocation-free payload scanner against the serde_json path: the
/// scanner may only answer for text serde_json accepts, with the same shape and element slices.
mod scan_differential {
    use super::*;
    use proptest::prelude::*;

    /// The property: a `Some` from the scanner is exactly what serde_json says; a `None` changes
    /// nothing (the caller asks serde_json). Returns whether the scanner answered.
    fn check(text: &str) -> bool {
        let slow = serde_shape(text, 0);
        match scan::scan(text) {
            Some(fast) => {
                assert_eq!(
                    slow,
                    Ok(Shape::from_fast(text, fast)),
                    "scanner accepted {text:?}"
                );
                true
            }
            None => false,
        }
    }

    fn float() -> impl Strategy<Value = f64> {
        any::<f64>().prop_filter("finite", |f| f.is_finite())
    }

    /// Random values, serialized by serde_json (compact and pretty).
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            float().prop_map(Value::from),
            "\\PC{0,8}".prop_map(Value::String),
            "[\\x00-\\x1f\"\\\\/\u{7f}\u{e9}\u{1F600}]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 48, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec(("\\PC{0,4}", inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// Hand-written JSON-ish text: whitespace, every escape form (surrogates too), odd numbers.
    fn texty() -> impl Strategy<Value = String> {
        let atom = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("fals".to_owned()),
            "-?(0|[1-9][0-9]{0,3}|0[0-9])(\\.[0-9]{0,2})?([eE][+-]?[0-9]{0,3})?",
            "1e[0-9]{3}",
            "\"([a-z \u{e9}]|\\\\[\"\\\\/bfnrtux]|\\\\u[0-9a-fA-FdD]{4}|\\\\u[dD][89abAB][0-9a-f]{2}(\\\\u[dD][c-fC-F][0-9a-f]{2})?|[\\x00-\\x1f])*\"?",
        ];
        atom.prop_recursive(6, 40, 5, |inner| {
            let ws = "[ \\t\\n\\r]{0,2}";
            prop_oneof![
                (
                    prop::collection::vec((ws, inner.clone(), ws), 0..5),
                    any::<bool>()
                )
                    .prop_map(|(els, trailing)| {
                        let body: Vec<String> = els
                            .into_iter()
                            .map(|(a, v, b)| format!("{a}{v}{b}"))
                            .collect();
                        let comma = if trailing { "," } else { "" };
                        format!("[{}{comma}]", body.join(","))
                    }),
                prop::collection::vec((ws, "\"[a-z\\\\\"]{0,3}\"|1", ws, inner), 0..4).prop_map(
                    |kv| {
                        let body: Vec<String> = kv
                            .into_iter()
                            .map(|(a, k, b, v)| format!("{a}{k}{b}:{v}"))
                            .collect();
                        format!("{{{}}}", body.join(","))
                    }
                ),
            ]
        })
    }

    /// Applies up to three byte-level edits (insert, delete, replace) from a JSON-heavy alphabet,
    /// keeping the result UTF-8 (the parser's input is `&str`).
    fn mutate(text: &str, edits: &[(u8, usize, u8)]) -> String {
        const ALPHABET: &[u8] = b"[]{}\",:\\ \t\n0123456789-+.eEuntrfalsx\x00\x1f";
        let mut bytes = text.as_bytes().to_vec();
        for &(op, at, pick) in edits {
            let b = ALPHABET[usize::from(pick) % ALPHABET.len()];
            let at = if bytes.is_empty() {
                0
            } else {
                at % (bytes.len() + 1)
            };
            match op % 3 {
                0 => bytes.insert(at, b),
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ if at < bytes.len() => bytes[at] = b,
                _ => bytes.push(b),
            }
        }
        String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn trim_json_ws_is_trim_matches(s in "[ \t\n\r\x0b\u{a0}aé😀]{0,12}") {
            prop_assert_eq!(trim_json_ws(&s), s.trim_matches([' ', '\t', '\n', '\r']));
        }

        #[test]
        fn serialized_values(v in value(), pretty: bool, pad in "[ \\t\\n\\r]{0,2}") {
            let text = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }.unwrap();
            let text = format!("{pad}{text}{pad}");
            let answered = check(&text);
            // The fast path must actually take what serde_json writes (arrays, objects, strings;
            // serde_json never writes surrogate escapes) unless it nests deeper than the scanner.
            if matches!(v, Value::Array(_) | Value::Object(_) | Value::String(_)) {
                prop_assert!(answered, "scanner declined {text:?}");
            }
        }

        #[test]
        fn mutated_values(v in value(), edits in prop::collection::vec(any::<(u8, usize, u8)>(), 1..4)) {
            check(&mutate(&serde_json::to_string(&v).unwrap(), &edits));
        }

        #[test]
        fn hand_written_text(t in texty(), edits in prop::collection::vec(any::<(u8, usize, u8)>(), 0..3)) {
            check(&t);
            check(&mutate(&t, &edits));
        }

        #[test]
        fn whole_packets(t in texty(), prefix in "(0|1|2|3|4|51-|61-)(/a,)?[0-9]{0,2}") {
            // The same packet or the same error (kind, offset, message) with and without the scanner.
            let packet = format!("{prefix}{t}");
            let fast = PacketRef::parse(&packet);
            SERDE_ONLY.with(|c| c.set(true));
            let slow = PacketRef::parse(&packet);
            SERDE_ONLY.with(|c| c.set(false));
            prop_assert_eq!(fast, slow);
        }
    }

    #[test]
    fn corner_cases() {
        for (text, fast) in [
            ("[]", true),
            (" [ ] ", true),
            ("[1,2,3]", true),
            ("[\"a\",{\"b\":[1,{}]},null]", true),
            ("\"\\u00e9\\n\"", true),
            ("{}", true),
            ("[\"\\ud83d\\ude00\"]", false),
            ("[\"\\ud800\"]", false),
            ("\"\\udc00\"", false),
            ("1", false),
            ("null", false),
            ("1e400", false),
            ("[1e400]", true),
            ("[-0.0e-0]", true),
            ("[01]", false),
            ("[1.]", false),
            ("[.5]", false),
            ("[1,]", false),
            ("{\"a\":1,}", false),
            ("{\"a\" 1}", false),
            ("{1:1}", false),
            ("[\"\t\"]", false),
            ("[\"\\x\"]", false),
            ("[\"\\u12g4\"]", false),
            ("[tru]", false),
            ("[true false]", false),
            ("[] x", false),
            ("[", false),
            ("[[]", false),
            ("[}", false),
            ("{]", false),
            ("", false),
            ("\u{a0}[]", false),
        ] {
            assert_eq!(check(text), fast, "{text:?}");
        }
        let deep = |n: usize| format!("[{}{}]", "[".repeat(n), "]".repeat(n));
        // The outer array plus 119 levels is the scanner's limit (120); deeper goes to serde_json.
        assert!(check(&deep(119)));
        assert!(!check(&deep(120)));
        assert!(!check(&deep(300)));
        assert!(!check("[{\"a\":[{\"b\":[}]}]"));
    }
}

#[test]
fn spans_move_a_packet_to_a_copy_of_its_text() {
    for text in [
        "0",
        "0/admin,{\"token\":\"abc\"}",
        "1/admin,",
        "2[\"send_message\",{\"room\":\"1\"}]",
        "2/chat,17[\"a\\\"b\",1,2]",
        "2[42,\"x\"]",
        "3/chat,5[]",
        "51-[\"up\",{\"_placeholder\":true,\"num\":0}]",
        "4\"not allowed\"",
        "2  [ \"spaced\" , {} ]  ",
    ] {
        let packet = p(text);
        let Some(spans) = packet.spans(text) else {
            panic!("{text}: every part is a slice of the text");
        };
        let copy = text.to_string();
        let Some(moved) = spans.resolve(&copy) else {
            panic!("{text}: the copy has the same ranges");
        };
        assert_eq!(moved, packet, "{text}");
        let inside = |s: &str| s.is_empty() || copy.as_bytes().as_ptr_range().contains(&s.as_ptr());
        assert!(
            moved.data().is_none_or(inside),
            "{text}: data points into the copy"
        );
        assert!(inside(moved.args()), "{text}: args point into the copy");
        if packet.data().is_some() {
            assert_eq!(
                spans.resolve("2"),
                None,
                "{text}: ranges past the end of a shorter text"
            );
        }
    }
    // Parts of another string (even with the same text) cannot be located.
    let packet = p("2[\"x\"]");
    let other = String::from("2[\"x\"]");
    assert_eq!(packet.spans(&other), None);
}
