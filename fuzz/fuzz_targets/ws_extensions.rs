//! Fuzz the Sec-WebSocket-Extensions parser, permessage-deflate parameters and negotiation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wschat::wire::http::{
    DeflateConfig, PerMessageDeflateParams, negotiate_permessage_deflate, parse_extensions,
};
use wschat::wire::ws::Role;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    match parse_extensions(value) {
        Ok(exts) => {
            for e in &exts {
                // What we print parses back to the same extension.
                let printed = e.to_string();
                let again = parse_extensions(&printed).expect("printed extension parses");
                assert_eq!(again.len(), 1);
                assert_eq!(&again[0], e);
                if let Ok(p) = PerMessageDeflateParams::from_extension(e) {
                    let text = p.to_string();
                    let back = parse_extensions(&text).unwrap();
                    assert_eq!(PerMessageDeflateParams::from_extension(&back[0]), Ok(p));
                }
            }
            if let Some(agreed) = negotiate_permessage_deflate(&exts, &DeflateConfig::default()) {
                agreed
                    .codecs(Role::Server)
                    .expect("negotiated window bits are valid");
            }
        }
        Err(e) => assert!(e.offset <= value.len()),
    }
});
