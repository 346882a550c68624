//! Fuzz the word-at-a-time mask against the byte-at-a-time reference (RFC 6455 §5.3).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wschat::wire::ws::{apply_mask, apply_mask_bytewise};

fuzz_target!(|data: &[u8]| {
    let Some((head, payload)) = data.split_first_chunk::<6>() else {
        return;
    };
    let key = [head[0], head[1], head[2], head[3]];
    let phase = usize::from(head[4]);
    let start = usize::from(head[5] % 16).min(payload.len());
    let mut fast = payload.to_vec();
    let mut slow = payload.to_vec();
    apply_mask(&mut fast[start..], key, phase);
    apply_mask_bytewise(&mut slow[start..], key, phase);
    assert_eq!(fast, slow);
});
