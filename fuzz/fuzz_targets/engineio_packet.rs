//! Fuzz the Engine.IO packet parser: text frames and binary frames never panic, errors point
//! inside the input, and whatever parses re-encodes to text that parses to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wschat::proto::engineio::{Packet, PacketRef, WsFrame};

fuzz_target!(|data: &[u8]| {
    match PacketRef::parse_text_bytes(data) {
        Ok(p) => {
            let owned = p.to_owned_packet();
            let _ = p.summary();
            let text = owned.to_text();
            assert_eq!(owned.encoded_len(), text.len());
            let again = PacketRef::parse_text(&text).expect("re-encoded packet parses");
            assert_eq!(again.to_owned_packet(), owned);
            let mut buf = String::new();
            let back: Packet = match owned.encode_ws(&mut buf) {
                WsFrame::Text(t) => PacketRef::parse_text(t)
                    .expect("text frame")
                    .to_owned_packet(),
                WsFrame::Binary(b) => PacketRef::parse_binary(b).to_owned_packet(),
            };
            assert_eq!(back, owned);
        }
        Err(e) => assert!(e.offset().expect("parse errors carry an offset") <= data.len()),
    }
    let b = PacketRef::parse_binary(data).to_owned_packet();
    assert_eq!(b, Packet::binary(data.to_vec()));
});
