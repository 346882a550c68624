//! permessage-deflate (RFC 7692): per-direction inflater and deflater with context takeover.
//!
//! One [`Inflater`] decompresses the messages of one direction and one [`Deflater`] compresses
//! them, each with or without context takeover (RFC 7692 §7.1.1) and honouring the negotiated
//! window bits (RFC 7692 §7.1.2). A message is a raw DEFLATE stream flushed with an empty stored
//! block whose trailing `00 00 ff ff` is removed by the sender (§7.2.1) and appended again by the
//! receiver (§7.2.2).
//!
//! zlib (and zlib-rs, its port behind `flate2`) cannot *compress* a raw DEFLATE stream with an
//! 8-bit (256-byte) window: `deflateInit2` rejects it. A [`Deflater`] asked for 8 bits therefore
//! uses 9, which is still correct for a peer with a 256-byte window: zlib never emits a match
//! distance larger than `window size - MIN_LOOKAHEAD` (512 - 262 = 250 bytes for 9 bits), so every
//! back-reference stays inside 256 bytes (the test `deflate_8_bits_is_readable_with_256_byte_window`
//! pins this with an independent RFC 1951 decoder). Decompression with a 512-byte window reads
//! every stream made with a 256-byte one, so an [`Inflater`] asked for 8 bits also uses 9.
//!
//! Memory: the deflater's window follows the window bits, but zlib-rs's inflater always allocates
//! a 32 KiB window, whatever the bits; with context takeover that stays allocated per connection
//! and direction.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The empty stored block that ends every compressed message (RFC 7692 §7.2.1).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Smallest and largest LZ77 window sizes (base-2 logarithm) RFC 7692 §7.1.2 allows.
pub const MIN_WINDOW_BITS: u8 = 8;
/// Largest window size (and the default when no `*_max_window_bits` is negotiated).
pub const MAX_WINDOW_BITS: u8 = 15;

/// What went wrong while compressing or decompressing a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeflateError {
    /// Window bits outside 8..=15 (RFC 7692 §7.1.2.1).
    #[error("window bits {0} outside 8..=15 (RFC 7692 §7.1.2)")]
    InvalidWindowBits(u8),
    /// The compressed bytes are not a valid DEFLATE stream.
    #[error("invalid compressed data at compressed byte {offset}: {message}")]
    Corrupt {
        /// How many compressed bytes of this message were consumed when it failed.
        offset: u64,
        /// zlib's description of the problem.
        message: String,
    },
    /// The decompressed message would exceed the size limit (decompression bomb guard).
    #[error("decompressed message exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// An earlier message of this direction failed to decompress, and with context takeover the
    /// shared LZ77 window it would have filled is gone (RFC 7692 §7.2.2).
    #[error(
        "an earlier message failed to decompress, so the shared window (context takeover) is lost"
    )]
    ContextLost,
    /// The compressor reported an error (should not happen with valid parameters).
    #[error("compression failed: {0}")]
    Compress(String),
}

/// zlib cannot use 8 bits for raw DEFLATE; 9 is compatible (see the module documentation).
fn zlib_window_bits(window_bits: u8) -> Result<u8, DeflateError> {
    if !(MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&window_bits) {
        return Err(DeflateError::InvalidWindowBits(window_bits));
    }
    Ok(window_bits.max(9))
}

/// Decompresses the messages of one direction (RFC 7692 §7.2.2).
pub struct Inflater {
    inner: Decompress,
    window_bits: u8,
    context_takeover: bool,
    poisoned: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("window_bits", &self.window_bits)
            .field("context_takeover", &self.context_takeover)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl Inflater {
    /// A new inflater for a peer compressing with `window_bits` (8..=15), keeping the LZ77 window
    /// between messages when `context_takeover` is true (RFC 7692 §7.1.1).
    pub fn new(window_bits: u8, context_takeover: bool) -> Result<Self, DeflateError> {
        let bits = zlib_window_bits(window_bits)?;
        Ok(Self {
            inner: Decompress::new_with_window_bits(false, bits),
            window_bits,
            context_takeover,
            poisoned: false,
        })
    }

    /// The negotiated window bits.
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Whether the window is kept between messages.
    pub fn context_takeover(&self) -> bool {
        self.context_takeover
    }

    /// Forget the shared window (and a previous failure): the next message starts afresh.
    pub fn reset(&mut self) {
        self.inner.reset(false);
        self.poisoned = false;
    }

    /// Decompresses one whole message (the concatenated payloads of its frames) and returns the
    /// uncompressed bytes, failing once they would exceed `max_len`.
    pub fn inflate_message(
        &mut self,
        compressed: &[u8],
        max_len: usize,
    ) -> Result<Vec<u8>, DeflateError> {
        let mut out = Vec::new();
        self.inflate_message_into(compressed, max_len, &mut out)?;
        Ok(out)
    }

    /// Like [`Inflater::inflate_message`], appending to `out` (`max_len` counts only the bytes
    /// this message adds).
    pub fn inflate_message_into(
        &mut self,
        compressed: &[u8],
        max_len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), DeflateError> {
        if self.poisoned {
            return Err(DeflateError::ContextLost);
        }
        let start = out.len();
        let limit = start.saturating_add(max_len);
        // A first guess for the output; chat text typically inflates 2-4x.
        out.reserve(
            compressed
                .len()
                .saturating_mul(3)
                .saturating_add(64)
                .min(max_len.saturating_add(1)),
        );
        let mut ended = false;
        let mut consumed_total = 0u64;
        let result = self
            .feed(
                compressed,
                out,
                (limit, max_len),
                &mut ended,
                &mut consumed_total,
            )
            // RFC 7692 §7.2.2: append 00 00 ff ff to the payload before decompressing.
            .and_then(|()| {
                self.feed(
                    &TAIL,
                    out,
                    (limit, max_len),
                    &mut ended,
                    &mut consumed_total,
                )
            });
        match result {
            Ok(()) => {
                if ended {
                    // RFC 7692 §7.2.3.4: the sender closed the DEFLATE stream (BFINAL = 1). The
                    // next message is a new stream; with context takeover it may still refer back
                    // to this message's bytes, which zlib only accepts as a preset dictionary.
                    self.inner.reset(false);
                    if self.context_takeover {
                        let window = 1usize << self.window_bits.max(9);
                        let produced = out.get(start..).unwrap_or_default();
                        let tail = produced
                            .get(produced.len().saturating_sub(window)..)
                            .unwrap_or_default();
                        if !tail.is_empty() && self.inner.set_dictionary(tail).is_err() {
                            self.poisoned = true;
                        }
                    }
                } else if !self.context_takeover {
                    // RFC 7692 §7.1.1: without context takeover every message starts afresh.
                    self.inner.reset(false);
                }
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                self.inner.reset(false);
                self.poisoned = self.context_takeover;
                Err(e)
            }
        }
    }

    /// Runs `input` through the decompressor into `out`, failing once `out` grows past `limit`
    /// (the start length plus `max_len`).
    fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        (limit, max_len): (usize, usize),
        ended: &mut bool,
        consumed_total: &mut u64,
    ) -> Result<(), DeflateError> {
        let mut pos = 0usize;
        while !*ended {
            if out.len() == out.capacity() {
                if out.len() > limit {
                    return Err(DeflateError::TooLarge { limit: max_len });
                }
                // Grow geometrically, but never beyond one byte past the limit.
                let room = limit.saturating_add(1).saturating_sub(out.len());
                out.reserve(out.len().max(256).min(room.max(1)));
            }
            let rest = input.get(pos..).unwrap_or_default();
            let before_in = self.inner.total_in();
            let before_out = out.len();
            let status = self
                .inner
                .decompress_vec(rest, out, FlushDecompress::Sync)
                .map_err(|e| DeflateError::Corrupt {
                    offset: *consumed_total + (self.inner.total_in() - before_in),
                    message: e.message().unwrap_or("invalid DEFLATE data").to_string(),
                })?;
            let used = usize::try_from(self.inner.total_in() - before_in).unwrap_or(rest.len());
            pos = pos.saturating_add(used);
            *consumed_total += used as u64;
            if out.len() > limit {
                return Err(DeflateError::TooLarge { limit: max_len });
            }
            match status {
                Status::StreamEnd => *ended = true,
                Status::Ok | Status::BufError => {
                    let progressed = used > 0 || out.len() > before_out;
                    if pos >= input.len() && out.len() < out.capacity() {
                        return Ok(());
                    }
                    if !progressed && out.len() < out.capacity() {
                        // No progress with input and room left: the input is exhausted.
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

/// Compresses the messages of one direction (RFC 7692 §7.2.1).
pub struct Deflater {
    inner: Compress,
    window_bits: u8,
    context_takeover: bool,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("window_bits", &self.window_bits)
            .field("context_takeover", &self.context_takeover)
            .finish()
    }
}

impl Deflater {
    /// A new deflater with an LZ77 window of at most `window_bits` (8..=15; 8 compresses with 9,
    /// see the module documentation), keeping the window between messages when
    /// `context_takeover` is true (RFC 7692 §7.1.1). Uses zlib's default level (6).
    pub fn new(window_bits: u8, context_takeover: bool) -> Result<Self, DeflateError> {
        Self::with_level(
            window_bits,
            context_takeover,
            Compression::default().level(),
        )
    }

    /// Like [`Deflater::new`] with a zlib compression level (0 = store .. 9 = best).
    pub fn with_level(
        window_bits: u8,
        context_takeover: bool,
        level: u32,
    ) -> Result<Self, DeflateError> {
        let bits = zlib_window_bits(window_bits)?;
        Ok(Self {
            inner: Compress::new_with_window_bits(Compression::new(level.min(9)), false, bits),
            window_bits,
            context_takeover,
        })
    }

    /// The negotiated window bits.
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Whether the window is kept between messages.
    pub fn context_takeover(&self) -> bool {
        self.context_takeover
    }

    /// Compresses one message; the result is the payload of its (first) frame, to be sent with
    /// RSV1 set.
    pub fn deflate_message(&mut self, data: &[u8]) -> Result<Vec<u8>, DeflateError> {
        let mut out = Vec::new();
        self.deflate_message_into(data, &mut out)?;
        Ok(out)
    }

    /// Like [`Deflater::deflate_message`], appending to `out`.
    pub fn deflate_message_into(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), DeflateError> {
        let start = out.len();
        let mut pos = 0usize;
        loop {
            let rest = data.get(pos..).unwrap_or_default();
            out.reserve(rest.len() / 2 + 64);
            let before_in = self.inner.total_in();
            if let Err(e) = self.inner.compress_vec(rest, out, FlushCompress::Sync) {
                out.truncate(start);
                self.inner.reset();
                return Err(DeflateError::Compress(e.to_string()));
            }
            let used = usize::try_from(self.inner.total_in() - before_in).unwrap_or(rest.len());
            pos = pos.saturating_add(used);
            // zlib has finished a sync flush once it returns with output space left over.
            if pos >= data.len() && out.len() < out.capacity() {
                break;
            }
        }
        if out.len() == start {
            // Nothing was pending, so zlib wrote no flush block at all (an empty message right
            // after another flush). Send the single 0x00 of RFC 7692 §7.2.3.6, which with the
            // receiver's appended 00 00 ff ff is an empty stored block.
            out.push(0x00);
        } else if out.len() >= start + TAIL.len() && out.ends_with(&TAIL) {
            // RFC 7692 §7.2.1: remove the 4-octet 00 00 ff ff tail of the sync flush.
            out.truncate(out.len() - TAIL.len());
        }
        if !self.context_takeover {
            // RFC 7692 §7.1.1.1: start every message with an empty window.
            self.inner.reset();
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

    #[test]
    fn rfc7692_7_2_3_1_and_2_deflate_hello_with_and_without_context_takeover() {
        let mut with = Deflater::new(15, true).unwrap();
        assert_eq!(with.deflate_message(b"Hello").unwrap(), HELLO);
        // §7.2.3.2: the second "Hello" refers back into the shared window.
        assert_eq!(
            with.deflate_message(b"Hello").unwrap(),
            [0xf2, 0x00, 0x11, 0x00, 0x00]
        );
        let mut without = Deflater::new(15, false).unwrap();
        assert_eq!(without.deflate_message(b"Hello").unwrap(), HELLO);
        assert_eq!(without.deflate_message(b"Hello").unwrap(), HELLO);
    }

    #[test]
    fn rfc7692_7_2_3_examples_inflate() {
        let mut inf = Inflater::new(15, true).unwrap();
        assert_eq!(inf.inflate_message(&HELLO, 100).unwrap(), b"Hello");
        assert_eq!(
            inf.inflate_message(&[0xf2, 0x00, 0x11, 0x00, 0x00], 100)
                .unwrap(),
            b"Hello"
        );
        // §7.2.3.3 (stored block), §7.2.3.4 (BFINAL), §7.2.3.5 (two blocks).
        for payload in [
            &[
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ][..],
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00][..],
            &[
                0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
            ][..],
        ] {
            let mut inf = Inflater::new(15, true).unwrap();
            assert_eq!(
                inf.inflate_message(payload, 100).unwrap(),
                b"Hello",
                "{payload:02x?}"
            );
            // The inflater is still usable for a following message.
            assert_eq!(inf.inflate_message(&HELLO, 100).unwrap(), b"Hello");
        }
    }

    #[test]
    fn a_message_after_a_bfinal_message_may_refer_back_to_it() {
        // §7.2.3.4 payload, then §7.2.3.2's second message, which copies 5 bytes from 5 back.
        let mut inf = Inflater::new(15, true).unwrap();
        let first = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inf.inflate_message(&first, 100).unwrap(), b"Hello");
        assert_eq!(
            inf.inflate_message(&[0xf2, 0x00, 0x11, 0x00, 0x00], 100)
                .unwrap(),
            b"Hello"
        );
    }

    #[test]
    fn without_context_takeover_a_back_reference_to_the_previous_message_fails() {
        let mut inf = Inflater::new(15, false).unwrap();
        assert_eq!(inf.inflate_message(&HELLO, 100).unwrap(), b"Hello");
        let err = inf
            .inflate_message(&[0xf2, 0x00, 0x11, 0x00, 0x00], 100)
            .unwrap_err();
        assert!(matches!(err, DeflateError::Corrupt { .. }), "{err}");
        // Each message stands alone, so the next good one works.
        assert_eq!(inf.inflate_message(&HELLO, 100).unwrap(), b"Hello");
    }

    #[test]
    fn a_corrupt_message_poisons_a_shared_window_until_reset() {
        let mut inf = Inflater::new(15, true).unwrap();
        let err = inf.inflate_message(&[0xff, 0xff, 0xff], 100).unwrap_err();
        assert!(matches!(err, DeflateError::Corrupt { .. }), "{err}");
        assert_eq!(
            inf.inflate_message(&HELLO, 100),
            Err(DeflateError::ContextLost)
        );
        inf.reset();
        assert_eq!(inf.inflate_message(&HELLO, 100).unwrap(), b"Hello");
    }

    #[test]
    fn inflate_stops_at_the_limit() {
        let mut def = Deflater::new(15, false).unwrap();
        let bomb = def.deflate_message(&vec![b'a'; 1 << 20]).unwrap();
        assert!(bomb.len() < 2048, "{}", bomb.len());
        let mut inf = Inflater::new(15, false).unwrap();
        assert_eq!(
            inf.inflate_message(&bomb, 4096),
            Err(DeflateError::TooLarge { limit: 4096 })
        );
        assert_eq!(
            DeflateError::TooLarge { limit: 4096 }.to_string(),
            "decompressed message exceeds the limit of 4096 bytes"
        );
        // Exactly the limit is fine.
        let exact = def.deflate_message(&[b'b'; 4096]).unwrap();
        assert_eq!(inf.inflate_message(&exact, 4096).unwrap().len(), 4096);
        // And the limit counts only this message's bytes when appending.
        let mut out = vec![0; 10];
        inf.inflate_message_into(&exact, 4096, &mut out).unwrap();
        assert_eq!(out.len(), 4106);
    }

    #[test]
    fn window_bits_are_checked() {
        assert_eq!(
            Inflater::new(7, true).unwrap_err(),
            DeflateError::InvalidWindowBits(7)
        );
        assert_eq!(
            Deflater::new(16, true).unwrap_err(),
            DeflateError::InvalidWindowBits(16)
        );
        assert_eq!(Deflater::new(8, true).unwrap().window_bits(), 8);
        assert_eq!(Inflater::new(8, false).unwrap().window_bits(), 8);
    }

    /// A small, independent RFC 1951 decoder for the tests: it decodes a raw DEFLATE stream
    /// and reports the largest back-reference distance used (zlib-rs always keeps a 32 KiB
    /// window, so it cannot check a 256-byte limit).
    mod reference {
        struct Bits<'a> {
            data: &'a [u8],
            bit: usize,
        }

        impl Bits<'_> {
            fn get(&mut self, n: u32) -> Option<u32> {
                let mut v = 0;
                for i in 0..n {
                    let byte = *self.data.get(self.bit / 8)?;
                    v |= u32::from((byte >> (self.bit % 8)) & 1) << i;
                    self.bit += 1;
                }
                Some(v)
            }
            fn align(&mut self) {
                self.bit = self.bit.div_ceil(8) * 8;
            }
            fn at_end(&self) -> bool {
                self.bit.div_ceil(8) >= self.data.len()
            }
        }

        /// Canonical Huffman code: symbols by code length, counts per length.
        struct Huffman {
            counts: [u16; 16],
            symbols: Vec<u16>,
        }

        impl Huffman {
            fn new(lengths: &[u8]) -> Huffman {
                let mut counts = [0u16; 16];
                for &l in lengths {
                    counts[l as usize] += 1;
                }
                counts[0] = 0;
                let mut symbols = Vec::new();
                for len in 1..16u8 {
                    for (sym, &l) in lengths.iter().enumerate() {
                        if l == len {
                            symbols.push(sym as u16);
                        }
                    }
                }
                Huffman { counts, symbols }
            }
            fn decode(&self, bits: &mut Bits<'_>) -> Option<u16> {
                let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
                for len in 1..16 {
                    code |= bits.get(1)? as i32;
                    let count = i32::from(self.counts[len]);
                    if code - first < count {
                        return self.symbols.get((index + code - first) as usize).copied();
                    }
                    index += count;
                    first = (first + count) << 1;
                    code <<= 1;
                }
                None
            }
        }

        const LEN_BASE: [u16; 29] = [
            3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99,
            115, 131, 163, 195, 227, 258,
        ];
        const LEN_EXTRA: [u8; 29] = [
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
        ];
        const DIST_BASE: [u16; 30] = [
            1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025,
            1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
        ];
        const DIST_EXTRA: [u8; 30] = [
            0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12,
            12, 13, 13,
        ];

        /// Decodes blocks until the input ends, appending to `out` (which holds the history of
        /// earlier messages with context takeover); returns the largest distance used.
        pub fn inflate(stream: &[u8], out: &mut Vec<u8>) -> Option<usize> {
            let mut bits = Bits {
                data: stream,
                bit: 0,
            };
            let mut max_dist = 0;
            while !bits.at_end() {
                let last = bits.get(1)? == 1;
                match bits.get(2)? {
                    0 => {
                        bits.align();
                        let len = bits.get(16)?;
                        let nlen = bits.get(16)?;
                        if len != !nlen & 0xffff {
                            return None;
                        }
                        for _ in 0..len {
                            out.push(bits.get(8)? as u8);
                        }
                    }
                    btype @ (1 | 2) => {
                        let (lit, dist) = if btype == 1 {
                            let mut l = [8u8; 288];
                            l[144..256].fill(9);
                            l[256..280].fill(7);
                            (Huffman::new(&l), Huffman::new(&[5u8; 30]))
                        } else {
                            let hlit = bits.get(5)? as usize + 257;
                            let hdist = bits.get(5)? as usize + 1;
                            let hclen = bits.get(4)? as usize + 4;
                            const ORDER: [usize; 19] = [
                                16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
                            ];
                            let mut cl = [0u8; 19];
                            for &i in ORDER.iter().take(hclen) {
                                cl[i] = bits.get(3)? as u8;
                            }
                            let clh = Huffman::new(&cl);
                            let mut lengths = Vec::new();
                            while lengths.len() < hlit + hdist {
                                match clh.decode(&mut bits)? {
                                    s @ 0..=15 => lengths.push(s as u8),
                                    16 => {
                                        let prev = *lengths.last()?;
                                        for _ in 0..3 + bits.get(2)? {
                                            lengths.push(prev);
                                        }
                                    }
                                    17 => lengths
                                        .extend(std::iter::repeat_n(0, 3 + bits.get(3)? as usize)),
                                    _ => lengths
                                        .extend(std::iter::repeat_n(0, 11 + bits.get(7)? as usize)),
                                }
                            }
                            (
                                Huffman::new(&lengths[..hlit]),
                                Huffman::new(&lengths[hlit..]),
                            )
                        };
                        loop {
                            let sym = lit.decode(&mut bits)? as usize;
                            if sym < 256 {
                                out.push(sym as u8);
                            } else if sym == 256 {
                                break;
                            } else {
                                let i = sym - 257;
                                let len = LEN_BASE[i] as usize
                                    + bits.get(u32::from(LEN_EXTRA[i]))? as usize;
                                let d = dist.decode(&mut bits)? as usize;
                                let distance = DIST_BASE[d] as usize
                                    + bits.get(u32::from(DIST_EXTRA[d]))? as usize;
                                if distance > out.len() {
                                    return None;
                                }
                                max_dist = max_dist.max(distance);
                                for _ in 0..len {
                                    out.push(out[out.len() - distance]);
                                }
                            }
                        }
                    }
                    _ => return None,
                }
                if last {
                    break;
                }
            }
            Some(max_dist)
        }
    }

    /// Decodes one message payload with the reference decoder: (bytes, largest distance).
    fn reference_inflate(history: &mut Vec<u8>, payload: &[u8]) -> (Vec<u8>, usize) {
        let mut stream = payload.to_vec();
        stream.extend_from_slice(&TAIL);
        let start = history.len();
        let max = reference::inflate(&stream, history).expect("reference decoder failed");
        (history[start..].to_vec(), max)
    }

    #[test]
    fn deflate_8_bits_is_readable_with_256_byte_window() {
        // Random blocks repeated with a period of 300 bytes (only matchable from 300 back) and
        // of 100 bytes (matchable within 256).
        let mut x: u32 = 1;
        let mut random = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (x >> 23) as u8
                })
                .collect()
        };
        let mut data = Vec::new();
        for _ in 0..3 {
            let far = random(300);
            let near = random(100);
            for _ in 0..10 {
                data.extend_from_slice(&far);
            }
            for _ in 0..30 {
                data.extend_from_slice(&near);
            }
        }
        let mut def = Deflater::new(8, false).unwrap();
        let compressed = def.deflate_message(&data).unwrap();
        assert!(compressed.len() < data.len() * 3 / 4, "the data compresses");
        let (decoded, max_dist) = reference_inflate(&mut Vec::new(), &compressed);
        assert_eq!(decoded, data);
        assert!(
            max_dist <= 256,
            "8-bit window exceeded: distance {max_dist}"
        );
        // Compressed with 15 bits, the same data does use the 300-byte distance: the check
        // above can fail.
        let mut wide = Deflater::new(15, false).unwrap();
        let far = wide.deflate_message(&data).unwrap();
        let (decoded, max_dist) = reference_inflate(&mut Vec::new(), &far);
        assert_eq!(decoded, data);
        assert!(max_dist >= 300, "{max_dist}");
        let mut nine = Inflater::new(9, false).unwrap();
        assert_eq!(nine.inflate_message(&compressed, data.len()).unwrap(), data);
    }

    fn messages() -> impl Strategy<Value = Vec<Vec<u8>>> {
        let message = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            // Repetitive text, which makes back-references (also across messages).
            proptest::collection::vec(prop::sample::select(b"ab cd\"{}:,42".to_vec()), 0..3000),
        ];
        proptest::collection::vec(message, 1..6)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn deflate_inflate_round_trip(
            msgs in messages(),
            bits in 8u8..=15,
            takeover in any::<bool>(),
            level in 0u32..=9,
        ) {
            let mut def = Deflater::with_level(bits, takeover, level).unwrap();
            let mut inf = Inflater::new(bits, takeover).unwrap();
            let mut history = Vec::new();
            for m in &msgs {
                let c = def.deflate_message(m).unwrap();
                prop_assert_eq!(&inf.inflate_message(&c, m.len()).unwrap(), m);
                // The independent decoder agrees, and the window limit holds.
                if !takeover {
                    history.clear();
                }
                let (decoded, max_dist) = reference_inflate(&mut history, &c);
                prop_assert_eq!(&decoded, m);
                prop_assert!(max_dist <= 1 << bits, "distance {} with {} bits", max_dist, bits);
            }
        }

        #[test]
        fn without_takeover_each_message_inflates_alone(msgs in messages(), bits in 8u8..=15) {
            let mut def = Deflater::new(bits, false).unwrap();
            for m in &msgs {
                let c = def.deflate_message(m).unwrap();
                let mut fresh = Inflater::new(bits, false).unwrap();
                prop_assert_eq!(&fresh.inflate_message(&c, m.len()).unwrap(), m);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_inflater(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..4),
            takeover in any::<bool>(),
        ) {
            let mut inf = Inflater::new(15, takeover).unwrap();
            for p in &payloads {
                if let Ok(out) = inf.inflate_message(p, 1000) {
                    prop_assert!(out.len() <= 1000);
                }
            }
        }
    }
}
