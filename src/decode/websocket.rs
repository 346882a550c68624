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
                        let code = payload.first_chunk::<2>().map(|b| u16::from_be_bytes(*b));
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
                None
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::sio::Mode;
    use crate::wire::deflate::Deflater;
    use crate::wire::ws::{encode_frame, encode_frame_rsv};

    /// What a test keeps of each frame: opcode, FIN, message text (if complete), anomaly codes.
    type Seen = (u8, bool, Option<String>, Vec<&'static str>);

    fn feed_all(dir: &mut WsDir, chunks: &[&[u8]]) -> Vec<Seen> {
        let mut out = Vec::new();
        for c in chunks {
            dir.feed(c, 1, &mut |f: &WsFrame<'_>| {
                let text = f.message.as_ref().map(|m| match m.text {
                    Some(t) => t.to_string(),
                    None => format!("<{} bytes>", m.data.len()),
                });
                out.push((
                    f.header.opcode.as_u8(),
                    f.header.fin,
                    text,
                    f.anomalies.iter().map(|a| a.code).collect(),
                ));
            });
        }
        out
    }

    fn client(inflater: Option<Inflater>) -> WsDir {
        WsDir::new(Role::Client, inflater, SioDir::new(Mode::No))
    }

    const KEY: Option<[u8; 4]> = Some([1, 2, 3, 4]);

    #[test]
    fn frames_split_at_any_byte_decode_the_same() {
        let mut wire = Vec::new();
        encode_frame(&mut wire, true, Opcode::Text, KEY, b"hello");
        encode_frame(&mut wire, true, Opcode::Binary, KEY, &[0u8; 300]);
        let whole = feed_all(&mut client(None), &[&wire]);
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0].2.as_deref(), Some("hello"));
        for split in 1..wire.len() {
            let parts = feed_all(&mut client(None), &[&wire[..split], &wire[split..]]);
            assert_eq!(parts, whole, "split at {split}");
        }
    }

    #[test]
    fn fragments_are_reassembled_around_a_control_frame() {
        let mut wire = Vec::new();
        encode_frame(&mut wire, false, Opcode::Text, KEY, b"Ol\xc3");
        encode_frame(&mut wire, true, Opcode::Ping, KEY, b"p");
        encode_frame(&mut wire, true, Opcode::Continuation, KEY, b"\xa1!");
        let seen = feed_all(&mut client(None), &[&wire]);
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].2, None);
        assert_eq!(
            seen[2].2.as_deref(),
            Some("Olá!"),
            "UTF-8 split across fragments is fine"
        );
        assert!(seen.iter().all(|s| s.3.is_empty()), "{seen:?}");
    }

    #[test]
    fn permessage_deflate_keeps_the_window_and_handles_fragments() {
        let mut deflater = Deflater::new(15, true).unwrap();
        let mut wire = Vec::new();
        for text in [
            "42[\"send_message\",{\"message\":\"one\"}]",
            "42[\"send_message\",{\"message\":\"two\"}]",
        ] {
            let c = deflater.deflate_message(text.as_bytes()).unwrap();
            encode_frame_rsv(&mut wire, true, Rsv::RSV1, Opcode::Text, KEY, &c);
        }
        // A compressed message in three fragments: RSV1 on the first only (RFC 7692 §6.1).
        let c = deflater
            .deflate_message(b"fragmented and compressed")
            .unwrap();
        let (a, rest) = c.split_at(c.len() / 3);
        let (b, d) = rest.split_at(rest.len() / 2);
        encode_frame_rsv(&mut wire, false, Rsv::RSV1, Opcode::Text, KEY, a);
        encode_frame(&mut wire, false, Opcode::Continuation, KEY, b);
        encode_frame(&mut wire, true, Opcode::Continuation, KEY, d);
        let mut dir = client(Some(Inflater::new(15, true).unwrap()));
        let seen = feed_all(&mut dir, &[&wire]);
        let texts: Vec<_> = seen.iter().filter_map(|s| s.2.clone()).collect();
        assert_eq!(
            texts,
            [
                "42[\"send_message\",{\"message\":\"one\"}]",
                "42[\"send_message\",{\"message\":\"two\"}]",
                "fragmented and compressed"
            ]
        );
        assert!(seen.iter().all(|s| s.3.is_empty()), "{seen:?}");
    }

    #[test]
    fn rules_are_checked_per_frame() {
        let mut wire = Vec::new();
        encode_frame(&mut wire, true, Opcode::Text, None, b"unmasked");
        encode_frame_rsv(&mut wire, true, Rsv::RSV2, Opcode::Text, KEY, b"rsv");
        encode_frame(&mut wire, true, Opcode::Text, KEY, b"\xff");
        encode_frame(&mut wire, true, Opcode::Continuation, KEY, b"x");
        encode_frame(&mut wire, true, Opcode::Close, KEY, &[0x03]);
        let seen = feed_all(&mut client(None), &[&wire]);
        let codes: Vec<_> = seen.iter().map(|s| s.3.clone()).collect();
        assert_eq!(
            codes,
            [
                vec!["unmasked_client_frame"],
                vec!["reserved_bits"],
                vec!["invalid_utf8"],
                vec!["unexpected_continuation"],
                vec!["invalid_close"]
            ]
        );
    }

    #[test]
    fn after_a_gap_or_a_malformed_header_decoding_resumes_at_a_frame() {
        let mut good = Vec::new();
        encode_frame(&mut good, true, Opcode::Text, KEY, b"back");
        let mut dir = client(None);
        dir.gap();
        // Middle of some frame: not a plausible start; dropped.
        let seen = feed_all(&mut dir, &[b"\x00\x00\x00garbage", &good]);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].2.as_deref(), Some("back"));
        assert_eq!(dir.resync_dropped, 10);
        let bad: &[u8] = b"\x81\xff\x80\x00\x00\x00\x00\x00\x00\x05";
        let seen = feed_all(&mut dir, &[bad, &good]);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].3, ["malformed_frame"]);
        assert_eq!(seen[1].2.as_deref(), Some("back"));
    }

    #[test]
    fn an_unfinished_frame_is_reported() {
        let mut wire = Vec::new();
        encode_frame(&mut wire, true, Opcode::Text, KEY, &[b'a'; 200]);
        let mut dir = client(None);
        assert!(feed_all(&mut dir, &[&wire[..100]]).is_empty());
        assert_eq!(
            dir.unfinished().as_deref(),
            Some("capture ends inside a WebSocket frame (100 bytes of 208 present)")
        );
    }
}
