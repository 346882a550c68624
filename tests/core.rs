//! The protocol core end to end on the original project's own bytes: frame 4295 of its Wireshark
//! trace goes through wire (RFC 6455) -> Engine.IO -> Socket.IO -> the chat event, with no IO.

use wschat::proto::chat::{ChatEvent, ChatMessage};
use wschat::proto::engineio::PacketRef as EnginePacket;
use wschat::proto::socketio::{PacketRef as SioPacket, PacketType};
use wschat::wire::ws::{Frame, LengthForm, Opcode};

const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/captures/seed-frame-4295.pcap");

/// The TCP payload of the capture's single packet, found through the pcap and IP/TCP headers.
fn seed_tcp_payload() -> Vec<u8> {
    let file = std::fs::read(SEED).expect("captures/seed-frame-4295.pcap is in the repository");
    let (rest, header) = pcap_parser::pcap::parse_pcap_header(&file).expect("pcap global header");
    assert_eq!(header.network, pcap_parser::Linktype::ETHERNET);
    let (_, block) = pcap_parser::pcap::parse_pcap_frame(rest).expect("one pcap record");
    let packet = etherparse::SlicedPacket::from_ethernet(block.data).expect("Ethernet/IPv4/TCP");
    let Some(etherparse::TransportSlice::Tcp(tcp)) = packet.transport else {
        panic!("the seed packet is TCP");
    };
    assert_eq!(tcp.source_port(), 58760);
    assert_eq!(tcp.destination_port(), 3001);
    tcp.payload().to_vec()
}

#[test]
fn seed_frame_4295_decodes_to_the_original_send_message() {
    let bytes = seed_tcp_payload();

    // RFC 6455: one masked FIN text frame, key a0 94 33 cb, 89 payload bytes, nothing left over.
    let (frame, used) = Frame::parse(&bytes)
        .expect("well-formed")
        .expect("complete frame");
    assert_eq!(used, bytes.len());
    assert!(frame.header.fin);
    assert_eq!(frame.header.opcode, Opcode::Text);
    assert_eq!(frame.header.mask, Some([0xa0, 0x94, 0x33, 0xcb]));
    assert_eq!(frame.header.payload_len, 89);
    assert_eq!(frame.header.length_form, LengthForm::Short7);
    let text = frame.unmasked_payload();
    let text = std::str::from_utf8(&text).expect("text frames carry UTF-8");

    // Engine.IO: a message packet.
    let engine = EnginePacket::parse_text(text).expect("Engine.IO packet");
    let EnginePacket::Message(sio_text) = engine else {
        panic!("Engine.IO message packet, got {engine:?}");
    };

    // Socket.IO: EVENT send_message on the main namespace, no ack.
    let sio = SioPacket::parse(sio_text).expect("Socket.IO packet");
    assert_eq!(sio.packet_type(), PacketType::Event);
    assert_eq!(sio.nsp(), "/");
    assert_eq!(sio.id(), None);
    assert_eq!(sio.event(), Some("send_message"));

    // The chat event, typed.
    let event = ChatEvent::from_ref(&sio).expect("a chat event");
    let expected = ChatMessage::new("1", "Celular", "Olá mundo!", "16:10");
    assert_eq!(event, ChatEvent::SendMessage(expected));

    // And back: the same message emitted by the core is the same bytes the app's client sent.
    let mut wire_text = String::from("4");
    event.encode("/", &mut wire_text);
    assert_eq!(wire_text, text);
}
