//! The decoding pipeline for one run: each captured packet goes through link/IP/TCP dissection,
//! the conversation table and reassembly, then the conversation's HTTP/WebSocket decoder; every
//! event that passes the filters is counted and handed to the renderer.

use std::io;

use super::capture::{Flow, Packet, Timestamp};
use super::event::Event;
use super::ipfrag;
use super::net::{self, Dissected, Skip};
use super::render::Renderer;
use super::sio;
use super::stats::Stats;
use super::stream::{AppState, Setup};
use super::tcp::{self, Endpoint, Flags, SegmentResult, Table};

/// What to decode and show.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Ports decoded as WebSocket without a handshake.
    pub ws_ports: Vec<u16>,
    pub stream: Option<u64>,
    pub port: Option<u16>,
    pub event: Option<String>,
    /// List every packet, also pure ACKs and non-TCP packets.
    pub all: bool,
    /// Stop after this many packets.
    pub count: Option<u64>,
    /// Collect the full `--stats` counters.
    pub stats: bool,
    /// The renderer parses the Socket.IO packets of common WebSocket messages itself, on its
    /// output thread ([`super::sio::SioDir::defer`]): only when nothing else here depends on
    /// them (no `--event`, no `--stats`).
    pub defer_sio: bool,
}

/// Everything the renderer may show about the packet an event came from.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The packet (None for events at the end of the capture).
    pub packet: Option<&'a Packet<'a>>,
    pub net: Option<&'a Dissected<'a>>,
    /// Seconds since the first packet.
    pub rel_time: f64,
    /// The same in nanoseconds.
    pub rel_ns: i64,
    pub stream: Option<u64>,
    pub src: Option<Endpoint>,
    pub dst: Option<Endpoint>,
    pub seg: Option<SegmentResult>,
    pub flags: Flags,
    /// The sender is the client (None when unknown).
    pub from_client: Option<bool>,
    /// Why a packet is not decoded (non-TCP packets with `--all`).
    pub skip: Option<&'a Skip>,
}

/// Idle time (capture clock) after which a finished conversation is forgotten.
const FORGET_FINISHED_NS: i128 = 60_000_000_000;
/// Idle time after which any conversation is forgotten.
const FORGET_IDLE_NS: i128 = 600_000_000_000;

/// The decoder of one run (all inputs share it, so frame numbers continue across files).
pub struct Decoder<'r> {
    opts: Options,
    table: Table<AppState>,
    renderer: &'r mut Renderer,
    pub stats: Stats,
    first_ts: Option<Timestamp>,
    packets_seen: u64,
    defrag: ipfrag::Defragmenter,
}

impl<'r> Decoder<'r> {
    pub fn new(opts: Options, renderer: &'r mut Renderer) -> Self {
        Decoder {
            opts: opts.clone(),
            table: Table::new(),
            renderer,
            stats: Stats {
                enabled: opts.stats,
                ..Stats::default()
            },
            first_ts: None,
            packets_seen: 0,
            defrag: ipfrag::Defragmenter::default(),
        }
    }

    /// Flush what was rendered so far (live capture).
    pub fn flush_output(&mut self) -> io::Result<()> {
        self.renderer.flush()
    }

    /// Number of packets handled so far.
    pub fn packets(&self) -> u64 {
        self.packets_seen
    }

    /// Decode one packet.
    pub fn packet(&mut self, pkt: &Packet<'_>) -> anyhow::Result<Flow> {
        if self.opts.count.is_some_and(|c| self.packets_seen >= c) {
            return Ok(Flow::Stop);
        }
        self.packets_seen += 1;
        let first = *self.first_ts.get_or_insert(pkt.ts);
        let rel_ns = i64::try_from(pkt.ts.nanos_since(first)).unwrap_or(i64::MAX);
        let rel_time = rel_ns as f64 / 1e9;
        self.stats.packet(pkt.data.len(), pkt.ts);
        match net::dissect(pkt.linktype, pkt.data) {
            Ok(net) => self.dissected(pkt, net, rel_time, rel_ns),
            Err(Skip::Fragment(_)) => match self.defragment(pkt) {
                // The datagram is complete: it is decoded as the packet that completed it.
                Ok(data) => {
                    let whole = Packet {
                        data: &data,
                        orig_len: u32::try_from(data.len()).unwrap_or(u32::MAX),
                        ..*pkt
                    };
                    match net::dissect(whole.linktype, whole.data) {
                        Ok(net) => self.dissected(&whole, net, rel_time, rel_ns),
                        Err(skip) => self.skipped(pkt, &skip, rel_time, rel_ns),
                    }
                }
                Err(skip) => self.skipped(pkt, &skip, rel_time, rel_ns),
            },
            Err(skip) => self.skipped(pkt, &skip, rel_time, rel_ns),
        }
    }

    /// Feeds an IP fragment to the reassembly: the whole packet (link header, then the datagram)
    /// once it completes one, else why the packet is not decoded now.
    fn defragment(&mut self, pkt: &Packet<'_>) -> Result<Vec<u8>, Skip> {
        self.stats.ip_fragments += 1;
        let start = net::ip_start(pkt.linktype, pkt.data).ok_or(Skip::Fragment(String::new()))?;
        let (link, ip) = pkt.data.split_at(start.min(pkt.data.len()));
        match self.defrag.fragment(ip, pkt.ts.as_nanos()) {
            ipfrag::Outcome::Held => Err(Skip::Fragment(ipfrag::describe(ip))),
            ipfrag::Outcome::Bad(why) => Err(Skip::Malformed(format!("IP fragment: {why}"))),
            ipfrag::Outcome::Complete { packet, .. } => {
                self.stats.ip_reassembled += 1;
                let mut data = Vec::with_capacity(link.len() + packet.len());
                data.extend_from_slice(link);
                data.extend_from_slice(&packet);
                Ok(data)
            }
        }
    }

    /// A packet that is not a TCP segment to follow: counted, and listed with `--all`.
    fn skipped(
        &mut self,
        pkt: &Packet<'_>,
        skip: &Skip,
        rel_time: f64,
        rel_ns: i64,
    ) -> anyhow::Result<Flow> {
        self.stats.skipped(skip);
        if self.opts.all
            && self.opts.stream.is_none()
            && self.opts.port.is_none()
            && self.opts.event.is_none()
        {
            let ctx = Ctx {
                packet: Some(pkt),
                net: None,
                rel_time,
                rel_ns,
                stream: None,
                src: None,
                dst: None,
                seg: None,
                flags: Flags::default(),
                from_client: None,
                skip: Some(skip),
            };
            self.renderer.packet_line(&ctx)?;
            self.renderer.end_packet(&ctx)?;
        }
        Ok(Flow::Continue)
    }

    /// Decode a TCP segment.
    fn dissected(
        &mut self,
        pkt: &Packet<'_>,
        net: net::Dissected<'_>,
        rel_time: f64,
        rel_ns: i64,
    ) -> anyhow::Result<Flow> {
        let tcp = &net.tcp;
        let flags = Flags {
            syn: tcp.syn(),
            ack: tcp.ack(),
            fin: tcp.fin(),
            rst: tcp.rst(),
            psh: tcp.psh(),
            urg: tcp.urg(),
            ece: tcp.ece(),
            cwr: tcp.cwr(),
        };
        let seg = tcp::Segment {
            src: Endpoint {
                ip: net.src(),
                port: tcp.source_port(),
            },
            dst: Endpoint {
                ip: net.dst(),
                port: tcp.destination_port(),
            },
            seq: tcp.sequence_number(),
            ack: tcp.acknowledgment_number(),
            flags,
            window: tcp.window_size(),
            wscale: if flags.syn {
                tcp.options_iterator().find_map(|o| match o {
                    Ok(etherparse::TcpOptionElement::WindowScale(s)) => Some(s),
                    _ => None,
                })
            } else {
                None
            },
            payload: net.payload,
            time_ns: pkt.ts.as_nanos(),
        };
        let ws_ports = &self.opts.ws_ports;
        let defer_sio = self.opts.defer_sio && self.opts.event.is_none() && !self.opts.stats;
        let (slot, dir, new) = self.table.lookup(&seg, |c| {
            let side = |p: u16| ws_ports.contains(&p);
            let ws_port_side = if side(c.endpoints[1].port) && !side(c.endpoints[0].port) {
                Some(1)
            } else if side(c.endpoints[0].port) {
                Some(0)
            } else {
                None
            };
            let syn_from = (flags.syn && !flags.ack).then_some(0);
            let mut app = AppState::new(Setup {
                ws_port_side,
                syn_from,
            });
            app.defer_sio = defer_sio;
            app
        });
        if new {
            self.stats.new_stream();
        }
        let Some((conv, app)) = self.table.get_mut(slot) else {
            return Ok(Flow::Continue);
        };
        let visible = self.opts.stream.is_none_or(|s| s == conv.index)
            && self
                .opts
                .port
                .is_none_or(|p| conv.endpoints.iter().any(|e| e.port == p));
        let result = conv.analyze(dir, &seg);
        if app.client.is_none() {
            app.client = conv.syn_from;
        }
        let from_client = app.client.map(|c| c == dir);
        let ctx = Ctx {
            packet: Some(pkt),
            net: Some(&net),
            rel_time,
            rel_ns,
            stream: Some(conv.index),
            src: Some(seg.src),
            dst: Some(seg.dst),
            seg: Some(result),
            flags,
            from_client,
            skip: None,
        };
        let renderer = &mut *self.renderer;
        let stats = &mut self.stats;
        let event_filter = self.opts.event.as_deref();
        let show_tcp = visible && event_filter.is_none();
        let mut shown = false;
        if show_tcp && (result.analysis.any() || flags.syn || flags.fin || flags.rst) {
            let note = super::event::TcpNote {
                labels: result.analysis.labels(),
            };
            stats.tcp_note(&result);
            renderer.event(&ctx, &Event::Tcp(&note))?;
            shown = true;
        }
        let mut io_error: Option<io::Error> = None;
        let number = pkt.number;
        {
            // `reversed`: data of the other direction, released by this packet's ACK.
            let mut emit = |ev: &Event<'_>, reversed: bool| {
                if io_error.is_some() || !visible {
                    return;
                }
                if let Some(name) = event_filter {
                    if !carries_event(ev, name) {
                        return;
                    }
                }
                let mut ctx = Ctx {
                    from_client: app_from_client(ev, from_client.map(|c| c != reversed)),
                    ..ctx
                };
                if reversed {
                    std::mem::swap(&mut ctx.src, &mut ctx.dst);
                }
                stats.event(&ctx, ev);
                shown = true;
                if let Err(e) = renderer.event(&ctx, ev) {
                    io_error = Some(e);
                }
            };
            if visible {
                conv.reassemble(dir, &seg, tcp::DEFAULT_PENDING_LIMIT, |d_dir, d| {
                    let reversed = d_dir != dir;
                    app.deliver(d_dir, d, number, &mut |ev| emit(ev, reversed));
                });
            } else {
                conv.reassemble(dir, &seg, tcp::DEFAULT_PENDING_LIMIT, |_, _| {});
            }
        }
        if let Some(e) = io_error {
            return Err(e.into());
        }
        if visible && !shown && self.opts.all && event_filter.is_none() {
            self.renderer.packet_line(&ctx)?;
            shown = true;
        }
        if shown {
            self.renderer.end_packet(&ctx)?;
        }
        if self.packets_seen % 4096 == 0 {
            self.sweep(seg.time_ns)?;
        }
        Ok(Flow::Continue)
    }

    /// Forget conversations that ended (or went idle) long ago, so memory stays bounded.
    fn sweep(&mut self, now: i128) -> io::Result<()> {
        for slot in self.table.slots() {
            let forget = self.table.get(slot).is_some_and(|(c, _)| {
                let idle = now - c.last_ns;
                (c.finished() && idle > FORGET_FINISHED_NS) || idle > FORGET_IDLE_NS
            });
            if forget {
                self.end_conversation(slot)?;
                if let Some((c, _)) = self.table.get(slot) {
                    // Its transcript is complete: write it now rather than hold it to the end.
                    self.renderer.end_stream(c.index)?;
                }
                self.table.release(slot);
            }
        }
        Ok(())
    }

    /// End of input: give up every hole, report unfinished frames and messages.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        let mut slots = self.table.slots();
        slots.sort_by_key(|&s| self.table.get(s).map_or(0, |(c, _)| c.index));
        for slot in slots {
            self.end_conversation(slot)?;
        }
        Ok(())
    }

    /// A conversation ends (end of input, or forgotten): deliver what is held back, report what
    /// is unfinished, record its totals.
    fn end_conversation(&mut self, slot: tcp::Slot) -> io::Result<()> {
        let Some((conv, app)) = self.table.get_mut(slot) else {
            return Ok(());
        };
        let visible = self.opts.stream.is_none_or(|s| s == conv.index)
            && self
                .opts
                .port
                .is_none_or(|p| conv.endpoints.iter().any(|e| e.port == p));
        if !visible {
            return Ok(());
        }
        let ctx = Ctx {
            packet: None,
            net: None,
            rel_time: 0.0,
            rel_ns: 0,
            stream: Some(conv.index),
            src: Some(conv.endpoints[0]),
            dst: Some(conv.endpoints[1]),
            seg: None,
            flags: Flags::default(),
            from_client: None,
            skip: None,
        };
        let client = app.client;
        let renderer = &mut *self.renderer;
        let stats = &mut self.stats;
        let event_filter = self.opts.event.as_deref();
        let mut io_error: Option<io::Error> = None;
        let mut emit = |ev: &Event<'_>, dir: Option<usize>| {
            if io_error.is_some() {
                return;
            }
            if let Some(name) = event_filter {
                if !carries_event(ev, name) {
                    return;
                }
            }
            let mut ctx = Ctx {
                from_client: app_from_client(ev, dir.and_then(|d| client.map(|c| c == d))),
                ..ctx
            };
            if dir == Some(1) {
                std::mem::swap(&mut ctx.src, &mut ctx.dst);
            }
            stats.event(&ctx, ev);
            if let Err(e) = renderer.event(&ctx, ev) {
                io_error = Some(e);
            }
        };
        for dir in 0..2 {
            conv.flush(dir, |d| {
                app.deliver(dir, d, 0, &mut |ev| emit(ev, Some(dir)))
            });
        }
        app.finish(&mut |ev| emit(ev, None));
        if let Some(e) = io_error {
            return Err(e);
        }
        self.stats.stream_summary(conv, app);
        Ok(())
    }
}

/// The client-side flag of an event: WebSocket frames know their sender's role.
fn app_from_client(ev: &Event<'_>, fallback: Option<bool>) -> Option<bool> {
    match ev {
        Event::Ws(f) => Some(f.sender == crate::wire::ws::Role::Client),
        Event::Http(m, _) => Some(m.is_request),
        _ => fallback,
    }
}

/// Whether an event carries a Socket.IO event called `name` (for `--event`).
pub fn carries_event(ev: &Event<'_>, name: &str) -> bool {
    let named = |p: &sio::EioPacket<'_>| {
        p.sio.as_ref().is_some_and(|s| {
            s.packet
                .as_ref()
                .and_then(|r| r.event())
                .is_some_and(|e| e == name)
                || s.completed
                    .as_ref()
                    .and_then(|c| c.event.as_deref())
                    .is_some_and(|e| e == name)
        })
    };
    match ev {
        Event::Ws(f) => f
            .message
            .as_ref()
            .is_some_and(|m| m.engineio.iter().any(named)),
        Event::Http(_, packets) => packets.iter().any(named),
        _ => false,
    }
}
