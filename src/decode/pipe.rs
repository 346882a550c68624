//! `--json` on two threads: the decoder hands each WebSocket frame over as an owned record (its
//! bytes copied into a per-batch arena, the Engine.IO / Socket.IO parse results kept as ranges of
//! them, nothing parsed again), and an output thread renders the JSON lines and writes them.
//!
//! The output thread renders with the same code as the one-thread path ([`JsonLines`]), over
//! events rebuilt from the records, so the bytes are the same. Events other than frames (and
//! any frame that cannot be recorded) are rendered on the decoding thread and travel as
//! pre-rendered text, in order. Batches go round between the threads through bounded channels
//! and are reused, so memory stays bounded: at most [`BATCHES`] batches of about [`BATCH_BYTES`]
//! bytes (plus the one event that overflows a batch) exist at any time.

use std::io::{self, Write};
use std::ops::Range;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::proto::engineio::{Handshake, PacketRef as EioRef};
use crate::proto::socketio::{PacketRef as SioRef, PacketSpans};
use crate::wire::ws::{FrameHeader, Role};

use super::capture::{LinkType, Packet, Timestamp};
use super::decoder::Ctx;
use super::event::{Anomaly, Event, WsFrame, WsMessage};
use super::render::{JSON_BLOCK, JsonLines};
use super::sio::{Completed, EioPacket, Mode, SioPacket};
use super::tcp::{Endpoint, Flags};

/// Batches in existence (filled, in flight, or being rendered).
const BATCHES: usize = 4;
/// A batch is handed over when its arenas hold this many bytes...
const BATCH_BYTES: usize = 256 << 10;
/// ... or when it holds this many items.
const BATCH_ITEMS: usize = 1024;

/// Where bytes were copied: the text arena (valid UTF-8) or the byte arena.
#[derive(Debug, Clone, Copy)]
enum Loc {
    Text(usize, usize),
    Bytes(usize, usize),
}

/// A range relative to the start of a message's data.
type Span = (usize, usize);

/// An Engine.IO packet, with its text as ranges of the message data.
#[derive(Debug)]
enum EioKind {
    Open(Handshake),
    Close,
    Ping(Span),
    Pong(Span),
    Message(Span),
    Binary(Span),
    BinaryOwned(Vec<u8>),
    Upgrade,
    Noop,
}

#[derive(Debug)]
struct SioRecord {
    packet: Option<PacketSpans>,
    note: String,
    error: Option<String>,
    attachment: Option<(usize, usize)>,
    completed: Option<Box<Completed>>,
}

#[derive(Debug)]
struct EioRecord {
    packet: Option<EioKind>,
    raw: Span,
    error: Option<String>,
    sio: Option<SioRecord>,
    /// The Socket.IO packet is parsed here ([`EioPacket::deferred`]).
    deferred: Option<Mode>,
}

#[derive(Debug)]
struct MsgRecord {
    binary: bool,
    frames: u32,
    compressed: bool,
    wire_len: usize,
    data: Loc,
    text: bool,
    engineio: Option<EioRecord>,
}

/// Where and when a frame was seen: the part of the decoder's [`Ctx`] a JSON line shows.
#[derive(Debug, Clone, Copy)]
struct Origin {
    rel_ns: i64,
    stream: Option<u64>,
    src: Option<Endpoint>,
    dst: Option<Endpoint>,
    from_client: Option<bool>,
}

impl Origin {
    fn of(ctx: &Ctx<'_>) -> Origin {
        Origin {
            rel_ns: ctx.rel_ns,
            stream: ctx.stream,
            src: ctx.src,
            dst: ctx.dst,
            from_client: ctx.from_client,
        }
    }

    /// The context to render a line in, for `packet` (see [`packet_stub`]).
    fn ctx<'a>(&self, packet: Option<&'a Packet<'a>>) -> Ctx<'a> {
        Ctx {
            packet,
            net: None,
            rel_time: self.rel_ns as f64 / 1e9,
            rel_ns: self.rel_ns,
            stream: self.stream,
            src: self.src,
            dst: self.dst,
            seg: None,
            flags: Flags::default(),
            from_client: self.from_client,
            skip: None,
        }
    }
}

/// A packet carrying only what a JSON line shows of it: its number and time.
fn packet_stub(number: u64, ts: Timestamp) -> Packet<'static> {
    Packet {
        number,
        ts,
        linktype: LinkType::NULL,
        data: &[],
        orig_len: 0,
        file_offset: 0,
    }
}

/// A WebSocket frame event, owned: what the JSON view shows of it and of its packet.
#[derive(Debug)]
struct WsRecord {
    packet: Option<(u64, Timestamp)>,
    origin: Origin,
    header: FrameHeader,
    sender: Role,
    index: u32,
    fragment_no: Option<u32>,
    payload_skipped: bool,
    payload: Loc,
    close: Option<(Option<u16>, String)>,
    anomalies: Vec<Anomaly>,
    message: Option<MsgRecord>,
}

/// The common frame, compactly: a whole, uncompressed text message holding one Engine.IO
/// message with a Socket.IO packet, nothing flagged.
#[derive(Debug)]
struct ChatRecord {
    number: u64,
    ts: Timestamp,
    origin: Origin,
    header: FrameHeader,
    sender: Role,
    index: u32,
    /// The message text, in the text arena.
    text: (usize, usize),
    /// The Engine.IO message's text, relative to `text`.
    message: (u32, u32),
    sio: ChatSio,
}

/// The Socket.IO packet of a [`ChatRecord`].
#[derive(Debug)]
enum ChatSio {
    /// Parsed by the decoder.
    Parsed(PacketSpans),
    /// Left to the output thread ([`EioPacket::deferred`]).
    Deferred(Mode),
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // kept inline: the item vectors are reused, never moved
enum Item {
    /// Pre-rendered JSON lines in the byte arena.
    Raw(Range<usize>),
    Chat(ChatRecord),
    /// Any other frame.
    Ws(Box<WsRecord>),
}

/// Items and the arenas their bytes are in.
#[derive(Debug, Default)]
struct Batch {
    text: String,
    bytes: Vec<u8>,
    items: Vec<Item>,
    /// Write out (and flush) everything once this batch is rendered.
    flush: bool,
}

impl Batch {
    fn clear(&mut self) {
        self.text.clear();
        self.bytes.clear();
        self.items.clear();
        self.flush = false;
    }

    fn full(&self) -> bool {
        self.items.len() >= BATCH_ITEMS || self.text.len() + self.bytes.len() >= BATCH_BYTES
    }

    fn slice(&self, loc: Loc) -> Option<&[u8]> {
        match loc {
            Loc::Text(a, b) => self.text.as_bytes().get(a..b),
            Loc::Bytes(a, b) => self.bytes.get(a..b),
        }
    }

    /// Copies `data` (kept as text when it is `text`), unless it is the bytes at `same`.
    fn put(&mut self, data: &[u8], text: Option<&str>, same: Option<(&[u8], Loc)>) -> Loc {
        if let Some((s, loc)) = same {
            if s.as_ptr() == data.as_ptr() && s.len() == data.len() {
                return loc;
            }
        }
        match text {
            Some(t) => {
                let a = self.text.len();
                self.text.push_str(t);
                Loc::Text(a, self.text.len())
            }
            None => {
                let a = self.bytes.len();
                self.bytes.extend_from_slice(data);
                Loc::Bytes(a, self.bytes.len())
            }
        }
    }

    /// Records a frame of the common kind (`None`: not one). `parse`: parse a deferred
    /// Socket.IO packet here (a valid one; an invalid one is left to the output thread).
    fn chat(&mut self, ctx: &Ctx<'_>, f: &WsFrame<'_>, parse: bool) -> Option<ChatRecord> {
        let m = f.message.as_ref()?;
        let text = m.text?;
        let p = m.engineio.as_ref()?;
        let Some(EioRef::Message(eio)) = &p.packet else {
            return None;
        };
        let sio = match (p.deferred, &p.sio) {
            (Some(_), None) if parse => ChatSio::Parsed(SioRef::parse(eio).ok()?.spans(text)?),
            (Some(mode), None) => ChatSio::Deferred(mode),
            (None, Some(sio))
                if sio.note.is_empty()
                    && sio.error.is_none()
                    && sio.attachment.is_none()
                    && sio.completed.is_none() =>
            {
                ChatSio::Parsed(sio.packet.as_ref()?.spans(text)?)
            }
            _ => return None,
        };
        let common = m.frames == 1
            && !m.compressed
            && !f.payload_skipped
            && f.anomalies.is_empty()
            && f.close.is_none()
            && f.fragment_no.is_none()
            && std::ptr::eq(f.payload, m.data)
            && std::ptr::eq(p.raw, text)
            && p.error.is_none();
        if !common {
            return None;
        }
        let (a, b) = span_in(text.as_bytes(), eio.as_bytes())?;
        let message = (u32::try_from(a).ok()?, u32::try_from(b).ok()?);
        let packet = ctx.packet?;
        let start = self.text.len();
        self.text.push_str(text);
        Some(ChatRecord {
            number: packet.number,
            ts: packet.ts,
            origin: Origin::of(ctx),
            header: f.header,
            sender: f.sender,
            index: f.index_in_packet,
            text: (start, self.text.len()),
            message,
            sio,
        })
    }

    /// Records a frame event (`None`: something in it cannot be recorded).
    fn record(&mut self, ctx: &Ctx<'_>, f: &WsFrame<'_>) -> Option<WsRecord> {
        let message = match &f.message {
            None => None,
            Some(m) => {
                let data = self.put(m.data, m.text, None);
                let engineio = match &m.engineio {
                    None => None,
                    Some(p) => Some(eio_record(p, m.data, m.text)?),
                };
                Some((m, data, engineio))
            }
        };
        let same = message.as_ref().map(|(m, loc, _)| (m.data, *loc));
        let payload = self.put(f.payload, None, same);
        Some(WsRecord {
            packet: ctx.packet.map(|p| (p.number, p.ts)),
            origin: Origin::of(ctx),
            header: f.header,
            sender: f.sender,
            index: f.index_in_packet,
            fragment_no: f.fragment_no,
            payload_skipped: f.payload_skipped,
            payload,
            close: f.close.clone(),
            anomalies: f.anomalies.clone(),
            message: message.map(|(m, data, engineio)| MsgRecord {
                binary: m.binary,
                frames: m.frames,
                compressed: m.compressed,
                wire_len: m.wire_len,
                data,
                text: m.text.is_some(),
                engineio,
            }),
        })
    }
}

/// The range of `part` inside `base` (an empty part may be anywhere).
fn span_in(base: &[u8], part: &[u8]) -> Option<Span> {
    if part.is_empty() {
        return Some((0, 0));
    }
    let start = (part.as_ptr() as usize).checked_sub(base.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= base.len()).then_some((start, end))
}

fn eio_record(p: &EioPacket<'_>, data: &[u8], text: Option<&str>) -> Option<EioRecord> {
    let s = |t: &str| span_in(data, t.as_bytes());
    let packet = match &p.packet {
        None => None,
        Some(EioRef::Open(h)) => Some(EioKind::Open(h.clone())),
        Some(EioRef::Close) => Some(EioKind::Close),
        Some(EioRef::Ping(t)) => Some(EioKind::Ping(s(t)?)),
        Some(EioRef::Pong(t)) => Some(EioKind::Pong(s(t)?)),
        Some(EioRef::Message(t)) => Some(EioKind::Message(s(t)?)),
        Some(EioRef::Binary(std::borrow::Cow::Borrowed(b))) => {
            Some(EioKind::Binary(span_in(data, b)?))
        }
        Some(EioRef::Binary(std::borrow::Cow::Owned(b))) => Some(EioKind::BinaryOwned(b.clone())),
        Some(EioRef::Upgrade) => Some(EioKind::Upgrade),
        Some(EioRef::Noop) => Some(EioKind::Noop),
    };
    let sio = match &p.sio {
        None => None,
        Some(sp) => Some(SioRecord {
            packet: match &sp.packet {
                None => None,
                // Socket.IO packets are parsed from the message text.
                Some(r) => Some(r.spans(text?)?),
            },
            note: sp.note.clone(),
            error: sp.error.clone(),
            attachment: sp.attachment,
            completed: sp.completed.clone(),
        }),
    };
    Some(EioRecord {
        packet,
        raw: s(p.raw)?,
        error: p.error.clone(),
        sio,
        deferred: p.deferred,
    })
}

/// The decoding thread's end of the pipeline.
pub struct Pipe {
    batch: Batch,
    full: Option<SyncSender<Batch>>,
    empty: Receiver<Batch>,
    thread: Option<JoinHandle<io::Result<Finished>>>,
    /// The output thread is behind: parse deferred packets here ([`Batch::chat`]), which
    /// shares the work out between the threads (the output is the same either way).
    help: bool,
}

/// What the output thread gives back: the output, and the anomalies it found in the packets it
/// parsed ([`EioPacket::deferred`]), for `--strict`.
pub struct Finished {
    pub out: Box<dyn Write + Send>,
    pub anomalies: u64,
}

impl Pipe {
    /// Starts the output thread, which writes to `out`.
    pub fn spawn(out: Box<dyn Write + Send>) -> io::Result<Pipe> {
        let (full_tx, full_rx) = sync_channel::<Batch>(BATCHES);
        let (empty_tx, empty_rx) = sync_channel::<Batch>(BATCHES);
        for _ in 1..BATCHES {
            let _ = empty_tx.send(Batch::default());
        }
        let thread = std::thread::Builder::new()
            .name("json-output".into())
            .spawn(move || output(out, &full_rx, &empty_tx))?;
        Ok(Pipe {
            batch: Batch::default(),
            full: Some(full_tx),
            empty: empty_rx,
            thread: Some(thread),
            help: false,
        })
    }

    /// Hands a frame over; `false` when it cannot be recorded (render it here instead).
    pub fn ws(&mut self, ctx: &Ctx<'_>, f: &WsFrame<'_>) -> io::Result<bool> {
        let (text, bytes) = (self.batch.text.len(), self.batch.bytes.len());
        if let Some(r) = self.batch.chat(ctx, f, self.help) {
            self.batch.items.push(Item::Chat(r));
            if self.batch.full() {
                self.send(false)?;
            }
            return Ok(true);
        }
        match self.batch.record(ctx, f) {
            Some(r) => self.batch.items.push(Item::Ws(Box::new(r))),
            None => {
                self.batch.text.truncate(text);
                self.batch.bytes.truncate(bytes);
                return Ok(false);
            }
        }
        if self.batch.full() {
            self.send(false)?;
        }
        Ok(true)
    }

    /// Hands over JSON lines rendered here.
    pub fn raw(&mut self, lines: &[u8]) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let a = self.batch.bytes.len();
        self.batch.bytes.extend_from_slice(lines);
        self.batch.items.push(Item::Raw(a..self.batch.bytes.len()));
        if self.batch.full() {
            self.send(false)?;
        }
        Ok(())
    }

    /// Hands over what is pending and has the output thread write it out and flush.
    pub fn flush(&mut self) -> io::Result<()> {
        self.send(true)
    }

    fn send(&mut self, flush: bool) -> io::Result<()> {
        // No empty batch waiting: the output thread is the slower one, so help it with the
        // next batch; otherwise leave it the work.
        let next = match self.empty.try_recv() {
            Ok(b) => {
                self.help = false;
                b
            }
            Err(_) => {
                self.help = true;
                match self.empty.recv() {
                    Ok(b) => b,
                    // The output thread ended: it failed (its error is returned by `finish`).
                    Err(_) => return Err(self.failed()),
                }
            }
        };
        let mut batch = std::mem::replace(&mut self.batch, next);
        batch.flush = flush;
        let sent = self.full.as_ref().is_some_and(|tx| tx.send(batch).is_ok());
        if sent { Ok(()) } else { Err(self.failed()) }
    }

    /// The output thread's error, once it has stopped.
    fn failed(&mut self) -> io::Error {
        match self.join() {
            Err(e) => e,
            Ok(_) => io::Error::other("the JSON output thread stopped"),
        }
    }

    fn join(&mut self) -> io::Result<Finished> {
        self.full = None;
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the JSON output thread panicked"))),
            None => Err(io::Error::other("the JSON output thread already ended")),
        }
    }

    /// Hands over the rest, waits until everything is written, and returns the output.
    pub fn finish(mut self) -> io::Result<Finished> {
        self.send(true)?;
        self.join()
    }
}

/// The output thread: renders and writes batches until the decoding thread hangs up.
fn output(
    mut out: Box<dyn Write + Send>,
    full: &Receiver<Batch>,
    empty: &SyncSender<Batch>,
) -> io::Result<Finished> {
    let mut lines = JsonLines::default();
    let mut anomalies = 0u64;
    while let Ok(mut batch) = full.recv() {
        for item in &batch.items {
            match item {
                Item::Raw(r) => {
                    if let Some(b) = batch.bytes.get(r.clone()) {
                        lines.json.extend_from_slice(b);
                    }
                }
                Item::Chat(rec) => anomalies += render_chat(&mut lines, &batch, rec),
                Item::Ws(rec) => anomalies += render(&mut lines, &batch, rec),
            }
            if lines.json.len() >= JSON_BLOCK {
                out.write_all(&lines.json)?;
                lines.json.clear();
            }
        }
        if batch.flush {
            out.write_all(&lines.json)?;
            lines.json.clear();
            out.flush()?;
        }
        batch.clear();
        // The decoding thread may have finished: then the batch is simply dropped.
        let _ = empty.send(batch);
    }
    out.write_all(&lines.json)?;
    out.flush()?;
    Ok(Finished { out, anomalies })
}

/// Renders one common frame, rebuilt as the event the decoder emitted; returns the number of
/// anomalies found in parsing its Socket.IO packet here.
fn render_chat(lines: &mut JsonLines, batch: &Batch, rec: &ChatRecord) -> u64 {
    let packet = packet_stub(rec.number, rec.ts);
    let ctx = rec.origin.ctx(Some(&packet));
    let text = batch.text.get(rec.text.0..rec.text.1).unwrap_or_default();
    let (a, b) = rec.message;
    let message = EioRef::Message(text.get(a as usize..b as usize).unwrap_or_default());
    let mut anomalies = Vec::new();
    let engineio = match &rec.sio {
        ChatSio::Parsed(spans) => Some(EioPacket {
            packet: Some(message),
            raw: text,
            error: None,
            sio: Some(SioPacket::parsed(spans.resolve(text))),
            deferred: None,
        }),
        ChatSio::Deferred(mode) => EioPacket {
            packet: Some(message),
            raw: text,
            error: None,
            sio: None,
            deferred: Some(*mode),
        }
        .resolve(&mut anomalies),
    };
    let found = anomalies.len() as u64;
    let frame = WsFrame {
        header: rec.header,
        sender: rec.sender,
        raw: &[],
        payload: text.as_bytes(),
        index_in_packet: rec.index,
        close: None,
        fragment_no: None,
        message: Some(WsMessage {
            binary: false,
            frames: 1,
            compressed: false,
            wire_len: text.len(),
            data: text.as_bytes(),
            text: Some(text),
            engineio,
            parts: Vec::new(),
        }),
        payload_skipped: false,
        anomalies,
    };
    lines.line(&ctx, &Event::Ws(&frame));
    found
}

/// Renders one recorded frame, rebuilt as the event the decoder emitted; returns the number of
/// anomalies found in parsing its Socket.IO packet here.
fn render(lines: &mut JsonLines, batch: &Batch, rec: &WsRecord) -> u64 {
    let packet = rec.packet.map(|(number, ts)| packet_stub(number, ts));
    let ctx = rec.origin.ctx(packet.as_ref());
    let mut anomalies = rec.anomalies.clone();
    let message = rec.message.as_ref().map(|m| {
        let data = batch.slice(m.data).unwrap_or_default();
        let text = match (m.text, m.data) {
            (true, Loc::Text(a, b)) => batch.text.get(a..b),
            _ => None,
        };
        let engineio = m
            .engineio
            .as_ref()
            .and_then(|e| eio_packet(e, data, text).resolve(&mut anomalies));
        WsMessage {
            binary: m.binary,
            frames: m.frames,
            compressed: m.compressed,
            wire_len: m.wire_len,
            data,
            text,
            engineio,
            parts: Vec::new(),
        }
    });
    let frame = WsFrame {
        header: rec.header,
        sender: rec.sender,
        raw: &[],
        payload: batch.slice(rec.payload).unwrap_or_default(),
        index_in_packet: rec.index,
        close: rec.close.clone(),
        fragment_no: rec.fragment_no,
        message,
        payload_skipped: rec.payload_skipped,
        anomalies,
    };
    lines.line(&ctx, &Event::Ws(&frame));
    frame.anomalies.len().saturating_sub(rec.anomalies.len()) as u64
}

fn eio_packet<'a>(e: &'a EioRecord, data: &'a [u8], text: Option<&'a str>) -> EioPacket<'a> {
    let t = |(a, b): Span| text.and_then(|t| t.get(a..b)).unwrap_or_default();
    let packet = e.packet.as_ref().map(|k| match k {
        EioKind::Open(h) => EioRef::Open(h.clone()),
        EioKind::Close => EioRef::Close,
        EioKind::Ping(s) => EioRef::Ping(t(*s)),
        EioKind::Pong(s) => EioRef::Pong(t(*s)),
        EioKind::Message(s) => EioRef::Message(t(*s)),
        EioKind::Binary((a, b)) => EioRef::parse_binary(data.get(*a..*b).unwrap_or_default()),
        EioKind::BinaryOwned(v) => EioRef::Binary(std::borrow::Cow::Borrowed(v)),
        EioKind::Upgrade => EioRef::Upgrade,
        EioKind::Noop => EioRef::Noop,
    });
    let sio = e.sio.as_ref().map(|s| SioPacket {
        packet: s
            .packet
            .as_ref()
            .and_then(|p| text.and_then(|t| p.resolve(t))),
        note: s.note.clone(),
        error: s.error.clone(),
        attachment: s.attachment,
        completed: s.completed.clone(),
    });
    EioPacket {
        packet,
        raw: t(e.raw),
        error: e.error.clone(),
        sio,
        deferred: e.deferred,
    }
}

/// A frame whose Socket.IO packet was deferred, with the packet parsed (for a frame the output
/// thread cannot take: it is rendered on the decoding thread), and the number of anomalies that
/// found; `None` when nothing in the frame is deferred.
pub(super) fn resolved<'a>(f: &WsFrame<'a>) -> Option<(WsFrame<'a>, u64)> {
    f.message.as_ref()?.engineio.as_ref()?.deferred?;
    let mut frame = f.clone();
    if let Some(m) = frame.message.as_mut() {
        m.engineio = m
            .engineio
            .take()
            .and_then(|p| p.resolve(&mut frame.anomalies));
    }
    let found = frame.anomalies.len().saturating_sub(f.anomalies.len()) as u64;
    Some((frame, found))
}
