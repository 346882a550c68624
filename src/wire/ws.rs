//! RFC 6455 frame header view, opcodes, lengths, masking and encoding.
//!
//! Three layers, from lenient to strict:
//! - [`FrameHeader::parse`] and [`Frame::parse`] read any bytes that can be a frame header (for a
//!   decoder showing what is on the wire); only bytes that cannot be a header are errors.
//!   [`FrameHeader::violations`] lists what a strict endpoint would reject.
//! - [`apply_mask`] / [`encode_frame`] / [`encode_header`] and friends build frames.
//! - [`Reader`] is the strict, sans-IO message reader for live connections: it reassembles
//!   fragments, inflates permessage-deflate messages, validates UTF-8 and maps every failure to
//!   the close code to send.

use std::borrow::Cow;
use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use crate::wire::deflate::{DeflateError, Deflater, Inflater};

// Byte 0 and byte 1 of every frame (RFC 6455 §5.2), declared once.
const FIN_BIT: u8 = 0x80;
const RSV1_BIT: u8 = 0x40;
const RSV2_BIT: u8 = 0x20;
const RSV3_BIT: u8 = 0x10;
const OPCODE_BITS: u8 = 0x0f;
const MASK_BIT: u8 = 0x80;
const LEN7_BITS: u8 = 0x7f;
/// A 7-bit length of 126 announces a 16-bit extended length.
const LEN7_EXT16: u8 = 126;
/// A 7-bit length of 127 announces a 64-bit extended length.
const LEN7_EXT64: u8 = 127;
/// Offset of the extended payload length.
const EXT_LEN_AT: usize = 2;

/// Largest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: u64 = 125;
/// Largest possible frame header: 2 + 8 (64-bit length) + 4 (masking key).
pub const MAX_HEADER_LEN: usize = 14;

/// A frame opcode (RFC 6455 §5.2), keeping unknown values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: a UTF-8 text message.
    Text,
    /// 0x2: a binary message.
    Binary,
    /// 0x8: connection close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
    /// 0x3-0x7 (data) and 0xB-0xF (control): reserved for further use.
    Reserved(u8),
}

impl Opcode {
    /// The opcode in the low 4 bits of `v` (the high bits are ignored).
    pub const fn from_u8(v: u8) -> Opcode {
        match v & OPCODE_BITS {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            other => Opcode::Reserved(other),
        }
    }

    /// The 4-bit wire value.
    pub const fn as_u8(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
            Opcode::Reserved(v) => v & OPCODE_BITS,
        }
    }

    /// Control frames have the high opcode bit set (RFC 6455 §5.5), reserved ones included.
    pub const fn is_control(self) -> bool {
        self.as_u8() & 0x08 != 0
    }

    /// Whether this is a reserved opcode (RFC 6455 §5.2: 0x3-0x7 and 0xB-0xF).
    pub const fn is_reserved(self) -> bool {
        matches!(self, Opcode::Reserved(_))
    }

    /// Wireshark's name for the opcode (`websocket.opcode`), "Unknown Opcode" for reserved ones.
    pub const fn name(self) -> &'static str {
        match self {
            Opcode::Continuation => "Continuation",
            Opcode::Text => "Text",
            Opcode::Binary => "Binary",
            Opcode::Close => "Connection Close",
            Opcode::Ping => "Ping",
            Opcode::Pong => "Pong",
            Opcode::Reserved(_) => "Unknown Opcode",
        }
    }
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Opcode::Reserved(v) => write!(f, "Unknown Opcode 0x{v:x}"),
            known => f.write_str(known.name()),
        }
    }
}

/// How the payload length was encoded (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LengthForm {
    /// In the 7 bits of byte 1 (0-125).
    Short7,
    /// 126 followed by a 16-bit length.
    Ext16,
    /// 127 followed by a 64-bit length.
    Ext64,
}

impl LengthForm {
    /// The shortest form that can hold `len` (the one RFC 6455 §5.2 requires).
    pub const fn minimal(len: u64) -> LengthForm {
        if len <= 125 {
            LengthForm::Short7
        } else if len <= 0xffff {
            LengthForm::Ext16
        } else {
            LengthForm::Ext64
        }
    }

    /// Bytes of extended length after byte 1.
    pub const fn extra_len(self) -> usize {
        match self {
            LengthForm::Short7 => 0,
            LengthForm::Ext16 => 2,
            LengthForm::Ext64 => 8,
        }
    }

    /// Whether `len` can be written in this form (64-bit lengths must keep the top bit clear).
    pub const fn can_hold(self, len: u64) -> bool {
        match self {
            LengthForm::Short7 => len <= 125,
            LengthForm::Ext16 => len <= 0xffff,
            LengthForm::Ext64 => len >> 63 == 0,
        }
    }
}

/// The RSV bits of byte 0, as a small bit set in their wire positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rsv(u8);

impl Rsv {
    /// No RSV bit.
    pub const NONE: Rsv = Rsv(0);
    /// RSV1 (permessage-deflate's "Per-Message Compressed" bit, RFC 7692 §6).
    pub const RSV1: Rsv = Rsv(RSV1_BIT);
    /// RSV2.
    pub const RSV2: Rsv = Rsv(RSV2_BIT);
    /// RSV3.
    pub const RSV3: Rsv = Rsv(RSV3_BIT);

    /// The RSV bits of a frame's first byte.
    pub const fn from_byte0(b0: u8) -> Rsv {
        Rsv(b0 & (RSV1_BIT | RSV2_BIT | RSV3_BIT))
    }

    /// The bits in their byte-0 positions (0x40, 0x20, 0x10).
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The bits as Wireshark's 3-bit `websocket.rsv` value (RSV1 = 4, RSV2 = 2, RSV3 = 1).
    pub const fn value(self) -> u8 {
        self.0 >> 4
    }

    /// Whether every bit of `other` is set here.
    pub const fn contains(self, other: Rsv) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The bits set here and not in `allowed`.
    pub const fn without(self, allowed: Rsv) -> Rsv {
        Rsv(self.0 & !allowed.0)
    }
}

impl std::ops::BitOr for Rsv {
    type Output = Rsv;
    fn bitor(self, rhs: Rsv) -> Rsv {
        Rsv(self.0 | rhs.0)
    }
}

/// Which end of a connection: the local endpoint of a [`Reader`], or the sender of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The side that opened the connection; it masks every frame it sends (RFC 6455 §5.3).
    Client,
    /// The side that accepted it; it never masks.
    Server,
}

impl Role {
    /// The other end.
    pub const fn peer(self) -> Role {
        match self {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        }
    }
}

/// Why bytes cannot be a frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameErrorKind {
    /// RFC 6455 §5.2: "the most significant bit MUST be 0" in a 64-bit length.
    #[error("64-bit payload length has the top bit set")]
    LengthTopBitSet,
    /// The payload length cannot be addressed on this platform (32-bit targets only).
    #[error("payload length {0} does not fit in memory")]
    PayloadTooLong(u64),
}

/// Bytes that cannot be a frame header, with the offset of the offending byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {kind}")]
pub struct FrameError {
    /// What is wrong.
    pub kind: FrameErrorKind,
    /// Offset of the offending byte from the start of the frame.
    pub offset: usize,
}

/// A protocol violation in a structurally readable frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Violation {
    /// An opcode RFC 6455 §5.2 reserves.
    ReservedOpcode = 0,
    /// An RSV bit no negotiated extension defines (RFC 6455 §5.2).
    ReservedBits = 1,
    /// A control frame with more than 125 payload bytes (RFC 6455 §5.5).
    ControlFrameTooLong = 2,
    /// A control frame with FIN clear (RFC 6455 §5.5).
    ControlFrameFragmented = 3,
    /// A payload length not in its minimal encoding (RFC 6455 §5.2).
    NonMinimalLength = 4,
    /// RSV1 on a control frame although permessage-deflate is in use (RFC 7692 §6.1).
    CompressedControlFrame = 5,
    /// RSV1 on a continuation frame (RFC 7692 §6.1).
    CompressedContinuation = 6,
    /// A client frame without a masking key (RFC 6455 §5.1).
    UnmaskedClientFrame = 7,
    /// A server frame with a masking key (RFC 6455 §5.1).
    MaskedServerFrame = 8,
}

impl Violation {
    /// Every violation, in code order.
    pub const ALL: [Violation; 9] = [
        Violation::ReservedOpcode,
        Violation::ReservedBits,
        Violation::ControlFrameTooLong,
        Violation::ControlFrameFragmented,
        Violation::NonMinimalLength,
        Violation::CompressedControlFrame,
        Violation::CompressedContinuation,
        Violation::UnmaskedClientFrame,
        Violation::MaskedServerFrame,
    ];

    /// A stable snake_case code for machines (JSON output, tests).
    pub const fn code(self) -> &'static str {
        match self {
            Violation::ReservedOpcode => "reserved_opcode",
            Violation::ReservedBits => "reserved_bits",
            Violation::ControlFrameTooLong => "control_frame_too_long",
            Violation::ControlFrameFragmented => "control_frame_fragmented",
            Violation::NonMinimalLength => "non_minimal_length",
            Violation::CompressedControlFrame => "compressed_control_frame",
            Violation::CompressedContinuation => "compressed_continuation",
            Violation::UnmaskedClientFrame => "unmasked_client_frame",
            Violation::MaskedServerFrame => "masked_server_frame",
        }
    }

    /// The specification section the violation breaks.
    pub const fn rfc(self) -> &'static str {
        match self {
            Violation::ReservedOpcode | Violation::ReservedBits | Violation::NonMinimalLength => {
                "RFC 6455 §5.2"
            }
            Violation::ControlFrameTooLong | Violation::ControlFrameFragmented => "RFC 6455 §5.5",
            Violation::CompressedControlFrame | Violation::CompressedContinuation => {
                "RFC 7692 §6.1"
            }
            Violation::UnmaskedClientFrame | Violation::MaskedServerFrame => "RFC 6455 §5.1",
        }
    }

    const fn bit(self) -> u16 {
        1 << (self as u8)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Violation::ReservedOpcode => "reserved opcode",
            Violation::ReservedBits => "RSV bit set without a negotiated extension",
            Violation::ControlFrameTooLong => "control frame payload longer than 125 bytes",
            Violation::ControlFrameFragmented => "fragmented control frame (FIN clear)",
            Violation::NonMinimalLength => "payload length not in its minimal encoding",
            Violation::CompressedControlFrame => "RSV1 (compressed) set on a control frame",
            Violation::CompressedContinuation => "RSV1 (compressed) set on a continuation frame",
            Violation::UnmaskedClientFrame => "client frame is not masked",
            Violation::MaskedServerFrame => "server frame is masked",
        })
    }
}

/// A small set of [`Violation`]s (no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Violations(u16);

impl Violations {
    /// Whether the header breaks no rule.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Number of violations.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether `v` is in the set.
    pub const fn contains(self, v: Violation) -> bool {
        self.0 & v.bit() != 0
    }

    /// Adds `v`.
    pub fn insert(&mut self, v: Violation) {
        self.0 |= v.bit();
    }

    /// The first violation in code order.
    pub fn first(self) -> Option<Violation> {
        self.iter().next()
    }

    /// The violations in code order.
    pub fn iter(self) -> ViolationsIter {
        ViolationsIter { set: self, next: 0 }
    }
}

impl IntoIterator for Violations {
    type Item = Violation;
    type IntoIter = ViolationsIter;
    fn into_iter(self) -> ViolationsIter {
        self.iter()
    }
}

impl fmt::Display for Violations {
    /// The violations' texts joined by "; ".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

/// Iterator over a [`Violations`] set, in code order.
#[derive(Debug, Clone)]
pub struct ViolationsIter {
    set: Violations,
    next: usize,
}

impl Iterator for ViolationsIter {
    type Item = Violation;
    fn next(&mut self) -> Option<Violation> {
        while let Some(&v) = Violation::ALL.get(self.next) {
            self.next += 1;
            if self.set.contains(v) {
                return Some(v);
            }
        }
        None
    }
}

/// A parsed frame header (RFC 6455 §5.2), read leniently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// FIN: this is the final fragment of a message.
    pub fin: bool,
    /// RSV1 (permessage-deflate: the message is compressed).
    pub rsv1: bool,
    /// RSV2.
    pub rsv2: bool,
    /// RSV3.
    pub rsv3: bool,
    /// The opcode, reserved values included.
    pub opcode: Opcode,
    /// The masking key, when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
    /// How the payload length was encoded.
    pub length_form: LengthForm,
    /// Length of the header in bytes (2 to 14).
    pub header_len: usize,
}

/// `N` bytes at `at`, or `None` when `buf` is too short.
fn array_at<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

impl FrameHeader {
    /// A header with the minimal length encoding and no RSV bit.
    pub fn new(fin: bool, opcode: Opcode, mask: Option<[u8; 4]>, payload_len: u64) -> Self {
        let length_form = LengthForm::minimal(payload_len);
        FrameHeader {
            fin,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask,
            payload_len,
            length_form,
            header_len: header_len_for(payload_len, mask.is_some()),
        }
    }

    /// Reads a header from the start of `buf`: `Ok(None)` when more bytes are needed, `Err` only
    /// for bytes that cannot be a header. Rule breaking headers parse; see
    /// [`FrameHeader::violations`].
    pub fn parse(buf: &[u8]) -> Result<Option<FrameHeader>, FrameError> {
        let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
            return Ok(None);
        };
        let len7 = b1 & LEN7_BITS;
        let (payload_len, length_form) = match len7 {
            LEN7_EXT16 => match array_at::<2>(buf, EXT_LEN_AT) {
                Some(b) => (u64::from(u16::from_be_bytes(b)), LengthForm::Ext16),
                None => return Ok(None),
            },
            LEN7_EXT64 => {
                // Checked as soon as its byte arrives, so a stream fails early.
                if buf.get(EXT_LEN_AT).is_some_and(|b| b & 0x80 != 0) {
                    // RFC 6455 §5.2: the most significant bit of a 64-bit length MUST be 0.
                    return Err(FrameError {
                        kind: FrameErrorKind::LengthTopBitSet,
                        offset: EXT_LEN_AT,
                    });
                }
                match array_at::<8>(buf, EXT_LEN_AT) {
                    Some(b) => (u64::from_be_bytes(b), LengthForm::Ext64),
                    None => return Ok(None),
                }
            }
            short => (u64::from(short), LengthForm::Short7),
        };
        let mut header_len = 2 + length_form.extra_len();
        let mask = if b1 & MASK_BIT != 0 {
            match array_at::<4>(buf, header_len) {
                Some(key) => {
                    header_len += 4;
                    Some(key)
                }
                None => return Ok(None),
            }
        } else {
            None
        };
        Ok(Some(FrameHeader {
            fin: b0 & FIN_BIT != 0,
            rsv1: b0 & RSV1_BIT != 0,
            rsv2: b0 & RSV2_BIT != 0,
            rsv3: b0 & RSV3_BIT != 0,
            opcode: Opcode::from_u8(b0),
            mask,
            payload_len,
            length_form,
            header_len,
        }))
    }

    /// The RSV bits as a set.
    pub fn rsv(&self) -> Rsv {
        let mut bits = 0;
        if self.rsv1 {
            bits |= RSV1_BIT;
        }
        if self.rsv2 {
            bits |= RSV2_BIT;
        }
        if self.rsv3 {
            bits |= RSV3_BIT;
        }
        Rsv(bits)
    }

    /// Whether the MASK bit is set.
    pub fn is_masked(&self) -> bool {
        self.mask.is_some()
    }

    /// Header plus payload length, `None` if it overflows.
    pub fn frame_len(&self) -> Option<u64> {
        self.payload_len.checked_add(self.header_len as u64)
    }

    /// Rules this header breaks, given the RSV bits the negotiated extensions define (only RSV1,
    /// by permessage-deflate, in practice). Masking depends on the sender: see
    /// [`FrameHeader::violations_from`].
    pub fn violations(&self, rsv_allowed: Rsv) -> Violations {
        let mut v = Violations::default();
        let rsv = self.rsv();
        if self.opcode.is_reserved() {
            v.insert(Violation::ReservedOpcode); // RFC 6455 §5.2: reserved opcodes
        }
        if !rsv.without(rsv_allowed).is_empty() {
            v.insert(Violation::ReservedBits); // RFC 6455 §5.2: RSV MUST be 0 unless negotiated
        }
        if self.opcode.is_control() {
            if self.payload_len > MAX_CONTROL_PAYLOAD {
                v.insert(Violation::ControlFrameTooLong); // RFC 6455 §5.5: <= 125 bytes
            }
            if !self.fin {
                v.insert(Violation::ControlFrameFragmented); // RFC 6455 §5.5: MUST NOT fragment
            }
            if self.rsv1 && rsv_allowed.contains(Rsv::RSV1) {
                v.insert(Violation::CompressedControlFrame); // RFC 7692 §6.1
            }
        }
        if self.opcode == Opcode::Continuation && self.rsv1 && rsv_allowed.contains(Rsv::RSV1) {
            v.insert(Violation::CompressedContinuation); // RFC 7692 §6.1: first fragment only
        }
        if self.length_form != LengthForm::minimal(self.payload_len) {
            v.insert(Violation::NonMinimalLength); // RFC 6455 §5.2: minimal number of bytes
        }
        v
    }

    /// [`FrameHeader::violations`] plus the masking rule for frames sent by `sender`
    /// (RFC 6455 §5.1: clients mask every frame, servers none).
    pub fn violations_from(&self, rsv_allowed: Rsv, sender: Role) -> Violations {
        let mut v = self.violations(rsv_allowed);
        match (sender, self.mask.is_some()) {
            (Role::Client, false) => v.insert(Violation::UnmaskedClientFrame), // RFC 6455 §5.1
            (Role::Server, true) => v.insert(Violation::MaskedServerFrame),    // RFC 6455 §5.1
            _ => {}
        }
        v
    }

    /// The header's bytes, in its own length form (widened if that cannot hold the length).
    pub fn to_bytes(&self) -> HeaderBytes {
        let form = if self.length_form.can_hold(self.payload_len) {
            self.length_form
        } else {
            LengthForm::minimal(self.payload_len)
        };
        let mut b0 = self.rsv().bits() | self.opcode.as_u8();
        if self.fin {
            b0 |= FIN_BIT;
        }
        HeaderBytes::build(b0, self.mask, self.payload_len, form)
    }

    /// Appends the header's bytes to `out` (see [`FrameHeader::to_bytes`]).
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.to_bytes().as_ref());
    }
}

/// The bytes of one frame header on the stack (for writev-style output without copying).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeaderBytes {
    buf: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl HeaderBytes {
    fn build(b0: u8, mask: Option<[u8; 4]>, payload_len: u64, form: LengthForm) -> Self {
        let mut buf = [0u8; MAX_HEADER_LEN];
        let mask_bit = if mask.is_some() { MASK_BIT } else { 0 };
        let [h0, h1, ext @ ..] = &mut buf;
        *h0 = b0;
        let used = match form {
            LengthForm::Short7 => {
                // Callers only choose Short7 for lengths <= 125 (`can_hold`/`minimal`).
                *h1 = mask_bit | (payload_len.min(125) as u8);
                0
            }
            LengthForm::Ext16 => {
                *h1 = mask_bit | LEN7_EXT16;
                let [e0, e1, ..] = ext;
                [*e0, *e1] = (payload_len.min(0xffff) as u16).to_be_bytes();
                2
            }
            LengthForm::Ext64 => {
                *h1 = mask_bit | LEN7_EXT64;
                let [e0, e1, e2, e3, e4, e5, e6, e7, ..] = ext;
                [*e0, *e1, *e2, *e3, *e4, *e5, *e6, *e7] =
                    (payload_len & (u64::MAX >> 1)).to_be_bytes();
                8
            }
        };
        let mut len = 2 + used;
        if let Some(key) = mask {
            if let Some(slot) = buf.get_mut(len..len + 4) {
                slot.copy_from_slice(&key);
            }
            len += 4;
        }
        HeaderBytes {
            buf,
            len: len as u8,
        }
    }
}

impl AsRef<[u8]> for HeaderBytes {
    fn as_ref(&self) -> &[u8] {
        self.buf.get(..usize::from(self.len)).unwrap_or(&self.buf)
    }
}

impl std::ops::Deref for HeaderBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_ref()
    }
}

impl fmt::Debug for HeaderBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeaderBytes({:02x?})", self.as_ref())
    }
}

/// A zero-copy view of one whole frame in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The parsed header.
    pub header: FrameHeader,
    /// The payload as on the wire (still masked if the frame is masked).
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Reads one frame from the start of `buf`: `Ok(None)` until the whole frame is there, else
    /// the frame and the number of bytes it takes.
    pub fn parse(buf: &'a [u8]) -> Result<Option<(Frame<'a>, usize)>, FrameError> {
        let Some(header) = FrameHeader::parse(buf)? else {
            return Ok(None);
        };
        let too_long = FrameError {
            kind: FrameErrorKind::PayloadTooLong(header.payload_len),
            offset: 1,
        };
        let payload_len = usize::try_from(header.payload_len).map_err(|_| too_long)?;
        let end = header.header_len.checked_add(payload_len).ok_or(too_long)?;
        match buf.get(header.header_len..end) {
            Some(payload) => Ok(Some((Frame { header, payload }, end))),
            None => Ok(None),
        }
    }

    /// The payload with the mask removed (borrowed when the frame is not masked).
    pub fn unmasked_payload(&self) -> Cow<'a, [u8]> {
        match self.header.mask {
            None => Cow::Borrowed(self.payload),
            Some(key) => {
                let mut owned = self.payload.to_vec();
                apply_mask(&mut owned, key, 0);
                Cow::Owned(owned)
            }
        }
    }

    /// Appends the unmasked payload to `out`.
    pub fn unmask_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(self.payload);
        if let (Some(key), Some(tail)) = (self.header.mask, out.get_mut(start..)) {
            apply_mask(tail, key, 0);
        }
    }
}

/// XORs `data` with the masking `key` (RFC 6455 §5.3), 8 bytes at a time. `phase` is the offset
/// of `data[0]` within the payload, so a payload can be unmasked in pieces.
#[inline]
pub fn apply_mask(data: &mut [u8], key: [u8; 4], phase: usize) {
    let mut k = key;
    k.rotate_left(phase % 4);
    let [a, b, c, d] = k;
    let word = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    // 32-byte blocks of four independent words let the compiler use vector registers.
    let mut blocks = data.chunks_exact_mut(32);
    for block in &mut blocks {
        for lane in block.chunks_exact_mut(8) {
            xor_word(lane, word);
        }
    }
    let mut words = blocks.into_remainder().chunks_exact_mut(8);
    for lane in &mut words {
        xor_word(lane, word);
    }
    // What is left starts at a multiple of 8 from `data[0]`, so at key phase 0 of `k`.
    for (byte, m) in words.into_remainder().iter_mut().zip(k.iter().cycle()) {
        *byte ^= m;
    }
}

#[inline(always)]
fn xor_word(lane: &mut [u8], word: u64) {
    if let Ok(arr) = <&mut [u8; 8]>::try_from(lane) {
        *arr = (u64::from_ne_bytes(*arr) ^ word).to_ne_bytes();
    }
}

/// The plain byte-at-a-time masking of RFC 6455 §5.3, the reference for [`apply_mask`].
pub fn apply_mask_bytewise(data: &mut [u8], key: [u8; 4], phase: usize) {
    for (byte, m) in data.iter_mut().zip(key.iter().cycle().skip(phase % 4)) {
        *byte ^= m;
    }
}

/// Header length of a frame with `payload_len` bytes in the minimal length form.
pub const fn header_len_for(payload_len: u64, masked: bool) -> usize {
    let base = match LengthForm::minimal(payload_len) {
        LengthForm::Short7 => 2,
        LengthForm::Ext16 => 4,
        LengthForm::Ext64 => 10,
    };
    if masked { base + 4 } else { base }
}

/// The header bytes of a frame (minimal length form), for writing header and payload separately.
pub fn header_bytes(
    fin: bool,
    rsv: Rsv,
    opcode: Opcode,
    mask: Option<[u8; 4]>,
    payload_len: u64,
) -> HeaderBytes {
    let mut b0 = rsv.bits() | opcode.as_u8();
    if fin {
        b0 |= FIN_BIT;
    }
    HeaderBytes::build(b0, mask, payload_len, LengthForm::minimal(payload_len))
}

/// Appends only a frame header to `out` (the payload is written separately; if `mask` is set the
/// caller must mask the payload with [`apply_mask`]).
pub fn encode_header(
    out: &mut Vec<u8>,
    fin: bool,
    rsv: Rsv,
    opcode: Opcode,
    mask: Option<[u8; 4]>,
    payload_len: u64,
) {
    out.extend_from_slice(header_bytes(fin, rsv, opcode, mask, payload_len).as_ref());
}

/// Appends a whole frame (no RSV bit) to `out`, masking the payload copy when `mask` is set.
pub fn encode_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: Opcode,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    encode_frame_rsv(out, fin, Rsv::NONE, opcode, mask, payload);
}

/// Like [`encode_frame`] with RSV bits (e.g. [`Rsv::RSV1`] for a compressed first fragment).
pub fn encode_frame_rsv(
    out: &mut Vec<u8>,
    fin: bool,
    rsv: Rsv,
    opcode: Opcode,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    out.reserve(header_len_for(payload.len() as u64, mask.is_some()) + payload.len());
    encode_header(out, fin, rsv, opcode, mask, payload.len() as u64);
    let start = out.len();
    out.extend_from_slice(payload);
    if let (Some(key), Some(tail)) = (mask, out.get_mut(start..)) {
        apply_mask(tail, key, 0);
    }
}

/// Appends one unfragmented data message (Text or Binary), compressed with `deflater` when given
/// (RFC 7692 §6: RSV1 on the first frame), masked when `mask` is given.
pub fn encode_message(
    out: &mut Vec<u8>,
    opcode: Opcode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
    deflater: Option<&mut Deflater>,
) -> Result<(), DeflateError> {
    match deflater {
        None => encode_frame(out, true, opcode, mask, payload),
        Some(deflater) => {
            let compressed = deflater.deflate_message(payload)?;
            encode_frame_rsv(out, true, Rsv::RSV1, opcode, mask, &compressed);
        }
    }
    Ok(())
}

/// Appends a Close frame with `code` and `reason` (cut at a character boundary to fit the 125-byte
/// control payload, RFC 6455 §5.5), or an empty one when `code` is `None`.
pub fn encode_close(out: &mut Vec<u8>, mask: Option<[u8; 4]>, code: Option<u16>, reason: &str) {
    let mut payload = Vec::with_capacity(MAX_CONTROL_PAYLOAD as usize);
    if let Some(code) = code {
        CloseFrame {
            code: Some(code),
            reason,
        }
        .emit(&mut payload);
    }
    encode_frame(out, true, Opcode::Close, mask, &payload);
}

/// The payload of a Close frame (RFC 6455 §5.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// The status code, absent in an empty payload.
    pub code: Option<u16>,
    /// The UTF-8 reason after the code (may be empty).
    pub reason: &'a str,
}

/// Why a Close payload is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CloseError {
    /// RFC 6455 §5.5.1: a body starts with a 2-byte code, so 1 byte cannot be one.
    #[error("1-byte close payload (a status code takes 2 bytes)")]
    OneByte,
    /// RFC 6455 §7.4: a code that must not appear on the wire.
    #[error("status code {0} is not allowed in a close frame")]
    InvalidCode(u16),
    /// RFC 6455 §5.5.1: the reason must be UTF-8.
    #[error("close reason is not valid UTF-8 at byte {offset}")]
    InvalidUtf8 {
        /// Offset in the close payload (the code counts as bytes 0-1).
        offset: usize,
    },
}

impl CloseError {
    /// The close code to answer with: 1007 for bad UTF-8, 1002 otherwise.
    pub fn close_code(self) -> u16 {
        match self {
            CloseError::InvalidUtf8 { .. } => 1007,
            CloseError::OneByte | CloseError::InvalidCode(_) => 1002,
        }
    }
}

impl<'a> CloseFrame<'a> {
    /// Parses an (unmasked) Close payload strictly.
    pub fn parse(payload: &'a [u8]) -> Result<CloseFrame<'a>, CloseError> {
        let Some((code, reason)) = payload.split_first_chunk::<2>() else {
            return if payload.is_empty() {
                Ok(CloseFrame {
                    code: None,
                    reason: "",
                })
            } else {
                Err(CloseError::OneByte) // RFC 6455 §5.5.1
            };
        };
        let code = u16::from_be_bytes(*code);
        if !is_valid_close_code(code) {
            return Err(CloseError::InvalidCode(code)); // RFC 6455 §7.4.1, §7.4.2
        }
        let reason = std::str::from_utf8(reason).map_err(|e| CloseError::InvalidUtf8 {
            offset: 2 + e.valid_up_to(), // RFC 6455 §5.5.1: the reason is UTF-8
        })?;
        Ok(CloseFrame {
            code: Some(code),
            reason,
        })
    }

    /// Appends the payload: code and reason, the reason cut at a character boundary so the
    /// payload fits in 125 bytes. Nothing when `code` is `None`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let Some(code) = self.code else {
            return;
        };
        out.extend_from_slice(&code.to_be_bytes());
        let mut end = self.reason.len().min(MAX_CONTROL_PAYLOAD as usize - 2);
        while !self.reason.is_char_boundary(end) {
            end -= 1;
        }
        out.extend_from_slice(self.reason.get(..end).unwrap_or_default().as_bytes());
    }
}

/// Whether `code` may be sent in a Close frame (RFC 6455 §7.4.1 and §7.4.2, plus the IANA
/// registered 1012-1014): 1000-1003, 1007-1014 and 3000-4999.
pub const fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The name Wireshark gives a close code (`websocket.payload.close.status_code`); IANA's names
/// for the codes Wireshark does not know.
pub const fn close_code_name(code: u16) -> &'static str {
    match code {
        1000 => "Normal Closure",
        1001 => "Going Away",
        1002 => "Protocol error",
        1003 => "Unsupported Data",
        1004 => "---Reserved----",
        1005 => "No Status Rcvd",
        1006 => "Abnormal Closure",
        1007 => "Invalid frame payload data",
        1008 => "Policy Violation",
        1009 => "Message Too Big",
        1010 => "Mandatory Ext.",
        1011 => "Internal Server",
        1012 => "Service Restart",
        1013 => "Try Again Later",
        1014 => "Bad Gateway",
        1015 => "TLS handshake",
        3000..=3999 => "Registered",
        4000..=4999 => "Private Use",
        _ => "Unknown",
    }
}

/// Bytes known to be valid UTF-8 (the payload of a text message, shared without copying).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Checks `bytes` and wraps them.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Utf8Bytes(bytes))
    }

    /// Wraps a static string.
    pub const fn from_static(s: &'static str) -> Self {
        Utf8Bytes(Bytes::from_static(s.as_bytes()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor either checks the bytes with `std::str::from_utf8` or takes
        // them from a `str`/`String`, and the bytes are never mutated afterwards (`Bytes` is
        // immutable).
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The underlying shared bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl std::ops::Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Utf8Bytes(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Utf8Bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<Utf8Bytes> for String {
    fn from(u: Utf8Bytes) -> String {
        u.as_str().to_owned()
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A complete message from [`Reader::decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (validated UTF-8, RFC 6455 §8.1).
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping with its application data (answer with a Pong carrying the same bytes, §5.5.2).
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// A close frame: code and reason, or `None` for an empty payload (§5.5.1).
    Close(Option<(u16, String)>),
}

/// A violation of the protocol on a live connection; the connection must be failed with
/// [`ProtocolError::close_code`] (RFC 6455 §7.1.7).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Bytes that cannot be a frame header.
    /// (Not `#[from]`: that would make the frame error a `source` too, and error chains would
    /// print it twice.)
    #[error("malformed frame {0}")]
    Frame(FrameError),
    /// A header that breaks a rule (the first one found).
    #[error("{0} ({rfc})", rfc = .0.rfc())]
    Violation(Violation),
    /// A continuation frame with no fragmented message in progress (RFC 6455 §5.4).
    #[error("continuation frame without a message to continue (RFC 6455 §5.4)")]
    UnexpectedContinuation,
    /// A new data frame while a fragmented message is in progress (RFC 6455 §5.4).
    #[error("{0} frame while a fragmented message is in progress (RFC 6455 §5.4)")]
    ExpectedContinuation(Opcode),
    /// A text message that is not UTF-8 (RFC 6455 §8.1).
    #[error("text message is not valid UTF-8 (RFC 6455 §8.1)")]
    InvalidUtf8,
    /// An invalid Close payload.
    #[error("invalid close frame: {0}")]
    InvalidClose(CloseError),
    /// A message larger than the configured limit.
    #[error("message of at least {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooBig {
        /// Size known so far.
        size: u64,
        /// The limit.
        limit: usize,
    },
    /// A compressed message that does not inflate.
    #[error("permessage-deflate: {0}")]
    Inflate(DeflateError),
    /// A frame after the peer's Close frame (RFC 6455 §5.5.1).
    #[error("frame after the close frame (RFC 6455 §5.5.1)")]
    FrameAfterClose,
}

impl From<FrameError> for ProtocolError {
    fn from(e: FrameError) -> Self {
        ProtocolError::Frame(e)
    }
}

impl ProtocolError {
    /// The close code to send when failing the connection (RFC 6455 §7.4.1): 1002 protocol
    /// error, 1007 invalid payload data (UTF-8), 1009 message too big.
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::InvalidUtf8 => 1007,
            ProtocolError::InvalidClose(e) => e.close_code(),
            ProtocolError::MessageTooBig { .. } => 1009,
            ProtocolError::Inflate(DeflateError::TooLarge { .. }) => 1009,
            ProtocolError::Inflate(_) => 1007,
            ProtocolError::Frame(_)
            | ProtocolError::Violation(_)
            | ProtocolError::UnexpectedContinuation
            | ProtocolError::ExpectedContinuation(_)
            | ProtocolError::FrameAfterClose => 1002,
        }
    }
}

/// Most the reader reserves at once in the caller's buffer for a partly received frame.
const RESERVE_STEP: usize = 64 * 1024;

/// A fragmented message being reassembled.
#[derive(Debug)]
struct Partial {
    text: bool,
    compressed: bool,
    data: Vec<u8>,
    /// For uncompressed text: how many leading bytes are known to be whole, valid UTF-8.
    utf8_checked: usize,
}

/// The strict, sans-IO message reader of one live connection (either role).
///
/// Feed it the bytes read from the socket in a [`BytesMut`] and call [`Reader::decode`] until it
/// returns `Ok(None)`. Unfragmented messages are unmasked in place and split off the buffer
/// without copying.
#[derive(Debug)]
pub struct Reader {
    role: Role,
    max_message_size: usize,
    inflater: Option<Inflater>,
    partial: Option<Partial>,
    closed: bool,
}

impl Reader {
    /// A reader for the local endpoint `role` (a server expects masked frames, a client unmasked
    /// ones), refusing messages larger than `max_message_size` bytes (after inflation).
    pub fn new(role: Role, max_message_size: usize) -> Self {
        Reader {
            role,
            max_message_size,
            inflater: None,
            partial: None,
            closed: false,
        }
    }

    /// Enables permessage-deflate with the inflater for the peer's direction (allows RSV1).
    pub fn with_inflater(mut self, inflater: Inflater) -> Self {
        self.inflater = Some(inflater);
        self
    }

    /// Sets or removes the permessage-deflate inflater.
    pub fn set_inflater(&mut self, inflater: Option<Inflater>) {
        self.inflater = inflater;
    }

    /// The local endpoint's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The message size limit.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Whether a fragmented message is in progress.
    pub fn in_message(&self) -> bool {
        self.partial.is_some()
    }

    /// Whether the peer's Close frame has been read.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn rsv_allowed(&self) -> Rsv {
        if self.inflater.is_some() {
            Rsv::RSV1
        } else {
            Rsv::NONE
        }
    }

    /// Compressed bytes allowed for a message: the limit plus DEFLATE's worst-case overhead for
    /// incompressible data (5 bytes per 16 KiB stored block, plus a little).
    fn compressed_limit(&self) -> usize {
        self.max_message_size
            .saturating_add(self.max_message_size / 3000)
            .saturating_add(64)
    }

    /// Decodes the next complete message from the front of `buf`, consuming its frames.
    /// `Ok(None)`: more bytes are needed (already consumed fragments are kept inside the reader).
    /// After an `Err` the connection must be failed with [`ProtocolError::close_code`].
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        loop {
            let Some(header) = FrameHeader::parse(buf)? else {
                return Ok(None);
            };
            if self.closed {
                return Err(ProtocolError::FrameAfterClose); // RFC 6455 §5.5.1
            }
            let violations = header.violations_from(self.rsv_allowed(), self.role.peer());
            if let Some(v) = violations.first() {
                return Err(ProtocolError::Violation(v));
            }
            // Size checks before waiting for (or buffering) the payload.
            let already = self.partial.as_ref().map_or(0, |p| p.data.len());
            let compressed = header.rsv1
                || self
                    .partial
                    .as_ref()
                    .is_some_and(|p| p.compressed && header.opcode == Opcode::Continuation);
            let limit = if compressed {
                self.compressed_limit()
            } else {
                self.max_message_size
            };
            let size = (already as u64).saturating_add(header.payload_len);
            if !header.opcode.is_control() && size > limit as u64 {
                return Err(ProtocolError::MessageTooBig {
                    size,
                    limit: self.max_message_size,
                });
            }
            // The payload fits in `limit` (or in 125 bytes), so it fits in usize.
            let payload_len = usize::try_from(header.payload_len).map_err(|_| {
                ProtocolError::Frame(FrameError {
                    kind: FrameErrorKind::PayloadTooLong(header.payload_len),
                    offset: 1,
                })
            })?;
            let frame_len = header.header_len.saturating_add(payload_len);
            if buf.len() < frame_len {
                // Room for the rest of the frame, in steps, so a peer announcing a large frame
                // without sending it does not make us allocate it all up front.
                buf.reserve((frame_len - buf.len()).min(RESERVE_STEP));
                return Ok(None);
            }
            if let (Some(key), Some(payload)) =
                (header.mask, buf.get_mut(header.header_len..frame_len))
            {
                apply_mask(payload, key, 0);
            }
            match header.opcode {
                Opcode::Ping | Opcode::Pong | Opcode::Close => {
                    let mut frame = buf.split_to(frame_len);
                    frame.advance(header.header_len);
                    let payload = frame.freeze();
                    return Ok(Some(match header.opcode {
                        Opcode::Ping => Message::Ping(payload),
                        Opcode::Pong => Message::Pong(payload),
                        _ => {
                            self.closed = true;
                            let close =
                                CloseFrame::parse(&payload).map_err(ProtocolError::InvalidClose)?;
                            Message::Close(close.code.map(|c| (c, close.reason.to_owned())))
                        }
                    }));
                }
                Opcode::Text | Opcode::Binary => {
                    if self.partial.is_some() {
                        return Err(ProtocolError::ExpectedContinuation(header.opcode)); // §5.4
                    }
                    let text = header.opcode == Opcode::Text;
                    if header.fin && !header.rsv1 {
                        // The fast path: one frame, no copy.
                        let mut frame = buf.split_to(frame_len);
                        frame.advance(header.header_len);
                        let payload = frame.freeze();
                        return if text {
                            Utf8Bytes::try_from_bytes(payload)
                                .map(|t| Some(Message::Text(t)))
                                .map_err(|_| ProtocolError::InvalidUtf8) // RFC 6455 §8.1
                        } else {
                            Ok(Some(Message::Binary(payload)))
                        };
                    }
                    if header.fin {
                        // One compressed frame: inflate straight from the buffer.
                        let out = self.inflate(buf.get(header.header_len..frame_len))?;
                        buf.advance(frame_len);
                        return finish(text, out).map(Some);
                    }
                    let mut partial = Partial {
                        text,
                        compressed: header.rsv1,
                        data: Vec::with_capacity(payload_len.saturating_mul(2).min(limit)),
                        utf8_checked: 0,
                    };
                    partial.data.extend_from_slice(
                        buf.get(header.header_len..frame_len).unwrap_or_default(),
                    );
                    buf.advance(frame_len);
                    partial.check_utf8(false)?;
                    self.partial = Some(partial);
                }
                Opcode::Continuation => {
                    let Some(partial) = self.partial.as_mut() else {
                        return Err(ProtocolError::UnexpectedContinuation); // RFC 6455 §5.4
                    };
                    partial.data.extend_from_slice(
                        buf.get(header.header_len..frame_len).unwrap_or_default(),
                    );
                    buf.advance(frame_len);
                    partial.check_utf8(header.fin)?;
                    if header.fin {
                        let Some(done) = self.partial.take() else {
                            return Ok(None);
                        };
                        let data = if done.compressed {
                            self.inflate(Some(&done.data))?
                        } else {
                            done.data
                        };
                        if done.text && !done.compressed {
                            // Already validated piece by piece.
                            return Ok(Some(Message::Text(Utf8Bytes(Bytes::from(data)))));
                        }
                        return finish(done.text, data).map(Some);
                    }
                }
                Opcode::Reserved(_) => {
                    // Unreachable: reserved opcodes are violations, rejected above.
                    return Err(ProtocolError::Violation(Violation::ReservedOpcode));
                }
            }
        }
    }

    fn inflate(&mut self, compressed: Option<&[u8]>) -> Result<Vec<u8>, ProtocolError> {
        let max = self.max_message_size;
        match self.inflater.as_mut() {
            Some(inflater) => inflater
                .inflate_message(compressed.unwrap_or_default(), max)
                .map_err(ProtocolError::Inflate),
            // Unreachable: RSV1 without an inflater is a violation, rejected before.
            None => Err(ProtocolError::Violation(Violation::ReservedBits)),
        }
    }
}

impl Partial {
    /// Validates newly appended text as far as it is complete; fails fast on bytes that can never
    /// become UTF-8 (RFC 6455 §8.1). `last`: the message is complete, so nothing may be pending.
    fn check_utf8(&mut self, last: bool) -> Result<(), ProtocolError> {
        if !self.text || self.compressed {
            return Ok(());
        }
        let rest = self.data.get(self.utf8_checked..).unwrap_or_default();
        match std::str::from_utf8(rest) {
            Ok(_) => self.utf8_checked = self.data.len(),
            Err(e) => {
                if e.error_len().is_some() || last {
                    return Err(ProtocolError::InvalidUtf8);
                }
                // An incomplete character at the end: the next fragment may finish it.
                self.utf8_checked += e.valid_up_to();
            }
        }
        Ok(())
    }
}

/// Builds the message from a whole (inflated) payload.
fn finish(text: bool, data: Vec<u8>) -> Result<Message, ProtocolError> {
    if text {
        Utf8Bytes::try_from_bytes(Bytes::from(data))
            .map(Message::Text)
            .map_err(|_| ProtocolError::InvalidUtf8) // RFC 6455 §8.1
    } else {
        Ok(Message::Binary(Bytes::from(data)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    /// Decodes every message in `bytes` with a fresh reader.
    fn read_all(reader: &mut Reader, bytes: &[u8]) -> Result<Vec<Message>, ProtocolError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = reader.decode(&mut buf)? {
            out.push(m);
        }
        assert!(buf.is_empty(), "left over: {buf:02x?}");
        Ok(out)
    }

    // ---- opcodes -------------------------------------------------------------------------

    #[test]
    fn opcode_round_trips_all_16_values_and_keeps_reserved_ones() {
        for v in 0u8..16 {
            let op = Opcode::from_u8(v);
            assert_eq!(op.as_u8(), v);
            assert_eq!(op.is_control(), v >= 8);
            assert_eq!(op.is_reserved(), !matches!(v, 0 | 1 | 2 | 8 | 9 | 10));
        }
        assert_eq!(Opcode::from_u8(0xf1), Opcode::Text, "high bits are ignored");
        assert_eq!(Opcode::Close.name(), "Connection Close");
        assert_eq!(Opcode::Reserved(3).name(), "Unknown Opcode");
        assert_eq!(Opcode::Reserved(0xb).to_string(), "Unknown Opcode 0xb");
        assert_eq!(Opcode::Text.to_string(), "Text");
    }

    // ---- RFC 6455 §5.7 examples: deconstruct, parse, emit ---------------------------------

    #[test]
    fn rfc6455_5_7_unmasked_hello() {
        let bytes = hex("81 05 48 65 6c 6c 6f");
        let (frame, used) = Frame::parse(&bytes).unwrap().unwrap();
        assert_eq!(used, 7);
        let h = frame.header;
        assert!(h.fin && !h.rsv1 && !h.rsv2 && !h.rsv3);
        assert_eq!(h.opcode, Opcode::Text);
        assert_eq!(h.mask, None);
        assert_eq!(h.payload_len, 5);
        assert_eq!(h.length_form, LengthForm::Short7);
        assert_eq!(h.header_len, 2);
        assert_eq!(frame.payload, b"Hello");
        assert!(h.violations_from(Rsv::NONE, Role::Server).is_empty());
        let mut out = Vec::new();
        encode_frame(&mut out, true, Opcode::Text, None, b"Hello");
        assert_eq!(out, bytes);
        assert_eq!(h.to_bytes().as_ref(), &bytes[..2]);
    }

    #[test]
    fn rfc6455_5_7_masked_hello() {
        let bytes = hex("81 85 37 fa 21 3d 7f 9f 4d 51 58");
        let (frame, used) = Frame::parse(&bytes).unwrap().unwrap();
        assert_eq!(used, 11);
        assert_eq!(frame.header.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(frame.header.header_len, 6);
        assert_eq!(frame.payload, &bytes[6..]);
        assert_eq!(&*frame.unmasked_payload(), b"Hello");
        let mut out = Vec::new();
        encode_frame(
            &mut out,
            true,
            Opcode::Text,
            Some([0x37, 0xfa, 0x21, 0x3d]),
            b"Hello",
        );
        assert_eq!(out, bytes);
        assert!(
            frame
                .header
                .violations_from(Rsv::NONE, Role::Client)
                .is_empty()
        );
        assert_eq!(
            frame
                .header
                .violations_from(Rsv::NONE, Role::Server)
                .first(),
            Some(Violation::MaskedServerFrame)
        );
    }

    #[test]
    fn rfc6455_5_7_fragmented_unmasked_text() {
        let bytes = hex("01 03 48 65 6c 80 02 6c 6f");
        let (first, used) = Frame::parse(&bytes).unwrap().unwrap();
        assert!(!first.header.fin);
        assert_eq!(first.header.opcode, Opcode::Text);
        assert_eq!(first.payload, b"Hel");
        let (second, _) = Frame::parse(&bytes[used..]).unwrap().unwrap();
        assert!(second.header.fin);
        assert_eq!(second.header.opcode, Opcode::Continuation);
        assert_eq!(second.payload, b"lo");
        let mut reader = Reader::new(Role::Client, 1 << 20);
        let msgs = read_all(&mut reader, &bytes).unwrap();
        assert_eq!(msgs, vec![Message::Text(Utf8Bytes::from("Hello"))]);
    }

    #[test]
    fn rfc6455_5_7_ping_and_masked_pong() {
        let ping = hex("89 05 48 65 6c 6c 6f");
        let (frame, _) = Frame::parse(&ping).unwrap().unwrap();
        assert_eq!(frame.header.opcode, Opcode::Ping);
        assert_eq!(frame.payload, b"Hello");
        let mut out = Vec::new();
        encode_frame(&mut out, true, Opcode::Ping, None, b"Hello");
        assert_eq!(out, ping);

        let pong = hex("8a 85 37 fa 21 3d 7f 9f 4d 51 58");
        let (frame, _) = Frame::parse(&pong).unwrap().unwrap();
        assert_eq!(frame.header.opcode, Opcode::Pong);
        assert_eq!(&*frame.unmasked_payload(), b"Hello");
        let mut reader = Reader::new(Role::Server, 1024);
        assert_eq!(
            read_all(&mut reader, &pong).unwrap(),
            vec![Message::Pong(Bytes::from_static(b"Hello"))]
        );
    }

    #[test]
    fn rfc6455_5_7_256_byte_binary_uses_16_bit_length() {
        let payload: Vec<u8> = (0..=255u8).collect();
        let mut out = Vec::new();
        encode_frame(&mut out, true, Opcode::Binary, None, &payload);
        assert_eq!(&out[..4], &hex("82 7e 01 00")[..]);
        assert_eq!(out.len(), 4 + 256);
        let (frame, used) = Frame::parse(&out).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert_eq!(frame.header.length_form, LengthForm::Ext16);
        assert_eq!(frame.header.payload_len, 256);
        assert_eq!(frame.payload, &payload[..]);
    }

    #[test]
    fn rfc6455_5_7_64kib_binary_uses_64_bit_length() {
        let payload = vec![0x5a; 65536];
        let mut out = Vec::new();
        encode_frame(&mut out, true, Opcode::Binary, None, &payload);
        assert_eq!(&out[..10], &hex("82 7f 00 00 00 00 00 01 00 00")[..]);
        let (frame, used) = Frame::parse(&out).unwrap().unwrap();
        assert_eq!(used, 10 + 65536);
        assert_eq!(frame.header.length_form, LengthForm::Ext64);
        assert_eq!(frame.header.payload_len, 65536);
        assert!(frame.header.violations(Rsv::NONE).is_empty());
    }

    #[test]
    fn length_form_boundaries() {
        for (len, form, hlen) in [
            (0u64, LengthForm::Short7, 2),
            (125, LengthForm::Short7, 2),
            (126, LengthForm::Ext16, 4),
            (65535, LengthForm::Ext16, 4),
            (65536, LengthForm::Ext64, 10),
            (u64::MAX >> 1, LengthForm::Ext64, 10),
        ] {
            assert_eq!(LengthForm::minimal(len), form, "len {len}");
            assert_eq!(header_len_for(len, false), hlen);
            assert_eq!(header_len_for(len, true), hlen + 4);
            let h = FrameHeader::new(true, Opcode::Binary, None, len);
            let bytes = h.to_bytes();
            assert_eq!(bytes.len(), hlen);
            assert_eq!(FrameHeader::parse(&bytes).unwrap(), Some(h));
        }
    }

    // ---- need more bytes vs malformed -----------------------------------------------------

    #[test]
    fn every_short_prefix_needs_more_bytes() {
        let mut out = Vec::new();
        encode_frame(
            &mut out,
            true,
            Opcode::Binary,
            Some([1, 2, 3, 4]),
            &[7; 300],
        );
        let header_len = 2 + 2 + 4;
        for cut in 0..header_len {
            assert_eq!(FrameHeader::parse(&out[..cut]), Ok(None), "cut {cut}");
        }
        assert!(FrameHeader::parse(&out[..header_len]).unwrap().is_some());
        for cut in 0..out.len() {
            assert_eq!(Frame::parse(&out[..cut]), Ok(None), "cut {cut}");
        }
        assert!(Frame::parse(&out).unwrap().is_some());
    }

    #[test]
    fn top_bit_of_64_bit_length_is_malformed_as_soon_as_it_arrives() {
        let err = FrameHeader::parse(&hex("82 7f 80")).unwrap_err();
        assert_eq!(err.kind, FrameErrorKind::LengthTopBitSet);
        assert_eq!(err.offset, 2);
        assert_eq!(
            err.to_string(),
            "at byte 2: 64-bit payload length has the top bit set"
        );
        assert!(FrameHeader::parse(&hex("82 7f ff ff ff ff ff ff ff ff")).is_err());
        // Just below: structurally fine (a decoder can show it), Frame::parse waits for it.
        let h = FrameHeader::parse(&hex("82 7f 7f ff ff ff ff ff ff ff"))
            .unwrap()
            .unwrap();
        assert_eq!(h.payload_len, u64::MAX >> 1);
        assert!(
            Frame::parse(&hex("82 7f 7f ff ff ff ff ff ff ff 00"))
                .unwrap()
                .is_none()
        );
    }

    // ---- violations ------------------------------------------------------------------------

    fn violations_of(bytes: &str, rsv: Rsv) -> Vec<&'static str> {
        FrameHeader::parse(&hex(bytes))
            .unwrap()
            .unwrap()
            .violations(rsv)
            .iter()
            .map(Violation::code)
            .collect()
    }

    #[test]
    fn violations_are_detected_with_stable_codes() {
        assert_eq!(violations_of("81 00", Rsv::NONE), Vec::<&str>::new());
        assert_eq!(violations_of("83 00", Rsv::NONE), ["reserved_opcode"]);
        assert_eq!(
            violations_of("8b 00", Rsv::NONE),
            ["reserved_opcode"],
            "reserved control opcode"
        );
        assert_eq!(violations_of("c1 00", Rsv::NONE), ["reserved_bits"]);
        assert_eq!(violations_of("c1 00", Rsv::RSV1), Vec::<&str>::new());
        assert_eq!(violations_of("a1 00", Rsv::RSV1), ["reserved_bits"]);
        assert_eq!(violations_of("91 00", Rsv::RSV1), ["reserved_bits"]);
        assert_eq!(
            violations_of("89 7e 00 7e", Rsv::NONE),
            ["control_frame_too_long"]
        );
        assert_eq!(
            violations_of("09 00", Rsv::NONE),
            ["control_frame_fragmented"]
        );
        assert_eq!(
            violations_of("82 7e 00 7d", Rsv::NONE),
            ["non_minimal_length"]
        );
        assert_eq!(
            violations_of("82 7f 00 00 00 00 00 00 ff ff", Rsv::NONE),
            ["non_minimal_length"]
        );
        assert_eq!(
            violations_of("c9 00", Rsv::RSV1),
            ["compressed_control_frame"]
        );
        assert_eq!(violations_of("c9 00", Rsv::NONE), ["reserved_bits"]);
        assert_eq!(
            violations_of("c0 00", Rsv::RSV1),
            ["compressed_continuation"]
        );
        // Several at once, in code order.
        assert_eq!(
            violations_of("7b 7e 00 7e", Rsv::NONE),
            [
                "reserved_opcode",
                "reserved_bits",
                "control_frame_too_long",
                "control_frame_fragmented"
            ]
        );
        let h = FrameHeader::parse(&hex("81 00")).unwrap().unwrap();
        assert_eq!(
            h.violations_from(Rsv::NONE, Role::Client).first(),
            Some(Violation::UnmaskedClientFrame)
        );
        assert!(h.violations_from(Rsv::NONE, Role::Server).is_empty());
    }

    #[test]
    fn violation_texts_and_codes() {
        assert_eq!(
            Violation::ControlFrameTooLong.to_string(),
            "control frame payload longer than 125 bytes"
        );
        assert_eq!(Violation::ControlFrameTooLong.rfc(), "RFC 6455 §5.5");
        let mut set = Violations::default();
        set.insert(Violation::NonMinimalLength);
        set.insert(Violation::ReservedOpcode);
        assert_eq!(set.len(), 2);
        assert_eq!(
            set.to_string(),
            "reserved opcode; payload length not in its minimal encoding"
        );
        let codes: Vec<_> = Violation::ALL.iter().map(|v| v.code()).collect();
        let mut unique = codes.clone();
        unique.dedup();
        assert_eq!(codes, unique);
    }

    // ---- masking ---------------------------------------------------------------------------

    #[test]
    fn mask_phase_lets_a_payload_be_unmasked_in_pieces() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let plain: Vec<u8> = (0..100u8).collect();
        let mut whole = plain.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = plain.clone();
        let (a, rest) = pieces.split_at_mut(3);
        let (b, c) = rest.split_at_mut(38);
        apply_mask(a, key, 0);
        apply_mask(b, key, 3);
        apply_mask(c, key, 41);
        assert_eq!(pieces, whole);
        apply_mask(&mut whole, key, 0);
        assert_eq!(whole, plain, "masking twice restores the data");
    }

    // ---- close frames ----------------------------------------------------------------------

    #[test]
    fn close_payloads() {
        assert_eq!(
            CloseFrame::parse(b""),
            Ok(CloseFrame {
                code: None,
                reason: ""
            })
        );
        assert_eq!(CloseFrame::parse(b"\x03"), Err(CloseError::OneByte));
        assert_eq!(
            CloseFrame::parse(b"\x03\xe8bye"),
            Ok(CloseFrame {
                code: Some(1000),
                reason: "bye"
            })
        );
        for bad in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            let payload = bad.to_be_bytes();
            assert_eq!(
                CloseFrame::parse(&payload),
                Err(CloseError::InvalidCode(bad)),
                "{bad}"
            );
        }
        for good in [
            1000u16, 1001, 1002, 1003, 1007, 1011, 1012, 1014, 3000, 4999,
        ] {
            assert!(CloseFrame::parse(&good.to_be_bytes()).is_ok(), "{good}");
        }
        let err = CloseFrame::parse(b"\x03\xe8ok\xff").unwrap_err();
        assert_eq!(err, CloseError::InvalidUtf8 { offset: 4 });
        assert_eq!(err.close_code(), 1007);
        assert_eq!(CloseError::OneByte.close_code(), 1002);
    }

    #[test]
    fn close_encoding_cuts_long_reasons_at_a_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes
        let mut out = Vec::new();
        encode_close(&mut out, None, Some(1001), &reason);
        let (frame, _) = Frame::parse(&out).unwrap().unwrap();
        assert!(frame.payload.len() <= 125);
        let close = CloseFrame::parse(frame.payload).unwrap();
        assert_eq!(close.code, Some(1001));
        assert_eq!(close.reason, "é".repeat(61));
        let mut empty = Vec::new();
        encode_close(&mut empty, None, None, "ignored");
        assert_eq!(empty, hex("88 00"));
    }

    #[test]
    fn close_code_names_follow_wireshark() {
        assert_eq!(close_code_name(1000), "Normal Closure");
        assert_eq!(close_code_name(1002), "Protocol error");
        assert_eq!(close_code_name(1007), "Invalid frame payload data");
        assert_eq!(close_code_name(1009), "Message Too Big");
        assert_eq!(close_code_name(1011), "Internal Server");
        assert_eq!(close_code_name(4000), "Private Use");
        assert_eq!(close_code_name(42), "Unknown");
    }

    // ---- the seed capture ------------------------------------------------------------------

    /// The TCP payload of the single packet in captures/seed-frame-4295.pcap.
    fn seed_tcp_payload() -> Vec<u8> {
        let pcap = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/captures/seed-frame-4295.pcap"
        ))
        .unwrap();
        // Classic pcap, little-endian magic, Ethernet link type.
        assert_eq!(&pcap[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes(pcap[20..24].try_into().unwrap()), 1);
        let record = &pcap[24..];
        let incl_len = u32::from_le_bytes(record[8..12].try_into().unwrap()) as usize;
        let packet = &record[16..16 + incl_len];
        let sliced = etherparse::SlicedPacket::from_ethernet(packet).unwrap();
        match sliced.transport {
            Some(etherparse::TransportSlice::Tcp(tcp)) => tcp.payload().to_vec(),
            other => panic!("not TCP: {other:?}"),
        }
    }

    #[test]
    fn seed_frame_4295_is_a_masked_socketio_text_frame() {
        let payload = seed_tcp_payload();
        let (frame, used) = Frame::parse(&payload).unwrap().unwrap();
        assert_eq!(used, payload.len(), "exactly one frame");
        let h = frame.header;
        assert!(h.fin);
        assert_eq!(h.opcode, Opcode::Text);
        assert_eq!(h.mask, Some([0xa0, 0x94, 0x33, 0xcb]));
        assert_eq!(h.payload_len, 89);
        assert_eq!(h.header_len, 6);
        assert!(h.violations_from(Rsv::NONE, Role::Client).is_empty());
        let text = String::from_utf8(frame.unmasked_payload().into_owned()).unwrap();
        assert_eq!(
            text,
            r#"42["send_message",{"room":"1","author":"Celular","message":"Olá mundo!","time":"16:10"}]"#
        );
        let mut reader = Reader::new(Role::Server, 1 << 16);
        let msgs = read_all(&mut reader, &payload).unwrap();
        assert_eq!(msgs, vec![Message::Text(Utf8Bytes::from(text.as_str()))]);
    }

    // ---- the strict reader -----------------------------------------------------------------

    #[test]
    fn reader_returns_control_frames_between_fragments() {
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, false, Opcode::Text, Some([1, 2, 3, 4]), b"Hel");
        encode_frame(&mut bytes, true, Opcode::Ping, Some([5, 6, 7, 8]), b"p");
        encode_frame(
            &mut bytes,
            false,
            Opcode::Continuation,
            Some([9, 9, 9, 9]),
            b"l",
        );
        encode_frame(
            &mut bytes,
            true,
            Opcode::Continuation,
            Some([0, 0, 0, 1]),
            b"o",
        );
        encode_frame(
            &mut bytes,
            true,
            Opcode::Binary,
            Some([0, 0, 0, 1]),
            &[0, 255],
        );
        let mut reader = Reader::new(Role::Server, 1024);
        assert_eq!(
            read_all(&mut reader, &bytes).unwrap(),
            vec![
                Message::Ping(Bytes::from_static(b"p")),
                Message::Text(Utf8Bytes::from("Hello")),
                Message::Binary(Bytes::from_static(&[0, 255])),
            ]
        );
    }

    #[test]
    fn reader_fed_one_byte_at_a_time_gives_the_same_messages() {
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, false, Opcode::Text, None, "Olá ".as_bytes());
        encode_frame(
            &mut bytes,
            true,
            Opcode::Continuation,
            None,
            "mundo!".as_bytes(),
        );
        encode_frame(&mut bytes, true, Opcode::Binary, None, &[3; 300]);
        encode_close(&mut bytes, None, Some(1000), "bye");
        let mut reader = Reader::new(Role::Client, 1024);
        let mut buf = BytesMut::new();
        let mut msgs = Vec::new();
        for b in &bytes {
            buf.extend_from_slice(&[*b]);
            while let Some(m) = reader.decode(&mut buf).unwrap() {
                msgs.push(m);
            }
        }
        assert_eq!(
            msgs,
            vec![
                Message::Text(Utf8Bytes::from("Olá mundo!")),
                Message::Binary(Bytes::from(vec![3; 300])),
                Message::Close(Some((1000, "bye".into()))),
            ]
        );
        assert!(reader.is_closed());
    }

    #[test]
    fn reader_enforces_masking_by_role() {
        let mut unmasked = Vec::new();
        encode_frame(&mut unmasked, true, Opcode::Text, None, b"hi");
        let err = read_all(&mut Reader::new(Role::Server, 64), &unmasked).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::Violation(Violation::UnmaskedClientFrame)
        );
        assert_eq!(err.close_code(), 1002);
        let mut masked = Vec::new();
        encode_frame(&mut masked, true, Opcode::Text, Some([1, 1, 1, 1]), b"hi");
        let err = read_all(&mut Reader::new(Role::Client, 64), &masked).unwrap_err();
        assert_eq!(err, ProtocolError::Violation(Violation::MaskedServerFrame));
    }

    #[test]
    fn reader_rejects_bad_fragmentation() {
        let err = read_all(&mut Reader::new(Role::Client, 64), &hex("80 01 61")).unwrap_err();
        assert_eq!(err, ProtocolError::UnexpectedContinuation);
        let err = read_all(
            &mut Reader::new(Role::Client, 64),
            &hex("01 01 61 81 01 62"),
        )
        .unwrap_err();
        assert_eq!(err, ProtocolError::ExpectedContinuation(Opcode::Text));
        assert_eq!(err.close_code(), 1002);
    }

    #[test]
    fn reader_rejects_invalid_utf8_fast_but_accepts_split_characters() {
        // "é" = c3 a9 split across two fragments is fine.
        let msgs = read_all(
            &mut Reader::new(Role::Client, 64),
            &hex("01 01 c3 80 01 a9"),
        )
        .unwrap();
        assert_eq!(msgs, vec![Message::Text(Utf8Bytes::from("é"))]);
        // An impossible byte fails on the first fragment, before the message ends.
        let mut reader = Reader::new(Role::Client, 64);
        let mut buf = BytesMut::from(&hex("01 02 61 ff")[..]);
        let err = reader.decode(&mut buf).unwrap_err();
        assert_eq!(err, ProtocolError::InvalidUtf8);
        assert_eq!(err.close_code(), 1007);
        // A truncated character at the end of the message.
        let err = read_all(&mut Reader::new(Role::Client, 64), &hex("81 01 c3")).unwrap_err();
        assert_eq!(err, ProtocolError::InvalidUtf8);
        let err = read_all(&mut Reader::new(Role::Client, 64), &hex("01 01 c3 80 00")).unwrap_err();
        assert_eq!(err, ProtocolError::InvalidUtf8);
    }

    #[test]
    fn reader_limits_message_size_before_the_payload_arrives() {
        let mut reader = Reader::new(Role::Client, 100);
        let mut buf = BytesMut::from(&hex("82 7e 00 c8")[..]); // 200 bytes announced
        let err = reader.decode(&mut buf).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::MessageTooBig {
                size: 200,
                limit: 100
            }
        );
        assert_eq!(err.close_code(), 1009);
        // Fragments count together.
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, false, Opcode::Binary, None, &[0; 60]);
        encode_frame(&mut bytes, true, Opcode::Continuation, None, &[0; 60]);
        let err = read_all(&mut Reader::new(Role::Client, 100), &bytes).unwrap_err();
        assert_eq!(err.close_code(), 1009);
        // Exactly at the limit is fine.
        let mut ok = Vec::new();
        encode_frame(&mut ok, true, Opcode::Binary, None, &[0; 100]);
        assert!(read_all(&mut Reader::new(Role::Client, 100), &ok).is_ok());
    }

    #[test]
    fn reader_rejects_violations_and_bad_close_frames() {
        let cases = [
            ("c1 00", 1002),                  // RSV1 without permessage-deflate
            ("83 00", 1002),                  // reserved opcode
            ("09 00", 1002),                  // fragmented ping
            ("89 7e 00 7e", 1002),            // long ping
            ("82 7e 00 05 0102030405", 1002), // non-minimal length
            ("88 01 03", 1002),               // 1-byte close
            ("88 02 03 ed", 1002),            // close code 1005
            ("88 03 03 e8 ff", 1007),         // close reason not UTF-8
        ];
        for (bytes, code) in cases {
            let err = read_all(&mut Reader::new(Role::Client, 1024), &hex(bytes)).unwrap_err();
            assert_eq!(err.close_code(), code, "{bytes}: {err}");
        }
        let err = read_all(&mut Reader::new(Role::Client, 1024), &hex("88 00 81 00")).unwrap_err();
        assert_eq!(err, ProtocolError::FrameAfterClose);
        let err = read_all(&mut Reader::new(Role::Client, 1024), &hex("82 7f 80")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed frame at byte 2: 64-bit payload length has the top bit set"
        );
    }

    // ---- RFC 7692 §7.2.3 examples through the reader --------------------------------------

    fn deflate_reader(context_takeover: bool) -> Reader {
        Reader::new(Role::Client, 1 << 16)
            .with_inflater(Inflater::new(15, context_takeover).unwrap())
    }

    #[test]
    fn rfc7692_7_2_3_1_compressed_hello_single_and_fragmented() {
        let single = hex("c1 07 f2 48 cd c9 c9 07 00");
        let msgs = read_all(&mut deflate_reader(true), &single).unwrap();
        assert_eq!(msgs, vec![Message::Text(Utf8Bytes::from("Hello"))]);
        let fragmented = hex("41 03 f2 48 cd 80 04 c9 c9 07 00");
        let msgs = read_all(&mut deflate_reader(true), &fragmented).unwrap();
        assert_eq!(msgs, vec![Message::Text(Utf8Bytes::from("Hello"))]);
    }

    #[test]
    fn rfc7692_7_2_3_2_sharing_the_sliding_window() {
        let bytes = hex("c1 07 f2 48 cd c9 c9 07 00 c1 05 f2 00 11 00 00");
        let msgs = read_all(&mut deflate_reader(true), &bytes).unwrap();
        assert_eq!(
            msgs,
            vec![
                Message::Text(Utf8Bytes::from("Hello")),
                Message::Text(Utf8Bytes::from("Hello"))
            ]
        );
        // Without context takeover the second message refers to a window that is gone.
        let err = read_all(&mut deflate_reader(false), &bytes).unwrap_err();
        assert!(matches!(err, ProtocolError::Inflate(_)), "{err}");
    }

    #[test]
    fn rfc7692_7_2_3_3_to_5_stored_bfinal_and_two_blocks() {
        for bytes in [
            "c1 0b 00 05 00 fa ff 48 65 6c 6c 6f 00",
            "c1 08 f3 48 cd c9 c9 07 00 00",
            "c1 0d f2 48 05 00 00 00 ff ff ca c9 c9 07 00",
        ] {
            let msgs = read_all(&mut deflate_reader(true), &hex(bytes)).unwrap();
            assert_eq!(
                msgs,
                vec![Message::Text(Utf8Bytes::from("Hello"))],
                "{bytes}"
            );
        }
    }

    #[test]
    fn reader_with_deflate_rejects_rsv1_on_continuations_and_control_frames() {
        let err = read_all(&mut deflate_reader(true), &hex("41 00 c0 00")).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::Violation(Violation::CompressedContinuation)
        );
        let err = read_all(&mut deflate_reader(true), &hex("c9 00")).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::Violation(Violation::CompressedControlFrame)
        );
    }

    #[test]
    fn reader_guards_against_decompression_bombs() {
        let mut deflater = Deflater::new(15, false).unwrap();
        let mut bytes = Vec::new();
        encode_message(
            &mut bytes,
            Opcode::Binary,
            &vec![0; 100_000],
            None,
            Some(&mut deflater),
        )
        .unwrap();
        assert!(bytes.len() < 1000);
        let mut reader =
            Reader::new(Role::Client, 50_000).with_inflater(Inflater::new(15, false).unwrap());
        let err = read_all(&mut reader, &bytes).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::Inflate(DeflateError::TooLarge { limit: 50_000 })
        );
        assert_eq!(err.close_code(), 1009);
    }

    #[test]
    fn encode_message_with_deflate_round_trips_through_the_reader() {
        let mut deflater = Deflater::new(15, true).unwrap();
        let mut bytes = Vec::new();
        for text in ["Hello", "Hello", "Olá mundo!", ""] {
            encode_message(
                &mut bytes,
                Opcode::Text,
                text.as_bytes(),
                Some([1, 2, 3, 4]),
                Some(&mut deflater),
            )
            .unwrap();
        }
        let mut reader =
            Reader::new(Role::Server, 1024).with_inflater(Inflater::new(15, true).unwrap());
        let msgs = read_all(&mut reader, &bytes).unwrap();
        let texts: Vec<String> = msgs
            .into_iter()
            .map(|m| match m {
                Message::Text(t) => t.into(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(texts, ["Hello", "Hello", "Olá mundo!", ""]);
    }

    // ---- properties ------------------------------------------------------------------------

    fn arb_header() -> impl Strategy<Value = FrameHeader> {
        let len = prop_oneof![
            (0u64..=125).prop_map(|l| (l, LengthForm::Short7)),
            (0u64..=0xffff).prop_map(|l| (l, LengthForm::Ext16)),
            (0u64..=(u64::MAX >> 1)).prop_map(|l| (l, LengthForm::Ext64)),
        ];
        (
            any::<(bool, bool, bool, bool)>(),
            0u8..16,
            any::<Option<[u8; 4]>>(),
            len,
        )
            .prop_map(
                |((fin, rsv1, rsv2, rsv3), op, mask, (payload_len, length_form))| FrameHeader {
                    fin,
                    rsv1,
                    rsv2,
                    rsv3,
                    opcode: Opcode::from_u8(op),
                    mask,
                    payload_len,
                    length_form,
                    header_len: 2 + length_form.extra_len() + if mask.is_some() { 4 } else { 0 },
                },
            )
    }

    proptest! {
        #[test]
        fn every_header_round_trips_through_emit_and_parse(h in arb_header()) {
            let bytes = h.to_bytes();
            prop_assert_eq!(bytes.len(), h.header_len);
            prop_assert_eq!(FrameHeader::parse(&bytes).unwrap(), Some(h));
        }

        #[test]
        fn every_frame_round_trips_through_encode_and_decode(
            fin in any::<bool>(),
            op in 0u8..16,
            mask in any::<Option<[u8; 4]>>(),
            payload in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..200),
                proptest::collection::vec(any::<u8>(), 65_530..65_545),
            ],
            trailing in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let opcode = Opcode::from_u8(op);
            let mut out = Vec::new();
            encode_frame(&mut out, fin, opcode, mask, &payload);
            let frame_len = out.len();
            prop_assert_eq!(frame_len, header_len_for(payload.len() as u64, mask.is_some()) + payload.len());
            out.extend_from_slice(&trailing);
            let (frame, used) = Frame::parse(&out).unwrap().unwrap();
            prop_assert_eq!(used, frame_len);
            prop_assert_eq!(frame.header, FrameHeader::new(fin, opcode, mask, payload.len() as u64));
            prop_assert_eq!(&*frame.unmasked_payload(), &payload[..]);
            prop_assert!(!frame.header.violations(Rsv::NONE).contains(Violation::NonMinimalLength));
        }

        #[test]
        fn parsed_headers_emit_their_exact_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
            if let Ok(Some(h)) = FrameHeader::parse(&bytes) {
                let emitted = h.to_bytes();
                prop_assert_eq!(emitted.as_ref(), &bytes[..h.header_len]);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_any_parser(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = FrameHeader::parse(&bytes);
            if let Ok(Some((frame, used))) = Frame::parse(&bytes) {
                prop_assert!(used <= bytes.len());
                let _ = frame.unmasked_payload();
            }
            let _ = CloseFrame::parse(&bytes);
            for role in [Role::Client, Role::Server] {
                let mut reader = Reader::new(role, 256);
                let mut buf = BytesMut::from(&bytes[..]);
                while let Ok(Some(_)) = reader.decode(&mut buf) {}
                let mut reader = Reader::new(role, 256).with_inflater(Inflater::new(9, true).unwrap());
                let mut buf = BytesMut::from(&bytes[..]);
                while let Ok(Some(_)) = reader.decode(&mut buf) {}
            }
        }

        #[test]
        fn word_mask_matches_the_bytewise_reference(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            key in any::<[u8; 4]>(),
            phase in 0usize..64,
            start in 0usize..16,
        ) {
            // Also start at unaligned addresses inside a larger buffer.
            let start = start.min(data.len());
            let mut fast = data.clone();
            let mut slow = data.clone();
            apply_mask(&mut fast[start..], key, phase);
            apply_mask_bytewise(&mut slow[start..], key, phase);
            prop_assert_eq!(fast, slow);
        }
    }
}
