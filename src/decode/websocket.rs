//! WebSocket frames in one direction of a reassembled TCP stream: frame boundaries, unmasking,
//! fragmented messages, permessage-deflate with context takeover, close frames, UTF-8 checks and
//! resynchronisation after a gap. Frame parsing itself is the shared core's (`wire::ws`).

use crate::wire::deflate::Inflater;
use crate::wire::ws::{CloseFrame, Frame, FrameHeader, Opcode, Role, Rsv, Violation};

use super::event::{Anomaly, WsFrame, WsMessage};
use super::sio::SioDir;

/// Largest frame payload buffered for decoding; larger frames are listed with their length only.
pub const MAX_FRAME: u64 = 16 << 20;
/// Largest reassembled or inflated message.
pub const MAX_MESSAGE: usize = 64 << 20;

/// A message being reassembled from fragments (RFC 6455 §5.4).
#[derive(Debug)]
struct Fragments {
    binary: bool,
    compressed: bool,
    frames: u32,
    data: Vec<u8>,
    overflow: bool,
    /// Packet number and payload length of each fragment.
    parts: Vec<(u64, usize)>,
}

/// Decoder state for the frames one endpoint sends.
#[derive(Debug)]
pub struct WsDir {
    sender: Role,
    /// Bytes of an incomplete frame.
    buf: Vec<u8>,
    /// Payload bytes of an oversized frame still to pass over.
    skip: u64,
    frag: Option<Fragments>,
    inflater: Option<Inflater>,
    rsv_allowed: Rsv,
    /// After a gap: look for a plausible frame header at the start of each segment.
    resync: bool,
    /// A Close frame was sent: anything after it is an anomaly (RFC 6455 §5.5.1).
    closed: bool,
    scratch: Vec<u8>,
    inflated: Vec<u8>,
    /// Engine.IO / Socket.IO state of this direction.
    pub sio: SioDir,
    /// Frames and messages decoded.
    pub frames: u64,
    pub resync_dropped: u64,
    /// Number of the packet being decoded.
    packet: u64,
}

/// Why a frame could not be read: the bytes are shown as malformed and skipped.
fn violation_anomaly(v: Violation) -> Anomaly {
    Anomaly::new(v.code(), format!("{v} ({})", v.rfc()))
}

impl WsDir {
    pub fn new(sender: Role, inflater: Option<Inflater>, sio: SioDir) -> Self {
        let rsv_allowed = if inflater.is_some() {
            Rsv::RSV1
        } else {
            Rsv::NONE
        };
        WsDir {
            sender,
            buf: Vec::new(),
            skip: 0,
            frag: None,
            inflater,
            rsv_allowed,
            resync: false,
            closed: false,
            scratch: Vec::new(),
            inflated: Vec::new(),
            sio,
            frames: 0,
            resync_dropped: 0,
            packet: 0,
        }
    }

    pub fn sender(&self) -> Role {
        self.sender
    }

    /// Bytes buffered waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// A fragmented message is waiting for its last fragment.
    pub fn in_message(&self) -> bool {
        self.frag.is_some()
    }

    /// Bytes are missing from the stream: drop partial state and look for the next frame.
    pub fn gap(&mut self) {
        self.buf.clear();
        self.skip = 0;
        self.frag = None;
        self.resync = true;
        if let Some(inf) = self.inflater.as_mut() {
            // The shared window is gone with the missing bytes.
            if inf.context_takeover() {
                inf.reset();
            }
        }
    }

    /// Feed in-order stream bytes; every complete frame goes to `emit`.
    pub fn feed<F>(&mut self, mut data: &[u8], packet: u64, emit: &mut F)
    where
        F: FnMut(&WsFrame<'_>),
    {
        if self.skip > 0 {
            let n = (self.skip.min(data.len() as u64)) as usize;
            self.skip -= n as u64;
            data = data.get(n..).unwrap_or_default();
        }
        if data.is_empty() {
            return;
        }
        if self.resync {
            if !self.plausible_start(data) {
                self.resync_dropped += data.len() as u64;
                return;
            }
            self.resync = false;
        }
        self.packet = packet;
        let mut index = 0u32;
        if self.buf.is_empty() {
            let used = self.frames_in(data, &mut index, emit);
            if let Some(rest) = data.get(used..) {
                self.keep(rest);
            }
        } else {
            self.buf.extend_from_slice(data);
            let buf = std::mem::take(&mut self.buf);
            let used = self.frames_in(&buf, &mut index, emit);
            let mut buf = buf;
            buf.drain(..used.min(buf.len()));
            // A skip started inside the buffer swallows the rest of it.
            self.buf = buf;
            if self.skip > 0 {
                let n = (self.skip.min(self.buf.len() as u64)) as usize;
                self.skip -= n as u64;
                self.buf.drain(..n);
            }
        }
    }

    fn keep(&mut self, rest: &[u8]) {
        if self.skip > 0 {
            let n = (self.skip.min(rest.len() as u64)) as usize;
            self.skip -= n as u64;
            self.buf
                .extend_from_slice(rest.get(n..).unwrap_or_default());
        } else {
            self.buf.extend_from_slice(rest);
        }
    }

    /// Whether `data` can start with a frame of this direction (used to resynchronise).
    fn plausible_start(&self, data: &[u8]) -> bool {
        match FrameHeader::parse(data) {
            Ok(Some(h)) => {
                let v = h.violations_from(self.rsv_allowed, self.sender);
                !v.contains(Violation::ReservedOpcode)
                    && !v.contains(Violation::ReservedBits)
                    && !v.contains(Violation::ControlFrameTooLong)
                    && !v.contains(Violation::UnmaskedClientFrame)
                    && !v.contains(Violation::MaskedServerFrame)
                    && !v.contains(Violation::NonMinimalLength)
                    && h.opcode != Opcode::Continuation
                    && h.frame_len()
                        .is_some_and(|n| n <= data.len() as u64 || n <= MAX_FRAME)
            }
            _ => false,
        }
    }

    /// Decode the frames at the start of `input`; returns the bytes used.
    fn frames_in<F>(&mut self, input: &[u8], index: &mut u32, emit: &mut F) -> usize
    where
        F: FnMut(&WsFrame<'_>),
    {
        let mut pos = 0usize;
        while pos < input.len() {
            let rest = input.get(pos..).unwrap_or_default();
            let header = match FrameHeader::parse(rest) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    // Bytes that cannot be a frame header: show them and look for the next frame.
                    self.malformed(rest, &e.to_string(), index, emit);
                    self.resync = true;
                    return input.len();
                }
            };
            if header.payload_len > MAX_FRAME {
                let hl = header.header_len.min(rest.len());
                let available = (rest.len() - hl) as u64;
                self.emit_skipped(header, rest.get(..hl).unwrap_or_default(), index, emit);
                let take = available.min(header.payload_len);
                self.skip = header.payload_len - take;
                pos += hl + take as usize;
                continue;
            }
            match Frame::parse(rest) {
                Ok(Some((frame, used))) => {
                    let raw = rest.get(..used).unwrap_or_default();
                    self.frame(frame, raw, *index, emit);
                    *index += 1;
                    pos += used;
                }
                Ok(None) => break,
                Err(e) => {
                    self.malformed(rest, &e.to_string(), index, emit);
                    self.resync = true;
                    return input.len();
                }
            }
        }
        pos
    }

    fn malformed<F: FnMut(&WsFrame<'_>)>(
        &mut self,
        rest: &[u8],
        why: &str,
        index: &mut u32,
        emit: &mut F,
    ) {
        let header = FrameHeader::new(
            false,
            Opcode::from_u8(rest.first().copied().unwrap_or(0)),
            None,
            0,
        );
        let ev = WsFrame {
            header,
            sender: self.sender,
            raw: rest,
            payload: &[],
            index_in_packet: *index,
            close: None,
            fragment_no: None,
            message: None,
            payload_skipped: true,
            anomalies: vec![Anomaly::new(
                "malformed_frame",
                format!("malformed WebSocket frame: {why}"),
            )],
        };
        *index += 1;
        self.frames += 1;
        emit(&ev);
    }

    fn emit_skipped<F: FnMut(&WsFrame<'_>)>(
        &mut self,
        header: FrameHeader,
        raw: &[u8],
        index: &mut u32,
        emit: &mut F,
    ) {
        let mut anomalies: Vec<Anomaly> = header
            .violations_from(self.rsv_allowed, self.sender)
            .iter()
            .map(violation_anomaly)
            .collect();
        anomalies.push(Anomaly::new(
            "frame_too_large",
            format!(
                "payload of {} bytes is larger than {MAX_FRAME}: not decoded",
                header.payload_len
            ),
        ));
        // The message it belonged to cannot be completed.
        self.frag = None;
        let ev = WsFrame {
            header,
            sender: self.sender,
            raw,
            payload: &[],
            index_in_packet: *index,
            close: None,
            fragment_no: None,
            message: None,
            payload_skipped: true,
            anomalies,
        };
        *index += 1;
        self.frames += 1;
        emit(&ev);
    }

    /// One complete frame.
    fn frame<F: FnMut(&WsFrame<'_>)>(
        &mut self,
        frame: Frame<'_>,
        raw: &[u8],
        index: u32,
        emit: &mut F,
    ) {
        let h = frame.header;
        self.frames += 1;
        let mut anomalies: Vec<Anomaly> = Vec::new();
        for v in h.violations_from(self.rsv_allowed, self.sender) {
            anomalies.push(violation_anomaly(v));
        }
        if self.closed {
            anomalies.push(Anomaly::new(
                "frame_after_close",
                "frame sent after a Close frame (RFC 6455 §5.5.1)",
            ));
        }
        // Unmask (RFC 6455 §5.3) into the scratch buffer; unmasked payloads are used in place.
        let payload: &[u8] = if h.mask.is_some() {
            self.scratch.clear();
            frame.unmask_into(&mut self.scratch);
            &self.scratch
        } else {
            frame.payload
        };

        let mut close = None;
        let mut fragment_no = None;
        // Where the completed message's bytes are: in `payload`, in the fragments, or inflated.
        enum Done {
            None,
            Single {
                binary: bool,
                compressed: bool,
            },
            Reassembled {
                binary: bool,
                compressed: bool,
                frames: u32,
            },
        }
        let mut done = Done::None;
        match h.opcode {
            Opcode::Close => {
                self.closed = true;
                match CloseFrame::parse(payload) {
                    Ok(c) => close = Some((c.code, c.reason.to_string())),
                    Err(e) => {
                        let code = payload.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
                        let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default())
                            .into_owned();
                        close = Some((code, reason));
                        anomalies.push(Anomaly::new(
                            "invalid_close",
                            format!("{e} (RFC 6455 §5.5.1, §7.4)"),
                        ));
                    }
                }
            }
            Opcode::Ping | Opcode::Pong | Opcode::Reserved(_) => {}
            Opcode::Text | Opcode::Binary => {
                let binary = h.opcode == Opcode::Binary;
                let compressed = h.rsv1 && self.inflater.is_some();
                if self.frag.take().is_some() {
                    anomalies.push(Anomaly::new(
                        "interleaved_message",
                        "new data message before the previous fragmented one ended (RFC 6455 §5.4)",
                    ));
                }
                if h.fin {
                    done = Done::Single { binary, compressed };
                } else {
                    let mut data = Vec::new();
                    data.extend_from_slice(payload);
                    let parts = vec![(self.packet, payload.len())];
                    self.frag = Some(Fragments {
                        binary,
                        compressed,
                        frames: 1,
                        data,
                        overflow: false,
                        parts,
                    });
                    fragment_no = Some(1);
                }
            }
            Opcode::Continuation => match self.frag.as_mut() {
                None => anomalies.push(Anomaly::new(
                    "unexpected_continuation",
                    "continuation frame without a message to continue (RFC 6455 §5.4)",
                )),
                Some(f) => {
                    f.frames += 1;
                    fragment_no = Some(f.frames);
                    f.parts.push((self.packet, payload.len()));
                    if f.data.len() + payload.len() > MAX_MESSAGE {
                        f.overflow = true;
                    } else {
                        f.data.extend_from_slice(payload);
                    }
                    if h.fin {
                        done = Done::Reassembled {
                            binary: f.binary,
                            compressed: f.compressed,
                            frames: f.frames,
                        };
                    }
                }
            },
        }

        // The completed message, if any.
        let frag = match done {
            Done::Reassembled { .. } => self.frag.take(),
            _ => None,
        };
        let (binary, compressed, frames, wire_data): (bool, bool, u32, &[u8]) = match (&done, &frag)
        {
            (Done::Single { binary, compressed }, _) => (*binary, *compressed, 1, payload),
            (
                Done::Reassembled {
                    binary,
                    compressed,
                    frames,
                },
                Some(f),
            ) => {
                if f.overflow {
                    anomalies.push(Anomaly::new(
                        "message_too_large",
                        format!("message over {MAX_MESSAGE} bytes"),
                    ));
                }
                (*binary, *compressed, *frames, &f.data)
            }
            _ => (false, false, 0, &[]),
        };
        let message = if matches!(done, Done::None) {
            None
        } else {
            let mut data: &[u8] = wire_data;
            let mut inflated_ok = true;
            if compressed {
                self.inflated.clear();
                if let Some(inf) = self.inflater.as_mut() {
                    // RFC 7692 §7.2.2: inflate the whole message, keeping the window per direction.
                    match inf.inflate_message_into(wire_data, MAX_MESSAGE, &mut self.inflated) {
                        Ok(()) => data = &self.inflated,
                        Err(e) => {
                            inflated_ok = false;
                            anomalies.push(Anomaly::new(
                                "inflate_failed",
                                format!("permessage-deflate: {e}"),
                            ));
                        }
                    }
                }
            }
            let mut text = None;
            if !binary && inflated_ok {
                match std::str::from_utf8(data) {
                    Ok(t) => text = Some(t),
                    Err(e) => anomalies.push(Anomaly::new(
                        "invalid_utf8",
                        format!(
                            "text message is not valid UTF-8 at byte {} (RFC 6455 §8.1)",
                            e.valid_up_to()
                        ),
                    )),
                }
            }
            let engineio = if inflated_ok {
                self.sio.ws_message(binary, data, text, &mut anomalies)
            } else {
                Vec::new()
            };
            let parts = frag.as_ref().map(|f| f.parts.clone()).unwrap_or_default();
            Some(WsMessage {
                binary,
                frames,
                compressed,
                wire_len: wire_data.len(),
                data,
                text,
                engineio,
                parts,
            })
        };
        let ev = WsFrame {
            header: h,
            sender: self.sender,
            raw,
            payload,
            index_in_packet: index,
            close,
            fragment_no,
            message,
            payload_skipped: false,
            anomalies,
        };
        emit(&ev);
    }

    /// The capture ended: describe what is left unfinished, if anything.
    pub fn unfinished(&self) -> Option<String> {
        if !self.buf.is_empty() {
            let need = FrameHeader::parse(&self.buf)
                .ok()
                .flatten()
                .and_then(|h| h.frame_len())
                .map_or(String::new(), |n| format!(" of {n}"));
            return Some(format!(
                "capture ends inside a WebSocket frame ({} bytes{need} present)",
                self.buf.len()
            ));
        }
        if self.skip > 0 {
            return Some(format!(
                "capture ends inside a large WebSocket frame ({} bytes missing)",
                self.skip
            ));
        }
        self.frag.as_ref().map(|f| {
            format!(
                "capture ends inside a fragmented message ({} fragments seen)",
                f.frames
            )
        })
    }
}
