//! Every view of `wschat decode`, in one place: the packet list (Wireshark's columns), the `-V`
//! detail tree, `-x` hex dumps, `--json` JSON Lines, the `--follow` chat transcript and the
//! `--stats` summary. Output goes through one buffered writer; colour only when asked for.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use crate::wire::ws::{FrameHeader, LengthForm, Opcode, close_code_name};

use super::capture::Timestamp;
use super::decoder::Ctx;
use super::event::{Anomaly, Event, HttpMessage, WsFrame};
use super::net::{self, Dissected, Link};
use super::sio::{self, EioPacket};
use super::stats::Stats;
use super::tcp::{Endpoint, FxHashMap};

/// Which view to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    List,
    Tree,
    Json,
    Follow,
    /// Only the `--stats` summary.
    Stats,
}

/// ANSI styles (empty strings when colour is off).
#[derive(Debug, Clone, Copy)]
struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn bad(&self, t: &str) -> String {
        self.paint("1;31", t)
    }
    fn tcp_bad(&self, t: &str) -> String {
        self.paint("30;41", t)
    }
    fn proto(&self, p: &str) -> String {
        match p {
            "WebSocket" => self.paint("36", p),
            "HTTP" => self.paint("32", p),
            _ => self.paint("2", p),
        }
    }
    fn event(&self, t: &str) -> String {
        self.paint("1", t)
    }
    fn dim(&self, t: &str) -> String {
        self.paint("2", t)
    }
}

/// One stream's transcript for `--follow`.
#[derive(Debug, Default)]
struct Transcript {
    title: String,
    lines: Vec<String>,
}

/// The renderer of one run.
pub struct Renderer {
    out: io::BufWriter<Box<dyn Write>>,
    view: View,
    hex: bool,
    style: Style,
    /// Packet whose header (tree view) or hex dump is pending.
    current: Option<u64>,
    /// Unmasked payloads to dump after the packet (`-x`).
    hex_extra: Vec<(String, Vec<u8>)>,
    follow: BTreeMap<u64, Transcript>,
    /// JSON lines waiting to be written (written in blocks of [`JSON_BLOCK`]).
    json: Vec<u8>,
    names: Names,
    /// Print a summary at the end.
    pub stats: bool,
    /// The summary as one JSON object.
    json_stats: bool,
    /// `--json` lines are rendered and written by an output thread.
    pipe: Option<super::pipe::Pipe>,
    /// Anomalies found in Socket.IO packets parsed at rendering time
    /// ([`super::sio::EioPacket::deferred`]): the decoder's counts do not include them.
    late_anomalies: u64,
}

/// A run that stops on an error still writes out the JSON lines of what it decoded before it,
/// from either thread (errors here are ignored: the run is already failing).
impl Drop for Renderer {
    fn drop(&mut self) {
        let _ = self.flush_json();
        if let Some(pipe) = self.pipe.take() {
            if let Ok(done) = pipe.finish() {
                self.out = io::BufWriter::new(done.out);
            }
        }
        let _ = self.out.flush();
    }
}

impl Renderer {
    pub fn new(
        out: Box<dyn Write>,
        view: View,
        hex: bool,
        color: bool,
        stats: bool,
        json_stats: bool,
    ) -> Self {
        Renderer {
            out: io::BufWriter::with_capacity(1 << 16, out),
            view,
            hex,
            style: Style { on: color },
            current: None,
            hex_extra: Vec::new(),
            follow: BTreeMap::new(),
            json: Vec::with_capacity(JSON_BLOCK + 4096),
            names: Names::default(),
            stats,
            json_stats,
            pipe: None,
            late_anomalies: 0,
        }
    }

    /// A `--json` renderer that renders WebSocket frames and writes all lines on a second
    /// thread ([`super::pipe`]); the output is the same.
    pub fn json_on_thread(
        out: Box<dyn Write + Send>,
        stats: bool,
        json_stats: bool,
    ) -> io::Result<Self> {
        let mut r = Renderer::new(
            Box::new(io::sink()),
            View::Json,
            false,
            false,
            stats,
            json_stats,
        );
        r.pipe = Some(super::pipe::Pipe::spawn(out)?);
        Ok(r)
    }

    pub fn view(&self) -> View {
        self.view
    }

    /// `--json` lines are rendered on an output thread.
    pub fn on_thread(&self) -> bool {
        self.pipe.is_some()
    }

    /// Anomalies found while rendering, in Socket.IO packets the decoder left unparsed
    /// ([`super::sio::EioPacket::deferred`]); complete after [`Renderer::finish`].
    pub fn late_anomalies(&self) -> u64 {
        self.late_anomalies
    }

    /// Show one event.
    pub fn event(&mut self, ctx: &Ctx<'_>, ev: &Event<'_>) -> io::Result<()> {
        match self.view {
            View::List => self.list_event(ctx, ev),
            View::Tree => self.tree_event(ctx, ev),
            View::Json => self.json_event(ctx, ev),
            View::Follow => {
                self.follow_event(ctx, ev);
                Ok(())
            }
            View::Stats => Ok(()),
        }
    }

    /// A line for a packet with nothing decoded in it (`--all`).
    pub fn packet_line(&mut self, ctx: &Ctx<'_>) -> io::Result<()> {
        match self.view {
            View::List => {
                let info = match (ctx.skip, ctx.net) {
                    (Some(skip), _) => skip_text(skip),
                    (None, Some(_)) => tcp_info(ctx, &[]),
                    _ => String::new(),
                };
                let proto = match ctx.skip {
                    Some(net::Skip::NotTcp(p)) => *p,
                    Some(_) => "Frame",
                    None => "TCP",
                };
                self.list_line(ctx, proto, &info)
            }
            View::Tree => self.tree_header(ctx),
            View::Json => {
                json_common(&mut self.json, ctx, "packet", &mut self.names);
                if let Some(skip) = ctx.skip {
                    self.json.extend_from_slice(b",\"note\":");
                    json_str(&mut self.json, &skip_text(skip));
                }
                self.json.extend_from_slice(b"}\n");
                self.json_written()
            }
            View::Follow | View::Stats => Ok(()),
        }
    }

    /// After the events of a packet: the hex dump (`-x`).
    pub fn end_packet(&mut self, ctx: &Ctx<'_>) -> io::Result<()> {
        if self.hex && matches!(self.view, View::List | View::Tree) {
            if let Some(p) = ctx.packet {
                writeln!(self.out, "Frame ({} bytes):", p.data.len())?;
                hex_dump(&mut self.out, p.data)?;
                for (title, bytes) in std::mem::take(&mut self.hex_extra) {
                    writeln!(self.out, "{title} ({} bytes):", bytes.len())?;
                    hex_dump(&mut self.out, &bytes)?;
                }
                writeln!(self.out)?;
            }
        }
        self.hex_extra.clear();
        if self.view == View::Tree && self.current.is_some() {
            self.current = None;
            writeln!(self.out)?;
        }
        Ok(())
    }

    /// A conversation ended (and was forgotten): its transcript can be written now.
    pub fn end_stream(&mut self, stream: u64) -> io::Result<()> {
        if let Some(t) = self.follow.remove(&stream) {
            self.write_transcript(t)?;
        }
        Ok(())
    }

    fn write_transcript(&mut self, t: Transcript) -> io::Result<()> {
        writeln!(self.out, "{}", t.title)?;
        for l in t.lines {
            writeln!(self.out, "{l}")?;
        }
        writeln!(self.out)
    }

    /// End of the run: transcripts, the summary, flush.
    pub fn finish(&mut self, stats: &Stats) -> io::Result<()> {
        self.flush_json()?;
        if let Some(pipe) = self.pipe.take() {
            // Every line is written: what follows goes straight to the output.
            let done = pipe.finish()?;
            self.late_anomalies += done.anomalies;
            self.out = io::BufWriter::with_capacity(1 << 16, done.out);
        }
        if self.view == View::Follow {
            let follow = std::mem::take(&mut self.follow);
            for (_, t) in follow {
                self.write_transcript(t)?;
            }
        }
        if self.stats {
            if self.json_stats {
                self.json_stats(stats)?;
            } else {
                self.text_stats(stats)?;
            }
        }
        self.out.flush()
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.flush_json()?;
        self.out.flush()
    }

    // ---- packet list -------------------------------------------------------------------

    fn list_line(&mut self, ctx: &Ctx<'_>, proto: &str, info: &str) -> io::Result<()> {
        let (no, len) = ctx.packet.map_or((0, 0), |p| (p.number, p.data.len()));
        let (src, dst) = endpoints(ctx);
        let proto = self.style.proto(proto);
        if ctx.packet.is_none() {
            let stream = ctx.stream.map_or(String::new(), |s| format!("stream {s} "));
            return writeln!(self.out, "    - {:>10} {stream}{info}", "(end)");
        }
        writeln!(
            self.out,
            "{no:>5} {:>10.6} {src:>21} → {dst:<21} {proto} {len} {info}",
            ctx.rel_time
        )
    }

    fn list_event(&mut self, ctx: &Ctx<'_>, ev: &Event<'_>) -> io::Result<()> {
        match ev {
            Event::Tcp(note) => {
                let info = tcp_info(ctx, &note.labels);
                let info = if note.labels.is_empty() {
                    info
                } else {
                    self.style.tcp_bad(&info)
                };
                self.list_line(ctx, "TCP", &info)
            }
            Event::Http(m, packets) => {
                let mut info = m.start_line.clone();
                if let Some(hs) = &m.websocket {
                    if !m.is_request {
                        match hs.accept_ok {
                            Some(true) => info.push_str("  [Sec-WebSocket-Accept verified]"),
                            Some(false) => info.push_str("  [Sec-WebSocket-Accept MISMATCH]"),
                            None => {}
                        }
                        if !hs.extensions.is_empty() {
                            let _ = write!(info, " [{}]", hs.extensions.join(", "));
                        }
                    }
                }
                if !packets.is_empty() {
                    let parts: Vec<String> = packets
                        .iter()
                        .map(|p| eio_summary(p, &self.style))
                        .collect();
                    let _ = write!(info, "  {}", parts.join(" | "));
                } else if !m.body.is_empty() {
                    match std::str::from_utf8(&m.body) {
                        Ok(t) if m.body.len() <= 64 => {
                            let _ = write!(info, "  \"{}\"", one_line(t, 64));
                        }
                        _ => {
                            let _ = write!(info, "  ({} bytes body)", m.body.len());
                        }
                    }
                }
                push_anomalies(&mut info, &m.anomalies, &self.style);
                self.list_line(ctx, "HTTP", &info)
            }
            Event::Ws(f) => {
                let info = self.ws_info(f);
                self.collect_unmasked(f);
                self.list_line(ctx, "WebSocket", &info)
            }
            Event::Gap { bytes } => {
                let info = self.style.bad(&format!(
                    "[{bytes} bytes missing from the stream (not captured)]"
                ));
                self.list_line(ctx, "TCP", &info)
            }
            Event::Data { len } => {
                let info = format!("{} Len={len}", tcp_ports(ctx));
                self.list_line(ctx, "TCP", &info)
            }
            Event::Truncated { what } => {
                let info = self.style.bad(&format!("[{what}]"));
                self.list_line(ctx, "WebSocket", &info)
            }
            Event::Note { anomaly } => {
                let info = self.style.bad(&format!("[{}]", anomaly.text));
                self.list_line(ctx, "WebSocket", &info)
            }
        }
    }

    fn collect_unmasked(&mut self, f: &WsFrame<'_>) {
        if self.hex && f.header.mask.is_some() && !f.payload_skipped {
            self.hex_extra
                .push(("Unmasked data".into(), f.payload.to_vec()));
        }
        if self.hex {
            if let Some(m) = &f.message {
                if m.compressed || m.frames > 1 {
                    let title = if m.compressed {
                        "Uncompressed entire message"
                    } else {
                        "Reassembled message"
                    };
                    self.hex_extra.push((title.into(), m.data.to_vec()));
                }
            }
        }
    }

    /// Wireshark's Info text for a frame, then what wschat adds.
    fn ws_info(&self, f: &WsFrame<'_>) -> String {
        let malformed = f.anomalies.iter().any(|a| a.code == "malformed_frame");
        let mut info = if malformed {
            "WebSocket [Malformed frame]".to_string()
        } else {
            ws_wireshark_info(&f.header)
        };
        let detail = ws_detail(f, &self.style);
        if !detail.is_empty() {
            info.push_str("  ");
            info.push_str(&detail);
        }
        push_anomalies(&mut info, &f.anomalies, &self.style);
        info
    }

    // ---- detail tree -------------------------------------------------------------------

    fn tree_header(&mut self, ctx: &Ctx<'_>) -> io::Result<()> {
        let Some(p) = ctx.packet else {
            return Ok(());
        };
        if self.current == Some(p.number) {
            return Ok(());
        }
        self.current = Some(p.number);
        let o = &mut self.out;
        let bits = |n: usize| n * 8;
        writeln!(
            o,
            "Frame {}: {} bytes on wire ({} bits), {} bytes captured ({} bits)",
            p.number,
            p.orig_len,
            bits(p.orig_len as usize),
            p.data.len(),
            bits(p.data.len())
        )?;
        writeln!(o, "    Encapsulation type: {}", p.linktype)?;
        writeln!(o, "    Arrival Time: {}", arrival_time(p.ts))?;
        writeln!(o, "    Epoch Time: {}.{:09} seconds", p.ts.secs, p.ts.nanos)?;
        writeln!(
            o,
            "    [Time since reference or first frame: {:.9} seconds]",
            ctx.rel_time
        )?;
        writeln!(o, "    Frame Number: {}", p.number)?;
        writeln!(
            o,
            "    Frame Length: {} bytes ({} bits)",
            p.orig_len,
            bits(p.orig_len as usize)
        )?;
        writeln!(
            o,
            "    Capture Length: {} bytes ({} bits)",
            p.data.len(),
            bits(p.data.len())
        )?;
        if let Some(skip) = ctx.skip {
            writeln!(o, "    [{}]", skip_text(skip))?;
        }
        let Some(d) = ctx.net else {
            return Ok(());
        };
        tree_link(o, d)?;
        tree_ip(o, d)?;
        tree_tcp(o, ctx, d)
    }

    fn tree_event(&mut self, ctx: &Ctx<'_>, ev: &Event<'_>) -> io::Result<()> {
        if ctx.packet.is_none() {
            let stream = ctx
                .stream
                .map_or(String::new(), |s| format!("stream {s}: "));
            let text = match ev {
                Event::Truncated { what } => what.clone(),
                Event::Gap { bytes } => format!("{bytes} bytes missing from the stream"),
                Event::Note { anomaly } => anomaly.text.clone(),
                _ => String::new(),
            };
            if !text.is_empty() {
                writeln!(self.out, "[Stream end] {stream}{}", self.style.bad(&text))?;
            }
            if let Event::Ws(f) = ev {
                self.tree_ws(f)?;
            }
            if let Event::Http(m, p) = ev {
                self.tree_http(m, p)?;
            }
            return Ok(());
        }
        self.tree_header(ctx)?;
        match ev {
            Event::Tcp(_) | Event::Data { .. } => Ok(()),
            Event::Http(m, packets) => self.tree_http(m, packets),
            Event::Ws(f) => {
                self.collect_unmasked(f);
                self.tree_ws(f)
            }
            Event::Gap { bytes } => {
                writeln!(
                    self.out,
                    "    {}",
                    self.style.bad(&format!(
                        "[Previous {bytes} bytes of this stream were not captured]"
                    ))
                )
            }
            Event::Truncated { what } => {
                writeln!(self.out, "    {}", self.style.bad(&format!("[{what}]")))
            }
            Event::Note { anomaly } => writeln!(
                self.out,
                "    {}",
                self.style.bad(&format!("[{}]", anomaly.text))
            ),
        }
    }

    fn tree_http(&mut self, m: &HttpMessage, packets: &[EioPacket<'_>]) -> io::Result<()> {
        let o = &mut self.out;
        writeln!(o, "Hypertext Transfer Protocol")?;
        writeln!(o, "    {}\\r\\n", m.start_line)?;
        if m.is_request {
            writeln!(o, "        Request Method: {}", m.method)?;
            writeln!(o, "        Request URI: {}", m.target)?;
        } else {
            writeln!(o, "        Status Code: {}", m.status)?;
            writeln!(o, "        Response Phrase: {}", m.reason)?;
        }
        for (n, v) in &m.headers {
            writeln!(o, "    {n}: {v}\\r\\n")?;
        }
        writeln!(o, "    \\r\\n")?;
        if let Some(r) = &m.in_response_to {
            writeln!(o, "    [Response to: {r}]")?;
        }
        if let Some(hs) = &m.websocket {
            if !m.is_request {
                if let (Some(acc), Some(ok)) = (&hs.accept, hs.accept_ok) {
                    if ok {
                        writeln!(
                            o,
                            "    [Sec-WebSocket-Accept {acc}: verified against the key]"
                        )?;
                    } else {
                        let exp = hs.expected_accept.as_deref().unwrap_or("?");
                        let line = format!(
                            "[Sec-WebSocket-Accept {acc} does NOT match the key: expected {exp}]"
                        );
                        writeln!(o, "    {}", self.style.bad(&line))?;
                    }
                }
                if !hs.extensions.is_empty() {
                    writeln!(
                        o,
                        "    [Negotiated extensions: {}]",
                        hs.extensions.join(", ")
                    )?;
                }
                if !hs.protocols.is_empty() {
                    writeln!(o, "    [Subprotocol: {}]", hs.protocols.join(", "))?;
                }
            } else {
                if let Some(k) = &hs.key {
                    writeln!(
                        o,
                        "    [WebSocket key: {k}, expected accept {}]",
                        hs.expected_accept.as_deref().unwrap_or("?")
                    )?;
                }
                if !hs.extensions.is_empty() {
                    writeln!(o, "    [Offered extensions: {}]", hs.extensions.join(", "))?;
                }
            }
        }
        if m.body_wire_len > 0 || !m.body.is_empty() {
            let mut how = Vec::new();
            if m.chunked {
                how.push("chunked".to_string());
            }
            if let Some(e) = &m.content_encoding {
                how.push(format!("Content-Encoding {e}"));
            }
            let how = if how.is_empty() {
                String::new()
            } else {
                format!(", {}", how.join(", "))
            };
            writeln!(
                o,
                "    [Body: {} bytes on the wire{how}, {} bytes decoded]",
                m.body_wire_len,
                m.body.len()
            )?;
            if packets.is_empty() {
                if let Ok(t) = std::str::from_utf8(&m.body) {
                    writeln!(o, "Line-based text data")?;
                    for l in t.lines().take(20) {
                        writeln!(o, "    {}", one_line(l, 200))?;
                    }
                }
            }
        }
        for a in &m.anomalies {
            writeln!(
                o,
                "    {}",
                self.style.bad(&format!("[Anomaly {}: {}]", a.code, a.text))
            )?;
        }
        if !packets.is_empty() {
            writeln!(o, "Engine.IO payload ({} packets)", packets.len())?;
            for p in packets {
                tree_eio(o, p, "    ", &self.style)?;
            }
        }
        Ok(())
    }

    fn tree_ws(&mut self, f: &WsFrame<'_>) -> io::Result<()> {
        let o = &mut self.out;
        let h = &f.header;
        writeln!(o, "WebSocket")?;
        writeln!(
            o,
            "    {}... .... = Fin: {}",
            u8::from(h.fin),
            title_bool(h.fin)
        )?;
        writeln!(
            o,
            "    .{}{}{} .... = Reserved: 0x{:x}",
            u8::from(h.rsv1),
            u8::from(h.rsv2),
            u8::from(h.rsv3),
            h.rsv().value()
        )?;
        if h.rsv1 {
            writeln!(o, "    .1.. .... = Per-Message Compressed: True")?;
        }
        let op = h.opcode.as_u8();
        writeln!(
            o,
            "    .... {:04b} = Opcode: {} ({op})",
            op,
            opcode_title(h.opcode)
        )?;
        writeln!(
            o,
            "    {}... .... = Mask: {}",
            u8::from(h.mask.is_some()),
            title_bool(h.mask.is_some())
        )?;
        let len7 = match h.length_form {
            LengthForm::Short7 => h.payload_len.min(125) as u8,
            LengthForm::Ext16 => 126,
            LengthForm::Ext64 => 127,
        };
        let bits = format!("{len7:07b}");
        let (a, b) = bits.split_at(3);
        match h.length_form {
            LengthForm::Short7 => writeln!(o, "    .{a} {b} = Payload length: {}", h.payload_len)?,
            LengthForm::Ext16 => {
                writeln!(
                    o,
                    "    .{a} {b} = Payload length: 126 Extended Payload Length (16 bits)"
                )?;
                writeln!(
                    o,
                    "    Extended Payload length (16 bits): {}",
                    h.payload_len
                )?;
            }
            LengthForm::Ext64 => {
                writeln!(
                    o,
                    "    .{a} {b} = Payload length: 127 Extended Payload Length (64 bits)"
                )?;
                writeln!(
                    o,
                    "    Extended Payload length (64 bits): {}",
                    h.payload_len
                )?;
            }
        }
        if let Some(k) = h.mask {
            writeln!(o, "    Masking-Key: {}", hex(&k))?;
            writeln!(o, "    Masked payload")?;
        }
        if f.payload_skipped {
            writeln!(o, "    [Payload not decoded]")?;
        } else {
            writeln!(o, "    Payload")?;
            match h.opcode {
                Opcode::Close => {
                    writeln!(o, "        Close")?;
                    if let Some((code, reason)) = &f.close {
                        if let Some(c) = code {
                            writeln!(o, "            Status code: {} ({c})", close_code_name(*c))?;
                        }
                        if !reason.is_empty() {
                            writeln!(o, "            Reason: {}", one_line(reason, 200))?;
                        }
                    }
                }
                Opcode::Text | Opcode::Continuation | Opcode::Ping | Opcode::Pong if !h.rsv1 => {
                    match std::str::from_utf8(f.payload) {
                        Ok(t) if !t.is_empty() => {
                            writeln!(o, "        Text: {}", one_line(t, 400))?
                        }
                        Ok(_) => {}
                        Err(_) => writeln!(
                            o,
                            "        Data ({} bytes): {}",
                            f.payload.len(),
                            sio::hex_prefix(f.payload, 32)
                        )?,
                    }
                }
                _ if !f.payload.is_empty() => writeln!(
                    o,
                    "        Data ({} bytes): {}",
                    f.payload.len(),
                    sio::hex_prefix(f.payload, 32)
                )?,
                _ => {}
            }
        }
        if let Some(n) = f.fragment_no {
            if f.message.is_none() {
                writeln!(o, "    [Fragment {n} of a message]")?;
            }
        }
        for a in &f.anomalies {
            writeln!(
                o,
                "    {}",
                self.style.bad(&format!("[Anomaly {}: {}]", a.code, a.text))
            )?;
        }
        if let Some(m) = &f.message {
            if m.frames > 1 {
                let list: Vec<String> = m.parts.iter().map(|(p, l)| format!("#{p}({l})")).collect();
                writeln!(
                    o,
                    "[{} Reassembled websocket Fragments ({} bytes): {}]",
                    m.frames,
                    m.wire_len,
                    list.join(", ")
                )?;
                let mut at = 0usize;
                for (p, l) in &m.parts {
                    let end = (at + l).saturating_sub(1);
                    writeln!(o, "    [Frame: {p}, payload: {at}-{end} ({l} bytes)]")?;
                    at += l;
                }
                writeln!(o, "    [Fragment count: {}]", m.frames)?;
                writeln!(
                    o,
                    "    [Reassembled websocket Payload length: {}]",
                    m.wire_len
                )?;
            }
            if m.compressed {
                writeln!(
                    o,
                    "[Uncompressed entire message ({} bytes from {} compressed)]",
                    m.data.len(),
                    m.wire_len
                )?;
            }
            if let Some(t) = m.text {
                let lines: Vec<&str> = t.split('\n').collect();
                writeln!(o, "Line-based text data ({} lines)", lines.len())?;
                for l in lines.iter().take(50) {
                    writeln!(o, "    {}", one_line(l, 400))?;
                }
            } else if m.binary {
                writeln!(o, "Data ({} bytes)", m.data.len())?;
                writeln!(o, "    Data: {}", sio::hex_prefix(m.data, 64))?;
            }
            if let Some(p) = &m.engineio {
                tree_eio(o, p, "", &self.style)?;
            }
        }
        Ok(())
    }

    // ---- JSON Lines ----------------------------------------------------------------------

    fn json_event(&mut self, ctx: &Ctx<'_>, ev: &Event<'_>) -> io::Result<()> {
        if let (Some(pipe), Event::Ws(f)) = (self.pipe.as_mut(), ev) {
            if pipe.ws(ctx, f)? {
                return Ok(());
            }
            if let Some((frame, found)) = super::pipe::resolved(f) {
                self.late_anomalies += found;
                json_line(&mut self.json, &mut self.names, ctx, &Event::Ws(&frame));
                return self.json_written();
            }
        }
        json_line(&mut self.json, &mut self.names, ctx, ev);
        self.json_written()
    }

    /// After a line was added to the block buffer: hand it to the output thread, or write the
    /// block out once it is full.
    fn json_written(&mut self) -> io::Result<()> {
        if let Some(pipe) = self.pipe.as_mut() {
            pipe.raw(&self.json)?;
            self.json.clear();
        } else if self.json.len() >= JSON_BLOCK {
            self.out.write_all(&self.json)?;
            self.json.clear();
        }
        Ok(())
    }

    /// Write out JSON lines still in the block buffer.
    fn flush_json(&mut self) -> io::Result<()> {
        if let Some(pipe) = self.pipe.as_mut() {
            pipe.raw(&self.json)?;
            self.json.clear();
            return pipe.flush();
        }
        if !self.json.is_empty() {
            self.out.write_all(&self.json)?;
            self.json.clear();
        }
        Ok(())
    }

    fn json_stats(&mut self, s: &Stats) -> io::Result<()> {
        self.flush_json()?;
        let j = &mut self.json;
        let _ = write!(
            Bw(j),
            "{{\"type\":\"stats\",\"packets\":{},\"bytes\":{},\"duration\":{:.6},\"streams\":{}",
            s.packets,
            s.bytes,
            duration(s),
            s.streams
        );
        j.extend_from_slice(b",\"not_tcp\":");
        json_map(j, s.not_tcp.iter().map(|(k, v)| (k.as_str(), *v)));
        let _ = write!(
            Bw(j),
            ",\"ip_fragments\":{},\"ip_reassembled\":{}",
            s.ip_fragments,
            s.ip_reassembled
        );
        let _ = write!(
            Bw(j),
            ",\"websocket\":{{\"frames\":{},\"client_frames\":{},\"server_frames\":{},\"payload_bytes\":{},\"messages\":{},\"message_bytes\":{},\"compressed_messages\":{},\"fragmented_messages\":{},\"by_opcode\":",
            s.ws_frames,
            s.ws_frames_client,
            s.ws_frames_server,
            s.ws_payload_bytes,
            s.ws_messages,
            s.ws_message_bytes,
            s.ws_compressed,
            s.ws_fragmented
        );
        json_map(j, s.ws_frames_by_opcode.iter().map(|(k, v)| (*k, *v)));
        j.extend_from_slice(b",\"close_codes\":");
        let codes: Vec<(String, u64)> = s
            .close_codes
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        json_map(j, codes.iter().map(|(k, v)| (k.as_str(), *v)));
        let _ = write!(
            Bw(j),
            "}},\"http\":{{\"requests\":{},\"responses\":{},\"upgrades\":{}}}",
            s.http_requests,
            s.http_responses,
            s.http_upgrades
        );
        j.extend_from_slice(b",\"engineio_by_type\":");
        json_map(j, s.eio_by_type.iter().map(|(k, v)| (*k, *v)));
        j.extend_from_slice(b",\"socketio_by_type\":");
        json_map(j, s.sio_by_type.iter().map(|(k, v)| (*k, *v)));
        j.extend_from_slice(b",\"socketio_events\":");
        let mut events: Vec<(&String, &u64)> = s.sio_events.iter().collect();
        events.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        json_map(j, events.iter().map(|(k, v)| (k.as_str(), **v)));
        j.extend_from_slice(b",\"tcp_analysis\":");
        json_map(j, s.tcp_notes.iter().map(|(k, v)| (k.as_str(), *v)));
        let _ = write!(
            Bw(j),
            ",\"gaps\":{},\"gap_bytes\":{},\"anomalies\":{},\"anomalies_by_code\":",
            s.gaps,
            s.gap_bytes,
            s.anomalies
        );
        json_map(j, s.anomalies_by_code.iter().map(|(k, v)| (*k, *v)));
        j.extend_from_slice(b",\"stream_list\":[");
        let mut lines = s.stream_lines.clone();
        lines.sort_by_key(|l| l.index);
        for (i, l) in lines.iter().enumerate() {
            if i > 0 {
                j.push(b',');
            }
            let _ = write!(Bw(j), "{{\"stream\":{},\"a\":", l.index);
            json_str(j, &l.a);
            j.extend_from_slice(b",\"b\":");
            json_str(j, &l.b);
            j.extend_from_slice(b",\"protocol\":");
            json_str(j, l.proto);
            j.extend_from_slice(b",\"target\":");
            match &l.target {
                Some(t) => json_str(j, t),
                None => j.extend_from_slice(b"null"),
            }
            let _ = write!(
                Bw(j),
                ",\"packets\":{},\"bytes_a_to_b\":{},\"bytes_b_to_a\":{},\"frames\":{}}}",
                l.packets,
                l.bytes[0],
                l.bytes[1],
                l.frames
            );
        }
        j.extend_from_slice(b"]}\n");
        self.flush_json()
    }

    // ---- follow ----------------------------------------------------------------------

    fn follow_event(&mut self, ctx: &Ctx<'_>, ev: &Event<'_>) {
        let Some(stream) = ctx.stream else { return };
        let t = self.follow.entry(stream).or_default();
        if t.title.is_empty() {
            if let (Some(a), Some(b)) = (ctx.src, ctx.dst) {
                let (client, server) = if ctx.from_client == Some(false) {
                    (b, a)
                } else {
                    (a, b)
                };
                t.title =
                    format!("=== stream {stream}: {client} (client) <-> {server} (server) ===");
            }
        }
        let who = match ctx.from_client {
            Some(true) => "client → server",
            Some(false) => "server → client",
            None => "?",
        };
        let when = ctx.packet.map_or_else(
            || "end of capture ".to_string(),
            |p| format!("{} ", time_of_day(p.ts)),
        );
        let style = self.style;
        let mut push = |text: String| t.lines.push(format!("{when}{who}  {text}"));
        match ev {
            Event::Http(m, packets) => {
                // A long-polling POST's `ok` answer carries nothing to follow.
                let polling_ok = !m.is_request && m.body == b"ok" && m.anomalies.is_empty();
                if packets.is_empty() && !polling_ok {
                    let mut line = m.start_line.clone();
                    if !m.is_request && m.status == 101 {
                        line.push_str("  (WebSocket)");
                    }
                    push(line);
                }
                for p in packets.iter() {
                    if let Some(text) = follow_eio(p, &style) {
                        push(text);
                    }
                }
                for a in &m.anomalies {
                    push(style.bad(&format!("! {}", a.text)));
                }
            }
            Event::Ws(f) => {
                match f.header.opcode {
                    Opcode::Close => {
                        let (code, reason) = f.close.clone().unwrap_or((None, String::new()));
                        let code = code.map_or("(no code)".to_string(), |c| {
                            format!("{c} {}", close_code_name(c))
                        });
                        push(format!(
                            "close {code}{}",
                            if reason.is_empty() {
                                String::new()
                            } else {
                                format!(" \"{reason}\"")
                            }
                        ));
                    }
                    Opcode::Ping | Opcode::Pong => {
                        let name = if f.header.opcode == Opcode::Ping {
                            "ping"
                        } else {
                            "pong"
                        };
                        push(format!("{name} {}", quoted_or_hex(f.payload)));
                    }
                    _ => {}
                }
                if let Some(m) = &f.message {
                    if m.engineio.is_none() {
                        match m.text {
                            Some(t) => push(one_line(t, 400)),
                            None => push(format!(
                                "binary {} B {}",
                                m.data.len(),
                                sio::hex_prefix(m.data, 16)
                            )),
                        }
                    }
                    if let Some(p) = &m.engineio {
                        if let Some(text) = follow_eio(p, &style) {
                            push(text);
                        }
                    }
                }
                for a in &f.anomalies {
                    push(style.bad(&format!("! {}", a.text)));
                }
            }
            Event::Gap { bytes } => {
                push(style.bad(&format!("! {bytes} bytes missing (not captured)")))
            }
            Event::Truncated { what } => push(style.bad(&format!("! {what}"))),
            Event::Note { anomaly } => push(style.bad(&format!("! {}", anomaly.text))),
            Event::Tcp(_) | Event::Data { .. } => {}
        }
    }

    // ---- stats -----------------------------------------------------------------------

    fn text_stats(&mut self, s: &Stats) -> io::Result<()> {
        let o = &mut self.out;
        writeln!(
            o,
            "Packets: {} ({} bytes) over {:.3} s",
            s.packets,
            s.bytes,
            duration(s)
        )?;
        if !s.not_tcp.is_empty() {
            let parts: Vec<String> = s.not_tcp.iter().map(|(k, v)| format!("{k} {v}")).collect();
            writeln!(o, "  not decoded: {}", parts.join(", "))?;
        }
        if s.ip_fragments > 0 {
            writeln!(
                o,
                "  IP fragments: {}, reassembled into {} datagrams",
                s.ip_fragments, s.ip_reassembled
            )?;
        }
        writeln!(o, "TCP streams: {}", s.streams)?;
        let mut lines = s.stream_lines.clone();
        lines.sort_by_key(|l| l.index);
        for l in &lines {
            let target = l
                .target
                .as_deref()
                .map_or(String::new(), |t| format!(" {t}"));
            writeln!(
                o,
                "  #{:<4} {} <-> {}  {}{target}  {} packets, {} + {} bytes, {} frames",
                l.index, l.a, l.b, l.proto, l.packets, l.bytes[0], l.bytes[1], l.frames
            )?;
        }
        if s.streams_omitted > 0 {
            writeln!(o, "  ... {} more streams", s.streams_omitted)?;
        }
        if !s.tcp_notes.is_empty() {
            let parts: Vec<String> = s
                .tcp_notes
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            writeln!(o, "  TCP analysis: {}", parts.join(", "))?;
        }
        writeln!(
            o,
            "HTTP: {} requests, {} responses ({} WebSocket upgrades)",
            s.http_requests, s.http_responses, s.http_upgrades
        )?;
        writeln!(
            o,
            "WebSocket frames: {} (client {}, server {}), {} payload bytes",
            s.ws_frames, s.ws_frames_client, s.ws_frames_server, s.ws_payload_bytes
        )?;
        for (k, v) in &s.ws_frames_by_opcode {
            writeln!(o, "  {k:<18} {v}")?;
        }
        writeln!(
            o,
            "WebSocket messages: {} ({} bytes), {} compressed, {} fragmented",
            s.ws_messages, s.ws_message_bytes, s.ws_compressed, s.ws_fragmented
        )?;
        if !s.close_codes.is_empty() {
            let parts: Vec<String> = s
                .close_codes
                .iter()
                .map(|(k, v)| format!("{k} {} ×{v}", close_code_name(*k)))
                .collect();
            writeln!(o, "  close codes: {}", parts.join(", "))?;
        }
        if !s.eio_by_type.is_empty() {
            let parts: Vec<String> = s
                .eio_by_type
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            writeln!(o, "Engine.IO packets: {}", parts.join(", "))?;
        }
        if !s.sio_by_type.is_empty() {
            let parts: Vec<String> = s
                .sio_by_type
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            writeln!(o, "Socket.IO packets: {}", parts.join(", "))?;
        }
        if !s.sio_events.is_empty() {
            writeln!(o, "Socket.IO events by name:")?;
            let mut events: Vec<(&String, &u64)> = s.sio_events.iter().collect();
            events.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (k, v) in events {
                writeln!(o, "  {:<24} {v}", one_line(k, 60))?;
            }
        }
        if s.gaps > 0 {
            writeln!(o, "Gaps: {} ({} bytes missing)", s.gaps, s.gap_bytes)?;
        }
        writeln!(o, "Anomalies: {}", s.anomalies)?;
        for (k, v) in &s.anomalies_by_code {
            writeln!(o, "  {:<26} {v}", self.style.bad(k))?;
        }
        Ok(())
    }
}

// ---- helpers shared by the views ------------------------------------------------------

/// `std::fmt::Write` over a byte buffer (for `write!` into JSON lines).
struct Bw<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bw<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn endpoints(ctx: &Ctx<'_>) -> (String, String) {
    match (ctx.src, ctx.dst) {
        (Some(a), Some(b)) => (a.to_string(), b.to_string()),
        _ => (String::new(), String::new()),
    }
}

fn tcp_ports(ctx: &Ctx<'_>) -> String {
    match (ctx.src, ctx.dst) {
        (Some(a), Some(b)) => format!("{} → {}", a.port, b.port),
        _ => String::new(),
    }
}

/// Wireshark's TCP Info: `[TCP Retransmission] 58760 → 3001 [PSH, ACK] Seq=1 Ack=1 Win=261 Len=95`.
fn tcp_info(ctx: &Ctx<'_>, labels: &[String]) -> String {
    let mut s = String::new();
    for l in labels {
        let _ = write!(s, "[{l}] ");
    }
    let _ = write!(s, "{} {}", tcp_ports(ctx), ctx.flags.bracketed());
    if let Some(r) = ctx.seg {
        let _ = write!(s, " Seq={}", r.rel_seq);
        if ctx.flags.ack {
            let _ = write!(s, " Ack={}", r.rel_ack);
        }
    }
    if let Some(d) = ctx.net {
        let win = ctx.seg.map_or(u32::from(d.tcp.window_size()), |r| r.window);
        let _ = write!(s, " Win={win} Len={}", d.payload.len());
    }
    s
}

fn skip_text(skip: &net::Skip) -> String {
    match skip {
        net::Skip::NotIp(w) => format!("not IP: {w}"),
        net::Skip::NotTcp(p) => format!("{p} (not TCP)"),
        net::Skip::Fragment(what) if what.is_empty() => "IP fragment".into(),
        net::Skip::Fragment(what) => format!("IP fragment {what} (held for reassembly)"),
        net::Skip::Malformed(w) => format!("malformed packet: {w}"),
    }
}

/// Wireshark's Info for a frame: `WebSocket Text [FIN] [MASKED]`, `WebSocket Text[FRAGMENT] [MASKED]`.
pub fn ws_wireshark_info(h: &FrameHeader) -> String {
    let mut s = String::with_capacity(48);
    s.push_str("WebSocket ");
    s.push_str(match h.opcode {
        Opcode::Reserved(_) => "Unknown Opcode",
        other => other.name(),
    });
    if h.fin {
        s.push_str(" [FIN]");
    } else {
        s.push_str("[FRAGMENT] ");
    }
    if h.mask.is_some() {
        s.push_str(" [MASKED]");
    }
    s
}

/// What wschat adds after Wireshark's Info: the Socket.IO summary, close code, ping payload, ...
fn ws_detail(f: &WsFrame<'_>, style: &Style) -> String {
    let mut d = String::new();
    if f.message.as_ref().is_some_and(|m| m.compressed) {
        d.push_str("[COMPRESSED] ");
    }
    match f.header.opcode {
        Opcode::Close => {
            if let Some((code, reason)) = &f.close {
                match code {
                    Some(c) => {
                        let _ = write!(d, "{c} {}", close_code_name(*c));
                    }
                    None => d.push_str("(no status code)"),
                }
                if !reason.is_empty() {
                    let _ = write!(d, " \"{}\"", one_line(reason, 80));
                }
            }
        }
        Opcode::Ping | Opcode::Pong if !f.payload.is_empty() => {
            d.push_str(&quoted_or_hex(f.payload))
        }
        _ => {}
    }
    if let Some(n) = f.fragment_no {
        if f.message.is_none() {
            let _ = write!(d, "(fragment {n})");
        } else {
            let _ = write!(d, "[{n} fragments reassembled] ");
        }
    }
    if let Some(m) = &f.message {
        if m.engineio.is_some() {
            let parts: Vec<String> = m.engineio.iter().map(|p| eio_summary(p, style)).collect();
            d.push_str(&parts.join(" | "));
        } else if let Some(t) = m.text {
            d.push_str(&one_line(&format!("\"{t}\""), 80));
        } else if m.binary {
            let _ = write!(d, "{} B {}", m.data.len(), sio::hex_prefix(m.data, 8));
        }
    }
    d.trim_end().to_string()
}

/// One-line summary of an Engine.IO packet, the Socket.IO one when it carries it.
fn eio_summary(p: &EioPacket<'_>, style: &Style) -> String {
    if let Some(s) = &p.sio {
        if let Some(r) = &s.packet {
            let name = r.packet_type().name();
            let summary = s.summary();
            let rest = summary.strip_prefix(name).unwrap_or(&summary);
            return format!("{}{rest}", style.event(name));
        }
        return s.summary();
    }
    match &p.packet {
        Some(pk) => format!("Engine.IO {}", pk.summary()),
        None => format!("Engine.IO invalid: {}", p.error.as_deref().unwrap_or("?")),
    }
}

fn push_anomalies(info: &mut String, anomalies: &[Anomaly], style: &Style) {
    for a in anomalies {
        info.push_str("  ");
        info.push_str(&style.bad(&format!("[!{}: {}]", a.code, a.text)));
    }
}

fn quoted_or_hex(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(t) => format!("\"{}\"", one_line(t, 80)),
        Err(_) => format!("{} B {}", b.len(), sio::hex_prefix(b, 16)),
    }
}

/// Text on one line: control characters escaped, cut at `max` characters (the core's rule, so the
/// decoder's views and the packet summaries escape alike).
pub fn one_line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max + 8));
    crate::proto::json::push_one_line(&mut out, s, max);
    out
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn title_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

fn opcode_title(op: Opcode) -> String {
    match op {
        Opcode::Reserved(v) => format!("Unknown Opcode 0x{v:x}"),
        other => other.name().to_string(),
    }
}

/// Wireshark-style hex dump: offset, 16 bytes in hex, then ASCII.
fn hex_dump(o: &mut impl Write, data: &[u8]) -> io::Result<()> {
    for (i, chunk) in data.chunks(16).enumerate() {
        let mut line = String::with_capacity(80);
        let _ = write!(line, "{:04x}  ", i * 16);
        for (j, b) in chunk.iter().enumerate() {
            if j > 0 {
                line.push(' ');
            }
            let _ = write!(line, "{b:02x}");
        }
        for _ in chunk.len()..16 {
            line.push_str("   ");
        }
        line.push_str("   ");
        for &b in chunk {
            line.push(if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            });
        }
        writeln!(o, "{line}")?;
    }
    Ok(())
}

fn arrival_time(ts: Timestamp) -> String {
    match chrono::DateTime::from_timestamp(ts.secs, ts.nanos) {
        Some(t) => t.format("%b %e, %Y %H:%M:%S.%f UTC").to_string(),
        None => format!("{}.{:09}", ts.secs, ts.nanos),
    }
}

fn time_of_day(ts: Timestamp) -> String {
    match chrono::DateTime::from_timestamp(ts.secs, ts.nanos) {
        Some(t) => t.format("%H:%M:%S%.3f").to_string(),
        None => format!("{}.{:03}", ts.secs, ts.nanos / 1_000_000),
    }
}

fn duration(s: &Stats) -> f64 {
    match (s.first, s.last) {
        (Some(a), Some(b)) => b.nanos_since(a) as f64 / 1e9,
        _ => 0.0,
    }
}

fn tree_link(o: &mut impl Write, d: &Dissected<'_>) -> io::Result<()> {
    match d.link {
        Link::Ethernet {
            dst,
            src,
            ethertype,
            vlans,
        } => {
            writeln!(
                o,
                "Ethernet II, Src: {}, Dst: {}",
                net::mac(&src),
                net::mac(&dst)
            )?;
            writeln!(o, "    Destination: {}", net::mac(&dst))?;
            writeln!(o, "    Source: {}", net::mac(&src))?;
            for v in vlans.iter().flatten() {
                writeln!(o, "    802.1Q Virtual LAN, ID: {v}")?;
            }
            writeln!(
                o,
                "    Type: {} (0x{ethertype:04x})",
                ethertype_name(ethertype)
            )?;
        }
        Link::Sll {
            packet_type,
            arphrd,
            addr,
            addr_len,
            protocol,
        } => {
            writeln!(o, "Linux cooked capture v1")?;
            writeln!(
                o,
                "    Packet type: {} ({packet_type})",
                sll_packet_type(packet_type as u8)
            )?;
            writeln!(o, "    Link-layer address type: {arphrd}")?;
            writeln!(o, "    Link-layer address length: {addr_len}")?;
            writeln!(
                o,
                "    Source: {}",
                net::mac(addr.get(..(addr_len as usize).min(8)).unwrap_or_default())
            )?;
            writeln!(
                o,
                "    Protocol: {} (0x{protocol:04x})",
                ethertype_name(protocol)
            )?;
        }
        Link::Sll2 {
            protocol,
            ifindex,
            arphrd,
            packet_type,
            addr,
            addr_len,
        } => {
            writeln!(o, "Linux cooked capture v2")?;
            writeln!(
                o,
                "    Protocol: {} (0x{protocol:04x})",
                ethertype_name(protocol)
            )?;
            writeln!(o, "    Interface index: {ifindex}")?;
            writeln!(o, "    Link-layer address type: {arphrd}")?;
            writeln!(
                o,
                "    Packet type: {} ({packet_type})",
                sll_packet_type(packet_type)
            )?;
            writeln!(o, "    Link-layer address length: {addr_len}")?;
            writeln!(
                o,
                "    Source: {}",
                net::mac(addr.get(..(addr_len as usize).min(8)).unwrap_or_default())
            )?;
        }
        Link::Null { family } => {
            writeln!(o, "Null/Loopback")?;
            writeln!(
                o,
                "    Family: {} ({family})",
                if family == 2 { "IP" } else { "IPv6" }
            )?;
        }
        Link::Raw => writeln!(o, "Raw packet data")?,
    }
    Ok(())
}

fn sll_packet_type(t: u8) -> &'static str {
    match t {
        0 => "Unicast to us",
        1 => "Broadcast",
        2 => "Multicast",
        3 => "Unicast to another host",
        4 => "Sent by us",
        _ => "Unknown",
    }
}

fn ethertype_name(t: u16) -> &'static str {
    match t {
        0x0800 => "IPv4",
        0x86dd => "IPv6",
        0x0806 => "ARP",
        _ => "Unknown",
    }
}

fn tree_ip(o: &mut impl Write, d: &Dissected<'_>) -> io::Result<()> {
    use etherparse::LaxIpSlice;
    match &d.ip {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            writeln!(
                o,
                "Internet Protocol Version 4, Src: {}, Dst: {}",
                h.source_addr(),
                h.destination_addr()
            )?;
            writeln!(o, "    0100 .... = Version: 4")?;
            writeln!(
                o,
                "    .... {:04b} = Header Length: {} bytes ({})",
                h.ihl(),
                u32::from(h.ihl()) * 4,
                h.ihl()
            )?;
            let tos = h.slice().get(1).copied().unwrap_or(0);
            writeln!(
                o,
                "    Differentiated Services Field: 0x{tos:02x} (DSCP: {}, ECN: {})",
                tos >> 2,
                tos & 3
            )?;
            writeln!(o, "    Total Length: {}", h.total_len())?;
            writeln!(
                o,
                "    Identification: 0x{:04x} ({})",
                h.identification(),
                h.identification()
            )?;
            let flags = (u8::from(h.dont_fragment()) << 1) | u8::from(h.more_fragments());
            let names = match (h.dont_fragment(), h.more_fragments()) {
                (true, false) => ", Don't fragment",
                (false, true) => ", More fragments",
                (true, true) => ", Don't fragment, More fragments",
                _ => "",
            };
            writeln!(o, "    {:03b}. .... = Flags: 0x{flags:x}{names}", flags)?;
            writeln!(o, "    Fragment Offset: {}", h.fragments_offset().value())?;
            writeln!(o, "    Time to Live: {}", h.ttl())?;
            writeln!(o, "    Protocol: TCP (6)")?;
            writeln!(o, "    Header Checksum: 0x{:04x}", h.header_checksum())?;
            writeln!(o, "    Source Address: {}", h.source_addr())?;
            writeln!(o, "    Destination Address: {}", h.destination_addr())?;
        }
        LaxIpSlice::Ipv6(v6) => {
            let h = v6.header();
            writeln!(
                o,
                "Internet Protocol Version 6, Src: {}, Dst: {}",
                h.source_addr(),
                h.destination_addr()
            )?;
            writeln!(o, "    0110 .... = Version: 6")?;
            writeln!(o, "    Traffic Class: 0x{:02x}", h.traffic_class())?;
            writeln!(o, "    Flow Label: 0x{:05x}", h.flow_label().value())?;
            writeln!(o, "    Payload Length: {}", h.payload_length())?;
            writeln!(o, "    Next Header: TCP (6)")?;
            writeln!(o, "    Hop Limit: {}", h.hop_limit())?;
            writeln!(o, "    Source Address: {}", h.source_addr())?;
            writeln!(o, "    Destination Address: {}", h.destination_addr())?;
        }
    }
    Ok(())
}

fn tree_tcp(o: &mut impl Write, ctx: &Ctx<'_>, d: &Dissected<'_>) -> io::Result<()> {
    let t = &d.tcp;
    let len = d.payload.len();
    let (seq, ack, next) = ctx
        .seg
        .map_or((0, 0, 0), |r| (r.rel_seq, r.rel_ack, r.next_rel_seq));
    writeln!(
        o,
        "Transmission Control Protocol, Src Port: {}, Dst Port: {}, Seq: {seq}, Ack: {ack}, Len: {len}",
        t.source_port(),
        t.destination_port()
    )?;
    writeln!(o, "    Source Port: {}", t.source_port())?;
    writeln!(o, "    Destination Port: {}", t.destination_port())?;
    if let Some(s) = ctx.stream {
        writeln!(o, "    [Stream index: {s}]")?;
    }
    writeln!(o, "    [TCP Segment Len: {len}]")?;
    writeln!(
        o,
        "    Sequence Number: {seq}    (relative sequence number)"
    )?;
    writeln!(o, "    Sequence Number (raw): {}", t.sequence_number())?;
    writeln!(
        o,
        "    [Next Sequence Number: {next}    (relative sequence number)]"
    )?;
    writeln!(
        o,
        "    Acknowledgment Number: {ack}    (relative ack number)"
    )?;
    writeln!(
        o,
        "    Acknowledgment number (raw): {}",
        t.acknowledgment_number()
    )?;
    let off = t.data_offset();
    writeln!(
        o,
        "    {:04b} .... = Header Length: {} bytes ({off})",
        off,
        u32::from(off) * 4
    )?;
    let names = ctx.flags.bracketed();
    writeln!(
        o,
        "    Flags: 0x{:03x} ({})",
        ctx.flags.bits(),
        names.trim_start_matches('[').trim_end_matches(']')
    )?;
    writeln!(o, "    Window: {}", t.window_size())?;
    if let Some(r) = ctx.seg {
        writeln!(o, "    [Calculated window size: {}]", r.window)?;
    }
    writeln!(o, "    Checksum: 0x{:04x}", t.checksum())?;
    writeln!(o, "    Urgent Pointer: {}", t.urgent_pointer())?;
    if !t.options().is_empty() {
        writeln!(o, "    Options: ({} bytes)", t.options().len())?;
    }
    if let Some(r) = ctx.seg {
        let labels = r.analysis.labels();
        if !labels.is_empty() {
            writeln!(o, "    [SEQ/ACK analysis]")?;
            for l in labels {
                writeln!(o, "        [{l}]")?;
            }
            if let Some(n) = r.analysis.previous_segment_not_captured {
                writeln!(
                    o,
                    "        [{n} bytes before this segment were not captured]"
                )?;
            }
        }
    }
    if len > 0 {
        writeln!(o, "    TCP payload ({len} bytes)")?;
    }
    if d.truncated {
        writeln!(o, "    [Packet cut short by the capture's snap length]")?;
    }
    Ok(())
}

fn tree_eio(o: &mut impl Write, p: &EioPacket<'_>, indent: &str, style: &Style) -> io::Result<()> {
    writeln!(o, "{indent}Engine.IO")?;
    match &p.packet {
        Some(pk) => {
            writeln!(o, "{indent}    Type: {} ({})", p.type_name(), p.type_char())?;
            match pk {
                crate::proto::engineio::PacketRef::Binary(b) => writeln!(
                    o,
                    "{indent}    Data ({} bytes): {}",
                    b.len(),
                    sio::hex_prefix(b, 32)
                )?,
                _ => {
                    let data = p.raw.get(1..).unwrap_or_default();
                    if !data.is_empty() {
                        writeln!(o, "{indent}    Data: {}", one_line(data, 400))?;
                    }
                }
            }
            writeln!(o, "{indent}    [Summary: {}]", one_line(&pk.summary(), 200))?;
        }
        None => writeln!(
            o,
            "{indent}    {}",
            style.bad(&format!("[Invalid: {}]", p.error.as_deref().unwrap_or("?")))
        )?,
    }
    if let Some(s) = &p.sio {
        writeln!(o, "{indent}Socket.IO")?;
        if let Some(r) = &s.packet {
            let t = r.packet_type();
            writeln!(o, "{indent}    Type: {} ({})", t.name(), t.as_char())?;
            writeln!(o, "{indent}    Namespace: {}", r.nsp())?;
            if let Some(e) = r.event() {
                writeln!(o, "{indent}    Event: {}", style.event(&one_line(e, 200)))?;
            }
            if let Some(id) = r.id() {
                writeln!(o, "{indent}    Ack id: {id}")?;
            }
            if r.attachments() > 0 {
                writeln!(
                    o,
                    "{indent}    Attachments: {} (binary messages follow)",
                    r.attachments()
                )?;
            }
            if t.is_event() || t.is_ack() {
                writeln!(
                    o,
                    "{indent}    Arguments ({}): {}",
                    r.arg_count(),
                    one_line(r.args(), 400)
                )?;
            } else if let Some(data) = r.data() {
                writeln!(o, "{indent}    Data: {}", one_line(data, 400))?;
            }
        } else if let Some((i, n)) = s.attachment {
            writeln!(o, "{indent}    Binary attachment {} of {n}", i + 1)?;
        }
        if let Some(c) = &s.completed {
            writeln!(
                o,
                "{indent}    [Completes {} with {} attachment(s)]",
                c.summary,
                c.attachments.len()
            )?;
            for (i, (len, hexp)) in c.attachments.iter().enumerate() {
                writeln!(o, "{indent}        [Attachment #{i}: {len} bytes: {hexp}]")?;
            }
        }
        if let Some(e) = &s.error {
            writeln!(o, "{indent}    {}", style.bad(&format!("[Invalid: {e}]")))?;
        }
        writeln!(o, "{indent}    [Summary: {}]", s.summary())?;
    }
    Ok(())
}

/// A transcript line for an Engine.IO packet; heartbeats are left out.
fn follow_eio(p: &EioPacket<'_>, style: &Style) -> Option<String> {
    use crate::proto::engineio::PacketRef as E;
    match &p.packet {
        Some(E::Ping(_) | E::Pong(_) | E::Noop) => return None,
        Some(E::Open(h)) => return Some(format!("Engine.IO open (sid {})", h.sid)),
        Some(E::Upgrade) => return Some("Engine.IO upgrade complete".into()),
        Some(E::Close) => return Some("Engine.IO close".into()),
        _ => {}
    }
    let Some(s) = &p.sio else {
        return p.packet.as_ref().map(|pk| pk.summary());
    };
    if let Some(r) = &s.packet {
        if let (Some(event), Some(first)) = (r.event(), r.first_arg()) {
            if let Ok(serde_json::Value::Object(o)) =
                serde_json::from_str::<serde_json::Value>(first)
            {
                if let Some(serde_json::Value::String(msg)) = o.get("message") {
                    let author = o.get("author").and_then(|a| a.as_str()).unwrap_or("?");
                    let mut where_ = Vec::new();
                    if let Some(room) = o.get("room") {
                        where_.push(format!(
                            "room {}",
                            room.as_str().map_or(room.to_string(), str::to_string)
                        ));
                    }
                    if let Some(serde_json::Value::String(t)) = o.get("time") {
                        where_.push(t.clone());
                    }
                    let where_ = if where_.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", where_.join(", "))
                    };
                    return Some(format!(
                        "{}  {}{where_}: {}",
                        style.event(event),
                        style.event(author),
                        one_line(msg, 400)
                    ));
                }
            }
        }
        let name = r.packet_type().name();
        let summary = s.summary();
        return Some(format!(
            "{}{}",
            style.event(name),
            summary.strip_prefix(name).unwrap_or(&summary)
        ));
    }
    if s.completed.is_some() || s.attachment.is_some() {
        return Some(s.summary());
    }
    Some(style.dim(&s.summary()))
}

// ---- JSON --------------------------------------------------------------------------

/// Bytes that need escaping in a JSON string: `"`, `\\` and control characters (RFC 8259 §7).
static JSON_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Appends `s` as a JSON string (RFC 8259 §7).
///
/// A hot path (every payload text goes through it, and chat payloads are JSON full of quotes):
/// eight bytes at a time, each chunk is appended whole (a fixed-size copy), then, if it holds a
/// byte to escape, cut back to that byte, which is escaped; the search continues after it.
pub fn json_str(j: &mut Vec<u8>, s: &str) {
    let mut rest = s.as_bytes();
    j.reserve(rest.len() + 2);
    j.push(b'"');
    while let Some((chunk, _)) = rest.split_first_chunk::<8>() {
        j.extend_from_slice(chunk);
        let hit = json_escape_mask(u64::from_le_bytes(*chunk));
        if hit == 0 {
            rest = &rest[8..];
            continue;
        }
        // The lowest hit is exact (see `json_escape_mask`).
        let k = (hit.trailing_zeros() / 8) as usize;
        j.truncate(j.len() - (8 - k));
        push_json_byte(j, chunk[k]);
        rest = &rest[k + 1..];
    }
    for &b in rest {
        push_json_byte(j, b);
    }
    j.push(b'"');
}

/// The high bit of each byte of `w` (little-endian) that must be escaped in a JSON string: `"`,
/// `\\` and control characters. Per byte, `x - k` borrows into the high bit exactly when `x < k`
/// (for `x < 0x80`); a borrow can only make false hits above a true one, so the lowest hit is exact.
#[inline(always)]
fn json_escape_mask(w: u64) -> u64 {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let below = |w: u64, k: u64| w.wrapping_sub(ONES * k) & !w & HIGH;
    below(w, 0x20)
        | below(w ^ (ONES * u64::from(b'"')), 1)
        | below(w ^ (ONES * u64::from(b'\\')), 1)
}

/// Appends one byte of a JSON string, escaped if it has to be.
#[inline(always)]
fn push_json_byte(j: &mut Vec<u8>, b: u8) {
    if !JSON_ESCAPE[usize::from(b)] {
        j.push(b);
    } else if b == b'"' {
        // Common in chat payloads (they carry JSON), so not on the cold path.
        j.extend_from_slice(b"\\\"");
    } else {
        push_json_escape(j, b);
    }
}

#[cold]
#[inline(never)]
fn push_json_escape(j: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => j.extend_from_slice(b"\\\""),
        b'\\' => j.extend_from_slice(b"\\\\"),
        b'\n' => j.extend_from_slice(b"\\n"),
        b'\r' => j.extend_from_slice(b"\\r"),
        b'\t' => j.extend_from_slice(b"\\t"),
        _ => j.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 15)],
        ]),
    }
}

fn json_hex(j: &mut Vec<u8>, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    j.push(b'"');
    for &x in b {
        j.push(HEX[usize::from(x >> 4)]);
        j.push(HEX[usize::from(x & 15)]);
    }
    j.push(b'"');
}

/// JSON output is written in blocks of about this many bytes.
pub(super) const JSON_BLOCK: usize = 1 << 16;

/// Largest payload written out in JSON (hex or text); longer ones are cut and flagged.
const JSON_MAX_PAYLOAD: usize = 1 << 20;

fn json_bytes_field(j: &mut Vec<u8>, name: &str, b: &[u8], as_text: bool) {
    let cut = b.len() > JSON_MAX_PAYLOAD;
    let shown = b.get(..JSON_MAX_PAYLOAD.min(b.len())).unwrap_or_default();
    j.extend_from_slice(b",\"");
    j.extend_from_slice(name.as_bytes());
    match (as_text, std::str::from_utf8(shown)) {
        (true, Ok(t)) => {
            j.extend_from_slice(b"_text\":");
            json_str(j, t);
        }
        _ => {
            j.extend_from_slice(b"_hex\":");
            json_hex(j, shown);
        }
    }
    if cut {
        j.extend_from_slice(b",\"");
        j.extend_from_slice(name.as_bytes());
        j.extend_from_slice(b"_truncated\":true");
    }
}

/// Two-digit decimal pairs `00`..`99`, for [`push_u64`] and [`push_secs`].
static DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// Appends a decimal number (a hot path: `fmt` is several times slower). Most numbers in a
/// line are below 100: those are inline.
#[inline(always)]
fn push_u64(j: &mut Vec<u8>, n: u64) {
    if n < 10 {
        j.push(b'0' + n as u8);
    } else if n < 100 {
        j.extend_from_slice(&DIGIT_PAIRS[n as usize]);
    } else {
        push_u64_long(j, n);
    }
}

/// [`push_u64`] from 100 on: the digits are written by pairs into a buffer, which is appended
/// whole (a fixed-size copy) and cut back to its length.
#[inline(never)]
fn push_u64_long(j: &mut Vec<u8>, mut n: u64) {
    let len = n.checked_ilog10().map_or(1, |l| l as usize + 1);
    let mut buf = [b'0'; 20];
    let mut i = len;
    while n >= 100 && i >= 2 {
        i -= 2;
        if let Some(d) = buf.get_mut(i..i + 2) {
            d.copy_from_slice(&DIGIT_PAIRS[(n % 100) as usize]);
        }
        n /= 100;
    }
    if n >= 10 && i >= 2 {
        if let Some(d) = buf.get_mut(i - 2..i) {
            d.copy_from_slice(&DIGIT_PAIRS[n as usize]);
        }
    } else if let Some(d) = i.checked_sub(1).and_then(|k| buf.get_mut(k)) {
        *d = b'0' + n as u8;
    }
    let start = j.len();
    j.extend_from_slice(&buf);
    j.truncate(start + len);
}

/// Appends `secs.nnnnnnnnn` for a time in nanoseconds (negative values with a sign).
fn push_secs(j: &mut Vec<u8>, nanos: i64) {
    if nanos < 0 {
        j.push(b'-');
    }
    let n = nanos.unsigned_abs();
    push_u64(j, n / 1_000_000_000);
    let f = (n % 1_000_000_000) as u32;
    // `.` and nine digits: the first one, then four pairs.
    let hi = f / 100_000_000;
    let mut rest = f % 100_000_000;
    let mut digits = [b'.', b'0' + hi as u8, 0, 0, 0, 0, 0, 0, 0, 0];
    for k in (0..4).rev() {
        let pair = DIGIT_PAIRS[(rest % 100) as usize];
        if let Some(d) = digits.get_mut(2 + 2 * k..4 + 2 * k) {
            d.copy_from_slice(&pair);
        }
        rest /= 100;
    }
    j.extend_from_slice(&digits);
}

/// One JSON line for an event, appended to `j`.
fn json_line(j: &mut Vec<u8>, names: &mut Names, ctx: &Ctx<'_>, ev: &Event<'_>) {
    match ev {
        Event::Tcp(note) => {
            json_common(j, ctx, "tcp", names);
            j.extend_from_slice(b",\"flags\":");
            json_str(j, &ctx.flags.bracketed());
            if let Some(s) = ctx.seg {
                let _ = write!(Bw(j), ",\"seq\":{},\"ack\":{}", s.rel_seq, s.rel_ack);
            }
            let len = ctx.net.map_or(0, |d| d.payload.len());
            let _ = write!(Bw(j), ",\"len\":{len},\"analysis\":[");
            for (i, l) in note.labels.iter().enumerate() {
                if i > 0 {
                    j.push(b',');
                }
                json_str(j, l);
            }
            j.push(b']');
        }
        Event::Http(m, packets) => {
            json_common(j, ctx, "http", names);
            json_http(j, m, packets);
        }
        Event::Ws(f) => {
            json_common(j, ctx, "websocket", names);
            json_ws(j, f);
        }
        Event::Gap { bytes } => {
            json_common(j, ctx, "gap", names);
            let _ = write!(Bw(j), ",\"bytes\":{bytes}");
            json_anomalies(
                j,
                &[Anomaly::new(
                    "tcp_gap",
                    format!("{bytes} bytes missing from the stream"),
                )],
            );
        }
        Event::Data { len } => {
            json_common(j, ctx, "data", names);
            let _ = write!(Bw(j), ",\"len\":{len}");
        }
        Event::Truncated { what } => {
            json_common(j, ctx, "truncated", names);
            j.extend_from_slice(b",\"what\":");
            json_str(j, what);
            json_anomalies(j, &[Anomaly::new("truncated", what.clone())]);
        }
        Event::Note { anomaly } => {
            json_common(j, ctx, "note", names);
            json_anomalies(j, std::slice::from_ref(anomaly));
        }
    }
    j.extend_from_slice(b"}\n");
}

/// JSON Lines rendering on its own (the output thread of [`super::pipe`]).
#[derive(Default)]
pub(super) struct JsonLines {
    /// Lines not written yet.
    pub json: Vec<u8>,
    names: Names,
}

impl JsonLines {
    /// Appends the line for one event.
    pub fn line(&mut self, ctx: &Ctx<'_>, ev: &Event<'_>) {
        json_line(&mut self.json, &mut self.names, ctx, ev);
    }
}

/// Endpoint names (`127.0.0.1:3001`, `[::1]:3001`), formatted once.
struct Names {
    names: FxHashMap<Endpoint, Box<str>>,
    /// `,"src":"…","dst":"…"` with its endpoints, direct-mapped by the ports (most lines repeat
    /// a recent pair, and a hash lookup of two endpoints per line is measurable).
    pairs: Vec<Option<NamedPair>>,
}

/// Two endpoints and their `,"src":…,"dst":…` text.
type NamedPair = (Endpoint, Endpoint, Box<[u8]>);

/// Slots in [`Names::pairs`] (a power of two).
const PAIR_SLOTS: usize = 1024;

impl Default for Names {
    fn default() -> Self {
        Names {
            names: FxHashMap::default(),
            pairs: vec![None; PAIR_SLOTS],
        }
    }
}

impl Names {
    fn get(&mut self, e: Endpoint) -> &str {
        if self.names.len() > 65_536 {
            self.names.clear();
        }
        self.names
            .entry(e)
            .or_insert_with(|| e.to_string().into_boxed_str())
    }

    /// `,"src":"A","dst":"B"` for a pair of endpoints.
    fn pair(&mut self, a: Endpoint, b: Endpoint) -> &[u8] {
        let slot = (usize::from(a.port) ^ usize::from(b.port).rotate_left(5)) & (PAIR_SLOTS - 1);
        let hit = matches!(self.pairs.get(slot), Some(Some((x, y, _))) if *x == a && *y == b);
        if !hit {
            let mut text = Vec::with_capacity(64);
            text.extend_from_slice(b",\"src\":\"");
            text.extend_from_slice(self.get(a).as_bytes());
            text.extend_from_slice(b"\",\"dst\":\"");
            text.extend_from_slice(self.get(b).as_bytes());
            text.push(b'"');
            if let Some(p) = self.pairs.get_mut(slot) {
                *p = Some((a, b, text.into_boxed_slice()));
            }
        }
        match self.pairs.get(slot) {
            Some(Some((_, _, t))) => t,
            _ => &[],
        }
    }
}

fn json_common(j: &mut Vec<u8>, ctx: &Ctx<'_>, kind: &str, names: &mut Names) {
    j.extend_from_slice(b"{\"type\":\"");
    j.extend_from_slice(kind.as_bytes());
    j.extend_from_slice(b"\",\"frame\":");
    match ctx.packet {
        Some(p) => {
            push_u64(j, p.number);
            j.extend_from_slice(b",\"time\":");
            push_secs(j, i64::try_from(p.ts.as_nanos()).unwrap_or(i64::MAX));
            j.extend_from_slice(b",\"rel_time\":");
            push_secs(j, ctx.rel_ns);
        }
        None => j.extend_from_slice(b"null,\"time\":null,\"rel_time\":null"),
    }
    j.extend_from_slice(b",\"stream\":");
    match ctx.stream {
        Some(s) => push_u64(j, s),
        None => j.extend_from_slice(b"null"),
    }
    match (ctx.src, ctx.dst) {
        (Some(a), Some(b)) => j.extend_from_slice(names.pair(a, b)),
        _ => j.extend_from_slice(b",\"src\":null,\"dst\":null"),
    }
    j.extend_from_slice(match ctx.from_client {
        Some(true) => b",\"from\":\"client\"",
        Some(false) => b",\"from\":\"server\"",
        None => b",\"from\":null",
    });
}

fn json_anomalies(j: &mut Vec<u8>, list: &[Anomaly]) {
    if list.is_empty() {
        return;
    }
    j.extend_from_slice(b",\"anomalies\":[");
    for (i, a) in list.iter().enumerate() {
        if i > 0 {
            j.push(b',');
        }
        j.extend_from_slice(b"{\"code\":\"");
        j.extend_from_slice(a.code.as_bytes());
        j.extend_from_slice(b"\",\"text\":");
        json_str(j, &a.text);
        j.push(b'}');
    }
    j.push(b']');
}

fn json_map<'k>(j: &mut Vec<u8>, items: impl Iterator<Item = (&'k str, u64)>) {
    j.push(b'{');
    for (i, (k, v)) in items.enumerate() {
        if i > 0 {
            j.push(b',');
        }
        json_str(j, k);
        let _ = write!(Bw(j), ":{v}");
    }
    j.push(b'}');
}

fn json_bool(j: &mut Vec<u8>, b: bool) {
    j.extend_from_slice(if b { b"true" } else { b"false" });
}

fn json_ws(j: &mut Vec<u8>, f: &WsFrame<'_>) {
    let h = &f.header;
    j.extend_from_slice(b",\"index\":");
    push_u64(j, u64::from(f.index_in_packet));
    j.extend_from_slice(b",\"fin\":");
    json_bool(j, h.fin);
    j.extend_from_slice(b",\"rsv\":");
    push_u64(j, u64::from(h.rsv().value()));
    j.extend_from_slice(b",\"opcode\":");
    push_u64(j, u64::from(h.opcode.as_u8()));
    j.extend_from_slice(b",\"opcode_name\":\"");
    j.extend_from_slice(super::stats::opcode_name(h.opcode).as_bytes());
    j.extend_from_slice(b"\",\"masked\":");
    json_bool(j, h.mask.is_some());
    j.extend_from_slice(b",\"masking_key\":");
    match h.mask {
        Some(k) => json_hex(j, &k),
        None => j.extend_from_slice(b"null"),
    }
    j.extend_from_slice(b",\"payload_length\":");
    push_u64(j, h.payload_len);
    j.extend_from_slice(match h.length_form {
        LengthForm::Short7 => b",\"length_form\":7",
        LengthForm::Ext16 => b",\"length_form\":16",
        LengthForm::Ext64 => b",\"length_form\":64",
    });
    if !f.payload_skipped {
        // A single-frame text message was checked already: its text is the payload.
        let known = f
            .message
            .as_ref()
            .filter(|m| m.frames == 1 && !m.compressed)
            .and_then(|m| m.text);
        match known {
            Some(t) if f.payload.len() <= JSON_MAX_PAYLOAD => {
                j.extend_from_slice(b",\"payload_text\":");
                json_str(j, t);
            }
            _ => {
                let text_like = !h.rsv1
                    && matches!(
                        h.opcode,
                        Opcode::Text | Opcode::Continuation | Opcode::Ping | Opcode::Pong
                    );
                json_bytes_field(j, "payload", f.payload, text_like);
            }
        }
    }
    if let Some((code, reason)) = &f.close {
        j.extend_from_slice(b",\"close\":{\"code\":");
        match code {
            Some(c) => {
                let _ = write!(Bw(j), "{c},\"name\":\"{}\"", close_code_name(*c));
            }
            None => j.extend_from_slice(b"null,\"name\":null"),
        }
        j.extend_from_slice(b",\"reason\":");
        json_str(j, reason);
        j.push(b'}');
    }
    if let Some(n) = f.fragment_no {
        let _ = write!(Bw(j), ",\"fragment\":{n}");
    }
    if let Some(m) = &f.message {
        j.extend_from_slice(if m.binary {
            b",\"message\":{\"opcode\":\"binary\",\"frames\":"
        } else {
            b",\"message\":{\"opcode\":\"text\",\"frames\":"
        });
        push_u64(j, u64::from(m.frames));
        j.extend_from_slice(b",\"compressed\":");
        json_bool(j, m.compressed);
        j.extend_from_slice(b",\"wire_length\":");
        push_u64(j, m.wire_len as u64);
        j.extend_from_slice(b",\"length\":");
        push_u64(j, m.data.len() as u64);
        if m.frames > 1 || m.compressed || m.text.is_none() {
            json_bytes_field(j, "data", m.data, m.text.is_some());
        }
        j.push(b'}');
        if m.engineio.is_some() {
            json_engineio(j, m.engineio.as_slice());
        }
    }
    json_anomalies(j, &f.anomalies);
}

fn json_engineio(j: &mut Vec<u8>, packets: &[EioPacket<'_>]) {
    j.extend_from_slice(b",\"engineio\":[");
    for (i, p) in packets.iter().enumerate() {
        if i > 0 {
            j.push(b',');
        }
        j.extend_from_slice(b"{\"type\":\"");
        j.extend_from_slice(p.type_name().as_bytes());
        j.push(b'"');
        match &p.packet {
            Some(crate::proto::engineio::PacketRef::Binary(b)) => {
                let _ = write!(Bw(j), ",\"length\":{}", b.len());
                json_bytes_field(j, "data", b, false);
            }
            Some(crate::proto::engineio::PacketRef::Open(h)) => {
                j.extend_from_slice(b",\"sid\":");
                json_str(j, &h.sid);
                let _ = write!(
                    Bw(j),
                    ",\"ping_interval\":{},\"ping_timeout\":{},\"max_payload\":{}",
                    h.ping_interval,
                    h.ping_timeout,
                    h.max_payload
                );
            }
            Some(
                crate::proto::engineio::PacketRef::Ping(d)
                | crate::proto::engineio::PacketRef::Pong(d),
            ) if !d.is_empty() => {
                j.extend_from_slice(b",\"data\":");
                json_str(j, d);
            }
            Some(_) => {}
            None => {
                j.extend_from_slice(b",\"raw\":");
                json_str(j, p.raw);
                j.extend_from_slice(b",\"error\":");
                json_str(j, p.error.as_deref().unwrap_or(""));
            }
        }
        if let Some(s) = &p.sio {
            j.extend_from_slice(b",\"socketio\":{");
            if let Some(r) = &s.packet {
                let t = r.packet_type();
                j.extend_from_slice(b"\"type\":\"");
                j.extend_from_slice(t.name().as_bytes());
                j.extend_from_slice(b"\",\"nsp\":");
                json_str(j, r.nsp());
                match r.id() {
                    Some(id) => {
                        j.extend_from_slice(b",\"id\":");
                        push_u64(j, id);
                    }
                    None => j.extend_from_slice(b",\"id\":null"),
                }
                if let Some(e) = r.event() {
                    j.extend_from_slice(b",\"event\":");
                    json_str(j, e);
                }
                if r.attachments() > 0 {
                    let _ = write!(Bw(j), ",\"attachments\":{}", r.attachments());
                }
                j.extend_from_slice(b",\"data\":");
                // Valid JSON already (the parser checked it): embedded as is.
                match r.data() {
                    Some(d) => j.extend_from_slice(d.as_bytes()),
                    None => j.extend_from_slice(b"null"),
                }
            } else if let Some((i, n)) = s.attachment {
                let _ = write!(
                    Bw(j),
                    "\"type\":\"attachment\",\"attachment\":{i},\"of\":{n}"
                );
            } else {
                j.extend_from_slice(b"\"type\":null,\"error\":");
                json_str(j, s.error.as_deref().unwrap_or(""));
            }
            if let Some(c) = &s.completed {
                j.extend_from_slice(b",\"completes\":{\"summary\":");
                json_str(j, &c.summary);
                j.extend_from_slice(b",\"event\":");
                match &c.event {
                    Some(e) => json_str(j, e),
                    None => j.extend_from_slice(b"null"),
                }
                j.extend_from_slice(b",\"attachment_lengths\":[");
                for (i, (len, _)) in c.attachments.iter().enumerate() {
                    if i > 0 {
                        j.push(b',');
                    }
                    let _ = write!(Bw(j), "{len}");
                }
                j.extend_from_slice(b"]}");
            }
            j.push(b'}');
        }
        j.push(b'}');
    }
    j.push(b']');
}

fn json_http(j: &mut Vec<u8>, m: &HttpMessage, packets: &[EioPacket<'_>]) {
    let _ = write!(Bw(j), ",\"request\":{}", m.is_request);
    if m.is_request {
        j.extend_from_slice(b",\"method\":");
        json_str(j, &m.method);
        j.extend_from_slice(b",\"target\":");
        json_str(j, &m.target);
    } else {
        let _ = write!(Bw(j), ",\"status\":{},\"reason\":", m.status);
        json_str(j, &m.reason);
        if let Some(r) = &m.in_response_to {
            j.extend_from_slice(b",\"in_response_to\":");
            json_str(j, r);
        }
    }
    j.extend_from_slice(b",\"headers\":[");
    for (i, (n, v)) in m.headers.iter().enumerate() {
        if i > 0 {
            j.push(b',');
        }
        j.push(b'[');
        json_str(j, n);
        j.push(b',');
        json_str(j, v);
        j.push(b']');
    }
    let _ = write!(
        Bw(j),
        "],\"body_wire_length\":{},\"body_length\":{},\"chunked\":{}",
        m.body_wire_len,
        m.body.len(),
        m.chunked
    );
    if let Some(e) = &m.content_encoding {
        j.extend_from_slice(b",\"content_encoding\":");
        json_str(j, e);
    }
    if !m.body.is_empty() {
        json_bytes_field(j, "body", &m.body, true);
    }
    if let Some(hs) = &m.websocket {
        j.extend_from_slice(b",\"websocket\":{\"key\":");
        opt_str(j, hs.key.as_deref());
        j.extend_from_slice(b",\"accept\":");
        opt_str(j, hs.accept.as_deref());
        j.extend_from_slice(b",\"expected_accept\":");
        opt_str(j, hs.expected_accept.as_deref());
        j.extend_from_slice(b",\"accept_ok\":");
        match hs.accept_ok {
            Some(b) => {
                let _ = write!(Bw(j), "{b}");
            }
            None => j.extend_from_slice(b"null"),
        }
        j.extend_from_slice(b",\"protocols\":");
        str_list(j, &hs.protocols);
        j.extend_from_slice(b",\"extensions\":");
        str_list(j, &hs.extensions);
        j.push(b'}');
    }
    if !packets.is_empty() {
        json_engineio(j, packets);
    }
    json_anomalies(j, &m.anomalies);
}

fn opt_str(j: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => json_str(j, s),
        None => j.extend_from_slice(b"null"),
    }
}

fn str_list(j: &mut Vec<u8>, l: &[String]) {
    j.push(b'[');
    for (i, s) in l.iter().enumerate() {
        if i > 0 {
            j.push(b',');
        }
        json_str(j, s);
    }
    j.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The escaping rules one byte at a time, to check the word-at-a-time [`json_str`].
    fn json_str_slow(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    #[test]
    fn json_str_matches_byte_at_a_time_escaping() {
        let samples = [
            "",
            "a",
            "plain ascii text longer than eight bytes",
            "42[\"send_message\",{\"room\":\"0\",\"message\":\"hi\"}]",
            "\\\\\\\\\\\\\\\\\\",
            "tab\there\nnew\rline\u{1}\u{1f}\u{7f}\u{0}end",
            "ünïcødé 😀 \u{1b}[31m \"quoted\" ……",
            "\u{1f}\u{20}\u{21}\u{22}\u{5b}\u{5c}\u{5d}\u{7e}",
        ];
        for s in samples {
            // Every alignment of every sample against the 8-byte chunks.
            for pad in 0..9 {
                let t = format!("{}{s}", "x".repeat(pad));
                let mut j = Vec::new();
                json_str(&mut j, &t);
                assert_eq!(String::from_utf8(j).unwrap(), json_str_slow(&t), "{t:?}");
            }
        }
        for b in 0u8..0x80 {
            let t = format!("abcdefg{}hijklmnop", char::from(b));
            let mut j = Vec::new();
            json_str(&mut j, &t);
            assert_eq!(String::from_utf8(j).unwrap(), json_str_slow(&t));
        }
    }

    proptest::proptest! {
        #[test]
        fn json_str_matches_slow_escaping_on_random_text(t in "[a-z\"\\\\\\x00-\\x1f\\x7f é😀]{0,40}") {
            let mut j = Vec::new();
            json_str(&mut j, &t);
            proptest::prop_assert_eq!(String::from_utf8(j).unwrap(), json_str_slow(&t));
        }
    }

    #[test]
    fn numbers_and_times_format_like_fmt() {
        for n in [
            0u64,
            1,
            9,
            10,
            11,
            99,
            100,
            101,
            999,
            1000,
            12345,
            1_700_000_000,
            u64::MAX,
        ] {
            let mut j = Vec::new();
            push_u64(&mut j, n);
            assert_eq!(String::from_utf8(j).unwrap(), n.to_string());
        }
        // Every digit count, at both ends, after text already in the buffer.
        for k in 1..20u32 {
            let p = 10u64.pow(k);
            for n in [p - 1, p, p + 1, p / 2 * 3] {
                let mut j = b"x:".to_vec();
                push_u64(&mut j, n);
                assert_eq!(String::from_utf8(j).unwrap(), format!("x:{n}"));
            }
        }
        for (ns, text) in [
            (0i64, "0.000000000"),
            (1, "0.000000001"),
            (37_000, "0.000037000"),
            (1_700_000_000_000_037_000, "1700000000.000037000"),
            (999_999_999, "0.999999999"),
            (-1_500_000_000, "-1.500000000"),
            (i64::MAX, "9223372036.854775807"),
        ] {
            let mut j = Vec::new();
            push_secs(&mut j, ns);
            assert_eq!(String::from_utf8(j).unwrap(), text);
        }
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut j = Vec::new();
        json_str(&mut j, "a\"b\\c\nd\u{1e}é");
        assert_eq!(String::from_utf8(j).unwrap(), "\"a\\\"b\\\\c\\nd\\u001eé\"");
    }

    #[test]
    fn wireshark_info_matches_tshark_wording() {
        let h = FrameHeader::new(true, Opcode::Text, Some([1, 2, 3, 4]), 5);
        assert_eq!(ws_wireshark_info(&h), "WebSocket Text [FIN] [MASKED]");
        let h = FrameHeader::new(false, Opcode::Text, None, 5);
        assert_eq!(ws_wireshark_info(&h), "WebSocket Text[FRAGMENT] ");
        let h = FrameHeader::new(true, Opcode::Close, None, 2);
        assert_eq!(ws_wireshark_info(&h), "WebSocket Connection Close [FIN]");
    }

    #[test]
    fn hex_dump_has_offsets_hex_and_ascii() {
        let mut out = Vec::new();
        hex_dump(&mut out, b"42[\"send_message\",{}]").unwrap();
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "0000  34 32 5b 22 73 65 6e 64 5f 6d 65 73 73 61 67 65   42[\"send_message\n0010  22 2c 7b 7d 5d                                    \",{}]\n"
        );
    }
}
