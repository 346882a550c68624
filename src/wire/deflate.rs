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
//! pins this). Decompression with a 512-byte window reads every stream made with a 256-byte one,
//! so an [`Inflater`] asked for 8 bits also uses 9.

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
        // RFC 7692 §7.2.1: remove the 4-octet 00 00 ff ff tail of the sync flush.
        if out.len() >= start + TAIL.len() && out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if !self.context_takeover {
            // RFC 7692 §7.1.1.1: start every message with an empty window.
            self.inner.reset();
        }
        Ok(())
    }
}
