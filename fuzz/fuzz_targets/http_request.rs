//! Fuzz the HTTP/1.1 request head parser and the WebSocket Upgrade checks on top of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wschat::wire::http::{DeflateConfig, RequestHead, negotiate_permessage_deflate};

fuzz_target!(|data: &[u8]| {
    match RequestHead::parse(data) {
        Ok(Some((req, len))) => {
            assert!(len <= data.len());
            // The head is complete at `len`: parsing just that much gives the same head.
            let (again, len2) = RequestHead::parse(&data[..len]).unwrap().unwrap();
            assert_eq!((&again, len2), (&req, len));
            let _ = req.validate_websocket_upgrade();
            let _ = req.protocols();
            if let Ok(offers) = req.extensions() {
                let _ = negotiate_permessage_deflate(&offers, &DeflateConfig::default());
            }
        }
        Ok(None) => {}
        Err(e) => assert!(e.offset <= data.len()),
    }
});
