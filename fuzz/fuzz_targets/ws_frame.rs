//! Fuzz the lenient frame parsers: FrameHeader::parse, Frame::parse, violations, Close payloads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wschat::wire::ws::{CloseFrame, Frame, FrameHeader, Role, Rsv};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(h)) = FrameHeader::parse(data) {
        // A parsed header re-emits to exactly the bytes it came from.
        let emitted = h.to_bytes();
        assert_eq!(emitted.as_ref(), &data[..h.header_len]);
        let _ = h.violations(Rsv::RSV1);
        let _ = h.violations_from(Rsv::NONE, Role::Client).to_string();
    }
    match Frame::parse(data) {
        Ok(Some((frame, used))) => {
            assert!(used <= data.len());
            assert_eq!(used, frame.header.header_len + frame.payload.len());
            let payload = frame.unmasked_payload();
            let _ = CloseFrame::parse(&payload);
        }
        Ok(None) => {
            // Need more bytes: then the header parser agrees or needs more itself.
            assert!(FrameHeader::parse(data).is_ok());
        }
        Err(e) => {
            assert!(e.offset < data.len());
            assert!(FrameHeader::parse(data).is_err());
        }
    }
});
