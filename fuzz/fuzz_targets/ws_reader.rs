//! Fuzz the strict streaming Reader: the same bytes fed whole or in chunks give the same result.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wschat::wire::deflate::Inflater;
use wschat::wire::ws::{Message, ProtocolError, Reader, Role};

/// Every message until `Ok(None)` or the first error.
fn run(config: u8, chunks: &[&[u8]]) -> (Vec<Message>, Option<ProtocolError>) {
    let role = if config & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let mut reader = Reader::new(role, 4096);
    if config & 2 != 0 {
        let bits = 8 + (config >> 4) % 8;
        let inflater = Inflater::new(bits, config & 4 != 0).expect("8..=15 bits");
        reader = reader.with_inflater(inflater);
    }
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match reader.decode(&mut buf) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => {
                    // Its close code is one of the three the reader can ask for.
                    assert!(matches!(e.close_code(), 1002 | 1007 | 1009));
                    return (out, Some(e));
                }
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&config, rest)) = data.split_first() else {
        return;
    };
    let Some((&step, bytes)) = rest.split_first() else {
        return;
    };
    let whole = run(config, &[bytes]);
    let step = usize::from(step % 16) + 1;
    let chunks: Vec<&[u8]> = bytes.chunks(step).collect();
    let pieces = run(config, &chunks);
    assert_eq!(whole, pieces, "chunking changed the result");
});
