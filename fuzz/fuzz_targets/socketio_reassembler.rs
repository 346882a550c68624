//! Fuzz the binary attachment reassembler: a stream of text and binary Engine.IO messages never
//! makes it panic, and every packet it completes re-encodes to the same messages.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wschat::proto::engineio;
use wschat::proto::socketio::Reassembler;

fuzz_target!(|data: &[u8]| {
    let mut r = Reassembler::new();
    // Messages are separated by 0xff; a message starting with 0x00 is binary, else text.
    for chunk in data.split(|&b| b == 0xff) {
        let result = match chunk.split_first() {
            Some((0, bin)) => r.push_binary(Bytes::copy_from_slice(bin)),
            _ => match std::str::from_utf8(chunk) {
                Ok(t) => r.push_text(t),
                Err(_) => continue,
            },
        };
        assert!(r.missing() <= 10);
        if let Ok(Some(packet)) = result {
            let msgs = packet.to_engineio();
            let mut again = Reassembler::new();
            let mut out = None;
            for m in msgs {
                out = match m {
                    engineio::Packet::Message(t) => again.push_text(&t).expect("text"),
                    engineio::Packet::Binary(b) => again.push_binary(b).expect("binary"),
                    other => panic!("unexpected {other:?}"),
                };
            }
            assert_eq!(out.as_ref(), Some(&packet));
            let _ = packet.args_with_binary();
            let _ = packet.summary();
        }
    }
});
