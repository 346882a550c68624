//! Criterion benchmarks of the protocol core: Engine.IO + Socket.IO decoding of the chat message
//! (zero-copy fast path vs the owned `serde_json::Value` path) and encoding `receive_message`,
//! in packets per second. Run: `cargo bench --bench proto -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wschat::proto::chat::{self, ChatEvent, ChatEventRef, ChatMessage};
use wschat::proto::engineio::{self, Data, Payload, ServerSession, SessionConfig, TransportKind};
use wschat::proto::socketio;

/// The React app's chat message, as a WebSocket text frame.
const FRAME: &str =
    r#"42["send_message",{"room":"1","author":"Celular","message":"Olá mundo!","time":"16:10"}]"#;

fn sio_text(frame: &str) -> &str {
    match engineio::PacketRef::parse_text(frame) {
        Ok(engineio::PacketRef::Message(t)) => t,
        other => panic!("not a message: {other:?}"),
    }
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_chat_message");
    g.throughput(Throughput::Elements(1));

    g.bench_function("engineio_only", |b| {
        b.iter(|| black_box(engineio::PacketRef::parse_text(black_box(FRAME)).is_ok()))
    });

    g.bench_function("borrowed_packetref", |b| {
        b.iter(|| {
            let p = socketio::PacketRef::parse(sio_text(black_box(FRAME))).expect("valid");
            black_box((p.event().map(str::len), p.args().len()))
        })
    });

    g.bench_function("borrowed_chat_fast_path", |b| {
        b.iter(|| {
            let p = socketio::PacketRef::parse(sio_text(black_box(FRAME))).expect("valid");
            match ChatEventRef::parse(&p).expect("chat") {
                ChatEventRef::SendMessage { room, payload } => black_box((room, payload.len())),
                other => panic!("{other:?}"),
            }
        })
    });

    g.bench_function("owned_value_packet", |b| {
        b.iter(|| black_box(socketio::Packet::decode(sio_text(black_box(FRAME))).expect("valid")))
    });

    g.bench_function("owned_typed_chat_event", |b| {
        b.iter(|| {
            let p = socketio::Packet::decode(sio_text(black_box(FRAME))).expect("valid");
            black_box(ChatEvent::from_packet(&p).expect("chat"))
        })
    });

    g.bench_function("server_session_ws_text", |b| {
        let now = Instant::now();
        let mut s = ServerSession::new(
            "bench",
            TransportKind::WebSocket,
            SessionConfig::default(),
            now,
        );
        while s.poll_transmit().is_some() {}
        b.iter(|| match s.handle_ws_text(black_box(FRAME), now) {
            Ok(Some(Data::Text(t))) => black_box(t.len()),
            other => panic!("{other:?}"),
        })
    });
    g.finish();

    let mut g = c.benchmark_group("decode_polling_payload_10_chat_messages");
    g.throughput(Throughput::Elements(10));
    let body = [FRAME; 10].join("\u{1e}");
    g.bench_function("borrowed", |b| {
        b.iter(|| {
            let mut n = 0;
            for p in Payload::iter(black_box(&body)) {
                if let Ok(engineio::PacketRef::Message(t)) = p {
                    n += socketio::PacketRef::parse(t).expect("valid").args().len();
                }
            }
            black_box(n)
        })
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let p = socketio::PacketRef::parse(sio_text(FRAME)).expect("valid");
    let payload = p.first_arg().expect("argument");
    let message = ChatMessage::new("1", "Celular", "Olá mundo!", "16:10");

    let mut g = c.benchmark_group("encode_receive_message");
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw_concat_reused_buffer", |b| {
        let mut buf = String::with_capacity(256);
        b.iter(|| {
            buf.clear();
            buf.push('4');
            chat::encode_receive_message(&mut buf, "/", black_box(payload));
            black_box(buf.len())
        })
    });
    g.bench_function("typed_event_encode", |b| {
        let ev = ChatEvent::ReceiveMessage(message.clone());
        let mut buf = String::with_capacity(256);
        b.iter(|| {
            buf.clear();
            buf.push('4');
            black_box(&ev).encode("/", &mut buf);
            black_box(buf.len())
        })
    });
    g.bench_function("owned_value_packet", |b| {
        let ev = ChatEvent::ReceiveMessage(message.clone());
        b.iter(|| {
            let packet = black_box(&ev).to_packet("/");
            black_box(engineio::Packet::message(format!("4{}", packet.to_text())))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("relay_one_message");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_route_encode", |b| {
        let mut buf = String::with_capacity(256);
        b.iter(|| {
            let p = socketio::PacketRef::parse(sio_text(black_box(FRAME))).expect("valid");
            if let Ok(ChatEventRef::SendMessage { room, payload }) = ChatEventRef::parse(&p) {
                buf.clear();
                chat::encode_receive_message(&mut buf, p.nsp(), payload);
                black_box((room, buf.len()));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
