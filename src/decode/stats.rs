//! Counters for `--stats` and `--strict`: packets, streams, frames by opcode, bytes, Engine.IO and
//! Socket.IO packets by type, events by name, TCP analysis notes and anomalies by kind.

use std::collections::{BTreeMap, HashMap};

use super::capture::Timestamp;
use super::decoder::Ctx;
use super::event::{Anomaly, Event};
use super::net::Skip;
use super::sio;
use super::stream::AppState;
use super::tcp::{Conversation, SegmentResult};

/// Most per-stream lines kept for the summary.
const MAX_STREAM_LINES: usize = 10_000;

/// One conversation in the summary.
#[derive(Debug, Clone)]
pub struct StreamLine {
    pub index: u64,
    pub a: String,
    pub b: String,
    pub proto: &'static str,
    pub target: Option<String>,
    pub packets: u64,
    pub bytes: [u64; 2],
    pub frames: u64,
}

#[derive(Debug, Default)]
pub struct Stats {
    /// Count everything (for `--stats`); otherwise only anomalies (for `--strict`) are counted.
    pub enabled: bool,
    pub packets: u64,
    pub bytes: u64,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
    pub not_tcp: BTreeMap<String, u64>,
    /// IP fragments seen (held for reassembly, or completing a datagram).
    pub ip_fragments: u64,
    /// IP datagrams reassembled from fragments (each then decoded as one packet).
    pub ip_reassembled: u64,
    pub streams: u64,
    pub stream_lines: Vec<StreamLine>,
    pub streams_omitted: u64,
    pub ws_frames: u64,
    pub ws_frames_by_opcode: BTreeMap<&'static str, u64>,
    pub ws_frames_client: u64,
    pub ws_frames_server: u64,
    pub ws_payload_bytes: u64,
    pub ws_messages: u64,
    pub ws_message_bytes: u64,
    pub ws_compressed: u64,
    pub ws_fragmented: u64,
    pub close_codes: BTreeMap<u16, u64>,
    pub http_requests: u64,
    pub http_responses: u64,
    pub http_upgrades: u64,
    pub eio_by_type: BTreeMap<&'static str, u64>,
    pub sio_by_type: BTreeMap<&'static str, u64>,
    pub sio_events: HashMap<String, u64>,
    pub tcp_notes: BTreeMap<String, u64>,
    pub gaps: u64,
    pub gap_bytes: u64,
    pub truncated: u64,
    pub anomalies: u64,
    pub anomalies_by_code: BTreeMap<&'static str, u64>,
}

impl Stats {
    pub fn packet(&mut self, len: usize, ts: Timestamp) {
        self.packets += 1;
        self.bytes += len as u64;
        if self.first.is_none() {
            self.first = Some(ts);
        }
        self.last = Some(ts);
    }

    pub fn skipped(&mut self, skip: &Skip) {
        let key = match skip {
            Skip::NotIp(what) => what.clone(),
            Skip::NotTcp(p) => (*p).to_string(),
            // Counted in `ip_fragments`: a held fragment is decoded with its datagram.
            Skip::Fragment(_) => return,
            Skip::Malformed(_) => "malformed".into(),
        };
        *self.not_tcp.entry(key).or_default() += 1;
    }

    pub fn new_stream(&mut self) {
        self.streams += 1;
    }

    pub fn tcp_note(&mut self, r: &SegmentResult) {
        for l in r.analysis.labels() {
            *self.tcp_notes.entry(l).or_default() += 1;
        }
    }

    fn anomalies(&mut self, list: &[Anomaly]) {
        for a in list {
            self.anomalies += 1;
            *self.anomalies_by_code.entry(a.code).or_default() += 1;
        }
    }

    fn anomaly(&mut self, code: &'static str) {
        self.anomalies += 1;
        *self.anomalies_by_code.entry(code).or_default() += 1;
    }

    fn engineio(&mut self, packets: &[sio::EioPacket<'_>]) {
        for p in packets {
            *self.eio_by_type.entry(p.type_name()).or_default() += 1;
            if let Some(s) = &p.sio {
                if let Some(r) = &s.packet {
                    *self.sio_by_type.entry(r.packet_type().name()).or_default() += 1;
                    if let Some(name) = r.event() {
                        bump(&mut self.sio_events, name);
                    }
                }
            }
        }
    }

    /// Count an event that is shown.
    pub fn event(&mut self, _ctx: &Ctx<'_>, ev: &Event<'_>) {
        if !self.enabled {
            match ev {
                Event::Ws(f) => self.anomalies(&f.anomalies),
                Event::Http(m, _) => self.anomalies(&m.anomalies),
                Event::Gap { .. } => self.anomaly("tcp_gap"),
                Event::Truncated { .. } => self.anomaly("truncated"),
                Event::Note { anomaly } => self.anomalies(std::slice::from_ref(anomaly)),
                Event::Tcp(_) | Event::Data { .. } => {}
            }
            return;
        }
        match ev {
            Event::Ws(f) => {
                self.ws_frames += 1;
                *self
                    .ws_frames_by_opcode
                    .entry(opcode_name(f.header.opcode))
                    .or_default() += 1;
                if f.sender == crate::wire::ws::Role::Client {
                    self.ws_frames_client += 1;
                } else {
                    self.ws_frames_server += 1;
                }
                self.ws_payload_bytes += f.header.payload_len;
                if let Some((Some(code), _)) = &f.close {
                    *self.close_codes.entry(*code).or_default() += 1;
                }
                if let Some(m) = &f.message {
                    self.ws_messages += 1;
                    self.ws_message_bytes += m.data.len() as u64;
                    if m.compressed {
                        self.ws_compressed += 1;
                    }
                    if m.frames > 1 {
                        self.ws_fragmented += 1;
                    }
                    self.engineio(m.engineio.as_slice());
                }
                self.anomalies(&f.anomalies);
            }
            Event::Http(m, packets) => {
                if m.is_request {
                    self.http_requests += 1;
                } else {
                    self.http_responses += 1;
                    if m.status == 101 {
                        self.http_upgrades += 1;
                    }
                }
                self.engineio(packets);
                self.anomalies(&m.anomalies);
            }
            Event::Gap { bytes } => {
                self.gaps += 1;
                self.gap_bytes += bytes;
                self.anomaly("tcp_gap");
            }
            Event::Truncated { .. } => {
                self.truncated += 1;
                self.anomaly("truncated");
            }
            Event::Note { anomaly } => self.anomalies(std::slice::from_ref(anomaly)),
            Event::Tcp(_) | Event::Data { .. } => {}
        }
    }

    /// Record a conversation's totals (when it is forgotten or at the end).
    pub fn stream_summary(&mut self, c: &Conversation, app: &AppState) {
        if !self.enabled {
            return;
        }
        if self.stream_lines.len() >= MAX_STREAM_LINES {
            self.streams_omitted += 1;
            return;
        }
        self.stream_lines.push(StreamLine {
            index: c.index,
            a: c.endpoints[0].to_string(),
            b: c.endpoints[1].to_string(),
            proto: app.proto.name(),
            target: app.ws_target.clone(),
            packets: c.packets,
            bytes: c.bytes,
            frames: app.ws_frames(),
        });
    }
}

/// Most distinct event names counted one by one; further names are counted together, so a capture
/// full of random names cannot grow memory without bound.
const MAX_EVENT_NAMES: usize = 10_000;
/// Where names beyond [`MAX_EVENT_NAMES`] are counted.
pub const OTHER_EVENTS: &str = "(other names)";

fn bump(map: &mut HashMap<String, u64>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n += 1;
    } else if map.len() < MAX_EVENT_NAMES {
        map.insert(key.to_string(), 1);
    } else {
        *map.entry(OTHER_EVENTS.to_string()).or_default() += 1;
    }
}

/// Opcode names as Wireshark shows them, reserved ones by value.
pub fn opcode_name(op: crate::wire::ws::Opcode) -> &'static str {
    use crate::wire::ws::Opcode;
    match op {
        Opcode::Reserved(v) => match v {
            3 => "Reserved 0x3",
            4 => "Reserved 0x4",
            5 => "Reserved 0x5",
            6 => "Reserved 0x6",
            7 => "Reserved 0x7",
            0xb => "Reserved 0xb",
            0xc => "Reserved 0xc",
            0xd => "Reserved 0xd",
            0xe => "Reserved 0xe",
            _ => "Reserved 0xf",
        },
        other => other.name(),
    }
}
