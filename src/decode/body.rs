//! HTTP/1.1 message bodies in captured streams: Content-Length, chunked transfer coding
//! (RFC 9112 §7.1), read-until-close, and gzip/deflate content codings (RFC 9110 §8.4.1).

use std::io::Read;

/// Largest body kept for decoding; longer bodies are framed and counted but not decoded.
pub const MAX_BODY: usize = 16 << 20;
/// Largest decompressed body.
pub const MAX_INFLATED: usize = 64 << 20;

/// How a message's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the chunk-size line.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// The CRLF after chunk data.
    DataEnd,
    /// Trailer section after the last chunk.
    Trailer,
}

/// Why a body could not be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("bad chunk size line at body offset {offset}")]
    BadChunkSize { offset: u64 },
    #[error("missing CRLF after chunk data at body offset {offset}")]
    BadChunkEnd { offset: u64 },
    #[error("chunk line too long at body offset {offset}")]
    LineTooLong { offset: u64 },
}

/// Incremental body reader: feed stream bytes, learn where the body ends.
#[derive(Debug)]
pub struct BodyReader {
    framing: Framing,
    remaining: u64,
    chunk: ChunkState,
    /// Partial chunk-size / trailer line.
    line: Vec<u8>,
    /// The body (de-chunked), up to [`MAX_BODY`].
    pub body: Vec<u8>,
    /// Body bytes on the wire (with chunk framing).
    pub wire_len: u64,
    /// Decoded length (may exceed `body.len()` when over the limit).
    pub len: u64,
    pub chunks: u32,
    pub overflow: bool,
    done: bool,
}

/// Result of feeding bytes to a [`BodyReader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Bytes of the input that belong to the body.
    pub used: usize,
    /// The body is complete.
    pub done: bool,
}

impl BodyReader {
    pub fn new(framing: Framing) -> Self {
        let (remaining, done) = match framing {
            Framing::None => (0, true),
            Framing::Length(n) => (n, n == 0),
            Framing::Chunked | Framing::UntilClose => (0, false),
        };
        BodyReader {
            framing,
            remaining,
            chunk: ChunkState::Size,
            line: Vec::new(),
            body: Vec::new(),
            wire_len: 0,
            len: 0,
            chunks: 0,
            overflow: false,
            done,
        }
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    fn keep(&mut self, data: &[u8]) {
        self.len += data.len() as u64;
        let room = MAX_BODY.saturating_sub(self.body.len());
        if data.len() > room {
            self.overflow = true;
        }
        self.body
            .extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
    }

    /// Feed stream bytes; returns how many belong to this body and whether it is complete.
    pub fn feed(&mut self, input: &[u8]) -> Result<Fed, BodyError> {
        if self.done {
            return Ok(Fed {
                used: 0,
                done: true,
            });
        }
        let used = match self.framing {
            Framing::None => 0,
            Framing::Length(_) => {
                let n = (self.remaining.min(input.len() as u64)) as usize;
                self.keep(input.get(..n).unwrap_or_default());
                self.remaining -= n as u64;
                self.done = self.remaining == 0;
                n
            }
            Framing::UntilClose => {
                self.keep(input);
                input.len()
            }
            Framing::Chunked => self.feed_chunked(input)?,
        };
        self.wire_len += used as u64;
        Ok(Fed {
            used,
            done: self.done,
        })
    }

    /// The connection closed: a read-until-close body ends here.
    pub fn close(&mut self) -> bool {
        if self.framing == Framing::UntilClose {
            self.done = true;
        }
        self.done
    }

    fn feed_chunked(&mut self, input: &[u8]) -> Result<usize, BodyError> {
        let mut pos = 0usize;
        while pos < input.len() && !self.done {
            let rest = input.get(pos..).unwrap_or_default();
            match self.chunk {
                ChunkState::Size | ChunkState::Trailer | ChunkState::DataEnd => {
                    let offset = self.wire_len + pos as u64;
                    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                        self.line.extend_from_slice(rest);
                        if self.line.len() > 4096 {
                            return Err(BodyError::LineTooLong { offset });
                        }
                        pos = input.len();
                        break;
                    };
                    self.line
                        .extend_from_slice(rest.get(..nl).unwrap_or_default());
                    pos += nl + 1;
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    match self.chunk {
                        ChunkState::Size => {
                            // chunk-size [ chunk-ext ] CRLF (RFC 9112 §7.1)
                            let size_part = line.split(|&b| b == b';').next().unwrap_or_default();
                            let text = std::str::from_utf8(size_part)
                                .map_err(|_| BodyError::BadChunkSize { offset })?;
                            let size = u64::from_str_radix(text.trim(), 16)
                                .map_err(|_| BodyError::BadChunkSize { offset })?;
                            if size == 0 {
                                self.chunk = ChunkState::Trailer;
                            } else {
                                self.chunks += 1;
                                self.chunk = ChunkState::Data(size);
                            }
                        }
                        ChunkState::DataEnd => {
                            if !line.is_empty() {
                                return Err(BodyError::BadChunkEnd { offset });
                            }
                            self.chunk = ChunkState::Size;
                        }
                        _ => {
                            // trailer-section ends with an empty line (RFC 9112 §7.1.2)
                            if line.is_empty() {
                                self.done = true;
                            }
                        }
                    }
                }
                ChunkState::Data(left) => {
                    let n = (left.min(rest.len() as u64)) as usize;
                    let data = rest.get(..n).unwrap_or_default();
                    self.keep(data);
                    pos += n;
                    self.chunk = if left == n as u64 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - n as u64)
                    };
                }
            }
        }
        Ok(pos)
    }
}

/// A content coding that was applied to a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Deflate,
    Unknown,
}

impl Coding {
    /// From a Content-Encoding header value (the last coding applied is decoded).
    pub fn from_header(value: Option<&str>) -> Coding {
        let Some(v) = value else {
            return Coding::Identity;
        };
        match v
            .rsplit(',')
            .next()
            .map(|s| s.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("") | Some("identity") => Coding::Identity,
            Some("gzip") | Some("x-gzip") => Coding::Gzip,
            Some("deflate") => Coding::Deflate,
            Some(_) => Coding::Unknown,
        }
    }
}

/// Undo a content coding. `deflate` is zlib-wrapped (RFC 9110 §8.4.1.2); raw deflate is accepted too.
pub fn decode_content(coding: Coding, body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let limit = MAX_INFLATED as u64 + 1;
    let res = match coding {
        Coding::Identity => return Ok(body.to_vec()),
        Coding::Unknown => return Err("unknown content coding".into()),
        Coding::Gzip => flate2::read::MultiGzDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out),
        Coding::Deflate => match flate2::read::ZlibDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out)
        {
            Ok(n) => Ok(n),
            Err(_) => {
                out.clear();
                flate2::read::DeflateDecoder::new(body)
                    .take(limit)
                    .read_to_end(&mut out)
            }
        },
    };
    match res {
        Ok(_) if out.len() > MAX_INFLATED => Err(format!(
            "decompressed body larger than {MAX_INFLATED} bytes"
        )),
        Ok(_) => Ok(out),
        Err(e) => Err(format!("{coding:?} body does not decompress: {e}").to_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn content_length_body_stops_at_its_length() {
        let mut r = BodyReader::new(Framing::Length(5));
        assert_eq!(
            r.feed(b"hel").unwrap(),
            Fed {
                used: 3,
                done: false
            }
        );
        assert_eq!(
            r.feed(b"loGET /").unwrap(),
            Fed {
                used: 2,
                done: true
            }
        );
        assert_eq!(r.body, b"hello");
    }

    #[test]
    fn chunked_body_split_anywhere_decodes_the_same() {
        let wire = b"4;ext=1\r\n4hel\r\n3\r\nlo!\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for split in 0..wire.len() {
            let mut r = BodyReader::new(Framing::Chunked);
            let a = r.feed(&wire[..split]).unwrap();
            let b = r.feed(&wire[a.used..]).unwrap();
            assert!(b.done, "split {split}");
            assert_eq!(a.used + b.used, wire.len() - 4, "split {split}");
            assert_eq!(r.body, b"4hello!");
            assert_eq!(r.chunks, 2);
        }
    }

    #[test]
    fn bad_chunk_size_is_an_error_with_offset() {
        let mut r = BodyReader::new(Framing::Chunked);
        assert_eq!(
            r.feed(b"4\r\nabcd\r\nzz\r\n"),
            Err(BodyError::BadChunkSize { offset: 9 })
        );
        let mut r = BodyReader::new(Framing::Chunked);
        assert_eq!(
            r.feed(b"2\r\nabcd\r\n"),
            Err(BodyError::BadChunkEnd { offset: 5 })
        );
    }

    #[test]
    fn gzip_and_deflate_bodies_decompress() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"4hello\x1e4world").unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(
            decode_content(Coding::Gzip, &gz).unwrap(),
            b"4hello\x1e4world"
        );
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(b"40").unwrap();
        assert_eq!(
            decode_content(Coding::Deflate, &z.finish().unwrap()).unwrap(),
            b"40"
        );
        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(b"40").unwrap();
        assert_eq!(
            decode_content(Coding::Deflate, &raw.finish().unwrap()).unwrap(),
            b"40"
        );
        assert!(decode_content(Coding::Gzip, b"not gzip").is_err());
        assert_eq!(Coding::from_header(Some("gzip")), Coding::Gzip);
        assert_eq!(Coding::from_header(Some("br")), Coding::Unknown);
    }
}
