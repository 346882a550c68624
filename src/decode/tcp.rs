//! TCP conversations: stream indices as tshark's `tcp.stream`, sequence analysis (retransmission,
//! spurious retransmission, out-of-order, gaps, keep-alive, duplicate ACK) and in-order reassembly
//! per direction with bounded buffering of out-of-order data.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

/// A small fast hasher for flow keys (the FxHash multiply-rotate): the keys are not chosen by an
/// attacker who could exploit collisions beyond slowing one run down, and SipHash was a visible
/// share of the per-packet cost.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher(u64);

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            if let Some(dst) = w.get_mut(..rest.len()) {
                dst.copy_from_slice(rest);
            }
            self.add(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// `HashMap` with [`FxHasher`].
pub type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// One side of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

/// TCP flags of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub psh: bool,
    pub urg: bool,
    pub ece: bool,
    pub cwr: bool,
}

impl Flags {
    /// `[SYN, ACK]` style, as in Wireshark's Info column.
    pub fn bracketed(self) -> String {
        let mut parts: Vec<&str> = Vec::with_capacity(4);
        if self.fin {
            parts.push("FIN");
        }
        if self.syn {
            parts.push("SYN");
        }
        if self.rst {
            parts.push("RST");
        }
        if self.psh {
            parts.push("PSH");
        }
        if self.ack {
            parts.push("ACK");
        }
        if self.urg {
            parts.push("URG");
        }
        if self.ece {
            parts.push("ECE");
        }
        if self.cwr {
            parts.push("CWR");
        }
        format!("[{}]", parts.join(", "))
    }

    /// The flags byte (low 8 bits of the TCP flags field).
    pub fn bits(self) -> u16 {
        u16::from(self.fin)
            | u16::from(self.syn) << 1
            | u16::from(self.rst) << 2
            | u16::from(self.psh) << 3
            | u16::from(self.ack) << 4
            | u16::from(self.urg) << 5
            | u16::from(self.ece) << 6
            | u16::from(self.cwr) << 7
    }
}

/// The fields of a TCP segment the reassembler needs.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub src: Endpoint,
    pub dst: Endpoint,
    pub seq: u32,
    pub ack: u32,
    pub flags: Flags,
    pub window: u16,
    /// The window scale option of a SYN (RFC 7323 §2.2).
    pub wscale: Option<u8>,
    pub payload: &'a [u8],
    /// Capture time in nanoseconds (for closing idle conversations).
    pub time_ns: i128,
}

/// Sequence analysis of one segment (Wireshark's `tcp.analysis.*` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Analysis {
    pub retransmission: bool,
    pub spurious_retransmission: bool,
    pub out_of_order: bool,
    /// Bytes before this segment that were never seen (`[TCP Previous segment not captured]`).
    pub previous_segment_not_captured: Option<u64>,
    pub keep_alive: bool,
    pub dup_ack: Option<u32>,
    pub zero_window: bool,
    pub acked_unseen_segment: bool,
    /// Part of the segment overlapped data already received.
    pub overlap: bool,
}

impl Analysis {
    pub fn any(&self) -> bool {
        *self != Analysis::default()
    }

    /// Wireshark's Info-column prefixes, e.g. `[TCP Spurious Retransmission] `.
    pub fn labels(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.previous_segment_not_captured.is_some() {
            v.push("TCP Previous segment not captured".into());
        }
        if self.spurious_retransmission {
            v.push("TCP Spurious Retransmission".into());
        } else if self.retransmission {
            v.push("TCP Retransmission".into());
        }
        if self.out_of_order {
            v.push("TCP Out-Of-Order".into());
        }
        if self.keep_alive {
            v.push("TCP Keep-Alive".into());
        }
        if let Some(n) = self.dup_ack {
            v.push(format!("TCP Dup ACK #{n}"));
        }
        if self.zero_window {
            v.push("TCP ZeroWindow".into());
        }
        if self.acked_unseen_segment {
            v.push("TCP ACKed unseen segment".into());
        }
        v
    }
}

/// What the reassembler hands to the application decoder, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery<'a> {
    Data(&'a [u8]),
    /// This many bytes are missing from the stream (never captured, or given up on).
    Gap(u64),
    /// The sender closed its direction (FIN reached in order).
    Fin,
    /// The connection was reset.
    Reset,
}

/// Per-direction sequence state.
#[derive(Debug, Default)]
struct Dir {
    /// Base for relative sequence numbers (ISN, or first seq - 1 without a SYN).
    base: Option<u32>,
    /// Next in-order byte expected, as (absolute seq, relative offset from base).
    next: Option<(u32, u64)>,
    /// End of the highest byte seen (delivered or buffered), relative.
    high: u64,
    /// Out-of-order data waiting for a hole to fill: relative start -> bytes.
    pending: BTreeMap<u64, Vec<u8>>,
    pending_bytes: usize,
    /// Relative sequence number of a FIN, once seen.
    fin_at: Option<u64>,
    fin_delivered: bool,
    /// Highest ACK this side sent (relative to the other side's base).
    max_ack: Option<u64>,
    last_ack: Option<(u32, u16)>,
    dup_acks: u32,
    /// Window scale announced in this side's SYN.
    wscale: Option<u8>,
    /// Capture time when out-of-order data started waiting for a hole to fill.
    hole_since: Option<i128>,
}

impl Dir {
    /// Relative offset of `seq` (64-bit, wrap-aware around the next expected byte).
    fn rel(&self, seq: u32) -> u64 {
        match (self.next, self.base) {
            (Some((abs, rel)), _) => {
                (rel as i64 + i64::from(seq.wrapping_sub(abs) as i32)).max(0) as u64
            }
            (None, Some(base)) => u64::from(seq.wrapping_sub(base)),
            (None, None) => 0,
        }
    }
}

/// A TCP conversation.
#[derive(Debug)]
pub struct Conversation {
    /// tshark's `tcp.stream`.
    pub index: u64,
    /// `endpoints[0]` sent the first packet seen.
    pub endpoints: [Endpoint; 2],
    /// Which endpoint opened the connection (sent the SYN), when known.
    pub syn_from: Option<usize>,
    dirs: [Dir; 2],
    pub packets: u64,
    pub bytes: [u64; 2],
    pub first_ns: i128,
    pub last_ns: i128,
    pub reset: bool,
}

/// Result of feeding one segment.
#[derive(Debug, Clone, Copy)]
pub struct SegmentResult {
    pub index: u64,
    /// 0 when sent by `endpoints[0]`, 1 otherwise.
    pub dir: usize,
    pub rel_seq: u64,
    pub rel_ack: u64,
    pub next_rel_seq: u64,
    pub analysis: Analysis,
    /// The conversation is new with this packet.
    pub new_stream: bool,
    /// The window, scaled when both SYNs carried the window scale option (RFC 7323 §2.3).
    pub window: u32,
}

/// Out-of-order bytes buffered per direction before a hole is given up on.
pub const DEFAULT_PENDING_LIMIT: usize = 4 << 20;
/// How long (capture time) a hole the receiver has acknowledged past may wait for a late copy
/// before it is reported as a gap: Linux's minimum retransmission timeout (RFC 6298 §2.4 allows
/// lower than 1 s; Linux uses 200 ms).
pub const HOLE_ACK_WAIT_NS: i128 = 200_000_000;

impl Conversation {
    fn new(index: u64, first: Endpoint, second: Endpoint, now: i128) -> Self {
        Conversation {
            index,
            endpoints: [first, second],
            syn_from: None,
            dirs: [Dir::default(), Dir::default()],
            packets: 0,
            bytes: [0, 0],
            first_ns: now,
            last_ns: now,
            reset: false,
        }
    }

    /// Both directions finished (FIN delivered) or the connection was reset.
    pub fn finished(&self) -> bool {
        self.reset || (self.dirs[0].fin_delivered && self.dirs[1].fin_delivered)
    }

    /// Bytes currently buffered out of order (both directions).
    pub fn pending_bytes(&self) -> usize {
        self.dirs[0].pending_bytes + self.dirs[1].pending_bytes
    }

    /// Feed a segment: [`Conversation::analyze`] then [`Conversation::reassemble`].
    pub fn segment<F>(
        &mut self,
        dir: usize,
        seg: &Segment<'_>,
        limit: usize,
        deliver: F,
    ) -> SegmentResult
    where
        F: FnMut(usize, Delivery<'_>),
    {
        let r = self.analyze(dir, seg);
        self.reassemble(dir, seg, limit, deliver);
        r
    }

    /// Sequence analysis of a segment (call before [`Conversation::reassemble`] with the same one).
    pub fn analyze(&mut self, dir: usize, seg: &Segment<'_>) -> SegmentResult {
        let other = 1 - dir;
        self.packets += 1;
        self.last_ns = seg.time_ns;
        let mut analysis = Analysis::default();
        let len = seg.payload.len() as u64;

        // SYN: the initial sequence number (RFC 9293 §3.4).
        if seg.flags.syn {
            if !seg.flags.ack {
                self.syn_from = Some(dir);
            } else if self.syn_from.is_none() {
                self.syn_from = Some(other);
            }
            let d = &mut self.dirs[dir];
            d.wscale = seg.wscale;
            if d.base == Some(seg.seq) && d.next.is_some() {
                analysis.retransmission = true;
            }
            d.base = Some(seg.seq);
            if d.next.is_none() || d.next.is_some_and(|(_, r)| r <= 1) {
                d.next = Some((seg.seq.wrapping_add(1), 1));
                d.high = d.high.max(1);
            }
        }

        {
            let d = &mut self.dirs[dir];
            if d.next.is_none() {
                // Capture started mid-stream: this segment's seq becomes relative 1, as Wireshark.
                let base = d.base.unwrap_or(seg.seq.wrapping_sub(1));
                d.base = Some(base);
                let rel = u64::from(seg.seq.wrapping_sub(base));
                d.next = Some((seg.seq, rel));
                d.high = d.high.max(rel);
            }
        }

        // The ACK field: learn the peer's base from it if we have not seen the peer yet.
        let mut rel_ack = 0;
        if seg.flags.ack {
            let peer = &mut self.dirs[other];
            if peer.base.is_none() {
                peer.base = Some(seg.ack.wrapping_sub(1));
            }
            rel_ack = peer.rel(seg.ack);
            if rel_ack > peer.high && peer.next.is_some() && !seg.flags.syn {
                analysis.acked_unseen_segment = true;
            }
            let me = &mut self.dirs[dir];
            me.max_ack = Some(me.max_ack.map_or(rel_ack, |m| m.max(rel_ack)));
        }

        let d = &mut self.dirs[dir];
        let start = if seg.flags.syn {
            d.rel(seg.seq.wrapping_add(1))
        } else {
            d.rel(seg.seq)
        };
        let end = start + len;
        let next_rel = d.next.map_or(0, |(_, r)| r);
        let seg_end_with_fin = end + u64::from(seg.flags.fin);

        // Sequence analysis (Wireshark's tcp_analyze_sequence_number, simplified).
        if len > 0 || seg.flags.fin {
            let peer_acked = self.dirs[other].max_ack;
            let d = &mut self.dirs[dir];
            if len <= 1
                && !seg.flags.syn
                && !seg.flags.fin
                && !seg.flags.rst
                && start + 1 == next_rel
                && start < d.high
            {
                analysis.keep_alive = true;
            } else if start > d.high {
                analysis.previous_segment_not_captured = Some(start - d.high);
            } else if start < d.high {
                let seen = covered(d, start, end, next_rel);
                if peer_acked.is_some_and(|a| seg_end_with_fin <= a) && len > 0 {
                    analysis.spurious_retransmission = true;
                    analysis.retransmission = true;
                } else if seen == len && len > 0 {
                    analysis.retransmission = true;
                } else if seen > 0 {
                    analysis.retransmission = true;
                    analysis.overlap = true;
                } else {
                    analysis.out_of_order = true;
                }
            }
        } else if seg.flags.ack && !seg.flags.syn && !seg.flags.rst {
            // Duplicate ACK: same ACK and window, no data (RFC 5681 §2).
            let d = &mut self.dirs[dir];
            if d.last_ack == Some((seg.ack, seg.window)) {
                d.dup_acks += 1;
                analysis.dup_ack = Some(d.dup_acks);
            } else {
                d.dup_acks = 0;
            }
        }
        if seg.window == 0 && !seg.flags.syn && !seg.flags.fin && !seg.flags.rst {
            analysis.zero_window = true;
        }
        if seg.flags.ack {
            let d = &mut self.dirs[dir];
            if len > 0 || seg.flags.fin || seg.flags.syn {
                d.dup_acks = 0;
            }
            d.last_ack = Some((seg.ack, seg.window));
        }

        SegmentResult {
            index: self.index,
            dir,
            rel_seq: if seg.flags.syn { 0 } else { start },
            rel_ack,
            next_rel_seq: if seg.flags.syn {
                1
            } else {
                seg_end_with_fin.max(if len == 0 { start } else { end })
            },
            analysis,
            new_stream: self.packets == 1,
            window: match (self.dirs[dir].wscale, self.dirs[other].wscale) {
                // RFC 7323 §2.2: the window field of a SYN is never scaled.
                (Some(shift), Some(_)) if !seg.flags.syn => u32::from(seg.window) << shift.min(14),
                _ => u32::from(seg.window),
            },
        }
    }

    /// Put the segment's data in order; in-order bytes (and gaps, FIN, RST) go to `deliver` with
    /// the direction they belong to (the other direction's held-back data is released when this
    /// segment acknowledges bytes beyond a hole: they were delivered, just not captured).
    pub fn reassemble<F>(&mut self, dir: usize, seg: &Segment<'_>, limit: usize, mut deliver: F)
    where
        F: FnMut(usize, Delivery<'_>),
    {
        let len = seg.payload.len() as u64;
        let start = {
            let d = &self.dirs[dir];
            if seg.flags.syn {
                d.rel(seg.seq.wrapping_add(1))
            } else {
                d.rel(seg.seq)
            }
        };
        let end = start + len;
        let next_rel = self.dirs[dir].next.map_or(0, |(_, r)| r);
        let mut own = |d: Delivery<'_>| deliver(dir, d);
        let d = &mut self.dirs[dir];
        if seg.flags.fin {
            d.fin_at = Some(end);
        }
        // A FIN takes one sequence number (RFC 9293 §3.4).
        d.high = d.high.max(end + u64::from(seg.flags.fin));
        self.bytes[dir] += len;
        if len > 0 {
            if end <= next_rel {
                // Entirely old data: nothing to deliver.
            } else if start <= next_rel {
                let skip = (next_rel - start) as usize;
                let fresh = seg.payload.get(skip..).unwrap_or_default();
                own(Delivery::Data(fresh));
                advance(d, fresh.len() as u64);
                drain(d, &mut own);
            } else {
                // A hole before this segment: buffer it (bounded), give up the hole when over the limit.
                if d.pending.is_empty() {
                    d.hole_since = Some(seg.time_ns);
                }
                insert_pending(d, start, seg.payload);
                while d.pending_bytes > limit {
                    if !skip_hole(d, &mut own) {
                        break;
                    }
                }
            }
        }
        let d = &mut self.dirs[dir];
        deliver_fin(d, &mut own);
        if seg.flags.rst {
            self.reset = true;
            flush_dir(&mut self.dirs[dir], &mut own);
            own(Delivery::Reset);
        }
        // The receiver acknowledged bytes past a hole a while ago: it got them, the capture did
        // not, and the hole will never fill (a retransmission would have come within an RTO).
        for x in [dir, 1 - dir] {
            let Some(acked) = self.dirs[1 - x].max_ack else {
                continue;
            };
            let mut to_x = |d: Delivery<'_>| deliver(x, d);
            let o = &mut self.dirs[x];
            while let Some((&pending_start, _)) = o.pending.first_key_value() {
                let o_next = o.next.map_or(0, |(_, r)| r);
                let waited = o
                    .hole_since
                    .is_some_and(|t| seg.time_ns - t >= HOLE_ACK_WAIT_NS);
                if pending_start > o_next && pending_start <= acked && waited {
                    skip_hole(o, &mut to_x);
                    o.hole_since = if o.pending.is_empty() {
                        None
                    } else {
                        Some(seg.time_ns)
                    };
                } else {
                    break;
                }
            }
            deliver_fin(o, &mut to_x);
        }
    }

    /// End of input: give up every hole and deliver what is buffered.
    pub fn flush<F>(&mut self, dir: usize, mut deliver: F)
    where
        F: FnMut(Delivery<'_>),
    {
        flush_dir(&mut self.dirs[dir], &mut deliver);
    }

    /// Relative sequence of the next in-order byte, per direction.
    pub fn next_seq(&self, dir: usize) -> u64 {
        self.dirs[dir].next.map_or(0, |(_, r)| r)
    }
}

/// Bytes of `[start, end)` already received (delivered before `next_rel`, or buffered).
fn covered(d: &Dir, start: u64, end: u64, next_rel: u64) -> u64 {
    let mut n = end.min(next_rel).saturating_sub(start);
    for (&s, data) in d.pending.range(..end) {
        let e = s + data.len() as u64;
        let lo = s.max(start).max(next_rel);
        let hi = e.min(end);
        if hi > lo {
            n += hi - lo;
        }
    }
    n.min(end - start)
}

fn advance(d: &mut Dir, n: u64) {
    if let Some((abs, rel)) = d.next {
        d.next = Some((abs.wrapping_add(n as u32), rel + n));
    }
}

fn insert_pending(d: &mut Dir, start: u64, data: &[u8]) {
    // Keep the longer copy when two segments start at the same place.
    match d.pending.get(&start) {
        Some(existing) if existing.len() >= data.len() => {}
        Some(existing) => {
            d.pending_bytes = d.pending_bytes - existing.len() + data.len();
            d.pending.insert(start, data.to_vec());
        }
        None => {
            d.pending_bytes += data.len();
            d.pending.insert(start, data.to_vec());
        }
    }
}

/// Deliver buffered segments that are now contiguous with the next expected byte.
fn drain<F: FnMut(Delivery<'_>)>(d: &mut Dir, deliver: &mut F) {
    loop {
        let next_rel = d.next.map_or(0, |(_, r)| r);
        let Some((&start, _)) = d.pending.first_key_value() else {
            return;
        };
        if start > next_rel {
            return;
        }
        let Some((_, data)) = d.pending.pop_first() else {
            return;
        };
        d.pending_bytes -= data.len();
        let end = start + data.len() as u64;
        if end > next_rel {
            let fresh = data.get((next_rel - start) as usize..).unwrap_or_default();
            deliver(Delivery::Data(fresh));
            advance(d, fresh.len() as u64);
        }
    }
}

/// Give up the first hole: report it as a gap and deliver what follows. False if nothing is buffered.
fn skip_hole<F: FnMut(Delivery<'_>)>(d: &mut Dir, deliver: &mut F) -> bool {
    let next_rel = d.next.map_or(0, |(_, r)| r);
    let Some((&start, _)) = d.pending.first_key_value() else {
        return false;
    };
    if start > next_rel {
        deliver(Delivery::Gap(start - next_rel));
        advance(d, start - next_rel);
    }
    drain(d, deliver);
    true
}

fn deliver_fin<F: FnMut(Delivery<'_>)>(d: &mut Dir, deliver: &mut F) {
    if let Some(fin) = d.fin_at {
        let next_rel = d.next.map_or(0, |(_, r)| r);
        if !d.fin_delivered && next_rel >= fin {
            d.fin_delivered = true;
            deliver(Delivery::Fin);
        }
    }
}

fn flush_dir<F: FnMut(Delivery<'_>)>(d: &mut Dir, deliver: &mut F) {
    while skip_hole(d, deliver) {}
    if let Some(fin) = d.fin_at {
        let next_rel = d.next.map_or(0, |(_, r)| r);
        if fin > next_rel && !d.fin_delivered {
            deliver(Delivery::Gap(fin - next_rel));
            advance(d, fin - next_rel);
        }
    }
    deliver_fin(d, deliver);
}

/// All conversations of a capture, keyed by their endpoint pair, each with the caller's state `X`.
#[derive(Debug)]
pub struct Table<X> {
    map: FxHashMap<(Endpoint, Endpoint), usize>,
    slots: Vec<Option<(Conversation, X)>>,
    free: Vec<usize>,
    next_index: u64,
}

/// A conversation's slot in the [`Table`].
pub type Slot = usize;

impl<X> Default for Table<X> {
    fn default() -> Self {
        Table {
            map: FxHashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            next_index: 0,
        }
    }
}

impl<X> Table<X> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Find (or create) the conversation of a segment; returns its slot, direction and whether it is new.
    pub fn lookup(
        &mut self,
        seg: &Segment<'_>,
        make: impl FnOnce(&Conversation) -> X,
    ) -> (Slot, usize, bool) {
        let key = if seg.src <= seg.dst {
            (seg.src, seg.dst)
        } else {
            (seg.dst, seg.src)
        };
        if let Some(&slot) = self.map.get(&key) {
            if let Some(Some((c, _))) = self.slots.get(slot) {
                // A new SYN on a finished conversation starts a new stream (port reuse), as tshark.
                let reuse = seg.flags.syn && !seg.flags.ack && c.finished();
                if !reuse {
                    let dir = usize::from(c.endpoints[0] != seg.src);
                    return (slot, dir, false);
                }
            }
        }
        let conv = Conversation::new(self.next_index, seg.src, seg.dst, seg.time_ns);
        let extra = make(&conv);
        let conv = (conv, extra);
        self.next_index += 1;
        let slot = match self.free.pop() {
            Some(s) => {
                if let Some(place) = self.slots.get_mut(s) {
                    *place = Some(conv);
                }
                s
            }
            None => {
                self.slots.push(Some(conv));
                self.slots.len() - 1
            }
        };
        if let Some(old) = self.map.insert(key, slot) {
            self.release(old);
        }
        (slot, 0, true)
    }

    pub fn get(&self, slot: Slot) -> Option<&(Conversation, X)> {
        self.slots.get(slot).and_then(|s| s.as_ref())
    }

    pub fn get_mut(&mut self, slot: Slot) -> Option<&mut (Conversation, X)> {
        self.slots.get_mut(slot).and_then(|s| s.as_mut())
    }

    /// Forget a conversation (its slot is reused).
    pub fn release(&mut self, slot: Slot) {
        if let Some(place) = self.slots.get_mut(slot) {
            if let Some((c, _)) = place.take() {
                let key = if c.endpoints[0] <= c.endpoints[1] {
                    (c.endpoints[0], c.endpoints[1])
                } else {
                    (c.endpoints[1], c.endpoints[0])
                };
                if self.map.get(&key) == Some(&slot) {
                    self.map.remove(&key);
                }
                self.free.push(slot);
            }
        }
    }

    /// Slots of the live conversations.
    pub fn slots(&self) -> Vec<Slot> {
        (0..self.slots.len())
            .filter(|&s| self.slots.get(s).is_some_and(|c| c.is_some()))
            .collect()
    }

    /// Conversations created so far.
    pub fn count(&self) -> u64 {
        self.next_index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(port: u16) -> Endpoint {
        Endpoint {
            ip: IpAddr::from([127, 0, 0, 1]),
            port,
        }
    }

    fn seg(seq: u32, payload: &[u8], flags: Flags) -> Segment<'_> {
        Segment {
            src: ep(1000),
            dst: ep(80),
            seq,
            ack: 0,
            flags,
            window: 100,
            wscale: None,
            payload,
            time_ns: 0,
        }
    }

    fn ack() -> Flags {
        Flags {
            ack: true,
            psh: true,
            ..Flags::default()
        }
    }

    /// Feed segments (client -> server) and collect what is delivered and the analysis of each.
    fn run(segs: &[Segment<'_>], limit: usize) -> (Vec<String>, Vec<Analysis>) {
        let mut c = Conversation::new(0, ep(1000), ep(80), 0);
        let mut out = Vec::new();
        let mut an = Vec::new();
        for s in segs {
            let r = c.segment(0, s, limit, |_, d| out.push(show(d)));
            an.push(r.analysis);
        }
        c.flush(0, |d| out.push(show(d)));
        (out, an)
    }

    fn show(d: Delivery<'_>) -> String {
        match d {
            Delivery::Data(b) => String::from_utf8_lossy(b).into_owned(),
            Delivery::Gap(n) => format!("<gap {n}>"),
            Delivery::Fin => "<fin>".into(),
            Delivery::Reset => "<rst>".into(),
        }
    }

    #[test]
    fn in_order_data_is_delivered_as_is() {
        let syn = Flags {
            syn: true,
            ..Flags::default()
        };
        let (out, an) = run(
            &[
                seg(99, b"", syn),
                seg(100, b"hello ", ack()),
                seg(106, b"world", ack()),
            ],
            1000,
        );
        assert_eq!(out, ["hello ", "world"]);
        assert!(an.iter().all(|a| !a.any()));
    }

    #[test]
    fn out_of_order_segments_are_put_back_in_order() {
        let (out, an) = run(
            &[
                seg(100, b"aa", ack()),
                seg(104, b"cc", ack()),
                seg(102, b"bb", ack()),
            ],
            1000,
        );
        assert_eq!(out.concat(), "aabbcc");
        assert_eq!(an[1].previous_segment_not_captured, Some(2));
        assert!(an[2].out_of_order);
    }

    #[test]
    fn retransmissions_and_overlaps_are_flagged_and_not_delivered_twice() {
        let (out, an) = run(
            &[
                seg(100, b"abcd", ack()),
                seg(100, b"abcd", ack()),
                seg(102, b"cdef", ack()),
            ],
            1000,
        );
        assert_eq!(out.concat(), "abcdef");
        assert!(an[1].retransmission && !an[1].overlap);
        assert!(an[2].retransmission && an[2].overlap);
    }

    #[test]
    fn spurious_retransmission_is_data_the_peer_already_acked() {
        let mut c = Conversation::new(0, ep(1000), ep(80), 0);
        let mut out = Vec::new();
        c.segment(0, &seg(100, b"abcd", ack()), 1000, |_, d| out.push(show(d)));
        let peer_ack = Segment {
            src: ep(80),
            dst: ep(1000),
            seq: 5000,
            ack: 104,
            flags: ack(),
            window: 10,
            wscale: None,
            payload: b"",
            time_ns: 0,
        };
        c.segment(1, &peer_ack, 1000, |_, _| {});
        let r = c.segment(0, &seg(100, b"abcd", ack()), 1000, |_, d| out.push(show(d)));
        assert!(r.analysis.spurious_retransmission);
        assert_eq!(out, ["abcd"]);
    }

    #[test]
    fn a_hole_that_never_fills_is_reported_as_a_gap() {
        let (out, an) = run(&[seg(100, b"aa", ack()), seg(110, b"zz", ack())], 1000);
        assert_eq!(out, ["aa", "<gap 8>", "zz"]);
        assert_eq!(an[1].previous_segment_not_captured, Some(8));
    }

    #[test]
    fn buffering_is_bounded_per_direction() {
        let mut c = Conversation::new(0, ep(1000), ep(80), 0);
        let mut out = Vec::new();
        c.segment(0, &seg(100, b"aa", ack()), 4, |_, d| out.push(show(d)));
        c.segment(0, &seg(110, b"bbb", ack()), 4, |_, d| out.push(show(d)));
        assert_eq!(c.pending_bytes(), 3);
        c.segment(0, &seg(113, b"cc", ack()), 4, |_, d| out.push(show(d)));
        assert_eq!(out, ["aa", "<gap 8>", "bbb", "cc"]);
        assert_eq!(c.pending_bytes(), 0);
    }

    #[test]
    fn an_ack_past_a_hole_gives_it_up_after_a_retransmission_timeout() {
        let mut c = Conversation::new(0, ep(1000), ep(80), 0);
        let mut out = Vec::new();
        c.segment(0, &seg(100, b"aa", ack()), 1000, |d, x| {
            out.push(format!("{d}:{}", show(x)))
        });
        c.segment(0, &seg(110, b"zz", ack()), 1000, |d, x| {
            out.push(format!("{d}:{}", show(x)))
        });
        assert_eq!(out, ["0:aa"]);
        let peer = Segment {
            src: ep(80),
            dst: ep(1000),
            seq: 5000,
            ack: 112,
            flags: ack(),
            window: 10,
            wscale: None,
            payload: b"",
            time_ns: 1_000_000,
        };
        c.segment(1, &peer, 1000, |d, x| out.push(format!("{d}:{}", show(x))));
        // Acknowledged, but a late copy may still come: wait a retransmission timeout.
        assert_eq!(out, ["0:aa"]);
        let later = Segment {
            time_ns: HOLE_ACK_WAIT_NS + 1,
            ..peer
        };
        c.segment(1, &later, 1000, |d, x| out.push(format!("{d}:{}", show(x))));
        assert_eq!(out, ["0:aa", "0:<gap 8>", "0:zz"]);
    }

    #[test]
    fn fin_and_rst_are_delivered_after_the_data() {
        let fin = Flags {
            fin: true,
            ack: true,
            ..Flags::default()
        };
        let (out, _) = run(&[seg(100, b"ab", ack()), seg(102, b"", fin)], 1000);
        assert_eq!(out, ["ab", "<fin>"]);
        let rst = Flags {
            rst: true,
            ..Flags::default()
        };
        let (out, _) = run(&[seg(100, b"ab", ack()), seg(102, b"", rst)], 1000);
        assert_eq!(out, ["ab", "<rst>"]);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let (out, _) = run(
            &[seg(u32::MAX - 1, b"ab", ack()), seg(0, b"cd", ack())],
            1000,
        );
        assert_eq!(out.concat(), "abcd");
    }

    #[test]
    fn keep_alive_is_not_a_retransmission() {
        let (_, an) = run(&[seg(100, b"ab", ack()), seg(101, b"b", ack())], 1000);
        assert!(an[1].keep_alive && !an[1].retransmission);
    }

    #[test]
    fn stream_indices_follow_first_appearance_and_port_reuse() {
        let mut t: Table<()> = Table::new();
        let a = seg(1, b"", ack());
        let b = Segment { src: ep(2000), ..a };
        let (s0, d0, new0) = t.lookup(&a, |_| ());
        let (s1, _, _) = t.lookup(&b, |_| ());
        let back = Segment {
            src: ep(80),
            dst: ep(1000),
            ..a
        };
        let (s0b, d1, new1) = t.lookup(&back, |_| ());
        assert!(new0 && !new1);
        assert_eq!((s0, d0, d1), (s0b, 0, 1));
        assert_eq!(t.get(s1).unwrap().0.index, 1);
        t.get_mut(s0).unwrap().0.reset = true;
        let syn = Segment {
            flags: Flags {
                syn: true,
                ..Flags::default()
            },
            ..a
        };
        let (s2, _, new2) = t.lookup(&syn, |_| ());
        assert!(new2);
        assert_eq!(t.get(s2).unwrap().0.index, 2);
    }
}
