//! Fuzz the HTTP/1.1 response head parser and the client's checks of a 101 response.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wschat::wire::http::{PerMessageDeflateParams, ResponseHead};

fuzz_target!(|data: &[u8]| {
    match ResponseHead::parse(data) {
        Ok(Some((resp, len))) => {
            assert!(len <= data.len());
            let (again, len2) = ResponseHead::parse(&data[..len]).unwrap().unwrap();
            assert_eq!((&again, len2), (&resp, len));
            let _ = resp.validate_websocket_upgrade("dGhlIHNhbXBsZSBub25jZQ==", &["chat"]);
            if let Ok(exts) = resp.extensions() {
                for e in &exts {
                    let _ = PerMessageDeflateParams::default_offer().accept_response(e);
                }
            }
        }
        Ok(None) => {}
        Err(e) => assert!(e.offset <= data.len()),
    }
});
