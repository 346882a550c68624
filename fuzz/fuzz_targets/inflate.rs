//! Fuzz the permessage-deflate inflater (bounded output) and the deflate/inflate round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wschat::wire::deflate::{Deflater, Inflater};

fuzz_target!(|data: &[u8]| {
    let Some((&config, rest)) = data.split_first() else {
        return;
    };
    let bits = 8 + config % 8;
    let takeover = config & 8 != 0;
    // Untrusted compressed messages: never more than the limit, never a panic.
    let mut inflater = Inflater::new(bits, takeover).unwrap();
    for message in rest.split(|&b| b == 0xa5) {
        if let Ok(out) = inflater.inflate_message(message, 1 << 16) {
            assert!(out.len() <= 1 << 16);
        }
    }
    // The same bytes as plain messages round-trip through deflate and inflate.
    let mut deflater = Deflater::new(bits, takeover).unwrap();
    let mut inflater = Inflater::new(bits, takeover).unwrap();
    for message in rest.split(|&b| b == 0xa5) {
        let compressed = deflater.deflate_message(message).unwrap();
        assert_eq!(
            inflater
                .inflate_message(&compressed, message.len())
                .unwrap(),
            message
        );
    }
});
