//! Fuzz the Socket.IO parser: never panics, errors point inside the input, a parsed packet
//! re-encodes canonically to text that parses to the same packet, and the chat readers cope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wschat::proto::chat::{ChatEvent, ChatEventRef};
use wschat::proto::socketio::PacketRef;

fuzz_target!(|data: &[u8]| {
    let p = match PacketRef::parse_bytes(data) {
        Ok(p) => p,
        Err(e) => {
            if let Some(o) = e.offset() {
                assert!(o <= data.len());
            }
            return;
        }
    };
    let _ = p.summary();
    let mut text = String::new();
    p.encode(&mut text);
    let again = PacketRef::parse(&text).expect("canonical re-encoding parses");
    assert_eq!(again.packet_type(), p.packet_type());
    assert_eq!(again.nsp(), p.nsp());
    assert_eq!(again.id(), p.id());
    assert_eq!(again.event(), p.event());
    assert_eq!(again.args(), p.args());
    // The owned form (absent for JSON a `Value` cannot hold, such as 1e400) re-encodes too.
    if let Ok(owned) = p.to_packet() {
        let t = owned.to_text();
        let back = PacketRef::parse(&t).expect("owned re-encoding parses");
        assert_eq!(back.to_packet().expect("owned again"), owned);
    }
    let _ = ChatEvent::from_ref(&p);
    let _ = ChatEventRef::parse(&p);
});
